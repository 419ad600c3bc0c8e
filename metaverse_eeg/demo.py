"""``make demo-metaverse_eeg``: EEG headsets -> MQTT -> the interaction agent -> the world adapts -> users feel it.

With no endpoints given it starts the embedded broker and a fresh SQLite file under
``out/demo-metaverse_eeg/``. Users the models never saw share one virtual world for a simulated
session. Every 10 s of session time each user's headset takes the last 4 s of EEG, runs the DSP and
the int8 affect model and publishes; some headsets run the C firmware (host, and Cortex-M4 under QEMU
behind the gateway). The cloud stores everything and the agent answers every window with an action on
the ``action`` stream. The world client subscribes to the actions, applies them to each user's scene
(the users' affect responds) and publishes the scene back on the ``scene`` stream, which the agent
reads at the next window: the loop is closed through the broker. A faulty client sends malformed
messages that must end in the dead-letter topic; halfway the cloud rolls out a signed model update to
the simulated headsets (one tampered copy is refused).

At the end the demo checks that every published inference was stored exactly once, measures the
headsets' live estimates against the users' true affect, runs the same users (same seeds, same world
events) in closed loop with no adaptation and with the rule controller, and writes ``summary.json``
and a plot of one user.
"""

from __future__ import annotations

import argparse
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DOMAIN = "metaverse_eeg"
BAD_PAYLOADS: tuple[tuple[str, bytes], ...] = (
    ("tinylarge/metaverse_eeg/u999/inference", b"{not json"),
    ("tinylarge/metaverse_eeg/u999/inference",
     b'{"v":1,"device":"u999","seq":0,"ts":1,"model":"eeg-tiny@1","window_s":4,"valence":7}'),
    ("tinylarge/metaverse_eeg/u999/scene", b'{"v":1,"device":"u999","seq":0,"ts":1,"model":"world@1","pace":3}'),
)


def quick_argv() -> list[str]:
    """A small run (CI, the contract tests): quick models, 3 users, 5 simulated minutes."""
    return ["--users", "3", "--minutes", "5", "--quick-train"]


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    from shared.cli import add_endpoint_args
    from shared.runtime.demo import firmware_counts

    ap = argparse.ArgumentParser(prog="tinylarge demo metaverse_eeg", description=__doc__.splitlines()[0])
    add_endpoint_args(ap)
    ap.add_argument("--users", type=int, default=8, help="users in the world (default 8)")
    ap.add_argument("--minutes", type=float, default=30.0, help="simulated session minutes (default 30)")
    ap.add_argument("--seed", type=int, default=2026, help="demo users' seed (not a training seed)")
    ap.add_argument("--models", type=Path, default=Path("models/metaverse_eeg"), help="trained models folder")
    ap.add_argument("--out", type=Path, default=Path("out/demo-metaverse_eeg"), help="output folder")
    ap.add_argument("--quick-train", action="store_true", help="if models are missing, train small ones fast")
    ap.add_argument("--firmware", default="auto", help="how many headsets run the C firmware; 'auto' = 2 when "
                    "gcc is installed and the app is built for this domain, else 0")
    ap.add_argument("--qemu", default="auto", help="how many of those run the Cortex-M4 build under QEMU; 'auto' "
                    "= 1 when arm-none-eabi-gcc and qemu-system-arm are installed")
    ap.add_argument("--action-timeout-s", type=float, default=30.0, help="longest wait for a tick's actions")
    args = ap.parse_args(argv)
    if args.users < 2 or not args.minutes > 0:
        ap.error("--users must be >= 2 and --minutes > 0")
    args.firmware, args.qemu = firmware_counts(ap.prog, args.firmware, args.qemu, args.users)
    return args


class World:
    """The world client: applies the agent's actions to each user's scene and publishes the scenes."""

    def __init__(self, args: argparse.Namespace, mqtt: str, users: Sequence) -> None:
        from shared.protocol.messages import decode, parse_topic
        from shared.runtime.app import client_config, publisher
        from shared.transport.mqtt import MqttClient

        self.users = {u.id: u for u in users}
        self.client = MqttClient(client_config(args, mqtt, "tinylarge-metaverse_eeg-world", clean_session=True))
        self.inbox: queue.Queue = queue.Queue()
        self._decode, self._parse = decode, parse_topic
        self._publisher = publisher
        self.publish = None
        self.scene_seq = 0

    def start(self) -> None:
        self.client.start()
        self.publish = self._publisher(self.client, DOMAIN)

        def on_action(topic: str, payload: bytes) -> None:
            try:
                t = self._parse(topic)
                self.inbox.put(self._decode(DOMAIN, t.stream, payload))
            except Exception:  # noqa: BLE001 - a bad action is not applied; counted by the wait
                pass

        self.client.subscribe(f"tinylarge/{DOMAIN}/+/action", on_action)

    def publish_scenes(self, ts_ms: int, applied: dict[str, str]) -> None:
        from metaverse_eeg.device import scene_message

        for u in self.users.values():
            self.publish(u.id, "scene", scene_message(u, self.scene_seq, ts_ms, applied.get(u.id, "none")))
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


def _wait(pred, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


def run(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from metaverse_eeg import _report
    from metaverse_eeg import agent as ag
    from metaverse_eeg.device import fleet as make_fleet
    from metaverse_eeg.service import run_cloud
    from metaverse_eeg.signals import SessionConfig, in_zone, simulate_users
    from metaverse_eeg.tiny import TinyModel
    from metaverse_eeg.train import ensure_trained
    from shared.runtime.app import endpoints, publisher
    from shared.runtime.demo import percentiles_ms, print_table, roll_out_update, wait_stored, write_summary
    from shared.runtime.fleet import utc_midnight_ms
    from shared.security.model_update import generate_keypair
    from shared.transport.mqtt import MqttClient, MqttConfig

    args.out.mkdir(parents=True, exist_ok=True)
    metrics = ensure_trained(args.models, quick=args.quick_train)
    db = args.out / "tinylarge.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    cfg = SessionConfig(n_users=args.users, duration_h=args.minutes / 60.0, seed=args.seed)
    users = simulate_users(cfg)
    tiny = TinyModel.load(args.models)
    day0_ms = utc_midnight_ms(days_ago=1)
    ticks = cfg.times_s
    print(f"world: {len(users)} users x {args.minutes:g} min, a window every {cfg.window_every_s:g} s", flush=True)

    sent_at: dict[tuple[str, int], float] = {}
    done_at: dict[tuple[str, int], float] = {}
    actions: list[dict] = []
    lock = threading.Lock()
    truth: dict[tuple[str, int], tuple[float, float]] = {}
    affect = {u.id: [] for u in users}
    scenes = {u.id: [] for u in users}
    chosen = {u.id: [] for u in users}
    changed = {u.id: [] for u in users}
    events = {u.id: [] for u in users}
    missing = 0

    last_seq: dict[str, int] = {}

    def on_publish(device: str, seq: int) -> None:
        sent_at[(device, seq)] = time.perf_counter()
        last_seq[device] = seq

    def on_action(msg: dict) -> None:
        with lock:
            done_at[(msg["device"], msg["source_seq"])] = time.perf_counter()
            actions.append(msg)

    with endpoints(args, default_store=f"sqlite:///{db}") as ep, \
            run_cloud(args, ep.mqtt, ep.store, args.models, on_action=on_action) as cloud:
        print(f"broker {ep.mqtt}   store {ep.store}", flush=True)
        private_key, public_key = generate_keypair(args.out / "keys", overwrite=True)
        world = World(args, ep.mqtt, users)
        world.start()
        nodes = make_fleet(args, ep.mqtt, users[args.firmware:], args.models, day0_ms, on_publish=on_publish,
                           trusted_key=public_key)
        nodes.start()
        firmware = _firmware_fleet(args, ep.mqtt, users[:args.firmware], day0_ms, on_publish, public_key) \
            if args.firmware else None
        faulty = MqttClient(MqttConfig(url=ep.mqtt, client_id="tinylarge-eeg-faulty", clean_session=True))
        faulty.start()
        bad_at = {len(ticks) * (k + 1) // (len(BAD_PAYLOADS) + 1): bad for k, bad in enumerate(BAD_PAYLOADS)}
        applied: dict[str, str] = {}
        t0 = time.monotonic()
        for i, t_s in enumerate(tqdm(ticks, desc="session ticks (10 s)", unit="tick", disable=None)):
            for u in users:
                u.advance(float(t_s))
                truth[(u.id, i)] = (u.v, u.a)
                affect[u.id].append((u.v, u.a))
                scenes[u.id].append(u.scene.as_dict())
                events[u.id].append(u.scene.event)
            ts_ms = day0_ms + int(round(t_s * 1000))
            world.publish_scenes(ts_ms, applied)
            want = len(users) * (i + 1)
            _wait(lambda want=want: cloud.service.counts["scenes"] >= want, 10.0)
            nodes.step_all(float(t_s))
            if firmware is not None:
                firmware.step_all(float(t_s))
            if i in bad_at:
                faulty.publish(*bad_at[i], qos=1)
            if i == len(ticks) // 2:
                name, _, version = tiny.model_id.rpartition("@")
                roll_out_update(publisher(cloud.client, DOMAIN), DOMAIN, [d.id for d in nodes.devices], name,
                                int(version) + 1, (args.models / "tiny.tflite").read_bytes(), private_key)
            got = world.collect(dict(last_seq), args.action_timeout_s)
            missing += len(users) - len(got)
            applied = {}
            for u in users:
                act = got[u.id]["action"] if u.id in got else "none"
                chosen[u.id].append(act)
                changed[u.id].append(u.act(act))
                applied[u.id] = act
        nodes.stop()
        faulty.stop()
        fw_published = firmware.stop() if firmware is not None else 0
        published = nodes.published + fw_published
        stored = wait_stored(cloud, published, len(BAD_PAYLOADS), timeout_s=120.0)
        wall_s = time.monotonic() - t0
        world.stop()
        consumer_counts = dict(cloud.consumer.counts)
        service_counts = dict(cloud.service.counts)
        estimates = {(p.device, p.seq): (p.fields.get("valence"), p.fields.get("arousal"))
                     for u in users for p in cloud.store.query("inference", u.id)}
        store_points = {m: cloud.store.count(m) for m in ("eeg_features", "inference", "scene", "action")}

    live = ag.SessionLog([np.zeros((len(ticks), ag.N_STEP))] * len(users), [np.asarray(affect[u.id]) for u in users],
                         [chosen[u.id] for u in users], [changed[u.id] for u in users],
                         [events[u.id] for u in users], [[] for _ in users], float(ticks[-1] / 3600.0))
    agent_eval = ag.evaluate_log(live)
    base = {}
    for name, policy in (("none", ag.none_policy), ("rule", ag.rule_policy)):
        base[name] = ag.evaluate_log(ag.run_session(simulate_users(cfg), tiny, policy, ticks))
    summary = {
        "devices": len(users), "simulated_minutes": args.minutes, "wall_s": round(wall_s, 1),
        "firmware_devices": args.firmware, "qemu_devices": args.qemu,
        "published": published, "published_by_firmware": fw_published,
        "received": service_counts.get("inferences", 0), "received_messages": consumer_counts.get("accepted", 0),
        "stored": stored,
        "deadletters": consumer_counts.get("deadletters", 0),
        "duplicates_ignored": service_counts.get("duplicates", 0), "action_messages": len(actions),
        "scenes": service_counts.get("scenes", 0), "actions_missing": missing,
        "alerts": service_counts.get("alerts", 0),
        "model_updates_accepted": nodes.updates["accepted"], "model_updates_rejected": nodes.updates["rejected"],
        "store_points": store_points,
        "tiny_float_acc": metrics.get("tiny_float_acc"), "tiny_int8_acc": metrics.get("tiny_int8_acc"),
        "valence_acc": metrics.get("valence_acc"), "arousal_acc": metrics.get("arousal_acc"),
        "chance_acc": metrics.get("chance_acc"), "chance_binary_acc": metrics.get("chance_binary_acc"),
        **_report.estimate_accuracy(truth, estimates),
        "agent_time_in_zone": agent_eval["time_in_zone"], "rule_time_in_zone": base["rule"]["time_in_zone"],
        "none_time_in_zone": base["none"]["time_in_zone"],
        "actions_per_hour": agent_eval["actions_per_hour"],
        "rule_actions_per_hour": base["rule"]["actions_per_hour"],
        "agent_reaction_s": agent_eval["reaction_s"], "rule_reaction_s": base["rule"]["reaction_s"],
        "agent_recovery_s": agent_eval["recovery_s"], "rule_recovery_s": base["rule"]["recovery_s"],
        "none_recovery_s": base["none"]["recovery_s"],
        "agent": agent_eval, "rule": base["rule"], "none": base["none"],
        "train_agent_time_in_zone": metrics.get("agent_time_in_zone"),
        "train_rule_time_in_zone": metrics.get("rule_time_in_zone"),
        "train_none_time_in_zone": metrics.get("none_time_in_zone"),
        **percentiles_ms(sent_at, done_at),
        "broker": "embedded amqtt" if not (args.mqtt or os.environ.get("TINYLARGE_MQTT")) else "external",
        "store": ep.store.split(":", 1)[0], "quick_models": bool(metrics.get("quick")),
    }
    shown = max(users, key=lambda u: sum(changed[u.id]))
    est = [estimates.get((shown.id, i)) for i in range(len(ticks))]
    plot = _report.plot_user(shown.id, ticks, np.asarray(affect[shown.id]), est, scenes[shown.id], chosen[shown.id],
                             args.out)
    summary["plot"] = str(plot)
    summary["plot_user_in_zone"] = round(float(in_zone(*np.asarray(affect[shown.id]).T).mean()), 4)
    path = write_summary(args.out, summary)
    print_table("metaverse_eeg demo", summary, [
        "devices", "firmware_devices", "published", "received", "stored", "deadletters", "scenes", "actions_missing",
        "model_updates_accepted", "model_updates_rejected", "tiny_float_acc", "tiny_int8_acc", "valence_acc",
        "arousal_acc", "chance_acc", "live_valence_acc", "live_arousal_acc", "agent_time_in_zone",
        "rule_time_in_zone", "none_time_in_zone", "actions_per_hour", "rule_actions_per_hour", "agent_recovery_s",
        "rule_recovery_s", "none_recovery_s", "p50_ms", "p99_ms", "wall_s"])
    print(f"wrote {path} and {plot}", flush=True)
    return summary


def _firmware_fleet(args: argparse.Namespace, mqtt: str, users: Sequence, day0_ms: int, on_publish: object,
                    public_key: Path) -> object:
    """Users whose headset runs the C firmware (host, and Cortex-M4 under QEMU behind the gateway)."""
    from metaverse_eeg.tiny import TinyModel
    from shared.runtime.firmware_fleet import FirmwareFleet

    print(f"building the firmware: {args.firmware - args.qemu} host headset(s), {args.qemu} Cortex-M4 under QEMU",
          flush=True)
    fw = FirmwareFleet(DOMAIN, mqtt, users, args.models, day0_ms, args.out / "firmware", qemu=args.qemu,
                       model_id=TinyModel.load(args.models).model_id, on_publish=on_publish, trusted_key=public_key,
                       args=args)
    fw.build()
    fw.start()
    return fw


def main(argv: Sequence[str] | None = None) -> int:
    summary = run(_args(argv))
    ok = summary["stored"] == summary["published"]
    if not ok:
        print(f"FAILED: stored {summary['stored']} != published {summary['published']}", flush=True)
    return 0 if ok else 1
