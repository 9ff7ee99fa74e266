"""Every failure a client can meet comes back as application/problem+json with a stable type per kind."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from urllib.parse import unquote

import jsonschema
import pytest
from fastapi.testclient import TestClient

from lapor.app import load_services
from lapor.auth import TokenService
from lapor.clock import ManualClock, SystemClock
from lapor.commands import IF_MATCH_PATTERN, parse_if_match
from lapor.principal import NATIONAL_ADMIN_AGENCY, Role
from lapor.problems import BadRequest
from lapor.settings import Settings
from lapor.store import writer as writer_module
from lapor.store.writer import WriterProcess
from tests.test_subscriptions import make_unreadable

SUBMISSION = {"title": "Jalan rusak di Oebobo", "body": "Lubang besar di depan SD Inpres, sudah dua bulan."}


def assert_problem(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"/problems/{kind}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["instance"] == response.request.url.path
    return body


def submit(client: TestClient) -> tuple[str, str]:
    response = client.post("/api/probe/complaints", json=SUBMISSION)
    assert response.status_code == 201, response.text
    return response.json()["tracking_id"], response.headers["ETag"]


def test_invalid_body_is_a_validation_problem_listing_each_field(client):
    body = assert_problem(client.post("/api/probe/complaints", json={"title": ""}), 422, "validation")
    locations = {tuple(error["location"]) for error in body["errors"]}
    assert ("body", "title") in locations
    assert ("body", "body") in locations


def test_malformed_json_is_a_validation_problem(client):
    response = client.post(
        "/api/probe/complaints", content=b'{"title": ', headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422, "validation")


def test_unknown_route_is_a_not_found_problem(client):
    body = assert_problem(client.get("/api/nothing-here"), 404, "not-found")
    assert "/api/nothing-here" in body["detail"]


def test_unknown_complaint_is_a_not_found_problem(client, bearer):
    response = client.post(
        "/api/probe/complaints/LAP-NOPE/dispose",
        headers=bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY),
    )
    body = assert_problem(response, 404, "not-found")
    assert "LAP-NOPE" in body["detail"]


def test_wrong_method_is_a_method_not_allowed_problem_with_allow_header(client):
    response = client.delete("/healthz")
    assert_problem(response, 405, "method-not-allowed")
    assert "GET" in response.headers["Allow"]


def test_the_allow_header_names_every_method_of_the_path_whichever_router_declares_it(serve):
    """Starlette's 405 named only the first matching route's methods (OPTIONS /api/agencies said GET, hiding
    POST). Checked on every path of the document that has no parameters: Allow lists what the document lists."""
    with serve(services=load_services()) as client:
        document = client.get("/openapi.json").json()
        fixed_paths = {path: methods for path, methods in document["paths"].items() if "{" not in path}
        assert {"get", "post"} <= set(fixed_paths["/api/agencies"])
        for path, methods in fixed_paths.items():
            response = client.request("PATCH", path)
            assert_problem(response, 405, "method-not-allowed")
            allowed = set(response.headers["Allow"].split(", ")) - {"HEAD"}
            assert allowed == {method.upper() for method in methods}, path


# A value for each path parameter of the document; the agency is a unit, so its id spans two segments.
PATH_VALUES = {"agency_id": "pemda-53.71/dinkes", "channel": "sp4n-kota", "draft_id": "d1", "kind": "validation",
               "rule_id": "r1", "tracking_id": "LAP-1", "webhook_id": "w1"}


def test_a_method_no_route_takes_at_a_path_with_parameters_is_a_405_naming_those_that_do(serve):
    """As above, for every path with parameters. An agency id spans segments, so routing's
    /api/agencies/{agency_id} also matched followup's /api/agencies/{agency_id}/webhooks: PUT there was routing's
    "change the agency pemda-53.71/dinkes/webhooks" (401/422), not a 405 (`lapor.paths`)."""
    with serve(services=load_services()) as client:
        document = client.get("/openapi.json").json()
        templated = {path: methods for path, methods in document["paths"].items() if "{" in path}
        assert "/api/agencies/{agency_id}/webhooks" in templated
        for template, methods in templated.items():
            path = re.sub(r"{(\w+)}", lambda match: PATH_VALUES[match.group(1)], template)
            documented = {method.upper() for method in methods}
            for method in {"DELETE", "GET", "PATCH", "POST", "PUT"} - documented:
                response = client.request(method, path)
                assert_problem(response, 405, "method-not-allowed")
                assert set(response.headers["Allow"].split(", ")) - {"HEAD"} == documented, (method, path)


def test_missing_token_is_an_unauthenticated_problem(client):
    response = client.post("/api/probe/complaints/LAP-1/dispose")
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_is_an_unauthenticated_problem(client, settings: Settings):
    nine_hours_ago = SystemClock().now() - timedelta(hours=9)
    issued_then = TokenService(settings.signing_secret(), ManualClock(nine_hours_ago))
    token = issued_then.issue(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY, ttl=timedelta(hours=8))
    response = client.post("/api/probe/complaints/LAP-1/dispose", headers={"Authorization": f"Bearer {token}"})
    body = assert_problem(response, 401, "unauthenticated")
    assert "expired" in body["detail"]


def test_token_signed_with_another_secret_is_an_unauthenticated_problem(client):
    forged = TokenService("x" * 40, SystemClock()).issue(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    response = client.post("/api/probe/complaints/LAP-1/dispose", headers={"Authorization": f"Bearer {forged}"})
    assert_problem(response, 401, "unauthenticated")


def test_token_with_an_unknown_role_is_an_unauthenticated_problem(client, settings: Settings):
    import jwt

    now = int(SystemClock().now().timestamp())
    token = jwt.encode(
        {"iss": "lapor", "sub": "x", "role": "superuser", "iat": now, "exp": now + 600},
        settings.signing_secret(),
        algorithm="HS256",
    )
    response = client.get("/api/probe/whoami", headers={"Authorization": f"Bearer {token}"})
    body = assert_problem(response, 401, "unauthenticated")
    assert "superuser" in body["detail"]


def test_garbage_authorization_header_is_unauthenticated_even_on_public_routes(client):
    assert_problem(client.get("/api/probe/whoami", headers={"Authorization": "Basic abc"}), 401, "unauthenticated")
    assert client.get("/api/probe/whoami").json() == {"role": None}


def test_role_without_the_right_is_a_forbidden_problem(client, bearer):
    tracking_id, _ = submit(client)
    response = client.post(
        f"/api/probe/complaints/{tracking_id}/dispose", headers=bearer(Role.auditor)
    )
    assert_problem(response, 403, "forbidden")


def test_illegal_transition_is_a_conflict_problem(client, bearer):
    tracking_id, _ = submit(client)
    response = client.post(
        f"/api/probe/complaints/{tracking_id}/dispose",
        headers=bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY),
    )
    body = assert_problem(response, 409, "conflict")
    assert body["event_type"] == "ComplaintDisposed"
    assert "submitted" in body["detail"]


def test_stale_if_match_is_a_precondition_failed_problem_with_the_current_version(client, bearer):
    tracking_id, etag = submit(client)
    assert etag == '"0"'
    response = client.post(
        f"/api/probe/complaints/{tracking_id}/dispose",
        headers={**bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY), "If-Match": '"7"'},
    )
    body = assert_problem(response, 412, "precondition-failed")
    assert body["current_version"] == 0
    assert response.headers["ETag"] == '"0"'


def test_malformed_if_match_is_a_bad_request_problem(client, bearer):
    tracking_id, _ = submit(client)
    response = client.post(
        f"/api/probe/complaints/{tracking_id}/dispose",
        headers={**bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY), "If-Match": 'W/"0"'},
    )
    assert_problem(response, 400, "bad-request")


def test_body_over_the_limit_is_a_too_large_problem(serve):
    with serve(limits={"max_body_bytes": 2048}) as client:
        response = client.post("/api/probe/complaints", json={**SUBMISSION, "body": "x" * 5000})
    body = assert_problem(response, 413, "too-large")
    assert body["max_bytes"] == 2048


def test_non_json_body_is_an_unsupported_media_type_problem(client):
    response = client.post(
        "/api/probe/complaints", content=b"<report/>", headers={"Content-Type": "application/xml"}
    )
    assert_problem(response, 415, "unsupported-media-type")


def test_too_many_submissions_is_a_rate_limited_problem_with_retry_after(serve):
    with serve(limits={"submission_rate": "2/minute"}) as client:
        assert client.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
        assert client.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
        response = client.post("/api/probe/complaints", json=SUBMISSION)
    body = assert_problem(response, 429, "rate-limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert body["retry_after"] == int(response.headers["Retry-After"])


def test_unexpected_error_is_an_internal_problem_with_correlation_id_and_no_trace(client, caplog):
    with caplog.at_level(logging.ERROR, logger="lapor.problems"):
        response = client.get("/api/probe/boom", headers={"X-Correlation-ID": "req-500-abc"})
    body = assert_problem(response, 500, "internal")
    assert body["correlation_id"] == "req-500-abc"
    assert response.headers["X-Correlation-ID"] == "req-500-abc"
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    # The server log keeps what the client is not shown, under the same correlation id.
    [record] = [r for r in caplog.records if r.name == "lapor.problems"]
    assert record.correlation_id == "req-500-abc"
    assert "hunter2" in str(record.exc_info[1])


def test_a_store_that_cannot_be_used_just_now_is_unavailable_with_retry_after_not_internal(
    serve, tmp_path, monkeypatch, caplog
):
    """The SQLite store's writer process gone (killed, restarting): each submission was a 500 "internal error",
    which tells a client neither that it was not its fault nor that it may retry. Now a 503 with Retry-After, and
    once a writer serves again the same request goes through."""
    monkeypatch.setattr(writer_module, "WRITER_RETURN", 0.2)  # how long an append waits for a writer to come back
    path = tmp_path / "store" / "events.db"
    path.parent.mkdir()
    writer = WriterProcess(path)
    with serve(store=writer.url) as client:
        assert client.post("/api/probe/complaints", json=SUBMISSION).status_code == 201
        writer.stop()
        with caplog.at_level(logging.ERROR, logger="lapor.problems"):
            response = client.post("/api/probe/complaints", json=SUBMISSION)
        body = assert_problem(response, 503, "unavailable")
        assert int(response.headers["Retry-After"]) >= 1
        assert body["retry_after"] == int(response.headers["Retry-After"])
        assert "does not answer" not in response.text  # the cause is for the log, under the correlation id
        [record] = [r for r in caplog.records if r.name == "lapor.problems"]
        assert record.correlation_id == body["correlation_id"]
        with WriterProcess(path):
            assert client.post("/api/probe/complaints", json=SUBMISSION).status_code == 201


@pytest.mark.parametrize(
    "kind",
    ["validation", "not-found", "method-not-allowed", "unauthenticated", "forbidden", "conflict",
     "precondition-failed", "too-large", "unsupported-media-type", "rate-limited", "internal", "unavailable"],
)
def test_every_problem_type_is_described_at_its_uri(client, kind):
    response = client.get(f"/problems/{kind}")
    assert response.status_code == 200
    description = response.json()
    assert description["type"] == f"/problems/{kind}"
    assert description["description"]


# -- what the OpenAPI document says of them -------------------------------------------------------------------


def documented(document: dict, path: str, method: str, status: int) -> dict:
    """The schema `document` gives for a problem answer of `status` to `method path` (its own, or `default`)."""
    responses = document["paths"][path][method]["responses"]
    response = responses.get(str(status), responses.get("default"))
    assert response is not None, f"{method.upper()} {path} documents no {status} and no default"
    assert list(response["content"]) == ["application/problem+json"], response
    return response["content"]["application/problem+json"]["schema"]


def conforms(document: dict, schema: dict, body: dict) -> None:
    """Raises if `body` does not match `schema`, its references resolved in `document`."""
    jsonschema.validate(body, {**schema, "components": document["components"]}, cls=jsonschema.Draft202012Validator)


def test_the_openapi_document_describes_every_failure_as_a_problem(serve):
    with serve(services=load_services()) as client:
        document = client.get("/openapi.json").json()
    operations = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]
    assert any(path == "/api/reports/national" for path, _, _ in operations)
    validated = 0
    for path, method, operation in operations:
        responses = operation["responses"]
        assert responses["default"]["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }, (method, path)
        if "422" in responses:
            validated += 1
            assert responses["422"]["content"] == {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/ValidationProblem"}}
            }, (method, path)
    assert validated > 0
    # FastAPI's own 422 body is never sent, so it is not described.
    assert "HTTPValidationError" not in str(document)
    assert {"Problem", "ValidationProblem"} <= set(document["components"]["schemas"])


def test_no_parameter_is_documented_as_nullable(serve):
    """A header, query or path parameter is absent or text: FastAPI's `anyOf: [..., null]` for an optional one is
    rewritten to its other branch, keeping the constraints written beside it."""
    with serve(services=load_services()) as client:
        document = client.get("/openapi.json").json()
    parameters = [
        parameter
        for methods in document["paths"].values()
        for operation in methods.values()
        for parameter in operation.get("parameters", [])
    ]
    optional = [parameter for parameter in parameters if not parameter.get("required")]
    assert len(optional) > 20
    assert [parameter for parameter in parameters if "null" in str(parameter["schema"])] == []
    if_matches = [parameter["schema"] for parameter in parameters if parameter["name"] == "if-match"]
    assert len(if_matches) > 10
    assert {(schema["type"], schema.get("pattern")) for schema in if_matches} == {("string", IF_MATCH_PATTERN)}
    region = next(parameter for parameter in parameters if parameter["name"] == "region")
    assert region["schema"]["type"] == "string"
    assert region["schema"]["pattern"].startswith("^")


def test_problems_sent_match_the_schemas_the_document_gives(client, bearer):
    document = client.get("/openapi.json").json()
    invalid = client.post("/api/probe/complaints", json={"title": ""})
    missing = client.post(
        "/api/probe/complaints/LAP-NOPE/dispose", headers=bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    )
    unauthenticated = client.post("/api/probe/complaints/LAP-NOPE/dispose")
    answers = [
        ("/api/probe/complaints", "post", invalid, 422),
        ("/api/probe/complaints/{tracking_id}/dispose", "post", missing, 404),
        ("/api/probe/complaints/{tracking_id}/dispose", "post", unauthenticated, 401),
    ]
    for path, method, response, status in answers:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        conforms(document, documented(document, path, method, status), response.json())
    # The schemas are not vacuous: a validation problem without its errors, or a problem without a type, fails.
    validation_schema = documented(document, "/api/probe/complaints", "post", 422)
    with pytest.raises(jsonschema.ValidationError):
        conforms(document, validation_schema, {k: v for k, v in invalid.json().items() if k != "errors"})
    with pytest.raises(jsonschema.ValidationError):
        conforms(document, validation_schema, {k: v for k, v in invalid.json().items() if k != "type"})


def test_instance_is_the_path_percent_encoded_whatever_characters_it_holds(client):
    """RFC 9457's `instance` is a URI reference: a path with spaces, control or non-ASCII characters is given
    percent-encoded, and decodes back to the path asked for."""
    document = client.get("/openapi.json").json()
    sent = "/api/probe/complaints/LAP%20%C3%B2%25/dispose"  # the tracking id "LAP ò%"
    response = client.post(sent)
    assert response.status_code == 401
    instance = response.json()["instance"]
    assert unquote(instance) == "/api/probe/complaints/LAP ò%/dispose"
    assert instance == sent
    conforms(document, documented(document, "/api/probe/complaints/{tracking_id}/dispose", "post", 401),
             response.json())
    # A control character is refused before any route (lapor.limits); its problem's instance is encoded alike.
    controlled = "/api/probe/complaints/LAP%20%C3%B2%0E%25/dispose"
    refused = client.post(controlled)
    assert refused.status_code == 400
    assert refused.json()["instance"] == controlled


@pytest.mark.parametrize(
    "value",
    ['"3"', "3", "*", ' "12" ', 'W/"3"', '"3', "abc", "", '"-1"', "\u00b2", '"3", "4"', "9" * 19, "9" * 20, "9" * 5000],
)
def test_the_document_says_which_if_match_values_are_taken(client, value):
    """The If-Match header's documented pattern takes exactly the values the service takes (others are a 400)."""
    document = client.get("/openapi.json").json()
    parameters = document["paths"]["/api/probe/complaints/{tracking_id}/dispose"]["post"]["parameters"]
    (header,) = [parameter for parameter in parameters if parameter["name"].lower() == "if-match"]
    documented_ok = jsonschema.Draft202012Validator(header["schema"]).is_valid(value)
    try:
        parse_if_match(value)
    except BadRequest:
        taken = False
    else:
        taken = True
    assert documented_ok == taken


@pytest.mark.parametrize(
    ("method", "path", "start"),
    [
        ("GET", "/scanner/", "no resource at /scanner/"),
        ("GET", "/problems/", "no problem type '"),
        ("POST", "/problems/", "POST is not allowed on /problems/"),
    ],
)
def test_a_very_long_path_is_quoted_cut_short(client, method, path, start):
    """As a tracking id's 404 has been since session 24: the detail quoted the whole path, and `instance` carries it
    too, so 60,000 characters got an answer of twice that, before any authentication."""
    response = client.request(method, path + "x" * 60_000)
    detail = response.json()["detail"]
    assert detail.startswith(start)
    assert "x" * 40 + "…" in detail
    assert len(detail) < 400  # the list of known problem types is the longest part


@pytest.mark.parametrize("column", ["data", "recorded_at"])
def test_a_request_meeting_an_event_that_cannot_be_read_is_an_unreadable_event_problem_naming_it_only(
    serve, bearer, paths, column, caplog
):
    """Session 31: a command whose fold met an event changed in the database past reading, or a read of that report,
    was the generic 500 "internal error". Its problem names the event (stream, version, position), never the
    decode's words or what is stored; the log keeps those; nothing is appended."""
    store_url, readmodels_url = paths
    with serve(services=load_services(), store=store_url, readmodels=readmodels_url) as client:
        admin = bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
        submitted = client.post("/api/complaints", json={**SUBMISSION, "region_code": "53.71"})
        assert submitted.status_code == 201, submitted.text
        tracking_id, reporter_token = submitted.json()["tracking_id"], submitted.json()["reporter_token"]
        verify = client.post(f"/api/complaints/{tracking_id}/verify", json={"category": "Infrastruktur"}, headers=admin)
        assert verify.status_code == 200, verify.text
        store = client.app.state.context.store
        stream = f"complaint-{tracking_id}"
        [verified] = store.read_stream(stream, 1)
        make_unreadable(store_url, stream, 1, column)
        requests = [
            ("GET", f"/api/complaints/{tracking_id}", admin, None),
            ("GET", f"/api/complaints/{tracking_id}", {"X-Reporter-Token": reporter_token}, None),
            ("POST", f"/api/complaints/{tracking_id}/dispose", admin, {"agency_id": "pemda-53.71"}),
        ]
        for method, path, headers, body in requests:
            with caplog.at_level(logging.ERROR, logger="lapor.problems"):
                response = client.request(method, path, headers=headers, json=body)
            problem = assert_problem(response, 500, "unreadable-event")
            assert f"{stream} version 1 (position {verified.position})" in problem["detail"]
            assert "GET /api/audit/integrity" in problem["detail"]
            assert (problem["stream"], problem["version"], problem["position"]) == (stream, 1, verified.position)
            for leaked in ("Error", "bukan", "1e400", "kemarin", "infinity", "Lubang"):
                assert leaked not in response.text, (path, leaked)
            [record] = [r for r in caplog.records if r.name == "lapor.problems"]
            assert "cannot be read: " in str(record.exc_info[1])  # the cause, in the server's log only
            caplog.clear()
        assert store.stream_version(stream) == 1  # nothing appended
        assert client.get("/problems/unreadable-event").json()["status"] == 500
