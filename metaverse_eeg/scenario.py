"""The metaverse_eeg demo: users the models never saw share one virtual world, in closed loop through the broker.

Every 10 s of session time each user's headset takes the last 4 s of EEG, runs the DSP and the int8
affect model and publishes; the agent answers every window with an action. The world client (here)
subscribes to the actions, applies them to each user's scene (the users' affect responds) and publishes
the scenes back on the ``scene`` stream, which the agent reads at the next window. The demo runs as fast
as that loop allows (no wall-clock pacing unless ``--speed`` asks for it).

The verdict: the headsets' live estimates against the users' true affect, time in the target zone under
the agent beside the same users (same seeds, same world events) re-simulated with no adaptation and
with the rule controller, and the training run's held-out figures; the plot shows one user.
"""

from __future__ import annotations

import argparse
import queue
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metaverse_eeg import DOMAIN
from shared.runtime.scenario import Defaults, Scenario, format_duration


class World:
    """The world client: applies the agent's actions to each user's scene and publishes the scenes."""

    def __init__(self, args: argparse.Namespace, mqtt: str, users: Sequence[Any]) -> None:
        from shared.runtime.app import client_config
        from shared.transport.mqtt import MqttClient

        self.users = {u.id: u for u in users}
        self.client = MqttClient(client_config(args, mqtt, f"tinylarge-{DOMAIN.name}-world", clean_session=True))
        self.inbox: queue.Queue = queue.Queue()
        self.publish: Callable[[str, str, dict], None] | None = None
        self.scene_seq = 0

    def start(self) -> None:
        from shared.protocol.messages import decode, parse_topic
        from shared.runtime.app import publisher

        self.client.start()
        self.publish = publisher(self.client, DOMAIN.name)

        def on_action(topic: str, payload: bytes) -> None:
            try:
                self.inbox.put(decode(DOMAIN.name, parse_topic(topic).stream, payload))
            except Exception:  # noqa: BLE001 - a bad action is not applied; counted by the wait
                pass

        self.client.subscribe(f"tinylarge/{DOMAIN.name}/+/{DOMAIN.result_stream}", on_action)

    def publish_scenes(self, ts_ms: dict[str, int], applied: dict[str, str]) -> None:
        from metaverse_eeg.device import scene_message

        assert self.publish is not None
        for u in self.users.values():
            self.publish(u.id, "scene", scene_message(u, self.scene_seq, ts_ms[u.id], applied.get(u.id, "none")))
        self.scene_seq += 1

    def collect(self, seqs: dict[str, int], timeout_s: float) -> dict[str, dict]:
        """The actions answering each user's window ``seqs[user]`` (the seq its headset just published;
        headsets count from their boot, not from the tick), waiting up to timeout_s."""
        got: dict[str, dict] = {}
        deadline = time.monotonic() + timeout_s
        while len(got) < len(self.users) and time.monotonic() < deadline:
            try:
                msg = self.inbox.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if msg["device"] in self.users and msg["source_seq"] == seqs.get(msg["device"]):
                got[msg["device"]] = msg
        return got

    def stop(self) -> None:
        self.client.stop()


class WorldScenario(Scenario):
    full = Defaults(subjects=8, duration="30m", wall_s=0.0, extra={"action_timeout_s": 30.0})
    quick = Defaults(subjects=3, duration="5m", wall_s=0.0)
    measurements = ("eeg_features", "scene")
    table = ("scenes", "actions_missing", "valence_acc", "arousal_acc", "chance_acc", "live_valence_acc",
             "live_arousal_acc", "agent_time_in_zone", "rule_time_in_zone", "none_time_in_zone", "actions_per_hour",
             "rule_actions_per_hour", "agent_recovery_s", "rule_recovery_s", "none_recovery_s")

    @classmethod
    def add_arguments(cls, ap: argparse.ArgumentParser) -> None:
        """``--action-timeout-s``: how long the world waits for the agent's answers to one tick's windows."""
        ap.add_argument("--action-timeout-s", type=float, default=None,
                        help=f"longest wait for a tick's actions (default {cls.full.extra['action_timeout_s']:g})")

    @classmethod
    def check_arguments(cls, args: argparse.Namespace) -> str | None:
        if args.action_timeout_s > 0:
            return None
        return f"--action-timeout-s: must be > 0, got {args.action_timeout_s}"

    # -- the users and their clock ---------------------------------------------------------------------
    def population(self) -> Sequence[Any]:
        """The session's users (``self.cfg``: the session, re-simulated for the baselines)."""
        from metaverse_eeg.signals import SessionConfig, simulate_users

        self.cfg = SessionConfig(n_users=self.args.subjects, duration_h=self.run.duration_s / 3600.0,
                                 seed=self.args.seed)
        self.users = simulate_users(self.cfg)
        return self.users

    def ticks(self) -> Sequence[float]:
        return [float(t) for t in self.cfg.times_s]

    def describe(self) -> str:
        every_s, span = self.cfg.window_every_s, format_duration(self.run.duration_s)
        return f"world: {len(self.users)} users x {span}, a window every {every_s:g} s"

    def firmware_options(self, subjects: Sequence[Any]) -> dict[str, Any]:
        from metaverse_eeg.tiny import TinyModel

        return {"model_id": TinyModel.load(self.args.models).model_id}

    # -- the closed loop -------------------------------------------------------------------------------
    def start(self) -> None:
        ids = [u.id for u in self.users]
        self.truth: dict[tuple[str, int], tuple[float, float]] = {}
        self.tick_of: dict[tuple[str, int], int] = {}  #: (user, seq of its headset's window) -> tick
        self.affect: dict[str, list] = {k: [] for k in ids}
        self.scenes: dict[str, list] = {k: [] for k in ids}
        self.chosen: dict[str, list] = {k: [] for k in ids}
        self.changed: dict[str, list] = {k: [] for k in ids}
        self.events: dict[str, list] = {k: [] for k in ids}
        self.applied: dict[str, str] = {}
        self.missing = 0
        self.world = World(self.args, self.run.mqtt, self.users)
        self.world.start()

    def before_tick(self, i: int, t_s: float) -> None:
        """The users live up to ``t_s``; the world publishes their scenes; the agent has them before the windows."""
        for u in self.users:
            u.advance(t_s)
            self.truth[(u.id, i)] = (u.v, u.a)
            self.affect[u.id].append((u.v, u.a))
            self.scenes[u.id].append(u.scene.as_dict())
            self.events[u.id].append(u.scene.event)
        self.world.publish_scenes({u.id: self.run.start_ms[u.id] + int(round(t_s * 1000)) for u in self.users},
                                  self.applied)
        want, deadline = len(self.users) * (i + 1), time.monotonic() + 10.0
        while self.run.cloud.service.counts["scenes"] < want and time.monotonic() < deadline:
            time.sleep(0.005)

    def after_tick(self, i: int, t_s: float) -> None:
        """The actions answering each user's window, applied to the user's scene (the next tick publishes it)."""
        seqs = dict(self.run.last_seq)
        got = self.world.collect(seqs, self.args.action_timeout_s)
        self.missing += len(self.users) - len(got)
        self.applied = {}
        for u in self.users:
            act = got[u.id]["action"] if u.id in got else "none"
            self.chosen[u.id].append(act)
            self.changed[u.id].append(u.act(act))
            self.applied[u.id] = act
            if u.id in seqs:
                self.tick_of[(u.id, seqs[u.id])] = i

    def finish(self) -> dict[str, Any]:
        """The headsets' estimates as the service stored them, by tick."""
        cloud = self.run.cloud
        self.estimates: dict[tuple[str, int], tuple] = {}
        for p in (p for u in self.users for p in cloud.store.query("inference", u.id)):
            tick = self.tick_of.get((p.device, p.seq))
            if tick is not None:
                self.estimates[(p.device, tick)] = (p.fields.get("valence"), p.fields.get("arousal"))
        return {"simulated_minutes": round(self.run.duration_s / 60.0, 4), "scenes": cloud.service.counts["scenes"],
                "actions_missing": self.missing}

    def stop(self) -> None:
        world = getattr(self, "world", None)
        if world is not None:
            world.stop()

    # -- the verdict -----------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, Any]:
        from metaverse_eeg import _report
        from metaverse_eeg import agent as ag
        from metaverse_eeg.signals import in_zone, simulate_users
        from metaverse_eeg.tiny import TinyModel

        users, ticks, m = self.users, np.asarray(self.run.ticks), self.run.metrics
        live = ag.SessionLog([np.zeros((len(ticks), ag.N_STEP))] * len(users),
                             [np.asarray(self.affect[u.id]) for u in users], [self.chosen[u.id] for u in users],
                             [self.changed[u.id] for u in users], [self.events[u.id] for u in users],
                             [[] for _ in users], float(ticks[-1] / 3600.0))
        agent_eval = ag.evaluate_log(live)
        tiny = TinyModel.load(self.args.models)
        base = {name: ag.evaluate_log(ag.run_session(simulate_users(self.cfg), tiny, policy, ticks))
                for name, policy in (("none", ag.none_policy), ("rule", ag.rule_policy))}
        self.shown = max(users, key=lambda u: sum(self.changed[u.id]))
        return {
            **{k: m.get(k) for k in ("valence_acc", "arousal_acc", "chance_acc", "chance_binary_acc")},
            **_report.estimate_accuracy(self.truth, self.estimates),
            "agent_time_in_zone": agent_eval["time_in_zone"], "rule_time_in_zone": base["rule"]["time_in_zone"],
            "none_time_in_zone": base["none"]["time_in_zone"],
            "actions_per_hour": agent_eval["actions_per_hour"],
            "rule_actions_per_hour": base["rule"]["actions_per_hour"],
            "agent_reaction_s": agent_eval["reaction_s"], "rule_reaction_s": base["rule"]["reaction_s"],
            "agent_recovery_s": agent_eval["recovery_s"], "rule_recovery_s": base["rule"]["recovery_s"],
            "none_recovery_s": base["none"]["recovery_s"],
            "agent": agent_eval, "rule": base["rule"], "none": base["none"],
            **{f"train_{k}": m.get(k) for k in ("agent_time_in_zone", "rule_time_in_zone", "none_time_in_zone")},
            "plot_user_in_zone": round(float(in_zone(*np.asarray(self.affect[self.shown.id]).T).mean()), 4),
        }

    def plot(self) -> Path | None:
        from metaverse_eeg import _report

        u = self.shown
        est = [self.estimates.get((u.id, i)) for i in range(len(self.run.ticks))]
        return _report.plot_user(u.id, np.asarray(self.run.ticks), np.asarray(self.affect[u.id]), est,
                                 self.scenes[u.id], self.chosen[u.id], self.run.out)
