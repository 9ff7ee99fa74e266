"""Problem responses (RFC 9457 `application/problem+json`): one exception type per kind of failure.

Services raise these (`raise NotFound(f"complaint {tracking_id} not found")`); the handlers installed by
`install_problem_handlers` turn them, FastAPI's validation errors, Starlette's 404/405 and any unexpected
exception into a problem body. `type` is a relative URI, `/problems/<kind>`, stable per kind and described by
`GET /problems/{kind}`. No stack trace ever reaches a client: a 500 is logged with its traceback and
correlation id, and the client gets only the correlation id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lapor.complaint import IllegalTransition
from lapor.correlation import current_correlation_id
from lapor.logs import logged_path
from lapor.store import UnreadableEvent, WrongExpectedVersion
from lapor.store.model import unreadable_of
from lapor.store.vault import VaultError
from lapor.subscriptions import transient_failure

log = logging.getLogger("lapor.problems")

PROBLEM_MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ProblemKind:
    kind: str
    status: int
    title: str
    description: str

    @property
    def type(self) -> str:
        return f"/problems/{self.kind}"


KINDS: dict[str, ProblemKind] = {
    kind.kind: kind
    for kind in [
        ProblemKind("validation", 422, "Invalid request", "The request body, path, query or a header failed "
                    "validation; `errors` lists each problem with its location."),
        ProblemKind("bad-request", 400, "Bad request", "The request could not be read: a malformed header "
                    "(e.g. If-Match) or body."),
        ProblemKind("not-found", 404, "Not found", "No resource at this URL (or no complaint with this tracking "
                    "id)."),
        ProblemKind("method-not-allowed", 405, "Method not allowed", "The resource exists but does not accept "
                    "this HTTP method; the `Allow` header lists those it does."),
        ProblemKind("unauthenticated", 401, "Authentication required", "A bearer token (or, for a reporter, the "
                    "X-Reporter-Token) is missing, expired, forged or names an unknown role."),
        ProblemKind("forbidden", 403, "Forbidden", "The caller's role may not take this action, or the "
                    "complaint belongs to another agency or unit."),
        ProblemKind("conflict", 409, "Conflict", "The action is not allowed in the complaint's current state "
                    "(an illegal transition), or concurrent changes kept it from being applied."),
        ProblemKind("precondition-failed", 412, "Precondition failed", "The If-Match version is stale: the "
                    "complaint changed since it was read. `current_version` holds the version to retry with (absent "
                    "when the caller may no longer act on it: its agency or unit no longer holds it)."),
        ProblemKind("too-large", 413, "Request too large", "The request body exceeds the configured limit "
                    "(`max_bytes`)."),
        ProblemKind("unsupported-media-type", 415, "Unsupported media type", "The endpoint takes "
                    "application/json."),
        ProblemKind("rate-limited", 429, "Too many requests", "This client sent too many requests; retry after "
                    "the number of seconds in the Retry-After header."),
        ProblemKind("internal", 500, "Internal error", "Something failed on the server. Quote "
                    "`correlation_id` when reporting it."),
        ProblemKind("unreadable-event", 500, "Unreadable history", "The request met a stored event that cannot be "
                    "read (its stored fields do not decode: changed in the database), so the report's history cannot "
                    "be folded; nothing was recorded. `detail` names the event (stream, version, position); an "
                    "auditor's GET /api/audit/integrity names it too. Quote `correlation_id` when reporting it."),
        ProblemKind("not-ready", 503, "Not ready", "The service cannot serve yet: its event store or read models "
                    "are unreachable (`unreachable` names which; the service's log says why), its subscriptions are "
                    "behind (`behind` lists them), or a subscription or background loop stopped or tries again "
                    "(`stopped`, `retrying`)."),
        ProblemKind("unavailable", 503, "Service unavailable", "The event store or the read models could not "
                    "be used just now (a restart, a lost connection, a full disk). Retry after the seconds in the "
                    "Retry-After header. A change that got this answer may or may not have been recorded: retry it "
                    "as it was (the same Idempotency-Key, the same If-Match), which cannot record it twice."),
    ]
}


# Characters of a client's input a problem quotes: the answer to a long input must not be a copy of it (problems
# are given before authentication). Session 24: a 60,000-character path, or a query of long names, came back whole.
QUOTED_MAX = 64


def quoted(text: str, limit: int = QUOTED_MAX) -> str:
    """`text` as a problem quotes it: whole up to `limit` characters, else cut with "…"."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Problem(HTTPException):
    """Base of every problem. Subclasses fix `kind`; `extra` members are added to the body.

    It is an `HTTPException` so that FastAPI passes it through unchanged wherever it is raised (including
    while the body is read)."""

    kind: ClassVar[str] = "internal"

    def __init__(
        self, detail: str | None = None, *, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        spec = KINDS[self.kind]
        super().__init__(spec.status, detail or spec.title, dict(headers) if headers else None)
        self.extra = extra

    @property
    def spec(self) -> ProblemKind:
        return KINDS[self.kind]


class ValidationProblem(Problem):
    """Invalid input found by a service rather than by the request's models. Its body has `errors` like FastAPI's
    validation problems: one entry, at `location` (e.g. `("query", "from")`; empty when no one part is wrong)."""

    kind = "validation"

    def __init__(self, detail: str | None = None, *, location: Sequence[str] = (), **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.extra.setdefault("errors", [validation_error(location, str(self.detail), "value_error")])


def validation_error(location: Sequence[Any], message: str, kind: str) -> dict[str, Any]:
    """One entry of a validation problem's `errors` (a location may hold a client's own name: quoted, cut short)."""
    return {"location": [quoted(str(part)) for part in location], "message": message, "type": kind}


class BadRequest(Problem):
    kind = "bad-request"


class NotFound(Problem):
    kind = "not-found"


class MethodNotAllowed(Problem):
    kind = "method-not-allowed"


class Unauthenticated(Problem):
    kind = "unauthenticated"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="lapor"'}, **extra)


class Forbidden(Problem):
    kind = "forbidden"


class Conflict(Problem):
    kind = "conflict"


class PreconditionFailed(Problem):
    kind = "precondition-failed"

    def __init__(self, detail: str | None = None, *, current_version: int | None) -> None:
        """`current_version` None: not told, to a caller who may no longer act on the complaint (session 30)."""
        if current_version is None:
            super().__init__(detail)
        else:
            super().__init__(detail, headers={"ETag": f'"{current_version}"'}, current_version=current_version)


class TooLarge(Problem):
    kind = "too-large"


class UnsupportedMediaType(Problem):
    kind = "unsupported-media-type"


class RateLimited(Problem):
    kind = "rate-limited"

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, retry_after=retry_after)


class NotReady(Problem):
    kind = "not-ready"


_BY_STATUS: dict[int, type[Problem]] = {
    KINDS[cls.kind].status: cls
    for cls in (
        BadRequest, NotFound, MethodNotAllowed, Unauthenticated, Forbidden, Conflict, TooLarge, UnsupportedMediaType
    )
}


# Characters a path keeps as they are in a URI reference (RFC 3986 pchar and "/"); `quote` adds the unreserved.
_PATH_SAFE = "/:@!$&'()*+,;="


def problem_body(spec: ProblemKind, detail: str, instance: str, **extra: Any) -> dict[str, Any]:
    """The body of a problem about the request path `instance` (as decoded), which it gives percent-encoded: RFC
    9457 makes `instance` a URI reference, and a path may hold spaces, control or non-ASCII characters."""
    body: dict[str, Any] = {
        "type": spec.type,
        "title": spec.title,
        "status": spec.status,
        "detail": detail,
        "instance": quote(instance, safe=_PATH_SAFE),
    }
    correlation_id = current_correlation_id()
    if correlation_id:
        body["correlation_id"] = correlation_id
    for name, value in extra.items():
        body.setdefault(name, value)  # extension members never override the standard ones
    return body


def problem_response(
    spec: ProblemKind,
    detail: str,
    instance: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(
        problem_body(spec, detail, instance, **extra),
        status_code=spec.status,
        headers=dict(headers) if headers else None,
        media_type=PROBLEM_MEDIA_TYPE,
    )


async def _on_problem(request: Request, problem: Exception) -> Response:
    assert isinstance(problem, Problem)
    return problem_response(
        problem.spec, str(problem.detail), request.url.path, headers=problem.headers, **problem.extra
    )


async def _on_http_exception(request: Request, error: Exception) -> Response:
    """Starlette's own 404/405 (unknown route, wrong method) and any HTTPException a library raises."""
    assert isinstance(error, HTTPException)
    cls = _BY_STATUS.get(error.status_code)
    detail = error.detail if isinstance(error.detail, str) else None
    if cls is None:
        # A status we have no kind for, raised by a library: the nearest kind, with the status it chose.
        nearest = KINDS["bad-request" if error.status_code < 500 else "internal"]
        spec = ProblemKind(nearest.kind, error.status_code, nearest.title, nearest.description)
    else:
        spec = KINDS[cls.kind]
    if cls is NotFound and detail == "Not Found":
        detail = f"no resource at {quoted(request.url.path)}"
    headers = error.headers
    if cls is MethodNotAllowed:
        detail = f"{request.method} is not allowed on {quoted(request.url.path)}"
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return problem_response(spec, detail or spec.title, request.url.path, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this path. Starlette's 405 names only the first route that matched the
    path (so GET /api/agencies hid POST /api/agencies, which another router declares). HEAD goes with GET
    (`lapor.head`)."""
    routes = request.app.router.routes
    allowed = {
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    }
    if "GET" in allowed:
        allowed.add("HEAD")
    return sorted(allowed)


# Asked of each route in turn (routes may be included routers, which hold their methods out of sight).
_METHODS = ("DELETE", "GET", "OPTIONS", "PATCH", "POST", "PUT")


# At most this many of a request's validation errors are listed (`detail` says how many there were): a 1 MiB body of
# unknown names, or of empty objects in a list, made an answer many times its size, before any authentication.
ERRORS_LISTED = 20


async def _on_validation(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    found = error.errors()
    errors = [validation_error(item["loc"], item["msg"], item["type"]) for item in found[:ERRORS_LISTED]]
    summary = "; ".join(f"{'.'.join(e['location'])}: {e['message']}" for e in errors[:3])
    if len(found) > len(errors):
        summary += f" ({len(found)} problems; the first {len(errors)} are listed)"
    return problem_response(KINDS["validation"], summary or "invalid request", request.url.path, errors=errors)


async def _on_illegal_transition(request: Request, error: Exception) -> Response:
    assert isinstance(error, IllegalTransition)
    return problem_response(
        KINDS["conflict"], str(error), request.url.path, event_type=error.event_type, complaint_status=error.status
    )


async def _on_wrong_expected_version(request: Request, error: Exception) -> Response:
    """A service that appended outside the command runner and lost a race: the client may retry."""
    assert isinstance(error, WrongExpectedVersion)
    detail = f"{error.stream} changed concurrently; read it again and retry"
    return problem_response(KINDS["conflict"], detail, request.url.path, current_version=error.actual_version)


def install_problem_handlers(app: FastAPI) -> None:
    """Turn every failure into a problem, and say so in the app's OpenAPI document (`document_problems`)."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(IllegalTransition, _on_illegal_transition)
    app.add_exception_handler(WrongExpectedVersion, _on_wrong_expected_version)
    document_problems(app)


# -- the OpenAPI document -------------------------------------------------------------------------------------

_SCHEMAS = "#/components/schemas/"
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details. `type` names the kind of failure (described at that URI); "
    "extension members (`errors`, `current_version`, `retry_after`, `behind`, ...) depend on the kind.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference", "examples": ["/problems/not-found"]},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "format": "uri-reference"},
        "correlation_id": {"type": "string", "description": "Quote it when reporting a failure."},
    },
    "additionalProperties": True,
}
VALIDATION_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "ValidationProblem",
    "description": "A problem of type `/problems/validation`: `errors` lists each invalid part of the request.",
    "allOf": [{"$ref": _SCHEMAS + "Problem"}],
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["location", "message", "type"],
                "properties": {
                    "location": {"type": "array", "items": {"type": "string"}},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}


def _problem_content(schema: str) -> dict[str, Any]:
    return {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _SCHEMAS + schema}}}


def describe_problem_responses(document: dict[str, Any]) -> None:
    """Rewrite an OpenAPI document (in place) to say what the handlers send: a 422 is a `ValidationProblem` as
    `application/problem+json` (FastAPI documents its own JSON body, which never goes out), and every other
    failure of any operation (401, 403, 404, 409, 429, 500, ...) is a `Problem` (the `default` response)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["ValidationProblem"] = VALIDATION_PROBLEM_SCHEMA
    for operation in _operations(document):
        if "responses" not in operation:
            continue
        responses = operation["responses"]
        if "422" in responses:
            responses["422"] = {
                "description": "The request failed validation (/problems/validation)",
                "content": _problem_content("ValidationProblem"),
            }
        responses.setdefault(
            "default",
            {
                "description": "Any other failure, as a problem whose `type` says which (see /problems)",
                "content": _problem_content("Problem"),
            },
        )
    # Only the 422s replaced above referred to FastAPI's HTTPValidationError, and only it to its ValidationError
    # (kept should one of the services' own models be named so).
    schemas.pop("HTTPValidationError", None)
    if f'"{_SCHEMAS}ValidationError"' not in json.dumps(document):
        schemas.pop("ValidationError", None)


def describe_parameters_as_sent(document: dict[str, Any]) -> None:
    """Rewrite an OpenAPI document (in place) so no parameter is nullable. FastAPI documents an optional
    parameter (`x: str | None = None`) as `anyOf: [string, null]`, but a header, query or path parameter is
    absent or text: it cannot be null, and a client that believes the document sends the text "null" (which
    schemathesis did, for If-Match). The non-null branch stays, with the constraints written beside `anyOf`
    (a pattern, a description, examples)."""
    for operation in _operations(document):
        for parameter in operation.get("parameters", []):
            schema = parameter.get("schema", {})
            branches = [branch for branch in schema.get("anyOf", []) if branch != {"type": "null"}]
            if len(branches) == 1 and len(schema["anyOf"]) == 2:
                rest = {key: value for key, value in schema.items() if key != "anyOf"}
                parameter["schema"] = {**branches[0], **rest}


def _operations(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The document's operations (a path item may also hold non-operation members, e.g. `summary`)."""
    for path_item in document.get("paths", {}).values():
        yield from (member for member in path_item.values() if isinstance(member, dict))


def document_problems(app: FastAPI) -> None:
    """Have `app.openapi()` (and so `/openapi.json` and `/docs`) describe the problem responses, and the
    parameters as they can be sent."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        document = generate()
        if fresh:
            describe_problem_responses(document)
            describe_parameters_as_sent(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the document


class InternalErrorMiddleware:
    """Turns an exception no handler took into a 500 problem carrying the correlation id; the traceback goes to
    the server log only. Sits inside the correlation middleware, so the id is set and the access line shows
    the 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            unreadable = unreadable_of(error)
            if unreadable is not None:
                log.error("unreadable event on %s %s", scope.get("method"), logged_path(scope["path"]),
                          exc_info=True, extra={"correlation_id": current_correlation_id()})
                if started:
                    raise
                await unreadable_response(unreadable, scope["path"])(scope, receive, send)
                return
            outage = outage_of(error)
            log.error(
                "%s on %s %s", "store or read models unavailable" if outage else "unhandled error",
                scope.get("method"), logged_path(scope["path"]),
                exc_info=True, extra={"correlation_id": current_correlation_id()},
            )
            if started:
                raise  # headers are out: nothing sensible to send, let the server drop the connection
            if outage:
                # Not a fault of the request or a bug: the client may retry (a 500 said neither, until session 26).
                response = problem_response(
                    KINDS["unavailable"], "the event store or the read models cannot be used just now; try again",
                    scope["path"], headers={"Retry-After": str(RETRY_AFTER_OUTAGE)}, retry_after=RETRY_AFTER_OUTAGE,
                )
            else:
                response = problem_response(
                    KINDS["internal"], "internal error; quote the correlation id when reporting it", scope["path"]
                )
            await response(scope, receive, send)


def unreadable_response(unreadable: UnreadableEvent, instance: str) -> JSONResponse:
    """The problem of a request that met an event the store cannot read (session 31: the generic 500 said nothing
    of it). It names the event by stream, version and position only: never the decode's words or the stored
    content, which may hold a reporter's personal data (the server's log has them). Nothing was appended: the fold
    that read it failed before any decision."""
    named: dict[str, Any] = {"stream": unreadable.stream, "version": unreadable.version,
                             "position": unreadable.position}
    return problem_response(
        KINDS["unreadable-event"],
        f"the stored event at {unreadable.where} cannot be read, so this history cannot be used; nothing was "
        "recorded. An auditor's GET /api/audit/integrity names it; quote the correlation id when reporting it",
        instance, headers=None, **{name: value for name, value in named.items() if value is not None},
    )


RETRY_AFTER_OUTAGE = 5  # seconds: a writer's restart, a failover, a reconnect


def outage_of(error: BaseException) -> bool:
    """Whether `error` says a database could not be used just now (`transient_failure`: the connection lost, a
    server shutting down, the disk full, a store writer that does not answer) or the vault failed, rather than a
    bug: the request itself may succeed when retried."""
    return transient_failure(error) or isinstance(error, VaultError)


problem_router = APIRouter(tags=["problems"])


@problem_router.get("/problems/{kind}", summary="What a problem type means")
def describe_problem(kind: str) -> dict[str, Any]:
    spec = KINDS.get(kind)
    if spec is None:
        raise NotFound(f"no problem type {quoted(kind)!r}; known: {', '.join(sorted(KINDS))}")
    return {"type": spec.type, "status": spec.status, "title": spec.title, "description": spec.description}


@problem_router.get("/problems", summary="Every problem type")
def list_problems() -> list[dict[str, Any]]:
    return [describe_problem(kind) for kind in KINDS]
