"""The closed loop, end to end: the cloud transformer teaches a student, the student is rolled out signed
over MQTT, the fleet swaps models, and the fleet's own event estimate is scored before and after.

    tinylarge loop DOMAIN [--quick] [--devices 8] [--mqtt URL] [--out DIR] [--json]

Devices are the held-out subjects (patients, machines) of the domain's :class:`~shared.integration.distill.
DistillTask`, replaying their windows in time order. Each holds a
:class:`shared.security.model_update.ModelSlot` with the factory model, the domain's deployed int8
classifier, whose only event signal is 1 - p(normal). Halfway through, the cloud trains the distilled
student on the training subjects and calls :func:`shared.integration.rollout.roll_out` (int8, budget, C,
signed, retained on each device's ``model`` topic); one forged copy goes to the first device first and
must be refused. Devices verify, swap, and finish their windows with the new model. The summary gives
the fleet's AUROC for the event on the SAME windows with the model before and the model after (both run
by the devices' int8 runner on the bytes they hold), the live halves, the teacher's on those windows,
and the update's size, MACs and compile check. Without ``--mqtt`` an embedded broker is started; a given
one is checked (URL, certificate files, one connection) before any work. The result prints as the
summary table (``--json``: JSON); progress goes to stderr.

The demos close the same loop once, live (:mod:`shared.runtime.live_loop`): there the student is distilled
from the windows the demo's fleet sent so far, labelled by the cloud's live answers, and installed in a
SECOND model slot of each device (the first keeps the factory classifier, whose class scores the cloud's
transformer and the inference schema need). This command is the offline measurement beside it: the
student trained on the teacher's whole training cohort, scored on held-out subjects.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.runtime.metrics import auroc


@dataclass
class _Device:
    id: str
    subject: str
    rows: np.ndarray  #: the subject's windows (task row indices, time order)
    slot: Any
    runner: Any
    scores: list[float] = field(default_factory=list)
    results: list[tuple[bool, str]] = field(default_factory=list)

    def estimate(self, x: np.ndarray) -> np.ndarray:
        """The device's event estimate: 1 - p(first class) ("normal" for a classifier, "no event" for a student)."""
        return 1.0 - self.runner.predict(x)[:, 0]


def _pick_subjects(groups: np.ndarray, y: np.ndarray, n: int) -> list[str]:
    """Up to ``n`` subjects, alternating ones with and without an event (first-seen order)."""
    _, first = np.unique(groups, return_index=True)
    order = groups[np.sort(first)]
    pos = [s for s in order if y[groups == s].any()]
    neg = [s for s in order if not y[groups == s].any()]
    picked: list[str] = []
    while len(picked) < n and (pos or neg):
        for pool in (pos, neg):
            if pool and len(picked) < n:
                picked.append(pool.pop(0))
    return picked


def run(args: argparse.Namespace) -> dict[str, Any]:
    from shared.integration import rollout
    from shared.integration.distill import DistillConfig, fit_student, load_distill_task
    from shared.runtime.app import endpoints
    from shared.security.model_update import ModelSlot, generate_keypair, sign_update
    from shared.tiny.int8 import Int8Runner
    from shared.transport.mqtt import MqttClient, MqttConfig

    task = load_distill_task(args.domain, quick=args.quick, models_dir=args.models)
    models = Path(task.extra.get("models_dir", args.models or f"models/{args.domain}"))
    factory = (models / "tiny.tflite").read_bytes()
    import importlib

    from shared import domain as domains

    dom = domains.get(args.domain)
    try:  # the id the devices put in their messages (healthcare: hc-tiny), else the registry's name
        factory_name = str(importlib.import_module(f"{dom.package}.tiny").MODEL_NAME)
    except (ImportError, AttributeError):
        factory_name = dom.tiny_model
    te = np.flatnonzero(~task.train)
    subjects = _pick_subjects(task.groups[te], task.y[te], args.devices)
    if len(subjects) < 1:
        from shared.errors import UserError

        raise UserError(f"{args.domain}: no held-out subjects to run as devices")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    private_key, public_key = generate_keypair(out / "keys", overwrite=True)

    def load_student(data: bytes) -> Any:
        runner = Int8Runner(data)
        if runner.input_shape != (task.x.shape[1],) or runner.output_shape != (2,):
            raise ValueError(f"expected a ({task.x.shape[1]},) -> (2,) model, got {runner.input_shape} -> "
                             f"{runner.output_shape}")
        return runner

    devices = []
    for i, s in enumerate(subjects):
        dev_id = f"d{i:03d}"
        devices.append(_Device(dev_id, s, te[task.groups[te] == s],
                               ModelSlot(args.domain, dev_id, public_key, active=factory, active_version=1,
                                         active_model_id=factory_name, state_dir=out / "device-slots"),
                               Int8Runner(factory)))
    by_id = {d.id: d for d in devices}
    lock = threading.Lock()

    def on_model(t: str, payload: bytes) -> None:
        d = by_id.get(t.split("/")[2])
        if d is None:
            return
        ok, reason = d.slot.offer(payload, load=load_student)
        with lock:
            d.results.append((ok, reason))
            if ok:
                d.runner = d.slot.loaded

    t0 = time.monotonic()
    with endpoints(args) as ep:
        fleet = MqttClient(MqttConfig(url=ep.mqtt, client_id=f"tinylarge-loop-fleet-{args.domain}", clean_session=True,
                                      ca=args.ca, certfile=args.cert, keyfile=args.key))
        fleet.start()
        fleet.subscribe(f"tinylarge/{args.domain}/+/model", on_model)
        for d in devices:  # first half of every device's windows on the factory model
            half = len(d.rows) // 2
            d.scores += d.estimate(task.x[d.rows[:half]]).tolist()

        cfg = DistillConfig.quick() if args.quick else DistillConfig(seeds=(0,))
        tr = task.train
        print(f"loop: the cloud distils {task.teacher_id} into a {task.hidden} student on "
              f"{len(np.unique(task.groups[tr]))} training subjects ...", file=sys.stderr, flush=True)
        student = fit_student(task.x[tr], task.y[tr], task.teacher[tr], task.hidden, cfg, seed=0)
        rep = task.x[tr][np.random.default_rng(0).permutation(int(tr.sum()))[: cfg.representative_n]]
        blob = rollout.to_int8(student, rep)
        forged = sign_update(args.domain, devices[0].id, task.model_name, 2, blob, private_key, 0,
                             int(time.time() * 1000))
        b64 = forged["tflite_b64"]
        forged["tflite_b64"] = b64[:40] + ("A" if b64[40] != "A" else "B") + b64[41:]
        rollout.publish_updates(args.domain, [forged], mqtt=ep.mqtt, client_id="tinylarge-loop-forger", args=args)
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and not devices[0].results:
            time.sleep(0.05)
        done = rollout.roll_out(blob, domain=args.domain, devices=[d.id for d in devices],
                                model_id=f"{task.model_name}@2", private_key=private_key, out_dir=out / "update",
                                labels=["no_event", "event"], mqtt=ep.mqtt, args=args)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not all(d.slot.active_version == 2 for d in devices):
            time.sleep(0.05)
        for d in devices:  # second half on whatever each device now runs
            half = len(d.rows) // 2
            d.scores += d.estimate(task.x[d.rows[half:]]).tolist()
        fleet.stop()

    rows = np.concatenate([d.rows for d in devices])
    y = task.y[rows]
    factory_runner = Int8Runner(factory)
    before = np.concatenate([1.0 - factory_runner.predict(task.x[d.rows])[:, 0] for d in devices])
    after = np.concatenate([d.estimate(task.x[d.rows]) for d in devices])  # what each device runs now
    halves = [(d.rows[: len(d.rows) // 2], d.rows[len(d.rows) // 2:]) for d in devices]
    first = np.concatenate([h[0] for h in halves])
    second = np.concatenate([h[1] for h in halves])
    live = np.array([s for d in devices for s in d.scores])
    n_first = [len(h[0]) for h in halves]
    live_first = np.concatenate([np.array(d.scores[:k]) for d, k in zip(devices, n_first, strict=True)])
    live_second = np.concatenate([np.array(d.scores[k:]) for d, k in zip(devices, n_first, strict=True)])
    assert len(live) == len(rows)

    def au(yy: np.ndarray, ss: np.ndarray) -> float | None:
        v = auroc(yy, ss)
        return None if np.isnan(v) else round(float(v), 4)

    accepted = sum(ok for d in devices for ok, _ in d.results)
    summary = {
        "domain": args.domain, "event": task.event, "devices": len(devices), "windows": int(len(rows)),
        "event_windows": int(y.sum()), "subjects_with_event": int(sum(task.y[d.rows].any() for d in devices)),
        "model_before": f"{factory_name}@1", "model_after": f"{done.model_name}@{done.version}",
        "fleet_auroc_before": au(y, before), "fleet_auroc_after": au(y, after),
        "teacher_auroc_same_windows": au(y, task.teacher[rows]),
        "live_auroc_first_half_before": au(task.y[first], live_first),
        "live_auroc_second_half_after": au(task.y[second], live_second),
        "updates_accepted": accepted, "updates_rejected": sum(not ok for d in devices for ok, _ in d.results),
        "rejected_reasons": sorted({r for d in devices for ok, r in d.results if not ok}),
        "active_models": sorted({d.slot.active_model for d in devices}),
        "update_bytes_on_wire": done.bytes_on_wire, "student_tflite_bytes": len(done.tflite),
        "student_weights_bytes": done.budget["weights_bytes"], "device_macs_per_inference": done.compiled.macs,
        "c_arena_bytes": done.compiled.arena_bytes, "c_compiled_with": done.c_compiler,
        "quick": bool(args.quick), "wall_s": round(time.monotonic() - t0, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"loop: wrote {out / 'summary.json'}", file=sys.stderr, flush=True)
    return summary


def parser() -> argparse.ArgumentParser:
    from shared.cli import HelpFormatter, add_domain_arg, add_endpoint_args, add_json_arg

    ap = argparse.ArgumentParser(prog="tinylarge loop", description=__doc__.splitlines()[0], allow_abbrev=False,
                                 formatter_class=HelpFormatter)
    add_domain_arg(ap, needs="distill_task")
    add_endpoint_args(ap)
    ap.add_argument("--quick", action="store_true", help="quick models and a quick student (tests, CI)")
    ap.add_argument("--devices", type=int, default=8, help="held-out subjects run as devices")
    ap.add_argument("--models", type=Path, default=None, help="the domain's models folder (default: models/DOMAIN)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: out/integration/loop-DOMAIN)")
    add_json_arg(ap)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    from shared.cli import domain_arg, emit_summary
    from shared.errors import UserError
    from shared.protocol.endpoints import mqtt_url
    from shared.runtime.app import check_broker, check_endpoints

    ap = parser()
    args = ap.parse_args(argv)
    args.domain = domain_arg(args, "loop", needs="distill_task").name
    if args.devices < 1:
        raise UserError(f"--devices: must be >= 1, got {args.devices}")
    check_endpoints(args)
    url = mqtt_url(args.mqtt)
    if url:
        check_broker(args, url, role="loop-check")  # needed only after the distillation
    args.out = args.out or Path(f"out/integration/loop-{args.domain}")
    s = run(args)
    emit_summary(f"{args.domain} closed loop: {s['model_before']} -> {s['model_after']} on {s['devices']} devices",
                 s, args.json)
    ok = s["updates_accepted"] == s["devices"] and s["active_models"] == [s["model_after"]]
    if not ok:
        print(f"FAILED: {s['updates_accepted']} of {s['devices']} devices installed {s['model_after']}",
              file=sys.stderr, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    from shared.cli import guarded

    raise SystemExit(guarded(main))
