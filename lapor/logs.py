"""JSON log lines, one way for every LAPOR process (the services, `lapor rebuild`, the store writer)."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from lapor.correlation import current_correlation_id

# Libraries whose records below WARNING name the addresses requests go to (lapor.egress's client: webhooks).
QUIET_LIBRARIES = ("httpx2", "httpcore2")

# A path segment that is only a number a person is known by (a NIK's 16 digits, a phone number however written:
# `081299887766`, `+62 812-9988-7766`, `(0380) 821234`): eight digits or more and nothing but them and the marks
# numbers are written with. The ids LAPOR puts in paths are never such (a tracking ID has letters, an agency id its
# prefix, a webhook's or a draft's its `wh_`/`dr_`), so one is a person's number, typed where an id was asked.
_PERSONAL_NUMBER = re.compile(r"[+(]?(?:[0-9][ .()-]*){8,}")
WITHHELD_NUMBER = "<number>"


def logged_path(path: str) -> str:
    """`path` as the log may keep it: a segment that is a person's number (above) becomes WITHHELD_NUMBER (session 32:
    `GET /api/complaints/5371014508850001`, a reporter's NIK typed as the tracking number, was logged with the
    client's address). The route template is logged beside it; the query never is."""
    return "/".join(
        WITHHELD_NUMBER if _PERSONAL_NUMBER.fullmatch(segment) else segment for segment in path.split("/")
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, process id (`lapor up --workers` answers from
    several processes), correlation id, and the `fields` extra."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        correlation_id = getattr(record, "correlation_id", None)
        if correlation_id:
            entry["correlation_id"] = correlation_id
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class CorrelationFilter(logging.Filter):
    """Stamps the current correlation id on a record while it is handled in the thread that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = current_correlation_id()
        return True


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for LAPOR and uvicorn; uvicorn's own access log is off (we write ours)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CorrelationFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # The HTTP client logs each request's URL at INFO, and its connection steps at DEBUG: an agency's webhook address
    # may carry the receiver's secret (`?token=`, a key in the path), so only its warnings are written (session 27).
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
