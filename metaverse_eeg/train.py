"""Train the metaverse_eeg models: the headset's int8 affect model, then the cloud's interaction agent.

``train_all``:

1. simulates labelled EEG windows of TRAINING people and of other, HELD-OUT people (other seed), each
   in affect states spread evenly over the valence x arousal plane; extracts the headset features
   (cached as .npz under ``<models>/cache``); trains the int8 quadrant model on the training people and
   reports float and int8 accuracy on the held-out people (leave-subjects-out) beside chance;
2. trains the interaction agent by DAgger against simulated TRAINING users (``agent.train_agent``),
   the headsets' estimates coming from that int8 model;
3. runs closed-loop sessions of HELD-OUT users (other seed, the same users and events for every
   controller) with no adaptation, the rule controller, the agent and (for reference) the privileged
   teacher, and reports time in the target zone, changes per hour and the reaction to the world's events.

It writes ``tiny.tflite labels.json tiny_metrics.json large/ metrics.json stamp.json`` into models_dir.
``ensure_trained`` retrains only when the stamp is stale. The full config takes about 4 minutes on 2
cores; ``TrainConfig.quick()`` well under a minute.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metaverse_eeg import DOMAIN
from metaverse_eeg.agent import AgentConfig
from metaverse_eeg.signals import SessionConfig
from metaverse_eeg.tiny import TinyConfig

DEFAULT_MODELS_DIR = Path("models/metaverse_eeg")
FORMAT_VERSION = 1
OUTPUTS = ("tiny.tflite", "labels.json", "tiny_metrics.json", "large/config.json")


@dataclass
class TrainConfig:
    tiny_train_users: int = 48
    tiny_test_users: int = 16
    windows_per_user: int = 50
    tiny_seeds: tuple[int, int] = (301, 302)
    agent_session: SessionConfig = field(default_factory=lambda: SessionConfig(n_users=14, duration_h=0.5,
                                                                                seed=311))
    eval_session: SessionConfig = field(default_factory=lambda: SessionConfig(n_users=16, duration_h=0.5,
                                                                               seed=777))
    tiny: TinyConfig = field(default_factory=TinyConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    eval_teacher: bool = True  #: also run the privileged teacher on the held-out users (an upper reference)

    def __post_init__(self) -> None:
        if self.tiny_seeds[0] == self.tiny_seeds[1]:
            raise ValueError("TrainConfig.tiny_seeds: training and held-out people need different seeds")
        if self.agent_session.seed == self.eval_session.seed:
            raise ValueError("TrainConfig.eval_session: seed must differ from agent_session's (unseen users)")
        for key in ("tiny_train_users", "tiny_test_users", "windows_per_user"):
            if getattr(self, key) < 2:
                raise ValueError(f"TrainConfig.{key}: must be >= 2, got {getattr(self, key)!r}")

    @classmethod
    def quick(cls) -> TrainConfig:
        return cls(tiny_train_users=12, tiny_test_users=6, windows_per_user=30, tiny_seeds=(31, 32),
                   agent_session=SessionConfig(n_users=4, duration_h=0.1, seed=33),
                   eval_session=SessionConfig(n_users=4, duration_h=0.1, seed=34),
                   tiny=TinyConfig(hidden=(16,), epochs=15, representative_n=200),
                   agent=AgentConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, epochs=2, dagger_rounds=0),
                   eval_teacher=False)

    def key(self) -> str:
        from shared.runtime.training import config_key, source_hash

        here = Path(__file__).parent
        return config_key({"cfg": asdict(self), "v": FORMAT_VERSION,
                           "src": source_hash([here / "signals.py", here / "features.py", here / "agent.py",
                                               here / "tiny.py"])})


def _features(n_users: int, per_user: int, seed: int, cache: Path) -> dict[str, np.ndarray]:
    from metaverse_eeg.features import extract_window, to_vector
    from metaverse_eeg.signals import labelled_windows, quadrant
    from shared.runtime.training import cached_arrays, config_key, source_hash

    here = Path(__file__).parent
    key = config_key({"n": n_users, "k": per_user, "s": seed,
                      "src": source_hash([here / "signals.py", here / "features.py"])})

    def build() -> dict[str, np.ndarray]:
        eeg, affect, groups = labelled_windows(n_users, per_user, seed)
        x = np.stack([to_vector(extract_window(w)) for w in eeg])
        y = np.array([quadrant(v, a) for v, a in affect])
        return {"x": x, "y": y, "groups": groups, "affect": affect}

    return cached_arrays(cache / f"labelled-{key}.npz", build)


def evaluate_controllers(cfg: SessionConfig, tiny: Any, agent: Any, teacher: bool = True) -> dict[str, Any]:
    """Closed-loop sessions of the same held-out users under each controller -> figures per controller."""
    from metaverse_eeg import agent as ag
    from metaverse_eeg.signals import simulate_users

    arms = {"none": ag.none_policy, "rule": ag.rule_policy, "agent": agent.policy}
    if teacher:
        arms["teacher"] = ag.teacher_policy()
    out = {}
    for name, policy in arms.items():
        log = ag.run_session(simulate_users(cfg), tiny, policy, cfg.times_s, seq_len=agent.seq_len)
        for k, v in ag.evaluate_log(log).items():
            out[f"{name}_{k}"] = v
    return out


def train_all(models_dir: Path = DEFAULT_MODELS_DIR, cfg: TrainConfig | None = None, quick: bool = False
              ) -> dict[str, Any]:
    from metaverse_eeg import tiny as tn
    from metaverse_eeg.agent import AgentPredictor, train_agent
    from metaverse_eeg.signals import simulate_users
    from shared.progress import progress
    from shared.runtime.training import write_stamp

    cfg = cfg or (TrainConfig.quick() if quick else TrainConfig())
    quick = quick or cfg == TrainConfig.quick()
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    tr = _features(cfg.tiny_train_users, cfg.windows_per_user, cfg.tiny_seeds[0], models_dir / "cache")
    te = _features(cfg.tiny_test_users, cfg.windows_per_user, cfg.tiny_seeds[1], models_dir / "cache")
    t_data = time.monotonic() - t0
    res = tn.train_tiny(cfg.tiny, tr["x"], tr["y"], tr["groups"], te["x"], te["y"], te["groups"])
    tn.save_tiny(res, models_dir)
    tiny = tn.TinyModel(res.tflite, version=res.version)
    t_tiny = time.monotonic() - t0 - t_data

    ac = cfg.agent
    base = cfg.agent_session

    def make_users(round_: int) -> list:
        return simulate_users(SessionConfig(n_users=base.n_users, duration_h=base.duration_h,
                                            seed=base.seed + 1000 * round_))

    with progress(total=ac.epochs * (ac.dagger_rounds + 1), desc="agent (DAgger)", unit="epoch") as bar:
        model, am = train_agent(ac, make_users, tiny, base.times_s, bar=bar)
    model.save_pretrained(str(models_dir / "large"))
    t_agent = time.monotonic() - t0 - t_data - t_tiny
    ev = evaluate_controllers(cfg.eval_session, tiny, AgentPredictor(model), cfg.eval_teacher)
    t_total = time.monotonic() - t0
    m = res.metrics
    metrics = {
        "tiny_float_acc": m["float_acc"], "tiny_int8_acc": m["int8_acc"], "valence_acc": m["valence_acc"],
        "arousal_acc": m["arousal_acc"], "chance_acc": m["chance_acc"], "chance_binary_acc": m["chance_binary_acc"],
        "tiny_int8_float_agreement": m["int8_float_agreement"],
        "tiny_per_user_int8_acc_p10_p50_p90": m["per_user_int8_acc_p10_p50_p90"],
        "tiny_model_id": m["model_id"], "tiny_weights_bytes": m["weights_bytes"], "tiny_arena_bytes": m["arena_bytes"],
        "tiny_train_users": m["n_train_users"], "tiny_test_users": m["n_test_users"],
        "agent_model_id": DOMAIN.model_ids[1], **am, **ev,
        "eval_users": cfg.eval_session.n_users, "eval_session_h": cfg.eval_session.duration_h,
        "time_data_s": round(t_data, 1), "time_tiny_s": round(t_tiny, 1), "time_agent_s": round(t_agent, 1),
        "time_total_s": round(t_total, 1), "quick": quick, "tiny": m,
    }
    metrics = json.loads(json.dumps(metrics, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))
    write_stamp(models_dir, cfg.key(), metrics, quick)
    return metrics


def ensure_trained(models_dir: Path = DEFAULT_MODELS_DIR, quick: bool = False, cfg: TrainConfig | None = None
                   ) -> dict[str, Any]:
    """Metrics of the models in models_dir, training first if the stamp is missing or stale (with
    ``quick``, fully trained models are accepted too)."""
    from shared.runtime import training

    cfg = cfg or (TrainConfig.quick() if quick else TrainConfig())
    also = {TrainConfig().key()} if quick else set()
    return training.ensure_trained(Path(models_dir), cfg.key(), lambda: train_all(models_dir, cfg, quick=quick),
                                   OUTPUTS, also)

