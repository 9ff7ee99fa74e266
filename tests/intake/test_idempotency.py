"""Retries are safe: the same Idempotency-Key and body give the same answer and one report, even when twenty
copies arrive at once; the same key with another body is refused."""

from __future__ import annotations

import json
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

from lapor.store import NO_STREAM, NewEvent
from services.intake.idempotency import IdDerivation
from tests.intake.conftest import REPORT


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def complaint_events(intake):
    return [e for e in intake.ctx.store.read_all(0, "complaint", 10_000) if e.type == "ComplaintSubmitted"]


def test_a_retry_with_the_same_key_and_body_gets_the_same_status_and_body(intake):
    headers = key()
    first = intake.client.post("/api/complaints", json=REPORT, headers=headers)
    again = intake.client.post("/api/complaints", json=REPORT, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(complaint_events(intake)) == 1


def test_key_order_and_spacing_of_the_json_do_not_make_it_another_body(intake):
    headers = {**key(), "Content-Type": "application/json"}
    first = intake.client.post("/api/complaints", json=REPORT, headers=headers)
    reordered = json.dumps({"region_code": "53.71", "body": REPORT["body"], "title": REPORT["title"]}, indent=3)
    again = intake.client.post("/api/complaints", content=reordered, headers=headers)
    assert again.json() == first.json()


def test_the_same_key_with_another_body_is_a_conflict_and_records_nothing(intake):
    headers = key()
    first = intake.client.post("/api/complaints", json=REPORT, headers=headers).json()
    head = intake.head()
    other = intake.client.post("/api/complaints", json={**REPORT, "title": "Lampu jalan mati"}, headers=headers)
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert "Idempotency-Key" in other.json()["detail"]
    assert intake.head() == head
    # A stranger who reuses the key learns nothing of the report it filed.
    assert first["tracking_id"] not in other.text
    assert first["reporter_token"] not in other.text
    assert "Location" not in other.headers


def test_a_refused_retry_leaves_no_identity_behind_in_the_vault(intake):
    headers = key()
    first = intake.client.post("/api/complaints", json={**REPORT, "reporter": {"name": "Dewi Rahayu"}}, headers=headers)
    other = intake.client.post(
        "/api/complaints", json={**REPORT, "reporter": {"name": "Ahmad Hidayat"}}, headers=headers
    )
    assert other.status_code == 409
    [event] = intake.events(first.json()["tracking_id"])
    assert intake.ctx.vault.get(event.data["reporter_ref"]) == {"name": "Dewi Rahayu"}
    # Look at the vault file itself for a leftover of the refused request.
    with sqlite3.connect(intake.ctx.settings.data / "events-vault.db") as vault_file:
        rows = vault_file.execute("SELECT value FROM pii_vault WHERE value IS NOT NULL").fetchall()
    assert rows
    assert all(b"Ahmad" not in row[0] for row in rows)


def test_twenty_parallel_identical_requests_make_one_report_and_twenty_identical_answers(intake):
    headers = key()
    body = {**REPORT, "reporter": {"name": "Marthen Ndun", "phone": "081311112222"}}

    def post(_: int):
        return intake.client.post("/api/complaints", json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(post, range(20)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.text for r in responses}) == 1
    assert len(complaint_events(intake)) == 1
    tracking_id = responses[0].json()["tracking_id"]
    assert len(intake.events(tracking_id)) == 1


def test_parallel_requests_under_one_key_with_different_bodies_record_exactly_one_of_them(intake):
    headers = key()

    def post(n: int):
        return intake.client.post("/api/complaints", json={**REPORT, "title": f"Laporan {n % 2}"}, headers=headers)

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(post, range(10)))
    [event] = complaint_events(intake)
    winner = event.data["title"]
    for n, response in enumerate(responses):
        assert response.status_code == (201 if f"Laporan {n % 2}" == winner else 409)


def test_without_a_key_every_request_is_a_new_report(intake):
    intake.client.post("/api/complaints", json=REPORT)
    intake.client.post("/api/complaints", json=REPORT)
    assert len(complaint_events(intake)) == 2


def test_a_malformed_key_is_a_bad_request(intake):
    document = intake.client.get("/openapi.json").json()
    parameters = document["paths"]["/api/complaints"]["post"]["parameters"]
    (header,) = [parameter for parameter in parameters if parameter["name"] == "Idempotency-Key"]
    documented = jsonschema.Draft202012Validator(header["schema"])
    assert documented.is_valid(key()["Idempotency-Key"])
    for bad in ("short", "x" * 129, "kunci dengan spasi 123", "'; DROP TABLE events; --"):
        assert not documented.is_valid(bad), bad  # the API document says so too
        response = intake.client.post("/api/complaints", json=REPORT, headers={"Idempotency-Key": bad})
        assert response.status_code == 400, bad
    assert complaint_events(intake) == []


@pytest.mark.parametrize("guessable", ["0000000000000001", "a" * 21, "laporan-warga-kupang-1"[:21]])
def test_a_key_too_short_to_be_a_secret_is_refused(intake, guessable):
    """Session 24: a retry with the key returns the reporter token, and the public view shows enough to rebuild a
    report's request, so a key is a credential: at least 22 symbols (128 bits at random; a UUID has 36)."""
    response = intake.client.post("/api/complaints", json=REPORT, headers={"Idempotency-Key": guessable})
    assert response.status_code == 400
    assert "secret" in response.json()["detail"]
    assert complaint_events(intake) == []
    accepted = intake.client.post("/api/complaints", json=REPORT, headers={"Idempotency-Key": "k" * 22})
    assert accepted.status_code == 201


def test_the_answer_survives_a_restart(serve_intake):
    headers = key()
    with serve_intake() as intake:
        first = intake.client.post("/api/complaints", json=REPORT, headers=headers).json()
    with serve_intake() as intake:
        again = intake.client.post("/api/complaints", json=REPORT, headers=headers)
        assert again.json() == first
        assert len(complaint_events(intake)) == 1


def test_a_keyed_submission_whose_tracking_id_is_taken_gets_another_and_keeps_it_on_retry(intake):
    headers = key()
    taken = IdDerivation(intake.ctx.settings.signing_secret()).keyed(f"web:{headers['Idempotency-Key']}", 0)
    other = intake.submit()  # a different report, moved onto the ID this key would have had first
    [event] = intake.events(other["tracking_id"])
    intake.ctx.store.append(
        f"complaint-{taken.tracking_id}",
        [NewEvent(event.type, {**event.data, "tracking_id": taken.tracking_id}, event.metadata)],
        NO_STREAM,
    )
    first = intake.client.post("/api/complaints", json=REPORT, headers=headers)
    again = intake.client.post("/api/complaints", json=REPORT, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["tracking_id"] != taken.tracking_id
    assert again.json() == first.json()
    assert len(intake.events(taken.tracking_id)) == 1
