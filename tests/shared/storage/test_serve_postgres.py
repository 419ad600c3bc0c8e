"""``tinylarge serve healthcare --store postgresql://...`` end to end: a real serve process, real Mosquitto, a
real PostgreSQL. Inferences are stored once (a redelivery absorbed), a different message under a stored
(device, seq) is dead-lettered as a seq conflict, the password is never printed, and a restarted service
rebuilds its subjects' history from PostgreSQL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared.storage.factory import open_store
from shared.transport.consumer import Publisher
from shared.transport.mqtt import MqttClient, MqttConfig
from tests.fixtures.mqtt import wait_for
from tests.shared._support import uid
from tests.shared.runtime.test_service_hardening import _msg

pytestmark = [pytest.mark.postgres, pytest.mark.broker]

REPO = Path(__file__).resolve().parents[3]
SECRET = "Pw-not-for-logs-b7a0"  # the test server trusts loopback logins: any password connects


@contextmanager
def _serve(mqtt: str, store: str, models: Path, client_id: str) -> Iterator[list[str]]:
    cmd = [sys.executable, "-m", "shared.cli", "serve", "healthcare", "--mqtt", mqtt, "--store", store,
           "--models", str(models), "--client-id", client_id, "--quick"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env={"PYTHONUNBUFFERED": "1", **dict(__import__("os").environ)})
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("serving healthcare"):
            break
    else:
        raise AssertionError(f"serve did not start (exit {proc.wait()}):\n{''.join(lines)[-3000:]}")
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        yield lines
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, "".join(lines)[-3000:]
        reader.join(timeout=10)


def test_serve_stores_to_postgresql_dead_letters_a_conflict_and_rebuilds_from_it(
        mosquitto, quick_models: Path, postgres_url: str) -> None:
    store_url = postgres_url.replace("postgres@", f"postgres:{SECRET}@")
    devices = [uid("pg"), uid("pg")]
    dead: list[dict] = []
    client = MqttClient(MqttConfig(url=mosquitto.url, client_id=uid("pg-pub"), clean_session=True))
    watcher = MqttClient(MqttConfig(url=mosquitto.url, client_id=uid("pg-dl"), clean_session=True))
    watcher.start()
    watcher.subscribe("tinylarge/_deadletter/healthcare", lambda _t, payload: dead.append(json.loads(payload)))
    client.start()
    pub = Publisher(client)

    def send(msg: dict) -> None:
        assert pub.publish_msg("healthcare", msg["device"], "inference", msg, timeout_s=10)

    reader = open_store(postgres_url)  # another process's view of the same database
    try:
        with _serve(mosquitto.url, store_url, quick_models, uid("pg-svc")) as out:
            for seq in range(10):
                for device in devices:
                    send(_msg(device, seq))
            send(_msg(devices[0], 4))  # a redelivery: absorbed
            send(_msg(devices[1], 5, hr=140.0))  # other content under a stored key: a seq conflict
            assert wait_for(lambda: reader.count("inference") == 20 and len(dead) >= 1, 60), (reader.count(
                "inference"), dead)
            assert wait_for(lambda: reader.count("risk") >= 2, 60)
        text = "".join(out)
        assert f"storing to {store_url.replace(SECRET, '***')}" in text and SECRET not in text
        assert [d["reason"].split(":")[0] for d in dead] == ["seq conflict"], dead
        assert f"/{devices[1]}/" in dead[0]["topic"]
        for device in devices:
            assert [p.seq for p in reader.query("inference", device)] == list(range(10))
        assert reader.get("vitals", devices[1], 5).fields["hr_bpm"] == 80.0  # the first stays

        with _serve(mosquitto.url, store_url, quick_models, uid("pg-svc2")) as out2:  # a new service, same store
            send(_msg(devices[0], 10))
            assert wait_for(lambda: reader.count("inference", devices[0]) == 11, 60)
        assert any("rebuilt 20 history steps from the store" in line for line in out2), "".join(out2)[-3000:]
    finally:
        reader.close()
        client.stop()
        watcher.stop()
