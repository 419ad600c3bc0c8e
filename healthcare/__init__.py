"""TinyLarge healthcare: wrist-worn vitals (PPG, accelerometer, temperature) -> deterioration risk.

Modules: `signals` (cohort simulator, WFDB loader), `features` (on-device DSP), `tiny` (the wearable's
int8 classifier), `large` (the risk transformer), `news2` (the NEWS2 score it is reported beside),
`device` (the wearable in Python), `service` (the cloud's hooks), `scenario` (the demo: the ward and its
EHR), `train`, `tasks` (integration adapters) and `hooks` (all of it as the platform sees it);
`schemas/` holds the domain's message schemas.
"""

from shared.domain import Channel, Domain, Stream

_FS_HZ = 25.0
_WINDOW_S = 30.0

DOMAIN = Domain(
    name="healthcare",
    title="wearable vitals -> deterioration risk beside NEWS2",
    package="healthcare",
    channels=(Channel("ppg_red", "counts", _FS_HZ), Channel("ppg_ir", "counts", _FS_HZ),
              Channel("acc_x", "g", _FS_HZ), Channel("acc_y", "g", _FS_HZ), Channel("acc_z", "g", _FS_HZ),
              Channel("temp", "degC", 1.0 / _WINDOW_S)),
    window_s=_WINDOW_S,
    window_every_s=300.0,
    labels=("normal", "tachycardia", "bradycardia", "desaturation", "irregular", "unreliable"),
    feature_names=("hr_bpm", "hrv_rmssd_ms", "hrv_sdnn_ms", "spo2_pct", "rr_bpm", "temp_c", "motion_g", "quality"),
    streams={
        "inference": Stream("up", "device", "one 30 s window: vitals and the tiny model's class (QoS 1)"),
        "chart": Stream("up", "ehr", "nurse observations from the ward EHR (blood pressure, consciousness, O2)"),
        "risk": Stream("down", "cloud", "the transformer's deterioration risk beside NEWS2 (QoS 1)"),
    },
    result_stream="risk",
    tiny_model="healthcare-tiny",
    large_model="hc-risk",
    baseline="NEWS2",
    subject="patient",
    hooks_ref="healthcare.hooks:Hooks",
)
