"""The followup service on PostgreSQL (store and read models in the one database): the same path, race, queue
order and closing as on SQLite, through the same SQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest

from lapor.rebuild import rebuild
from services.followup.handlers import Notifier, close_silent_reports
from services.followup.notifications import MAX_WEBHOOKS, WEBHOOK, WebhookAdapter, webhook_policy
from services.followup.service import SERVICE
from tests.followup.conftest import DINKES, KUPANG, MALANG, Followup, later, subscribe
from tests.followup.test_closing import resolved, resolved_late
from tests.followup.test_escalated_queue import (
    JATIM,
    NTT,
    overdue_to_province,
    refused,
    watched,
    with_provinces,
    worklist,
)
from tests.followup.test_queue import (
    FORGED_CURSORS,
    assert_refused_cursor,
    category_filter_ignores_case,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def on_postgres(start, postgres_url) -> Iterator[Followup]:
    with start(store=postgres_url) as app:
        assert app.ctx.db.dialect == "postgresql"
        app.register_directory()
        yield app


def test_the_whole_path_and_the_closing_on_postgresql(on_postgres):
    app = on_postgres
    tid = app.disposed("LAP-PG-1")
    liaison = app.liaison()
    assert app.act(tid, "accept", liaison, if_match=2).status_code == 200
    assert app.act(tid, "assign", liaison, {"unit_id": DINKES}, if_match=3).status_code == 200
    assert app.act(tid, "follow-ups", app.unit_officer(), {"text": "Sudah dicek."}, if_match=4).status_code == 201
    assert app.act(tid, "resolve", liaison, {"resolution": "Selesai."}, if_match=5).status_code == 200
    app.feedback(tid, satisfied=False, comment="Belum.")
    app.settle()
    assert app.types(tid)[-1] == "ComplaintReopened"
    assert app.act(tid, "resolve", liaison, {"resolution": "Sekarang selesai."}).status_code == 200
    app.settle()
    later(app, days=20)
    assert close_silent_reports(app.ctx) == 1
    assert app.types(tid)[-1] == "ComplaintClosed"
    assert app.queue(KUPANG, liaison)["items"] == []


def test_the_closing_reads_on_past_a_report_waiting_for_its_red_mark_on_postgresql(on_postgres):
    app = on_postgres
    waiting = resolved_late(app, "LAP-PG-HOLD-1")
    in_time = resolved(app, "LAP-PG-HOLD-2")
    later(app, days=30)
    assert close_silent_reports(app.ctx, limit=1) == 1
    assert (app.types(waiting)[-1], app.types(in_time)[-1]) == ("ComplaintResolved", "ComplaintClosed")


def test_two_officers_at_once_on_postgresql(on_postgres):
    app = on_postgres
    tid = app.disposed("LAP-PG-2")
    barrier = Barrier(2)

    def accept(subject: str) -> int:
        headers = app.liaison(subject=subject)
        barrier.wait()
        return app.act(tid, "accept", headers, if_match=2).status_code

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(accept, ["liaison-a", "liaison-b"])) == [200, 412]
    assert app.types(tid).count("DispositionAccepted") == 1


def test_queue_order_filters_and_pages_on_postgresql(on_postgres):
    app = on_postgres
    liaison = app.liaison()
    app.disposed("LAP-PG-OLD")
    later(app, days=8)
    for n in range(3):
        app.disposed(f"LAP-PG-{n}")
    app.act("LAP-PG-0", "accept", liaison)
    app.act("LAP-PG-0", "assign", liaison, {"unit_id": DINKES})
    first = app.queue(KUPANG, liaison, limit=2)
    second = app.queue(KUPANG, liaison, limit=2, cursor=first["next_cursor"])
    assert [item["tracking_id"] for item in first["items"] + second["items"]] == [
        "LAP-PG-OLD", "LAP-PG-0", "LAP-PG-1", "LAP-PG-2"
    ]
    assert first["items"][0]["overdue"] is True
    assert [item["tracking_id"] for item in app.queue(DINKES, app.unit_officer())["items"]] == ["LAP-PG-0"]
    assert [item["tracking_id"] for item in app.queue(KUPANG, liaison, overdue=True)["items"]] == ["LAP-PG-OLD"]


def test_a_webhook_hears_of_a_new_item_on_postgresql(on_postgres, receiver):
    app = on_postgres
    subscribe(app, receiver, KUPANG, "/kupang")
    app.disposed("LAP-PG-N")
    app.settle()
    adapter = WebhookAdapter(webhook_policy(app.ctx.settings))
    Notifier(app.ctx, {WEBHOOK: adapter}).run_once()
    adapter.close()
    receiver.wait_for(1)
    assert receiver.accepted[0][1]["tracking_id"] == "LAP-PG-N"
    assert receiver.forged == 0


def test_a_forged_cursor_is_400_on_postgresql(on_postgres):
    on_postgres.disposed("LAP-PG-C")
    for cursor in FORGED_CURSORS.values():
        assert_refused_cursor(on_postgres, cursor)


def test_the_escalated_worklist_on_postgresql(on_postgres):
    app = with_provinces(on_postgres)
    for n in range(3):
        app.disposed(f"LAP-PG-E{n}")
    app.disposed("LAP-PG-M", MALANG)
    later(app, days=8)
    for n in range(3):
        overdue_to_province(app, f"LAP-PG-E{n}")
    overdue_to_province(app, "LAP-PG-M", JATIM)
    headers = app.liaison(NTT, "liaison-ntt")
    first = worklist(app, NTT, headers, limit=2)
    second = worklist(app, NTT, headers, limit=2, cursor=first["next_cursor"])
    assert [item["tracking_id"] for item in first["items"] + second["items"]] == ["LAP-PG-E0", "LAP-PG-E1", "LAP-PG-E2"]
    assert second["next_cursor"] is None
    assert watched(app, JATIM) == ["LAP-PG-M"]
    assert refused(app, NTT, app.unit_officer(DINKES)) == 403
    app.act("LAP-PG-E1", "accept", app.liaison())
    app.act("LAP-PG-E1", "resolve", app.liaison(), {"resolution": "Selesai."})
    assert watched(app, NTT, overdue=False) == ["LAP-PG-E0", "LAP-PG-E2"]
    report = rebuild(app.ctx, [SERVICE])
    assert report.identical, report.differences


def test_the_category_filter_ignores_case_on_postgresql(on_postgres):
    category_filter_ignores_case(on_postgres)


def test_registrations_at_once_never_take_an_agency_past_its_webhooks_on_postgresql(on_postgres):
    """Each registration counts the agency's webhooks under a lock: at once, on READ COMMITTED, each counted the
    others' as not there yet."""
    app = on_postgres
    url = {"url": "https://1.1.1.1/lapor"}
    barrier = Barrier(8)

    def register(_: int) -> list[int]:
        barrier.wait()
        return [app.client.post(f"/api/agencies/{KUPANG}/webhooks", headers=app.admin(), json=url).status_code
                for _ in range(MAX_WEBHOOKS // 4)]

    with ThreadPoolExecutor(8) as pool:
        statuses = [status for answers in pool.map(register, range(8)) for status in answers]
    assert sorted(set(statuses)) == [201, 409]
    assert statuses.count(201) == MAX_WEBHOOKS
    listed = app.client.get(f"/api/agencies/{KUPANG}/webhooks", headers=app.admin()).json()
    assert len(listed) == MAX_WEBHOOKS
