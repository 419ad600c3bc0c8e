"""The transport's hot-path settings against a real broker: TCP_NODELAY on the client's sockets (MqttConfig
option, reconnects included) and the worker's remembered topic -> route matches (reset when routes change)."""

from __future__ import annotations

import socket
import threading

import pytest

from shared.transport.mqtt import MqttClient, MqttConfig
from tests.fixtures.mqtt import wait_for
from tests.shared._support import uid

BROKERS = ["embedded_broker", pytest.param("mosquitto", marks=pytest.mark.broker)]


def _url(request: pytest.FixtureRequest, name: str) -> str:
    value = request.getfixturevalue(name)
    return value if isinstance(value, str) else value.url


def _nodelay(client: MqttClient) -> int:
    sock = client._paho.socket()
    assert sock is not None
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.parametrize("broker", BROKERS)
def test_tcp_nodelay_on_by_default_off_when_asked_and_kept_across_a_reconnect(request, broker):
    url = _url(request, broker)
    on = MqttClient(MqttConfig(url, uid("nodelay-on"), reconnect_min_s=0.1, reconnect_max_s=0.5))
    off = MqttClient(MqttConfig(url, uid("nodelay-off"), tcp_nodelay=False))
    on.start()
    off.start()
    try:
        assert _nodelay(on) != 0
        assert _nodelay(off) == 0
        first = on._paho.socket()
        first.shutdown(socket.SHUT_RDWR)  # the connection drops; paho opens a new socket
        assert wait_for(lambda: on.counts["reconnects"] >= 1 and on.connected and on._paho.socket() is not first)
        assert _nodelay(on) != 0
    finally:
        on.stop(flush_timeout_s=1)
        off.stop(flush_timeout_s=1)


@pytest.mark.parametrize("broker", BROKERS)
def test_a_new_route_sees_topics_the_worker_already_matched(request, broker):
    """The worker remembers which routes each topic matches; subscribing another filter that matches the same
    topic must reach the new handler too (a stale memory would deliver to the first one only)."""
    url = _url(request, broker)
    root = uid("route")
    sub = MqttClient(MqttConfig(url, uid("route-sub"), clean_session=True))
    pub = MqttClient(MqttConfig(url, uid("route-pub"), clean_session=True))
    got: dict[str, list[bytes]] = {"narrow": [], "wide": []}
    lock = threading.Lock()

    def handler(name: str):
        def h(topic: str, payload: bytes) -> None:
            with lock:
                got[name].append(payload)
        return h

    sub.start()
    pub.start()
    try:
        sub.subscribe(f"{root}/+/x", handler("narrow"))
        pub.publish(f"{root}/1/x", b"one")
        assert wait_for(lambda: got["narrow"] == [b"one"])
        sub.subscribe(f"{root}/#", handler("wide"))
        pub.publish(f"{root}/1/x", b"two")
        assert wait_for(lambda: b"two" in got["wide"])
        assert got["narrow"][-1] == b"two"
    finally:
        sub.stop(flush_timeout_s=1)
        pub.stop(flush_timeout_s=1)
