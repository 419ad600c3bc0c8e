"""``make demo-industrial_iot``: vibration nodes -> MQTT -> fleet transformer beside ISO 10816 -> store.

With no endpoints given it starts the embedded broker and a fresh SQLite file under
``out/demo-industrial_iot/``. A plant of machines the models never saw (motors, pumps, fans; some
develop a fault that grows to a functional failure) runs for simulated days on an accelerated clock;
every ``--every-h`` hours each machine's sensor node records a 0.8 s window, runs the DSP and both int8
models (condition classifier, anomaly autoencoder) and publishes; some nodes run the C firmware (host,
and Cortex-M4 under QEMU behind the gateway). A faulty client sends malformed messages that must end
in the dead-letter topic, and halfway through the cloud rolls out a signed model update (one tampered
copy is refused). The cloud stores everything, scores each machine's history with the transformer and
publishes maintenance actions. At the end the demo checks that every published inference was stored
exactly once, scores risk, the ISO zone and the anomaly score against the ground-truth failures, and
writes ``summary.json`` and a plot of one machine degrading.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DOMAIN = "industrial_iot"
BAD_PAYLOADS: tuple[tuple[str, bytes], ...] = (
    ("tinylarge/industrial_iot/m999/inference", b"{not json"),
    ("tinylarge/industrial_iot/m999/inference",
     b'{"v":1,"device":"m999","seq":0,"ts":1,"model":"iot-tiny@1","window_s":0.8,"shaft_hz":-5}'),
    ("tinylarge/industrial_iot/m999/inference", b'{"v":9,"device":"m999","seq":1,"ts":1,"model":"x@1"}'),
)


def quick_argv() -> list[str]:
    """A small run of the demo (CI, the contract tests): quick models, few machines, a few days."""
    return ["--machines", "6", "--days", "6", "--every-h", "6", "--seconds", "10", "--quick-train"]


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    from shared.cli import add_endpoint_args
    from shared.dashboard.demo import add_dashboard_args
    from shared.runtime.demo import firmware_counts

    ap = argparse.ArgumentParser(prog="tinylarge demo industrial_iot", description=__doc__.splitlines()[0])
    add_endpoint_args(ap)
    add_dashboard_args(ap)
    ap.add_argument("--machines", type=int, default=20, help="machines in the plant (default 20)")
    ap.add_argument("--days", type=float, default=21.0, help="simulated days (default 21)")
    ap.add_argument("--every-h", type=float, default=4.0,
                    help="hours between windows of one machine (default 4: the cadence the transformer learned)")
    ap.add_argument("--seconds", type=float, default=60.0, help="wall seconds the simulated span should take")
    ap.add_argument("--seed", type=int, default=2026, help="demo plant seed (not a training seed)")
    ap.add_argument("--models", type=Path, default=Path("models/industrial_iot"), help="trained models folder")
    ap.add_argument("--out", type=Path, default=Path("out/demo-industrial_iot"), help="output folder")
    ap.add_argument("--quick-train", action="store_true", help="if models are missing, train small ones fast")
    ap.add_argument("--firmware", default="auto", help="how many machines run the C firmware (own MQTT client on "
                    "the host); 'auto' = 2 when gcc is installed, else 0")
    ap.add_argument("--qemu", default="auto", help="how many of those run the Cortex-M4 build under QEMU behind "
                    "the gateway; 'auto' = 1 when arm-none-eabi-gcc and qemu-system-arm are installed")
    args = ap.parse_args(argv)
    if args.machines < 2 or not args.days > 0 or not args.every_h > 0:
        ap.error("--machines must be >= 2, --days and --every-h > 0")
    args.firmware, args.qemu = firmware_counts(ap.prog, args.firmware, args.qemu, args.machines)
    return args


def run(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from industrial_iot import _report
    from industrial_iot.device import fleet as make_fleet
    from industrial_iot.service import run_cloud
    from industrial_iot.signals import FleetConfig, simulate_fleet
    from industrial_iot.tiny import TinyModels
    from industrial_iot.train import ensure_trained
    from shared.dashboard.demo import beside_demo
    from shared.protocol.endpoints import redact_url
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
    cfg = FleetConfig(n_machines=args.machines, duration_h=args.days * 24.0, window_every_s=args.every_h * 3600.0,
                      seed=args.seed)
    machines = simulate_fleet(cfg)
    models = TinyModels.load(args.models)
    day0_ms = utc_midnight_ms(days_ago=int(np.ceil(args.days)) + 1)
    print(f"plant: {len(machines)} machines x {args.days:g} days, a window every {args.every_h:g} h "
          f"({sum(m.fault is not None for m in machines)} develop a fault)", flush=True)

    sent_at: dict[tuple[str, int], float] = {}
    done_at: dict[tuple[str, int], float] = {}
    actions: list[dict] = []
    lock = threading.Lock()

    def on_publish(device: str, seq: int) -> None:
        sent_at[(device, seq)] = time.perf_counter()

    def on_action(msg: dict) -> None:
        with lock:
            done_at[(msg["device"], msg["source_seq"])] = time.perf_counter()
            actions.append(msg)

    with endpoints(args, default_store=f"sqlite:///{db}") as ep, \
            run_cloud(args, ep.mqtt, ep.store, args.models, on_action=on_action) as cloud, \
            beside_demo(args, ep.mqtt, ep.store):
        print(f"broker {redact_url(ep.mqtt)}   store {redact_url(ep.store)}", flush=True)
        private_key, public_key = generate_keypair(args.out / "keys", overwrite=True)
        nodes = make_fleet(args, ep.mqtt, machines[args.firmware:], args.models, day0_ms, on_publish=on_publish,
                           trusted_key=public_key)
        nodes.start()
        firmware = None
        if args.firmware:
            firmware = _firmware_fleet(args, ep.mqtt, machines[:args.firmware], day0_ms, on_publish, public_key)
        faulty = MqttClient(MqttConfig(url=ep.mqtt, client_id="tinylarge-iot-faulty", clean_session=True))
        faulty.start()
        ticks = cfg.times_s
        tick_wall_s = args.seconds / max(1, len(ticks))
        bad_at = {len(ticks) * (k + 1) // (len(BAD_PAYLOADS) + 1): bad for k, bad in enumerate(BAD_PAYLOADS)}
        t0 = time.monotonic()
        for i, t_s in enumerate(tqdm(ticks, desc=f"simulated {args.every_h:g}-h ticks", unit="tick", disable=None)):
            nodes.step_all(float(t_s))
            if firmware is not None:
                firmware.step_all(float(t_s))
            if i in bad_at:
                faulty.publish(*bad_at[i], qos=1)
            if i == len(ticks) // 2:
                name, _, version = models.model_id.rpartition("@")
                roll_out_update(publisher(cloud.client, DOMAIN), DOMAIN, [d.id for d in nodes.devices], name,
                                int(version) + 1, (args.models / "tiny.tflite").read_bytes(), private_key)
            time.sleep(max(0.0, t0 + (i + 1) * tick_wall_s - time.monotonic()))
        nodes.stop()
        faulty.stop()
        fw_published = firmware.stop() if firmware is not None else 0
        published = nodes.published + fw_published
        stored = wait_stored(cloud, published, len(BAD_PAYLOADS), timeout_s=120.0)
        wall_s = time.monotonic() - t0
        consumer_counts = dict(cloud.consumer.counts)
        service_counts = dict(cloud.service.counts)
        threshold, windows = cloud.service.rule.threshold, cloud.service.rule.windows
        anomaly_threshold = cloud.service.anomaly_threshold
        store_points = {m: cloud.store.count(m) for m in ("vibration", "inference", "action")}

    evaluation = _report.evaluate(machines, actions, day0_ms, float(metrics.get("horizon_h", 168.0)), threshold,
                                  windows, anomaly_threshold)
    summary = {
        "devices": len(machines), "simulated_days": args.days, "every_h": args.every_h, "wall_s": round(wall_s, 1),
        "firmware_devices": args.firmware, "qemu_devices": args.qemu,
        "published": published, "published_by_firmware": fw_published,
        "received": consumer_counts.get("accepted", 0), "stored": stored,
        "deadletters": consumer_counts.get("deadletters", 0),
        "duplicates_ignored": service_counts.get("duplicates", 0), "action_messages": len(actions),
        "alerts": service_counts.get("alerts", 0),
        "actions": {k: sum(a["action"] == k for a in actions) for k in ("none", "watch", "plan_maintenance",
                                                                        "maintain_now")},
        "model_updates_accepted": nodes.updates["accepted"], "model_updates_rejected": nodes.updates["rejected"],
        "store_points": store_points,
        "tiny_float_acc": metrics.get("tiny_float_acc"), "tiny_int8_acc": metrics.get("tiny_int8_acc"),
        "train_anomaly_auroc": metrics.get("anomaly_auroc"),
        **evaluation,
        "train_risk_auroc": metrics.get("risk_auroc"), "train_iso_auroc": metrics.get("iso_auroc"),
        "train_lead_time_h": metrics.get("lead_time_h"), "train_iso_lead_time_h": metrics.get("iso_lead_time_h"),
        "train_rul_mae_h": metrics.get("rul_mae_h"),
        **percentiles_ms(sent_at, done_at),
        "broker": "embedded amqtt" if not (args.mqtt or os.environ.get("TINYLARGE_MQTT")) else "external",
        "store": ep.store.split(":", 1)[0],
        "quick_models": bool(metrics.get("quick")),
    }
    plot = _report.plot_machine(machines, actions, args.out, day0_ms, threshold)
    summary["plot"] = str(plot)
    path = write_summary(args.out, summary)
    print_table("industrial_iot demo", summary, [
        "devices", "firmware_devices", "published", "received", "stored", "deadletters", "alerts",
        "model_updates_accepted", "model_updates_rejected", "tiny_float_acc", "tiny_int8_acc", "anomaly_auroc",
        "risk_auroc", "iso_auroc", "failures", "detected", "iso_detected", "lead_time_h", "iso_lead_time_h",
        "anomaly_lead_time_h", "false_alert_machines", "iso_false_alert_machines", "rul_mae_h", "p50_ms", "p99_ms",
        "wall_s"])
    print(f"wrote {path} and {plot}", flush=True)
    return summary


def _firmware_fleet(args: argparse.Namespace, mqtt: str, machines: Sequence, day0_ms: int, on_publish: object,
                    public_key: Path) -> object:
    """Machines whose sensor node runs the C firmware (host, and Cortex-M4 under QEMU behind the gateway)."""
    from shared.runtime.firmware_fleet import FirmwareFleet

    print(f"building the firmware: {args.firmware - args.qemu} host node(s), {args.qemu} Cortex-M4 under QEMU",
          flush=True)
    from industrial_iot.tiny import TinyModels

    def provisioned(machine) -> list[str]:  # what the node is mounted on (firmware/apps/industrial_iot/iot_spec.c)
        b = machine.bearing.as_dict()
        return ["--n-balls", str(int(b["n_balls"])), "--ball-d", repr(float(b["ball_d"])), "--pitch-d",
                repr(float(b["pitch_d"])), "--contact-deg", repr(float(b["contact_deg"])),
                "--iso-group", str(int(machine.iso_group)), "--foundation", str(machine.foundation)]

    models = TinyModels.load(args.models)
    fw = FirmwareFleet(DOMAIN, mqtt, machines, args.models, day0_ms, args.out / "firmware", qemu=args.qemu,
                       models=("tiny.tflite", "anomaly.tflite"), model_id=models.model_id,
                       model_ids=(models.anomaly_model_id,), on_publish=on_publish, trusted_key=public_key,
                       args=args, device_args=provisioned)
    fw.build()
    fw.start()
    return fw


def main(argv: Sequence[str] | None = None) -> int:
    summary = run(_args(argv))
    ok = summary["stored"] == summary["published"]
    if not ok:
        print(f"FAILED: stored {summary['stored']} != published {summary['published']}", flush=True)
    return 0 if ok else 1
