"""The console script's error boundary: a user's mistake is one line on stderr and exit code 2, checked
before anything starts; ``--debug`` shows the traceback; a broken model folder names the command that
retrains it. Every case runs the real ``tinylarge`` entry point in a subprocess."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

TIMEOUT_S = 300


def _tinylarge(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "TINYLARGE_DEBUG": "0", **(env or {})}
    full_env.pop("TINYLARGE_MQTT", None)
    full_env.pop("TINYLARGE_STORE", None)
    return subprocess.run([sys.executable, "-m", "shared.cli", *argv], capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=full_env)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("tinylarge: ")]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("verb", ["demo", "serve"])
def test_a_url_missing_its_slashes_is_named_before_anything_starts(verb, tmp_path):
    proc = _tinylarge(verb, "healthcare", "--mqtt", "mqtt:/localhost", "--models", str(tmp_path / "none"))
    line = _one_line(proc)
    assert "--mqtt" in line and "'//' missing after 'mqtt:'" in line
    assert not (tmp_path / "none").exists()  # refused before any training


def test_an_unsupported_store_is_named(tmp_path):
    line = _one_line(_tinylarge("demo", "healthcare", "--store", "postgres://x/db", "--models", str(tmp_path / "m")))
    assert "--store" in line and "'postgres'" in line


def test_a_missing_certificate_file_is_named(tmp_path):
    line = _one_line(_tinylarge("serve", "healthcare", "--mqtt", "mqtts://127.0.0.1:8883", "--ca",
                                str(tmp_path / "ca.pem"), "--models", str(tmp_path / "m")))
    assert "--ca" in line and "ca.pem" in line


def test_an_unreachable_broker_is_one_line(quick_models):
    port = _free_port()  # nothing listens there
    line = _one_line(_tinylarge("serve", "healthcare", "--quick", "--models", str(quick_models), "--mqtt",
                                f"mqtt://127.0.0.1:{port}", "--store", "sqlite:///:memory:", "--duration", "1s"))
    assert f"127.0.0.1:{port}" in line and "unreachable" in line


def _broken_copy(quick_models: Path, tmp_path: Path, damage: str) -> Path:
    models = tmp_path / "healthcare"
    shutil.copytree(quick_models, models, ignore=shutil.ignore_patterns("cache"))
    if damage == "tiny":
        (models / "tiny.tflite").write_bytes(b"this is not a flatbuffer" * 8)
    else:
        (models / "large" / "model.safetensors").unlink()
    return models


def test_a_corrupt_device_model_names_the_folder_and_the_retraining(quick_models, tmp_path):
    models = _broken_copy(quick_models, tmp_path, "tiny")
    line = _one_line(_tinylarge("demo", "healthcare", "--quick", "--models", str(models), "--out",
                                str(tmp_path / "out"), "--firmware", "0", "--qemu", "0", "--no-dashboard"))
    assert str(models) in line and "tinylarge train healthcare" in line


def test_a_deleted_cloud_model_names_the_folder_and_the_retraining(quick_models, tmp_path):
    models = _broken_copy(quick_models, tmp_path, "large")
    line = _one_line(_tinylarge("serve", "healthcare", "--quick", "--models", str(models), "--store", "sqlite:///:memory:",
                                "--duration", "1s"))
    assert str(models) in line and "tinylarge train healthcare" in line


def test_debug_shows_the_traceback(tmp_path):
    proc = _tinylarge("--debug", "demo", "healthcare", "--store", "postgres://x/db", "--models", str(tmp_path))
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "UserError" in proc.stderr
