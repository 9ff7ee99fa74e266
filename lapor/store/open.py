"""Open a store by URL: `sqlite:///relative/path.db`, `sqlite:////abs/path.db`, `postgresql://...`."""

from __future__ import annotations

from lapor.clock import Clock
from lapor.store.model import EventStore


def open_store(url: str, *, clock: Clock | None = None) -> EventStore:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"store URL {url!r} has no scheme; use sqlite:///path or postgresql://...")
    if scheme == "sqlite":
        from lapor.store.sqlite import SqliteEventStore

        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise ValueError("sqlite store URL needs a file path: sqlite:///var/events.db")
        return SqliteEventStore(path, clock=clock)
    if scheme in {"postgresql", "postgres"}:
        from lapor.store.postgres import PostgresEventStore

        return PostgresEventStore(url, clock=clock)
    if scheme in {"kurrentdb", "esdb", "kurrentdb+discover"}:
        from lapor.store.kurrent import KurrentEventStore

        return KurrentEventStore(url, clock=clock)
    raise ValueError(f"unknown store scheme {scheme!r}; expected sqlite, postgresql or kurrentdb")
