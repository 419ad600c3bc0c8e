"""Long steps announce themselves and show progress when output is not a terminal; third-party noise stays
off; Ctrl-C in a training is one line (shared/progress.py, shared/quiet.py, shared/runtime/training.py)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.progress import LineProgress, progress

#: what TensorFlow, absl, the TFLite converter and Hugging Face print when nobody quiets them
NOISE = ("absl::InitializeLog", "oneDNN custom operations", "fully_quantize", "Writing model shards",
         "cpu_feature_guard", "Traceback")


def test_line_progress_prints_start_heartbeat_and_end_off_a_terminal():
    assert isinstance(progress(total=1, desc="x", stream=io.StringIO()), LineProgress)  # not a terminal
    out = io.StringIO()
    bar = LineProgress(total=10, desc="features", unit="win", stream=out, every=0.02)
    bar.update(4)
    bar.set_postfix_str("student")
    deadline = time.monotonic() + 10
    while "4/10 win (40 %)" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "features: started, 10 win"
    assert any(ln.startswith("features: 4/10 win (40 %)") and ln.endswith("[student]") for ln in lines)
    assert lines[-1].startswith("features: done, 4 win in ")
    bar.close()  # closing twice prints nothing more
    assert out.getvalue().splitlines() == lines


def test_an_interrupted_step_does_not_claim_it_was_done():
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        for i in progress(range(5), desc="ticks", unit="tick", stream=out):
            if i == 2:
                raise KeyboardInterrupt
    assert "done" not in out.getvalue() and out.getvalue().startswith("ticks: started, 5 tick")
    out = io.StringIO()
    assert list(progress(range(3), desc="ticks", stream=out)) == [0, 1, 2]
    assert out.getvalue().splitlines()[-1].startswith("ticks: done, 3 it in ")


def _train(models: Path, err: Path, extra_env: dict | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("TINYLARGE_DEBUG", "TINYLARGE_VERBOSE",
                                                             "TF_CPP_MIN_LOG_LEVEL")}
    env.update({"TINYLARGE_PROGRESS_S": "1", **(extra_env or {})})
    return subprocess.Popen([sys.executable, "-m", "shared.cli", "train", "healthcare", "--quick", "--models",
                             str(models)], stdout=subprocess.PIPE, stderr=err.open("w"), text=True, env=env,
                            start_new_session=True)


def test_training_off_a_terminal_shows_every_stage_and_no_library_noise(tmp_path):
    """`tinylarge train healthcare --quick` with its output piped (not a terminal), as in CI's log."""
    err = tmp_path / "stderr.txt"
    proc = _train(tmp_path / "models", err)
    out, _ = proc.communicate(timeout=600)
    text = err.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "healthcare: training the quick models into" in out
    for step in ("features (train cohort)", "features (held-out cohort)", "tiny model", "risk transformer"):
        assert f"{step}: started" in text and f"{step}: done" in text, (step, text[-3000:])
    assert any(" s [" in ln or "%)" in ln for ln in text.splitlines())  # at least one line while running
    found = [n for n in NOISE if n in text + out]
    assert not found, (found, text[-3000:])


def test_ctrl_c_in_a_training_is_one_line_not_a_traceback_per_pool_worker(tmp_path):
    err = tmp_path / "stderr.txt"
    proc = _train(tmp_path / "models", err)
    try:
        deadline = time.monotonic() + 300
        while "features (train cohort): started" not in err.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, err.read_text()[-3000:]
            time.sleep(0.1)
        time.sleep(1.0)  # inside the fork pool's work
        assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.read_text()
    assert proc.returncode == 130, text[-3000:]
    assert "tinylarge: interrupted" in text and "Traceback" not in text and "KeyboardInterrupt" not in text, \
        text[-3000:]
