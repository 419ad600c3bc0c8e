"""Simulated users in a virtual world: their affect (valence, arousal), how it responds to the scene, and
the EEG their headset records. Readers for real recordings are in ``metaverse_eeg._readers``.

**Affect** (valence v, arousal a, both in [-1, 1]) relaxes towards a target with the user's own time
constant ``tau_s`` (20-90 s) plus Ornstein-Uhlenbeck noise:

* arousal target = bias + gains x (pace, difficulty, music tempo - 0.5 each) + scene events - habituation
  (arousal sinks while nothing changes: boredom, ``habituation`` per minute up to 0.5);
* valence target = bias - flow mismatch ``4 k_flow (difficulty - skill)^2`` (skill grows through the
  session) + lighting preference + companion liking (some users dislike the companion) - over-arousal
  (``a > 0.5`` is unpleasant) + events; every change of the world costs a small valence dip (``k_change``).

Scene events the agent does not control: ``threat`` (arousal up, valence down, decays over ~60 s) and
``lull`` (arousal down). The **target zone** is v > 0 and |a| < ``ZONE_A``.

**EEG** per 4 s window, 8 channels (AF3 AF4 F3 F4 T7 T8 P7 P8), microvolts: a 1/f^beta background
(beta 1-2 per user) plus band oscillations whose amplitude follows the affect: alpha falls and beta and
gamma rise with arousal; frontal alpha is lower on the left than the right with positive valence
(frontal alpha asymmetry); theta rises a little with negative valence. Individual differences: alpha
peak frequency (8.5-12 Hz), per-channel gains, skull attenuation, effect sizes (0.4-1.4x), noise level.
Artefacts: eye blinks (frontal, 100-250 uV), muscle (EMG, broadband above 20 Hz on temporal sites,
more likely when aroused), movement (slow large drift on all channels) and, for some sessions, one bad
channel (flat or wild).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from metaverse_eeg import CHANNELS, FS_HZ, WINDOW_EVERY_S, WINDOW_S, WINDOW_SAMPLES

ZONE_A = 0.35
KNOBS = ("pace", "difficulty", "tempo", "lighting", "companion")
_FRONTAL = np.array([1.0, 1.0, 0.7, 0.7, 0.2, 0.2, 0.1, 0.1])  # how strongly each site sees blinks
_LEFT = np.array([1, 0, 1, 0, 0, 0, 0, 0], dtype=bool)  # AF3, F3
_RIGHT = np.array([0, 1, 0, 1, 0, 0, 0, 0], dtype=bool)  # AF4, F4
_TEMPORAL = np.array([0, 0, 0, 0, 1, 1, 0, 0], dtype=bool)


def _clamp(x: float, lo: float = -1.0, hi: float = 1.0) -> float:
    return lo if x < lo else (hi if x > hi else x)


def in_zone(v: float | np.ndarray, a: float | np.ndarray) -> np.ndarray | bool:
    return (np.asarray(v) > 0.0) & (np.abs(np.asarray(a)) < ZONE_A)


def quadrant(v: float, a: float) -> int:
    """Index into LABELS: 2 * (valence > 0) + (arousal > 0)."""
    return 2 * int(v > 0) + int(a > 0)


@dataclass
class UserParams:
    """One person: how their affect responds to the world and how their EEG looks."""

    tau_s: float
    noise: float
    a_bias: float
    v_bias: float
    w_pace: float
    w_diff: float
    w_tempo: float
    habituation: float
    k_flow: float
    skill0: float
    learn_per_min: float
    light_pref: float
    w_light: float
    w_companion: float
    k_change: float
    # EEG
    alpha_hz: float
    beta_exp: float
    gains: np.ndarray
    atten: float
    k_alpha: float
    k_beta: float
    k_faa: float
    blink_rate: float
    emg_rate: float
    move_rate: float
    bad_channel: int  #: -1: none
    bad_kind: str

    @classmethod
    def draw(cls, rng: np.random.Generator) -> UserParams:
        bad = int(rng.integers(len(CHANNELS))) if rng.random() < 0.15 else -1
        return cls(tau_s=rng.uniform(20, 90), noise=rng.uniform(0.05, 0.15), a_bias=rng.uniform(-0.2, 0.3),
                   v_bias=rng.uniform(0.0, 0.4), w_pace=rng.uniform(0.4, 1.0), w_diff=rng.uniform(0.2, 0.6),
                   w_tempo=rng.uniform(0.2, 0.8), habituation=rng.uniform(0.03, 0.1), k_flow=rng.uniform(0.5, 1.2),
                   skill0=rng.uniform(0.2, 0.6), learn_per_min=rng.uniform(0.0, 0.015),
                   light_pref=rng.uniform(0.0, 1.0), w_light=rng.uniform(0.1, 0.4),
                   w_companion=rng.choice([-1, 1]) * rng.uniform(0.05, 0.3), k_change=rng.uniform(0.01, 0.05),
                   alpha_hz=rng.uniform(8.5, 12.0), beta_exp=rng.uniform(1.0, 2.0),
                   gains=np.exp(rng.normal(0, 0.15, len(CHANNELS))), atten=rng.uniform(0.6, 1.4),
                   k_alpha=rng.uniform(0.4, 1.4), k_beta=rng.uniform(0.4, 1.4), k_faa=rng.uniform(0.4, 1.4),
                   blink_rate=rng.uniform(0.03, 0.2), emg_rate=rng.uniform(0.02, 0.1), move_rate=rng.uniform(0, 0.04),
                   bad_channel=bad, bad_kind=str(rng.choice(["flat", "wild"])))


@dataclass
class Scene:
    """What the world shows one user; the agent's actions move the knobs (all in [0, 1], companion 0/1)."""

    pace: float = 0.5
    difficulty: float = 0.5
    tempo: float = 0.5
    lighting: float = 0.5
    companion: float = 0.0
    event: str = "none"  #: the world's own event now: none, threat, lull
    since_change_s: float = 0.0

    def as_dict(self) -> dict:
        return {k: round(float(getattr(self, k)), 3) for k in KNOBS} | {"event": self.event}


#: the agent's and the rule controller's actions: (name, knob, delta)
ACTIONS: tuple[tuple[str, str | None, float], ...] = (
    ("none", None, 0.0), ("pace_up", "pace", 0.25), ("pace_down", "pace", -0.25),
    ("difficulty_up", "difficulty", 0.25), ("difficulty_down", "difficulty", -0.25),
    ("tempo_up", "tempo", 0.25), ("tempo_down", "tempo", -0.25), ("lighting_up", "lighting", 0.25),
    ("lighting_down", "lighting", -0.25), ("companion_on", "companion", 1.0), ("companion_off", "companion", -1.0))
ACTION_NAMES = tuple(a[0] for a in ACTIONS)


def apply_action(scene: Scene, action: str) -> bool:
    """Move the scene's knob; returns whether anything changed (a knob at its limit does not move)."""
    if action not in ACTION_NAMES:
        raise ValueError(f"action: unknown {action!r}; one of {', '.join(ACTION_NAMES)}")
    _, knob, delta = ACTIONS[ACTION_NAMES.index(action)]
    if knob is None:
        return False
    old = getattr(scene, knob)
    new = _clamp(old + delta, 0.0, 1.0)
    if new == old:
        return False
    setattr(scene, knob, new)
    scene.since_change_s = 0.0
    return True


@dataclass
class Window:
    eeg: np.ndarray  #: (8, 512) uV
    fs_hz: float = FS_HZ


@dataclass
class SessionConfig:
    n_users: int = 8
    duration_h: float = 0.5
    window_every_s: float = WINDOW_EVERY_S
    seed: int = 0
    event_every_s: tuple[float, float] = (120.0, 300.0)  #: gap between the world's own events

    @property
    def window_s(self) -> float:
        return WINDOW_S

    @property
    def times_s(self) -> np.ndarray:
        return np.arange(self.window_s, self.duration_h * 3600 + 1e-6, self.window_every_s)


@dataclass
class User:
    """One simulated user in the world: affect state, scene, EEG generator. Advance with ``advance(t)``."""

    id: str
    params: UserParams
    seed: int
    cfg: SessionConfig = field(default_factory=SessionConfig)
    v: float = 0.0
    a: float = 0.0
    t_s: float = 0.0
    scene: Scene = field(default_factory=Scene)
    changes: int = 0
    _event_v: float = 0.0
    _event_a: float = 0.0
    _next_event_s: float = 0.0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self._eeg_rng = np.random.default_rng(self.seed + 7_919)
        self.v = float(self.params.v_bias * 0.5)
        self.a = float(self.params.a_bias)
        self._next_event_s = float(self.rng.uniform(*self.cfg.event_every_s))
        self._windows: dict[float, Window] = {}

    # -- affect ------------------------------------------------------------------------------------
    def targets(self, scene: Scene, t_s: float, event_v: float, event_a: float) -> tuple[float, float]:
        p = self.params
        skill = min(1.0, p.skill0 + p.learn_per_min * t_s / 60.0)
        bored = min(0.5, p.habituation * scene.since_change_s / 60.0)
        a = (p.a_bias + p.w_pace * (scene.pace - 0.5) + p.w_diff * (scene.difficulty - 0.5)
             + p.w_tempo * (scene.tempo - 0.5) + event_a - bored)
        v = (p.v_bias - 4.0 * p.k_flow * (scene.difficulty - skill) ** 2
             + p.w_light * (0.5 - abs(scene.lighting - p.light_pref)) + p.w_companion * scene.companion
             - 1.2 * max(0.0, a - 0.5) + event_v)
        return _clamp(v), _clamp(a)

    def act(self, action: str) -> bool:
        """The world applies one action to this user's scene (a change costs a small valence dip)."""
        changed = apply_action(self.scene, action)
        if changed:
            self.changes += 1
            self.v = _clamp(self.v - self.params.k_change)
        return changed

    def advance(self, t_s: float) -> None:
        """Run the affect dynamics (1 s steps) and the world's events up to t_s."""
        p = self.params
        while self.t_s < t_s - 1e-9:
            dt = min(1.0, t_s - self.t_s)
            if self.t_s >= self._next_event_s:
                kind = "threat" if self.rng.random() < 0.6 else "lull"
                self._event_a, self._event_v = (0.7, -0.5) if kind == "threat" else (-0.6, 0.0)
                self.scene.event = kind
                self._next_event_s = self.t_s + float(self.rng.uniform(*self.cfg.event_every_s))
            decay = math.exp(-dt / 60.0)
            self._event_a *= decay
            self._event_v *= decay
            if abs(self._event_a) < 0.1:
                self.scene.event = "none"
            tv, ta = self.targets(self.scene, self.t_s, self._event_v, self._event_a)
            k = 1.0 - math.exp(-dt / p.tau_s)
            sd = p.noise * math.sqrt(dt / 10.0)
            nv, na = self.rng.normal(0.0, sd, 2)
            self.v = _clamp(self.v + (tv - self.v) * k + float(nv))
            self.a = _clamp(self.a + (ta - self.a) * k + float(na))
            self.scene.since_change_s += dt
            self.t_s += dt

    # -- EEG ---------------------------------------------------------------------------------------
    def window(self, t_end_s: float) -> Window:
        """The EEG window ending at t_end_s for the current affect (cached: the same t gives the same window)."""
        key = round(float(t_end_s), 6)
        if key not in self._windows:
            if len(self._windows) > 4:
                self._windows.clear()
            self._windows[key] = Window(eeg_window(self.params, self.v, self.a, self._eeg_rng))
        return self._windows[key]

    def windows(self) -> Iterator[Window]:
        """The session's windows with nobody adapting the world: the user advanced to each window's end in turn."""
        for t in self.cfg.times_s:
            self.advance(float(t))
            yield self.window(float(t))


def _unit(shape: np.ndarray, n: int) -> np.ndarray:
    """``shape`` scaled so that irfft(Z * shape) (Z complex standard normal per bin) has unit variance."""
    return shape / max(float(np.sqrt(4.0 * np.sum(shape[1:] ** 2)) / n), 1e-12)


def _colored(rng: np.random.Generator, n_ch: int, n: int, shape: np.ndarray) -> np.ndarray:
    """Gaussian noise with amplitude spectrum ``shape`` ((n_ch or 1), rfft bins), one FFT for all rows."""
    spec = (rng.normal(size=(n_ch, n // 2 + 1)) + 1j * rng.normal(size=(n_ch, n // 2 + 1))) * shape
    spec[:, 0] = 0.0
    return np.fft.irfft(spec, n=n, axis=1)


def eeg_window(p: UserParams, v: float, a: float, rng: np.random.Generator, n: int = WINDOW_SAMPLES,
               fs: float = FS_HZ) -> np.ndarray:
    """One (8, n) window in uV for a person in affect (v, a): every component's amplitude spectrum is
    summed per channel and drawn with one complex Gaussian spectrum (one inverse FFT)."""
    n_ch = len(CHANNELS)
    f = np.fft.rfftfreq(n, 1.0 / fs)

    def peak(center: float, width: float) -> np.ndarray:
        return _unit(np.exp(-0.5 * ((f - center) / width) ** 2), n)

    alpha_amp = 12.0 * math.exp(-0.8 * p.k_alpha * a) * np.ones(n_ch)
    faa = 0.8 * p.k_faa * v  # ln alpha(right) - ln alpha(left) grows with valence
    alpha_amp[_LEFT] *= math.exp(-faa / 2)
    alpha_amp[_RIGHT] *= math.exp(faa / 2)
    alpha_amp[~(_LEFT | _RIGHT | _TEMPORAL)] *= 1.3  # parietal alpha is strongest
    theta_amp = 5.0 * math.exp(-0.3 * v)
    beta_amp = 4.0 * math.exp(0.7 * p.k_beta * a)
    gamma_amp = 1.5 * math.exp(0.8 * p.k_beta * a)
    shape = (9.0 * _unit(np.maximum(f, 0.5) ** (-p.beta_exp / 2.0), n)[None, :]
             + alpha_amp[:, None] * peak(p.alpha_hz, 1.0)[None, :]
             + (theta_amp * peak(6.0, 1.2) + beta_amp * peak(20.0, 4.0) + gamma_amp * peak(40.0, 5.0))[None, :])
    x = _colored(rng, n_ch, n, shape)
    x *= (p.gains * p.atten)[:, None]
    x += rng.normal(0, 1.0, x.shape)  # amplifier noise
    t = np.arange(n) / fs
    for _ in range(rng.poisson(p.blink_rate * n / fs)):  # eye blinks: frontal, ~300 ms
        t0, amp = rng.uniform(0, n / fs), rng.uniform(100, 250)
        x += _FRONTAL[:, None] * amp * np.exp(-0.5 * ((t - t0) / 0.07) ** 2)
    if rng.random() < p.emg_rate * (1.0 + 2.0 * max(0.0, a)):  # muscle: temporal, broadband > 20 Hz
        emg = _colored(rng, n_ch, n, (f > 20).astype(float)[None, :])
        x[_TEMPORAL] += rng.uniform(8, 25) * emg[_TEMPORAL] / emg[_TEMPORAL].std()
    if rng.random() < p.move_rate:  # movement: slow large drift everywhere
        x += rng.uniform(40, 120) * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t + rng.uniform(0, 6))[None, :]
    if p.bad_channel >= 0:
        x[p.bad_channel] = (rng.normal(0, 0.1, n) if p.bad_kind == "flat" else rng.normal(0, 250.0, n))
    return x


def simulate_users(cfg: SessionConfig | None = None, **kwargs) -> list[User]:
    """``cfg.n_users`` users (ids u000, u001, ...) with their own parameters, drawn from ``cfg.seed``."""
    cfg = cfg or SessionConfig(**kwargs)
    rng = np.random.default_rng(cfg.seed)
    return [User(f"u{cfg.seed % 1000:03d}{i:03d}", UserParams.draw(rng), seed=int(rng.integers(2**31)), cfg=cfg)
            for i in range(cfg.n_users)]


def labelled_windows(n_users: int, per_user: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(eeg (n, 8, 512), affect (n, 2) [valence, arousal], user index (n,)): each user in ``per_user``
    affect states drawn uniformly over [-1, 1]^2 (balanced quadrants), for training and testing the tiny
    model across people."""
    rng = np.random.default_rng(seed)
    xs, ys, gs = [], [], []
    for u in range(n_users):
        p = UserParams.draw(rng)
        r = np.random.default_rng(rng.integers(2**31))
        for _ in range(per_user):
            v, a = r.uniform(-1, 1, 2)
            xs.append(eeg_window(p, v, a, r))
            ys.append((v, a))
            gs.append(seed * 10_000 + u)
    return np.stack(xs), np.asarray(ys), np.asarray(gs)
