"""The command runner: how every service acts on a stream (a complaint).

```python
decision = lambda state, now: decide_verify(state, command, now)       # pure: -> [NewEvent, ...]
result = run_command(ctx, f"complaint-{tracking_id}", decision, principal=principal, if_match=if_match)
response.headers["ETag"] = result.etag
```

1. read the stream and fold it (`lapor.complaint.fold` unless another fold is given: the runner itself only
   needs the events' versions, never the state's shape);
2. a given `If-Match` that is not the stream's version is 412 with the current version, nothing written
   (If-Match is optional: DESIGN says commands *accept* it, so a missing one is never 428);
3. call the decision with `now = ctx.clock.now()`; an empty list means nothing to do;
4. append with the folded version as expected version, adding {actor, role, agency, correlation_id,
   causation_id} to every event's metadata (the platform's keys win over the decision's: an actor cannot be
   forged by a decision);
5. on a concurrent write: with If-Match the client's view is stale (412); without, read, fold and decide
   again, a few times, then give up with 409;
6. when the append failed otherwise (any other `StoreError`), append the very same events once more with the same
   expected version: recorded already, that returns the original result; not recorded, it records them now. A
   retry by the client would decide again and mint new event ids, so a follow-up could be recorded twice. If
   that fails too, the error is `AppendNotRecorded` only when both tries were (the store said so: a rolled-back
   commit, a closed store); a plain `StoreError` means the events may be recorded (the connection lost during
   COMMIT, the writer process gone before it answered), so what was prepared for them must stay.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Header, Request

from lapor.complaint import fold as complaint_fold
from lapor.correlation import current_correlation_id, new_correlation_id
from lapor.limits import single_header
from lapor.principal import Principal
from lapor.problems import BadRequest, Conflict, NotFound, PreconditionFailed
from lapor.store import (
    NO_STREAM,
    AppendNotRecorded,
    AppendResult,
    DuplicateEventId,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StoreError,
    WrongExpectedVersion,
    category_of,
)

if TYPE_CHECKING:
    from lapor.context import ServiceContext

log = logging.getLogger("lapor.commands")

Decide = Callable[[Any, datetime], Sequence[NewEvent]]
Fold = Callable[[Sequence[RecordedEvent]], Any]

MAX_ATTEMPTS = 5

# Namespace of the deterministic ids of events decided in reaction to something (see `caused_event_id`).
CAUSED_EVENT_NAMESPACE = uuid.UUID("0f3c9a8e-5b1d-4c7e-9a2f-6d8b4e1c7a35")


@dataclasses.dataclass(frozen=True)
class CommandResult:
    version: int  # the stream's version after the command (unchanged when nothing was decided)
    events: tuple[NewEvent, ...]  # as appended, metadata included
    appended: AppendResult | None  # None when the decision was to do nothing

    @property
    def etag(self) -> str:
        return etag(self.version)


def etag(version: int) -> str:
    return f'"{version}"'


# A stream version is a 64-bit integer (BIGINT in the stores): 19 digits at most. Longer ones are refused before
# they are converted (past 4,300 digits Python's int() itself refuses, which was a 500).
MAX_VERSION_DIGITS = 19
# What If-Match may be: a version, bare or quoted, or *. The parser uses it and the API document shows it (as a
# pattern only: a value that does not match is the parser's 400, not FastAPI's 422).
IF_MATCH_PATTERN = rf'^[ \t]*(\*|[0-9]{{1,{MAX_VERSION_DIGITS}}}|"[0-9]{{1,{MAX_VERSION_DIGITS}}}")[ \t]*$'
_IF_MATCH = re.compile(IF_MATCH_PATTERN)
_DIGITS = re.compile(r'[ \t]*"?([0-9]+)"?[ \t]*')


def parse_if_match(value: str | None) -> int | None:
    """`If-Match: 3` or `If-Match: "3"` -> 3; absent or `*` -> None (no check). Weak tags never match
    (RFC 9110 uses strong comparison for If-Match), so `W/"3"` is refused as malformed; so are digits other
    than ASCII ("²", a Latin-1 header byte, or "١٢"), and versions of more than 19 digits."""
    if value is None:
        return None
    match = _IF_MATCH.fullmatch(value)
    if match is None:
        digits = _DIGITS.fullmatch(value)
        if digits is not None and len(digits.group(1)) > MAX_VERSION_DIGITS:
            # Not quoted back: it may be thousands of digits long.
            raise BadRequest(
                f"If-Match names a version of at most {MAX_VERSION_DIGITS} digits, not {len(digits.group(1))}"
            )
        raise BadRequest(f"If-Match must be a version number like \"3\", got {value!r}")
    version = match.group(1).strip('"')
    return None if version == "*" else int(version)


# If-Match sent twice with different values is a 422 naming it (session 31): FastAPI took the first silently, so a
# proxy adding its own decided which version the command was checked against.
_single_if_match = single_header("If-Match")


def if_match_header(
    request: Request,
    if_match: Annotated[
        str | None,
        Header(
            description='The version the command was decided on, as the ETag gave it ("3"); a stale one is a 412. '
            f"At most {MAX_VERSION_DIGITS} digits",
            examples=['"3"'], json_schema_extra={"pattern": IF_MATCH_PATTERN},
        ),
    ] = None,
) -> int | None:
    """FastAPI dependency: the If-Match version, if any. Given more than once with differing values, a validation
    problem (422) naming the header (`lapor.limits.single_header`); the same value twice is that value."""
    _single_if_match(request)
    return parse_if_match(if_match)


def caused_event_id(cause: str) -> uuid.UUID:
    """The id of an event a scheduler or handler decides in reaction to `cause` (e.g.
    f"{stream}:{version}:auto-close"): the same on every run, so a reaction decided twice (after a restart, or
    by two processes) is appended once — the store answers a re-append of recorded ids with the original."""
    return uuid.uuid5(CAUSED_EVENT_NAMESPACE, cause)


def command_metadata(principal: Principal, causation_id: str | None) -> dict[str, Any]:
    correlation_id = current_correlation_id() or new_correlation_id()
    metadata: dict[str, Any] = {
        "actor": principal.subject,
        "role": principal.role.value,
        "agency": principal.agency_id,
        "correlation_id": correlation_id,
        "causation_id": causation_id or correlation_id,
    }
    if principal.unit_id:
        metadata["unit"] = principal.unit_id
    if principal.channel:
        metadata["channel"] = principal.channel
    return metadata


def run_command(
    ctx: ServiceContext,
    stream: str,
    decide: Decide,
    *,
    principal: Principal,
    if_match: int | None = None,
    fold: Fold | None = None,
    must_exist: bool = True,
    causation_id: str | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> CommandResult:
    """Run `decide` against the current state of `stream` and append what it decides.

    `must_exist=False` for commands that start a stream (a submission: the decision gets None). A handler or
    scheduler reacting to an event passes that event's id as `causation_id` (and runs under its correlation
    id); an HTTP command is caused by its request, so both ids are the request's correlation id."""
    fold = fold or complaint_fold
    metadata = command_metadata(principal, causation_id)
    for _ in range(max_attempts):
        events = ctx.store.read_stream(stream)
        version = events[-1].version if events else NO_STREAM
        if must_exist and not events:
            category, _, name = stream.partition("-")
            raise NotFound(f"{category} {name} not found")
        if if_match is not None and if_match != version:
            raise PreconditionFailed(
                f"{stream} is at version {version}, not {if_match}: read it again", current_version=version
            )
        state = fold(events)
        decided = list(decide(state, ctx.clock.now()))
        if not decided:
            return CommandResult(version, (), None)
        stamped = tuple(
            dataclasses.replace(event, metadata={**event.metadata, **metadata}) for event in decided
        )
        try:
            appended = _append(ctx, stream, stamped, version)
        except WrongExpectedVersion as error:
            if if_match is not None:
                raise PreconditionFailed(
                    f"{stream} changed while the command ran; it is now at version {error.actual_version}",
                    current_version=error.actual_version,
                ) from None
            continue  # someone else wrote first: decide again on the new state
        for event in stamped:
            ctx.metrics.appended.labels(event.type).inc()
        return CommandResult(appended.last_version, stamped, appended)
    raise Conflict(f"{category_of(stream)} kept changing under concurrent writes; try again")


def _append(ctx: ServiceContext, stream: str, events: Sequence[NewEvent], version: ExpectedVersion) -> AppendResult:
    """Append `events`, once more if the store could not tell whether it recorded them (step 6 above). The store's
    answers about the stream (a conflict, ids recorded otherwise) are not asked again."""
    try:
        return ctx.store.append(stream, events, expected_version=version)
    except (WrongExpectedVersion, DuplicateEventId):
        raise
    except AppendNotRecorded as error:
        log.warning("append to %s was not recorded (%s): appending the same events again", stream, error)
        return ctx.store.append(stream, events, expected_version=version)
    except StoreError as error:
        log.warning("append to %s may or may not be recorded (%s): appending the same events again", stream, error)
        try:
            return ctx.store.append(stream, events, expected_version=version)
        except AppendNotRecorded as again:
            # This try was not recorded; the first may have been.
            raise StoreError(f"{again}; an earlier try may or may not be recorded ({error})") from again
