"""TinyLarge healthcare: wrist-worn vitals (PPG, accelerometer, temperature) -> deterioration risk.

Modules: `signals` (cohort simulator, WFDB loader), `features` (on-device DSP), `news2` (NEWS2 score).
"""
