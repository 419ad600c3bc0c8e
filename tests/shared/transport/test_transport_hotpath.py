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


def test_buffered_socket_serves_small_reads_from_one_read_and_says_what_it_holds():
    from shared.transport._paho import BufferedSocket

    a, b = socket.socketpair()
    try:
        b.sendall(b"\x30\x03abc\x40\x02\x00\x07")  # a PUBLISH-like and a PUBACK-like packet in one burst
        buffered = BufferedSocket(a)
        assert buffered.recv(1) == b"\x30"
        assert buffered.pending() == 8  # the rest waits in the buffer: paho's loop must not wait in select
        assert buffered.recv(1) == b"\x03" and buffered.recv(3) == b"abc"
        assert buffered.recv(100) == b"\x40\x02\x00\x07"  # never more than the buffer holds, never past it
        assert buffered.pending() == 0
        a.setblocking(False)
        with pytest.raises(BlockingIOError):
            buffered.recv(1)  # empty buffer, nothing on the socket: the socket's own answer
        b.close()
        assert buffered.recv(1) == b""  # end of stream, as the socket says it
        assert buffered.fileno() == a.fileno()
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("broker", BROKERS)
def test_a_burst_read_at_once_is_handled_without_waiting_for_more_bytes(request, broker):
    """Many messages arrive in one read; each is handled although no more bytes come (paho's loop asks the
    buffered socket what it holds instead of waiting up to a second in select for each)."""
    url = _url(request, broker)
    topic = uid("burst")
    sub = MqttClient(MqttConfig(url, uid("burst-sub"), clean_session=True))
    pub = MqttClient(MqttConfig(url, uid("burst-pub"), clean_session=True))
    got: list[bytes] = []
    sub.start()
    pub.start()
    try:
        sub.subscribe(topic, lambda t, p: got.append(p), qos=0)
        for i in range(200):
            pub.publish(topic, str(i).encode(), qos=0)
        assert wait_for(lambda: len(got) == 200, timeout_s=10)
        assert got == [str(i).encode() for i in range(200)]
    finally:
        sub.stop(flush_timeout_s=1)
        pub.stop(flush_timeout_s=1)


@pytest.mark.broker
def test_a_handled_batch_is_acknowledged_in_one_write_and_never_delivered_again(mosquitto):
    """150 QoS 1 messages (more than Mosquitto keeps in flight to one client, 20) handled in batches, then the
    consumer stops and comes back under the same persistent session: only a marker published afterwards
    arrives (whatever had not been PUBACKed would come first)."""
    topic, svc = uid("acks"), uid("acks-svc")
    got: list[bytes] = []
    pub = MqttClient(MqttConfig(mosquitto.url, uid("acks-pub"), clean_session=True))
    sub = MqttClient(MqttConfig(mosquitto.url, svc, clean_session=False))
    pub.start()
    sub.start()
    try:
        sub.subscribe_batch(topic, lambda items: got.extend(p for _, p in items))
        for i in range(150):
            assert pub.publish(topic, f"m{i}".encode())
        assert wait_for(lambda: len(got) == 150, timeout_s=20)
        assert sub.wait_all_acked(5)
        sub.stop()
        assert got == [f"m{i}".encode() for i in range(150)]
        got.clear()
        sub = MqttClient(MqttConfig(mosquitto.url, svc, clean_session=False))
        sub.subscribe_batch(topic, lambda items: got.extend(p for _, p in items))
        sub.start()
        assert pub.publish(topic, b"marker")
        assert wait_for(lambda: b"marker" in got, timeout_s=10)
        assert got == [b"marker"]
    finally:
        sub.stop(flush_timeout_s=1)
        pub.stop(flush_timeout_s=1)
