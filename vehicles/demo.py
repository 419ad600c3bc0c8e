"""``make demo-vehicles``: telematics units -> MQTT -> driver risk beside points per 100 km, hazard map -> store.

With no endpoints given it starts the embedded broker and a fresh SQLite file under
``out/demo-vehicles/``. A fleet of vehicles the models never saw (drivers from calm to aggressive, each
unit mounted at its own random rotation) drives on the shared road network for simulated days; after
every trip segment the unit calibrates its mounting, detects and classifies events with the int8
model and publishes. A faulty client sends malformed messages that must end in the dead-letter topic;
halfway through the cloud rolls out a signed model update (one tampered copy is refused). The cloud
stores everything, scores each vehicle's trip history with the transformer beside the vendor score,
merges road anomalies into the hazard map and sends confirmed hazards near each vehicle back on its
``action`` stream. The demo checks that every published message was stored exactly once, scores risk
and the vendor score against the simulator's incidents and the hazard map against its true hazards,
and writes ``summary.json`` and a plot (one trip with its events; the hazard map).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DOMAIN = "vehicles"
BAD_PAYLOADS: tuple[tuple[str, bytes], ...] = (
    ("tinylarge/vehicles/v999/inference", b"{not json"),
    ("tinylarge/vehicles/v999/inference",
     b'{"v":1,"device":"v999","seq":0,"ts":1,"model":"veh-tiny@1","trip_s":120,"distance_km":-3}'),
    ("tinylarge/vehicles/v999/inference", b'{"v":9,"device":"v999","seq":1,"ts":1,"model":"x@1"}'),
)


#: a 120 s segment (72,000 IMU samples as text) takes the Cortex-M4 image under QEMU seconds to read and
#: process (soft double precision): 'auto' runs one QEMU unit only on short runs
QEMU_S_PER_TRIP = 10.0
QEMU_AUTO_MAX_TRIPS = 12


def quick_argv() -> list[str]:
    """A small run of the demo (CI, the contract tests): quick models, few vehicles, few trips."""
    return ["--vehicles", "6", "--days", "2", "--trips-per-day", "4", "--seconds", "8", "--quick-train",
            "--firmware", "auto", "--qemu", "auto"]


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    from shared.cli import add_endpoint_args

    ap = argparse.ArgumentParser(prog="tinylarge demo vehicles", description=__doc__.splitlines()[0])
    add_endpoint_args(ap)
    ap.add_argument("--vehicles", type=int, default=24, help="vehicles in the fleet (default 24)")
    ap.add_argument("--days", type=float, default=5.0, help="simulated days (default 5)")
    ap.add_argument("--trips-per-day", type=int, default=6, help="trip segments per vehicle and day (default 6)")
    ap.add_argument("--seconds", type=float, default=60.0, help="wall seconds the simulated span should take")
    ap.add_argument("--seed", type=int, default=2026, help="demo fleet seed (not a training seed)")
    ap.add_argument("--models", type=Path, default=Path("models/vehicles"), help="trained models folder")
    ap.add_argument("--out", type=Path, default=Path("out/demo-vehicles"), help="output folder")
    ap.add_argument("--quick-train", action="store_true", help="if models are missing, train small ones fast")
    ap.add_argument("--firmware", default="auto", help="how many units run the C firmware app (own MQTT client on "
                    "the host); 'auto' = 2 when gcc is installed, else 0")
    ap.add_argument("--qemu", default="auto", help="how many of those run the Cortex-M4 build under QEMU behind the "
                    f"gateway (about {QEMU_S_PER_TRIP:.0f} s per trip segment); 'auto' = 1 when arm-none-eabi-gcc "
                    f"and qemu-system-arm are installed and the run has at most {QEMU_AUTO_MAX_TRIPS} segments, else 0")
    args = ap.parse_args(argv)
    if args.vehicles < 2 or not args.days > 0 or args.trips_per_day < 1:
        ap.error("--vehicles must be >= 2, --days > 0, --trips-per-day >= 1")
    from shared.runtime.demo import firmware_counts

    qemu = args.qemu
    if qemu == "auto" and int(round(args.days * args.trips_per_day)) > QEMU_AUTO_MAX_TRIPS:
        qemu = "0"
    args.firmware, args.qemu = firmware_counts(ap.prog, args.firmware, qemu, args.vehicles)
    return args


def run(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from shared.runtime.app import endpoints, publisher
    from shared.runtime.demo import percentiles_ms, print_table, roll_out_update, wait_stored, write_summary
    from shared.runtime.fleet import utc_midnight_ms
    from shared.security.model_update import generate_keypair
    from shared.transport.mqtt import MqttClient, MqttConfig
    from vehicles import _report
    from vehicles.device import fleet as make_fleet
    from vehicles.service import run_cloud
    from vehicles.signals import FleetConfig, simulate_fleet
    from vehicles.tiny import TinyModel
    from vehicles.train import ensure_trained

    args.out.mkdir(parents=True, exist_ok=True)
    metrics = ensure_trained(args.models, quick=args.quick_train)
    db = args.out / "tinylarge.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    vehicles = simulate_fleet(FleetConfig(n_vehicles=args.vehicles, seed=args.seed))
    model = TinyModel.load(args.models)
    n_ticks = max(1, int(round(args.days * args.trips_per_day)))
    every_s = 86400.0 / args.trips_per_day
    day0_ms = utc_midnight_ms(days_ago=int(np.ceil(args.days)) + 1)
    print(f"fleet: {len(vehicles)} vehicles x {n_ticks} trip segments on a {vehicles[0].network.n}x"
          f"{vehicles[0].network.n} grid with {len(vehicles[0].network.hazards)} road hazards", flush=True)

    sent_at: dict[tuple[str, int], float] = {}
    done_at: dict[tuple[str, int], float] = {}
    actions: list[dict] = []
    felt: dict[int, set] = {}
    shown: dict = {}
    lock = threading.Lock()

    def on_publish(device: str, seq: int) -> None:
        sent_at[(device, seq)] = time.perf_counter()

    def on_action(msg: dict) -> None:
        with lock:
            done_at[(msg["device"], msg["source_seq"])] = time.perf_counter()
            actions.append(msg)

    def on_trip(v, trip) -> None:
        for _, hid in trip.hazards_hit:
            felt.setdefault(hid, set()).add(v.id)
        score = len(trip.events) + 5 * sum(e.kind in ("pothole", "speed_bump") for e in trip.events)
        if score > shown.get("score", -1):
            shown.update(score=score, trip=trip)

    with endpoints(args, default_store=f"sqlite:///{db}") as ep, \
            run_cloud(args, ep.mqtt, ep.store, args.models, on_action=on_action) as cloud:
        print(f"broker {ep.mqtt}   store {ep.store}", flush=True)
        private_key, public_key = generate_keypair(args.out / "keys", overwrite=True)
        units = make_fleet(args, ep.mqtt, vehicles[args.firmware:], args.models, day0_ms, on_publish=on_publish,
                           trusted_key=public_key, on_trip=on_trip)
        firmware = _firmware_fleet(args, ep.mqtt, vehicles[:args.firmware], day0_ms, every_s, on_publish,
                                   public_key, on_trip) if args.firmware else None
        units.start()
        faulty = MqttClient(MqttConfig(url=ep.mqtt, client_id="tinylarge-vehicles-faulty", clean_session=True))
        faulty.start()
        bad_at = {n_ticks * (k + 1) // (len(BAD_PAYLOADS) + 1): bad for k, bad in enumerate(BAD_PAYLOADS)}
        tick_wall_s = args.seconds / n_ticks
        t0 = time.monotonic()
        for i in tqdm(range(n_ticks), desc="trip segments", unit="tick", disable=None):
            units.step_all((i + 1) * every_s)
            if firmware is not None:
                firmware.step_all((i + 1) * every_s)
            if i in bad_at:
                faulty.publish(*bad_at[i], qos=1)
            if i == n_ticks // 2:
                name, _, version = model.model_id.rpartition("@")
                roll_out_update(publisher(cloud.client, DOMAIN), DOMAIN, [d.id for d in units.devices], name,
                                int(version) + 1, (args.models / "tiny.tflite").read_bytes(), private_key)
            time.sleep(max(0.0, t0 + (i + 1) * tick_wall_s - time.monotonic()))
        units.stop()
        fw_published = firmware.stop(timeout_s=60.0 + QEMU_S_PER_TRIP * 3 * n_ticks * (args.qemu > 0)) \
            if firmware is not None else 0
        faulty.stop()
        published = units.published + fw_published
        stored = wait_stored(cloud, published, len(BAD_PAYLOADS), timeout_s=120.0)
        wall_s = time.monotonic() - t0
        consumer_counts = dict(cloud.consumer.counts)
        service_counts = dict(cloud.service.counts)
        hazard_map = cloud.service.hazards
        store_points = {m: cloud.store.count(m) for m in ("trip", "inference", "action")}

    horizon = int(metrics.get("horizon_trips", 10))
    evaluation = _report.evaluate(vehicles, actions, horizon)
    hz = hazard_map.score(vehicles[0].network.hazards, felt)
    summary = {
        "devices": len(vehicles), "simulated_days": args.days, "trips_per_day": args.trips_per_day,
        "wall_s": round(wall_s, 1), "firmware_devices": args.firmware, "qemu_devices": args.qemu,
        "published": published, "published_by_firmware": fw_published,
        "received": consumer_counts.get("accepted", 0), "stored": stored,
        "deadletters": consumer_counts.get("deadletters", 0),
        "duplicates_ignored": service_counts.get("duplicates", 0), "action_messages": len(actions),
        "alerts": service_counts.get("alerts", 0), "hazard_reports": service_counts.get("hazard_reports", 0),
        "actions_with_hazards": sum(bool(a["hazards_ahead"]) for a in actions),
        "model_updates_accepted": units.updates["accepted"], "model_updates_rejected": units.updates["rejected"],
        "store_points": store_points,
        "tiny_float_acc": metrics.get("tiny_float_acc"), "tiny_int8_acc": metrics.get("tiny_int8_acc"),
        "event_f1": metrics.get("event_f1"), "rule_event_f1": metrics.get("rule_event_f1"),
        **evaluation, **hz,
        "train_risk_auroc": metrics.get("risk_auroc"), "train_baseline_auroc": metrics.get("baseline_auroc"),
        "train_risk_ece": metrics.get("risk_ece"), "train_baseline_ece": metrics.get("baseline_ece"),
        "train_risk_brier": metrics.get("risk_brier"), "train_baseline_brier": metrics.get("baseline_brier"),
        **percentiles_ms(sent_at, done_at),
        "broker": "embedded amqtt" if not (args.mqtt or os.environ.get("TINYLARGE_MQTT")) else "external",
        "store": ep.store.split(":", 1)[0], "quick_models": bool(metrics.get("quick")),
    }
    trip = shown.get("trip")
    if trip is not None:
        from vehicles.device import inference_message

        msg = inference_message(trip.vehicle, 0, 0, trip, model)
        summary["plot"] = str(_report.plot(trip, msg["events"], hazard_map, vehicles[0].network.hazards, args.out))
    path = write_summary(args.out, summary)
    print_table("vehicles demo", summary, [
        "devices", "firmware_devices", "qemu_devices", "published", "published_by_firmware", "received",
        "stored", "deadletters", "alerts", "model_updates_accepted",
        "model_updates_rejected", "tiny_float_acc", "tiny_int8_acc", "event_f1", "rule_event_f1", "risk_auroc",
        "baseline_auroc", "train_risk_auroc", "train_baseline_auroc", "hazard_reports", "hazards_confirmed",
        "hazard_precision", "hazard_recall", "p50_ms", "p99_ms", "wall_s"])
    print(f"wrote {path}" + (f" and {summary['plot']}" if "plot" in summary else ""), flush=True)
    return summary


def _firmware_fleet(args: argparse.Namespace, mqtt: str, vehicles: Sequence, day0_ms: int, every_s: float,
                    on_publish: object, public_key: Path, on_trip: object) -> object:
    """Vehicles whose telematics unit runs the C firmware app (host, and Cortex-M4 under QEMU behind the
    gateway); started, each unit's trip index continuing from its provisioned first seq."""
    from shared.runtime.firmware_fleet import FirmwareFleet
    from vehicles.device import FirmwareUnit

    print(f"building the firmware: {args.firmware - args.qemu} host unit(s), {args.qemu} Cortex-M4 under QEMU",
          flush=True)
    subjects = [FirmwareUnit(v, every_s, on_trip) for v in vehicles]
    fw = FirmwareFleet(DOMAIN, mqtt, subjects, args.models, day0_ms, args.out / "firmware", qemu=args.qemu,
                       on_publish=on_publish, trusted_key=public_key, args=args)
    fw.build()
    fw.start()
    for unit, dev in zip(subjects, fw.devices, strict=True):
        unit.first_seq = dev.seq_start
    return fw


def main(argv: Sequence[str] | None = None) -> int:
    summary = run(_args(argv))
    ok = summary["stored"] == summary["published"]
    if not ok:
        print(f"FAILED: stored {summary['stored']} != published {summary['published']}", flush=True)
    return 0 if ok else 1
