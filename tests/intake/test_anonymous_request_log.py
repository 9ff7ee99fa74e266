"""The request log and an anonymous report (session 28): every request's log line names the client's address and
the request's correlation id, and the events a request appends carry that id. Whoever reads both (operators,
auditors through the audit API, the live stream) could join them and learn an anonymous reporter's address. So a
request that files, reads or acts on an anonymous report is logged without the address, and an id the client chose
is replaced; a named report's requests stay traceable as before."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lapor.app import SERVICE_NAMES
from lapor.logs import CorrelationFilter, JsonFormatter
from lapor.observability import WITHHELD_CLIENT
from lapor.principal import Role
from lapor.store import RecordedEvent
from tests.intake.conftest import REPORT, Intake, running_intake

ADDRESS = "203.0.113.45"  # the reporter's own (a documentation address, RFC 5737)
CHOSEN_ID = "warga-app-5f1c"  # an app that sends one X-Correlation-ID with every request of its session
JSON = {"Content-Type": "application/json"}

Logged = Callable[[], list[dict[str, Any]]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def reporters_intake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Intake]:
    """Intake on SQLite or PostgreSQL, its test client's requests coming from the reporter's address."""
    store = {} if request.param == "sqlite" else {"store": request.getfixturevalue("postgres_url")}
    with running_intake(tmp_path / "var", client_address=ADDRESS, **store) as intake:
        yield intake


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def every_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Intake]:
    """`lapor up`'s four services in one app, as `reporters_intake`: the officials' routes below a report are there."""
    store = {} if request.param == "sqlite" else {"store": request.getfixturevalue("postgres_url")}
    with running_intake(tmp_path / "var", client_address=ADDRESS, services=SERVICE_NAMES, **store) as intake:
        yield intake


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[Logged]:
    """Every record logged so far, as `lapor.logs` writes it (JSON, the correlation id stamped by its filter)."""
    caplog.handler.addFilter(CorrelationFilter())
    with caplog.at_level(logging.DEBUG):
        yield lambda: [json.loads(JsonFormatter().format(record)) for record in caplog.records]


def reporter(receipt: dict[str, Any], **headers: str) -> dict[str, str]:
    return {"X-Reporter-Token": receipt["reporter_token"], **headers}


def joinable(lines: Iterable[dict[str, Any]], events: Iterable[RecordedEvent], tracking_ids: set[str]) -> list[str]:
    """The log lines that name the reporter's address beside something the events carry: the tracking ID, or a
    request's correlation or causation id."""
    carried = tracking_ids | {
        str(event.metadata[key]) for event in events for key in ("correlation_id", "causation_id")
    }
    shown = [json.dumps(line) for line in lines]
    return [line for line in shown if ADDRESS in line and any(trace in line for trace in carried)]


def test_no_log_line_names_an_anonymous_reporters_address_beside_anything_its_reports_events_carry(
    reporters_intake: Intake, logged: Logged
) -> None:
    intake = reporters_intake
    client = intake.client
    assert client.get("/").status_code == 200  # the report form
    # The web form, then what the reporter does with the reporter token.
    web = client.post("/api/complaints", json={**REPORT, "anonymous": True}).json()
    path = f"/api/complaints/{web['tracking_id']}"
    assert client.get(path, headers=reporter(web)).status_code == 200
    intake.pend(web["tracking_id"])
    information = {"text": "Lokasinya di depan SD Inpres Oebobo."}
    assert client.post(f"{path}/information", json=information, headers=reporter(web)).status_code == 200
    intake.resolve(web["tracking_id"])
    feedback = {"satisfied": True, "rating": 4}
    assert client.post(f"{path}/feedback", json=feedback, headers=reporter(web)).status_code == 200
    # A city's own complaint system pushing an anonymous report, whose reporter then consents to the Ombudsman.
    pushed = client.post(
        "/api/channels/sambat-malang/complaints",
        json={**REPORT, "anonymous": True, "external_id": "SBT-2026-00077"},
        headers=intake.bearer(Role.integration, channel="sambat-malang"),
    ).json()
    intake.offer_ombudsman(pushed["tracking_id"])
    consent = f"/api/complaints/{pushed['tracking_id']}/ombudsman-consent"
    assert client.post(consent, headers=reporter(pushed)).status_code == 200
    intake.caught_up()

    events = [*intake.events(web["tracking_id"]), *intake.events(pushed["tracking_id"])]
    requested = [event for event in events if event.metadata.get("actor") != "test-officer"]
    assert [event.type for event in requested] == [
        "ComplaintSubmitted", "InformationProvided", "FeedbackGiven", "ComplaintSubmitted", "OmbudsmanConsentGiven"
    ]
    lines = logged()
    assert [line for line in lines if line.get("client") == ADDRESS], "the form page is logged with the address"
    assert joinable(lines, requested, {web["tracking_id"], pushed["tracking_id"]}) == []
    # Still traceable: each event's correlation id is its request's log line's, the address withheld there.
    access = {line["correlation_id"]: line for line in lines if line["logger"] == "lapor.access"}
    assert {access[event.metadata["correlation_id"]]["client"] for event in requested} == {WITHHELD_CLIENT}


def test_an_anonymous_report_takes_no_correlation_id_the_client_chose_and_its_answer_names_the_one_it_took(
    reporters_intake: Intake, logged: Logged
) -> None:
    """A client that sends one id with all its requests would otherwise link the report to the lines of the
    others, which name its address."""
    client = reporters_intake.client
    response = client.post(
        "/api/complaints", json={**REPORT, "anonymous": True}, headers={"X-Correlation-ID": CHOSEN_ID}
    )
    assert client.get("/", headers={"X-Correlation-ID": CHOSEN_ID}).status_code == 200
    [event] = reporters_intake.events(response.json()["tracking_id"])
    assert event.metadata["correlation_id"] != CHOSEN_ID
    assert response.headers["X-Correlation-ID"] == event.metadata["correlation_id"]
    lines = logged()
    assert joinable(lines, [event], {event.data["tracking_id"]}) == []
    submitted, form = [line for line in lines if line["logger"] == "lapor.access"]
    assert (submitted["correlation_id"], submitted["client"]) == (event.metadata["correlation_id"], WITHHELD_CLIENT)
    assert (form["correlation_id"], form["client"]) == (CHOSEN_ID, ADDRESS)


def test_a_named_reports_requests_are_logged_with_the_address_and_the_correlation_id_its_events_carry(
    reporters_intake: Intake, logged: Logged
) -> None:
    client = reporters_intake.client
    receipt = client.post(
        "/api/complaints", json={**REPORT, "reporter": {"name": "Dewi Rahayu"}}, headers={"X-Correlation-ID": CHOSEN_ID}
    ).json()
    reporters_intake.pend(receipt["tracking_id"])
    answered = client.post(
        f"/api/complaints/{receipt['tracking_id']}/information", json={"text": "Foto terlampir."},
        headers=reporter(receipt),
    )
    assert answered.status_code == 200
    submitted, _, information = reporters_intake.events(receipt["tracking_id"])
    assert submitted.metadata["correlation_id"] == CHOSEN_ID
    assert information.metadata["correlation_id"] == answered.headers["X-Correlation-ID"]
    access = [line for line in logged() if line["logger"] == "lapor.access"]
    assert [(line["correlation_id"], line["client"]) for line in access] == [
        (CHOSEN_ID, ADDRESS), (information.metadata["correlation_id"], ADDRESS)
    ]


def test_a_refused_request_about_an_anonymous_report_is_logged_without_the_address_as_the_accepted_one_is(
    reporters_intake: Intake, logged: Logged
) -> None:
    """Session 29: only the requests the route went on to read the report for were unlinked. A reporter's try that
    was refused before (a text with markup, a malformed If-Match, a query the route does not take) was logged with
    the address beside the tracking ID, and the accepted try that followed showed whose report it was."""
    intake = reporters_intake
    client = intake.client
    anonymous = client.post("/api/complaints", json={**REPORT, "anonymous": True}).json()
    named = client.post("/api/complaints", json=REPORT).json()
    for receipt in (anonymous, named):
        intake.pend(receipt["tracking_id"])
        path = f"/api/complaints/{receipt['tracking_id']}"
        refused = [
            client.post(f"{path}/information", json={"text": "<b>Foto</b> terlampir."}, headers=reporter(receipt)),
            client.post(f"{path}/information", json={"text": "Foto."}, headers=reporter(receipt, **{"If-Match": "v2"})),
            client.post(f"{path}/information", content=b'{"text": ', headers=reporter(receipt, **JSON)),
            client.get(f"{path}?token={receipt['reporter_token']}"),
        ]
        assert [response.status_code for response in refused] == [422, 400, 422, 422]
        information = {"text": "Lokasinya di depan SD Inpres Oebobo."}
        assert client.post(f"{path}/information", json=information, headers=reporter(receipt)).status_code == 200
    lines = logged()
    requested = [event for event in intake.events(anonymous["tracking_id"]) if event.metadata.get("correlation_id")]
    assert joinable(lines, requested, {anonymous["tracking_id"]}) == []
    access = [line for line in lines if line["logger"] == "lapor.access"]
    clients = {
        tracking_id: [line["client"] for line in access if tracking_id in line["path"]]
        for tracking_id in (anonymous["tracking_id"], named["tracking_id"])
    }
    assert clients == {anonymous["tracking_id"]: [WITHHELD_CLIENT] * 5, named["tracking_id"]: [ADDRESS] * 5}


def test_a_request_about_a_report_refused_before_any_route_is_logged_without_the_address(
    every_service: Intake, logged: Logged
) -> None:
    """Session 29: the input guard refuses a body too large or not JSON, or a control character in the URL, before
    any route runs, so before intake can read whether the report is anonymous: the reporter's requests are logged
    without the address whatever the report (since session 30 also those for a path below it that no route
    serves); the officials' routes, and the submission (no tracking ID), keep it."""
    intake = every_service
    client = intake.client
    anonymous = client.post("/api/complaints", json={**REPORT, "anonymous": True}).json()
    path = f"/api/complaints/{anonymous['tracking_id']}"
    too_large = b"x" * (intake.ctx.settings.limits.max_body_bytes + 1)
    refused = [
        client.post(f"{path}/information", content=b"Foto terlampir.", headers=reporter(anonymous, **{
            "Content-Type": "text/plain"})),
        client.post(f"{path}/feedback", content=too_large, headers=reporter(anonymous, **JSON)),
        client.get(f"{path}%00", headers=reporter(anonymous)),
        client.post(f"{path}/attachments", content=b"foto", headers=reporter(anonymous, **{
            "Content-Type": "image/jpeg"})),
        client.post(f"{path}/verify", content=b"ok", headers={"Content-Type": "text/plain"}),
    ]
    assert [response.status_code for response in refused] == [415, 413, 400, 415, 415]
    access = [
        line for line in logged() if line["logger"] == "lapor.access" and anonymous["tracking_id"] in line["path"]
    ]
    reporters = [line["client"] for line in access if not line["path"].endswith("/verify")]
    assert reporters == [WITHHELD_CLIENT] * 4
    assert [line["client"] for line in access if line["path"].endswith("/verify")] == [ADDRESS]


def test_every_request_naming_an_anonymous_report_is_logged_without_the_address_whatever_route_takes_it(
    every_service: Intake, logged: Logged
) -> None:
    """Session 30: only what reached one of the reporter's routes was unlinked. A trailing slash (answered with a
    redirect), a method the route does not take (405) or a sub-resource no route serves (a client asking for the
    report's attachments: 404) was logged with the address and the client's own correlation id beside the
    tracking ID. The officials' routes below a report keep the address and the client's id, and a named report's
    requests the address."""
    intake = every_service
    client = intake.client
    anonymous = client.post("/api/complaints", json={**REPORT, "anonymous": True}).json()
    named = client.post("/api/complaints", json=REPORT).json()
    chosen = {"X-Correlation-ID": CHOSEN_ID}
    answers: dict[str, list[Any]] = {}
    for receipt in (anonymous, named):
        path = f"/api/complaints/{receipt['tracking_id']}"
        headers = reporter(receipt, **chosen)
        answers[receipt["tracking_id"]] = [
            client.get(f"{path}/", headers=headers, follow_redirects=False),
            client.post(f"{path}/information/", json={"text": "Foto."}, headers=headers, follow_redirects=False),
            client.put(path, json={"title": "x"}, headers=headers),
            client.get(f"{path}/feedback", headers=headers),
            client.get(f"{path}/attachments", headers=headers),
            client.get(f"{path}/attachments/0", headers=headers),
        ]
    statuses = [307, 307, 405, 405, 404, 404]
    assert [response.status_code for response in answers[anonymous["tracking_id"]]] == statuses
    assert [response.status_code for response in answers[named["tracking_id"]]] == statuses
    officials = [
        client.post(f"/api/complaints/{anonymous['tracking_id']}/verify", json={}, headers=chosen),
        client.get(f"/api/complaints/{anonymous['tracking_id']}/verify", headers=chosen),
    ]
    assert [response.status_code for response in officials] == [401, 405]
    access = [line for line in logged() if line["logger"] == "lapor.access"]

    def logged_for(tracking_id: str, officials: bool = False) -> list[tuple[str, str]]:
        return [(line["client"], line["correlation_id"]) for line in access
                if tracking_id in line["path"] and line["path"].endswith("/verify") == officials]

    withheld = logged_for(anonymous["tracking_id"])
    assert [client for client, _ in withheld] == [WITHHELD_CLIENT] * len(statuses)
    assert CHOSEN_ID not in {correlation_id for _, correlation_id in withheld}
    assert all(response.headers["X-Correlation-ID"] != CHOSEN_ID for response in answers[anonymous["tracking_id"]])
    # A named report's requests keep the address; since session 30 no request naming a report as its reporter's may
    # runs under the client's own id, whatever the report (tests/intake/test_confidential_existence.py).
    assert [client for client, _ in logged_for(named["tracking_id"])] == [ADDRESS] * len(statuses)
    assert CHOSEN_ID not in {correlation_id for _, correlation_id in logged_for(named["tracking_id"])}
    assert logged_for(anonymous["tracking_id"], officials=True) == [(ADDRESS, CHOSEN_ID)] * 2
