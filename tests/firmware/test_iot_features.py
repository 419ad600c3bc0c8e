"""The C port of the industrial_iot DSP (industrial_iot/firmware/iot_features.c) against
industrial_iot.features.

Both run on the same simulated windows (every condition, with and without sensor trouble, plus edge
cases: a NaN sample, no shaft speed, a silent sensor), written in the tlsensor text format the firmware
reads; the Python side gets the same float32 samples and float32 shaft speed. C keeps float32 samples
and spectra (its own radix-2 FFT) with double sums, Python computes in float64. Stated tolerances, a
value passing if within either the absolute or the relative one:

| feature                                   | absolute   | relative |
|-------------------------------------------|------------|----------|
| shaft_hz                                  | 1e-6 Hz    | 1e-7     |
| a_rms_g, peak_g, crest, kurtosis          | 1e-7       | 1e-5     |
| v_rms_mm_s, a_10_1k_g, a_1k_2k_g, a_2k_4k_g | 1e-6     | 1e-4     |
| v_0p5x .. v_4_8x_mm_s (order lines)       | 1e-5 mm/s  | 1e-3     |
| env_rms_g                                 | 1e-6 g     | 1e-4     |
| env_1x .. env_bsf2_g (envelope lines)     | 1e-6 g     | 1e-3     |
| the model vector (to_vector)              | 1e-3       | -        |

(Measured on these windows: at most ~1e-5 relative on any feature.) The NaN pattern must match exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from shared.domain import get
from tests._tools import require_tool

pytestmark = pytest.mark.firmware

FW = Path(__file__).resolve().parents[2] / "firmware"
APP = get("industrial_iot").firmware_dir  # the domain's firmware app, in its package
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-pedantic"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-O1"]
SOURCES = [FW / "tools" / "iot_features_main.c", APP / "iot_features.c",
           FW / "hal" / "tl_sensor_text.c"]
TIME = (1e-7, 1e-5)
BAND = (1e-6, 1e-4)
ORDER = (1e-5, 1e-3)
ENV = (1e-6, 1e-3)
TOLERANCES = {
    "shaft_hz": (1e-6, 1e-7), "a_rms_g": TIME, "peak_g": TIME, "crest": TIME, "kurtosis": TIME,
    "v_rms_mm_s": BAND, "a_10_1k_g": BAND, "a_1k_2k_g": BAND, "a_2k_4k_g": BAND,
    "v_0p5x_mm_s": ORDER, "v_1x_mm_s": ORDER, "v_2x_mm_s": ORDER, "v_3x_mm_s": ORDER, "v_halfx_mm_s": ORDER,
    "v_4_8x_mm_s": ORDER, "env_rms_g": (1e-6, 1e-4), "env_1x_g": ENV, "env_ftf_g": ENV, "env_bpfo_g": ENV,
    "env_bpfi_g": ENV, "env_bsf2_g": ENV,
}
VECTOR_ATOL = 1e-3


def build(tmp: Path, name: str, extra: list[str]) -> Path:
    gcc = require_tool("gcc")
    exe = tmp / name
    cmd = [gcc, *STRICT, *extra, f"-I{FW}/hal", f"-I{APP}", *map(str, SOURCES), "-lm",
           "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0 and not res.stderr, f"{' '.join(cmd)}\n{res.stderr}"
    return exe


def windows(n_samples: int = 8192):
    """(accel float32, shaft_hz float32, bearing) per window: 3 of every condition, then edge cases."""
    from industrial_iot import signals as S

    fs = 10240
    ws = S.training_windows(21, seed=8, window_s=n_samples / fs, sensor_issue_share=0.3)
    out = [(w.accel_g, np.float32(w.shaft_hz), w.bearing) for w in ws]
    x, fr, b = out[4]
    nan = x.copy()
    nan[1234] = np.nan
    out += [(nan, fr, b), (x, np.float32(0.0), b), (np.zeros_like(x), fr, b)]
    return out


def run_c(exe: Path, wins, tmp: Path) -> list[dict]:
    """Run the harness once per bearing geometry; results in the order of `wins`."""
    results: list[dict | None] = [None] * len(wins)
    geos = sorted({tuple(sorted(b.items())) for _, _, b in wins})
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    for g in geos:
        idx = [i for i, (_, _, b) in enumerate(wins) if tuple(sorted(b.items())) == g]
        path = tmp / "windows.tls"
        with path.open("w") as fh:
            for i in idx:
                x, fr, _ = wins[i]
                fh.write(f"t {1_700_000_000_000 + i}\nshaft_hz {float(fr)!r}\naccel ")
                fh.write(" ".join("nan" if np.isnan(v) else f"{v:.9g}" for v in x.tolist()))
                fh.write("\n")
        b = dict(g)
        args = ["--n-balls", str(b["n_balls"]), "--ball-d", repr(b["ball_d"]), "--pitch-d", repr(b["pitch_d"]),
                "--contact-deg", repr(b["contact_deg"])]
        res = subprocess.run([str(exe), *args, str(path)], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert len(lines) == len(idx)
        for i, line in zip(idx, lines, strict=True):
            results[i] = json.loads(line)
    return results  # type: ignore[return-value]


def assert_parity(wins, c_out) -> int:
    from industrial_iot.features import FEATURE_NAMES, extract, to_vector

    checked = 0
    for k, ((x, fr, b), c) in enumerate(zip(wins, c_out, strict=True)):
        ft = extract(x, 10240, float(fr), b)
        py = ft.as_dict()
        for name in FEATURE_NAMES:
            p, v = py[name], c[name]
            assert (p is None) == (v is None), f"window {k} {name}: python {p} vs C {v} (NaN pattern differs)"
            if p is None:
                continue
            atol, rtol = TOLERANCES[name]
            assert abs(v - p) <= max(atol, rtol * abs(p)), f"window {k} {name}: python {p} vs C {v}"
            checked += 1
        np.testing.assert_allclose(np.array(c["vector"], dtype=np.float64), to_vector(ft), atol=VECTOR_ATOL)
    return checked


@pytest.fixture(scope="module")
def wins():
    return windows()


@pytest.fixture(scope="module")
def c_out(tmp_path_factory, wins):
    tmp = tmp_path_factory.mktemp("iot")
    return run_c(build(tmp, "iot_features", ["-O2"]), wins, tmp)


def test_every_window_of_every_condition_matches_python(wins, c_out):
    checked = assert_parity(wins, c_out)
    assert checked >= 21 * 21  # every feature of every simulated window was measurable


def test_edge_windows(c_out):
    nan_sample, no_shaft, silent = c_out[-3:]
    assert nan_sample["shaft_hz"] is not None and all(v is None for k, v in nan_sample.items()
                                                      if k not in ("shaft_hz", "vector"))
    assert no_shaft["shaft_hz"] is None and no_shaft["v_1x_mm_s"] is None and no_shaft["v_rms_mm_s"] is not None
    assert silent["a_rms_g"] == 0 and silent["crest"] is None and silent["kurtosis"] is None
    assert all(abs(v) <= 8 for line in c_out for v in line["vector"])


def test_sanitized_build_agrees(tmp_path, wins):
    exe = build(tmp_path, "iot_features_asan", SANITIZE)
    sub = wins[::4] + wins[-3:]
    assert_parity(sub, run_c(exe, sub, tmp_path))


def test_smaller_window_by_define(tmp_path):
    """-DIOT_WINDOW_SAMPLES=4096 (0.4 s at 10 240 Hz, df = 2.5 Hz) for smaller parts."""
    exe = build(tmp_path, "iot_features_4k", ["-O2", "-DIOT_WINDOW_SAMPLES=4096"])
    sub = windows(4096)[:7]
    assert_parity(sub, run_c(exe, sub, tmp_path))


def test_harness_rejects_bad_arguments_and_input(tmp_path):
    exe = build(tmp_path, "iot_features", ["-O2"])
    assert subprocess.run([str(exe), "--bogus", "1"], capture_output=True).returncode == 2
    assert subprocess.run([str(exe), "--ball-d", "x"], capture_output=True).returncode == 2
    bad = tmp_path / "bad.tls"
    bad.write_text("vibration 1 2 3\n")
    assert subprocess.run([str(exe), str(bad)], capture_output=True).returncode == 3
    geo = tmp_path / "ok.tls"
    geo.write_text("shaft_hz 25\naccel " + " ".join(["0.1"] * 8192) + "\n")
    assert subprocess.run([str(exe), "--ball-d", "50", str(geo)], capture_output=True).returncode == 4


def test_cortex_m4_build_is_warning_free(tmp_path):
    cc = require_tool("arm-none-eabi-gcc")
    cmd = [cc, "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", *STRICT, "-O2", "-c",
           str(APP / "iot_features.c"), "-o", str(tmp_path / "iot_features.o")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0 and not res.stderr, res.stderr
