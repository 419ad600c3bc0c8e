"""Issue 23 items 5 and 7 against a real Mosquitto running the configuration `tinylarge broker config` writes.

* item 7: a device identity belongs to one domain. A healthcare device that publishes its inference and
  status into every other registered domain and an invented one is refused every time (MQTT 5 PUBACK
  "Not authorized") and nothing of it reaches the cloud; its own domain still works.
* item 5: split learning's streams have a place in the ACL with the per-device rules: a device writes
  only its own ``smashed`` and reads only its own ``cutgrad``/``splitpred``; the cloud and service users
  read every ``smashed`` and answer on ``cutgrad``/``splitpred``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.domain import names
from tests.shared.security.test_security_broker import DOMAIN_OF, V5, Broker, Client, _make_broker

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = _make_broker(tmp_path_factory.mktemp("round3"), service_users=("svc1",), operator_users=("ops",))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def clients(broker: Broker) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(user: str, **kw) -> Client:
        c = Client(broker, user, broker.files.passwords[user], **kw)
        made.append(c)
        assert c.connect() == "Success", f"{user} refused: {c.connack}"
        return c

    yield make
    for c in made:
        c.close()


def _status(device: str, seq: int) -> bytes:
    return json.dumps({"v": 1, "device": device, "seq": seq, "ts": 1, "model": "m@1", "state": "online"}).encode()


def test_a_device_publishes_only_into_its_own_domain(clients) -> None:
    own = DOMAIN_OF["dev1"]
    assert own == "healthcare"
    cloud = clients("cloud")
    cloud.subscribe("tinylarge/#")
    dev1 = clients("dev1", protocol=V5)
    foreign = [d for d in names() if d != own] + ["invented"]
    acks = {}
    for i, domain in enumerate(foreign):
        for stream, body in (("inference", b"forged-inference"), ("status", _status("dev1", i))):
            acks[f"tinylarge/{domain}/dev1/{stream}"] = dev1.publish(f"tinylarge/{domain}/dev1/{stream}", body)
    accepted = sorted(t for t, rc in acks.items() if rc == "Success")
    assert len(acks) == 2 * len(foreign) >= 8
    assert accepted == [], f"{len(accepted)} of {len(acks)} accepted: {accepted}"
    assert dev1.publish(f"tinylarge/{own}/dev1/inference", b"marker") == "Success"
    got = cloud.receive_until(f"tinylarge/{own}/dev1/inference", b"marker")
    assert [t for t, _, _ in got if t.split("/")[1] != own] == [], got


def test_split_streams_per_device_for_devices_and_the_service_users(clients) -> None:
    dom1, dom2 = DOMAIN_OF["dev1"], DOMAIN_OF["dev2"]
    dev1, svc = clients("dev1", protocol=V5), clients("svc1", protocol=V5)
    cloud = clients("cloud")
    cloud.subscribe("tinylarge/+/+/smashed")
    svc.subscribe("tinylarge/+/+/smashed")
    dev1.subscribe(f"tinylarge/{dom1}/dev1/cutgrad")
    dev1.subscribe(f"tinylarge/{dom1}/dev1/splitpred")
    dev1.subscribe(f"tinylarge/{dom2}/dev2/cutgrad")  # granted in 2.0.11, filtered at delivery
    # the device sends its own activations; not another device's, not in another domain
    assert dev1.publish(f"tinylarge/{dom1}/dev1/smashed", b"acts") == "Success"
    assert dev1.publish(f"tinylarge/{dom2}/dev2/smashed", b"forged") == "Not authorized"
    assert dev1.publish(f"tinylarge/{dom2}/dev1/smashed", b"forged") == "Not authorized"
    assert dev1.publish(f"tinylarge/{dom1}/dev1/cutgrad", b"forged") == "Not authorized"  # the cloud answers
    for reader in (cloud, svc):
        got = reader.receive_until(f"tinylarge/{dom1}/dev1/smashed", b"acts")
        assert all(p != b"forged" for _, p, _ in got), got
    # the service answers; the device reads its own answers only
    assert svc.publish(f"tinylarge/{dom2}/dev2/cutgrad", b"not-for-dev1") == "Success"
    assert svc.publish(f"tinylarge/{dom1}/dev1/cutgrad", b"grad") == "Success"
    assert cloud.publish(f"tinylarge/{dom1}/dev1/splitpred", b"pred") == "Success"
    got = dev1.receive_until(f"tinylarge/{dom1}/dev1/splitpred", b"pred")
    assert [(t, p) for t, p, _ in got] == [(f"tinylarge/{dom1}/dev1/cutgrad", b"grad"),
                                          (f"tinylarge/{dom1}/dev1/splitpred", b"pred")]


def test_a_device_reports_invalid_frames_to_its_domains_dead_letters_only(clients, broker: Broker) -> None:
    ops = clients("ops")
    ops.subscribe("tinylarge/_deadletter/#")
    dev1 = clients("dev1", protocol=V5)
    own = DOMAIN_OF["dev1"]
    assert dev1.publish(f"tinylarge/_deadletter/{DOMAIN_OF['dev2']}", b"elsewhere") == "Not authorized"
    assert dev1.publish(f"tinylarge/_deadletter/{own}", b"bad-frame") == "Success"
    got = ops.receive_until(f"tinylarge/_deadletter/{own}", b"bad-frame")
    assert all(p != b"elsewhere" for _, p, _ in got)


def test_the_written_acl_binds_each_device_to_its_domain(broker: Broker) -> None:
    acl = Path(broker.files.acl).read_text()
    block = acl.split("user dev1\n", 1)[1].split("\n\n", 1)[0].split("\nuser ", 1)[0]
    assert "tinylarge/+/" not in block and all(f"/{DOMAIN_OF['dev1']}" in line for line in block.splitlines())
