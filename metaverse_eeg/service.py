"""The metaverse_eeg cloud service: each user's affect history and scene -> the interaction agent's action.

For every accepted ``inference`` message the platform's subject service (:mod:`shared.runtime.service`)
stores it, appends one step (``metaverse_eeg.agent.step_vector``: the headset's valence and arousal
estimates, the artefact flag and the user's latest scene from the world's ``scene`` stream) to the
user's history and scores all users' histories in batches with the agent. This module holds what is
the domain's:

* measurements ``eeg_features`` (the 85 DSP features), ``inference`` (quadrant, scores, valence,
  arousal, artefact) and ``scene`` (the world's report after applying actions);
* the baseline beside the agent: what the rule controller (``agent.rule_action``) would do now;
* the result, published on ``tinylarge/metaverse_eeg/<user>/action`` and stored as ``action``: the
  agent's action with a short reason, its confidence, the smoothed estimates, the rule's action and
  ``alert``: the platform's alert rule on sustained distress (mean over the last 3 windows of
  P(low valence) x P(high arousal)), for a human moderator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metaverse_eeg import DOMAIN
from metaverse_eeg.agent import N_STEP, AgentPredictor, reason, rule_action, step_vector
from metaverse_eeg.signals import ACTION_NAMES
from shared.protocol.messages import SCHEMA_VERSION, Topic
from shared.runtime.service import Job, ServiceConfig, Subject, SubjectService

DISTRESS_THRESHOLD = 0.45  #: alert when mean P(low valence) x P(high arousal) stays at or above this
DISTRESS_WINDOWS = 3

__all__ = ["EegService", "service_factory", "distress"]


def distress(history: np.ndarray) -> float:
    """Mean over the last 3 steps of P(low valence) x P(high arousal)."""
    last = np.asarray(history)[-3:]
    return float(np.mean((1.0 - last[:, 0]) * last[:, 1]))


class DistressPredictor:
    """The agent's (action, confidence) plus the distress score the alert rule watches."""

    def __init__(self, agent: AgentPredictor):
        self.agent = agent
        self.seq_len = agent.seq_len

    def predict_batch(self, histories: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx, conf = self.agent.predict_batch(histories)
        return idx, conf, np.array([distress(h) for h in histories])


class EegService(SubjectService):
    """metaverse_eeg's hooks on the platform's subject service."""

    domain = DOMAIN.name
    counts_extra = ("scenes",)

    def __init__(self, store: Any, predictor: Any, publish: Callable[[str, str, dict], None],
                 cfg: ServiceConfig | None = None, on_action: Callable[[dict], None] | None = None):
        super().__init__(store, predictor, publish, cfg, model_id=DOMAIN.model_ids[1], result_stream="action",
                         on_result=on_action)

    def inference_points(self, msg: dict) -> list:
        from shared.storage.base import Point

        device, seq, ts = msg["device"], msg["seq"], msg["ts"]
        tags = {"domain": DOMAIN.name, "model": msg["model"]}
        inf = {"class": msg["class"], "valence": msg["valence"], "arousal": msg["arousal"],
               "artefact": msg["artefact"], "window_s": msg["window_s"],
               **{f"p_{k}": v for k, v in msg["scores"].items()}}
        return [Point("eeg_features", device, seq, ts, dict(msg["features"]), tags),
                Point("inference", device, seq, ts, inf, tags)]

    def extra_handlers(self) -> dict[str, Callable[[Topic, dict], None]]:
        return {"scene": self.on_scene}

    def on_scene(self, topic: Topic, msg: dict) -> None:
        from shared.storage.base import Point

        fields = {k: v for k, v in msg.items() if k not in ("v", "device", "seq", "ts", "model")}
        # a scene re-sent with other content under a stored (device, seq) raises (dead-lettered: seq conflict)
        self.write_points([Point("scene", msg["device"], msg["seq"], msg["ts"], fields, {"domain": DOMAIN.name})])
        with self._lock:
            s = self.subject(msg["device"])
            if msg["seq"] >= s.extra.get("scene_seq", -1):
                s.extra["scene"], s.extra["scene_seq"] = fields, msg["seq"]
            self.counts["scenes"] += 1

    def step(self, s: Subject, msg: dict) -> np.ndarray:
        return step_vector(msg["valence"], msg["arousal"], msg["artefact"], s.extra.get("scene", {}))

    def baseline(self, s: Subject, msg: dict) -> str:
        return rule_action(np.stack(list(s.steps)))[0]

    def score_of(self, output: Any) -> float:
        d = float(output[2]) if isinstance(output, tuple | list) and len(output) > 2 else 0.0
        return d if np.isfinite(d) else 0.0

    def result(self, s: Subject, job: Job, output: Any, alert: bool) -> tuple[dict, list]:
        from shared.storage.base import Point

        action = ACTION_NAMES[int(output[0])]
        conf = float(output[1])
        last = np.asarray(job.history)[-3:]
        msg = {"v": SCHEMA_VERSION, "device": s.device, "seq": job.msg["seq"], "ts": job.msg["ts"],
               "model": self.model_id, "action": action, "reason": reason(action, job.history, "agent"),
               "confidence": round(min(1.0, max(0.0, conf)), 4),
               "valence": round(float(last[:, 0].mean()), 4), "arousal": round(float(last[:, 1].mean()), 4),
               "rule_action": job.baseline, "alert": bool(alert), "windows": len(job.history),
               "source_seq": job.msg["seq"]}
        point = Point("action", s.device, job.msg["seq"], job.msg["ts"],
                      {"action": action, "confidence": msg["confidence"], "rule_action": job.baseline,
                       "alert": bool(alert), "distress": round(self.score_of(output), 4)}, {"domain": DOMAIN.name})
        return msg, [point]

    def rebuild_subject(self, device: str) -> int:
        inferences = self.store.query("inference", device)[-self.cfg.history_steps:]
        if not inferences:
            return 0
        scenes = self.store.query("scene", device, start_ms=inferences[0].ts_ms - 60_000)
        s = self.subject(device)
        loaded, k = 0, 0
        for inf in inferences:
            while k < len(scenes) and scenes[k].ts_ms <= inf.ts_ms:
                s.extra["scene"], s.extra["scene_seq"] = dict(scenes[k].fields), scenes[k].seq
                k += 1
            f = inf.fields
            self.append(s, {"seq": inf.seq, "ts": inf.ts_ms, "valence": f.get("valence", 0.5),
                            "arousal": f.get("arousal", 0.5), "artefact": bool(f.get("artefact", False))})
            loaded += 1
        return loaded


def service_factory(models_dir: Path) -> Callable[..., EegService]:
    """``build(store, publish, on_result)``: the service on the interaction agent of ``models_dir``."""
    cfg = ServiceConfig(alert_threshold=DISTRESS_THRESHOLD, alert_windows=DISTRESS_WINDOWS)
    agent = AgentPredictor.load(Path(models_dir) / "large", threads=cfg.torch_threads)
    cfg.history_steps = agent.seq_len
    predictor = DistressPredictor(agent)
    assert agent.model.config.n_inputs == N_STEP

    def build(store: Any, publish: Callable[[str, str, dict], None], on_result: Any = None) -> EegService:
        return EegService(store, predictor, publish, cfg, on_action=on_result)

    return build
