"""shared.endpoints: broker and store URLs from flags or the environment."""

from __future__ import annotations

import pytest

from shared.endpoints import DEFAULT_STORE_URL, MqttEndpoint, mqtt_url, parse_mqtt_url, store_url


def test_plain_url_with_credentials():
    ep = parse_mqtt_url("mqtt://alice:s3cr%40t@broker.local:1884")
    assert ep == MqttEndpoint("mqtt", "broker.local", 1884, "alice", "s3cr@t")
    assert not ep.tls


def test_default_ports_and_tls():
    assert parse_mqtt_url("mqtt://h").port == 1883
    ep = parse_mqtt_url("mqtts://h")
    assert ep.port == 8883 and ep.tls
    assert parse_mqtt_url("mqtt://[::1]:1999").host == "::1"


def test_password_never_printed():
    ep = parse_mqtt_url("mqtts://bob:hunter2@h:8883")
    assert "hunter2" not in str(ep) and "hunter2" not in repr(ep)
    assert str(ep) == "mqtts://bob:***@h:8883"


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("http://h:1883", "scheme 'http'"),
        ("h:1883", "scheme"),
        ("mqtt://:1883", "missing host"),
        ("mqtt://h:notaport", "bad port"),
        ("mqtt://h:70000", "bad port"),
        ("mqtt://h:0", "bad port"),
        ("mqtt://h:1883/topic", "path"),
        ("", "empty"),
    ],
)
def test_bad_urls_name_what_is_wrong(url: str, what: str):
    with pytest.raises(ValueError, match=what):
        parse_mqtt_url(url)


def test_error_messages_hide_the_password():
    with pytest.raises(ValueError) as info:
        parse_mqtt_url("mqtt://bob:hunter2@h:notaport")
    assert "hunter2" not in str(info.value)


def test_mqtt_url_flag_then_env_then_embedded(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TINYLARGE_MQTT", raising=False)
    assert mqtt_url(None) is None
    monkeypatch.setenv("TINYLARGE_MQTT", "mqtt://env:1883")
    assert mqtt_url(None) == "mqtt://env:1883"
    assert mqtt_url("mqtt://flag:1883") == "mqtt://flag:1883"


def test_store_url_flag_then_env_then_sqlite(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TINYLARGE_STORE", raising=False)
    assert store_url(None) == DEFAULT_STORE_URL == "sqlite:///out/tinylarge.db"
    monkeypatch.setenv("TINYLARGE_STORE", "influx+http://db:8428/b")
    assert store_url(None) == "influx+http://db:8428/b"
    assert store_url("sqlite:///x.db") == "sqlite:///x.db"
