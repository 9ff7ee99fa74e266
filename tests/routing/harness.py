"""Routing without HTTP: the real store and read models on a temporary directory (or PostgreSQL), a ManualClock
set to the moment a test needs, the service's own subscriptions run on demand, and its scheduler ticked by
hand. Other services' events (intake's submission, followup's acceptance, ...) are appended the way those
services do: a schemas model through the command runner, as the role that takes that action."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from lapor.auth import TokenService, reporter_token_hash
from lapor.calendar import WorkingCalendar
from lapor.clock import JAKARTA, ManualClock
from lapor.commands import run_command
from lapor.complaint import ComplaintState, fold
from lapor.context import ServiceContext
from lapor.db import open_database
from lapor.limits import RateLimits
from lapor.observability import Metrics
from lapor.policy import Sp4nPolicy
from lapor.principal import NATIONAL_ADMIN_AGENCY, Principal, Role
from lapor.settings import load_settings
from lapor.states import ComplaintStates
from lapor.store import RecordedEvent, open_store
from lapor.subscriptions import SubscriptionRunner
from schemas.events import ComplaintSubmitted, EventData
from services.routing.handlers import DeadlineScheduler
from services.routing.seed import seed_directory
from services.routing.service import subscriptions

ADMIN = Principal(subject="admin-telaah", role=Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
TOKEN_HASH = "0" * 64


def wib(year: int, month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    """A moment in Jakarta time."""
    return datetime(year, month, day, hour, minute, tzinfo=JAKARTA)


def agency_principal(agency_id: str, role: Role = Role.admin_agency) -> Principal:
    return Principal(subject=f"{role.value}@{agency_id}", role=role, agency_id=agency_id)


class Routing:
    def __init__(
        self, data: Path, start: datetime, *, store_url: str | None = None, policy: dict[str, Any] | None = None
    ):
        self.data = data
        self.clock = clock = ManualClock(start)
        settings = load_settings(data=data, store=store_url, policy=policy or {})
        calendar = WorkingCalendar()
        store = open_store(settings.store, clock=clock)
        self.ctx = ServiceContext(
            settings=settings,
            clock=clock,
            store=store,
            db=open_database(settings.readmodels),
            calendar=calendar,
            policy=Sp4nPolicy.from_overrides(settings.policy, calendar=calendar),
            metrics=Metrics(),
            tokens=TokenService("x" * 32, clock),
            rate_limits=RateLimits(settings.limits, secret="x" * 32),
            states=ComplaintStates(store),
        )
        seed_directory(self.ctx)
        self.runners = [
            SubscriptionRunner(store, self.ctx.db, subscription, clock=clock)
            for subscription in subscriptions(self.ctx)
        ]
        self.scheduler = DeadlineScheduler(self.ctx)
        self.catch_up()

    @property
    def store(self) -> Any:
        return self.ctx.store

    def close(self) -> None:
        self.ctx.close()

    # -- time and the service's own machinery --------------------------------------------------------------

    def at(self, moment: datetime) -> None:
        self.clock.set(moment)

    def advance(self, **delta: float) -> None:
        self.clock.advance(timedelta(**delta))

    def catch_up(self) -> None:
        for runner in self.runners:
            runner.run_until_caught_up()

    def tick(self) -> int:
        """One scheduler tick on caught-up read models; returns how many events it appended."""
        self.catch_up()
        appended = self.scheduler.tick()
        self.catch_up()
        return appended

    # -- reports --------------------------------------------------------------------------------------------

    def submit(self, tracking_id: str, **details: Any) -> None:
        submit_report(self.ctx, tracking_id, **details)

    def append(self, tracking_id: str, *events: EventData, by: Principal = ADMIN) -> None:
        append_as(self.ctx, tracking_id, by, *events)

    def decide(self, tracking_id: str, decision: Any, by: Principal = ADMIN) -> None:
        """Run a routing decision `(state, now) -> [EventData]` as the national admin."""
        run_command(
            self.ctx, f"complaint-{tracking_id}", lambda state, now: [e.to_new_event() for e in decision(state, now)],
            principal=by,
        )

    def events(self, tracking_id: str) -> list[RecordedEvent]:
        return self.store.read_stream(f"complaint-{tracking_id}")

    def types(self, tracking_id: str) -> list[str]:
        return [event.type for event in self.events(tracking_id)]

    def escalations(self, tracking_id: str) -> list[dict[str, Any]]:
        return [event.data for event in self.events(tracking_id) if event.type == "ComplaintEscalated"]

    def state(self, tracking_id: str) -> ComplaintState:
        state = fold(self.events(tracking_id))
        assert state is not None
        return state


def submit_report(
    ctx: ServiceContext,
    tracking_id: str,
    *,
    region_code: str = "53.71",
    category: str | None = None,
    channel: str = "web",
    suggested_agency_id: str | None = None,
    title: str = "Jalan rusak di depan sekolah",
    confidential: bool = False,
    reporter_token: str | None = None,
    reporter_ref: str | None = None,
) -> None:
    """What intake appends for a new report, with its verification deadline from the policy."""
    now = ctx.clock.now()
    event = ComplaintSubmitted(
        tracking_id=tracking_id,
        kind="pengaduan",
        title=title,
        body="Jalan berlubang besar sejak dua bulan, membahayakan anak-anak.",
        category=category,
        region_code=region_code,
        channel=channel,
        confidential=confidential,
        reporter_token_hash=reporter_token_hash(reporter_token) if reporter_token else TOKEN_HASH,
        reporter_ref=reporter_ref,
        suggested_agency_id=suggested_agency_id,
        verification_due=ctx.policy.verification_due(now),
    )
    principal = Principal(subject=f"reporter:{tracking_id}", role=Role.reporter, tracking_id=tracking_id)
    run_command(
        ctx, f"complaint-{tracking_id}", lambda state, at: [event.to_new_event()], principal=principal,
        must_exist=False,
    )


def append_as(ctx: ServiceContext, tracking_id: str, by: Principal, *events: EventData) -> None:
    """Append another service's events (followup's acceptance, a return, ...) as the principal who acts."""
    run_command(ctx, f"complaint-{tracking_id}", lambda state, at: [e.to_new_event() for e in events], principal=by)


def of_kind(events: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["kind"] == kind]
