"""The metaverse_eeg firmware app (metaverse_eeg/firmware: eeg_features.c + eeg_spec.c) against the
Python headset (metaverse_eeg.device.inference_message).

The host app is built with quick-trained models and fed windows of simulated users (clean windows, blinks,
muscle and movement artefacts, bad channels, several affect states) through stdin as tlsensor text
(``metaverse_eeg.device.window_channels`` via ``shared.tiny.frames``). The tlsensor reader keeps float32
samples, so Python computes on the same float32 samples (in float64). C keeps float32 samples and spectra
(its own radix-2 FFT) with double sums. Stated tolerances:

* every message validates against metaverse_eeg/schemas/inference.json, with Python's keys in order;
* ``features``: within 1e-4 absolute or 2e-5 relative (printed with 6 significant digits; measured:
  ~4e-6 relative at most); the artefact flags and bad-channel counts exactly;
* ``class`` equal on at least 95 % of the windows, and where not, Python's two top scores are within two
  int8 steps; every score within 0.05 (an input a rounding boundary away moves one step);
* one Cortex-M4 build under QEMU gives valid messages with Python's class.
"""

from __future__ import annotations

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

DOMAIN = "metaverse_eeg"
START_MS = 1_700_000_000_000
TIMES_S = tuple(4.0 + 30.0 * k for k in range(8))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    pytest.importorskip("tensorflow")
    from metaverse_eeg.train import ensure_trained

    d = tmp_path_factory.getbasetemp() / "metaverse_eeg-quick"  # shared with tests/metaverse_eeg
    ensure_trained(d, quick=True)
    return d


def _build(models_dir: Path, target: str, out: Path):
    from shared.tiny.targets import BuildConfig, FirmwareModel, build

    meta = json.loads((models_dir / "labels.json").read_text())
    return build(BuildConfig(DOMAIN, target, [FirmwareModel(models_dir / "tiny.tflite", "eeg_tiny",
                                                            meta["model_id"])], out))


@pytest.fixture(scope="module")
def windows():
    """(user id, t_s, Window) for users with artefacts of every kind, float32 samples as the device holds them."""
    from metaverse_eeg.signals import SessionConfig, Window, simulate_users

    users = simulate_users(SessionConfig(n_users=6, seed=41))
    users[0].params.bad_channel, users[0].params.bad_kind = 2, "flat"
    users[1].params.bad_channel, users[1].params.bad_kind = 5, "wild"
    users[2].params.blink_rate, users[3].params.emg_rate, users[4].params.move_rate = 1.0, 0.8, 0.5
    out = []
    for u in users:
        for t in TIMES_S:
            u.advance(t)
            w = u.window(t)
            out.append((u.id, t, Window(w.eeg.astype(np.float32).astype(np.float64))))
    return out


def _sensor_text(wins) -> str:
    from metaverse_eeg.device import window_channels

    buf = io.StringIO()
    for _, t, w in wins:
        write_sensor_window(buf, window_channels(w), START_MS + int(round(t * 1000)))
    return buf.getvalue()


def _frames(serial: bytes) -> list[tuple[str, dict]]:
    dec = FrameDecoder()
    out = []
    for frame in dec.feed(serial):
        stream, body = frame.message()
        out.append((stream, messages.decode(DOMAIN, stream, body)))  # validates against the schema
    assert dec.bad == 0
    return out


@pytest.fixture(scope="module")
def runs(models_dir, windows, tmp_path_factory):
    """(C message, Python message) per window; one host process per user."""
    from metaverse_eeg.device import inference_message
    from metaverse_eeg.tiny import TinyModel

    require_tool("gcc")
    app = _build(models_dir, "host", tmp_path_factory.mktemp("eeg_build")).artifacts["app"]
    tiny = TinyModel.load(models_dir)
    out = []
    for uid in dict.fromkeys(u for u, _, _ in windows):
        mine = [w for w in windows if w[0] == uid]
        res = subprocess.run([str(app), "--input", "-", "--device", uid, "--seq-start", "0"],
                             input=_sensor_text(mine).encode("ascii"), capture_output=True, timeout=120)
        assert res.returncode == 0, res.stderr.decode(errors="replace")
        msgs = _frames(res.stdout)
        assert [s for s, _ in msgs] == ["status"] + ["inference"] * len(mine) + ["status"]
        for k, ((_, t, w), (_, c)) in enumerate(zip(mine, msgs[1:-1], strict=True)):
            out.append((c, inference_message(uid, k, START_MS + int(round(t * 1000)), w, tiny)))
    return out


def test_messages_have_pythons_envelope(runs):
    for c, py in runs:
        assert list(c) == list(py)
        for key in ("v", "device", "seq", "ts", "model", "window_s"):
            assert c[key] == py[key], (key, c[key], py[key])
        assert list(c["features"]) == list(py["features"]) and list(c["scores"]) == list(py["scores"])


def test_features_match_python(runs):
    flags = ("blink", "emg", "bad_channels")
    for c, py in runs:
        for name, p in py["features"].items():
            v = c["features"][name]
            if name in flags:
                assert v == p, (c["device"], c["seq"], name, v, p)
            else:
                assert abs(v - p) <= max(1e-4, 2e-5 * abs(p)), (c["device"], c["seq"], name, v, p)
        assert c["artefact"] == py["artefact"]
    seen = {k: sum(py["features"][k] > 0 for _, py in runs) for k in flags}
    assert all(n > 0 for n in seen.values()), seen  # every artefact kind was exercised


def test_class_and_scores_match_python(runs, models_dir):
    from metaverse_eeg.tiny import TinyModel

    step = TinyModel.load(models_dir).runner.output_scale
    same = [c["class"] == py["class"] for c, py in runs]
    assert sum(same) >= 0.95 * len(runs), f"{sum(same)} of {len(runs)}"
    for (c, py), ok in zip(runs, same, strict=True):
        if not ok:
            top = sorted(py["scores"].values(), reverse=True)
            assert top[0] - top[1] <= 2 * step + 1e-4, (c["scores"], py["scores"])
        for k, p in c["scores"].items():
            assert abs(p - py["scores"][k]) <= 0.05
        assert abs(c["valence"] - py["valence"]) <= 0.1 and abs(c["arousal"] - py["arousal"]) <= 0.1
    assert len({py["class"] for _, py in runs}) >= 2


def test_cortex_m4_under_qemu_matches_python(models_dir, windows, tmp_path):
    require_tool("arm-none-eabi-gcc")
    require_tool("qemu-system-arm")
    from metaverse_eeg.device import inference_message
    from metaverse_eeg.tiny import TinyModel
    from shared.tiny.targets import run_qemu

    elf = _build(models_dir, "cortex-m4", tmp_path / "build").artifacts["app.elf"]
    mine = windows[:3]
    sensors = tmp_path / "windows.tls"
    sensors.write_text(_sensor_text(mine))
    run = run_qemu(elf, ["--input", str(sensors), "--device", mine[0][0], "--seq-start", "0"], timeout_s=240)
    assert run.returncode == 0, run.stderr[-2000:]
    inf = [c for s, c in _frames(run.serial) if s == "inference"]
    assert len(inf) == len(mine)
    tiny = TinyModel.load(models_dir)
    for k, ((uid, t, w), c) in enumerate(zip(mine, inf, strict=True)):
        py = inference_message(uid, k, START_MS + int(round(t * 1000)), w, tiny)
        assert c["class"] == py["class"] or abs(max(py["scores"].values()) - py["scores"][c["class"]]) < 0.02
        for name, p in py["features"].items():
            assert abs(c["features"][name] - p) <= max(1e-4, 1e-4 * abs(p)), (name, c["features"][name], p)
