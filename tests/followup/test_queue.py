"""An agency's queue: its open reports and its units', overdue first, time left in working days, filters, cursor
pages that stay put while new reports arrive, and scoping (a unit sees its own, another agency nothing)."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import orjson
import pytest

from lapor.clock import JAKARTA
from lapor.principal import NATIONAL_ADMIN_AGENCY, OMBUDSMAN_AGENCY, Role
from lapor.rebuild import rebuild
from lapor.store import ANY
from schemas.events import AgencyKind, AgencyRegistered, ComplaintDisposed
from services.followup.service import SERVICE
from tests.followup.conftest import DINKES, DISDIK, KUPANG, MALANG, Followup, later


def tracking_ids(page: dict) -> list[str]:
    return [item["tracking_id"] for item in page["items"]]


def test_a_new_disposition_shows_its_status_level_and_working_days_left(followup):
    followup.disposed("LAP-Q-1")
    [item] = followup.queue(KUPANG, followup.liaison())["items"]
    assert item["tracking_id"] == "LAP-Q-1"
    assert (item["status"], item["level"], item["agency_id"], item["unit_id"]) == ("disposed", "agency", KUPANG, None)
    assert item["version"] == 2
    assert item["deadline_kind"] == "follow_up"
    assert item["working_days_left"] == 5
    assert (item["overdue"], item["deadline_approaching"]) == (False, False)


def test_time_left_counts_working_days_and_turns_negative_when_overdue(followup):
    followup.disposed("LAP-Q-2")  # Monday 9 June: follow-up due at the end of Monday 16 June
    later(followup, days=4)  # Friday
    [item] = followup.queue(KUPANG, followup.liaison())["items"]
    assert (item["working_days_left"], item["deadline_approaching"]) == (1, True)  # only Monday is left
    later(followup, days=4)  # Tuesday 17 June
    [item] = followup.queue(KUPANG, followup.liaison())["items"]
    assert (item["working_days_left"], item["overdue"]) == (-1, True)


def test_a_deadline_passed_just_before_lebaran_shows_overdue_not_due_today_through_the_cuti_bersama(start):
    """Disposed on Friday 26 February 2027, the follow-up is due at the end of Friday 5 March; 6–15 March are
    weekends, Nyepi, Idul Fitri and its cuti bersama. On those days no working day had passed since the deadline, and
    the queue said 0 working days left ("due today") beside `overdue: true` for ten days (session 29)."""
    with start(at=datetime(2027, 2, 26, 9, tzinfo=JAKARTA)) as app:
        app.register_directory()
        app.disposed("LAP-Q-LEBARAN")
        app.clock.set(datetime(2027, 3, 5, 16, tzinfo=JAKARTA))  # the deadline's day
        [item] = app.queue(KUPANG, app.liaison())["items"]
        assert (item["working_days_left"], item["overdue"]) == (0, False)
        app.clock.set(datetime(2027, 3, 11, 10, tzinfo=JAKARTA))  # Idul Fitri
        [item] = app.queue(KUPANG, app.liaison())["items"]
        assert (item["working_days_left"], item["overdue"]) == (-1, True)
        app.clock.set(datetime(2027, 3, 16, 10, tzinfo=JAKARTA))  # the first working day after
        [item] = app.queue(KUPANG, app.liaison())["items"]
        assert (item["working_days_left"], item["overdue"]) == (-1, True)
        app.clock.set(datetime(2027, 3, 17, 10, tzinfo=JAKARTA))
        [item] = app.queue(KUPANG, app.liaison())["items"]
        assert item["working_days_left"] == -2


def test_overdue_reports_come_first(followup):
    followup.disposed("LAP-Q-OLD")
    later(followup, days=8)  # LAP-Q-OLD is now overdue
    followup.disposed("LAP-Q-NEW")
    resolved = followup.disposed("LAP-Q-DONE")
    followup.act(resolved, "accept", followup.liaison())
    followup.act(resolved, "resolve", followup.liaison(), {"resolution": "Selesai."})
    page = followup.queue(KUPANG, followup.liaison())
    assert tracking_ids(page) == ["LAP-Q-OLD", "LAP-Q-NEW", "LAP-Q-DONE"]  # waiting for the reporter: last
    assert [item["overdue"] for item in page["items"]] == [True, False, False]
    assert tracking_ids(followup.queue(KUPANG, followup.liaison(), overdue=True)) == ["LAP-Q-OLD"]
    assert tracking_ids(followup.queue(KUPANG, followup.liaison(), overdue=False)) == ["LAP-Q-NEW", "LAP-Q-DONE"]


def test_filters_by_status_unit_and_category(followup):
    liaison = followup.liaison()
    followup.disposed("LAP-F-1", category="kesehatan")
    followup.disposed("LAP-F-2", category="pendidikan")
    for tid, unit in [("LAP-F-1", DINKES), ("LAP-F-2", DISDIK)]:
        followup.act(tid, "accept", liaison)
        followup.act(tid, "assign", liaison, {"unit_id": unit})
    followup.disposed("LAP-F-3", category="kesehatan")
    assert tracking_ids(followup.queue(KUPANG, liaison, status="disposed")) == ["LAP-F-3"]
    assert tracking_ids(followup.queue(KUPANG, liaison, status=["in_progress", "disposed"])) == [
        "LAP-F-1", "LAP-F-2", "LAP-F-3"
    ]
    assert tracking_ids(followup.queue(KUPANG, liaison, unit=DISDIK)) == ["LAP-F-2"]
    assert tracking_ids(followup.queue(KUPANG, liaison, category="kesehatan")) == ["LAP-F-1", "LAP-F-3"]
    outside = followup.client.get(f"/api/queues/{KUPANG}", headers=liaison, params={"unit": MALANG + "/dinkes"})
    assert outside.status_code == 422


def test_the_unit_filter_holds_what_is_disposed_to_the_unit_directly_as_its_queue_does(followup):
    """A report routing disposes to a unit directly (its `agency_id` the unit, no `unit_id`) is the unit's: in the
    unit's own queue, and acted on by its officer. The agency's queue filtered by that unit left it out (the filter
    read `unit_id` only), so a liaison officer checking what the Dinas Kesehatan holds missed it (session 32)."""
    liaison = followup.liaison()
    followup.disposed("LAP-UF-1")
    followup.act("LAP-UF-1", "accept", liaison)
    followup.act("LAP-UF-1", "assign", liaison, {"unit_id": DINKES})
    followup.disposed("LAP-UF-2", DINKES)  # disposed to the Dinas directly
    followup.disposed("LAP-UF-3", DISDIK)
    followup.disposed("LAP-UF-4")  # the agency's own, with no unit
    unit_queue = tracking_ids(followup.queue(DINKES, followup.unit_officer()))
    assert sorted(unit_queue) == ["LAP-UF-1", "LAP-UF-2"]
    assert sorted(tracking_ids(followup.queue(KUPANG, liaison, unit=DINKES))) == ["LAP-UF-1", "LAP-UF-2"]
    assert tracking_ids(followup.queue(KUPANG, liaison, unit=DISDIK)) == ["LAP-UF-3"]
    assert sorted(tracking_ids(followup.queue(DINKES, followup.unit_officer(), unit=DINKES))) == [
        "LAP-UF-1", "LAP-UF-2"
    ]


def test_the_category_filter_ignores_case_as_the_routing_rules_do(followup):
    """Routing rules compare categories ignoring case; the queue's filter compared them exactly, so a liaison
    officer filtering "Jalan Rusak" missed the reports verified as "jalan rusak" (session 31). Casefolded in Python
    on both databases ("STRASSE" is "Straße"), where SQLite's lower() folds ASCII letters only."""
    category_filter_ignores_case(followup)


def category_filter_ignores_case(followup: Followup) -> None:
    liaison = followup.liaison()
    followup.disposed("LAP-C-1", category="jalan rusak")
    followup.disposed("LAP-C-2", category="Jalan Rusak")
    followup.disposed("LAP-C-3", category="JALAN RUSAK")
    followup.disposed("LAP-C-4", category="jalan")
    followup.disposed("LAP-C-5", category="Straße")
    assert tracking_ids(followup.queue(KUPANG, liaison, category="Jalan Rusak")) == ["LAP-C-1", "LAP-C-2", "LAP-C-3"]
    assert tracking_ids(followup.queue(KUPANG, liaison, category="jalan RUSAK")) == ["LAP-C-1", "LAP-C-2", "LAP-C-3"]
    assert tracking_ids(followup.queue(KUPANG, liaison, category="STRASSE")) == ["LAP-C-5"]
    [item] = followup.queue(KUPANG, liaison, category="JALAN")["items"]
    assert item["category"] == "jalan"  # shown as verified


def test_pages_follow_each_other_and_stay_put_when_new_reports_arrive(followup):
    liaison = followup.liaison()
    for n in range(5):
        followup.disposed(f"LAP-P-{n}")  # all due the same day: queue order is then by tracking id
    first = followup.queue(KUPANG, liaison, limit=2)
    assert tracking_ids(first) == ["LAP-P-0", "LAP-P-1"]
    followup.disposed("LAP-P-00")  # arrives before the cursor in queue order: it shifts no page
    followup.disposed("LAP-P-5")  # arrives after it: it is on a later page
    second = followup.queue(KUPANG, liaison, limit=2, cursor=first["next_cursor"])
    third = followup.queue(KUPANG, liaison, limit=2, cursor=second["next_cursor"])
    assert tracking_ids(second) == ["LAP-P-2", "LAP-P-3"]
    assert tracking_ids(third) == ["LAP-P-4", "LAP-P-5"]
    assert third["next_cursor"] is None
    assert tracking_ids(followup.queue(KUPANG, liaison, limit=2)) == ["LAP-P-0", "LAP-P-00"]


@pytest.mark.parametrize("written", ["1_0", "+2", "２", "2.0"])
def test_a_page_size_is_written_in_decimal_digits(followup, written):
    response = followup.client.get(f"/api/queues/{KUPANG}", headers=followup.liaison(), params={"limit": written})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["location"] for error in response.json()["errors"]] == [["query", "limit"]]


def test_a_cursor_that_was_not_handed_out_is_400(followup):
    response = followup.client.get(f"/api/queues/{KUPANG}", headers=followup.liaison(), params={"cursor": "bm9wZQ"})
    assert response.status_code == 400


def forged_cursor(*key: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


MOMENT = "2031-06-16T16:59:59.999999+00:00"
FORGED_CURSORS = {
    "urgency 2**63": forged_cursor(2**63, MOMENT, "LAP-Q-1"),  # past what SQLite binds: was a 500
    "urgency 2**64-1": forged_cursor(2**64 - 1, MOMENT, "LAP-Q-1"),
    "urgency -1": forged_cursor(-1, MOMENT, "LAP-Q-1"),
    "urgency true": forged_cursor(True, MOMENT, "LAP-Q-1"),
    "NUL in the moment": forged_cursor(0, "x\u0000", "LAP-Q-1"),  # PostgreSQL's text refuses it: was a 500 there
    "NUL in the tracking id": forged_cursor(0, MOMENT, "LAP-Q-1\u0000"),
    "not a moment": forged_cursor(0, "tomorrow", "LAP-Q-1"),
}


@pytest.mark.parametrize("cursor", FORGED_CURSORS.values(), ids=FORGED_CURSORS.keys())
def test_a_cursor_whose_fields_the_queue_never_hands_out_is_400(followup, cursor):
    followup.disposed("LAP-Q-1")
    assert_refused_cursor(followup, cursor)


def assert_refused_cursor(app, cursor: str) -> None:
    response = app.client.get(f"/api/queues/{KUPANG}", headers=app.liaison(), params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "cursor is not one this queue handed out; start again without it"


def test_a_unit_officer_sees_only_the_units_queue(followup):
    liaison = followup.liaison()
    for tid, unit in [("LAP-U-1", DINKES), ("LAP-U-2", DISDIK)]:
        followup.disposed(tid)
        followup.act(tid, "accept", liaison)
        followup.act(tid, "assign", liaison, {"unit_id": unit})
    followup.disposed("LAP-U-3")  # with the agency, not yet with a unit
    officer = followup.unit_officer(DINKES)
    assert tracking_ids(followup.queue(DINKES, officer)) == ["LAP-U-1"]
    assert followup.client.get(f"/api/queues/{KUPANG}", headers=officer).status_code == 403
    assert followup.client.get(f"/api/queues/{DISDIK}", headers=officer).status_code == 403
    # the agency sees its own and all its units'
    assert tracking_ids(followup.queue(KUPANG, liaison)) == ["LAP-U-1", "LAP-U-2", "LAP-U-3"]
    assert tracking_ids(followup.queue(DINKES, liaison)) == ["LAP-U-1"]


def test_a_unit_officer_sees_and_acts_on_what_a_unit_inside_theirs_holds_and_is_answered_once(followup):
    puskesmas = DINKES + "/pkm-oepoi"  # a puskesmas under the Dinas Kesehatan
    registered = AgencyRegistered(agency_id=puskesmas, name="Puskesmas Oepoi", parent_id=DINKES, kind=AgencyKind.unit)
    followup.ctx.store.append(f"directory-{puskesmas}", [registered.to_new_event()], ANY)
    liaison, officer = followup.liaison(), followup.unit_officer(DINKES)
    followup.disposed("LAP-N-1")
    followup.act("LAP-N-1", "accept", liaison)
    assert followup.act("LAP-N-1", "assign", liaison, {"unit_id": puskesmas}).status_code == 200
    followup.disposed("LAP-N-2", DINKES)  # disposed to the Dinas directly
    followup.act("LAP-N-2", "accept", liaison)
    posted = followup.act("LAP-N-1", "follow-ups", officer, {"text": "Sudah kami tinjau ke lokasi."})
    assert posted.status_code == 201, posted.text  # was 404, with the follow-up appended all the same
    assert posted.json()["complaint"]["follow_up_count"] == 1
    assert followup.types("LAP-N-1").count("FollowUpPosted") == 1
    assert sorted(tracking_ids(followup.queue(DINKES, officer))) == ["LAP-N-1", "LAP-N-2"]
    assert followup.act("LAP-N-2", "follow-ups", officer, {"text": "Sedang ditangani."}).status_code == 201
    # the puskesmas's own officer: its report, not the Dinas's
    pkm_officer = followup.unit_officer(puskesmas, "officer-pkm")
    assert tracking_ids(followup.queue(puskesmas, pkm_officer)) == ["LAP-N-1"]
    assert followup.act("LAP-N-2", "follow-ups", pkm_officer, {"text": "Bukan kami."}).status_code == 403


def test_another_agency_sees_nothing_of_it(followup):
    followup.disposed("LAP-S-1")
    malang = followup.liaison(MALANG, "liaison-malang")
    assert followup.client.get(f"/api/queues/{KUPANG}", headers=malang).status_code == 403
    assert followup.queue(MALANG, malang)["items"] == []
    assert followup.act("LAP-S-1", "accept", malang).status_code == 403


def test_an_agency_refused_a_report_it_returned_is_not_told_who_has_it_now(followup):
    """Returned as bukan wewenang, the confidential report is out of Kupang's sight, but the refusal of its next
    action on it named the holder: 'kemenpanrb is outside the scope ...' while routing had it, then 'pemda-35.73
    ...' once it went to Malang; a sibling unit's officer was told which unit a report was assigned to."""
    liaison = followup.liaison()
    followup.disposed("LAP-W-1", confidential=True)
    followup.act("LAP-W-1", "accept", liaison)
    followup.act("LAP-W-1", "assign", liaison, {"unit_id": DINKES})
    sibling = followup.act("LAP-W-1", "follow-ups", followup.unit_officer(DISDIK, "officer-disdik"), {"text": "Ya."})
    assert followup.act("LAP-W-1", "return", liaison, {"reason": "Bukan wewenang kota."}).status_code == 200
    with_routing = followup.act("LAP-W-1", "accept", liaison)
    now = followup.clock.now()
    followup.decide("LAP-W-1", ComplaintDisposed(agency_id=MALANG, follow_up_due=now + timedelta(days=7),
                                                 ombudsman_offer_due=now + timedelta(days=90)))
    elsewhere = followup.act("LAP-W-1", "accept", liaison)
    # The sibling unit never held it (403); Kupang did, and its view is stale (409 since session 30).
    for refused, holder, status in ((sibling, DINKES, 403), (with_routing, NATIONAL_ADMIN_AGENCY, 409),
                                    (elsewhere, MALANG, 409)):
        assert refused.status_code == status
        assert holder not in refused.json()["detail"], refused.json()["detail"]
        assert "routing" not in refused.json()["detail"]


def test_oversight_reads_any_queue_and_the_national_admin_reads_it_unmasked(followup):
    followup.disposed("LAP-M-1", title="Puskesmas tutup, hubungi saya di 081234567890")
    operator = followup.bearer(Role.operator, "ksp-1", agency_id="ksp")
    [seen_by_operator] = followup.queue(KUPANG, operator)["items"]
    [seen_by_agency] = followup.queue(KUPANG, followup.liaison())["items"]
    [seen_by_admin] = followup.queue(KUPANG, followup.bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY))[
        "items"
    ]
    assert "081234567890" in seen_by_admin["title"]
    assert "081234567890" not in seen_by_agency["title"]
    assert "081234567890" not in seen_by_operator["title"]


def test_the_reporters_name_in_a_title_the_national_admin_corrected_is_scrubbed_from_the_queue(followup):
    """The national admin's corrected title names the reporter ("Oktovianus Ndun", which no detector knows as a
    name): the agency and oversight never see who reported, in the queue as in the complaint view."""
    ref = followup.ctx.store.vault.put({"name": "Oktovianus Ndun", "phone": "081234567890"})
    followup.disposed("LAP-Q-ID", reporter_ref=ref, verified_title="KTP Oktovianus Ndun belum jadi tiga bulan")
    for headers in (followup.liaison(), followup.bearer(Role.auditor)):
        [item] = followup.queue(KUPANG, headers)["items"]
        assert "Oktovianus" not in item["title"]
        assert "Ndun" not in item["title"]
        assert "belum jadi tiga bulan" in item["title"]
    national = followup.bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    [item] = followup.queue(KUPANG, national)["items"]
    assert item["title"] == "KTP Oktovianus Ndun belum jadi tiga bulan"


def test_an_unknown_agency_has_no_queue(followup):
    response = followup.client.get(
        "/api/queues/pemda-99.99", headers=followup.bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    )
    assert response.status_code == 404


def test_the_queue_survives_a_restart_and_keeps_following_the_log(start):
    with start() as app:
        app.register_directory()
        app.disposed("LAP-R-1")
        app.settle()
        at = app.clock.now()
    with start(at=at) as app:
        app.act("LAP-R-1", "accept", app.liaison())
        [item] = app.queue(KUPANG, app.liaison())["items"]
    assert (item["status"], item["version"]) == ("in_progress", 3)


def test_the_queue_rebuilt_from_the_log_equals_the_live_one(followup):
    liaison = followup.liaison()
    for n in range(6):
        followup.disposed(f"LAP-RB-{n}")
    followup.act("LAP-RB-0", "accept", liaison)
    followup.act("LAP-RB-0", "assign", liaison, {"unit_id": DINKES})
    followup.act("LAP-RB-1", "accept", liaison)
    followup.act("LAP-RB-1", "resolve", liaison, {"resolution": "Selesai."})
    followup.feedback("LAP-RB-1", satisfied=False, comment="Belum.")
    followup.act("LAP-RB-2", "return", liaison, {"reason": "Bukan kami."})
    followup.settle()
    report = rebuild(followup.ctx, [SERVICE])
    assert report.skipped == ["followup.reactions"]
    assert set(report.tables) >= {"followup_queue", "followup_queue_arrivals"}
    assert report.identical, report.differences


# -- the "resolution" deadline runs only until the Ombudsman offer is made (session 30) -----------------------------


def disposed_again(app, tracking_id: str, agency_id: str) -> None:
    """Returned by Kupang, then disposed to `agency_id` as routing does (a new `ombudsman_offer_due` with it)."""
    assert app.act(tracking_id, "return", app.liaison(), {"reason": "Bukan wewenang kota."}).status_code == 200
    now, policy = app.clock.now(), app.ctx.policy
    app.decide(tracking_id, ComplaintDisposed(agency_id=agency_id, follow_up_due=policy.follow_up_due(now),
                                              ombudsman_offer_due=policy.ombudsman_offer_due(now)))


def answered(app, tracking_id: str, headers: dict[str, str]) -> None:
    assert app.act(tracking_id, "accept", headers).status_code == 200
    assert app.act(tracking_id, "follow-ups", headers, {"text": "Sedang kami periksa."}).status_code == 201


def deadlines(app, agency_id: str, headers: dict[str, str]) -> dict[str, tuple]:
    return {item["tracking_id"]: (item["deadline_kind"], item["deadline"], item["working_days_left"])
            for item in app.queue(agency_id, headers)["items"]}


def test_after_the_ombudsman_offer_the_queue_shows_no_resolution_deadline_that_never_runs(followup):
    """The offer is made once (routing's `ombudsman_offered`); a disposition after it set `ombudsman_offer_due`
    again, and the queue showed it as the agency's "resolution" deadline ("unresolved by then, the reporter is
    offered the Ombudsman") though nothing runs then; nor is a report the Ombudsman holds ever offered to it."""
    malang = followup.liaison(MALANG, "liaison-malang")
    ombudsman = followup.bearer(Role.ombudsman, "ombudsman-1")
    followup.disposed("LAP-OF-1")  # offered, consented; the hand-over waits (no active Ombudsman office)
    followup.offered_with_consent("LAP-OF-1")
    disposed_again(followup, "LAP-OF-1", MALANG)
    answered(followup, "LAP-OF-1", malang)
    followup.disposed("LAP-OF-2")  # offered and consented while back with routing: disposed to the Ombudsman
    followup.offered_with_consent("LAP-OF-2")
    disposed_again(followup, "LAP-OF-2", OMBUDSMAN_AGENCY)
    answered(followup, "LAP-OF-2", ombudsman)
    followup.disposed("LAP-OF-3", MALANG)  # never offered: its resolution deadline runs
    answered(followup, "LAP-OF-3", malang)
    offer_due = followup.events("LAP-OF-3")[-3].data["ombudsman_offer_due"]
    assert deadlines(followup, MALANG, malang) == {
        "LAP-OF-3": ("resolution", offer_due.replace("+00:00", "Z"), 60),
        "LAP-OF-1": (None, None, None),  # after the agency deadlines: no deadline
    }
    assert deadlines(followup, OMBUDSMAN_AGENCY, ombudsman) == {"LAP-OF-2": (None, None, None)}


def test_a_queue_built_before_session_30_drops_the_resolution_deadline_that_never_runs_at_start(start):
    with start() as app:
        app.register_directory()
        malang = app.liaison(MALANG, "liaison-malang")
        app.disposed("LAP-OF-4")
        app.offered_with_consent("LAP-OF-4")
        disposed_again(app, "LAP-OF-4", MALANG)
        answered(app, "LAP-OF-4", malang)
        app.settle()
        at = app.clock.now()
        with app.ctx.db.transaction() as tx:  # as version 4 left it: the deadline that never runs
            tx.execute("UPDATE followup_queue SET deadline_kind = 'resolution' WHERE tracking_id = 'LAP-OF-4'")
            tx.execute("UPDATE subscription_checkpoints SET projection_version = 4 WHERE name = 'followup.queue'")
    with start(at=at) as app:
        assert deadlines(app, MALANG, app.liaison(MALANG, "liaison-malang")) == {"LAP-OF-4": (None, None, None)}
        report = rebuild(app.ctx, [SERVICE])
        assert report.identical, report.differences


@pytest.mark.parametrize("malformed", [f"{KUPANG}/a b", f"{KUPANG}/dinas-é", f"{KUPANG}/-x", f"{KUPANG}/{'a' * 130}"])
def test_a_malformed_agency_id_in_any_followup_url_is_a_422_saying_why(followup, malformed):
    """Followup's routes took the agency id as any text: `GET /api/queues/pemda-53.71/a b` was a 404 "agency
    pemda-53.71/a b not found", quoting an id of any length whole, where routing's and reporting's say what an agency
    id looks like (the URL convertor takes any segments, leaving the pattern to the route's parameter). Nothing is
    written for such a request."""
    admin, national = followup.admin(), followup.bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    for method, path, headers, body in [
        ("GET", f"/api/queues/{malformed}", national, None),
        ("GET", f"/api/queues/{malformed}/escalated", national, None),
        ("GET", f"/api/agencies/{malformed}/follow-up-approval", admin, None),
        ("PUT", f"/api/agencies/{malformed}/follow-up-approval", admin, {"required": True}),
        ("POST", f"/api/agencies/{malformed}/webhooks", admin, {"url": "https://1.1.1.1/hook"}),
        ("GET", f"/api/agencies/{malformed}/webhooks", admin, None),
        ("DELETE", f"/api/agencies/{malformed}/webhooks/wh_0123456789abcdef", admin, None),
    ]:
        response = followup.client.request(method, path, headers=headers, json=body)
        assert response.status_code == 422, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["location"] == ["path", "agency_id"], (method, path)
    with followup.ctx.db.read() as tx:
        assert tx.scalar("SELECT count(*) FROM followup_targets") == 0
        assert tx.scalar("SELECT count(*) FROM followup_approval_settings") == 0
