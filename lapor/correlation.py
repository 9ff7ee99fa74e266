"""The correlation id of the work in progress: taken from a request's `X-Correlation-ID` (or generated),
echoed in the response, written on every log line and into the metadata of every event the work appends.
A subscription or scheduler acting on an event carries that event's correlation id on."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

HEADER = "X-Correlation-ID"

# Accept what proxies and clients commonly send (UUIDs, trace ids), nothing that could forge a log line.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_current: ContextVar[str | None] = ContextVar("lapor_correlation_id", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def accept_correlation_id(offered: str | None) -> str:
    """The caller's id when it is a sane token, else a fresh one."""
    if offered and _ACCEPTABLE.fullmatch(offered):
        return offered
    return new_correlation_id()


def current_correlation_id() -> str | None:
    return _current.get()


@contextmanager
def correlation_scope(correlation_id: str | None = None) -> Iterator[str]:
    """Run a block under `correlation_id` (a fresh one when None)."""
    value = correlation_id or new_correlation_id()
    token = _current.set(value)
    try:
        yield value
    finally:
        _current.reset(token)
