"""Metaverse EEG: people in a shared virtual world wear consumer EEG headsets (8 channels, 128 Hz); the
headset estimates valence and arousal with an int8 model; the cloud's interaction agent adapts each
user's scene (pace, difficulty, music tempo, lighting, companion) to keep them in the target zone.

Modules: `signals` (EEG simulator, simulated users whose affect responds to the world, readers for
EDF/BDF, DEAP and SEED recordings), `features` (the headset DSP the C firmware ports), `tiny` (int8
valence/arousal model), `agent` (the transformer interaction agent, the rule controller, closed-loop
evaluation), `device` (the simulated headset), `service` (the agent on the platform's subject service),
`scenario` (the demo's world, in closed loop through the broker), `train`, `tasks` (the integration
strategies' adapters) and `hooks` (all of it as the platform's verbs see it).
"""

from shared.domain import Channel, Domain, Stream

FS_HZ = 128.0
WINDOW_SAMPLES = 512
WINDOW_S = WINDOW_SAMPLES / FS_HZ
WINDOW_EVERY_S = 10.0
CHANNELS = ("AF3", "AF4", "F3", "F4", "T7", "T8", "P7", "P8")
#: (name, low Hz, high Hz): half-open [low, high) on the Welch grid
BANDS = (("delta", 1.0, 4.0), ("theta", 4.0, 8.0), ("alpha", 8.0, 14.0), ("beta", 14.0, 31.0),
         ("gamma", 31.0, 50.0))
LABELS = ("lv_la", "lv_ha", "hv_la", "hv_ha")  #: valence (low/high) x arousal (low/high) quadrants
FEATURE_NAMES = (*(f"bp_{c}_{b[0]}" for c in CHANNELS for b in BANDS),
                 *(f"de_{c}_{b[0]}" for c in CHANNELS for b in BANDS),
                 "faa_f", "faa_af", "blink", "emg", "bad_channels")

DOMAIN = Domain(
    name="metaverse_eeg",
    title="EEG headsets -> valence/arousal -> an interaction agent that adapts the virtual world",
    package="metaverse_eeg",
    channels=tuple(Channel(c, "uV", FS_HZ) for c in CHANNELS),
    window_s=WINDOW_S,
    window_every_s=WINDOW_EVERY_S,
    labels=LABELS,
    feature_names=FEATURE_NAMES,
    streams={
        "inference": Stream("up", "device", "one EEG window: band features, artefact flags, affect quadrant (QoS 1)"),
        "scene": Stream("up", "world", "the user's scene state after the world applied the actions (QoS 1)"),
        "action": Stream("down", "cloud", "the agent's adaptation of the user's scene with a reason (QoS 1)"),
    },
    result_stream="action",
    tiny_model="eeg-tiny",
    large_model="eeg-agent",
    baseline="rule controller",
    subject="user",
    hooks_ref="metaverse_eeg.hooks:Hooks",
)
