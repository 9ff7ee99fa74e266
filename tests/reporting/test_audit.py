"""Audit replay over HTTP: a report's history with actors, times and hash links; its state at a past moment;
the integrity check of the whole log, and what it says when a stored event was altered."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from lapor.clock import ManualClock
from lapor.principal import Role
from lapor.privacy import MASKED_BY, MASKING
from lapor.store import open_store
from lapor.tracking import format_tracking_id
from schemas import events as ev
from services.reporting.audit import integrity_lines
from tests.reporting import scenario
from tests.reporting.conftest import Reporting, reporting_app


@pytest.fixture
def month(tmp_path: Path) -> Iterator[Reporting]:
    with reporting_app(tmp_path / "var") as service:
        scenario.play(service.ctx.store, service.clock)
        yield service


def test_the_history_lists_every_event_with_actor_time_and_hash_link(month: Reporting):
    history = month.get("/api/audit/complaints/LAP-G3-01/events", Role.auditor)
    assert history["chain_ok"] is True
    assert [e["type"] for e in history["events"]] == [
        "ComplaintSubmitted", "ComplaintVerified", "ComplaintDisposed", "DispositionReturned", "ComplaintDisposed",
        "DispositionAccepted", "ComplaintAssigned", "FollowUpPosted",
    ]
    returned = history["events"][3]
    assert (returned["actor"], returned["role"]) == ("liaison-pemda-35.73", "liaison")
    assert returned["recorded_at"].startswith(scenario.day(4).isoformat()[:16])
    events = history["events"]
    assert all(later["prev_hash"] == earlier["hash"] for earlier, later in itertools.pairwise(events))
    # An auditor sees who decided, never who reported.
    assert events[0]["actor"] == "pelapor"
    assert "reporter_ref" not in events[0]["data"]


def test_the_national_admin_sees_the_reporter_in_the_history(month: Reporting):
    first = month.get("/api/audit/complaints/LAP-G3-01/events")["events"][0]
    assert first["actor"] == "reporter:LAP-G3-01"
    assert first["data"]["reporter_ref"].startswith("pii_")


def test_the_state_at_a_past_moment_is_the_fold_of_the_events_until_then(month: Reporting):
    path = "/api/audit/complaints/LAP-G3-01/state"
    bounced = month.client.get(path, params={"at": scenario.day(4.01).isoformat()},
                               headers=month.bearer(Role.ombudsman)).json()
    # At 4.01 days the report had been returned by Malang and disposed again, to Jawa Timur.
    assert bounced["existed"] is True
    assert bounced["version"] == 4
    assert bounced["state"]["status"] == "disposed"
    assert bounced["state"]["agency_id"] == "pemda-35"
    assert bounced["state"]["returned_from"] == "pemda-35.73"
    assert bounced["state"]["bounce_count"] == 1
    before = month.client.get(path, params={"at": scenario.day(3.5).isoformat()}, headers=month.bearer(Role.auditor))
    assert before.json()["state"]["agency_id"] == "pemda-35.73"
    now = month.get(path, Role.auditor)
    assert (now["state"]["status"], now["version"]) == ("in_progress", 7)


def test_the_state_before_submission_says_the_report_did_not_exist_yet(month: Reporting):
    state = month.client.get("/api/audit/complaints/LAP-G4-01/state", params={"at": scenario.day(9).isoformat()},
                             headers=month.bearer(Role.auditor)).json()
    assert state == {"tracking_id": "LAP-G4-01", "at": scenario.day(9).isoformat().replace("+00:00", "Z"),
                     "existed": False, "version": -1, "position": None, "state": None, "refused": None}


def test_an_event_the_lifecycle_refuses_is_listed_and_marked_and_the_state_stops_before_it(reporting: Reporting):
    """Such an event is in a log only by a bug or by hand, and that is exactly when an auditor must read the
    history: it answered 409 (found in a bug hunt). The events are all listed, the refused one says why, and the
    state at a moment after it is the state before it, saying which event was refused."""
    scenario.play(reporting.ctx.store, reporting.clock, [scenario.submitted("LAP-BAD-1", 1, "53.71")])
    reporting.append("LAP-BAD-1", ev.DispositionAccepted(agency_id="pemda-53.71"),
                     scenario.staff("pemda-53.71"))
    auditor = reporting.bearer(Role.auditor)
    history = reporting.client.get("/api/audit/complaints/LAP-BAD-1/events", headers=auditor)
    assert history.status_code == 200, history.text
    [submitted, accepted] = history.json()["events"]
    assert submitted["refused"] is None
    assert "DispositionAccepted is not allowed while the report is submitted" in accepted["refused"]
    state = reporting.client.get("/api/audit/complaints/LAP-BAD-1/state", headers=auditor)
    assert state.status_code == 200, state.text
    body = state.json()
    assert (body["version"], body["state"]["status"]) == (0, "submitted")
    assert body["refused"].startswith("version 1: DispositionAccepted is not allowed")


def test_a_history_whose_first_event_does_not_fold_is_listed_for_those_who_see_every_report(reporting: Reporting):
    """No state to judge who may see it: it was a 500. Every role that reads the audit sees every report, so it gets
    the listing, the refused event marked."""
    reporting.append("LAP-BAD-2", ev.DispositionAccepted(agency_id="pemda-53.71"), scenario.staff("pemda-53.71"))
    listed = reporting.client.get("/api/audit/complaints/LAP-BAD-2/events", headers=reporting.bearer(Role.auditor))
    assert listed.status_code == 200, listed.text
    [refused] = listed.json()["events"]
    assert refused["refused"] is not None
    state = reporting.client.get("/api/audit/complaints/LAP-BAD-2/state", headers=reporting.bearer(Role.auditor))
    assert (state.status_code, state.json()["existed"], state.json()["version"]) == (200, False, -1)
    national = reporting.client.get("/api/audit/complaints/LAP-BAD-2/events",
                                    headers=reporting.bearer(Role.admin_national, agency_id="kemenpanrb"))
    assert national.status_code == 200


def test_the_reporters_name_written_bare_by_an_official_is_scrubbed_from_the_history(reporting: Reporting):
    """Events never carry the identity, so the history left what officials wrote to the detector, which does not
    know every name: the national admin's question, addressed to the reporter by name, named them to every auditor
    and to the Ombudsman."""
    report = scenario.submitted("LAP-NAME-1", 1, "53.71")
    reporting.ctx.vault.put({"name": "Oktovianus Ndun", "phone": "0813-3900-1122"}, ref="pii_LAP_NAME_1x")
    question = "Oktovianus Ndun, mohon kirim foto lokasinya ke 0813-3900-1122."
    report.at(2, ev.ComplaintPended(information_requested=question, archive_due=scenario.day(30)), scenario.OFFICER)
    scenario.play(reporting.ctx.store, reporting.clock, [report])
    path = "/api/audit/complaints/LAP-NAME-1/events"
    for role in (Role.auditor, Role.ombudsman):
        pended = reporting.get(path, role)["events"][1]["data"]
        assert pended["information_requested"] == "***, mohon kirim foto lokasinya ke ***.", role
    assert reporting.get(path)["events"][1]["data"]["information_requested"] == question  # the national admin
    state = reporting.get("/api/audit/complaints/LAP-NAME-1/state", Role.auditor)["state"]
    assert state["information_requested"] == "***, mohon kirim foto lokasinya ke ***."


def test_text_intake_masked_is_listed_as_logged_and_text_logged_without_the_mark_is_masked_again(
    reporting: Reporting,
):
    """Session 29: the history ran the detector again on the texts intake had masked before logging them (on
    `"Bu " * 3333` it takes seconds, on every read of the history), as the tracking view no longer does since session
    24. Text without the mark, or under another detector, is masked as it always was."""
    body = "Pak Budi Santoso, HP 0812-3456-7890"
    for tracking_id, mark in (("LAP-MASK-1", {MASKED_BY: MASKING}), ("LAP-MASK-2", {})):
        report = scenario.submitted(tracking_id, 1, "53.71")
        reporting.append(tracking_id, report.steps[0][1].model_copy(update={"body": body}),
                         {**scenario.reporter(tracking_id), **mark})
    shown = [reporting.get(f"/api/audit/complaints/{tracking_id}/events", Role.auditor)["events"][0]["data"]["body"]
             for tracking_id in ("LAP-MASK-1", "LAP-MASK-2")]
    assert shown == [body, "Pak B*** S***, HP 0812****7890"]


@pytest.mark.parametrize("offset", ["+07:00", "+0700"])
def test_a_moment_whose_plus_was_left_unencoded_in_the_url_is_the_moment_meant(month: Reporting, offset: str):
    """Session 29: `?at=2090-03-10T09:00:00+07:00` typed as the API's examples write it reaches the server as
    `2090-03-10T09:00:00 07:00` (a query reads `+` as a space), which was a 422 saying "unexpected extra characters at
    the end of the input". A space where the offset's sign belongs is no ISO-8601 of any other meaning."""
    path = "/api/audit/complaints/LAP-G1-01/state"
    auditor = month.bearer(Role.auditor)
    typed = month.client.get(f"{path}?at=2090-03-06T10:00:00{offset}", headers=auditor)
    assert typed.status_code == 200, typed.text
    encoded = month.client.get(path, params={"at": "2090-03-06T10:00:00+07:00"}, headers=auditor).json()
    assert typed.json() == encoded
    assert (encoded["existed"], encoded["version"], encoded["at"]) == (True, 0, "2090-03-06T10:00:00+07:00")


def test_a_moment_without_a_time_zone_is_refused(month: Reporting):
    response = month.client.get("/api/audit/complaints/LAP-G4-01/state", params={"at": "2090-03-10T09:00:00"},
                                headers=month.bearer(Role.auditor))
    assert response.status_code == 422


@pytest.mark.parametrize("at", ["0", "1733356800", "2090-03-10"])
def test_a_moment_that_is_not_an_iso_date_and_time_is_refused(month: Reporting, at: str):
    """A number used to pass as Unix time (`at=0` gave the state at 1970-01-01T00:00:00Z)."""
    response = month.client.get("/api/audit/complaints/LAP-G4-01/state", params={"at": at},
                                headers=month.bearer(Role.auditor))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "ISO-8601 date and time" in response.json()["errors"][0]["message"]


def test_a_moment_still_to_come_is_refused(month: Reporting):
    """Before, the state of every event so far came back labelled with that future moment."""
    later = month.clock.now() + timedelta(days=1)
    response = month.client.get("/api/audit/complaints/LAP-G4-01/state", params={"at": later.isoformat()},
                                headers=month.bearer(Role.auditor))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["location"][:2] == ["query", "at"]
    now = month.client.get("/api/audit/complaints/LAP-G4-01/state", params={"at": month.clock.now().isoformat()},
                           headers=month.bearer(Role.auditor))
    assert now.status_code == 200, now.text
    assert now.json()["existed"] is True


def test_a_tracking_id_typed_loosely_finds_its_report(tmp_path: Path):
    """Lower case, no dashes, O for 0: read as intake reads it (until session 21 the audit answered 404)."""
    tracking_id = format_tracking_id(0o1234567012)
    loose = tracking_id.lower().replace("-", "").replace("0", "o")
    with reporting_app(tmp_path / "var") as service:
        scenario.play(service.ctx.store, service.clock, [scenario.submitted(tracking_id, 0, "53.71")])
        history = service.get(f"/api/audit/complaints/{loose}/events", Role.auditor)
        state = service.get(f"/api/audit/complaints/{loose}/state", Role.auditor)
    assert [event["type"] for event in history["events"]] == ["ComplaintSubmitted"]
    assert (state["tracking_id"], state["existed"]) == (tracking_id, True)


def test_an_unknown_report_is_not_found(month: Reporting):
    response = month.client.get("/api/audit/complaints/LAP-NOPE-1/events", headers=month.bearer(Role.auditor))
    assert response.status_code == 404


def ndjson(month: Reporting) -> list[dict]:
    response = month.client.get("/api/audit/integrity", headers=month.bearer(Role.auditor))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [orjson.loads(line) for line in response.text.splitlines()]


def test_the_integrity_check_streams_progress_then_an_intact_result(month: Reporting):
    lines = ndjson(month)
    head = month.ctx.store.head_position()
    assert lines[0]["type"] == "progress"
    assert lines[-2] == {"type": "progress", "checked": head, "position": head, "head_position": head}
    assert lines[-1] == {"type": "result", "ok": True, "events_found": head, "events_checked": head,
                         "events_unreadable": 0, "streams_checked": 36, "head_position": head, "broken": []}


def test_the_integrity_check_names_an_event_altered_in_the_database(month: Reporting):
    [target] = month.ctx.store.read_stream("complaint-LAP-G7-01", 4, limit=1)
    with sqlite3.connect(month.ctx.settings.data / "events.db") as db:
        data = orjson.loads(db.execute("SELECT data FROM events WHERE position = ?", (target.position,)).fetchone()[0])
        data["text"] = "Tidak ada masalah."  # someone rewrites an officer's note after the fact
        db.execute("UPDATE events SET data = ? WHERE position = ?", (orjson.dumps(data), target.position))
    result = ndjson(month)[-1]
    assert result["ok"] is False
    assert result["broken"] == [{"stream": "complaint-LAP-G7-01", "version": 4, "position": target.position,
                                 "problem": "content does not match its hash: the event was altered"}]
    history = month.get("/api/audit/complaints/LAP-G7-01/events")
    assert history["chain_ok"] is False
    assert [e["chain_ok"] for e in history["events"]][3:6] == [True, False, True]


def test_the_integrity_result_counts_an_event_it_could_not_read_apart_from_those_it_checked(month: Reporting):
    """`events_checked` leaves out an event the walk found and could not read (it is a broken link of its own): until
    session 30 nothing in the result said so, and it counted one event fewer than the log holds."""
    [target] = month.ctx.store.read_stream("complaint-LAP-G7-01", 4, limit=1)
    with sqlite3.connect(month.ctx.settings.data / "events.db") as db:
        db.execute("UPDATE events SET data = x'7b' WHERE position = ?", (target.position,))
    head = month.ctx.store.head_position()
    result = ndjson(month)[-1]
    assert [link["position"] for link in result["broken"]] == [target.position]
    assert (result["events_found"], result["events_checked"], result["events_unreadable"]) == (head, head - 1, 1)


def test_a_store_that_fails_under_the_walk_ends_the_stream_with_an_error_line(damaged_sqlite_store):
    """The answer's 200 goes out with the first line, so a store failing under the walk (a damaged file) cut the
    NDJSON off with no result, as if the walk had ended: now its last line says it failed, and after which position."""

    async def walked() -> list[dict]:
        with open_store(f"sqlite:///{damaged_sqlite_store}") as store:
            return [orjson.loads(line) async for line in integrity_lines(store, batch_size=10)]

    lines = asyncio.run(walked())
    *progress, last = lines
    assert all(line["type"] == "progress" for line in progress)
    assert (last["type"], last["ok"]) == ("error", False)
    assert last["position"] == (progress[-1]["position"] if progress else 0)
    assert "malformed" in last["problem"]


def test_the_state_at_a_moment_is_a_prefix_of_the_history_when_two_writers_clocks_disagree(reporting: Reporting):
    """Two hosts writing one store stamp events with their own clocks, so a later version may carry an earlier time
    than the one before it. The events recorded at or before a moment between the two were then not a prefix of the
    history: the fold met a gap and the answer said the lifecycle refused the later version, about a history that
    verifies. The state at a moment is the history up to the first event recorded after it."""
    report = scenario.verified(scenario.submitted("LAP-SKEW-1", 1, "53.71"), 1.2, "pengaduan", "kesehatan")
    scenario.play(reporting.ctx.store, reporting.clock, [report], now=scenario.day(1.3))
    slow = ManualClock(scenario.day(1.1))  # another host, its clock two hours and more behind
    with open_store(f"sqlite:///{reporting.ctx.settings.data / 'events.db'}", clock=slow) as other_host:
        disposed = ev.ComplaintDisposed(agency_id=scenario.KUPANG, follow_up_due=scenario.day(6),
                                        ombudsman_offer_due=scenario.day(80))
        other_host.append("complaint-LAP-SKEW-1", [disposed.to_new_event(metadata=scenario.OFFICER)], 1)
    path = "/api/audit/complaints/LAP-SKEW-1/state"
    auditor = reporting.bearer(Role.auditor)
    between = reporting.client.get(path, params={"at": scenario.day(1.15).isoformat()}, headers=auditor).json()
    assert (between["version"], between["state"]["status"], between["refused"]) == (0, "submitted", None)
    after = reporting.client.get(path, params={"at": scenario.day(1.25).isoformat()}, headers=auditor).json()
    assert (after["version"], after["state"]["status"], after["refused"]) == (2, "disposed", None)


def test_the_state_now_holds_an_event_a_host_whose_clock_runs_ahead_recorded(reporting: Reporting):
    """Session 29: without `at` the state is the report's now, but it was folded up to this host's `now`, so an event
    another host had stamped a moment ahead of this one's clock was left out: the state a version behind the history
    beside it, the disposition just made nowhere."""
    report = scenario.verified(scenario.submitted("LAP-SKEW-2", 1, "53.71"), 1.2, "pengaduan", "kesehatan")
    scenario.play(reporting.ctx.store, reporting.clock, [report], now=scenario.day(1.3))
    fast = ManualClock(scenario.day(1.3) + timedelta(seconds=2))  # another host, its clock two seconds ahead
    with open_store(f"sqlite:///{reporting.ctx.settings.data / 'events.db'}", clock=fast) as other_host:
        disposed = ev.ComplaintDisposed(agency_id=scenario.KUPANG, follow_up_due=scenario.day(6),
                                        ombudsman_offer_due=scenario.day(80))
        other_host.append("complaint-LAP-SKEW-2", [disposed.to_new_event(metadata=scenario.OFFICER)], 1)
    now = reporting.get("/api/audit/complaints/LAP-SKEW-2/state", Role.auditor)
    assert (now["version"], now["state"]["status"], now["refused"]) == (2, "disposed", None)
    assert now["at"] == scenario.day(1.3).isoformat().replace("+00:00", "Z")
    history = reporting.get("/api/audit/complaints/LAP-SKEW-2/events", Role.auditor)
    assert now["version"] == history["events"][-1]["version"]


def altered(reporting: Reporting, tracking_id: str, column: str, value: object) -> None:
    """Version 1 of the report (of three) changed by SQL on the store's file, as an insider would."""
    report = scenario.verified(scenario.submitted(tracking_id, 1, "53.71"), 1.2, "pengaduan", "kesehatan")
    scenario.play(reporting.ctx.store, reporting.clock, [scenario.disposed(report, 1.3, scenario.KUPANG, 6)])
    with sqlite3.connect(reporting.ctx.settings.data / "events.db") as db:
        db.execute(f"UPDATE events SET {column} = ? WHERE stream = ? AND version = 1",
                   (value, f"complaint-{tracking_id}"))


@pytest.mark.parametrize(("column", "value"), [("data", b"{bukan json"), ("recorded_at", "kemarin sore")])
def test_a_history_holding_an_event_that_cannot_be_read_lists_the_others_and_names_it(
    reporting: Reporting, column: str, value: bytes | str
):
    """The integrity check names such an event and goes on; the report's own history and state, where the auditor
    looks next, were a 500."""
    altered(reporting, "LAP-ALT-1", column, value)
    auditor = reporting.bearer(Role.auditor)
    response = reporting.client.get("/api/audit/complaints/LAP-ALT-1/events", headers=auditor)
    assert response.status_code == 200, response.text
    history = response.json()
    assert history["chain_ok"] is False
    assert [event["version"] for event in history["events"]] == [0, 2]
    assert history["events"][1]["chain_ok"] is False  # the gap it leaves
    [unreadable] = history["unreadable"]
    assert unreadable["version"] == 1
    assert "cannot be read" in unreadable["problem"]
    state = reporting.client.get("/api/audit/complaints/LAP-ALT-1/state", headers=auditor)
    assert state.status_code == 200, state.text
    assert (state.json()["version"], state.json()["state"]["status"]) == (0, "submitted")
    assert state.json()["refused"].startswith("version 1: ")


@pytest.mark.parametrize(("column", "value", "kind"), [
    ("data", b'{"text": "Pak Budi Santoso 0812', "JSONDecodeError"),
    ("recorded_at", "kemarin sore, Budi Santoso", "ValueError"),
])
def test_an_event_that_cannot_be_read_is_described_to_the_auditor_without_quoting_what_is_stored(
    reporting: Reporting, column: str, value: bytes | str, kind: str
):
    """The decode's own words quote the stored bytes ("Invalid isoformat string: 'kemarin sore'"), which may hold a
    reporter's personal data: the history, the state and the integrity check showed them (session 31). They say the
    kind of error and which field did not decode."""
    altered(reporting, "LAP-ALT-3", column, value)
    auditor = reporting.bearer(Role.auditor)
    history = reporting.client.get("/api/audit/complaints/LAP-ALT-3/events", headers=auditor)
    state = reporting.client.get("/api/audit/complaints/LAP-ALT-3/state", headers=auditor)
    integrity = reporting.client.get("/api/audit/integrity", headers=auditor)
    [unreadable] = history.json()["unreadable"]
    expected = f"this event cannot be read (its {column} does not decode ({kind})): the log was altered"
    assert unreadable == {"version": 1, "problem": expected}
    assert state.json()["refused"] == f"version 1: {expected}"
    [broken] = orjson.loads(integrity.text.splitlines()[-1])["broken"]
    assert (broken["stream"], broken["version"], broken["problem"]) == ("complaint-LAP-ALT-3", 1, expected)
    for response in (history, state, integrity):
        for stored in ("Budi", "0812", "kemarin"):
            assert stored not in response.text, (response.url, stored)


@pytest.mark.parametrize(("column", "value"), [
    ("metadata", b"\xff"), ("metadata", b"[1]"), ("data", b"null"), ("event_id", "bukan-uuid"),
    ("recorded_at", "2026-12-01T10:00:00"),  # no offset: every time the store writes has one
])
def test_a_history_holding_an_event_altered_past_its_shape_marks_it_instead_of_failing(
    reporting: Reporting, column: str, value: bytes | str
):
    """Metadata or data that is not a JSON object, an event id that is not one, a time without an offset: the
    history was a 500 (and the state, for the time), where the integrity check names the event."""
    altered(reporting, "LAP-ALT-2", column, value)
    auditor = reporting.bearer(Role.auditor)
    response = reporting.client.get("/api/audit/complaints/LAP-ALT-2/events", headers=auditor)
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    assert [(event["version"], event["chain_ok"]) for event in events] == [(0, True), (1, False), (2, True)]
    assert events[1]["problem"]
    state = reporting.client.get("/api/audit/complaints/LAP-ALT-2/state", headers=auditor)
    assert state.status_code == 200, state.text
    body = state.json()
    # Through the altered event when the fold takes it (it reads neither metadata nor id), else before it, saying so.
    assert body["version"] == 2 or (body["version"], body["refused"][:10]) == (0, "version 1:")
