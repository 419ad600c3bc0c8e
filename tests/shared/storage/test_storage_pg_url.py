"""``postgresql://`` store URLs: what they parse to, what is refused, and that no password is ever shown."""

from __future__ import annotations

import pytest

from shared.storage.base import PostgresURL, parse_store_url

SECRET = "Pw-not-for-logs-9c1d"


def test_full_url_with_hosts_params_and_percent_encoding() -> None:
    parsed = parse_store_url(f"postgresql://tl%40site:{SECRET}%2F@db1:5433,[::1],db3/tiny%20large"
                             "?sslmode=verify-full&connect_timeout=3&retry_s=2.5")
    assert isinstance(parsed, PostgresURL)
    assert parsed.hosts == (("db1", 5433), ("::1", 5432), ("db3", 5432))
    assert (parsed.user, parsed.password, parsed.dbname, parsed.retry_s) == ("tl@site", SECRET + "/", "tiny large", 2.5)
    assert parsed.connect_kwargs() == {"sslmode": "verify-full", "connect_timeout": "3", "host": "db1,::1,db3",
                                       "port": "5433,5432,5432", "dbname": "tiny large", "user": "tl@site",
                                       "password": SECRET + "/"}
    for shown in (str(parsed), repr(parsed)):
        assert SECRET not in shown and "tl%40site:***@" in shown


def test_defaults_leave_the_rest_to_libpq() -> None:
    bare = parse_store_url("postgresql://")
    assert isinstance(bare, PostgresURL)
    assert bare.connect_kwargs() == {} and bare.retry_s == 30.0
    socket = parse_store_url("postgresql:///tinylarge?host=/var/run/postgresql")
    assert isinstance(socket, PostgresURL)
    assert socket.connect_kwargs() == {"host": "/var/run/postgresql", "dbname": "tinylarge"}


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (f"postgres://tl:{SECRET}@h/db", "'postgres' is not supported; write postgresql://"),
        (f"postgresql://tl:{SECRET}@h:99999/db", "bad port '99999'"),
        (f"postgresql://tl:{SECRET}@h:port/db", "bad port 'port'"),
        (f"postgresql://tl:{SECRET}@h,/db", "empty host"),
        (f"postgresql://:{SECRET}@h/db", "empty user name"),
        (f"postgresql://tl:{SECRET}/x@h/db", "percent-encode them"),
        (f"postgresql://tl:{SECRET}@h/a/b", "must name one database"),
        (f"postgresql://tl:{SECRET}@h/db#frag", "fragment"),
        (f"postgresql://tl:{SECRET}@[nope]/db", "is not an IPv6 address"),
        (f"postgresql://tl:{SECRET}@h/db?sslmod=require", "'sslmod' is unknown"),
        (f"postgresql://tl@h/db?password={SECRET}", "put the password in PGPASSWORD"),
        (f"postgresql://tl:{SECRET}@h/db?retry_s=-1", "'retry_s' must be a number of seconds >= 0"),
        (f"postgresql://tl:{SECRET}@h/db?retry_s=inf", "'retry_s' must be a number of seconds >= 0"),
        (f"postgresql://tl:{SECRET}@h/db?connect_timeout=1.5", "'connect_timeout' must be whole seconds"),
        (f"postgresql://tl:{SECRET}@h/db?host=/tmp", "names its host twice"),
        (f"postgresql://tl:{SECRET}@h/db?sslmode", "malformed query"),
    ],
)
def test_bad_urls_say_what_is_wrong_without_the_password(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as info:
        parse_store_url(url)
    assert SECRET not in str(info.value)
