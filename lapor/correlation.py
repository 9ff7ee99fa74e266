"""The correlation id of the work in progress: taken from a request's `X-Correlation-ID` (or generated),
echoed in the response, written on every log line and into the metadata of every event the work appends.
A subscription or scheduler acting on an event carries that event's correlation id on.

A request that files, reads or acts on an anonymous report is unlinked from its client (`withhold_client`,
called through `lapor.privacy.conceal_requester`): its log line names no client address, and an id the client
chose is replaced, so that the report's events carry no id the client's other requests are logged with."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

HEADER = "X-Correlation-ID"

# Accept what proxies and clients commonly send (UUIDs, trace ids), nothing that could forge a log line.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(slots=True)
class Work:
    """The work in progress: one request, or one reaction to an event. Mutable, and shared by reference with the
    worker threads a request's route runs in (they run in a copy of its context), so what `withhold_client` does
    there is what the request's log line and answer say."""

    correlation_id: str
    chosen_by_client: bool = False  # the id is the client's own X-Correlation-ID
    client_withheld: bool = False  # the request's log line must not name the client's address


_current: ContextVar[Work | None] = ContextVar("lapor_work", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def accept_correlation_id(offered: str | None) -> str:
    """The caller's id when it is a sane token, else a fresh one."""
    if offered and _ACCEPTABLE.fullmatch(offered):
        return offered
    return new_correlation_id()


def current_correlation_id() -> str | None:
    work = _current.get()
    return None if work is None else work.correlation_id


@contextmanager
def correlation_scope(correlation_id: str | None = None, *, chosen_by_client: bool = False) -> Iterator[Work]:
    """Run a block under `correlation_id` (a fresh one when None)."""
    work = Work(correlation_id or new_correlation_id(), chosen_by_client)
    token = _current.set(work)
    try:
        yield work
    finally:
        _current.reset(token)


def decline_chosen_correlation_id() -> None:
    """An id the client chose gives way to a fresh one for the rest of the work in progress (its events, its later
    log lines, the answer's X-Correlation-ID)."""
    work = _current.get()
    if work is not None and work.chosen_by_client:
        work.correlation_id, work.chosen_by_client = new_correlation_id(), False


def withhold_client() -> None:
    """Unlink the work in progress from its client: its request's log line names no address, and an id the client
    chose gives way to a fresh one (`decline_chosen_correlation_id`), since the client may send the same id on other
    requests, whose lines name the address."""
    work = _current.get()
    if work is None:
        return
    decline_chosen_correlation_id()
    work.client_withheld = True
