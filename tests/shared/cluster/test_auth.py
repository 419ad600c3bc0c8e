"""``tinylarge cluster config --pki --device``: users, permissions and TLS on a real nats-server.

A one-node cluster written with users (two healthcare devices, one industrial_iot device, the cloud user, a
service user for the worker, an operator) serves TLS on its client and MQTT listeners with ``tinylarge pki``'s
certificates. Measured on nats-server 2.9.10: a QoS 1 publish a user may not make is PUBACKed all the same
(MQTT 3.1.1 lets a server acknowledge or disconnect) and dropped, so "refused" is checked where it matters:
the message is not in ``$MQTT_msgs`` and no subscriber gets it.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from shared.cli import main
from shared.cluster import MQTT_PREFIX, MQTT_STREAM, PART_ROOT
from shared.cluster._js import device_partition
from shared.cluster.config import ClusterConfig, ClusterConfigError, write_cluster_config
from shared.cluster.runner import find_nats_server, free_ports
from shared.security.brokerconf import BrokerConfig, password_env, read_secrets
from shared.security.pki import create_ca, issue
from tests._tools import require_tool
from tests.fixtures.mqtt import wait_for

P = 4
DEVICES = ("healthcare:hc1", "healthcare:hc2", "industrial_iot:m1")


def _pki(tmp: Path) -> Path:
    pki = tmp / "pki"
    create_ca(pki)
    issue(pki, "broker", kind="server")
    return pki


def _auth(pki: Path, out: Path) -> BrokerConfig:
    return BrokerConfig(pki, out, devices=DEVICES, service_users=("w0",), operator_users=("ops",))


# -- the files (no server) ----------------------------------------------------------------------------------------
def test_secured_files_are_private_and_passwords_never_printed(tmp_path, capsys):
    pki = _pki(tmp_path)
    out = tmp_path / "c"
    argv = ["cluster", "config", "--out", str(out), "--nodes", "3", "--partitions", str(P), "--pki", str(pki),
            *sum((["--device", d] for d in DEVICES), []), "--service-user", "w0", "--operator-user", "ops"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    secrets = read_secrets(out / "secrets.env")
    assert set(secrets) == {password_env(u) for u in ("hc1", "hc2", "m1", "cloud", "w0", "ops")}
    for name in ("secrets.env", "accounts.conf"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    assert not any(pw in printed for pw in secrets.values())
    conf = (out / "n1.conf").read_text()
    assert 'include "accounts.conf"' in conf and conf.count("tls {") == 2  # client port and MQTT listener
    assert "mappings" not in conf  # the mapping lives in the users' account
    accounts = (out / "accounts.conf").read_text()
    assert f'"tinylarge.part.{device_partition("healthcare", "hc1", P)}.healthcare.hc1.inference"' in accounts
    assert main(argv) == 0  # re-running keeps every password
    assert read_secrets(out / "secrets.env") == secrets
    assert json.loads((out / "cluster.json").read_text())["tls"] is True


def test_secured_config_mistakes(tmp_path, capsys):
    pki = _pki(tmp_path)
    with pytest.raises(ClusterConfigError, match="DOMAIN:ID"):
        write_cluster_config(ClusterConfig(tmp_path / "a", auth=BrokerConfig(pki, tmp_path / "a", devices=("x",))))
    with pytest.raises(ClusterConfigError, match="unique"):
        write_cluster_config(ClusterConfig(tmp_path / "b", auth=BrokerConfig(pki, tmp_path / "b",
                                                                             devices=("healthcare:cloud",))))
    assert main(["cluster", "config", "--out", str(tmp_path / "c"), "--pki", str(tmp_path / "none"),
                 "--device", "healthcare:a"]) == 2
    assert main(["cluster", "config", "--out", str(tmp_path / "d"), "--device", "healthcare:a"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "pki init" in err[0] and "--pki" in err[1]


# -- a real node ----------------------------------------------------------------------------------------------------
class SecuredNode:
    def __init__(self, tmp: Path):
        self.pki = _pki(tmp)
        self.out = tmp / "cluster"
        client, route, mqtt, http = free_ports(4)
        self.client_port, self.mqtt_port = client, mqtt
        cfg = ClusterConfig(self.out, nodes=1, partitions=P, auth=_auth(self.pki, self.out),
                            ports={"client": [client], "route": [route], "mqtt": [mqtt], "http": [http]})
        self.info = write_cluster_config(cfg, env={})
        self.secrets = read_secrets(self.out / "secrets.env")
        self.log = tmp / "node.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([find_nats_server(), "-c", self.info["conf"][0]], stdout=log,
                                         stderr=subprocess.STDOUT)
        assert wait_for(lambda: "Server is ready" in self.log.read_text(), 20, 0.05), self.log.read_text()[-2000:]

    def password(self, user: str) -> str:
        return self.secrets[password_env(user)]

    def queue(self, user: str) -> dict:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        return {"servers": [f"tls://127.0.0.1:{self.client_port}"], "user": user, "password": self.password(user),
                "tls": ctx, "connect_timeout": 5}

    def mqtt(self, user: str, tls: bool = True, password: str | None = None) -> MqttUser:
        return MqttUser(self, user, tls, password)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class MqttUser:
    """A paho client of one user (client id = user name), QoS 1, with what it received."""

    def __init__(self, node: SecuredNode, user: str, tls: bool, password: str | None):
        self.got: list[tuple[str, bytes]] = []
        self.rc: list[int] = []
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=user, clean_session=True)
        c.username_pw_set(user, password if password is not None else node.password(user))
        if tls:
            c.tls_set(ca_certs=str(node.pki / "ca.crt"))
        c.on_message = lambda _c, _u, m: self.got.append((m.topic, m.payload))
        c.on_connect = lambda _c, _u, _f, rc, _p: self.rc.append(rc.value)
        c.on_disconnect = lambda *_a: self.rc.append(-2)  # refused before or instead of a CONNACK
        c.reconnect_delay_set(30, 30)
        self.c = c
        try:
            c.connect("127.0.0.1", node.mqtt_port)
        except (OSError, ssl.SSLError):
            self.rc.append(-1)
            return
        c.loop_start()
        wait_for(lambda: bool(self.rc), 10, 0.05)

    @property
    def connected(self) -> bool:
        return self.rc == [0]

    def publish(self, topic: str, payload: bytes) -> bool:
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        return info.is_published()

    def subscribe(self, topic: str) -> None:
        done: list[bool] = []
        self.c.on_subscribe = lambda *_a: done.append(True)
        self.c.subscribe(topic, qos=1)
        assert wait_for(lambda: bool(done), 10, 0.05)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def node(tmp_path) -> Iterator[SecuredNode]:
    if not os.access("/usr/sbin/nats-server", os.X_OK):
        require_tool("nats-server")
    n = SecuredNode(tmp_path)
    try:
        yield n
    finally:
        n.stop()


async def _with(node: SecuredNode, user: str, work, **kw):
    import nats

    nc = await nats.connect(**node.queue(user), **kw)
    try:
        return await work(nc)
    finally:
        await nc.close()


def _stored_subjects(node: SecuredNode) -> list[str]:
    """The inference subjects held in ``$MQTT_msgs``."""
    from nats.js.errors import NotFoundError

    async def look(nc):
        js = nc.jetstream()
        info = await js.stream_info(MQTT_STREAM)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:  # the model delivered at QoS 1 was removed once acknowledged (interest retention)
                subject = (await js.get_msg(MQTT_STREAM, seq)).subject
            except NotFoundError:
                continue
            if subject.endswith(".inference"):
                out.append(subject)
        return out

    return asyncio.run(_with(node, "cloud", look))


def _part(domain: str, device: str) -> str:
    return f"{MQTT_PREFIX}.{PART_ROOT}.{device_partition(domain, device, P)}.{domain}.{device}.inference"


@pytest.mark.cluster
def test_a_device_publishes_only_its_own_streams_and_reads_only_its_own(node):
    hc1 = node.mqtt("hc1")
    assert hc1.connected
    assert wait_for(lambda: _has_stream(node), 20, 0.2)
    asyncio.run(_with(node, "cloud", _consumers))  # the partitions' consumers, so $MQTT_msgs keeps messages
    hc2, ops = node.mqtt("hc2"), node.mqtt("ops")
    hc2.subscribe("tinylarge/healthcare/hc1/model")  # another device's downward stream: not delivered
    hc2.subscribe("tinylarge/healthcare/hc2/model")
    hc2.subscribe("$MQTT/sub/#")  # the inboxes NATS delivers QoS 1 subscriptions through: nothing of hc1's
    hc1.subscribe("tinylarge/healthcare/hc1/model")
    ops.subscribe(f"{PART_ROOT.replace('.', '/')}/+/+/+/inference")  # where the mapping puts inference
    assert hc1.publish("tinylarge/healthcare/hc1/inference", b"own")
    hc1.publish("tinylarge/healthcare/hc2/inference", b"as-hc2")  # PUBACKed by NATS 2.9, and dropped
    hc1.publish("tinylarge/industrial_iot/hc1/inference", b"other-domain")
    hc1.publish("tinylarge/healthcare/hc1/risk", b"a-result")  # a device writes no result

    async def results(nc):  # the cloud publishes each device its own model
        for device in ("hc1", "hc2"):
            await nc.publish(f"tinylarge.healthcare.{device}.model", device.encode())
        await nc.flush()

    asyncio.run(_with(node, "cloud", results))
    cloud = node.mqtt("cloud")  # and once more at QoS 1 through MQTT (stored, delivered via $MQTT.sub.<id>)
    assert cloud.publish("tinylarge/healthcare/hc1/model", b"hc1-qos1")
    assert wait_for(lambda: len(ops.got) >= 1 and len(hc2.got) >= 1 and len(hc1.got) >= 2, 10, 0.05)
    time.sleep(1.0)  # anything wrongly let through would have arrived by now
    assert _stored_subjects(node) == [_part("healthcare", "hc1")]  # only its own message, on its partition
    assert [p for _, p in ops.got] == [b"own"]
    assert hc2.got == [("tinylarge/healthcare/hc2/model", b"hc2")]
    assert sorted(p for _, p in hc1.got) == [b"hc1", b"hc1-qos1"]
    log = node.log.read_text()
    assert "Publish Violation" in log and "Subscription Violation" in log
    for c in (hc1, hc2, ops, cloud):
        c.close()


@pytest.mark.cluster
def test_tls_and_passwords_are_required(node):
    assert not node.mqtt("hc1", tls=False).connected  # the MQTT listener speaks TLS only
    assert not node.mqtt("hc1", password="wrong").connected
    assert not node.mqtt("nobody", password="x").connected
    ok = node.mqtt("hc1")
    assert ok.connected  # with the project's CA and its own password
    ok.close()

    async def plain():
        import nats

        nc = await nats.connect(servers=[f"nats://127.0.0.1:{node.client_port}"], connect_timeout=2,
                                max_reconnect_attempts=0, allow_reconnect=False)
        await nc.close()

    with pytest.raises(Exception):  # noqa: B017 - nats-py raises several kinds; any refusal will do
        asyncio.run(plain())

    async def device_over_nats(nc):  # a device's user may use MQTT only
        return nc

    with pytest.raises(Exception):  # noqa: B017
        asyncio.run(_with(node, "hc1", device_over_nats, allow_reconnect=False, max_reconnect_attempts=0))


def _has_stream(node: SecuredNode) -> bool:
    async def look(nc):
        try:
            await nc.jetstream().stream_info(MQTT_STREAM)
            return True
        except Exception:  # noqa: BLE001 - not yet
            return False

    return asyncio.run(_with(node, "cloud", look))


async def _consumers(nc) -> dict:
    from shared.cluster._js import ensure_partitions

    return await ensure_partitions(nc, P, 1, ack_wait_s=4.0, lease_s=3.0)


@pytest.mark.cluster
@pytest.mark.slow
def test_a_worker_with_its_service_user_scores_the_devices_messages(node, quick_models, tmp_path):
    import sys

    from shared.protocol import messages
    from tests.shared._support import inference
    from tests.shared.cluster._fleet import stored

    devices = [node.mqtt(d) for d in ("hc1", "hc2")]
    assert wait_for(lambda: _has_stream(node), 20, 0.2)
    asyncio.run(_with(node, "cloud", _consumers))
    ops = node.mqtt("ops")
    ops.subscribe("tinylarge/healthcare/+/risk")
    db = tmp_path / "store.db"
    queue = f"tls://w0@127.0.0.1:{node.client_port}"
    with open(tmp_path / "w0.log", "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "serve", "healthcare", "--queue", queue, "--ca",
             str(node.pki / "ca.crt"), "--worker", "0/1", "--store", f"sqlite:///{db}", "--models", str(quick_models),
             "--quick"], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, password_env("w0"): node.password("w0"), "PYTHONUNBUFFERED": "1"})
    try:
        for seq in range(3):
            for name, dev in zip(("hc1", "hc2"), devices, strict=True):
                assert dev.publish(f"tinylarge/healthcare/{name}/inference",
                                   messages.encode("healthcare", "inference", inference(name, seq)))
        assert wait_for(lambda: sum(map(len, stored(db).values())) >= 6 or worker.poll() is not None, 90, 0.2), (
            (tmp_path / "w0.log").read_text()[-2000:])
        assert {d: sorted(s) for d, s in stored(db).items()} == {"hc1": [0, 1, 2], "hc2": [0, 1, 2]}
        assert wait_for(lambda: len(ops.got) >= 6, 20, 0.1)  # its results reach the operator through the cluster
        assert "Violation" not in node.log.read_text()  # the service user's rights cover what a worker does
    finally:
        worker.terminate()
        worker.wait(20)
        for c in (*devices, ops):
            c.close()


def test_queue_url_names_the_user_never_the_password(monkeypatch):
    from shared.cluster.worker import parse_queue_url, queue_credentials

    assert parse_queue_url("tls://w0@a:1,b:2") == ["tls://a:1", "tls://b:2"]
    with pytest.raises(ValueError, match="TINYLARGE_MQTT_PASSWORD_"):
        parse_queue_url("nats://w0:secret@a:1")
    monkeypatch.delenv(password_env("w0"), raising=False)
    with pytest.raises(ValueError, match=password_env("w0")):
        queue_credentials("nats://w0@a:1")
    monkeypatch.setenv(password_env("w0"), "pw")
    assert queue_credentials("nats://w0@a:1") == {"user": "w0", "password": "pw"}
    assert queue_credentials("nats://a:1") == {}
