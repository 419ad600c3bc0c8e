"""``make demo-healthcare``: wearables -> MQTT -> transformer risk beside NEWS2 -> store, end to end.

With no endpoints given it starts the embedded broker and a fresh SQLite file under
``out/demo-healthcare/``. Twenty simulated patients (a cohort the models never saw) wear a wrist device
for 24 simulated hours on an accelerated clock; every 5 minutes each device runs the DSP and the int8
model on a 30 s window and publishes; the ward EHR publishes nurse charts every ~4 h; a faulty client
sends a few malformed messages that must end in the dead-letter topic. The cloud service stores
everything and publishes risk. At the end the demo checks that every published inference was stored
exactly once, scores the risk against the ground-truth events (and NEWS2 against the same), and writes
``summary.json`` and a plot of one deteriorating patient.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from healthcare._report import evaluate, plot_patient, print_table
from healthcare.service import Cloud
from shared.runtime.demo import percentiles_ms, wait_stored

DOMAIN = "healthcare"
BAD_PAYLOADS: tuple[tuple[str, bytes], ...] = (
    ("tinylarge/healthcare/p999/inference", b"{not json"),
    ("tinylarge/healthcare/p999/inference",
     b'{"v":1,"device":"p999","seq":0,"ts":1,"model":"hc-tiny@1","window_s":30,"vitals":{"hr_bpm":900}}'),
    ("tinylarge/healthcare/p999/inference", b'{"v":7,"device":"p999","seq":1,"ts":1,"model":"x@1"}'),
)


def quick_argv() -> list[str]:
    """A small run of the demo (CI, the contract tests): quick models, 4 wearables, 6 hours."""
    return ["--patients", "4", "--hours", "6", "--seconds", "4", "--quick-train"]


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    from shared.cli import add_endpoint_args
    from shared.dashboard.demo import add_dashboard_args

    ap = argparse.ArgumentParser(prog="tinylarge demo healthcare", description=__doc__.splitlines()[0])
    add_endpoint_args(ap)
    add_dashboard_args(ap)
    ap.add_argument("--patients", type=int, default=20, help="number of wearables (default 20)")
    ap.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    ap.add_argument("--seconds", type=float, default=60.0, help="wall seconds the simulated span should take")
    ap.add_argument("--seed", type=int, default=2026, help="demo cohort seed (not a training seed)")
    ap.add_argument("--models", type=Path, default=Path("models/healthcare"), help="trained models folder")
    ap.add_argument("--out", type=Path, default=Path("out/demo-healthcare"), help="output folder")
    ap.add_argument("--quick-train", action="store_true", help="if models are missing, train small ones fast")
    ap.add_argument("--firmware", default="auto", help="how many wearables run the C firmware on the host "
                    "(own MQTT client); 'auto' = 2 when gcc is installed, else 0")
    ap.add_argument("--qemu", default="auto", help="how many of those run the Cortex-M4 build under QEMU behind the "
                    "serial gateway; 'auto' = 1 when arm-none-eabi-gcc and qemu-system-arm are installed")
    args = ap.parse_args(argv)
    args.firmware, args.qemu = _firmware_counts(args.firmware, args.qemu, args.patients)
    return args


def _firmware_counts(firmware: str, qemu: str, patients: int) -> tuple[int, int]:
    from shared.runtime.demo import firmware_counts

    return firmware_counts("tinylarge demo healthcare", firmware, qemu, patients)


def run(args: argparse.Namespace) -> dict:
    from healthcare.device import Fleet, utc_midnight_ms
    from healthcare.service import run_cloud
    from healthcare.signals import CohortConfig, simulate_cohort
    from healthcare.tiny import TinyModel
    from healthcare.train import ensure_trained
    from shared.dashboard.demo import beside_demo
    from shared.protocol.endpoints import redact_url
    from shared.runtime.app import endpoints
    from shared.security.model_update import generate_keypair
    from shared.transport.mqtt import MqttClient, MqttConfig

    args.out.mkdir(parents=True, exist_ok=True)
    metrics = ensure_trained(args.models, quick=args.quick_train)
    db = args.out / "tinylarge.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)

    cfg = CohortConfig(n_patients=args.patients, duration_h=args.hours, seed=args.seed)
    print(f"simulating {cfg.n_patients} patients x {cfg.duration_h:g} h (seed {cfg.seed}) ...", flush=True)
    cohort = simulate_cohort(cfg)
    tiny = TinyModel.load(args.models)
    day0_ms = utc_midnight_ms(days_ago=2)

    sent_at: dict[tuple[str, int], float] = {}
    risk_at: dict[tuple[str, int], float] = {}
    risks: list[dict] = []
    lock = threading.Lock()

    def on_publish(device: str, seq: int) -> None:
        sent_at[(device, seq)] = time.perf_counter()

    def on_risk(msg: dict) -> None:
        with lock:
            risk_at[(msg["device"], msg["source_seq"])] = time.perf_counter()
            risks.append(msg)

    with endpoints(args, default_store=f"sqlite:///{db}") as ep, \
            run_cloud(args, ep.mqtt, ep.store, args.models, on_risk=on_risk) as cloud, \
            beside_demo(args, ep.mqtt, ep.store):
        print(f"broker {redact_url(ep.mqtt)}   store {redact_url(ep.store)}", flush=True)
        private_key, public_key = generate_keypair(args.out / "keys", overwrite=True)
        fleet = Fleet(args, ep.mqtt, cohort[args.firmware:], tiny, day0_ms, on_publish=on_publish,
                      trusted_key=public_key)
        fleet.start()
        firmware = None
        if args.firmware:
            from healthcare.device import admission_epoch_ms, chart_feed
            from shared.runtime.firmware_fleet import FirmwareFleet

            print(f"building the firmware: {args.firmware - args.qemu} host wearable(s), {args.qemu} Cortex-M4 "
                  "under QEMU", flush=True)
            firmware = FirmwareFleet("healthcare", ep.mqtt, cohort[:args.firmware], args.models, day0_ms,
                                     args.out / "firmware", qemu=args.qemu, start_ms=admission_epoch_ms,
                                     site=chart_feed, on_publish=on_publish, trusted_key=public_key, args=args)
            firmware.build()
            firmware.start()
        faulty = MqttClient(MqttConfig(url=ep.mqtt, client_id="tinylarge-hc-faulty", clean_session=True))
        faulty.start()
        ticks = np.arange(cfg.window_s, cfg.duration_h * 3600 + 1e-6, cfg.window_every_s)
        tick_wall_s = args.seconds / max(1, len(ticks))
        bad_at = {len(ticks) * (k + 1) // (len(BAD_PAYLOADS) + 1): bad for k, bad in enumerate(BAD_PAYLOADS)}
        t0 = time.monotonic()
        from tqdm import tqdm

        for i, t_s in enumerate(tqdm(ticks, desc="simulated 5-min ticks", unit="tick", disable=None)):
            fleet.step_all(float(t_s))
            if firmware is not None:
                firmware.step_all(float(t_s))
            if i in bad_at:
                faulty.publish(*bad_at[i], qos=1)
            if i == len(ticks) // 2:
                _roll_out_update(cloud, fleet.cohort, args.models, tiny, private_key)
            time.sleep(max(0.0, t0 + (i + 1) * tick_wall_s - time.monotonic()))
        fleet.stop()
        faulty.stop()
        fw_published = firmware.stop() if firmware is not None else 0
        published = fleet.published + fw_published
        charts = fleet.charts_published + (firmware.site_published if firmware is not None else 0)
        stored = wait_stored(cloud, published, len(BAD_PAYLOADS))
        wall_s = time.monotonic() - t0
        consumer_counts = dict(cloud.consumer.counts)
        alert_threshold = cloud.service.cfg.alert_threshold
        alert_windows = cloud.service.cfg.alert_windows
        service_counts = dict(cloud.service.counts)
        store_points = {m: cloud.store.count(m) for m in ("vitals", "inference", "risk", "chart")}

    start_ms = {**fleet.start_ms, **(firmware.start_ms if firmware is not None else {})}
    evaluation = evaluate(cohort, risks, start_ms, horizon_h=float(metrics.get("horizon_h", 6.0)),
                          alert_threshold=alert_threshold, alert_windows=alert_windows)
    summary = {
        "devices": len(cohort),
        "simulated_h": cfg.duration_h,
        "wall_s": round(wall_s, 1),
        "firmware_devices": args.firmware,
        "qemu_devices": args.qemu,
        "published": published,
        "published_by_firmware": fw_published,
        "received": consumer_counts.get("accepted", 0) - charts,
        "stored": stored,
        "charts": charts,
        "deadletters": consumer_counts.get("deadletters", 0),
        "duplicates_ignored": service_counts.get("duplicates", 0),
        "risk_messages": len(risks),
        "alerts": service_counts.get("alerts", 0),
        "model_updates_accepted": fleet.updates["accepted"],
        "model_updates_rejected": fleet.updates["rejected"],
        "active_models": sorted({w.tiny.model_id for w in fleet.wearables}),
        "store_points": store_points,
        "tiny_float_acc": metrics.get("tiny_float_acc"),
        "tiny_int8_acc": metrics.get("tiny_int8_acc"),
        "tiny_weights_bytes": metrics.get("tiny_weights_bytes"),
        "tiny_arena_bytes": metrics.get("tiny_arena_bytes"),
        **evaluation,
        "train_risk_auroc": metrics.get("risk_auroc"),
        "train_news2_auroc": metrics.get("news2_auroc"),
        **percentiles_ms(sent_at, risk_at),
        "broker": "embedded amqtt" if not (args.mqtt or os.environ.get("TINYLARGE_MQTT")) else "external",
        "store": ep.store.split(":", 1)[0],
    }
    plot_path = plot_patient(cohort, risks, args.out, start_ms, db if summary["store"] == "sqlite" else None,
                             alert_threshold)
    summary["plot"] = str(plot_path)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_table(summary)
    print(f"wrote {args.out / 'summary.json'} and {plot_path}", flush=True)
    return summary


def _roll_out_update(cloud: Cloud, cohort: Sequence, models: Path, tiny: object, private_key: Path) -> None:
    """Cloud -> devices: the distilled int8 model, signed, on each wearable's retained ``model`` topic
    (one tampered copy first, which the first wearable must reject)."""
    from shared.runtime.app import publisher
    from shared.runtime.demo import roll_out_update

    model_name, _, version = tiny.model_id.rpartition("@")  # type: ignore[attr-defined]
    roll_out_update(publisher(cloud.client, DOMAIN), DOMAIN, [p.id for p in cohort], model_name, int(version) + 1,
                    (models / "tiny.tflite").read_bytes(), private_key)


def main(argv: Sequence[str] | None = None) -> int:
    summary = run(_args(argv))
    ok = summary["stored"] == summary["published"]
    if not ok:
        print(f"FAILED: stored {summary['stored']} != published {summary['published']}", flush=True)
    return 0 if ok else 1
