"""Store URLs and Point validation: what parses, and the errors that name what is wrong."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.storage.base import (
    DEFAULT_STORE_URL,
    STORE_ENV,
    InfluxURL,
    Point,
    SqliteURL,
    parse_store_url,
    resolve_store_url,
)
from shared.storage.factory import open_store


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///out/x.db", "out/x.db"),
        ("sqlite:////abs/path/x.db", "/abs/path/x.db"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLITE:///x.db", "x.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert parse_store_url(url) == SqliteURL(path)


def test_influx_url_with_options() -> None:
    parsed = parse_store_url(
        "influx+https://db.example:9999/metrics?flavor=vm&spool=/var/spool/tl&spool_max_bytes=1024"
        "&batch_size=10&flush_interval_ms=50"
    )
    assert parsed == InfluxURL("https", "db.example", 9999, "metrics", "vm", "/var/spool/tl", 1024, 10, 50)
    assert parsed.base_url == "https://db.example:9999"


def test_influx_url_defaults() -> None:
    parsed = parse_store_url("influx+http://localhost/b")
    assert isinstance(parsed, InfluxURL)
    assert (parsed.port, parsed.flavor, parsed.spool_dir, parsed.batch_size) == (8086, "auto", None, 500)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("", "empty"),
        ("points.db", "no scheme"),
        ("postgres://h/db", "'postgres' is not supported"),
        ("sqlite://host/x.db", "host part"),
        ("sqlite:///", "names no database file"),
        ("sqlite:///dir/", "names no database file"),
        ("sqlite:///x.db?mode=ro", "takes no query"),
        ("influx+http://:8086/b", "no host"),
        ("influx+http://h:8086", "exactly one bucket"),
        ("influx+http://h:8086/a/b", "exactly one bucket"),
        ("influx+http://h:99999/b", "malformed"),
        ("influx+http://h:port/b", "malformed"),
        ("influx+http://user:pw@h/b", "credentials"),
        ("influx+http://h/b?flavour=vm", "'flavour' is unknown"),
        ("influx+http://h/b?flavor=mongo", "'flavor' must be one of"),
        ("influx+http://h/b?batch_size=0", "'batch_size' must be > 0"),
        ("influx+http://h/b?spool_max_bytes=lots", "'spool_max_bytes' must be an integer"),
        ("influx+http://h/b?spool=", "'spool' is empty"),
        ("influx+http://h/b#frag", "fragment"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        parse_store_url(url)


def test_open_store_rejects_bad_url_and_unknown_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not supported"):
        open_store("mysql://h/db")
    with pytest.raises(ValueError, match="unknown Influx store option"):
        open_store("influx+http://127.0.0.1:1/b?flavor=vm", spool_dir=str(tmp_path), colour="red")


def test_influxdb_flavor_needs_org_and_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFLUX_ORG", raising=False)
    monkeypatch.delenv("INFLUX_TOKEN", raising=False)
    with pytest.raises(ValueError, match="INFLUX_ORG and INFLUX_TOKEN"):
        open_store("influx+http://127.0.0.1:1/b?flavor=influxdb", spool_dir=str(tmp_path))
    monkeypatch.setenv("INFLUX_ORG", "acme")
    with pytest.raises(ValueError, match="needs INFLUX_TOKEN"):
        open_store("influx+http://127.0.0.1:1/b?flavor=influxdb", spool_dir=str(tmp_path))


def test_resolve_store_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)
    assert resolve_store_url(None) == DEFAULT_STORE_URL
    monkeypatch.setenv(STORE_ENV, "sqlite:///env.db")
    assert resolve_store_url(None) == "sqlite:///env.db"
    assert resolve_store_url("sqlite:///flag.db") == "sqlite:///flag.db"


_name = st.text(alphabet=string.ascii_letters + string.digits + "_-.", min_size=1, max_size=20)
_host = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
)


@given(
    tls=st.booleans(),
    host=_host,
    port=st.integers(1, 65535),
    bucket=_name,
    flavor=st.sampled_from(["auto", "vm", "influxdb"]),
    batch=st.one_of(st.none(), st.integers(1, 10**6)),
    spool=st.one_of(st.none(), _name.map(lambda s: "/tmp/" + s)),
)
def test_influx_url_round_trip(
    tls: bool, host: str, port: int, bucket: str, flavor: str, batch: int | None, spool: str | None
) -> None:
    query = [f"flavor={flavor}"]
    if batch is not None:
        query.append(f"batch_size={batch}")
    if spool is not None:
        query.append(f"spool={spool}")
    url = f"influx+{'https' if tls else 'http'}://{host}:{port}/{bucket}?{'&'.join(query)}"
    parsed = parse_store_url(url)
    assert isinstance(parsed, InfluxURL)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.bucket) == (
        "https" if tls else "http",
        host.lower(),
        port,
        bucket,
    )
    assert parsed.flavor == flavor and parsed.spool_dir == spool
    assert parsed.batch_size == (batch if batch is not None else 500)


@given(
    path=st.text(
        alphabet=st.characters(blacklist_characters="\x00?#", blacklist_categories=("Cs",)), min_size=1, max_size=40
    ).filter(lambda p: not p.endswith("/") and p != ":memory:")
)
def test_sqlite_url_round_trip(path: str) -> None:
    assert parse_store_url("sqlite:///" + path) == SqliteURL(path)


@given(st.text(max_size=60))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    for url in (text, "sqlite://" + text, "influx+http://" + text, "influx+https://h/" + text):
        try:
            parsed = parse_store_url(url)
        except ValueError:
            continue
        assert isinstance(parsed, SqliteURL | InfluxURL)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"measurement": ""}, "measurement must be a non-empty string"),
        ({"device": 7}, "device must be a non-empty string"),
        ({"seq": 1.0}, "seq must be an int"),
        ({"seq": True}, "seq must be an int"),
        ({"seq": -1}, "seq must be >= 0"),
        ({"ts_ms": "now"}, "ts_ms must be an int"),
        ({"fields": {"hr": [1, 2]}}, r"fields\['hr'\] must be float, int, bool, str or None"),
        ({"fields": {"": 1}}, "fields keys must be non-empty"),
        ({"tags": {"site": 3}}, "tags must map non-empty strings to strings"),
        ({"tags": {"device": "x"}}, "must not contain 'device'"),
    ],
)
def test_point_validation(kwargs: dict, words: str) -> None:
    base = {"measurement": "vitals", "device": "d", "seq": 0, "ts_ms": 0, "fields": {"hr": 1.0}}
    with pytest.raises(ValueError, match=words):
        Point(**{**base, **kwargs})
