"""The live stream over a real HTTP connection: resumption after a disconnect with Last-Event-ID, what each
role sees of an event, filters."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from sse_starlette import ServerSentEvent

from lapor.app import create_app
from lapor.auth import CLOCK_SKEW, TokenService
from lapor.clock import ManualClock, SystemClock
from lapor.complaint import ComplaintState
from lapor.principal import Principal, Role
from lapor.privacy import MASKED_BY, MASKING
from lapor.settings import load_settings
from lapor.store import NewEvent, RecordedEvent
from schemas import events as ev
from services.reporting import stream
from services.reporting.service import SERVICE
from tests.conftest import wait_until
from tests.reporting.conftest import LiveServer, live_server
from tests.reporting.scenario import DAY0, OFFICER, TOKEN_HASH, staff

NIK = "3201234567890001"
PHONE = "081234567890"


@dataclass
class Live:
    server: LiveServer
    tokens: TokenService
    tokens_secret: str

    @property
    def clock(self) -> ManualClock:
        clock = self.server.ctx.clock
        assert isinstance(clock, ManualClock)
        return clock

    def headers(self, role: Role, **scope: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.issue(role, **scope)}"}

    def append(self, tracking_id: str, *models: ev.EventData, metadata: dict[str, str] | None = None) -> int:
        """Append to the report one minute later; returns the last position."""
        self.clock.advance(timedelta(minutes=1))
        stream = f"complaint-{tracking_id}"
        events = [model.to_new_event(metadata=metadata or OFFICER) for model in models]
        return self.server.ctx.store.append(stream, events, self.server.ctx.store.stream_version(stream)).last_position


@contextmanager
def live_app(data: Path, store: str | None = None, *, background: bool = True) -> Iterator[Live]:
    settings = load_settings(data=data, training=True, store=store)
    app = create_app(settings, [SERVICE], background=background)
    with live_server(app) as server:
        secret = settings.signing_secret()
        service = Live(server, TokenService(secret, SystemClock()), secret)
        service.clock.set(DAY0)
        yield service


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_app(tmp_path / "var") as service:
        yield service


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live_on(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Live]:
    """`live` on the embedded SQLite store, or on a fresh PostgreSQL schema."""
    store = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    with live_app(tmp_path / "var", store) as service:
        yield service


class Feed:
    """One open SSE connection, read event by event as an EventSource reads it: an `id` without data sets the id a
    reconnection sends (`last_id`) and is not an event."""

    def __init__(self, response: httpx2.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()
        self.opened_at: int | None = None
        self.last_id: int | None = None

    def next(self) -> dict[str, Any]:
        event: dict[str, Any] = {}
        for line in self._lines:
            if line.startswith(": from position "):
                self.opened_at = int(line.rsplit(" ", 1)[1])
            elif line.startswith("id: "):
                event["id"] = self.last_id = int(line[4:])
            elif line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = orjson.loads(line[6:])
            elif line == "" and "data" in event:
                return event
            elif line == "":
                event = {}
        raise AssertionError("the stream ended")

    def take(self, count: int) -> list[dict[str, Any]]:
        return [self.next() for _ in range(count)]

    def until_closed(self) -> list[dict[str, Any]]:
        """Every event the server sends until it ends the response."""
        events: list[dict[str, Any]] = []
        while True:
            try:
                events.append(self.next())
            except AssertionError:
                return events

    def opening(self) -> int:
        """Read the feed's first message (its opening, up to the blank line that ends it); returns where it
        opened."""
        for line in self._lines:
            if line.startswith(": from position "):
                self.opened_at = int(line.rsplit(" ", 1)[1])
            elif line.startswith("id: "):
                self.last_id = int(line[4:])
            elif line == "" and self.opened_at is not None:
                return self.opened_at
        raise AssertionError("the stream ended before it opened")

    def wait_open(self) -> int:
        """Read up to the opening comment: from then on every commit reaches this feed."""
        for line in self._lines:
            if line.startswith(": from position "):
                self.opened_at = int(line.rsplit(" ", 1)[1])
                return self.opened_at
        raise AssertionError("the stream ended before it opened")


def open_feed(live: Live, headers: dict[str, str] | list[tuple[str, str]], query: str = "") -> Any:
    client = httpx2.Client(base_url=live.server.url, timeout=httpx2.Timeout(20.0))
    stream = client.stream("GET", f"/api/stream{query}", headers=headers)

    class Opened:
        def __enter__(self) -> Feed:
            response = stream.__enter__()
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            return Feed(response)

        def __exit__(self, *exc: object) -> None:
            stream.__exit__(*exc)
            client.close()

    return Opened()


def first_seen(live: Live, agency_id: str, *, after: int) -> tuple[int, str, str]:
    """The first event the agency's liaison officer is sent after the position `after`: (id, tracking id, type)."""
    with open_feed(live, {**live.headers(Role.liaison, agency_id=agency_id), "Last-Event-ID": str(after)}) as feed:
        [seen] = feed.take(1)
    return seen["id"], seen["data"]["tracking_id"], seen["event"]


def internal_note(live: Live, tracking_id: str, agency_id: str, text: str) -> int:
    """A note between the officers of the agency holding the report (public=False); returns its position."""
    note = ev.FollowUpPosted(follow_up_id=f"fu-{tracking_id}", text=text, public=False)
    return live.append(tracking_id, note, metadata=staff(agency_id))


def submitted(tracking_id: str, region: str = "53.71", **fields: Any) -> ev.ComplaintSubmitted:
    return ev.ComplaintSubmitted(
        tracking_id=tracking_id, kind="pengaduan", title="Pungli di puskesmas",
        body=f"Saya (NIK {NIK}) dimintai uang tambahan. Hubungi saya di {PHONE}.", region_code=region,
        channel="web", reporter_ref="pii_reporter0001", reporter_token_hash=TOKEN_HASH,
        verification_due=DAY0 + timedelta(days=3), **fields,
    )


def to_agency(agency_id: str) -> list[ev.EventData]:
    return [
        ev.ComplaintVerified(classification="pengaduan", category="kesehatan"),
        ev.ComplaintDisposed(agency_id=agency_id, follow_up_due=DAY0 + timedelta(days=8),
                             ombudsman_offer_due=DAY0 + timedelta(days=90)),
    ]


def test_a_client_that_reconnects_with_last_event_id_gets_exactly_what_it_missed(live: Live):
    live.append("LAP-RESUME-1", submitted("LAP-RESUME-1"), *to_agency("pemda-53.71"))
    live.append("LAP-RESUME-1", ev.DispositionAccepted(agency_id="pemda-53.71"), metadata=staff("pemda-53.71"))
    admin = live.headers(Role.admin_national)
    with open_feed(live, {**admin, "Last-Event-ID": "0"}) as feed:
        first = feed.take(3)
    assert [e["event"] for e in first] == ["ComplaintSubmitted", "ComplaintVerified", "ComplaintDisposed"]
    # While disconnected: the rest of the story goes on.
    live.append("LAP-RESUME-1", ev.FollowUpPosted(follow_up_id="fu-1", text="Sedang diperiksa."),
                metadata=staff("pemda-53.71"))
    last = live.append("LAP-RESUME-2", submitted("LAP-RESUME-2"))
    with open_feed(live, {**admin, "Last-Event-ID": str(first[-1]["id"])}) as feed:
        rest = feed.take(3)
    assert [e["event"] for e in rest] == ["DispositionAccepted", "FollowUpPosted", "ComplaintSubmitted"]
    ids = [e["id"] for e in first + rest]
    assert ids == sorted(set(ids))  # in order, nothing twice
    assert ids[-1] == last
    assert [e["data"]["version"] for e in first + rest][:5] == [0, 1, 2, 3, 4]


def test_a_feed_ends_when_its_token_runs_out_and_resumes_with_a_fresh_one(live: Live):
    """A feed carries the rights of the token it was opened with, so it must not outlive it: it ends with a
    `token_expired` event whose id is where a fresh token resumes, without a gap or a repeat."""
    live.append("LAP-EXPIRY-1", submitted("LAP-EXPIRY-1"), *to_agency("pemda-53.71"))
    # Accepted for a few more seconds: issued so that its exp plus the allowed clock skew is just ahead.
    issued_then = TokenService(live.tokens_secret, ManualClock(SystemClock().now() - CLOCK_SKEW))
    short = {"Authorization": f"Bearer {issued_then.issue(Role.admin_national, ttl=timedelta(seconds=4))}"}
    with open_feed(live, {**short, "Last-Event-ID": "0"}) as feed:
        before = feed.until_closed()
    *sent, expired = before
    assert expired["event"] == "token_expired"
    assert "fresh token" in expired["data"]["detail"]
    assert expired["id"] == (sent[-1]["id"] if sent else 0)
    assert all(e["event"] != "token_expired" for e in sent)
    # A stale token cannot reopen it; a fresh one resumes exactly after the expiry's id.
    refused = httpx2.get(f"{live.server.url}/api/stream", headers={**short, "Last-Event-ID": str(expired["id"])},
                         timeout=10)
    assert refused.status_code == 401
    last = live.append("LAP-EXPIRY-1", ev.DispositionAccepted(agency_id="pemda-53.71"),
                       metadata=staff("pemda-53.71"))
    fresh = {**live.headers(Role.admin_national), "Last-Event-ID": str(expired["id"])}
    with open_feed(live, fresh) as feed:
        rest = feed.take(4 - len(sent))
    assert [e["event"] for e in sent + rest] == [
        "ComplaintSubmitted", "ComplaintVerified", "ComplaintDisposed", "DispositionAccepted",
    ]
    assert rest[-1]["id"] == last


def test_a_token_that_runs_out_while_a_page_is_sent_ends_the_feed_at_the_event_sent_last(live: Live):
    """Session 32: the token's end and its revocation were looked for before a page was sent, not while: the rest of
    a page begun went out after them (a page of a busy feed is sent while its client reads it). The feed is driven
    here one event at a time, its token's clock moved on between two events of one page."""
    reports = [f"LAP-PAGE-{n}" for n in range(3)]
    positions = [live.append(tracking_id, submitted(tracking_id)) for tracking_id in reports]
    clock = ManualClock(SystemClock().now())
    tokens = TokenService(live.tokens_secret, clock)
    principal = Principal("admin-pusat", Role.admin_national, valid_until=clock.now() + timedelta(minutes=1))
    store = live.server.ctx.store

    async def follow() -> list[ServerSentEvent]:
        feed = stream.live_events(store, stream.StreamHub(store), principal, stream.StreamFilter(), 0, tokens)
        sent = [await anext(feed), await anext(feed)]  # where it starts, and the first report
        clock.advance(timedelta(minutes=2))
        sent += [item async for item in feed]
        return sent

    start, first, *rest = asyncio.run(follow())
    assert (start.comment, first.event, first.id) == ("from position 0", "ComplaintSubmitted", str(positions[0]))
    assert [(item.event, item.id) for item in rest] == [(stream.TOKEN_EXPIRED, str(positions[0]))]


def test_a_feed_ends_when_its_token_is_revoked_and_sends_nothing_after(live: Live):
    """A revoked token's feed sends nothing committed after the revocation: its last event is `token_revoked`,
    and the token cannot reopen it."""
    live.append("LAP-REVOKE-1", submitted("LAP-REVOKE-1"), *to_agency("pemda-53.71"))
    token = live.tokens.issue(Role.liaison, subject="watcher", agency_id="pemda-53.71")
    watcher = {"Authorization": f"Bearer {token}"}
    with open_feed(live, {**watcher, "Last-Event-ID": "0"}) as feed:
        seen = feed.take(1)  # an agency sees the report from its disposition on
        revoked = httpx2.post(
            f"{live.server.url}/api/tokens/revocations", json={"token": token, "reason": "account closed"},
            headers=live.headers(Role.admin_agency, agency_id="pemda-53.71"), timeout=10,
        )
        assert revoked.status_code == 201
        live.append("LAP-REVOKE-1", ev.DispositionAccepted(agency_id="pemda-53.71"), metadata=staff("pemda-53.71"))
        rest = feed.until_closed()
    assert [e["event"] for e in seen] == ["ComplaintDisposed"]
    assert [e["event"] for e in rest] == ["token_revoked"]
    assert rest[0]["id"] == seen[-1]["id"]
    assert "revoked" in rest[0]["data"]["detail"]
    refused = httpx2.get(f"{live.server.url}/api/stream", headers=watcher, timeout=10)
    assert refused.status_code == 401


def test_a_feed_opened_without_last_event_id_starts_at_the_head(live: Live):
    live.append("LAP-OLD-1", submitted("LAP-OLD-1"))
    with open_feed(live, live.headers(Role.operator)) as feed:
        assert feed.wait_open() == live.server.ctx.store.head_position()
        live.append("LAP-NEW-1", submitted("LAP-NEW-1"))
        [event] = feed.take(1)
    assert event["data"]["tracking_id"] == "LAP-NEW-1"


def test_a_feed_that_sent_nothing_yet_resumes_without_missing_what_came_while_it_was_away(live: Live):
    """A browser's EventSource reconnects by itself, with the last `id` it was sent as Last-Event-ID; it cannot
    read comments. A feed opened at the head must give it an id at once, or a dashboard whose connection drops
    before anything happened comes back at the new head and never sees what was committed in between."""
    live.append("LAP-QUIET-1", submitted("LAP-QUIET-1"))
    admin = live.headers(Role.admin_national)
    with open_feed(live, admin) as feed:
        opened = feed.opening()
        resume = feed.last_id  # the connection drops now
    assert resume == opened
    missed = live.append("LAP-QUIET-2", submitted("LAP-QUIET-2"))  # while the connection was down
    again = admin if resume is None else {**admin, "Last-Event-ID": str(resume)}
    with open_feed(live, again) as feed:
        feed.wait_open()
        live.append("LAP-QUIET-3", submitted("LAP-QUIET-3"))
        [first] = feed.take(1)
    assert (first["id"], first["data"]["tracking_id"]) == (missed, "LAP-QUIET-2")


def test_each_role_sees_what_the_privacy_policy_lets_it_see(live: Live):
    live.append("LAP-KUPANG-1", submitted("LAP-KUPANG-1"), *to_agency("pemda-53.71"))
    live.append("LAP-KUPANG-1", ev.DispositionAccepted(agency_id="pemda-53.71"),
                ev.FollowUpPosted(follow_up_id="fu-1", text=f"Pelapor bisa dihubungi di {PHONE}."),
                metadata=staff("pemda-53.71"))
    live.append("LAP-MALANG-1", submitted("LAP-MALANG-1", region="35.73", confidential=True),
                *to_agency("pemda-35.73"))
    since = {"Last-Event-ID": "0"}

    with open_feed(live, {**live.headers(Role.admin_national), **since}) as feed:
        national = feed.take(8)
    submission = national[0]["data"]
    assert submission["data"]["reporter_ref"] == "pii_reporter0001"
    assert NIK in submission["data"]["body"]
    assert national[4]["data"]["data"]["text"].endswith(f"{PHONE}.")

    with open_feed(live, {**live.headers(Role.admin_agency, agency_id="pemda-53.71"), **since}) as feed:
        kupang = feed.take(3)  # from the disposition on: before it the report was with national routing
        live.append("LAP-MALANG-1", ev.DispositionAccepted(agency_id="pemda-35.73"), metadata=staff("pemda-35.73"))
        live.append("LAP-KUPANG-1", ev.ComplaintResolved(resolution="Sudah ditegur.",
                                                         feedback_due=DAY0 + timedelta(days=20)),
                    metadata=staff("pemda-53.71"))
        after = feed.take(1)
    assert [e["event"] for e in kupang] == ["ComplaintDisposed", "DispositionAccepted", "FollowUpPosted"]
    assert all(e["data"]["tracking_id"] == "LAP-KUPANG-1" for e in kupang + after)  # never Malang's
    follow_up = kupang[2]["data"]["data"]["text"]
    assert PHONE not in follow_up
    assert "0812" in follow_up  # masked, not removed: the officer still sees a number was given
    assert after[0]["event"] == "ComplaintResolved"

    with open_feed(live, {**live.headers(Role.operator), **since}) as feed:
        oversight = feed.take(8)
    malang = [e for e in oversight if e["data"]["tracking_id"] == "LAP-MALANG-1"]
    assert malang  # confidential reports are not hidden from oversight
    assert "reporter_ref" not in malang[0]["data"]["data"]
    assert NIK not in malang[0]["data"]["data"]["body"]


def test_an_agency_that_returned_a_report_no_longer_follows_it(live: Live):
    """A report escalated within an agency (unit to agency: routing names the agency itself) and then returned
    as bukan wewenang: the escalation ended with that holding, so the next agency's handling, its internal notes
    included, is not the returning agency's to see. What its offices hold, it sees."""
    kupang, kemenkes = "pemda-53.71", "kemenkes"
    live.append("LAP-BACK-1", submitted("LAP-BACK-1"), *to_agency(kupang))
    live.append("LAP-BACK-1", ev.DispositionAccepted(agency_id=kupang),
                ev.ComplaintAssigned(unit_id=f"{kupang}/dinkes"), metadata=staff(kupang))
    live.append("LAP-BACK-1", ev.ComplaintEscalated(
        kind="follow_up_overdue", reason="Tindak lanjut terlambat.", from_level="unit", to_level="agency",
        to_agency_id=kupang, automatic=True, follow_up_due=DAY0 + timedelta(days=12)))
    returned = live.append("LAP-BACK-1", ev.DispositionReturned(agency_id=kupang, reason="Bukan wewenang kota."),
                           metadata=staff(kupang))
    live.append("LAP-BACK-1", *to_agency(kemenkes)[1:])
    live.append("LAP-BACK-1", ev.DispositionAccepted(agency_id=kemenkes),
                ev.FollowUpPosted(follow_up_id="fu-k1", text="Catatan internal: audit gudang.", public=False),
                metadata=staff(kemenkes))
    # Then a report disposed straight to one of Kupang's offices, which Kupang's liaison does see.
    office = live.append("LAP-BACK-2", submitted("LAP-BACK-2"), *to_agency(f"{kupang}/dinkes"))

    assert first_seen(live, kupang, after=returned) == (office, "LAP-BACK-2", "ComplaintDisposed")


def test_a_province_that_watched_a_report_no_longer_follows_it_once_the_ombudsman_takes_it_over(live: Live):
    """The takeover starts a new holding, as a disposition does: the province the city's overdue follow-up was
    escalated to kept seeing the Ombudsman's handling, internal notes included (found in a bug hunt)."""
    kupang, ntt, ombudsman = "pemda-53.71", "pemda-53", "ombudsman-ri"
    live.append("LAP-OMB-1", submitted("LAP-OMB-1"), *to_agency(kupang))
    live.append("LAP-OMB-1", ev.DispositionAccepted(agency_id=kupang), metadata=staff(kupang))
    live.append("LAP-OMB-1", ev.ComplaintEscalated(
        kind="follow_up_overdue", reason="Tidak ada tindak lanjut.", from_level="agency", to_level="regional",
        to_agency_id=ntt, automatic=True, follow_up_due=DAY0 + timedelta(days=20)))
    live.append("LAP-OMB-1", ev.ComplaintEscalated(
        kind="ombudsman_offer", reason="60 hari kerja.", from_level="regional", to_level="regional", automatic=True))
    live.append("LAP-OMB-1", ev.OmbudsmanConsentGiven(), metadata={"actor": "reporter:LAP-OMB-1", "role": "reporter"})
    takeover = live.append("LAP-OMB-1", ev.ComplaintEscalated(
        kind="ombudsman", reason="Pelapor setuju.", from_level="regional", to_level="ombudsman",
        to_agency_id=ombudsman, automatic=True, follow_up_due=DAY0 + timedelta(days=70)))
    internal_note(live, "LAP-OMB-1", ombudsman, "Catatan internal Ombudsman.")
    # Then a report of the province's own, which it does see.
    own = live.append("LAP-NTT-1", submitted("LAP-NTT-1"), *to_agency(ntt))

    assert first_seen(live, ntt, after=takeover) == (own, "LAP-NTT-1", "ComplaintDisposed")


def test_an_escalation_to_the_national_level_opens_nothing_to_kemenpanrbs_own_agency_staff(live: Live):
    """A ministry has no provincial coordinator, so its missed follow-up goes to the national level, which routing
    names `kemenpanrb`: the national admin's to watch, who sees every report anyway. KemenPAN-RB's own liaison
    officer, an agency taking dispositions like any other, followed the ministry's handling of the confidential
    report from then on, internal notes included."""
    kemenkes, kemenpanrb = "kemenkes", "kemenpanrb"
    live.append("LAP-NAT-1", submitted("LAP-NAT-1", confidential=True), *to_agency(kemenkes))
    live.append("LAP-NAT-1", ev.DispositionAccepted(agency_id=kemenkes), metadata=staff(kemenkes))
    escalated = live.append("LAP-NAT-1", ev.ComplaintEscalated(
        kind="follow_up_overdue", reason="Tindak lanjut terlambat.", from_level="agency", to_level="national",
        to_agency_id=kemenpanrb, automatic=True, follow_up_due=DAY0 + timedelta(days=20)))
    note = internal_note(live, "LAP-NAT-1", kemenkes, "Catatan internal: periksa apotek.")
    with open_feed(live, {**live.headers(Role.admin_national), "Last-Event-ID": str(escalated)}) as feed:
        assert feed.next()["id"] == note  # the national admin watches it
    # Then a report of KemenPAN-RB's own, which its liaison officer does see.
    own = live.append("LAP-PANRB-1", submitted("LAP-PANRB-1"), *to_agency(kemenpanrb))
    assert first_seen(live, kemenpanrb, after=escalated) == (own, "LAP-PANRB-1", "ComplaintDisposed")


def test_the_reporters_name_written_bare_in_a_disposition_note_does_not_reach_the_agency(live: Live):
    """The national admin knows who reported and may name them in the note to the agency; events never carry the
    identity, so the feed left the note to the detector, which does not know every name, and the agency read the
    anonymous reporter's name."""
    live.server.ctx.vault.put({"name": "Oktovianus Ndun", "phone": PHONE}, ref="pii_reporter0001")
    live.append("LAP-NOTE-1", submitted("LAP-NOTE-1", anonymous=True))
    disposed = live.append("LAP-NOTE-1", ev.ComplaintVerified(classification="pengaduan", category="kesehatan"),
                           ev.ComplaintDisposed(agency_id="pemda-53.71", note="Oktovianus Ndun minta ditelepon.",
                                                follow_up_due=DAY0 + timedelta(days=8),
                                                ombudsman_offer_due=DAY0 + timedelta(days=90)))
    agency, admin = live.headers(Role.liaison, agency_id="pemda-53.71"), live.headers(Role.admin_national)
    for headers, note in ((agency, "*** minta ditelepon."), (admin, "Oktovianus Ndun minta ditelepon.")):
        with open_feed(live, {**headers, "Last-Event-ID": str(disposed - 1)}) as feed:
            assert feed.next()["data"]["data"]["note"] == note


def test_text_intake_masked_is_sent_as_logged_and_text_logged_without_the_mark_is_masked_again(live: Live):
    """Session 29: intake masks the reporter's texts before they are logged and marks the event; the feed ran the
    detector on them again for every open feed (on `"Bu " * 3333` it takes seconds: one submission stalled every
    operator's feed), as the tracking view no longer does since session 24. Text without the mark, or under another
    detector, is masked as it always was."""
    body = "Pak Budi Santoso, HP 0812-3456-7890"
    reporter = {"actor": "reporter:LAP-MASK-1", "role": "reporter"}
    first = live.append("LAP-MASK-1", submitted("LAP-MASK-1").model_copy(update={"body": body}),
                        metadata={**reporter, MASKED_BY: MASKING})
    live.append("LAP-MASK-2", submitted("LAP-MASK-2").model_copy(update={"body": body}), metadata=reporter)
    with open_feed(live, {**live.headers(Role.operator), "Last-Event-ID": str(first - 1)}) as feed:
        marked, unmarked = feed.take(2)
    assert marked["data"]["data"]["body"] == body
    assert unmarked["data"]["data"]["body"] == "Pak B*** S***, HP 0812****7890"


def test_an_event_the_lifecycle_refuses_is_left_out_and_the_feed_goes_on(live: Live):
    """Such an event gets into a log only by a bug or by hand (the projections park it for an operator). Nobody can
    be told who may see it, so nobody is sent it; it ended every feed at its page, for good (found in a bug hunt)."""
    first = live.append("LAP-OK-1", submitted("LAP-OK-1"))
    live.append("LAP-BAD-1", submitted("LAP-BAD-1"))
    live.append("LAP-BAD-1", ev.DispositionAccepted(agency_id="pemda-53.71"), metadata=staff("pemda-53.71"))
    after = live.append("LAP-OK-2", submitted("LAP-OK-2"), *to_agency("pemda-53.71"))
    admin = live.headers(Role.admin_national)
    with open_feed(live, {**admin, "Last-Event-ID": str(first - 1)}) as feed:
        seen = feed.take(4)
    assert [(e["data"]["tracking_id"], e["event"]) for e in seen] == [
        ("LAP-OK-1", "ComplaintSubmitted"), ("LAP-BAD-1", "ComplaintSubmitted"),
        ("LAP-OK-2", "ComplaintSubmitted"), ("LAP-OK-2", "ComplaintVerified"),
    ]
    with open_feed(live, {**admin, "Last-Event-ID": str(after - 1)}) as feed:  # resumed past it
        [last] = feed.take(1)
    assert last["id"] == after


def test_a_feed_opened_after_the_others_ended_gets_a_refused_reports_events_before_the_refusal(live: Live):
    """The report's events before the one the fold refuses are sent; only that one and its later ones are left out.
    The window (emptied when the last feed of the process ends) kept its memory of the refusal, and the next feed
    placed it before the report: every event of the report was left out of it, its submission too, which the feeds
    before had been sent from the same Last-Event-ID (session 31)."""
    first = live.append("LAP-BAD-2", submitted("LAP-BAD-2"))
    live.append("LAP-BAD-2", ev.DispositionAccepted(agency_id="pemda-53.71"), metadata=staff("pemda-53.71"))
    last = live.append("LAP-OK-4", submitted("LAP-OK-4"))
    window = stream.hub_of(live.server.ctx).window

    def feed_from_before_the_report() -> list[tuple[str, str]]:
        seen = []
        with open_feed(live, {**live.headers(Role.admin_national), "Last-Event-ID": str(first - 1)}) as feed:
            while not seen or seen[-1]["id"] != last:
                seen.append(feed.next())
        wait_until(lambda: window._start is None)  # the feed ended, and with it the window's placing
        return [(e["data"]["tracking_id"], e["event"]) for e in seen]

    expected = [("LAP-BAD-2", "ComplaintSubmitted"), ("LAP-OK-4", "ComplaintSubmitted")]
    assert feed_from_before_the_report() == expected
    assert feed_from_before_the_report() == expected


@pytest.mark.parametrize(("column", "value", "sent"), [
    ("data", b"{bukan json", ["ComplaintSubmitted"]),
    ("recorded_at", "kemarin sore", ["ComplaintSubmitted"]),
    ("metadata", b"\xff", ["ComplaintSubmitted", "ComplaintDisposed"]),
    ("metadata", b"[1]", ["ComplaintSubmitted", "ComplaintDisposed"]),
])
def test_an_event_changed_in_the_database_past_reading_is_left_out_and_the_feed_goes_on(
    live: Live, column: str, value: bytes | str, sent: list[str]
):
    """SQLite keeps whatever bytes it is given: an event changed by SQL on the store's file (the integrity check names
    it) failed the read of its whole page, and ended every feed that came to it, again on each reconnection with its
    Last-Event-ID. It is left out, and so is what cannot be folded without it (its report's later events, when its
    data or time cannot be read); the feed goes on."""
    first = live.append("LAP-ALT-1", submitted("LAP-ALT-1"))
    live.append("LAP-ALT-1", *to_agency("pemda-53.71"))
    later = live.append("LAP-ALT-2", submitted("LAP-ALT-2"))
    live.server.caught_up()
    with sqlite3.connect(live.server.ctx.settings.data / "events.db") as db:
        db.execute(f"UPDATE events SET {column} = ? WHERE stream = 'complaint-LAP-ALT-1' AND version = 1", (value,))
    with open_feed(live, {**live.headers(Role.operator), "Last-Event-ID": str(first - 1)}) as feed:
        seen = feed.take(len(sent) + 1)
    assert [(e["data"]["tracking_id"], e["event"]) for e in seen] == [
        *(("LAP-ALT-1", event_type) for event_type in sent), ("LAP-ALT-2", "ComplaintSubmitted")]
    assert seen[-1]["id"] == later


def test_an_event_of_a_schema_newer_than_the_code_is_left_out_and_the_feed_goes_on(live: Live):
    """Mid-upgrade, a newer writer's event: the fold cannot read it (UpcastError, not a lifecycle refusal)."""
    live.append("LAP-NEW-1", submitted("LAP-NEW-1"))
    newer = ev.ComplaintVerified(classification="pengaduan", category="Jalan").to_new_event(metadata=OFFICER)
    live.server.ctx.store.append("complaint-LAP-NEW-1", [NewEvent(newer.type, newer.data, newer.metadata,
                                                                   schema_version=99)], 0)
    after = live.append("LAP-OK-3", submitted("LAP-OK-3"))
    with open_feed(live, {**live.headers(Role.admin_national), "Last-Event-ID": str(after - 3)}) as feed:
        seen = feed.take(2)
    assert [(e["data"]["tracking_id"], e["event"]) for e in seen] == [
        ("LAP-NEW-1", "ComplaintSubmitted"), ("LAP-OK-3", "ComplaintSubmitted")]


def test_the_feed_can_be_narrowed_by_type_region_and_agency(live: Live):
    live.append("LAP-KUPANG-2", submitted("LAP-KUPANG-2"), *to_agency("pemda-53.71"))
    live.append("LAP-MALANG-2", submitted("LAP-MALANG-2", region="35.73"), *to_agency("pemda-35.73"))
    last = live.append("LAP-MALANG-3", submitted("LAP-MALANG-3", region="35.73"), *to_agency("pemda-35.73"))
    admin = {**live.headers(Role.admin_national), "Last-Event-ID": "0"}
    with open_feed(live, admin, "?type=ComplaintDisposed&region=35") as feed:
        disposals = feed.take(2)
    assert [e["data"]["tracking_id"] for e in disposals] == ["LAP-MALANG-2", "LAP-MALANG-3"]
    assert disposals[-1]["id"] == last
    live.server.caught_up()  # an agency filter names an agency the reports know
    with open_feed(live, admin, "?agency=pemda-53.71") as feed:
        [kupang] = feed.take(1)
    assert (kupang["event"], kupang["data"]["tracking_id"]) == ("ComplaintDisposed", "LAP-KUPANG-2")


def test_events_a_feed_filters_out_still_move_its_last_event_id(live: Live):
    """A feed narrowed to one region, opened before a run of another region's events, is sent none of them, but
    its Last-Event-ID moves past them: a reconnection starts after them and the next event of its region is the
    first thing it gets."""
    live.append("LAP-MALANG-7", submitted("LAP-MALANG-7", region="35.73"))
    admin = live.headers(Role.admin_national)
    with open_feed(live, {**admin, "Last-Event-ID": "0"}, "?region=53") as feed:
        passed = live.append("LAP-MALANG-8", submitted("LAP-MALANG-8", region="35.73"), *to_agency("pemda-35.73"))
        lines = []
        for line in feed._lines:  # up to the id that names the last event passed over, or the first keep-alive
            lines.append(line)
            if line == f"id: {passed}" or line.startswith(": ping"):
                break
    assert lines[-1] == f"id: {passed}", lines
    assert not [line for line in lines if line.startswith("data:")]
    with open_feed(live, {**admin, "Last-Event-ID": str(passed)}, "?region=53") as feed:
        feed.wait_open()
        kupang = live.append("LAP-KUPANG-8", submitted("LAP-KUPANG-8"))
        [first] = feed.take(1)
    assert (first["id"], first["data"]["tracking_id"]) == (kupang, "LAP-KUPANG-8")


@pytest.mark.parametrize("event_type", ["ComplaintDispatched", "complaintdisposed", ""])
def test_a_type_the_catalogue_does_not_name_is_refused(live: Live, event_type: str):
    """A misspelt type is a validation problem naming the parameter, not a feed that stays silent forever."""
    response = httpx2.get(f"{live.server.url}/api/stream", params={"type": ["ComplaintDisposed", event_type]},
                          headers=live.headers(Role.admin_national), timeout=10)  # fmt: skip
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["location"][:2] == ["query", "type"]


@pytest.mark.parametrize("agency", ["pemda-99.99", "pemda-53.71/..", "a" * 300])
def test_an_agency_no_one_knows_is_refused(live: Live, agency: str):
    """Like a misspelt type: before, the feed opened and never sent anything."""
    live.append("LAP-KUPANG-9", submitted("LAP-KUPANG-9"), *to_agency("pemda-53.71"))
    live.server.caught_up()
    response = httpx2.get(f"{live.server.url}/api/stream", params={"agency": agency},
                          headers=live.headers(Role.admin_national), timeout=10)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["location"][:2] == ["query", "agency"]


def test_an_agency_may_not_narrow_the_feed_to_another_agency(live: Live):
    response = httpx2.get(f"{live.server.url}/api/stream?agency=pemda-35.73",
                          headers=live.headers(Role.liaison, agency_id="pemda-53.71"), timeout=10)
    assert response.status_code == 403


@pytest.mark.parametrize(
    "resume",
    [
        {"Last-Event-ID": str(2**64)}, {"since": str(2**63)}, {"Last-Event-ID": "-1"},
        {"Last-Event-ID": "1_0"}, {"since": "+1"},
    ],
)
def test_a_position_no_log_can_hold_is_a_validation_problem(live: Live, resume: dict[str, str]):
    """A resume position beyond 64 bits, or not in decimal digits, is refused before the feed opens, not left to
    break it or read as another position ("1_0" would be 10)."""
    headers = {**live.headers(Role.admin_national), **{k: v for k, v in resume.items() if k != "since"}}
    params = {k: v for k, v in resume.items() if k == "since"}
    response = httpx2.get(f"{live.server.url}/api/stream", params=params, headers=headers, timeout=10)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/validation"


@pytest.mark.parametrize(
    ("resume", "location"), [("Last-Event-ID", ["header", "last-event-id"]), ("since", ["query", "since"])]
)
def test_a_position_past_the_head_is_refused_rather_than_waited_for(live: Live, resume: str, location: list[str]):
    """No event was ever sent with an id past the head (a client of another log, a store restored from backup):
    waiting until the log reaches it would skip every event before it without a word."""
    head = live.append("LAP-AHEAD-1", submitted("LAP-AHEAD-1"))
    headers = live.headers(Role.admin_national)
    params = {}
    if resume == "since":
        params["since"] = str(head + 1)
    else:
        headers["Last-Event-ID"] = str(head + 1)
    response = httpx2.get(f"{live.server.url}/api/stream", headers=headers, params=params, timeout=10)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"][0]["location"] == location
    assert f"head is {head}" in problem["detail"]
    # The head itself is where a client that has seen everything resumes: it gets the next event.
    with open_feed(live, {**live.headers(Role.admin_national), "Last-Event-ID": str(head)}) as feed:
        assert feed.wait_open() == head
        following = live.append("LAP-AHEAD-1", ev.ComplaintVerified(classification="pengaduan", category="kesehatan"))
        [event] = feed.take(1)
    assert event["id"] == following


@pytest.fixture
def folds(monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[str, int]]:
    """How many times the live stream folded each complaint event, by (stream, version): the real fold runs."""
    folded: Counter[tuple[str, int]] = Counter()
    evolve, fold = stream.evolve, stream.fold

    def counting_evolve(state: ComplaintState, event: RecordedEvent) -> ComplaintState:
        folded[event.stream, event.version] += 1
        return evolve(state, event)

    def counting_fold(events: list[RecordedEvent]) -> ComplaintState | None:
        folded.update((event.stream, event.version) for event in events)
        return fold(events)

    monkeypatch.setattr(stream, "evolve", counting_evolve)
    monkeypatch.setattr(stream, "fold", counting_fold)
    return folded


def test_feeds_open_together_share_the_reads_folds_and_detections_and_each_gets_its_own_view(
    live_on: Live, folds: Counter[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
):
    """Session 29: every open feed read the same pages from the store, folded every event (reading a report's
    earlier events the first time it met it) and ran the detector on the officials' texts, each on its own: with
    many dashboards open, N times the work of one. The process does it once; what each feed is sent is as before."""
    live = live_on
    detected: Counter[str] = Counter()
    mask_text = stream.mask_text

    def counting_mask_text(text: str) -> tuple[str, bool]:
        detected[text] += 1
        return mask_text(text)

    monkeypatch.setattr(stream, "mask_text", counting_mask_text)
    live.append("LAP-SHARE-A", submitted("LAP-SHARE-A"))  # before the feeds open: its history is read once
    note = f"Catatan internal: pelapor minta dihubungi di {PHONE}."
    answer = f"Petugas akan menghubungi {PHONE} besok."
    feeds = {
        "national": ({}, ""),
        "kupang": ({"agency_id": "pemda-53.71"}, ""),
        "oversight": ({}, "?type=ComplaintSubmitted&type=FollowUpPosted"),
        "malang": ({}, "?region=35"),
    }
    roles = {"national": Role.admin_national, "kupang": Role.liaison, "oversight": Role.operator,
             "malang": Role.admin_national}
    with ExitStack() as stack:
        opened = {name: stack.enter_context(open_feed(live, live.headers(roles[name], **scope), query))
                  for name, (scope, query) in feeds.items()}
        for feed in opened.values():
            feed.wait_open()
        a = [live.append("LAP-SHARE-A", *to_agency("pemda-53.71"))]
        a.insert(0, a[0] - 1)
        a.append(live.append("LAP-SHARE-A", ev.DispositionAccepted(agency_id="pemda-53.71"),
                             metadata=staff("pemda-53.71")))
        a.append(internal_note(live, "LAP-SHARE-A", "pemda-53.71", note))
        a.append(live.append("LAP-SHARE-A", ev.FollowUpPosted(follow_up_id="fu-share-2", text=answer),
                             metadata=staff("pemda-53.71")))
        b_last = live.append("LAP-SHARE-B", submitted("LAP-SHARE-B", region="35.73", confidential=True),
                             *to_agency("pemda-35.73"))
        b = [b_last - 2, b_last - 1, b_last]
        c = live.append("LAP-SHARE-C", submitted("LAP-SHARE-C"))
        # What each is sent, by the policy: the national admin everything; Kupang's liaison its report from the
        # disposition on; oversight the types it asked for, the confidential report included; Malang's region.
        expected = {
            "national": [*a, *b, c],
            "kupang": a[1:],
            "oversight": [a[3], a[4], b[0], c],
            "malang": b,
        }
        received = {name: opened[name].take(len(expected[name])) for name in feeds}
    for name, ids in expected.items():
        assert [event["id"] for event in received[name]] == ids, name
    texts = {name: [e["data"]["data"].get("text") for e in received[name] if e["event"] == "FollowUpPosted"]
             for name in ("national", "kupang", "oversight")}
    assert texts["national"] == [note, answer]  # the national admin reads them as written
    for name in ("kupang", "oversight"):
        assert len(texts[name]) == 2, name
        assert all(PHONE not in text and "0812" in text for text in texts[name]), name
    assert NIK not in received["oversight"][-1]["data"]["data"]["body"]
    # Each event folded once in the process, the report met with a history read once; each text detected once,
    # though two feeds read it masked.
    assert folds
    assert set(folds.values()) == {1}, folds
    assert detected[note] == detected[answer] == 1, detected


def test_a_feed_resumed_from_before_the_shared_window_gets_everything_in_order(
    live_on: Live, monkeypatch: pytest.MonkeyPatch
):
    """The window keeps only the most recent events: a feed resuming from before it reads and folds on its own
    until it reaches it, then goes on from it, nothing missed, nothing twice."""
    live = live_on
    monkeypatch.setattr(stream, "WINDOW", 4)
    monkeypatch.setattr(stream, "PAGE", 3)
    admin = live.headers(Role.admin_national)
    opened_at = live.append("LAP-WIN-0", submitted("LAP-WIN-0"))
    with open_feed(live, admin) as head:  # keeps the window following the head
        assert head.wait_open() == opened_at
        ids = []
        for n in range(4):
            last = live.append(f"LAP-WIN-{n + 1}", submitted(f"LAP-WIN-{n + 1}"), *to_agency("pemda-53.71"))
            ids += [last - 2, last - 1, last]
        assert [e["id"] for e in head.take(len(ids))] == ids
        start = stream.hub_of(live.server.ctx).window._start
        assert start is not None
        assert start > opened_at  # the first events are no longer in it
        with (open_feed(live, {**admin, "Last-Event-ID": str(opened_at)}) as resumed,
              open_feed(live, {**live.headers(Role.liaison, agency_id="pemda-53.71"),
                               "Last-Event-ID": str(opened_at)}) as agency):
            early = resumed.take(len(ids))
            disposals = agency.take(4)
            later = live.append("LAP-WIN-1", ev.DispositionAccepted(agency_id="pemda-53.71"),
                                metadata=staff("pemda-53.71"))
            [after] = resumed.take(1)
            [agency_after] = agency.take(1)
    assert [e["id"] for e in early] == ids
    assert [(e["id"], e["event"]) for e in disposals] == [(ids[n], "ComplaintDisposed") for n in (2, 5, 8, 11)]
    assert after["id"] == agency_after["id"] == later


def test_feeds_following_the_head_while_reports_are_committed_get_each_event_once_in_order(
    live_on: Live, folds: Counter[tuple[str, int]]
):
    """Commits in many small appends while five feeds of different roles and filters follow the head: the window
    is read by whichever feed comes first while the others take from it; each is sent exactly its events, in
    order, once."""
    live = live_on
    agencies = ("pemda-53.71", "pemda-35.73")
    feeds = {
        "national": (Role.admin_national, {}, ""),
        "verified": (Role.admin_national, {}, "?type=ComplaintVerified"),
        "kupang": (Role.liaison, {"agency_id": agencies[0]}, ""),
        "malang": (Role.liaison, {"agency_id": agencies[1]}, ""),
        "oversight": (Role.operator, {}, ""),
    }
    committed: list[tuple[int, str, str]] = []  # (position, type, agency)

    def commit() -> None:
        for n in range(12):
            agency = agencies[n % 2]
            first = live.append(f"LAP-RUSH-{n}", submitted(f"LAP-RUSH-{n}", region=agency.removeprefix("pemda-")))
            last = live.append(f"LAP-RUSH-{n}", *to_agency(agency))
            committed.extend([(first, "ComplaintSubmitted", agency), (last - 1, "ComplaintVerified", agency),
                              (last, "ComplaintDisposed", agency)])

    with ExitStack() as stack:
        opened = {name: stack.enter_context(open_feed(live, live.headers(role, **scope), query))
                  for name, (role, scope, query) in feeds.items()}
        for feed in opened.values():
            feed.wait_open()
        writer = threading.Thread(target=commit)
        writer.start()
        writer.join(60)
        assert len(committed) == 36  # the writer went through
        expected = {
            "national": [position for position, _, _ in committed],
            "verified": [position for position, kind, _ in committed if kind == "ComplaintVerified"],
            "kupang": [position for position, kind, agency in committed
                       if kind == "ComplaintDisposed" and agency == agencies[0]],
            "malang": [position for position, kind, agency in committed
                       if kind == "ComplaintDisposed" and agency == agencies[1]],
            "oversight": [position for position, _, _ in committed],
        }
        received = {name: [e["id"] for e in opened[name].take(len(ids))] for name, ids in expected.items()}
        # Nothing more: a last event after the rush is the next thing each is sent.
        closing = live.append("LAP-RUSH-0", ev.DispositionAccepted(agency_id=agencies[0]), metadata=staff(agencies[0]))
        following = {name: opened[name].next()["id"] for name in ("national", "kupang", "oversight")}
    assert received == expected
    assert following == dict.fromkeys(following, closing)
    assert len(folds) == len(committed) + 1
    assert set(folds.values()) == {1}, folds


def test_a_feed_served_by_an_extra_http_worker_is_woken_by_a_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The extra processes of `lapor up --workers N` start no subscription and no background loop that acts, but the
    hub only wakes its own process's feeds (docs/platform.md: it runs in every process): it was not started there
    either, so a feed such a worker served got a commit only when its idle look came round (every 15 s; here
    longer than its token lasts, so it would end without it)."""
    monkeypatch.setattr(stream, "IDLE_RECHECK", 600.0)
    with live_app(tmp_path / "var", background=False) as live:
        issued_then = TokenService(live.tokens_secret, ManualClock(SystemClock().now() - CLOCK_SKEW))
        short = {"Authorization": f"Bearer {issued_then.issue(Role.admin_national, ttl=timedelta(seconds=10))}"}
        with open_feed(live, short) as feed:
            feed.wait_open()
            committed = live.append("LAP-WORKER-1", submitted("LAP-WORKER-1"))
            sent = feed.until_closed()
    assert [(e["event"], e["id"]) for e in sent] == [("ComplaintSubmitted", committed), ("token_expired", committed)]


def test_a_store_failure_while_a_reports_history_is_read_ends_the_feed_and_drops_nothing(
    live: Live, monkeypatch: pytest.MonkeyPatch
):
    """A read of a report's earlier events that fails because the store cannot be used just now (a lock not granted,
    the connection lost) was taken for an event the fold refuses: the report's later events were left out of the
    feed for good, and, the work being shared, of every feed of the process, reconnections included. The feed ends
    with the failure instead, and a reconnection with its Last-Event-ID gets them. (The failure is made by the
    store's read of that report failing once; the real read runs otherwise.)"""
    live.append("LAP-BLIP-1", submitted("LAP-BLIP-1"))  # met by the feed only after it opened: its history is read
    store = live.server.ctx.store
    read_stream = store.read_stream
    failed: list[str] = []

    def out_of_reach_once(stream: str, from_version: int = 0, limit: int | None = None) -> list[RecordedEvent]:
        if stream == "complaint-LAP-BLIP-1" and not failed:
            failed.append(stream)
            raise sqlite3.OperationalError("database is locked")
        return read_stream(stream, from_version, limit)

    monkeypatch.setattr(store, "read_stream", out_of_reach_once)
    def short() -> dict[str, str]:  # a feed that ends by itself within seconds, whatever it waits for
        issued_then = TokenService(live.tokens_secret, ManualClock(SystemClock().now() - CLOCK_SKEW))
        return {"Authorization": f"Bearer {issued_then.issue(Role.admin_national, ttl=timedelta(seconds=6))}"}

    with open_feed(live, short()) as feed:
        opened = feed.wait_open()
        last = live.append("LAP-BLIP-1", *to_agency("pemda-53.71"))
        with contextlib.suppress(httpx2.HTTPError):
            feed.until_closed()
    assert failed
    resume = feed.last_id if feed.last_id is not None else opened
    with open_feed(live, {**short(), "Last-Event-ID": str(resume)}) as feed:
        rest = feed.until_closed()
    assert [(e["id"], e["event"]) for e in rest[:-1]] == [(last - 1, "ComplaintVerified"), (last, "ComplaintDisposed")]


@pytest.mark.parametrize("second", ["0", "7", ""])
def test_last_event_id_sent_twice_with_different_values_is_refused(live: Live, second: str):
    """FastAPI took the first of two Last-Event-ID headers silently, where a query parameter given twice is refused
    (`lapor.limits.known_query_parameters`): a client, or a proxy adding its own, resumed from a position nobody
    chose (session 31). The same value twice is one position, and passes."""
    head = live.append("LAP-TWICE-1", submitted("LAP-TWICE-1"))
    headers = [*live.headers(Role.admin_national).items(), ("Last-Event-ID", str(head)), ("Last-Event-ID", second)]
    with httpx2.stream("GET", f"{live.server.url}/api/stream", headers=headers, timeout=10) as response:
        assert response.status_code == 422  # before: 200, a feed resumed after the first one's position
        assert response.headers["content-type"] == "application/problem+json"
        problem = orjson.loads(response.read())
    assert [error["location"] for error in problem["errors"]] == [["header", "last-event-id"]]
    assert "Last-Event-ID given more than once" in problem["detail"]


def test_last_event_id_sent_twice_with_the_same_value_resumes_there(live: Live):
    first = live.append("LAP-TWICE-2", submitted("LAP-TWICE-2"))
    resume = [*live.headers(Role.admin_national).items(), ("Last-Event-ID", str(first)), ("Last-Event-ID", str(first))]
    with open_feed(live, resume) as feed:
        assert feed.wait_open() == first
        following = live.append("LAP-TWICE-2", ev.ComplaintVerified(classification="pengaduan", category="kesehatan"))
        [event] = feed.take(1)
    assert event["id"] == following


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_last_event_id_is_a_validation_problem_naming_the_header(live: Live, value: str):
    """Sent raw (httpx refuses a value of spaces; the server strips them, so it arrives empty)."""
    host, port = live.server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/api/stream", headers={**live.headers(Role.admin_national), "Last-Event-ID": value})
        response = connection.getresponse()
        assert response.status == 422
        assert response.getheader("content-type") == "application/problem+json"
        problem = orjson.loads(response.read())
    finally:
        connection.close()
    assert problem["errors"] == [{"location": ["header", "last-event-id"], "type": "int_parsing",
                                  "message": "must be a whole number in decimal digits (0-9)"}]


def test_a_feed_whose_client_stops_reading_is_ended_and_resumes_without_a_gap(live: Live,
                                                                               monkeypatch: pytest.MonkeyPatch):
    """A client that keeps its connection open and reads nothing (a frozen tab, a stuck proxy) held its feed for
    ever once the connection's buffers were full, past its token's end: the feed waited at a send. Now a message
    waiting SEND_TIMEOUT for it ends the feed; what the client took before is whole, and a reconnection with the
    last id it took gets the next event."""
    monkeypatch.setattr(stream, "SEND_TIMEOUT", 1.0)
    hub = stream.hub_of(live.server.ctx)
    host, port = live.server.url.removeprefix("http://").split(":")
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server's buffers fill soon
    stalled.settimeout(10)
    with stalled:
        stalled.connect((host, int(port)))
        token = live.tokens.issue(Role.admin_national)
        stalled.sendall(f"GET /api/stream?since=0 HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
                        .encode())
        wait_until(lambda: len(hub._listeners) == 1)
        # About 13 MB of events, more than the connection's buffers take (~3 MB on loopback), and never read.
        store, body = live.server.ctx.store, "Mohon segera ditindaklanjuti. " * 300
        for number in range(1500):
            report = submitted(f"LAP-STALL-{number}").model_copy(update={"body": body})
            store.append(f"complaint-LAP-STALL-{number}", [report.to_new_event(metadata=OFFICER)], -1)
        wait_until(lambda: not hub._listeners)  # the feed ended, its client still reading nothing
        received = b""
        while chunk := stalled.recv(1 << 20):  # what was sent before; then the server's close, not a wait
            received += chunk
    taken = [event["id"] for event in _whole_events(received.decode())]
    assert 0 < len(taken) < 1500
    assert taken == sorted(set(taken))
    with open_feed(live, {**live.headers(Role.admin_national), "Last-Event-ID": str(taken[-1])}) as feed:
        [following] = feed.take(1)
    assert following["data"]["tracking_id"] == f"LAP-STALL-{len(taken)}"


def _whole_events(text: str) -> list[dict[str, Any]]:
    """The events of a raw HTTP/1.1 chunked SSE response that arrived whole (up to the blank line that ends one, as
    an EventSource takes them); the chunks' size lines and the headers are no field and are skipped."""
    events, event = [], {}
    for line in text.split("\r\n"):
        if line.startswith("id: "):
            event["id"] = int(line[4:])
        elif line.startswith("data: "):
            event["data"] = line[6:]
        elif line == "":
            if "data" in event:
                events.append(event)
            event = {}
    return events
