"""The worklist of reports escalated to an agency (`GET /api/queues/{agency_id}/escalated`, session 29): a regency's
missed follow-up deadline escalated to its province, the province's to the national admin. The watcher finds the
report while the holder's escalated deadline runs unanswered in the holding the escalation was made in; only the
watching agency's admin and liaison officer and oversight read it; items pass the privacy filter as queue items do.
The escalations are written as routing decides them."""

from __future__ import annotations

from typing import Any

import pytest

from lapor.principal import NATIONAL_ADMIN_AGENCY, Role
from lapor.rebuild import rebuild
from lapor.store import ANY
from schemas.events import (
    AgencyKind,
    AgencyRegistered,
    ComplaintDisposed,
    ComplaintEscalated,
    EscalationKind,
    Level,
)
from services.followup.service import SERVICE
from tests.followup.conftest import DINKES, KUPANG, MALANG, Followup, later

NTT = "pemda-53"  # Pemerintah Provinsi Nusa Tenggara Timur, the regional coordinator above Kota Kupang
JATIM = "pemda-35"  # Pemerintah Provinsi Jawa Timur, above Kota Malang
# as routing words it (`services.routing.decide.decide_deadline`)
OVERDUE_REASON = "Tindak lanjut melewati batas waktu (jatuh tempo 16-06-2031): dieskalasi satu tingkat"


def with_provinces(app: Followup) -> Followup:
    app.register_directory()
    provinces = ((NTT, "Pemerintah Provinsi Nusa Tenggara Timur"), (JATIM, "Pemerintah Provinsi Jawa Timur"))
    for agency_id, name in provinces:
        event = AgencyRegistered(agency_id=agency_id, name=name, kind=AgencyKind.pemerintah_provinsi)
        app.ctx.store.append(f"directory-{agency_id}", [event.to_new_event()], ANY)
    return app


@pytest.fixture
def app(start):
    with start() as app:
        yield with_provinces(app)


def escalate(
    app: Followup, tracking_id: str, to_agency_id: str, from_level: Level, to_level: Level, *,
    kind: EscalationKind = EscalationKind.follow_up_overdue, new_deadline: bool = True, reason: str = OVERDUE_REASON,
) -> None:
    """What routing's scheduler appends when the holder missed its follow-up deadline."""
    due = app.ctx.policy.follow_up_due(app.clock.now()) if new_deadline else None
    app.decide(tracking_id, ComplaintEscalated(
        kind=kind, reason=reason, from_level=from_level, to_level=to_level, to_agency_id=to_agency_id,
        automatic=True, follow_up_due=due,
    ), role="system")


def overdue_to_province(app: Followup, tracking_id: str, province: str = NTT) -> None:
    escalate(app, tracking_id, province, Level.agency, Level.regional)


def returned_and_disposed_again_with_the_bounce_flag(app: Followup, tracking_id: str) -> None:
    """Returned by Kupang, then disposed to it again with routing's bounce flag for the national admin: the flag
    comes in the one append with the disposition, so it belongs to the holding before."""
    app.act(tracking_id, "return", app.liaison(), {"reason": "Bukan wewenang kota."})
    now = app.clock.now()
    app.decide(
        tracking_id,
        ComplaintDisposed(agency_id=KUPANG, follow_up_due=app.ctx.policy.follow_up_due(now),
                          ombudsman_offer_due=app.ctx.policy.ombudsman_offer_due(now)),
        ComplaintEscalated(kind=EscalationKind.bounce_limit, reason="Dikembalikan 3 kali", from_level=Level.agency,
                           to_level=Level.agency, to_agency_id=NATIONAL_ADMIN_AGENCY, automatic=True),
    )


def worklist(app: Followup, agency_id: str, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    app.settle()
    response = app.client.get(f"/api/queues/{agency_id}/escalated", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def watched(app: Followup, agency_id: str, headers: dict[str, str] | None = None, **params: Any) -> list[str]:
    page = worklist(app, agency_id, headers or app.liaison(agency_id, f"liaison-{agency_id}"), **params)
    return [item["tracking_id"] for item in page["items"]]


def refused(app: Followup, agency_id: str, headers: dict[str, str]) -> int:
    app.settle()
    return app.client.get(f"/api/queues/{agency_id}/escalated", headers=headers).status_code


def test_a_regency_report_escalated_to_its_province_is_on_that_provinces_worklist_only(app):
    app.disposed("LAP-E-1")
    app.disposed("LAP-E-2")  # Kupang's too, not escalated
    app.disposed("LAP-E-3", MALANG)
    later(app, days=8)  # both follow-up deadlines missed
    overdue_to_province(app, "LAP-E-1")
    overdue_to_province(app, "LAP-E-3", JATIM)
    [item] = worklist(app, NTT, app.liaison(NTT, "liaison-ntt"))["items"]
    assert (item["tracking_id"], item["agency_id"], item["level"], item["status"]) == (
        "LAP-E-1", KUPANG, "regional", "disposed"
    )
    assert (item["deadline_kind"], item["overdue"], item["working_days_left"]) == ("follow_up", False, 5)
    # the deadline now running is the one the escalation set, counted from it (Tuesday 17 June)
    assert item["deadline"] == app.ctx.policy.follow_up_due(app.clock.now()).isoformat().replace("+00:00", "Z")
    escalation = item["escalation"]
    assert (escalation["kind"], escalation["from_level"], escalation["to_level"], escalation["automatic"]) == (
        "follow_up_overdue", "agency", "regional", True
    )
    assert escalation["reason"] == OVERDUE_REASON  # masked, and nothing in it to mask
    assert escalation["escalated_at"].startswith("2031-06-17T02:00:00")
    assert watched(app, NTT, app.admin(NTT, "admin-ntt")) == ["LAP-E-1"]
    assert watched(app, JATIM) == ["LAP-E-3"]
    assert watched(app, MALANG) == []  # the holder finds it in its own queue, not here
    assert watched(app, KUPANG) == []


def test_only_the_watching_agencys_admin_and_liaison_and_oversight_read_it(app):
    app.disposed("LAP-E-4")
    app.act("LAP-E-4", "accept", app.liaison())
    app.act("LAP-E-4", "assign", app.liaison(), {"unit_id": DINKES})
    later(app, days=8)
    escalate(app, "LAP-E-4", KUPANG, Level.unit, Level.agency)  # the unit's missed deadline: up to its own agency
    later(app, days=8)
    overdue_to_province(app, "LAP-E-4")
    assert refused(app, NTT, app.unit_officer(DINKES)) == 403  # the holder's own unit
    assert refused(app, NTT, app.liaison()) == 403  # the holder: Kupang's staff
    assert refused(app, NTT, app.liaison(JATIM, "liaison-jatim")) == 403  # another province
    assert refused(app, NTT, app.bearer(Role.unit_officer, "officer-ntt", unit_id=NTT + "/biro-hukum")) == 403
    assert refused(app, NTT, {}) == 401
    for oversight in (Role.operator, Role.auditor, Role.ombudsman, Role.admin_national):
        assert watched(app, NTT, app.bearer(oversight, f"{oversight}-1")) == ["LAP-E-4"], oversight
    # the escalation from the unit to its own agency makes no worklist: Kupang finds it in its queue
    assert watched(app, KUPANG) == []
    assert refused(app, "pemda-99", app.bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)) == 404


def test_the_province_watches_while_the_escalated_deadline_runs_unanswered_and_no_longer(app):
    liaison = app.liaison()
    for tracking_id in ("LAP-W-NOTE", "LAP-W-ANSWER", "LAP-W-RESOLVE", "LAP-W-RETURN", "LAP-W-TAKEN"):
        app.disposed(tracking_id)
        app.act(tracking_id, "accept", liaison)
    later(app, days=8)
    for tracking_id in ("LAP-W-NOTE", "LAP-W-ANSWER", "LAP-W-RESOLVE", "LAP-W-RETURN", "LAP-W-TAKEN"):
        overdue_to_province(app, tracking_id)
    later(app, days=8)  # the escalated deadline has passed too
    page = worklist(app, NTT, app.liaison(NTT, "liaison-ntt"))
    assert all(item["overdue"] for item in page["items"])
    assert len(page["items"]) == 5
    app.act("LAP-W-NOTE", "follow-ups", liaison, {"text": "Catatan internal.", "public": False})
    app.act("LAP-W-ANSWER", "follow-ups", liaison, {"text": "Petugas sudah ke lokasi."})
    app.act("LAP-W-RESOLVE", "resolve", liaison, {"resolution": "Sudah dibuka kembali."})
    app.act("LAP-W-RETURN", "return", liaison, {"reason": "Bukan wewenang kota."})
    app.taken_over_by_ombudsman("LAP-W-TAKEN", Level.regional)
    assert watched(app, NTT) == ["LAP-W-NOTE"]  # an internal note answers nobody
    # reopened after the resolution: the deadline the province watched was answered, it does not come back
    app.feedback("LAP-W-RESOLVE", satisfied=False, comment="Belum dibuka.")
    # disposed again to Kupang: a new holding, with its own deadline; the old escalation is not its
    now = app.clock.now()
    app.decide("LAP-W-RETURN", ComplaintDisposed(
        agency_id=KUPANG, follow_up_due=app.ctx.policy.follow_up_due(now),
        ombudsman_offer_due=app.ctx.policy.ombudsman_offer_due(now),
    ))
    app.settle()
    assert app.types("LAP-W-RESOLVE")[-1] == "ComplaintReopened"
    assert watched(app, NTT) == ["LAP-W-NOTE"]
    assert {item["tracking_id"] for item in app.queue(KUPANG, liaison)["items"]} >= {"LAP-W-RESOLVE", "LAP-W-RETURN"}
    # the new holding missing its deadline is escalated anew, and watched again
    later(app, days=8)
    overdue_to_province(app, "LAP-W-RETURN")
    assert watched(app, NTT) == ["LAP-W-NOTE", "LAP-W-RETURN"]


def test_an_escalation_answered_late_or_made_with_the_disposition_is_not_watched(app):
    app.disposed("LAP-L-1")
    later(app, days=8)
    app.act("LAP-L-1", "accept", app.liaison())
    app.act("LAP-L-1", "follow-ups", app.liaison(), {"text": "Maaf terlambat, sudah ditangani."})
    # answered after the deadline, before routing looked: the red mark, but nothing left to wait for
    escalate(app, "LAP-L-1", NTT, Level.agency, Level.regional, new_deadline=False,
             reason="Tindak lanjut melewati batas waktu: ditanggapi setelah batas waktu")
    app.disposed("LAP-L-2")
    returned_and_disposed_again_with_the_bounce_flag(app, "LAP-L-2")
    national = app.bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    assert watched(app, NTT) == []
    assert watched(app, NATIONAL_ADMIN_AGENCY, national) == []


def test_the_national_admin_watches_what_a_province_let_pass(app):
    app.disposed("LAP-N-1")
    later(app, days=8)
    overdue_to_province(app, "LAP-N-1")
    later(app, days=8)
    escalate(app, "LAP-N-1", NATIONAL_ADMIN_AGENCY, Level.regional, Level.national)
    national = app.bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    [item] = worklist(app, NATIONAL_ADMIN_AGENCY, national)["items"]
    assert (item["tracking_id"], item["level"], item["escalation"]["to_level"]) == ("LAP-N-1", "national", "national")
    assert (item["deadline_kind"], item["overdue"]) == ("follow_up", False)  # the deadline set with it
    assert watched(app, NTT) == ["LAP-N-1"]  # still unanswered since it reached the province
    # the ministry's own agency staff take dispositions like any agency: the national level is not theirs to watch
    assert refused(app, NATIONAL_ADMIN_AGENCY, app.liaison(NATIONAL_ADMIN_AGENCY, "liaison-panrb")) == 403
    assert refused(app, NATIONAL_ADMIN_AGENCY, app.admin(NATIONAL_ADMIN_AGENCY, "admin-panrb")) == 403
    assert watched(app, NATIONAL_ADMIN_AGENCY, app.bearer(Role.auditor)) == ["LAP-N-1"]
    app.act("LAP-N-1", "accept", app.liaison())
    assert watched(app, NTT) == ["LAP-N-1"]  # accepting is not answering the reporter
    assert app.act("LAP-N-1", "follow-ups", app.liaison(), {"text": "Sudah ditindaklanjuti."}).status_code == 201
    assert watched(app, NATIONAL_ADMIN_AGENCY, national) == []
    assert watched(app, NTT) == []


def test_anonymous_and_confidential_reports_are_masked_as_in_the_queue(app):
    ref = app.ctx.store.vault.put({"name": "Oktovianus Ndun", "phone": "081234567890"})
    app.disposed("LAP-P-1", title="Puskesmas tutup, hubungi saya di 081234567890", confidential=True,
                 anonymous=True, reporter_ref=ref)
    app.disposed("LAP-P-2", reporter_ref=ref, verified_title="KTP Oktovianus Ndun belum jadi tiga bulan")
    later(app, days=8)
    overdue_to_province(app, "LAP-P-1")
    overdue_to_province(app, "LAP-P-2")
    national = app.bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    # the province's liaison officer sees a title as the holder's does in its queue; an auditor as in the queue
    for headers, queue_reader in ((app.liaison(NTT, "liaison-ntt"), app.liaison()), (app.bearer(Role.auditor),) * 2):
        items = {item["tracking_id"]: item for item in worklist(app, NTT, headers)["items"]}
        queue = {item["tracking_id"]: item for item in app.queue(KUPANG, queue_reader)["items"]}
        assert items.keys() == {"LAP-P-1", "LAP-P-2"}  # the confidential one too: the province watches it
        for tracking_id, item in items.items():
            assert "081234567890" not in str(item)
            assert "Ndun" not in str(item)
            assert "reporter_ref" not in item
            assert item["title"] == queue[tracking_id]["title"]
        assert (items["LAP-P-1"]["anonymous"], items["LAP-P-1"]["confidential"]) == (True, True)
    seen = {item["tracking_id"]: item for item in worklist(app, NTT, national)["items"]}
    assert seen["LAP-P-2"]["title"] == "KTP Oktovianus Ndun belum jadi tiga bulan"
    # another province reads its own worklist: nothing of Kupang's
    assert watched(app, JATIM) == []


def test_the_worklist_comes_in_cursor_pages_in_queue_order(app):
    for n in range(5):
        app.disposed(f"LAP-C-{n}")
    later(app, days=1)
    app.disposed("LAP-C-LATE")  # disposed a day later: its deadlines come a day later
    later(app, days=7)
    for tracking_id in ("LAP-C-LATE", *(f"LAP-C-{n}" for n in range(5))):
        overdue_to_province(app, tracking_id)
    later(app, days=1)
    # escalated to the province again the next day, by a person: one item, with its latest escalation
    escalate(app, "LAP-C-LATE", NTT, Level.regional, Level.regional, kind=EscalationKind.manual,
             reason="Diteruskan lagi ke koordinator provinsi")
    headers = app.liaison(NTT, "liaison-ntt")
    first = worklist(app, NTT, headers, limit=2)
    second = worklist(app, NTT, headers, limit=2, cursor=first["next_cursor"])
    third = worklist(app, NTT, headers, limit=2, cursor=second["next_cursor"])
    walked = [item["tracking_id"] for page in (first, second, third) for item in page["items"]]
    assert walked == ["LAP-C-0", "LAP-C-1", "LAP-C-2", "LAP-C-3", "LAP-C-4", "LAP-C-LATE"]
    assert third["next_cursor"] is None
    assert third["items"][-1]["escalation"]["escalated_at"].startswith("2031-06-18T02:00:00")
    assert (third["items"][-1]["escalation"]["kind"], third["items"][-1]["escalation"]["automatic"]) == (
        "manual", True
    )
    assert watched(app, NTT, headers, overdue=True) == []
    for params, status in (({"cursor": "bm9wZQ"}, 400), ({"limit": 201}, 422), ({"limit": 0}, 422),
                           ({"overdue": "perhaps"}, 422)):
        response = app.client.get(f"/api/queues/{NTT}/escalated", headers=headers, params=params)
        assert response.status_code == status, (params, response.text)
        assert response.headers["content-type"] == "application/problem+json"


def test_the_worklist_rebuilt_from_the_log_equals_the_live_one(app):
    liaison = app.liaison()
    for n in range(4):
        app.disposed(f"LAP-RB-{n}")
    later(app, days=8)
    for n in range(4):
        overdue_to_province(app, f"LAP-RB-{n}")
    app.act("LAP-RB-0", "accept", liaison)
    app.act("LAP-RB-0", "follow-ups", liaison, {"text": "Sudah ditangani."})
    app.act("LAP-RB-1", "return", liaison, {"reason": "Bukan wewenang kota."})
    later(app, days=8)
    escalate(app, "LAP-RB-2", NATIONAL_ADMIN_AGENCY, Level.regional, Level.national)
    app.settle()
    report = rebuild(app.ctx, [SERVICE])
    assert "followup_escalations" in report.tables
    assert report.identical, report.differences
    assert watched(app, NTT) == ["LAP-RB-3", "LAP-RB-2"]  # LAP-RB-3 overdue first


def test_a_store_built_before_the_worklist_fills_it_from_the_log_at_start(start):
    """The queue projection's version went up with the worklist: a store whose queue was built by version 2 reads
    the log again from the start, so escalations made before the upgrade are on the worklist."""
    with start() as app:
        with_provinces(app)
        app.disposed("LAP-UP-1")
        later(app, days=8)
        overdue_to_province(app, "LAP-UP-1")
        app.settle()
        at = app.clock.now()
        with app.ctx.db.transaction() as tx:  # as version 2 left it: no worklist, its checkpoint at the end
            tx.execute("DELETE FROM followup_escalations")
            tx.execute("UPDATE subscription_checkpoints SET projection_version = 2 WHERE name = 'followup.queue'")
    with start(at=at) as app:
        assert watched(app, NTT) == ["LAP-UP-1"]
        assert app.client.get(f"/api/queues/{NTT}/escalated", headers=app.liaison(NTT)).status_code == 200
