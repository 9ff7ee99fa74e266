"""Open a store by URL: `sqlite:///relative/path.db`, `sqlite:////abs/path.db`, `postgresql://...`.

`sqlite:///var/events.db?writer=var/events.db-writer.sock` sends the appends to a writer process
(`lapor.store.writer`) and reads the file directly."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from lapor.clock import Clock
from lapor.store.model import EventStore

POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})


def sqlite_url(path: str | Path, writer: str | Path | None = None) -> str:
    """The URL of the SQLite store at `path`, its appends sent to the writer process on socket `writer` if given."""
    return f"sqlite:///{path}" + (f"?writer={quote(str(writer), safe='/')}" if writer else "")


def parse_sqlite_url(url: str) -> tuple[str, str | None]:
    """(the file path, the writer socket or None) of a `sqlite:///` URL; ValueError for one that is not."""
    scheme, sep, rest = url.partition("://")
    if scheme != "sqlite" or not sep:
        raise ValueError(f"not a SQLite store URL: {url!r}")
    path, _, query = (rest[1:] if rest.startswith("/") else rest).partition("?")
    if not path:
        raise ValueError("sqlite store URL needs a file path: sqlite:///var/events.db")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(options) - {"writer"}
    if unknown:
        raise ValueError(f"unknown sqlite store option(s) {sorted(unknown)}; the one option is writer=<socket>")
    return path, options.get("writer") or None


def shown_url(url: str) -> str:
    """`url` fit to print or log: a password in it becomes `***`, in the user part or as the `password` parameter
    libpq also takes (`?password=...`, printed as given until a bug hunt)."""
    try:
        parts = urlsplit(url)
        parameters = parse_qsl(parts.query, keep_blank_values=True)
        hidden = any(name == "password" for name, _ in parameters)
        if parts.password is None and not parts.netloc and "@" in parts.path and parts.scheme != "sqlite":
            # No `//` for urlsplit to find the user part by (`postgresql:/lapor:pw@db/lapor`, `lapor:pw@db/lapor`): all
            # before the last `@` of the path goes (session 31: printed whole by lapor audit verify --store).
            lead = parts.path[: len(parts.path) - len(parts.path.lstrip("/"))]
            parts = parts._replace(path=lead + "***@" + parts.path.rpartition("@")[2])
        elif parts.password is None and not hidden:
            return url
        if parts.password is not None:
            user = f"{parts.username}:***@" if parts.username else ":***@"
            parts = parts._replace(netloc=user + parts.netloc.rpartition("@")[2])
        if hidden:
            shown = [(name, "***" if name == "password" else value) for name, value in parameters]
            parts = parts._replace(query=urlencode(shown, safe="*/"))
        return urlunsplit(parts)
    except ValueError:
        return "<a store URL that does not parse>"


def without_password(text: str, url: str) -> str:
    """`text` (an error raised about `url`, by a driver or a parser) fit to print: `url` in it as `shown_url` gives
    it, and the URL's password wherever else the text quotes it, as given or decoded. Session 31: libpq quotes what
    it cannot read (`unexpected spaces found in "s3cret pw"`, a whole URL whose `[` is not closed)."""
    text = text.replace(url, shown_url(url))
    for password in sorted(_passwords(url), key=len, reverse=True):
        text = text.replace(password, "***")
    return text


def _passwords(url: str) -> set[str]:
    """Whatever in `url` may be a password, also where the URL does not parse: what follows the first `:` of all
    before its last `@` (the scheme and its slashes left out), and every `password` parameter; as given and decoded.
    A SQLite URL has none: an `@` in it is its file's path (`/home/budi@corp/...`)."""
    if url.startswith("sqlite:"):
        return set()
    # Without `://` what comes before the first `:` may be the scheme (`postgresql:/lapor:pw@db`) or the user
    # (`lapor:pw@db`): both readings are taken.
    rests = [url.partition("://")[2]] if "://" in url else [url.partition(":")[2], url]
    user_parts = [rest.lstrip("/").rpartition("@")[0] for rest in rests]
    found = {user_part.partition(":")[2] for user_part in user_parts if ":" in user_part}
    found |= {value for name, value in re.findall(r"(?:^|[?&])([^=&]*)=([^&]*)", url.partition("?")[2])
              if unquote(name) == "password"}
    return {shown for value in found for shown in (value, unquote(value)) if shown}


def store_exists(url: str) -> bool:
    """Whether `url` names a store that has been created (opening one creates it). Commands that only read a
    log (`lapor audit verify`, `lapor rebuild`) ask first, so a mistyped path is an error rather than a new,
    empty log that verifies "ok". A KurrentDB server is taken as it comes: it has no store to create."""
    scheme, sep, _ = url.partition("://")
    if scheme == "sqlite" and sep:
        path, _writer = parse_sqlite_url(url)
        return Path(path).is_file()
    if scheme in POSTGRES_SCHEMES:
        from lapor.store.postgres import events_table_exists

        return events_table_exists(url)
    return True


def open_store(
    url: str, *, clock: Clock | None = None, answer_timeout: float | None = None, read_only: bool = False
) -> EventStore:
    """`answer_timeout`: seconds the store waits for its server (`LAPOR_STORE_TIMEOUT`): PostgreSQL, for the answer
    to one statement (None: `lapor.store.postgres.ANSWER_TIMEOUT`); KurrentDB, for one call (None:
    `lapor.store.kurrent.DEADLINE`). SQLite has no server.

    `read_only` (`lapor audit verify`, session 31): an existing store, read without writing to it or beside it
    (SQLite: `lapor.store.sqlite.read_only_uri`, a `writer=` of the URL not used; PostgreSQL: no DDL, read-only
    sessions); appends are refused. A KurrentDB store is only read by what reads it."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ValueError("a store URL starts with its scheme: sqlite:///path or postgresql://...")
    if scheme == "sqlite":
        from lapor.store.sqlite import SqliteEventStore

        path, writer = parse_sqlite_url(url)
        if read_only:
            return SqliteEventStore(path, clock=clock, read_only=True)
        return SqliteEventStore(path, clock=clock, writer=writer)
    if scheme in POSTGRES_SCHEMES:
        from lapor.store.postgres import PostgresEventStore

        return PostgresEventStore(url, clock=clock, answer_timeout=answer_timeout, read_only=read_only)
    if scheme in {"kurrentdb", "esdb", "kurrentdb+discover"}:
        from lapor.store.kurrent import KurrentEventStore

        return KurrentEventStore(url, clock=clock, deadline=answer_timeout)
    raise ValueError(f"unknown store scheme {scheme!r}; expected sqlite, postgresql or kurrentdb")
