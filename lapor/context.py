"""What a service is given, and what it gives back.

A service is a `ServiceDefinition`: a router, its subscriptions, optional background loops (deadline
schedulers) and optional demo seeding, each built from the `ServiceContext` — the process's one store, one
read-model database, one clock, calendar, policy, metrics, token service and rate limits. `lapor.app` does
the wiring and the lifecycle; a service module only declares:

```python
SERVICE = ServiceDefinition(
    name="routing",
    router=build_router,                        # (ctx) -> APIRouter
    subscriptions=lambda ctx: [Subscription("routing.queue", handle)],
    background=lambda ctx: [BackgroundLoop.every("routing.deadlines", 30.0, lambda: check(ctx))],
    seed_demo=load_directory,
)
```

Routes reach the context through the dependencies below (`ctx: Annotated[ServiceContext, Depends(get_context)]`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from lapor.auth import TokenService
from lapor.calendar import WorkingCalendar
from lapor.clock import Clock, ManualClock, SystemClock
from lapor.db import Database, open_database
from lapor.limits import RateLimits
from lapor.observability import Metrics, TickRecord
from lapor.policy import Sp4nPolicy
from lapor.revocation import Revocations
from lapor.settings import SECRET_FILE, Settings
from lapor.states import ComplaintStates
from lapor.store import EventStore, open_store
from lapor.store.open import shown_url, store_exists
from lapor.store.vault import Vault
from lapor.subscriptions import Subscription

log = logging.getLogger("lapor.context")


@dataclass
class ServiceContext:
    settings: Settings
    clock: Clock
    store: EventStore
    db: Database
    calendar: WorkingCalendar
    policy: Sp4nPolicy
    metrics: Metrics
    tokens: TokenService
    rate_limits: RateLimits
    states: ComplaintStates  # complaint states folded once for every projection of the process

    @property
    def vault(self) -> Vault:
        return self.store.vault

    @classmethod
    def open(cls, settings: Settings) -> ServiceContext:
        """Open the store and read-model database named by `settings`. Training mode runs on a ManualClock
        that starts at the real time and only moves when an admin moves it."""
        clock: Clock = ManualClock() if settings.training else SystemClock()
        calendar = (
            WorkingCalendar.from_file(settings.holidays_file) if settings.holidays_file else WorkingCalendar()
        )
        policy = Sp4nPolicy.from_overrides(settings.policy, calendar=calendar)
        # A kept secret is read now, so a bad one is refused before anything opens; one to be made is made only
        # once the store and the read models have opened. Session 31: a store that would not open (a data directory
        # holding something else) was refused with a new `<data>/secret` left behind, by lapor rebuild too.
        kept = settings.secret is not None or settings.production or (settings.data / SECRET_FILE).exists()
        secret = settings.signing_secret() if kept else None
        new = not store_exists(settings.store)
        store = open_store(settings.store, clock=clock, answer_timeout=settings.store_timeout)
        if new:
            # Said out loud: a mistyped LAPOR_DATA or LAPOR_STORE otherwise starts an empty installation quietly.
            log.warning("created a new, empty event store at %s", shown_url(settings.store))
        try:
            db = open_database(settings.readmodels, answer_timeout=settings.store_timeout)
        except BaseException:
            store.close()
            raise
        try:
            if secret is None:
                secret = settings.signing_secret()
            # Tokens are judged on real time, and so are their revocations (see TokenService).
            revocations = Revocations(db, SystemClock())
            revocations.start()
            tokens = TokenService(secret, SystemClock(), revocations=revocations)
        except BaseException:
            db.close()
            store.close()
            raise
        metrics = Metrics()
        return cls(
            settings=settings,
            clock=clock,
            store=store,
            db=db,
            calendar=calendar,
            policy=policy,
            metrics=metrics,
            tokens=tokens,
            rate_limits=RateLimits(
                settings.limits,
                secret=secret,
                on_storage_failure=lambda kind: metrics.rate_limit_storage_failures.labels(kind=kind).inc(),
            ),
            states=ComplaintStates(store),
        )

    def close(self) -> None:
        self.tokens.close()
        self.db.close()
        self.store.close()


@dataclass(frozen=True)
class BackgroundLoop:
    """A function run in its own thread until `stop` is set (it must return promptly then)."""

    name: str
    run: Callable[[threading.Event], None]
    # True for a loop that acts (appends events, records or sends notifications): it runs in one process at a time,
    # under a lease (`lapor.app`). False for one that only serves its own process (the live stream's hub).
    exclusive: bool = True
    # How its ticks went (/metrics), for a loop that runs in ticks and records them (`every`, routing's scheduler).
    ticks: TickRecord = field(default_factory=TickRecord)

    @classmethod
    def every(cls, name: str, interval: float, tick: Callable[[], object]) -> BackgroundLoop:
        """Call `tick` every `interval` seconds. A failing tick is logged, counted (`TickRecord`) and tried again next
        interval: a deadline scheduler must outlive a locked database or a bad event."""
        ticks = TickRecord()

        def run(stop: threading.Event) -> None:
            while not stop.wait(interval):
                try:
                    tick()
                except Exception as error:
                    ticks.record(error)
                    log.exception("background loop %s: tick failed", name)
                else:
                    ticks.record(None)

        return cls(name, run, ticks=ticks)


def _none(ctx: ServiceContext) -> list:
    return []


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    router: Callable[[ServiceContext], APIRouter]
    subscriptions: Callable[[ServiceContext], list[Subscription]] = field(default=_none)
    background: Callable[[ServiceContext], list[BackgroundLoop]] = field(default=_none)
    seed_demo: Callable[[ServiceContext], object] | None = None  # what it returns is ignored
    # Runs once at start, before the subscriptions and loops (e.g. reference data a service must find in the
    # store, such as routing's directory); it must be idempotent, since every start runs it.
    on_start: Callable[[ServiceContext], object] | None = None


# -- dependencies -------------------------------------------------------------------------------------------


def get_context(request: Request) -> ServiceContext:
    return request.app.state.context


Context = Annotated[ServiceContext, Depends(get_context)]
