"""Composition root: builds the FastAPI app of one service, or of all four for the embedded mode.

`create_app(settings, services)` opens one `ServiceContext`, includes each service's router beside the
platform's own routes (/healthz, /readyz, /metrics, /problems, and /api/training in training mode), installs
the middleware (correlation id, logs and metrics outermost; then the 500 guard; then the input guard; then the
unlinking of requests about anonymous reports from their client, `lapor.privacy.ConcealReporterMiddleware`; then
HEAD as GET: `lapor.head`) and the problem handlers, and ties the lifecycle to the app's lifespan: subscriptions and
background loops start with it and stop with it, then the store is closed. The embedded app *includes* the four
routers in one app rather than mounting four sub-apps: one port, one OpenAPI document at /docs, one /readyz for
everything.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI

from lapor.caching import NoStoreMiddleware
from lapor.context import BackgroundLoop, ServiceContext, ServiceDefinition
from lapor.db import Database
from lapor.head import HeadMiddleware
from lapor.lease import LEASE_CHECK, Lease
from lapor.limits import ForwardedProtoMiddleware, InputGuardMiddleware, known_query_parameters
from lapor.observability import Readiness, RequestObservabilityMiddleware, check_readiness, health_router
from lapor.privacy import ConcealReporterMiddleware, ReportRequests
from lapor.problems import InternalErrorMiddleware, install_problem_handlers, problem_router
from lapor.settings import Settings
from lapor.store import error_kind
from lapor.subscriptions import RETRY_WAIT_MAX, SubscriptionRunner, transient_failure
from lapor.tokens import tokens_router
from lapor.training import training_router

log = logging.getLogger("lapor.app")

SERVICE_NAMES = ("intake", "routing", "followup", "reporting")
# An idle subscription notices stop() only when its wait for new events times out; new events wake it at once
# either way, so this bounds how long a shutdown waits, not how fast events are handled.
SUBSCRIPTION_IDLE_WAIT = 0.25
# Under load a subscription reads at most this often, so it handles the events of that moment in one transaction
# (a view lags by at most this much more); after a quiet spell an event is read at once.
SUBSCRIPTION_GATHER = 0.05


def load_service(name: str) -> ServiceDefinition:
    """`services/<name>/service.py`'s SERVICE."""
    if name not in SERVICE_NAMES:
        raise ValueError(f"unknown service {name!r}; expected one of {', '.join(SERVICE_NAMES)}")
    definition = importlib.import_module(f"services.{name}.service").SERVICE
    assert isinstance(definition, ServiceDefinition)
    return definition


def load_services(names: Iterable[str] = SERVICE_NAMES) -> list[ServiceDefinition]:
    return [load_service(name) for name in names]


RETRY_WAIT_MIN = 0.05  # seconds a loop waits before it tries again after a transient failure (doubling)


class _RunningLoop:
    """A background loop in its own thread. An exclusive one (it acts: appends events, records or sends notifications)
    runs only while it holds its lease on the read-model database (`lapor.lease`), so in one process at a time; in
    any other it stands by and takes over when the holder stops or dies."""

    def __init__(self, loop: BackgroundLoop, db: Database) -> None:
        self.name = loop.name
        self._loop = loop
        self._lease = db.lease(f"loop-{loop.name}") if loop.exclusive else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"loop:{loop.name}", daemon=True)
        self.failed = False
        self.leased = False  # whether it runs now under its lease (always False for a loop that needs none)
        self.retrying: str | None = None  # while it waits to try again after a transient failure: why
        self.ticks = loop.ticks  # how its ticks went, for /metrics

    def _run(self) -> None:
        try:
            if self._lease is None:
                self._retrying(lambda: self._loop.run(self._stop))
            else:
                lease = self._lease

                def turn() -> None:
                    if lease.take(self._stop, f"background loop {self.name}"):
                        self._take_turn(lease)

                try:
                    self._retrying(turn)
                finally:
                    lease.release()
        except Exception:
            self.failed = True  # /readyz reports the loop as stopped
            log.exception("background loop %s stopped", self.name)

    def _retrying(self, turn: Callable[[], object]) -> None:
        """Run `turn` until a stop. One that fails because the database cannot be used just now (a lease's or a
        read's connection lost, the server restarting: `transient_failure`) is tried again rather than the loop
        ended for good: a standby's lease connection ended left nobody to run the loop once its holder went, and the
        live stream's hub (no lease) meeting it left no open feed of its process woken again (bug hunts, session 26)."""
        delay = RETRY_WAIT_MIN
        while not self._stop.is_set():
            try:
                turn()
            except Exception as error:
                if not transient_failure(error):
                    raise
                log.warning("background loop %s: %s; trying again in %.2f s", self.name, error, delay)
                self.retrying = error_kind(error)  # /readyz says so while it waits (the driver's words: above)
                self._stop.wait(delay)
                self.retrying = None
                delay = min(delay * 2, RETRY_WAIT_MAX)
            else:
                delay = RETRY_WAIT_MIN

    def _take_turn(self, lease: Lease) -> None:
        """Run the loop while the lease holds."""
        self.leased = True
        turn = threading.Event()  # set at a stop, or when the lease is lost: the loop returns
        watcher = threading.Thread(target=self._watch, args=(lease, turn), name=f"lease:{self.name}", daemon=True)
        watcher.start()
        try:
            self._loop.run(turn)
        finally:
            turn.set()
            watcher.join()
            self.leased = False

    def _watch(self, lease: Lease, turn: threading.Event) -> None:
        """End the loop's turn at a stop request or as soon as its lease is found lost."""
        while not turn.is_set():
            if self._stop.wait(LEASE_CHECK):
                turn.set()
            elif not turn.is_set() and not lease.held():
                log.warning("background loop %s: lost its lease; standing by", self.name)
                turn.set()

    @property
    def standby(self) -> bool:
        return self._lease is not None and self.alive and not self.leased

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self.failed

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


class Runtime:
    """What runs beside the HTTP server: the services' subscriptions and background loops.

    With `background=False` (the extra HTTP workers of `lapor up --workers N`) no subscription and no loop that acts
    is started: another process runs them; the loops that serve their own process only (the live stream's hub) are.
    The runners are still built, never started, so that /readyz reports their lag from the checkpoints that process
    commits."""

    def __init__(self, ctx: ServiceContext, services: Sequence[ServiceDefinition], *, background: bool = True) -> None:
        self.ctx = ctx
        self.services = list(services)
        self.background = background
        self.runners: list[SubscriptionRunner] = []
        self.loops: list[_RunningLoop] = []

    def start(self) -> None:
        if self.background:
            for service in self.services:
                if service.on_start is not None:
                    service.on_start(self.ctx)
        names: set[str] = set()
        for service in self.services:
            for subscription in service.subscriptions(self.ctx):
                if subscription.name in names:
                    raise ValueError(f"two subscriptions are named {subscription.name!r}; checkpoints would clash")
                names.add(subscription.name)
                # Resumes from the persisted checkpoint: nothing already handled is replayed.
                self.runners.append(
                    SubscriptionRunner(
                        self.ctx.store,
                        self.ctx.db,
                        subscription,
                        clock=self.ctx.clock,
                        idle_wait=SUBSCRIPTION_IDLE_WAIT,
                        gather=SUBSCRIPTION_GATHER,
                    )
                )
        for service in self.services:
            # A worker (`background=False`) runs only the loops that serve its own process (`exclusive=False`: the
            # live stream's hub, which wakes this process's feeds); until session 29 it ran none, and its feeds
            # saw a commit only at their idle look, every 15 s.
            self.loops.extend(_RunningLoop(loop, self.ctx.db) for loop in service.background(self.ctx)
                              if self.background or not loop.exclusive)
        if self.background:
            for runner in self.runners:
                runner.start()
        for loop in self.loops:
            loop.start()
        if not self.background:
            return
        log.info(
            "started %d subscriptions and %d background loops for %s",
            len(self.runners),
            len(self.loops),
            ", ".join(s.name for s in self.services) or "no services",
        )

    def seed_demo(self) -> None:
        for service in self.services:
            if service.seed_demo is not None:
                log.info("seeding demo data for %s", service.name)
                service.seed_demo(self.ctx)

    def stop(self) -> None:
        # Signal everything first, then wait: each one finishes its current wait in parallel with the others.
        for loop in self.loops:
            loop.request_stop()
        for runner in self.runners:
            runner.request_stop()
        for loop in self.loops:
            loop.stop()
        for runner in self.runners:
            runner.stop()
        log.info("stopped subscriptions at %s", {r.name: r.checkpoint() for r in self.runners})

    def readiness(self) -> Readiness:
        settings = self.ctx.settings
        return check_readiness(
            self.ctx.store, self.runners, self.loops, settings.readiness_max_lag, settings.readiness_wait
        )


def create_app(
    settings: Settings, services: Sequence[ServiceDefinition], *, seed_demo: bool = False, background: bool = True
) -> FastAPI:
    """The app serving `services` (one for `lapor serve`, all four for `lapor up`). The store and read-model
    database are opened now and closed when the app's lifespan ends. `seed_demo` runs each service's demo
    seeding once its subscriptions are running (seeding must be idempotent: `lapor up --demo` may be run
    again on the same data). `background=False` serves HTTP only (see `Runtime`)."""
    ctx = ServiceContext.open(settings)
    runtime = Runtime(ctx, services, background=background)
    try:
        return _compose(ctx, runtime, services, seed_demo)
    except BaseException:
        ctx.close()
        raise


def _compose(
    ctx: ServiceContext, runtime: Runtime, services: Sequence[ServiceDefinition], seed_demo: bool
) -> FastAPI:
    settings = ctx.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await to_thread.run_sync(runtime.start)
            if seed_demo:
                await to_thread.run_sync(runtime.seed_demo)
            yield
        finally:
            await to_thread.run_sync(runtime.stop)
            ctx.close()

    names = [service.name for service in services]
    app = FastAPI(
        title="LAPOR" if len(names) != 1 else f"LAPOR {names[0]}",
        description="SP4N-LAPOR! complaint handling: " + (", ".join(names) or "platform only"),
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.context = ctx
    app.state.runtime = runtime
    install_problem_handlers(app)
    # The probes (/healthz, /readyz, /metrics) answer whatever query a load balancer or scraper adds; every other
    # route refuses a query name it does not declare (`known_query_parameters`).
    app.include_router(health_router(ctx.metrics, runtime.readiness))
    strict = [Depends(known_query_parameters)]
    app.include_router(problem_router, dependencies=strict)
    app.include_router(tokens_router(), dependencies=strict)
    if settings.training:
        app.include_router(training_router(), dependencies=strict)
    # The services' routes are matched as one list in which a route ending in a parameter that spans segments
    # (`{...:path}`, `{...:agency}`) comes after every other, so such a catch-all never takes a deeper path of
    # another service (the `agency` convertor already leaves followup's /api/agencies/{id}/webhooks alone:
    # `lapor.paths`). The sort is stable, so each service's own order stands otherwise.
    services_router = APIRouter()
    for service in services:
        services_router.routes.extend(service.router(ctx).routes)
    services_router.routes.sort(key=lambda route: getattr(route, "path", "").endswith((":path}", ":agency}")))
    app.include_router(services_router, dependencies=strict)
    ctx.metrics.watch(
        ctx.store, lambda: runtime.runners if runtime.background else [], lambda: runtime.loops,
        wait=settings.readiness_wait,
    )
    # add_middleware wraps what is there: the last added runs first.
    report_requests = ReportRequests(services_router.routes)
    app.add_middleware(HeadMiddleware)
    app.add_middleware(ConcealReporterMiddleware, report_requests=report_requests)
    app.add_middleware(
        InputGuardMiddleware, request_limits=settings.limits, field_limits=settings.field_limits,
        report_requests=report_requests,
    )
    app.add_middleware(InternalErrorMiddleware)
    app.add_middleware(NoStoreMiddleware)  # around every answer of the API, the problems above included
    app.add_middleware(RequestObservabilityMiddleware, metrics=ctx.metrics)
    if settings.limits.trust_forwarded_for:
        app.add_middleware(ForwardedProtoMiddleware)
    return app
