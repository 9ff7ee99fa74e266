"""Notifications out: agencies subscribe a webhook; each new item in their queues and each approaching deadline is
POSTed to it, signed with HMAC-SHA256, retried with backoff when the receiver fails. The receiver here is a real
HTTP server on 127.0.0.1 that checks every signature (`receiver`, in conftest)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lapor.clock import ManualClock
from lapor.db import Database, SqliteDatabase, open_database
from lapor.logs import QUIET_LIBRARIES, JsonFormatter, configure_logging
from lapor.principal import NATIONAL_ADMIN_AGENCY, Role
from lapor.settings import load_settings
from schemas.events import ComplaintDisposed
from services.followup.handlers import Notifier, warn_of_deadlines
from services.followup.notifications import (
    DEADLINE_APPROACHING,
    ESCALATION_WATCHED,
    ITEM_ADDED,
    KINDS,
    LEASE,
    MAX_WEBHOOKS,
    WEBHOOK,
    Deliverer,
    DeliveryFailed,
    Notification,
    Target,
    WebhookAdapter,
    create_target,
    deactivate_target,
    list_targets,
    notification_id,
    post_arrivals,
    record_notification,
    webhook_policy,
)
from services.followup.storage import SERVICE_SCHEMA, install_queue, install_service_tables, instant
from tests.followup.conftest import DINKES, DISDIK, KUPANG, MALANG, MONDAY, later, subscribe


@contextmanager
def rounds(app) -> Iterator[Callable[[], None]]:
    """A round of `app`'s notification loop at each call (the background loop runs too; deliveries are leased, never
    doubled)."""
    adapter = WebhookAdapter(webhook_policy(app.ctx.settings))
    notifier = Notifier(app.ctx, {WEBHOOK: adapter})

    def run() -> None:
        app.settle()
        notifier.run_once()

    try:
        yield run
    finally:
        adapter.close()


@pytest.fixture
def notify(followup) -> Iterator[Callable[[], None]]:
    with rounds(followup) as run:
        yield run


def test_a_new_queue_item_is_posted_signed_to_the_agencys_webhook(followup, receiver, notify):
    subscribe(followup, receiver, KUPANG, "/kupang")
    followup.disposed("LAP-N-1")
    notify()
    receiver.wait_for(1)
    [(path, body, headers)] = receiver.accepted
    assert path == "/kupang"
    assert (body["kind"], body["agency_id"], body["tracking_id"]) == ("queue.item_added", KUPANG, "LAP-N-1")
    assert (body["data"]["reason"], body["data"]["deadline_kind"]) == ("disposed", "follow_up")
    assert headers["X-Lapor-Delivery"] == body["id"]
    assert headers["X-Lapor-Event"] == "queue.item_added"
    assert "title" not in json.dumps(body)  # no free text leaves by webhook
    assert receiver.forged == 0


def test_an_assignment_notifies_the_unit_and_the_agency_above_it(followup, receiver, notify):
    subscribe(followup, receiver, KUPANG, "/kupang")
    subscribe(followup, receiver, DINKES, "/dinkes")
    followup.disposed("LAP-N-2")
    followup.act("LAP-N-2", "accept", followup.liaison())
    followup.act("LAP-N-2", "assign", followup.liaison(), {"unit_id": DINKES})
    notify()
    receiver.wait_for(3)
    heard = sorted((path, body["agency_id"], body["data"]["reason"]) for path, body, _ in receiver.accepted)
    assert heard == [
        ("/dinkes", DINKES, "assigned"),
        ("/kupang", KUPANG, "disposed"),
        ("/kupang", DINKES, "assigned"),
    ]


def test_a_reopening_of_a_units_report_is_heard_once_by_each_webhook(followup, receiver, notify):
    """Reopened, an assigned report is back in its unit's queue and, through it, in its agency's. The agency's webhook
    heard of it twice, once for each queue, under two delivery ids a receiver cannot tell apart as one arrival (an
    assignment, or a disposition to a unit directly, is one notification for the unit, which the agencies above it
    hear of): now the reopening is one notification for the unit holding the report, heard by the agency above it
    too (session 32)."""
    subscribe(followup, receiver, KUPANG, "/kupang")
    subscribe(followup, receiver, DINKES, "/dinkes")
    liaison = followup.liaison()
    followup.disposed("LAP-N-R")
    followup.act("LAP-N-R", "accept", liaison)
    followup.act("LAP-N-R", "assign", liaison, {"unit_id": DINKES})
    followup.act("LAP-N-R", "resolve", liaison, {"resolution": "Sudah diperbaiki."})
    followup.feedback("LAP-N-R", satisfied=False, comment="Belum diperbaiki.")
    notify()
    receiver.wait_for(5)
    notify()
    heard = sorted((path, body["agency_id"], body["data"]["reason"]) for path, body, _ in receiver.accepted)
    assert [entry for entry in heard if entry[2] == "reopened"] == [
        ("/dinkes", DINKES, "reopened"),
        ("/kupang", DINKES, "reopened"),
    ]
    assert len(heard) == 5


def test_another_agencys_webhook_hears_nothing(followup, receiver, notify):
    subscribe(followup, receiver, MALANG, "/malang")
    subscribe(followup, receiver, KUPANG, "/kupang")
    followup.disposed("LAP-N-3")
    notify()
    receiver.wait_for(1)
    notify()
    assert [path for path, _, _ in receiver.accepted] == ["/kupang"]


def test_a_failing_receiver_is_tried_again_after_a_backoff_until_it_takes_it(followup, receiver, notify):
    webhook = subscribe(followup, receiver, KUPANG, "/kupang")
    receiver.script = [500, 503]
    followup.disposed("LAP-N-4")
    notify()
    receiver.wait_for(1, "attempts")
    notify()  # too early: the backoff has not passed
    later(followup, seconds=31)
    notify()
    receiver.wait_for(2, "attempts")
    later(followup, seconds=61)
    notify()
    receiver.wait_for(1)
    assert len(set(receiver.attempts)) == 1  # one delivery id, three attempts
    assert len(receiver.attempts) == 3
    [listed] = followup.client.get(f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin()).json()
    assert (listed["webhook_id"], listed["delivered"], listed["pending"], listed["failed"]) == (
        webhook["webhook_id"], 1, 0, 0
    )


def test_a_receiver_that_refuses_the_request_is_not_tried_again(followup, receiver, notify):
    subscribe(followup, receiver, KUPANG, "/kupang")
    receiver.script = [404]
    followup.disposed("LAP-N-5")
    notify()
    receiver.wait_for(1, "attempts")
    later(followup, hours=2)
    notify()
    [listed] = followup.client.get(f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin()).json()
    assert (listed["delivered"], listed["failed"]) == (0, 1)
    assert "HTTP 404" in listed["last_error"]
    assert len(receiver.attempts) == 1


def test_a_webhooks_address_is_not_written_to_the_log(followup, receiver, notify):
    """A webhook's address may carry the receiver's secret. The HTTP client wrote it at INFO with every delivery
    ("HTTP Request: POST http://…/kupang?key=…"), and a refused delivery's warning named it (session 27)."""
    configure_logging("INFO")  # as `lapor up` and `lapor serve` log
    written: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = written.append  # type: ignore[method-assign]
    logging.getLogger().addHandler(capture)
    try:
        subscribe(followup, receiver, KUPANG, "/kupang?key=rahasia-kupang-42")
        subscribe(followup, receiver, KUPANG, "/kupang-lain?key=rahasia-kupang-43")
        receiver.script = [404]
        followup.disposed("LAP-N-L")
        notify()
        receiver.wait_for(2, "attempts")
        notify()
    finally:
        logging.getLogger().removeHandler(capture)
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.NOTSET)
    lines = [JsonFormatter().format(record) for record in written]
    assert len(receiver.accepted) == 1
    assert any("attempt 1 failed" in line and "HTTP 404" in line for line in lines)
    assert not [line for line in lines if "rahasia" in line]
    listed = followup.client.get(f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin()).json()
    assert sorted(webhook["last_error"] or "" for webhook in listed) == ["", "HTTP 404 from the webhook"]


def test_an_approaching_deadline_is_notified_once(followup, receiver, notify):
    subscribe(followup, receiver, KUPANG, "/kupang", kinds=["deadline.approaching"])
    followup.disposed("LAP-N-6")  # Monday: follow-up due at the end of next Monday
    followup.settle()
    assert warn_of_deadlines(followup.ctx) == 0
    later(followup, days=4)  # Friday: one working day left
    assert warn_of_deadlines(followup.ctx) == 1
    assert warn_of_deadlines(followup.ctx) == 0
    notify()
    receiver.wait_for(1)
    [(_, body, _)] = receiver.accepted
    assert (body["kind"], body["tracking_id"]) == ("deadline.approaching", "LAP-N-6")
    assert body["data"]["working_days_left"] == 1


def warning_held_up(followup, receiver, notify, tracking_id: str) -> None:
    """A report disposed to Kota Kupang on Monday, warned of on Friday (one working day left), the warning's first
    attempt failing at Kupang's receiver."""
    subscribe(followup, receiver, KUPANG, "/kupang", kinds=["deadline.approaching"])
    receiver.script = [503]
    followup.disposed(tracking_id)
    later(followup, days=4)
    followup.settle()
    assert warn_of_deadlines(followup.ctx) == 1
    notify()
    receiver.wait_for(1, "attempts")


def test_a_deadline_warning_held_up_by_a_failing_receiver_is_not_sent_once_the_agency_answered(
        followup, receiver, notify):
    """The receiver fails the warning's first attempt; the liaison officer then posts a follow-up, which ends the
    deadline. The retry must not tell the agency that a deadline it has met is about to pass (it did, an hour of
    backoff later, and a warning recorded just before the answer went out after it)."""
    warning_held_up(followup, receiver, notify, "LAP-N-9")
    assert followup.act("LAP-N-9", "accept", followup.liaison()).status_code == 200
    posted = followup.act("LAP-N-9", "follow-ups", followup.liaison(), {"text": "Puskesmas buka kembali."})
    assert posted.status_code == 201, posted.text
    later(followup, seconds=31)
    notify()
    later(followup, minutes=5)
    notify()
    assert receiver.accepted == []
    assert len(receiver.attempts) == 1
    [listed] = followup.client.get(f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin()).json()
    assert (listed["delivered"], listed["pending"], listed["failed"]) == (0, 0, 0)
    assert "no longer runs" in listed["last_error"]


def test_a_deadline_warning_still_waiting_when_the_deadline_passes_is_not_sent_late(followup, receiver, notify):
    warning_held_up(followup, receiver, notify, "LAP-N-10")
    later(followup, days=4)  # Tuesday: the deadline (end of Monday) has passed, routing escalates it
    notify()
    assert receiver.accepted == []
    assert len(receiver.attempts) == 1


def test_a_deadline_warning_still_due_is_sent_on_the_retry(followup, receiver, notify):
    warning_held_up(followup, receiver, notify, "LAP-N-11")
    later(followup, seconds=31)
    notify()
    receiver.wait_for(1)
    [(_, body, _)] = receiver.accepted
    assert (body["kind"], body["tracking_id"]) == ("deadline.approaching", "LAP-N-11")


def webhook_of(app, agency_id: str) -> dict[str, Any]:
    [listed] = app.client.get(f"/api/agencies/{agency_id}/webhooks", headers=app.admin(agency_id.split("/")[0])).json()
    return listed


def test_a_deadline_warning_follows_the_report_to_the_unit_it_is_reassigned_to(followup, receiver, notify):
    """Warned while Dinkes held the report, the warning held up by Dinkes's failing receiver, then the report
    reassigned to Disdik. Until session 28 the retry still went to Dinkes, and Disdik, which must now answer, was
    never warned: the warning's id named the deadline alone, and an assignment leaves the deadline as it is."""
    subscribe(followup, receiver, DINKES, "/dinkes", kinds=["deadline.approaching"])
    subscribe(followup, receiver, DISDIK, "/disdik", kinds=["deadline.approaching"])
    receiver.script = [503]
    followup.disposed("LAP-N-13")  # Monday: follow-up due at the end of next Monday
    assert followup.act("LAP-N-13", "accept", followup.liaison()).status_code == 200
    assert followup.act("LAP-N-13", "assign", followup.liaison(), {"unit_id": DINKES}).status_code == 200
    later(followup, days=4)  # Friday: one working day left
    followup.settle()
    assert warn_of_deadlines(followup.ctx) == 1
    notify()
    receiver.wait_for(1, "attempts")
    reassigned = followup.act("LAP-N-13", "assign", followup.liaison(), {"unit_id": DISDIK})
    assert reassigned.status_code == 200, reassigned.text
    later(followup, seconds=31)  # Dinkes's retry is due
    notify()
    followup.settle()
    assert warn_of_deadlines(followup.ctx) == 1  # Disdik's
    notify()
    receiver.wait_for(1)
    [(path, body, _)] = receiver.accepted
    assert (path, body["agency_id"], body["tracking_id"]) == ("/disdik", DISDIK, "LAP-N-13")
    assert body["data"]["working_days_left"] == 1
    assert len(receiver.attempts) == 2  # Dinkes's first, failed, and Disdik's
    dinkes = webhook_of(followup, DINKES)
    assert (dinkes["delivered"], dinkes["pending"]) == (0, 0)
    assert dinkes["last_error"] == "not sent: another unit or agency holds the report now, and is warned instead"


def test_a_deadline_warning_follows_the_report_disposed_again_to_another_agency(start, receiver):
    """With five warning days a follow-up deadline is warned of the day it is set. Kota Kupang returns the report
    (bukan wewenang) while its warning waits behind its failing receiver, and routing disposes it to Kota Malang the
    same day, so Malang's deadline is the same moment. Until session 28 Kupang's warning went out on its retry, and
    Malang's was never recorded (the same id)."""
    with start(policy={"warning_days": 5}) as app, rounds(app) as notify:
        app.register_directory()
        subscribe(app, receiver, KUPANG, "/kupang", kinds=["deadline.approaching"])
        subscribe(app, receiver, MALANG, "/malang", kinds=["deadline.approaching"])
        receiver.script = [503]
        app.disposed("LAP-N-14")
        app.settle()
        assert warn_of_deadlines(app.ctx) == 1
        notify()
        receiver.wait_for(1, "attempts")
        returned = app.act("LAP-N-14", "return", app.liaison(), {"reason": "Urusan Pemkot Malang."})
        assert returned.status_code == 200, returned.text
        now, policy = app.clock.now(), app.ctx.policy
        again = ComplaintDisposed(
            agency_id=MALANG, follow_up_due=policy.follow_up_due(now),
            ombudsman_offer_due=policy.ombudsman_offer_due(now),
        )
        app.decide("LAP-N-14", again)  # as routing disposes it
        first, last = (event for event in app.events("LAP-N-14") if event.type == "ComplaintDisposed")
        assert first.data["follow_up_due"] == last.data["follow_up_due"]  # the same deadline, another agency's
        later(app, seconds=31)  # Kupang's retry is due
        notify()
        assert warn_of_deadlines(app.ctx) == 1  # Malang's
        notify()
        receiver.wait_for(1)
        [(path, body, _)] = receiver.accepted
        assert (path, body["agency_id"], body["tracking_id"]) == ("/malang", MALANG, "LAP-N-14")
        assert len(receiver.attempts) == 2
        assert webhook_of(app, KUPANG)["last_error"] == (
            "not sent: another unit or agency holds the report now, and is warned instead"
        )


def test_webhooks_are_listed_without_their_secret_and_can_be_removed(followup, receiver, notify):
    webhook = subscribe(followup, receiver, KUPANG, "/kupang")
    [listed] = followup.client.get(f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin()).json()
    assert "secret" not in listed
    removed = followup.client.delete(f"/api/agencies/{KUPANG}/webhooks/{webhook['webhook_id']}",
                                     headers=followup.admin())
    assert removed.status_code == 204
    followup.disposed("LAP-N-7")
    notify()
    assert receiver.attempts == []


def test_an_agency_has_at_most_max_webhooks_and_one_removed_makes_room(followup):
    """Session 32: registrations were unbounded, and every notification is posted to each webhook."""
    url = {"url": "https://1.1.1.1/lapor"}
    created = [followup.client.post(f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin(), json=url)
               for _ in range(MAX_WEBHOOKS)]
    assert [response.status_code for response in created] == [201] * MAX_WEBHOOKS
    refused = followup.client.post(f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin(), json=url)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert f"has {MAX_WEBHOOKS} webhooks" in refused.json()["detail"]
    listed = followup.client.get(f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin()).json()
    assert len(listed) == MAX_WEBHOOKS  # the refused one was not written
    # Another agency's webhooks are its own count.
    other = followup.client.post(f"/api/agencies/{MALANG}/webhooks", headers=followup.admin(MALANG), json=url)
    assert other.status_code == 201, other.text
    removed = followup.client.delete(f"/api/agencies/{KUPANG}/webhooks/{listed[0]['webhook_id']}",
                                     headers=followup.admin())
    assert removed.status_code == 204
    again = followup.client.post(f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin(), json=url)
    assert again.status_code == 201, again.text


def test_a_webhook_uses_https_unless_it_is_on_this_machine(followup):
    # A public address, not a name: this machine resolves no names off it.
    for url, status in [("http://1.1.1.1/lapor", 422), ("https://1.1.1.1/lapor", 201)]:
        response = followup.client.post(f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin(), json={"url": url})
        assert response.status_code == status, response.text


def test_a_webhook_on_port_0_is_refused_at_registration(followup):
    """Port 0 names no service: no connection can reach it. It was registered (its address judged on port 443) and
    every delivery then failed, retried for hours, where the admin should learn of the mistake at once."""
    for url in ("https://1.1.1.1:0/lapor", "http://127.0.0.1:0/lapor"):
        response = followup.client.post(f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin(), json={"url": url})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["location"] == ["body", "url"]
        assert "port 0" in response.json()["detail"]
    with followup.ctx.db.read() as tx:
        assert tx.scalar("SELECT count(*) FROM followup_targets") == 0


def test_only_the_agencys_admin_subscribes(followup, receiver):
    for headers in (followup.liaison(), followup.admin(MALANG, "admin-malang"), followup.unit_officer()):
        response = followup.client.post(
            f"/api/agencies/{KUPANG}/webhooks", headers=headers, json={"url": receiver.url("/x")}
        )
        assert response.status_code == 403


def test_old_arrivals_are_not_pushed_when_the_outbox_catches_up(tmp_path: Path):
    db = SqliteDatabase(tmp_path / "readmodels.db")
    with db.transaction() as tx:
        install_queue(tx)
    install_service_tables(db)
    with db.transaction() as tx:
        for arrival_id, at in [("old", MONDAY - timedelta(days=3)), ("new", MONDAY - timedelta(hours=1))]:
            tx.execute(
                "INSERT INTO followup_queue_arrivals VALUES (?, ?, ?, ?, ?, ?)",
                (arrival_id, KUPANG, f"LAP-{arrival_id}", ITEM_ADDED, "{}", instant(at)),
            )
        assert post_arrivals(tx, MONDAY) == 1
        posted = tx.fetchall("SELECT notification_id FROM followup_notifications")
    db.close()
    assert posted == [("new",)]


# -- two delivery processes: a lease that ran out while its holder was still trying -------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The service's outbox tables alone, on SQLite or PostgreSQL: no loop of the service runs beside the test."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else f"sqlite:///{tmp_path}/rm.db"
    db = open_database(url)
    install_service_tables(db)
    yield db
    db.close()


@pytest.fixture
def adapter() -> Iterator[WebhookAdapter]:
    """The webhook adapter of a delivery process, with the default settings' policy."""
    adapter = WebhookAdapter(webhook_policy(load_settings()))
    yield adapter
    adapter.close()


class SlowThenTimedOut:
    """A first process's adapter: its first request hangs past the lease (meanwhile `meanwhile` runs: a second
    process's round, say) and times out; the next ones go out through `then`."""

    channel = WEBHOOK

    def __init__(self, clock: ManualClock, meanwhile: Callable[[], object], then: WebhookAdapter) -> None:
        self.clock, self.meanwhile, self.then, self.calls = clock, meanwhile, then, 0

    def deliver(self, notification: Notification, target: Target) -> None:
        self.calls += 1
        if self.calls > 1:
            return self.then.deliver(notification, target)
        self.clock.advance(LEASE + timedelta(seconds=10))
        self.meanwhile()
        raise DeliveryFailed("ReadTimeout: timed out")


def queue_to(db: Database, receiver, path: str, clock: ManualClock, *tracking_ids: str) -> None:
    with db.transaction() as tx:
        target = create_target(tx, agency_id=KUPANG, channel=WEBHOOK, address=receiver.url(path),
                               kinds=[ITEM_ADDED], created_by="admin-kupang", now=clock.now())
        for tracking_id in tracking_ids:
            record_notification(tx, Notification(notification_id(tracking_id), ITEM_ADDED, KUPANG, tracking_id, {},
                                                 clock.now()))
    receiver.secrets[path] = target.secret


def statuses(db: Database) -> list[str]:
    with db.read() as tx:
        return [status for (status,) in tx.fetchall("SELECT status FROM followup_deliveries ORDER BY notification_id")]


def test_a_process_whose_lease_ran_out_neither_sends_again_nor_undoes_what_another_delivered(
    outbox, receiver, adapter
):
    clock = ManualClock(MONDAY)
    queue_to(outbox, receiver, "/kupang", clock, "LAP-L-1", "LAP-L-2")
    second = Deliverer(outbox, clock, {WEBHOOK: adapter})
    first = Deliverer(outbox, clock, {WEBHOOK: SlowThenTimedOut(clock, second.run_once, adapter)})
    first.run_once()  # claims both; its first request hangs while the second process delivers both
    clock.advance(timedelta(hours=2))
    second.run_once()
    assert sorted(body["tracking_id"] for _, body, _ in receiver.accepted) == ["LAP-L-1", "LAP-L-2"]
    assert statuses(outbox) == ["delivered", "delivered"]


def test_a_webhook_removed_while_a_delivery_to_it_was_under_way_gets_nothing_more(outbox, receiver, adapter):
    clock = ManualClock(MONDAY)
    queue_to(outbox, receiver, "/kupang", clock, "LAP-L-3")

    def removed() -> None:
        with outbox.transaction() as tx:
            [(target_id,)] = tx.fetchall("SELECT target_id FROM followup_targets")
            assert deactivate_target(tx, KUPANG, target_id)

    Deliverer(outbox, clock, {WEBHOOK: SlowThenTimedOut(clock, removed, adapter)}).run_once()
    clock.advance(timedelta(hours=2))
    Deliverer(outbox, clock, {WEBHOOK: adapter}).run_once()
    assert receiver.attempts == []
    assert statuses(outbox) == ["cancelled"]


def test_a_receiver_that_keeps_failing_is_backed_off_and_given_up_after_eight_attempts(outbox, receiver, adapter):
    clock = ManualClock(MONDAY)
    queue_to(outbox, receiver, "/kupang", clock, "LAP-L-4")
    receiver.script = [503] * 20
    deliverer = Deliverer(outbox, clock, {WEBHOOK: adapter})
    tried = []
    for _ in range(12):
        tried.append(deliverer.run_once())
        clock.advance(timedelta(minutes=10))
    # Waits of 30 s, 1, 2, 4 and 8 min each pass within a ten-minute step; then 16 and 32 min.
    assert tried == [1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1]
    with outbox.read() as tx:
        [(status, attempts, last_error)] = tx.fetchall("SELECT status, attempts, last_error FROM followup_deliveries")
    assert (status, attempts) == ("failed", 8)
    assert "HTTP 503" in last_error
    assert len(receiver.attempts) == 8


# -- which kinds a webhook receives: those it named, or every kind ---------------------------------------------



def targets_before_session_30() -> str:
    """`followup_targets` as the code before session 30 created it: today's table without `every_kind` (the kinds
    were a list written whole)."""
    [table] = [statement for statement in SERVICE_SCHEMA.split(";") if "EXISTS followup_targets " in statement]
    old = table.replace(",\n    every_kind  INTEGER", "")
    assert "every_kind" not in old
    return old


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def old_targets(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A read-model database whose webhooks were registered by the code before session 30, on SQLite or PostgreSQL:
    one without `kinds` before session 29 (the default: every kind there was then), one without `kinds` in session
    29 (every kind, `escalation.watched` included), one that named a single kind."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else f"sqlite:///{tmp_path}/rm.db"
    db = open_database(url)
    with db.transaction() as tx:
        tx.execute(targets_before_session_30())
        for target_id, kinds in [
            ("wh_default_before_29", '["queue.item_added", "deadline.approaching"]'),
            ("wh_default_of_29", '["queue.item_added", "deadline.approaching", "escalation.watched"]'),
            ("wh_named", '["deadline.approaching"]'),
        ]:
            tx.execute(
                "INSERT INTO followup_targets VALUES (?, ?, 'webhook', 'https://1.1.1.1/hook', 's', ?, 1, 'admin', ?)",
                (target_id, KUPANG, kinds, instant(MONDAY)),
            )
    install_service_tables(db)
    yield db
    db.close()


def test_a_webhook_registered_for_everything_before_watches_existed_hears_of_watches_after_the_upgrade(old_targets):
    """A webhook registered before `escalation.watched` existed, without naming kinds, was given the list of every
    kind there was then, and never heard of a watch unless registered again. A registration that asked for
    everything gets the kinds added since; one that named its kinds keeps them."""
    watch = Notification(notification_id("watch"), ESCALATION_WATCHED, KUPANG, "LAP-W-1", {}, MONDAY)
    with old_targets.transaction() as tx:
        assert record_notification(tx, watch)
        told = tx.fetchall("SELECT target_id FROM followup_deliveries ORDER BY target_id")
    assert told == [("wh_default_before_29",), ("wh_default_of_29",)]
    install_service_tables(old_targets)  # the next start judges nothing again
    with old_targets.read() as tx:
        kinds = {stats.target.target_id: (stats.target.every_kind, stats.target.kinds)
                 for stats in list_targets(tx, KUPANG)}
    assert kinds == {
        "wh_default_before_29": (True, KINDS),
        "wh_default_of_29": (True, KINDS),
        "wh_named": (False, (DEADLINE_APPROACHING,)),
    }


def test_a_webhook_registered_without_kinds_receives_every_kind_and_one_that_named_some_only_those(followup):
    every = followup.client.post(f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin(),
                                 json={"url": "https://1.1.1.1/every"})
    named = followup.client.post(f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin(),
                                 json={"url": "https://1.1.1.1/named", "kinds": [ITEM_ADDED]})
    assert (every.status_code, named.status_code) == (201, 201)
    assert (every.json()["every_kind"], every.json()["kinds"]) == (True, list(KINDS))
    assert (named.json()["every_kind"], named.json()["kinds"]) == (False, [ITEM_ADDED])
    with followup.ctx.db.transaction() as tx:
        for kind in KINDS:
            record_notification(tx, Notification(notification_id(kind), kind, KUPANG, "LAP-K-1", {}, MONDAY))
        told = tx.fetchall(
            "SELECT t.address, n.kind FROM followup_deliveries d JOIN followup_targets t USING (target_id) "
            "JOIN followup_notifications n USING (notification_id) ORDER BY t.address, n.kind"
        )
    assert told == sorted([("https://1.1.1.1/every", kind) for kind in KINDS] + [("https://1.1.1.1/named", ITEM_ADDED)])


def test_a_webhook_naming_a_kind_twice_is_registered_with_each_kind_once_in_the_order_named(followup):
    """`kinds` is a set in substance: ["queue.item_added", "queue.item_added"] was stored and shown as given."""
    response = followup.client.post(
        f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin(),
        json={"url": "https://1.1.1.1/twice", "kinds": [DEADLINE_APPROACHING, ITEM_ADDED, DEADLINE_APPROACHING,
                                                          ITEM_ADDED]},
    )
    assert response.status_code == 201, response.text
    assert (response.json()["every_kind"], response.json()["kinds"]) == (False, [DEADLINE_APPROACHING, ITEM_ADDED])
    with followup.ctx.db.transaction() as tx:
        stored = tx.scalar("SELECT kinds FROM followup_targets")
        # One registered so before session 30 reads as if each kind were named once.
        tx.execute("INSERT INTO followup_targets VALUES ('wh_before_30', ?, 'webhook', 'https://1.1.1.1/old', 's', "
                   "?, 1, 'admin', ?, 0)", (KUPANG, json.dumps([ITEM_ADDED, ITEM_ADDED]), instant(MONDAY)))
    assert json.loads(stored) == [DEADLINE_APPROACHING, ITEM_ADDED]
    listed = followup.client.get(f"/api/agencies/{KUPANG}/webhooks", headers=followup.admin())
    assert sorted(hook["kinds"] for hook in listed.json()) == [[DEADLINE_APPROACHING, ITEM_ADDED], [ITEM_ADDED]]


def test_the_national_admin_is_told_why_it_registers_no_webhook_and_where_it_follows_the_national_level(followup):
    """Webhooks are an agency's own, registered by its admin for its queue (docs/followup.md): the national admin's
    refusal was a bare "role admin_national may not take the action agency.configure_follow_up". It now says whose
    webhooks are and where the national admin follows what they would tell it; nothing is registered."""
    national = followup.bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    for agency_id in (NATIONAL_ADMIN_AGENCY, KUPANG):
        refused = followup.client.post(f"/api/agencies/{agency_id}/webhooks", headers=national,
                                       json={"url": "https://1.1.1.1/panrb"})
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        detail = refused.json()["detail"]
        assert "registered by that agency's own admin (admin_agency)" in detail, detail
        assert f"GET /api/queues/{NATIONAL_ADMIN_AGENCY}/escalated" in detail, detail
        assert "GET /api/stream" in detail, detail
    with followup.ctx.db.read() as tx:
        assert tx.scalar("SELECT count(*) FROM followup_targets") == 0


def test_an_unknown_webhook_id_is_quoted_cut_in_the_not_found(followup):
    """The 404 quoted the id from the URL whole, however long (a 5,000-character id made a 10 KB answer), where
    problems quote input cut (`lapor.problems.quoted`)."""
    response = followup.client.delete(f"/api/agencies/{KUPANG}/webhooks/{'x' * 5000}", headers=followup.admin())
    assert response.status_code == 404
    assert response.json()["detail"] == f"agency {KUPANG} has no active webhook {'x' * 63}…"
