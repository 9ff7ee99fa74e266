"""The watcher hears of an escalation (session 29): when routing escalates a report to an agency above its holder
that then watches it (a regency's missed follow-up to its province), the watcher's webhooks get one signed
`escalation.watched` notification, with ids, levels and deadlines and nothing about the reporter. The same events
handled again (a replay of the log, a rebuild) post nothing more; an escalation that starts no watch notifies no
watcher. On SQLite and PostgreSQL, through the real app and a real HTTP receiver (`receiver`, in conftest)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from lapor.principal import NATIONAL_ADMIN_AGENCY, Role
from lapor.rebuild import rebuild
from schemas.events import ComplaintEscalated, EscalationKind, Level
from services.followup.projections import QUEUE_VERSION
from services.followup.service import SERVICE
from tests.followup.conftest import DINKES, KUPANG, Followup, later, subscribe
from tests.followup.test_escalated_queue import (
    NTT,
    escalate,
    overdue_to_province,
    refused,
    returned_and_disposed_again_with_the_bounce_flag,
    watched,
    with_provinces,
)
from tests.followup.test_notifications import rounds

WATCHED = "escalation.watched"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def begin(request: pytest.FixtureRequest, start: Callable[..., Any]) -> Callable[..., Any]:
    """`with begin() as app:` the followup service with the provinces registered, on SQLite or PostgreSQL (the
    same database again at each call: a restart)."""
    store = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    overrides = {"store": store} if store else {}

    def run(**more: Any) -> Any:
        return start(**overrides, **more)

    return run


@pytest.fixture
def app(begin) -> Iterator[Followup]:
    with begin() as app:
        yield with_provinces(app)


def heard(receiver, path: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [body for at, body, _ in receiver.accepted if at == path and kind in (None, body["kind"])]


def outbox(app: Followup, kind: str) -> list[tuple[str, str, str]]:
    with app.ctx.db.transaction() as tx:
        rows = tx.fetchall(
            "SELECT notification_id, agency_id, tracking_id FROM followup_notifications WHERE kind = ?", (kind,)
        )
    return sorted(rows)


def test_a_province_hears_once_of_a_regency_report_escalated_to_it(begin, receiver):
    with begin() as app:
        with_provinces(app)
        subscribe(app, receiver, NTT, "/ntt")
        subscribe(app, receiver, KUPANG, "/kupang")
        ref = app.ctx.store.vault.put({"name": "Oktovianus Ndun", "phone": "081234567890"})
        app.disposed("LAP-WN-1", title="Puskesmas tutup, hubungi saya di 081234567890", reporter_ref=ref)
        with rounds(app) as notify:
            notify()
            receiver.wait_for(1)  # Kupang's new item
            later(app, days=8)
            escalated_at = app.clock.now()
            # a person's reason, which names the reporter: it stays out of the webhook
            escalate(app, "LAP-WN-1", NTT, Level.agency, Level.regional,
                     reason="Pelapor Oktovianus Ndun (081234567890) belum dihubungi")
            notify()
            receiver.wait_for(2)
            notify()
        [body] = heard(receiver, "/ntt")
        assert (body["kind"], body["agency_id"], body["tracking_id"]) == (WATCHED, NTT, "LAP-WN-1")
        deadline = app.ctx.policy.follow_up_due(escalated_at)
        data = dict(body["data"])
        assert datetime.fromisoformat(data.pop("escalated_at")) == escalated_at
        assert datetime.fromisoformat(data.pop("deadline")) == deadline
        assert data == {
            "holder_agency_id": KUPANG,
            "holder_unit_id": None,
            "status": "disposed",
            "level": "regional",
            "version": app.version("LAP-WN-1"),
            "escalation_kind": "follow_up_overdue",
            "from_level": "agency",
            "to_level": "regional",
            "automatic": True,
            "deadline_kind": "follow_up",
        }
        [headers] = [headers for at, _, headers in receiver.accepted if at == "/ntt"]
        assert headers["X-Lapor-Event"] == WATCHED
        assert headers["X-Lapor-Delivery"] == body["id"]
        assert receiver.forged == 0  # signed with the province's secret, checked by the receiver
        for secret in ("Ndun", "081234567890", "Puskesmas", "reason", "title"):
            assert secret not in json.dumps(body), secret
        # the holder hears nothing of it: the regency's own webhook had its new item only
        assert [b["kind"] for b in heard(receiver, "/kupang")] == ["queue.item_added"]
        assert watched(app, NTT) == ["LAP-WN-1"]
        assert len(outbox(app, WATCHED)) == 1
        at = app.clock.now()
        with app.ctx.db.transaction() as tx:  # the queue projection reads the whole log again at the next start
            tx.execute("UPDATE subscription_checkpoints SET projection_version = ? WHERE name = 'followup.queue'",
                       (QUEUE_VERSION - 1,))
    with begin(at=at) as app, rounds(app) as notify:
        assert watched(app, NTT) == ["LAP-WN-1"]  # read again from the log
        notify()
        notify()
        assert len(outbox(app, WATCHED)) == 1
        report = rebuild(app.ctx, [SERVICE])  # the queue's tables rebuilt aside equal the live ones
        assert report.identical, report.differences
    assert len(heard(receiver, "/ntt")) == 1
    assert len(receiver.attempts) == 2  # nothing sent again, to anyone


def test_the_province_hears_of_its_watch_but_the_ministrys_own_staff_not_of_the_national_one(app, receiver):
    """The national level's worklist is the national admin's; `kemenpanrb`'s webhooks are registered by the
    ministry's own agency admin, who may not read that worklist (403), so they are not told of it either."""
    subscribe(app, receiver, NTT, "/ntt")
    subscribe(app, receiver, NATIONAL_ADMIN_AGENCY, "/panrb")
    app.disposed("LAP-WN-2")
    app.disposed("LAP-WN-3")
    with rounds(app) as notify:
        later(app, days=8)
        overdue_to_province(app, "LAP-WN-2")
        notify()
        later(app, days=8)
        escalate(app, "LAP-WN-2", NATIONAL_ADMIN_AGENCY, Level.regional, Level.national)
        notify()
        # last, a watch that is notified: once it is heard, the escalation before it was handled too
        overdue_to_province(app, "LAP-WN-3")
        notify()
        receiver.wait_for(2)
        notify()
    told = [(path, body["kind"], body["tracking_id"], body["data"]["to_level"]) for path, body, _ in receiver.accepted]
    assert told == [
        ("/ntt", WATCHED, "LAP-WN-2", "regional"),
        ("/ntt", WATCHED, "LAP-WN-3", "regional"),
    ]
    ministry_admin = app.admin(NATIONAL_ADMIN_AGENCY, f"admin-{NATIONAL_ADMIN_AGENCY}")  # who registered /panrb
    assert refused(app, NATIONAL_ADMIN_AGENCY, ministry_admin) == 403
    national = app.bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    assert watched(app, NATIONAL_ADMIN_AGENCY, national) == ["LAP-WN-2"]  # where the national admin finds it


def test_an_escalation_that_starts_no_watch_notifies_no_watcher(app, receiver):
    subscribe(app, receiver, NTT, "/ntt", kinds=[WATCHED])
    subscribe(app, receiver, KUPANG, "/kupang", kinds=[WATCHED])
    subscribe(app, receiver, NATIONAL_ADMIN_AGENCY, "/panrb", kinds=[WATCHED])
    liaison = app.liaison()
    for tracking_id in ("LAP-NW-LATE", "LAP-NW-UNIT", "LAP-NW-OFFER", "LAP-NW-BOUNCE", "LAP-NW-WATCHED"):
        app.disposed(tracking_id)
    with rounds(app) as notify:
        later(app, days=8)
        # answered after the deadline, before routing looked: the red mark, nothing left to watch
        app.act("LAP-NW-LATE", "accept", liaison)
        app.act("LAP-NW-LATE", "follow-ups", liaison, {"text": "Maaf terlambat, sudah ditangani."})
        escalate(app, "LAP-NW-LATE", NTT, Level.agency, Level.regional, new_deadline=False,
                 reason="Tindak lanjut melewati batas waktu: ditanggapi setelah batas waktu")
        # a unit's missed deadline up to its own agency: Kupang holds it, in its own queue
        app.act("LAP-NW-UNIT", "accept", liaison)
        app.act("LAP-NW-UNIT", "assign", liaison, {"unit_id": DINKES})
        escalate(app, "LAP-NW-UNIT", KUPANG, Level.unit, Level.agency)
        # the Ombudsman offer names nobody
        app.decide("LAP-NW-OFFER", ComplaintEscalated(
            kind=EscalationKind.ombudsman_offer, reason="60 hari kerja belum selesai.", from_level=Level.agency,
            to_level=Level.agency, automatic=True,
        ), role="system")
        # routing's bounce flag comes with the disposition: it belongs to the holding before
        returned_and_disposed_again_with_the_bounce_flag(app, "LAP-NW-BOUNCE")
        notify()
        # last, one that does start a watch: once it is heard, everything before it was handled too
        overdue_to_province(app, "LAP-NW-WATCHED")
        notify()
        receiver.wait_for(1)
        notify()
    assert [(path, body["tracking_id"]) for path, body, _ in receiver.accepted] == [("/ntt", "LAP-NW-WATCHED")]
    assert [tracking_id for _, _, tracking_id in outbox(app, WATCHED)] == ["LAP-NW-WATCHED"]
