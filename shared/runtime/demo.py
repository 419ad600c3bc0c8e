"""``tinylarge demo DOMAIN``, the same for every domain: the domain's scenario (:mod:`shared.runtime.scenario`)
on the platform's demo loop.

With no endpoints given it starts the embedded broker and a fresh SQLite file under ``--out``; the cloud
service, the simulated devices and (``--firmware``/``--qemu``) devices running the real C firmware follow; a
site publishes what the domain's site feed holds. Each tick every device publishes the window ending then; a
faulty client sends three malformed messages that must end in the dead-letter topic, and halfway through the
cloud closes the loop once, live (:mod:`shared.runtime.live_loop`: it distils its large model into a student
from the windows the fleet sent so far, compiles, signs and rolls it out to a second model slot of every
device; one tampered copy first, which the first device must refuse; a domain with no ``distill_task`` gets
its factory model under a new version instead). At the end the demo checks that every published inference
was stored exactly once, asks the scenario to score the results against its ground truth, prints the summary
table and writes ``summary.json`` and the scenario's plot.

The helpers below (firmware counts, the roll-out, waiting for the store, latencies, the table) are used by
the loop and by the benchmarks.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.runtime.firmware_fleet import _Site as _SiteFeed


def firmware_counts(prog: str, firmware: str, qemu: str, devices: int) -> tuple[int, int]:
    """Resolve ``--firmware``/``--qemu`` ('auto' or a number) against the installed toolchains."""

    def number(name: str, value: str, auto: int) -> int:
        if value == "auto":
            return auto
        if not value.isdigit():
            raise SystemExit(f"{prog}: --{name} must be 'auto' or a number, got {value!r}")
        return int(value)

    has_arm = bool(shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"))
    # 'auto' shrinks with the fleet: at least one device stays simulated in Python (it receives the roll-out)
    n_fw = number("firmware", firmware, min(2, devices - 1) if shutil.which("cc") or shutil.which("gcc") else 0)
    n_qemu = number("qemu", qemu, 1 if has_arm and n_fw > 0 else 0)
    if n_qemu > n_fw:
        raise SystemExit(f"{prog}: --qemu {n_qemu} exceeds --firmware {n_fw}")
    if n_fw >= devices:
        raise SystemExit(f"{prog}: --firmware {n_fw} leaves no simulated device of {devices}")
    return n_fw, n_qemu


def roll_out_update(publish: Callable[[str, str, dict], None], domain: str, devices: Sequence[str],
                    model_name: str, version: int, tflite: bytes, private_key: Path) -> None:
    """Cloud -> devices: a signed model on each device's retained ``model`` topic.

    One extra copy, sent first to the first device, has one base64 character changed on the way: the
    device must reject it (hash and signature no longer match) and keep its model.
    """
    from shared.security.model_update import sign_update

    now_ms = int(time.time() * 1000)
    forged = sign_update(domain, devices[0], model_name, version, tflite, private_key, 0, now_ms)
    b64 = forged["tflite_b64"]
    forged["tflite_b64"] = b64[:40] + ("A" if b64[40] != "A" else "B") + b64[41:]
    publish(devices[0], "model", forged)
    for seq, device in enumerate(devices, start=1):
        publish(device, "model", sign_update(domain, device, model_name, version, tflite, private_key, seq, now_ms))


def wait_stored(cloud: Any, published: int, bad: int, timeout_s: float = 60.0) -> int:
    """Wait until the service has stored every published inference and dead-lettered the bad ones."""
    deadline = time.monotonic() + timeout_s
    stored = 0
    while time.monotonic() < deadline:
        stored = cloud.store.count("inference")
        dead = cloud.consumer.counts.get("deadletters", 0)
        if stored >= published and dead >= bad and cloud.service.idle:
            break
        time.sleep(0.1)
    time.sleep(0.3)  # let the last batch's results go out
    return stored


def percentiles_ms(sent_at: dict, done_at: dict) -> dict[str, float | None]:
    """p50 and p99 of done - sent (seconds -> ms) over the keys both have."""
    lat = [1000 * (done_at[k] - sent_at[k]) for k in done_at if k in sent_at]
    if not lat:
        return {"p50_ms": None, "p99_ms": None}
    return {"p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1)}


def print_table(title: str, summary: dict, keys: Sequence[str]) -> None:
    width = max(len(k) for k in keys)
    print("\n" + "-" * (width + 16))
    print(f"{title:<{width}}  {'value':>12}")
    print("-" * (width + 16))
    for k in keys:
        v = summary.get(k)
        text = "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
        print(f"{k:<{width}}  {text:>12}")
    print("-" * (width + 16), flush=True)


def write_summary(out: Path, summary: dict) -> Path:
    path = Path(out) / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return path


FAULTY_DEVICE = "faulty999"


#: what the faulty client sends: not JSON, an envelope with no domain fields, an unknown schema version
def bad_payloads(domain: str, tiny_model: str) -> tuple[tuple[str, bytes], ...]:
    topic = f"tinylarge/{domain}/{FAULTY_DEVICE}/inference"
    return ((topic, b"{not json"),
            (topic, b'{"v":1,"device":"faulty999","seq":0,"ts":1,"model":"' + tiny_model.encode() + b'@1"}'),
            (topic, b'{"v":9,"device":"faulty999","seq":1,"ts":1,"model":"x@1"}'))


def demo_parser(d: Any) -> Any:
    """The flags of ``tinylarge demo DOMAIN``: the platform's, then the scenario's own."""
    import argparse

    from shared.cli import add_endpoint_args
    from shared.dashboard.demo import add_dashboard_args

    scen = d.hooks.scenario
    full, quick = scen.full, scen.quick
    ap = argparse.ArgumentParser(prog=f"tinylarge demo {d.name}", allow_abbrev=False,
                                 description=f"{d.name}: {d.title}, end to end (devices -> MQTT -> cloud -> store)")
    ap.add_argument("--subjects", type=int, default=None,
                    help=f"{d.subject}s (default {full.subjects}; --quick: {quick.subjects})")
    ap.add_argument("--duration", default=None, help=f"simulated span with a unit: 30m, 24h, 21d (default "
                    f"{full.duration}; --quick: {quick.duration})")
    ap.add_argument("--speed", default="auto", help="simulated seconds per wall second, or 'auto': the span takes "
                    f"{full.wall_s:g} s (--quick: {quick.wall_s:g} s)")
    ap.add_argument("--seed", type=int, default=2026, help="the demo population's seed (not a training seed)")
    ap.add_argument("--models", type=Path, default=d.models_dir, help="trained models folder (default %(default)s)")
    ap.add_argument("--out", type=Path, default=Path("out") / f"demo-{d.name}", help="output folder "
                    "(default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="a small population on quick models (trained if missing): "
                    "about a minute")
    add_endpoint_args(ap)
    ap.add_argument("--firmware", default="auto", help=f"how many {d.subject}s' devices run the C firmware (own MQTT "
                    "client on the host); 'auto' = 2 when a C compiler is installed, else 0")
    ap.add_argument("--qemu", default="auto", help="how many of those run the Cortex-M4 build under QEMU behind the "
                    "serial gateway; 'auto' = 1 when arm-none-eabi-gcc and qemu-system-arm are installed")
    from shared.tiny.boards import BOARDS

    ap.add_argument("--board", default=None, choices=[n for n, b in BOARDS.items() if b.qemu_machine],
                    help="run the --qemu units as this board row's app image under QEMU "
                    "instead of the Cortex-M4 one (netduinoplus2: the STM32F405, windows on its USART; mps2-an500, "
                    "mps2-an505: Cortex-M7, M33)")
    add_dashboard_args(ap)
    group = ap.add_argument_group(f"{d.name}'s own options")
    scen.add_arguments(group)
    return ap


def settle_args(ap: Any, args: Any, extra: dict[str, Any]) -> None:
    """The scenario's own flags left unset take ``extra``'s defaults; ``--duration`` -> ``args.duration_s``."""
    from shared.runtime.scenario import parse_duration

    for key, value in extra.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    try:
        args.duration_s = parse_duration(args.duration)
    except ValueError as exc:
        ap.error(f"--duration: {exc}")


def parse_demo_args(d: Any, argv: Sequence[str] | None) -> Any:
    from shared.runtime.app import check_endpoints

    scen = d.hooks.scenario
    ap = demo_parser(d)
    args = ap.parse_args(argv)
    size = scen.quick if args.quick else scen.full
    if args.subjects is None:
        args.subjects = size.subjects
    if args.duration is None:
        args.duration = size.duration
    settle_args(ap, args, {**scen.full.extra, **(size.extra if args.quick else {})})
    if args.speed == "auto":
        args.wall_s = size.wall_s
    else:
        try:
            speed = float(args.speed)
        except ValueError:
            speed = float("nan")
        if not speed > 0:
            ap.error(f"--speed: must be 'auto' or simulated seconds per wall second > 0, got {args.speed!r}")
        args.wall_s = args.duration_s / speed
    if args.subjects < scen.min_subjects:
        ap.error(f"--subjects: must be >= {scen.min_subjects}, got {args.subjects}")
    problem = scen.check_arguments(args)
    if problem:
        ap.error(problem)
    check_endpoints(args)
    try:
        qemu = "0" if args.qemu == "auto" and not scen.auto_qemu(args) and not args.board else args.qemu
        args.firmware, args.qemu = firmware_counts(ap.prog, args.firmware, qemu, args.subjects)
    except SystemExit as exc:
        ap.error(str(exc).split(": ", 1)[-1])
    return args


def demo_main(domain: str, argv: Sequence[str] | None = None) -> int:
    """``tinylarge demo DOMAIN [flags]``: 0 when everything published was stored exactly once."""
    from shared.domain import get

    d = get(domain)
    args = parse_demo_args(d, argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    _OWNER_PID[0] = os.getpid()
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM unwinds like Ctrl-C: devices, QEMU, cloud stopped in order
    summary = run_demo(d, args)
    ok = summary["stored"] == summary["published"]
    if not ok:
        print(f"FAILED: stored {summary['stored']} != published {summary['published']}", flush=True)
    return 0 if ok else 1


#: the demo's own process; a process forked from it (a training pool's worker) dies as SIGTERM says
_OWNER_PID = [0]


def _interrupt(signum: int, frame: object) -> None:
    if os.getpid() != _OWNER_PID[0]:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt


class _InjectedFaults(logging.Filter):
    """The consumer's dead-letter warning for a message the demo injected on purpose becomes one plain
    line saying so (it is the check passing, not a failure); every other dead letter stays a warning."""

    def __init__(self, device: str):
        super().__init__()
        self.marker, self.seen = f"/{device}/", 0

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not text.startswith("dead-letter ") or self.marker not in text:
            return True
        self.seen += 1
        print(f"injected fault {self.seen} dead-lettered, as it must be: {text[len('dead-letter '):]}", flush=True)
        return False


def run_demo(d: Any, args: Any) -> dict:
    """The demo loop (see the module docstring); returns the summary."""
    import threading

    from shared.dashboard.demo import beside_demo
    from shared.progress import progress
    from shared.protocol.endpoints import redact_url
    from shared.runtime.app import endpoints
    from shared.runtime.cloud import run_cloud
    from shared.runtime.live_loop import LiveLoop, skip_reason
    from shared.runtime.scenario import DemoRun
    from shared.security.model_update import generate_keypair
    from shared.transport.mqtt import MqttClient, MqttConfig

    hooks = d.hooks
    args.out.mkdir(parents=True, exist_ok=True)
    what = "quick" if args.quick else "full"
    print(f"{d.name}: checking the {what} models in {args.models} (trained first if missing or stale)", flush=True)
    metrics = hooks.ensure_trained(args.models, quick=args.quick)
    db = args.out / "tinylarge.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    run = DemoRun(args=args, domain=d, metrics=metrics)
    scen = hooks.scenario(run)
    run.subjects = list(scen.population())
    run.ticks = [float(t) for t in scen.ticks()]
    if not run.ticks:
        raise SystemExit(f"tinylarge demo {d.name}: --duration {args.duration} holds no device window")
    run.day0_ms = scen.day0_ms()
    run.start_ms = {s.id: scen.start_ms(s, run.day0_ms) for s in run.subjects}
    print(scen.describe(), flush=True)
    loop_skipped = skip_reason(d)
    loop = LiveLoop(run, scen) if loop_skipped is None else None

    sent_at: dict[tuple[str, int], float] = {}
    done_at: dict[tuple[str, int], float] = {}
    lock = threading.Lock()

    def on_publish(device: str, seq: int) -> None:
        sent_at[(device, seq)] = time.perf_counter()
        run.last_seq[device] = seq

    def on_result(msg: dict) -> None:
        with lock:
            done_at[(msg["device"], msg["source_seq"])] = time.perf_counter()
            run.results.append(msg)
        scen.on_result(msg)

    bad = bad_payloads(d.name, d.tiny_model)
    injected = _InjectedFaults(FAULTY_DEVICE)
    logging.getLogger("shared.transport.consumer").addFilter(injected)
    n_fw, n_qemu = args.firmware, args.qemu
    with endpoints(args, default_store=f"sqlite:///{db}") as ep, \
            run_cloud(d, args, ep.mqtt, ep.store, args.models, on_result=on_result,
                      subjects=[s.id for s in run.subjects]) as cloud, \
            beside_demo(args, ep.mqtt, ep.store, {d.name: cloud.service.rule}) as dash:
        run.mqtt, run.store_url, run.cloud = ep.mqtt, ep.store, cloud
        print(f"broker {redact_url(ep.mqtt)}   store {redact_url(ep.store)}", flush=True)
        private_key, run.public_key = generate_keypair(args.out / "keys", overwrite=True)
        run.fleet = _device_fleet(d, args, ep.mqtt, run.subjects[n_fw:], run.start_ms, on_publish=on_publish,
                                  trusted_key=run.public_key)
        if loop is not None:
            run.fleet.add_second_slot(loop.name)
        site = _Site(args, ep.mqtt, d, scen.site_feed(run.subjects, run.start_ms))
        faulty = MqttClient(MqttConfig(url=ep.mqtt, client_id=f"tinylarge-{d.name}-faulty", clean_session=True))
        fw_stop_s, fw_stopped = 60.0, False
        try:
            scen.start()
            site.start()
            run.fleet.start()
            if n_fw:
                run.firmware, fw_stop_s = _firmware(run, scen, n_fw, n_qemu, on_publish)
            faulty.start()
            bad_at = {len(run.ticks) * (k + 1) // (len(bad) + 1): b for k, b in enumerate(bad)}
            tick_wall_s = args.wall_s / len(run.ticks)
            t0, paused_s = time.monotonic(), 0.0
            for i, t_s in enumerate(progress(run.ticks, desc=f"{d.name}: ticks", unit="tick")):
                scen.before_tick(i, t_s)
                site.step(t_s)
                run.fleet.step_all(t_s)
                if run.firmware is not None:
                    run.firmware.step_all(t_s)
                if i in bad_at:
                    faulty.publish(*bad_at[i], qos=1)
                if i == len(run.ticks) // 2:
                    paused = time.monotonic()
                    if loop is not None:  # nothing in flight while the cloud distils: latencies stay the fleet's
                        _drain(sent_at, done_at)
                    _roll_out(run, cloud, private_key, loop)
                    if loop is not None:  # the ticks go on at their pace after it, not in a burst to catch up
                        paused_s += time.monotonic() - paused
                if loop is not None and loop.closed and (i % 10 == 0 or i in (len(run.ticks) // 2, len(run.ticks) - 1)):
                    _show_loop(dash, d.name, loop.summary())
                scen.after_tick(i, t_s)
                time.sleep(max(0.0, t0 + paused_s + (i + 1) * tick_wall_s - time.monotonic()))
            run.fleet.stop()
            faulty.stop()
            fw_published = run.firmware.stop(timeout_s=fw_stop_s) if run.firmware is not None else 0
            fw_stopped = True
            site.stop()
            published = run.fleet.published + fw_published
            stored = wait_stored(cloud, published, len(bad), timeout_s=120.0)
            wall_s = time.monotonic() - t0
            domain_rows = scen.finish()
        finally:
            scen.stop()
            if run.firmware is not None and not fw_stopped:  # interrupted: no firmware process outlives the demo
                run.firmware.abort()
        consumer_counts = dict(cloud.consumer.counts)
        service_counts = dict(cloud.service.counts)
        store_points = {m: cloud.store.count(m) for m in _measurements(d, scen.measurements)}
    logging.getLogger("shared.transport.consumer").removeFilter(injected)

    updates = run.fleet.updates
    summary: dict[str, Any] = {
        "domain": d.name, "devices": len(run.subjects), "duration": args.duration,
        "simulated_h": round(args.duration_s / 3600.0, 4), "ticks": len(run.ticks), "wall_s": round(wall_s, 1),
        "firmware_devices": n_fw, "qemu_devices": n_qemu, "firmware_units_board": n_qemu if args.board else 0,
        "published": published, "published_by_firmware": fw_published,
        "received": service_counts.get("inferences", 0), "received_messages": consumer_counts.get("accepted", 0),
        "stored": stored, "site_messages": site.published,
        "deadletters": consumer_counts.get("deadletters", 0), "deadletters_injected": len(bad),
        "duplicates_ignored": service_counts.get("duplicates", 0),
        f"{d.result_stream}_messages": len(run.results), "alerts": service_counts.get("alerts", 0),
        "model_updates_accepted": updates["accepted"], "model_updates_rejected": updates["rejected"],
        "store_points": store_points,
        "tiny_float_acc": metrics.get("tiny_float_acc"), "tiny_int8_acc": metrics.get("tiny_int8_acc"),
        "quick_models": bool(metrics.get("quick")),
        **percentiles_ms(sent_at, done_at),
        "broker": "embedded amqtt" if not (args.mqtt or os.environ.get("TINYLARGE_MQTT")) else "external",
        "store": ep.store.split(":", 1)[0],
    }
    summary.update(domain_rows)
    summary.update(loop.summary() if loop is not None else {"live_loop": loop_skipped})
    for key in LOOP_KEYS:
        summary.setdefault(key, None)
    summary.update(scen.evaluate())
    plot = scen.plot()
    if plot is not None:
        summary["plot"] = str(plot)
    path = write_summary(args.out, summary)
    print_table(f"{d.name} demo ({'QUICK models' if summary['quick_models'] else 'full models'})", summary, [
        "devices", "firmware_devices", "qemu_devices", "published", "published_by_firmware", "received", "stored",
        "deadletters", "deadletters_injected", f"{d.result_stream}_messages", "alerts", "model_updates_accepted",
        "model_updates_rejected", *LOOP_KEYS,
        "tiny_float_acc", "tiny_int8_acc", *scen.table, "p50_ms", "p99_ms", "wall_s", "quick_models"])
    if summary.get("fleet_metric"):
        print(f"fleet metric: {summary['fleet_metric']}", flush=True)
    if summary["quick_models"]:
        print("note: these figures come from the QUICK models (small training sets, few epochs); "
              f"`tinylarge train {d.name}` trains the full ones", flush=True)
    print(f"wrote {path}" + (f" and {plot}" if plot is not None else ""), flush=True)
    return summary


def _device_fleet(d: Any, args: Any, mqtt: str, subjects: Sequence[Any], start_ms: dict[str, int],
                  **kwargs: Any) -> Any:
    """The domain's simulated devices on the models of ``args.models``; a model that does not load is a
    UserError naming the folder and the command that retrains it."""
    from shared.runtime.app import models_do_not_load

    try:
        return d.hooks.device_fleet(args, mqtt, subjects, args.models, start_ms, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise models_do_not_load(d.name, args.models, exc) from exc


def _measurements(d: Any, extra: Sequence[str]) -> tuple[str, ...]:
    """What the store holds for a domain: the scenario's measurements, its up streams and its result."""
    up = (s for s, st in d.streams.items() if st.direction == "up")
    return tuple(dict.fromkeys([*extra, *up, d.result_stream]))


def _firmware(run: Any, scen: Any, n_fw: int, n_qemu: int,
              on_publish: Callable[[str, int], None]) -> tuple[Any, float]:
    from shared.runtime.firmware_fleet import FirmwareFleet

    d, args = run.domain, run.args
    print(f"building the firmware: {n_fw - n_qemu} host device(s), {n_qemu} {args.board or 'Cortex-M4'} under QEMU",
          flush=True)
    opts = dict(scen.firmware_options(run.subjects[:n_fw]))
    subjects = opts.pop("subjects", run.subjects[:n_fw])
    stop_s = float(opts.pop("stop_timeout_s", 60.0))
    start_ms = run.start_ms
    fw = FirmwareFleet(d, run.mqtt, subjects, args.models, run.day0_ms, args.out / "firmware", qemu=n_qemu,
                       start_ms=lambda s, _day0: start_ms[s.id], on_publish=on_publish, trusted_key=run.public_key,
                       args=args, board=args.board, **opts)
    fw.build()
    run.firmware = fw  # set before start: an interrupted start still kills what it started
    fw.start()
    scen.firmware_started(fw)
    return fw, stop_s


#: the live loop's rows in the summary table (:mod:`shared.runtime.live_loop`)
LOOP_KEYS = ("live_loop", "model_before", "model_after", "fleet_metric_before", "fleet_metric_after")


def _drain(sent_at: dict, done_at: dict, timeout_s: float = 60.0) -> None:
    """Wait until every window published so far has its cloud result (at most ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(k not in done_at for k in list(sent_at)):
        time.sleep(0.05)


def _show_loop(dash: Any, domain: str, rows: dict) -> None:
    """The live loop's state on the dashboard's page (when one runs beside the demo)."""
    state = getattr(getattr(dash, "bridge", None), "state", None)
    if state is not None and hasattr(state, "set_live_loop"):
        state.set_live_loop(domain, rows)


def _roll_out(run: Any, cloud: Any, private_key: Path, loop: Any = None) -> None:
    from shared.runtime.app import publisher

    d = run.domain
    devices = [dev.id for dev in run.fleet.devices]
    if not devices:
        return
    if loop is not None:
        try:
            loop.close(publisher(cloud.client, d.name), private_key)
        except Exception as exc:  # noqa: BLE001 - the demo goes on; the summary says why the loop did not close
            loop.rows["live_loop"] = f"failed ({type(exc).__name__}: {str(exc)[:160]})"
            print(f"{d.name}: live loop {loop.rows['live_loop']}", flush=True)
        if loop.closed:
            return
        # not closed: the factory model under a new version, so that the signed-update checks still run
    name, _, version = run.fleet.devices[0].model.model_id.rpartition("@")
    roll_out_update(publisher(cloud.client, d.name), d.name, devices, name, int(version) + 1,
                    (Path(run.args.models) / "tiny.tflite").read_bytes(), private_key)


class _Site(_SiteFeed):
    """The domain's site (healthcare: the ward EHR) for every subject: the firmware fleet's site feed (time
    order, ``step``, ``published``) on one MQTT client of its own."""

    def __init__(self, args: Any, mqtt: str, d: Any, due: Any):
        super().__init__(due or ())
        self.args, self.mqtt, self.domain = args, mqtt, d

    def start(self) -> None:
        if not self.due:
            return
        from shared.runtime.app import client_config, publisher
        from shared.transport.mqtt import MqttClient

        self.client = MqttClient(client_config(self.args, self.mqtt, f"tinylarge-{self.domain.name}-site",
                                               clean_session=True))
        self.client.start()
        self.publish = publisher(self.client, self.domain.name)

    def stop(self) -> None:
        if self.client is not None:
            self.client.stop()
