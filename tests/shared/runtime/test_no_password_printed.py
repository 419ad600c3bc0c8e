"""Issue 13 item 7: `tinylarge serve` prints the broker URL without its password (real process, real broker)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.protocol.endpoints import redact_url

pytestmark = pytest.mark.broker

SECRET = "Pw-not-for-logs-7f3a"


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url(f"mqtts://cloud:{SECRET}@host:8883") == "mqtts://cloud:***@host:8883"
    assert redact_url("mqtt://127.0.0.1:1883") == "mqtt://127.0.0.1:1883"
    assert redact_url(f"influx+http://u:{SECRET}@db:8086/x") == "influx+http://u:***@db:8086/x"


def test_serve_prints_the_url_without_the_password(mosquitto, quick_models: Path, tmp_path: Path) -> None:
    # the test broker allows anonymous clients and ignores the credentials, so any password connects
    url = f"mqtt://cloud:{SECRET}@127.0.0.1:{mosquitto.port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "shared.cli", "serve", "healthcare", "--mqtt", url, "--store",
         f"sqlite:///{tmp_path / 'db.sqlite'}", "--models", str(quick_models), "--client-id", "nopw-test",
         "--duration", "1s", "--quick"], capture_output=True, text=True, timeout=300, env=env)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-2000:]
    assert "serving healthcare on mqtt://cloud:***@127.0.0.1" in text
    assert SECRET not in text
