"""shared.protocol.endpoints: broker and store URLs from flags or the environment."""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared.protocol.endpoints import DEFAULT_STORE_URL, MqttEndpoint, mqtt_url, parse_mqtt_url, store_url


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


# -- user info with URL delimiters, IPv6, and the password in error messages ----------------------

def test_a_bracket_in_the_password_is_refused_without_showing_it():
    with pytest.raises(ValueError, match="percent-encode") as info:
        parse_mqtt_url("mqtt://user:se[cret@[::1]:1883")
    assert "cret" not in str(info.value) and "mqtt://user:***@[::1]:1883" in str(info.value)
    ep = parse_mqtt_url("mqtt://user:se%5Bc%5Dret@[::1]:1883")
    assert (ep.host, ep.port, ep.username, ep.password) == ("::1", 1883, "user", "se[c]ret")


def test_the_last_at_sign_ends_the_user_info():
    ep = parse_mqtt_url("mqtt://al@ice:p@ss:w@broker:1884")
    assert (ep.username, ep.password, ep.host, ep.port) == ("al@ice", "p@ss:w", "broker", 1884)


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("mqtt://u:pa/S3cr@h", "percent-encode"),
        ("mqtt://u:pa#S3cr@h", "percent-encode"),
        ("mqtt://u:S3cr@[::1", "no ']' closes"),
        ("mqtt://u:S3cr@[nothost]:1", "not an IPv6 address"),
        ("mqtt://u:S3cr@[::1]x", "after the bracketed"),
        ("mqtt://u:S3cr@::1:1883", "in brackets"),
        ("mqtt://u:S3cr@ex ample", "space"),
        ("mqtt://u:S3cr@h:+5", "bad port"),
        ("mqtt://u:S3cr@h:١٢", "bad port"),
        ("mqtt://u:S3cr@h:1883/topic", "path"),
        ("http://u:S3cr@h", "scheme 'http'"),
        ("u:pa://S3cr@h", "no scheme"),
        ("mqtt://:S3cr@h", "empty user name"),
    ],
)
def test_malformed_urls_with_a_password_name_the_problem_and_hide_it(url: str, what: str):
    with pytest.raises(ValueError, match=what) as info:
        parse_mqtt_url(url)
    assert "S3cr" not in str(info.value) and ":***@" in str(info.value)


_any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_hosts = st.sampled_from(["h", "localhost", "127.0.0.1", "[::1]", "[::1", "[x]", "::1", "", "a b", "h_st"]) | _any_text
_ports = st.none() | st.integers(-5, 70_000).map(str) | _any_text
_tails = st.sampled_from(["", "/", "/x", "?a=b", "#f", "//", "/@x", "@"]) | _any_text


@settings(max_examples=400)
@given(scheme=st.sampled_from(["mqtt", "mqtts", "MQTT", "http", "", None]) | _any_text, user=_any_text,
       secret=_any_text, host=_hosts, port=_ports, tail=_tails)
def test_no_error_message_ever_contains_the_password(scheme, user, secret, host, port, tail):
    """Any text around ``user:password@``: a ValueError never quotes the password, and a parsed
    endpoint never prints it."""
    password = f"Pw{secret}Zq9"
    rest = f"{host}{'' if port is None else ':' + port}{tail}"
    assume(password not in f"{scheme}{user}{rest}")
    url = ("" if scheme is None else f"{scheme}://") + f"{user}:{password}@{rest}"
    try:
        ep = parse_mqtt_url(url)
    except ValueError as exc:
        assert password not in str(exc), str(exc)
        return
    assert ep.password is not None
    if "@" not in rest:  # else the userinfo legitimately runs to the last '@' and the password absorbs it
        assert ep.password.endswith(unquote(password)[-5:])
    assert ep.password not in str(ep) and ep.password not in repr(ep)


_userinfo_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=16)


@settings(max_examples=300)
@given(user=_userinfo_text, password=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=16),
       host=st.sampled_from(["h", "broker.local", "10.0.0.1", "[::1]", "[fe80::1]"]), port=st.integers(1, 65535))
def test_percent_encoded_credentials_come_back_exactly(user: str, password: str, host: str, port: int):
    url = f"mqtts://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}"
    ep = parse_mqtt_url(url)
    assert (ep.username, ep.password, ep.port, ep.tls) == (user, password, port, True)
    assert ep.host == host.strip("[]")
