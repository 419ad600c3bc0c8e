"""Industrial IoT: a plant fleet of rotating machines (motors, pumps, fans), one accelerometer on each
bearing housing.

Modules: `signals` (fleet simulator and readers for real recordings), `features` (the on-device DSP the
C firmware ports), `iso10816` (the ISO 10816-3 evaluation zones, the baseline rule).
"""
