"""Malformed, oversize, wrong-type and hostile input: a problem response (application/problem+json) and no
event, on every intake route that takes a body."""

from __future__ import annotations

import json
import time

import jsonschema
import jwt
import pytest

from lapor.auth import ALGORITHM, ISSUER
from lapor.principal import Role
from tests.intake.conftest import REPORT

SMS = {
    "message_id": "m-1",
    "sender": "6281234567890",
    "text": "KOTKUPANG jalan rusak",
    "received_at": "2026-03-06T08:00:00Z",
}
CHANNEL = {**REPORT, "external_id": "SBT-1"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def intake(module_intake):
    """Every test here looks only at its own reports, so they share one running service."""
    return module_intake


def routes(intake):
    """(path, a valid body, headers) of every intake route that creates a report."""
    return {
        "web": ("/api/complaints", REPORT, {}),
        "sms": ("/api/channels/sms", SMS, intake.bearer(Role.integration, channel="sms")),
        "channel": ("/api/channels/sambat/complaints", CHANNEL, intake.bearer(Role.integration, channel="sambat")),
    }


def refused(intake, route, *, status=422, **request):
    path, _, headers = routes(intake)[route]
    head = intake.head()
    response = intake.client.post(path, headers={**headers, **request.pop("headers", {})}, **request)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert intake.head() == head, "an event was written"
    return response.json()


def with_field(route, intake, **fields):
    return {**routes(intake)[route][1], **fields}


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert('x')</script> jalan rusak",
        'Jalan rusak <img src=x onerror="alert(1)">',
        "lihat <a href='javascript:alert(1)'>foto</a>",
        "<!-- komentar --> jalan rusak",
        "Jalan rusak <b>parah</b>",
    ],
)
@pytest.mark.parametrize("route", ["web", "channel"])
def test_html_and_script_in_the_text_are_refused(intake, route, text):
    problem = refused(intake, route, json=with_field(route, intake, body=text))
    assert problem["errors"][0]["location"] == ["body", "body"]
    assert "plain text" in problem["errors"][0]["message"]


def test_html_in_an_sms_is_refused(intake):
    refused(intake, "sms", json={**SMS, "text": "KOTKUPANG <script>alert(1)</script>"})


def test_a_comparison_sign_in_plain_text_is_not_mistaken_for_html(intake):
    receipt = intake.submit(body="Tarif air naik dari < 5.000 menjadi > 10.000 per kubik, 3<4 orang mengeluh.")
    assert "< 5.000" in intake.events(receipt["tracking_id"])[0].data["body"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("region_code", "53.71'; DROP TABLE events; --"),
        ("region_code", "53.71 OR 1=1"),
        ("kind", "pengaduan' OR '1'='1"),
    ],
)
def test_sql_fragments_in_coded_fields_are_refused(intake, field, value):
    refused(intake, "web", json=with_field("web", intake, **{field: value}))


def test_sql_fragments_in_identifiers_are_refused(intake):
    refused(intake, "channel", json=with_field("channel", intake, external_id="1'; DELETE FROM events; --"))
    refused(intake, "sms", json={**SMS, "message_id": "x' OR '1'='1"})
    path = "/api/channels/sambat'; DROP TABLE events;--/complaints"
    # Signed by hand: TokenService.issue refuses such a channel since session 31, and the token must let the request
    # past the channel's authorization to the path's own refusal.
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "gateway", "role": "integration", "iat": now, "exp": now + 600,
              "channel": "sambat'; DROP TABLE events;--"}
    headers = {"Authorization": f"Bearer {jwt.encode(claims, intake.ctx.settings.signing_secret(), ALGORITHM)}"}
    response = intake.client.post(path, json=CHANNEL, headers=headers)
    assert response.status_code == 422


def test_sql_fragments_in_free_text_are_only_text(intake):
    """Every query is parameterised: such text is stored and shown as written, and the store is intact."""
    text = "Robert'); DROP TABLE events;-- mengeluh jalan rusak"
    receipt = intake.submit(body=text)
    assert intake.events(receipt["tracking_id"])[0].data["body"] == text
    assert intake.client.get(f"/api/complaints/{receipt['tracking_id']}").json()["body"] == text


def test_a_tracking_id_with_sql_in_the_path_is_not_found(intake):
    response = intake.client.get("/api/complaints/1' OR '1'='1")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("route", ["web", "sms", "channel"])
def test_invalid_utf8_is_refused(intake, route):
    body = json.dumps(routes(intake)[route][1]).encode().replace(b"rusak", b"rus\xffak", 1)
    refused(intake, route, status=400, content=body, headers=JSON)


@pytest.mark.parametrize("route", ["web", "channel"])
def test_escaped_lone_surrogates_and_control_characters_are_refused(intake, route):
    for fields in ({"title": "Jalan \ud800 rusak"}, {"title": "Jalan \x00 rusak"}, {"body": "Jalan \x1b[31m rusak"}):
        # json.dumps escapes them as \\ud800, \\u0000: valid JSON that decodes to text no report may hold.
        refused(intake, route, content=json.dumps(with_field(route, intake, **fields)), headers=JSON)


def test_a_body_that_is_not_json_is_refused(intake):
    refused(intake, "web", content=b"{title: jalan", headers=JSON)
    refused(intake, "web", json=["a", "list"])


def test_a_body_of_another_media_type_is_refused(intake):
    refused(intake, "web", status=415, content=b"<xml/>", headers={"Content-Type": "application/xml"})


def test_a_body_over_the_size_limit_is_refused_before_it_is_read(intake):
    refused(intake, "web", status=413, json={**REPORT, "body": "x" * 1_100_000})


@pytest.mark.parametrize(
    ("field", "value"),
    [("title", "x" * 201), ("body", "x" * 10_001), ("category", "x" * 81), ("title", "   "), ("body", "")],
)
def test_texts_over_or_under_their_length_limits_are_refused(intake, field, value):
    refused(intake, "web", json={**REPORT, field: value})


@pytest.mark.parametrize("route", ["web", "channel"])
@pytest.mark.parametrize("category", ["(none)", "(OTHER)", '"(other)"'])
def test_a_category_named_like_a_label_of_the_figures_is_refused(intake, route, category):
    """Session 31: the reports' figures count reports without a category under `(none)` and the public statistics'
    rest under `(other)`, and a reporter's category of that name was counted with them."""
    problem = refused(intake, route, json=with_field(route, intake, category=category))
    assert [error["location"] for error in problem["errors"]] == [["body", "category"]]


@pytest.mark.parametrize(
    ("field", "value"),
    [("title", "   "), ("body", "\t\n"), ("category", " "), ("region_code", ""), ("region_code", "5"),
     ("region_code", "53.7"), ("region_code", "53.71."), ("region_code", "５３.７１"), ("title", "Jalan\x00rusak"),
     ("body", "Bel\x07berbunyi terus"), ("category", "Kese\x1bhatan"), ("body", "Lampu jalan padam\x7f")],
)
def test_the_api_document_refuses_what_the_service_refuses(intake, field, value):
    """A client validating against /openapi.json learns that "   " is refused, not only "" (minLength 1), that
    plain text holds no control character but tab and line breaks, and what a region code looks like."""
    document = intake.client.get("/openapi.json").json()
    schema = document["paths"]["/api/complaints"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator({**schema, "components": document["components"]})
    assert validator.is_valid(REPORT)
    assert validator.is_valid({**REPORT, "body": "Baris satu,\r\n\tbaris dua.", "title": " Jalan\u00a0rusak "})
    assert not validator.is_valid({**REPORT, field: value})
    refused(intake, "web", json={**REPORT, field: value})


@pytest.mark.parametrize(
    "fields",
    [
        {"title": 123},
        {"body": ["a", "list"]},
        {"anonymous": "yes"},
        {"confidential": 1},
        {"region_code": 53.71},
        {"kind": "gugatan"},
        {"location": {"lat": "-10.1", "lon": "123.6"}},
        {"location": {"lat": -10.1}},
        {"reporter": "Budi"},
        {"nik": "5371014508850001"},  # identity outside `reporter` is an unknown field
        {"reporter_ref": "pii_forged_reference"},
        {"reporter_token_hash": "0" * 64},
    ],
)
def test_wrong_types_and_unknown_fields_are_refused(intake, fields):
    refused(intake, "web", json={**REPORT, **fields})


@pytest.mark.parametrize(
    "fields",
    [
        {"location": {"lat": 1e308, "lon": 0.0}},
        {
            "attachments": [
                {"url": "https://a.id/f.jpg", "sha256": "0" * 64, "media_type": "image/jpeg", "size_bytes": 10**40}
            ]
        },
    ],
)
def test_huge_numbers_are_refused(intake, fields):
    refused(intake, "web", json={**REPORT, **fields})


def test_a_number_beyond_floating_point_is_refused(intake):
    body = json.dumps({**REPORT, "location": {"lat": -10.0, "lon": 0.0}}).replace("0.0", "-1e400")
    refused(intake, "web", content=body, headers=JSON)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("coordinate", ["lat", "lon"])
def test_nan_and_infinity_as_a_coordinate_are_refused_as_not_a_finite_number(intake, number, coordinate):
    """Python's JSON reader takes NaN and Infinity, which JSON has not; NaN was refused as "less than or equal to
    90", a bound it does not break (session 31)."""
    location = {"lat": "-10.5", "lon": "123.5", coordinate: number}
    body = json.dumps(REPORT)[:-1] + f', "location": {{"lat": {location["lat"]}, "lon": {location["lon"]}}}}}'
    problem = refused(intake, "web", content=body, headers=JSON)
    [error] = problem["errors"]
    assert error["location"] == ["body", "location", coordinate]
    assert error["message"] == "Input should be a finite number"


def test_a_number_too_long_to_read_is_refused(intake):
    body = json.dumps(REPORT)[:-1] + ', "anonymous": ' + "9" * 5000 + "}"
    refused(intake, "web", status=400, content=body.encode(), headers=JSON)


def test_an_sms_with_a_malformed_sender_or_time_is_refused(intake):
    refused(intake, "sms", json={**SMS, "sender": "+62 812' OR 1=1"})
    refused(intake, "sms", json={**SMS, "received_at": "kemarin"})
    refused(intake, "sms", json={**SMS, "received_at": "2026-03-06T08:00:00"})  # no time zone


@pytest.mark.parametrize("received_at", [0, 1772784000, "1772784000", 1772784000.5])
def test_a_receipt_time_given_as_a_number_is_refused(intake, received_at):
    """A number used to pass as Unix time; the document says ISO-8601 text."""
    for route in ("sms", "channel"):
        problem = refused(intake, route, json=with_field(route, intake, received_at=received_at))
        assert "ISO-8601 date and time" in problem["errors"][0]["message"]


@pytest.mark.parametrize("received_at", ["0001-01-01T00:00:00Z", "1970-01-01T00:00:00+00:00", "1999-12-31T23:59:59Z"])
def test_a_receipt_time_that_is_a_clocks_zero_is_refused(intake, received_at):
    """Go's zero time, the Unix epoch: a client's clock or field never set. It was recorded as given (session 32)."""
    for route in ("sms", "channel"):
        problem = refused(intake, route, json=with_field(route, intake, received_at=received_at))
        [error] = problem["errors"]
        assert error["location"] == ["body", "received_at"]
        assert "before 2000-01-01" in problem["detail"]


def test_a_receipt_time_of_the_first_moment_taken_is_recorded(intake):
    for route, key in (("sms", "message_id"), ("channel", "external_id")):
        path, body, headers = routes(intake)[route]
        fields = {key: "zero-clock-edge", "received_at": "2000-01-01T07:00:00+07:00"}
        response = intake.client.post(path, json={**body, **fields}, headers=headers)
        assert response.status_code == 201, response.text
        [event] = intake.events(response.json()["tracking_id"])
        assert event.metadata["received_at"] == "2000-01-01T07:00:00+07:00"


@pytest.mark.parametrize(
    "external_id",
    [
        "SBT-1\n",  # a line break after it (Python's `$` takes one; the check is pydantic's, whose does not)
        "SBT\u00001",
        "SBT\u200b-1",  # shows as SBT-1
        "\uff33\uff22\uff34-1",  # full-width letters: SBT-1 to the eye
        "SBT-1" + "0" * 96,  # 101 characters
    ],
    ids=["line-break", "nul", "zero-width", "full-width", "too-long"],
)
def test_an_external_id_that_is_not_the_plain_identifier_it_looks_like_is_refused(intake, external_id):
    problem = refused(intake, "channel", json=with_field("channel", intake, external_id=external_id))
    assert problem["errors"][0]["location"] == ["body", "external_id"]


def test_hostile_text_in_the_reporters_own_actions_is_refused(intake):
    receipt = intake.submit()
    intake.pend(receipt["tracking_id"])
    token = {"X-Reporter-Token": receipt["reporter_token"]}
    path = f"/api/complaints/{receipt['tracking_id']}"
    head = intake.head()
    for action, body in [
        ("information", {"text": "<script>alert(1)</script>"}),
        ("information", {"text": "x" * 10_001}),
        ("information", {"text": "ok", "attachments": [{"url": "ftp://x", "sha256": "0" * 64}]}),
        ("feedback", {"satisfied": True, "rating": 5, "comment": "<b>bagus</b>"}),
        ("ombudsman-consent", {"unexpected": True}),
    ]:
        response = intake.client.post(f"{path}/{action}", json=body, headers=token)
        assert response.status_code == 422, (action, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert intake.head() == head
