"""The store factory: a URL -> an open :class:`shared.storage.base.Store` (kept apart from the interface, so
that ``base`` imports none of its backends)."""

from __future__ import annotations

from pathlib import Path

from shared.storage.base import PostgresURL, SqliteURL, Store, parse_store_url


def open_store(url: str, **options: object) -> Store:
    """Open the store a URL names; ``options`` go to the backend's constructor (e.g. ``spool_dir``)."""
    parsed = parse_store_url(url)
    if isinstance(parsed, SqliteURL):
        from shared.storage.sqlite import SqliteStore

        if parsed.path != ":memory:":
            Path(parsed.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return SqliteStore(parsed.path, **options)  # type: ignore[arg-type]
    if isinstance(parsed, PostgresURL):
        from shared.storage.postgres import PostgresStore

        return PostgresStore(parsed, **options)  # type: ignore[arg-type]
    from shared.storage.influx import InfluxStore

    return InfluxStore.from_url(parsed, **options)  # type: ignore[arg-type]
