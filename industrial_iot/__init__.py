"""Industrial IoT: a plant fleet of rotating machines (motors, pumps, fans), one accelerometer on each
bearing housing.

Modules: `signals` (fleet simulator and readers for real recordings), `features` (the on-device DSP the
C firmware ports), `tiny` (classifier + anomaly autoencoder, int8), `large` (the fleet risk transformer),
`iso10816` (the ISO 10816-3 evaluation zones, the baseline rule), `device` (the sensor node in Python),
`service` (the cloud's hooks), `scenario` (the demo), `train`, `tasks` (integration adapters), and
`hooks` (all of it as the platform sees it).
"""

from shared.domain import Channel, Domain, Stream

_FS_HZ = 10240.0
_WINDOW_S = 8192 / _FS_HZ

DOMAIN = Domain(
    name="industrial_iot",
    title="machine vibration -> fleet maintenance risk beside ISO 10816",
    package="industrial_iot",
    channels=(Channel("accel", "g", _FS_HZ), Channel("shaft_hz", "Hz", 1.0 / _WINDOW_S)),
    window_s=_WINDOW_S,
    window_every_s=3600.0,
    labels=("normal", "imbalance", "misalignment", "looseness", "outer_race", "inner_race", "rolling_element"),
    feature_names=("shaft_hz", "v_rms_mm_s", "a_rms_g", "peak_g", "crest", "kurtosis", "v_0p5x_mm_s", "v_1x_mm_s",
                   "v_2x_mm_s", "v_3x_mm_s", "v_halfx_mm_s", "v_4_8x_mm_s", "a_10_1k_g", "a_1k_2k_g", "a_2k_4k_g",
                   "env_rms_g", "env_1x_g", "env_ftf_g", "env_bpfo_g", "env_bpfi_g", "env_bsf2_g"),
    streams={
        "inference": Stream("up", "device", "one vibration window: features, condition class, anomaly score (QoS 1)"),
        "action": Stream("down", "cloud", "maintenance risk, remaining useful life, ISO zone and the action (QoS 1)"),
    },
    result_stream="action",
    tiny_model="iot-tiny",
    large_model="iot-risk",
    baseline="ISO 10816-3 zones",
    subject="machine",
    hooks_ref="industrial_iot.hooks:Hooks",
)
