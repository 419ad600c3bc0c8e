"""The interaction agent (cloud, large model): each user's affect history and scene -> how their world adapts.

**Input**, one step per headset window (``STEP_NAMES``): the int8 model's P(high valence) and P(high
arousal), an artefact flag (blink, EMG or a bad channel: a less trustworthy estimate), the scene's
knobs (pace, difficulty, music tempo, lighting, companion), the world's event (threat, lull) and the
minutes since the scene last changed. The agent sees the last ``seq_len`` steps (12 = 2 minutes).

**Output**: one of ``signals.ACTION_NAMES`` (none, or one knob up or down by a quarter; companion on
or off), with a short human-readable reason, on the ``action`` stream.

**Training: offline imitation with DAgger.** A privileged teacher knows each simulated TRAINING
user's hidden parameters and true affect and plans by lookahead: for every action it simulates the
next 90 s of that user's affect (deterministic dynamics, the event decaying, no new events) and picks
the action with the best mean zone score (distance outside the zone, aiming a margin inside it), minus
a cost per change (stability); "none" unless another action is better by ``margin``. Round 0 logs
sessions driven by the teacher with some random actions (coverage); each further round logs sessions
driven by the current agent, labelled by the teacher at every visited state (DAgger), and the
transformer (``shared.large.transformer.RiskTransformer``, one logit per action) is refitted on all
logged steps with cross-entropy. The agent never sees a user's parameters or true affect: only
what the headset and the world report.

**Baselines** beside it, on the same held-out users (other seed, same events): no adaptation and the
hand-written :func:`rule_action` (smoothed estimates, thresholds, a cooldown).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metaverse_eeg import DOMAIN, WINDOW_EVERY_S
from metaverse_eeg.signals import ACTION_NAMES, KNOBS, ZONE_A, Scene, User, apply_action, in_zone

STEP_NAMES = ("p_valence", "p_arousal", "artefact", *KNOBS, "threat", "lull", "since_change_min")
N_STEP = len(STEP_NAMES)
MODEL_NAME = DOMAIN.large_model
_WHY = {"none": "keep the scene", "pace_up": "speed up the pace", "pace_down": "slow the pace",
        "difficulty_up": "raise the difficulty", "difficulty_down": "ease the difficulty",
        "tempo_up": "faster music", "tempo_down": "calmer music", "lighting_up": "brighter, warmer light",
        "lighting_down": "dimmer light", "companion_on": "bring the companion in",
        "companion_off": "send the companion away"}


def step_vector(p_valence: float, p_arousal: float, artefact: bool, scene: dict) -> np.ndarray:
    """One history step (STEP_NAMES order) from the headset's estimates and the world's scene message."""
    ev = scene.get("event", "none")
    return np.array([p_valence, p_arousal, float(artefact), *(float(scene.get(k, 0.5 if k != "companion" else 0.0))
                                                              for k in KNOBS),
                     float(ev == "threat"), float(ev == "lull"),
                     min(10.0, float(scene.get("since_change_s", 0.0)) / 60.0)], dtype=np.float32)


def describe(history: np.ndarray) -> str:
    """The user's state as the last three steps show it: 'valence 0.31 low, arousal 0.82 high, threat'."""
    last = np.asarray(history)[-3:]
    pv, pa = float(last[:, 0].mean()), float(last[:, 1].mean())
    a = "high" if pa > 0.65 else ("low" if pa < 0.35 else "moderate")
    v = "positive" if pv >= 0.5 else "negative"
    ev = "threat" if last[-1, 8] > 0 else ("lull" if last[-1, 9] > 0 else "")
    return f"valence {pv:.2f} {v}, arousal {pa:.2f} {a}" + (f", {ev} event" if ev else "")


def reason(action: str, history: np.ndarray, who: str) -> str:
    return f"{who}: {_WHY[action]} ({describe(history)})"[:200]


def rule_action(history: np.ndarray) -> tuple[str, str]:
    """The hand-written controller (the baseline): (action, reason) from a step history.

    Mean of the last 3 estimates; nothing within 30 s of the last change (cooldown). Arousal above
    0.65: slow the pace (then calmer music); below 0.35: speed up the pace (then faster music);
    otherwise valence below 0.45: ease the difficulty, then brighter light, then the companion.
    """
    h = np.asarray(history, dtype=np.float64)
    if h.ndim != 2 or h.shape[1] != N_STEP:
        raise ValueError(f"history: expected (T, {N_STEP}) steps, got {h.shape}")
    last = h[-3:]
    pv, pa = last[:, 0].mean(), last[:, 1].mean()
    scene = dict(zip(KNOBS, h[-1, 3:8], strict=True))
    action = "none"
    if h[-1, 10] * 60.0 >= 30.0:
        if pa > 0.65:
            action = "pace_down" if scene["pace"] > 0 else ("tempo_down" if scene["tempo"] > 0 else "none")
        elif pa < 0.35:
            action = "pace_up" if scene["pace"] < 1 else ("tempo_up" if scene["tempo"] < 1 else "none")
        elif pv < 0.45:
            if scene["difficulty"] > 0:
                action = "difficulty_down"
            elif scene["lighting"] < 1:
                action = "lighting_up"
            elif scene["companion"] < 1:
                action = "companion_on"
    return action, reason(action, h, "rule")


# -- the privileged teacher ---------------------------------------------------------------------------
def zone_score(v: float, a: float) -> float:
    """0 inside the zone shrunk by a margin, else minus the distance outside it."""
    return -(max(0.0, 0.1 - v) + max(0.0, abs(a) - (ZONE_A - 0.1)))


def _lookahead(user: User, scene: Scene, horizon_s: float = 90.0, dt: float = 5.0) -> float:
    p = user.params
    v, a, ev, ea = user.v, user.a, user._event_v, user._event_a
    t, total, n = user.t_s, 0.0, 0
    sc = copy.copy(scene)
    k = 1.0 - np.exp(-dt / p.tau_s)
    decay = np.exp(-dt / 60.0)
    while n * dt < horizon_s:
        ev, ea = ev * decay, ea * decay
        tv, ta = user.targets(sc, t, ev, ea)
        v, a = v + (tv - v) * k, a + (ta - a) * k
        sc.since_change_s += dt
        t += dt
        total += zone_score(v, a)
        n += 1
    return total / n


def teacher_action(user: User, change_cost: float = 0.02, margin: float = 0.01) -> str:
    """The privileged planner's choice for this user now (see the module docstring)."""
    best, best_score = "none", _lookahead(user, user.scene)
    for action in ACTION_NAMES[1:]:
        sc = copy.copy(user.scene)
        if not apply_action(sc, action):
            continue
        u_v = user.v
        user.v = u_v - user.params.k_change  # the change's own valence dip
        s = _lookahead(user, sc) - change_cost
        user.v = u_v
        if s > best_score + margin:
            best, best_score = action, s
    return best


# -- closed-loop sessions -----------------------------------------------------------------------------
#: policy(histories, users) -> action names, one per user
Policy = Callable[[list[np.ndarray], list[User]], list[str]]


@dataclass
class SessionLog:
    """What one closed-loop run recorded, per user: steps, true affect, actions, teacher labels."""

    steps: list[np.ndarray]  #: (T, N_STEP) per user
    affect: list[np.ndarray]  #: (T, 2) true valence, arousal
    actions: list[list[str]]
    changed: list[list[bool]]
    events: list[list[str]]
    teacher: list[list[str]]
    duration_h: float


def run_session(users: Sequence[User], tiny: Any, policy: Policy, times_s: np.ndarray, label: bool = False,
                seq_len: int = 12) -> SessionLog:
    """Each tick: users' affect advances, headsets estimate (DSP + int8), the policy acts, the world applies."""
    from metaverse_eeg.features import extract_window, to_vector
    from metaverse_eeg.tiny import valence_arousal

    n = len(users)
    steps: list[list[np.ndarray]] = [[] for _ in range(n)]
    log = SessionLog([], [[] for _ in range(n)], [[] for _ in range(n)], [[] for _ in range(n)],
                     [[] for _ in range(n)], [[] for _ in range(n)], float(times_s[-1] / 3600.0))
    for t in times_s:
        feats = []
        for u in users:
            u.advance(float(t))
            feats.append(extract_window(u.window(float(t))))
        pv, pa = valence_arousal(tiny.scores(np.stack([to_vector(f) for f in feats])))
        for i, (u, f) in enumerate(zip(users, feats, strict=True)):
            art = bool(f.blink or f.emg or f.bad_channels)
            scene = u.scene.as_dict() | {"since_change_s": u.scene.since_change_s}
            steps[i].append(step_vector(pv[i], pa[i], art, scene))
            log.affect[i].append((u.v, u.a))
            log.events[i].append(u.scene.event)
            if label:
                log.teacher[i].append(teacher_action(u))
        chosen = policy([np.stack(s[-seq_len:]) for s in steps], list(users))
        for i, (u, act) in enumerate(zip(users, chosen, strict=True)):
            log.actions[i].append(act)
            log.changed[i].append(u.act(act))
    log.steps = [np.stack(s) for s in steps]
    log.affect = [np.asarray(a) for a in log.affect]
    return log


def evaluate_log(log: SessionLog) -> dict[str, Any]:
    """Time in zone (mean and per-user spread), changes per hour, and reaction to the world's events:
    seconds from an event's onset to the first change, and to being back in the zone (per event, capped
    at 3 minutes)."""
    tiz = np.array([float(in_zone(a[:, 0], a[:, 1]).mean()) for a in log.affect])
    changes = np.array([sum(c) for c in log.changed]) / max(log.duration_h, 1e-9)
    dt = (log.duration_h * 3600.0) / max(1, len(log.affect[0]))
    first_change, back = [], []
    for ev, ch, aff in zip(log.events, log.changed, log.affect, strict=True):
        for k in range(1, len(ev)):
            if ev[k] != "none" and ev[k - 1] == "none":
                end = min(len(ev), k + int(180 / dt))
                fc = next((j for j in range(k, end) if ch[j]), end)
                first_change.append((fc - k) * dt)
                if not in_zone(*aff[k]):
                    b = next((j for j in range(k, end) if in_zone(*aff[j])), end)
                    back.append((b - k) * dt)
    return {"time_in_zone": round(float(tiz.mean()), 4),
            "time_in_zone_p10_p50_p90": [round(float(q), 4) for q in np.percentile(tiz, [10, 50, 90])],
            "actions_per_hour": round(float(changes.mean()), 1),
            "reaction_s": round(float(np.mean(first_change)), 1) if first_change else None,
            "recovery_s": round(float(np.mean(back)), 1) if back else None,
            "events": len(first_change), "users": len(tiz)}


def none_policy(histories: list[np.ndarray], users: list[User]) -> list[str]:
    return ["none"] * len(histories)


def rule_policy(histories: list[np.ndarray], users: list[User]) -> list[str]:
    return [rule_action(h)[0] for h in histories]


def teacher_policy(epsilon: float = 0.0, seed: int = 0) -> Policy:
    rng = np.random.default_rng(seed)

    def policy(histories: list[np.ndarray], users: list[User]) -> list[str]:
        return [str(rng.choice(ACTION_NAMES)) if rng.random() < epsilon else teacher_action(u) for u in users]

    return policy


# -- the transformer policy ---------------------------------------------------------------------------
@dataclass
class AgentConfig:
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 64
    seq_len: int = 12  #: steps of history (12 x 10 s = 2 min)
    dropout: float = 0.1
    epochs: int = 8
    batch_size: int = 128
    lr: float = 2e-3
    dagger_rounds: int = 2  #: rounds after the teacher's (0: behaviour cloning only)
    epsilon: float = 0.2  #: random actions in the teacher's round
    seed: int = 0


def _samples(logs: list[SessionLog], seq_len: int) -> tuple[list[np.ndarray], np.ndarray]:
    hs, ys = [], []
    for log in logs:
        for steps, labels in zip(log.steps, log.teacher, strict=True):
            for i in range(len(labels)):
                hs.append(steps[max(0, i - seq_len + 1):i + 1])
                ys.append(ACTION_NAMES.index(labels[i]))
    return hs, np.asarray(ys)


def fit_policy(cfg: AgentConfig, logs: list[SessionLog], model: Any = None, bar: Any = None) -> Any:
    """Fit (or refit) the transformer on every logged step's teacher label (cross-entropy)."""
    import torch

    from shared.large.transformer import RiskConfig, RiskTransformer, left_pad

    torch.manual_seed(cfg.seed)
    if model is None:
        model = RiskTransformer(RiskConfig(n_inputs=N_STEP, d_model=cfg.d_model, n_layers=cfg.n_layers,
                                           n_heads=cfg.n_heads, d_ff=cfg.d_ff, seq_len=cfg.seq_len,
                                           dropout=cfg.dropout, n_outputs=len(ACTION_NAMES), step_s=WINDOW_EVERY_S,
                                           horizon_h=0.025, input_names=list(STEP_NAMES)))
    hs, ys = _samples(logs, cfg.seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    rng = np.random.default_rng(cfg.seed)
    model.train()
    for _ in range(cfg.epochs):
        order = rng.permutation(len(hs))
        for a in range(0, len(order), cfg.batch_size):
            idx = order[a:a + cfg.batch_size]
            x, mask, pos = left_pad([hs[i] for i in idx], cfg.seq_len, N_STEP)
            loss = torch.nn.functional.cross_entropy(model(x, mask, pos), torch.from_numpy(ys[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        if bar is not None:
            bar.update(1)
    model.eval()
    return model


class AgentPredictor:
    """The trained agent: ``predict_batch(histories)`` -> (action index, confidence) per history."""

    def __init__(self, model: Any):
        self.model = model
        self.seq_len = int(model.config.seq_len)

    @classmethod
    def load(cls, path: Path, threads: int = 1) -> AgentPredictor:
        import torch

        from shared.large.transformer import RiskTransformer

        if not (Path(path) / "config.json").exists():
            raise FileNotFoundError(f"{path}/config.json not found: train first (tinylarge train metaverse_eeg)")
        torch.set_num_threads(threads)
        return cls(RiskTransformer.from_pretrained(str(path)).eval())

    def probs(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        from shared.large.transformer import left_pad

        out = []
        with torch.no_grad():
            for a in range(0, len(histories), 512):
                x, mask, pos = left_pad(list(histories[a:a + 512]), self.seq_len, N_STEP)
                out.append(torch.softmax(self.model(x, mask, pos), dim=-1).numpy())
        return np.concatenate(out)

    def predict_batch(self, histories: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        p = self.probs(histories)
        return p.argmax(1), p.max(1)

    def policy(self, histories: list[np.ndarray], users: list[User]) -> list[str]:
        return [ACTION_NAMES[i] for i in self.predict_batch(histories)[0]]


def train_agent(cfg: AgentConfig, make_users: Callable[[int], list[User]], tiny: Any, times_s: np.ndarray,
                bar: Any = None) -> tuple[Any, dict[str, Any]]:
    """DAgger: teacher round, then ``dagger_rounds`` agent rounds; ``make_users(round)`` gives fresh
    TRAINING users for each round. Returns (model, training figures)."""
    logs = [run_session(make_users(0), tiny, teacher_policy(cfg.epsilon, cfg.seed), times_s, label=True,
                        seq_len=cfg.seq_len)]
    model = fit_policy(cfg, logs, bar=bar)
    for r in range(1, cfg.dagger_rounds + 1):
        logs.append(run_session(make_users(r), tiny, AgentPredictor(model).policy, times_s, label=True,
                                seq_len=cfg.seq_len))
        model = fit_policy(cfg, logs, model=model, bar=bar)
    hs, ys = _samples(logs, cfg.seq_len)
    agree = float((AgentPredictor(model).predict_batch(hs)[0] == ys).mean())
    share_none = float(np.mean(ys == 0))
    return model, {"agent_teacher_agreement_train": round(agree, 4), "teacher_none_share": round(share_none, 4),
                   "agent_train_steps": len(ys), "agent_config": asdict(cfg)}
