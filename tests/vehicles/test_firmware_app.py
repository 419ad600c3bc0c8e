"""The vehicles firmware app (vehicles/firmware/veh_spec.c) against the Python telematics unit.

The host app is built with the quick-trained event classifier and fed simulated trip segments (random
mountings, a forced crash, GNSS dropouts) as tlsensor text through `vehicles.device.window_channels`;
its framed messages are compared with `vehicles.device.inference_message` on the same segments with
the samples rounded to float32 (the tlsensor reader stores float32). Stated tolerances: the envelope,
counts, rule counts, calibration flag and event kinds equal; numbers within their printed rounding
(stats 1e-5 relative + 2e-6, event times 0.01 s, peaks 1e-3, positions 2e-6 deg); scores within one
int8 step. The Cortex-M4 build under QEMU (slow) passes the same comparison.
"""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from shared.protocol import messages
from shared.tiny.frames import FrameDecoder, write_sensor_window
from tests._tools import require_tool

pytestmark = pytest.mark.firmware
DOMAIN = "vehicles"
START_MS = 1_700_000_000_000


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    pytest.importorskip("tensorflow")
    from vehicles.train import ensure_trained

    d = tmp_path_factory.mktemp("veh_models") / "vehicles"
    ensure_trained(d, quick=True)
    return d


def _build(models_dir: Path, target: str, out: Path) -> dict:
    from shared.tiny.targets import BuildConfig, FirmwareModel, build

    meta = json.loads((models_dir / "tiny_metrics.json").read_text())
    return build(BuildConfig(DOMAIN, target, [FirmwareModel(models_dir / "tiny.tflite", "veh_tiny",
                                                             meta["model_id"])], out)).artifacts


@pytest.fixture(scope="module")
def trips():
    from vehicles.signals import FleetConfig, simulate_fleet

    vs = simulate_fleet(FleetConfig(n_vehicles=4, seed=77))
    return [(v, v.trip(k, "crash" if k == 1 and v.index % 2 else True)) for v in vs for k in range(3)]


def _sensor_text(segments) -> str:
    from vehicles.device import window_channels

    buf = io.StringIO()
    for k, (_, t) in enumerate(segments):
        write_sensor_window(buf, window_channels(t), START_MS + k * 3_600_000)
    return buf.getvalue()


def _inferences(serial: bytes) -> list[dict]:
    dec = FrameDecoder()
    out = []
    for frame in dec.feed(serial):
        stream, body = frame.message()
        if stream == "inference":
            out.append(messages.decode(DOMAIN, stream, body))  # decode validates against the schema
    assert dec.bad == 0
    return out


def _python(segments, models_dir: Path) -> list[dict]:
    from vehicles.device import inference_message
    from vehicles.tiny import TinyModel

    model = TinyModel.load(models_dir)
    out = []
    for k, (v, t) in enumerate(segments):
        t32 = dataclasses.replace(t, **{f: getattr(t, f).astype(np.float32).astype(np.float64)
                                        for f in ("acc_mps2", "gyro_rads", "gnss")})
        out.append(inference_message(v.id, k, START_MS + k * 3_600_000, t32, model))
    return out


@pytest.fixture(scope="module")
def runs(models_dir, trips, tmp_path_factory):
    require_tool("gcc")
    app = _build(models_dir, "host", tmp_path_factory.mktemp("veh_build"))["app"]
    out = []
    for vid in dict.fromkeys(v.id for v, _ in trips):
        mine = [(u, t) for u, t in trips if u.id == vid]
        res = subprocess.run([str(app), "--input", "-", "--device", vid, "--seq-start", "0"],
                             input=_sensor_text(mine).encode("ascii"), capture_output=True, timeout=120)
        assert res.returncode == 0, res.stderr.decode(errors="replace")
        c = _inferences(res.stdout)
        assert len(c) == len(mine)
        out += list(zip(c, _python(mine, models_dir), strict=True))
    return out


def assert_same_message(c: dict, py: dict, score_step: float) -> None:
    assert list(c) == list(py)
    for key in ("v", "device", "seq", "ts", "model", "calibrated", "counts", "rule_counts"):
        assert c[key] == py[key], (key, c[key], py[key])
    for key, tol in (("trip_s", 1e-9), ("distance_km", 1e-4), ("gnss_fix_frac", 1e-4), ("lat", 2e-6), ("lon", 2e-6)):
        assert (c[key] is None) == (py[key] is None) and (c[key] is None or abs(c[key] - py[key]) <= tol), key
    for key, p in py["stats"].items():
        v = c["stats"][key]
        assert (v is None) == (p is None), key
        assert p is None or abs(v - p) <= 2e-6 + 1e-5 * abs(p), (key, v, p)
    assert [e["kind"] for e in c["events"]] == [e["kind"] for e in py["events"]]
    for a, b in zip(c["events"], py["events"], strict=True):
        assert abs(a["t_s"] - b["t_s"]) <= 0.011 and abs(a["dur_s"] - b["dur_s"]) <= 0.011, (a, b)
        assert abs(a["peak_mps2"] - b["peak_mps2"]) <= 1.1e-3 and abs(a["score"] - b["score"]) <= score_step, (a, b)
        for k in ("lat", "lon"):
            assert (a[k] is None) == (b[k] is None) and (a[k] is None or abs(a[k] - b[k]) <= 2e-6), (k, a, b)


def test_host_app_publishes_what_the_python_unit_publishes(runs, models_dir):
    from vehicles.tiny import TinyModel

    step = TinyModel.load(models_dir).runner.output_scale + 1e-4
    for c, py in runs:
        assert_same_message(c, py, step)
    # the segments exercise the classifier (which classes the quick model picks varies with its training)
    assert sum(len(c["events"]) for c, _ in runs) >= 3
    assert sum(c["rule_counts"]["crash"] for c, _ in runs) >= 2


def test_garbage_input_is_an_error_not_a_message(models_dir, tmp_path):
    require_tool("gcc")
    app = _build(models_dir, "host", tmp_path)["app"]
    res = subprocess.run([str(app), "--input", "-", "--seq-start", "0"], input=b"acc_x 1 2 x\n",
                         capture_output=True, timeout=30)
    assert _inferences(res.stdout) == []
    assert res.returncode != 0


@pytest.mark.slow
def test_cortex_m4_under_qemu_matches_the_host(models_dir, trips, runs, tmp_path):
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    from shared.tiny.targets import run_qemu

    elf = _build(models_dir, "cortex-m4", tmp_path / "build")["app.elf"]
    v = trips[0][0]
    mine = [(u, t) for u, t in trips if u is v][:2]
    sensors = tmp_path / "trips.tls"
    sensors.write_text(_sensor_text(mine))
    run = run_qemu(elf, ["--input", str(sensors), "--device", v.id, "--seq-start", "0"], timeout_s=300)
    assert run.returncode == 0, run.stderr[-2000:]
    from vehicles.tiny import TinyModel

    got = _inferences(run.serial)
    assert len(got) == 2
    step = TinyModel.load(models_dir).runner.output_scale + 1e-4
    for c, (_, py) in zip(got, runs[:2], strict=True):
        assert_same_message(c, py, step)
