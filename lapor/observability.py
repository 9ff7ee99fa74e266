"""Observability: Prometheus metrics, the request middleware, and /healthz, /readyz, /metrics (JSON logs: `lapor.logs`).

Every request gets a correlation id (`lapor.correlation`), one JSON log line (method, route template,
status, duration) and two metric samples. Each app has its own `CollectorRegistry`, so tests can build many
apps in one process. Subscription lag, checkpoints, handled and parked counts are read when /metrics is
scraped, not pushed, so they are never stale.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPMethod
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lapor.correlation import HEADER, accept_correlation_id, correlation_scope
from lapor.logs import logged_path
from lapor.problems import NotReady
from lapor.store.model import error_kind

if TYPE_CHECKING:
    from lapor.store import EventStore
    from lapor.subscriptions import SubscriptionRunner

access_log = logging.getLogger("lapor.access")
log = logging.getLogger("lapor.observability")

UNMATCHED_ROUTE = "<unmatched>"  # one label for every unknown path, so scanners cannot explode the series
# The methods counted under their own name; any other a client sends (an HTTP method is any token it likes) is
# counted as OTHER_METHOD, as an unknown path is counted as UNMATCHED_ROUTE (session 27: each new one was a series
# of its own, kept by Prometheus, whatever text it carried).
KNOWN_METHODS = frozenset(HTTPMethod)  # the methods HTTP defines (RFC 9110 and PATCH)
OTHER_METHOD = "<other>"
# The client address of a request that filed, read or acted on an anonymous report (`lapor.privacy.conceal_requester`):
# its line and its events share the correlation id, so the address would name the anonymous reporter (session 28).
WITHHELD_CLIENT = "withheld"
# The dependencies /readyz names when one cannot be used, and /metrics in `lapor_dependency_up`.
EVENT_STORE = "event store"
READ_MODELS = "read models"

_Read = TypeVar("_Read")


# -- metrics ------------------------------------------------------------------------------------------------


@dataclass
class TickRecord:
    """How the ticks of a periodic background loop went, for /metrics. A tick that fails is logged and tried again at
    the next one (a deadline scheduler must outlive a locked database or a bad event), whatever the failure: one that
    lasts (the store refusing the loop's appends, permission denied) as much as one that passes. Until session 30 a
    loop whose every tick failed was seen only in the log: /metrics said nothing and /readyz said ready, which it
    still does (docs/platform.md, "Failures that are tried again")."""

    failed: int = 0  # ticks failed since the process started
    failing: bool = False  # whether the last tick failed

    def record(self, error: BaseException | None) -> None:
        """A tick ended: with `error`, or well (None)."""
        self.failing = error is not None
        if error is not None:
            self.failed += 1


class LoopStatus(Protocol):
    name: str
    retrying: str | None  # the kind of failure (`error_kind`) it waits to try again after, else None
    ticks: TickRecord

    @property
    def alive(self) -> bool: ...

    @property
    def standby(self) -> bool: ...


class Metrics:
    """The app's Prometheus registry and the instruments the platform updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lapor_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lapor_http_request_duration_seconds",
            "HTTP request latency by route template and method",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.appended = Counter(
            "lapor_events_appended", "Events appended by this process, by type", ["type"], registry=self.registry
        )
        self.rate_limit_storage_failures = Counter(
            "lapor_rate_limit_storage_failures",
            "Requests whose rate limit this process counted in its own memory because the shared storage "
            "(LAPOR_LIMITS__STORAGE) could not be reached, by limit",
            ["kind"],
            registry=self.registry,
        )

    def watch(
        self, store: EventStore, runners: Callable[[], Sequence[SubscriptionRunner]],
        loops: Callable[[], Sequence[LoopStatus]] = tuple, wait: float | None = None,
    ) -> None:
        """Report the store head, each subscription's state and each background loop's lease at every scrape, waiting
        at most `wait` seconds for each database (None: the pool's own bound)."""
        self.registry.register(_SubscriptionCollector(store, runners, wait))
        self.registry.register(_LoopCollector(loops))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _SubscriptionCollector(Collector):
    """The store's head and each subscription's state, read at each scrape. Each database is waited for at most `wait`
    (`LAPOR_READINESS_WAIT`, as /readyz; None: the pool's own 30 s): a scrape must answer while a database is out of
    reach, with what it could read (session 28: on a PostgreSQL that went away it waited the pool's 30 s, and
    Prometheus's scrape timeout, 10 s by default, lost the request counts of the outage with it)."""

    def __init__(
        self, store: EventStore, runners: Callable[[], Sequence[SubscriptionRunner]], wait: float | None
    ) -> None:
        self._store = store
        self._runners = runners
        self._wait = wait

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # One head for the whole scrape, and each subscription's checkpoint, handled and parked counts from one
        # read (`SubscriptionRunner.scraped`), so the gauges of a scrape agree with each other (lag = head -
        # checkpoint, as `SubscriptionRunner.lag` computes it, from the same read). A database that cannot be read
        # leaves its gauges out, not made up (a lag needs both), and `lapor_dependency_up` says which it was.
        runners = self._runners()
        head_position = _read_for_scrape(EVENT_STORE, lambda: self._store.head_position(wait=self._wait))
        saved = _read_for_scrape(READ_MODELS, lambda: [runner.scraped(wait=self._wait) for runner in runners])
        up = GaugeMetricFamily(
            "lapor_dependency_up",
            "1 when this scrape could read the dependency, 0 when it could not (its gauges are left out then); the "
            "read models are only read, and reported, where subscriptions run",
            labels=["dependency"],
        )
        up.add_metric([EVENT_STORE], int(head_position is not None))
        if runners:
            up.add_metric([READ_MODELS], int(saved is not None))
        yield up
        if head_position is not None:
            head = GaugeMetricFamily("lapor_store_head_position", "Position of the last committed event")
            head.add_metric([], head_position)
            yield head
        families = {
            "lag": GaugeMetricFamily(
                "lapor_subscription_lag_positions", "Head position minus checkpoint", labels=["consumer"]
            ),
            "checkpoint": GaugeMetricFamily(
                "lapor_subscription_checkpoint_position", "Last position handled", labels=["consumer"]
            ),
            "handled": GaugeMetricFamily(
                "lapor_subscription_handled_events",
                "Events handled since the subscription was created (persisted with the checkpoint)",
                labels=["consumer"],
            ),
            "parked": GaugeMetricFamily(
                "lapor_subscription_parked_events", "Events parked after repeated failures", labels=["consumer"]
            ),
            "retrying": GaugeMetricFamily(
                "lapor_subscription_retrying",
                "1 while the subscription tries again after a failure that is not its handler's refusal of an event "
                "(the store or the read models out of reach), else 0",
                labels=["consumer"],
            ),
            "leased": GaugeMetricFamily(
                "lapor_subscription_leased",
                "1 while this process holds the subscription's lease and runs it, 0 while it stands by for another "
                "process that holds it (lapor.lease)",
                labels=["consumer"],
            ),
        }
        for runner in runners:  # known in this process, whatever the databases answer
            families["retrying"].add_metric([runner.name], int(runner.failure is not None))
            families["leased"].add_metric([runner.name], int(runner.leased))
        unknown = set()  # left out, not made up: a lag needs both databases
        if saved is None:
            unknown = {"lag", "checkpoint", "handled", "parked"}
        else:
            for runner, (checkpoint, handled, parked) in zip(runners, saved, strict=True):
                if head_position is not None:
                    families["lag"].add_metric([runner.name], max(0, head_position - checkpoint))
                families["checkpoint"].add_metric([runner.name], checkpoint)
                families["handled"].add_metric([runner.name], handled)
                families["parked"].add_metric([runner.name], parked)
        if head_position is None:
            unknown.add("lag")
        yield from (family for key, family in families.items() if key not in unknown)

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # collected lazily: the runners exist only once the app has started


def _read_for_scrape(dependency: str, read: Callable[[], _Read]) -> _Read | None:
    """What `read` returns, or None (logged) when `dependency` cannot be read: the scrape answers without it."""
    try:
        return read()
    except Exception as error:  # noqa: BLE001 - logged; the scrape keeps the request metrics (an outage's)
        log.warning("metrics: %s unreachable, its gauges are left out: %s: %s", dependency, type(error).__name__, error)
        return None


class _LoopCollector(Collector):
    def __init__(self, loops: Callable[[], Sequence[LoopStatus]]) -> None:
        self._loops = loops

    def collect(self) -> Iterator[Metric]:
        leased = GaugeMetricFamily(
            "lapor_background_loop_leased",
            "1 while this process runs the background loop under its lease (or the loop needs none), 0 while it "
            "stands by for another process (lapor.lease)",
            labels=["loop"],
        )
        failed = CounterMetricFamily(
            "lapor_background_loop_failed_ticks",
            "Ticks of the periodic background loop that failed since the process started (each logged with its error; "
            "tried again at the next tick)",
            labels=["loop"],
        )
        failing = GaugeMetricFamily(
            "lapor_background_loop_failing", "1 while the background loop's last tick failed, else 0", labels=["loop"]
        )
        for loop in self._loops():
            leased.add_metric([loop.name], int(not loop.standby and loop.alive))
            failed.add_metric([loop.name], loop.ticks.failed)
            failing.add_metric([loop.name], int(loop.ticks.failing))
        yield from (leased, failed, failing)

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


# -- the request middleware ---------------------------------------------------------------------------------


class RequestObservabilityMiddleware:
    """Outermost: correlation id in, correlation id out, one log line and two metric samples per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered_header = dict(scope["headers"]).get(HEADER.lower().encode())
        offered = offered_header.decode("latin-1") if offered_header else None
        correlation_id = accept_correlation_id(offered)
        status = 500  # what the client sees if the app dies before it answers
        started = time.perf_counter()
        with correlation_scope(correlation_id, chosen_by_client=correlation_id == offered) as work:

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    # Read now, not when the request came in: a route may have replaced it (`withhold_client`).
                    MutableHeaders(scope=message).append(HEADER, work.correlation_id)
                await send(message)

            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                route = scope.get("route")
                template = getattr(route, "path", None) or UNMATCHED_ROUTE
                method = scope["method"]
                counted = method if method in KNOWN_METHODS else OTHER_METHOD
                self.metrics.requests.labels(template, counted, str(status)).inc()
                self.metrics.latency.labels(template, counted).observe(elapsed)
                client = WITHHELD_CLIENT if work.client_withheld else (scope.get("client") or ("", 0))[0]
                path = logged_path(scope["path"])
                access_log.info(
                    "%s %s %s",
                    method,
                    path,
                    status,
                    extra={
                        "correlation_id": work.correlation_id,
                        "fields": {
                            "method": method,
                            "path": path,
                            "route": template,
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 2),
                            "client": client,
                        }
                    },
                )


# -- health -------------------------------------------------------------------------------------------------

PROBE_THREADS = 4  # threads /readyz and /metrics have to themselves, apart from the API's (`health_router`)


@dataclass
class Readiness:
    """Why a service is not ready, in terms safe to show whoever reaches its address: the dependency that cannot be
    used is named, and a subscription or loop trying again gives its error's kind and its causes' (`error_kind`:
    class names, SQLite's code names); the driver's words (host names,
    user names, paths) go to the log at WARNING, never into /readyz (session 28: they were in its body)."""

    unreachable: str | None = None  # EVENT_STORE or READ_MODELS when it cannot be used
    behind: list[dict[str, Any]] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)  # subscriptions and loops trying again after a failure, its kind
    # Subscriptions another process runs (it holds their leases): not a reason to be unready, since the checkpoints
    # and rows are shared and their lag, judged above, says whether that process keeps them current.
    standby: list[str] = field(default_factory=list)

    @property
    def store_ok(self) -> bool:
        return self.unreachable is None

    @property
    def ready(self) -> bool:
        return self.store_ok and not self.behind and not self.stopped and not self.retrying


def _unreachable(dependency: str, error: Exception) -> Readiness:
    log.warning("readiness: %s unreachable: %s: %s", dependency, type(error).__name__, error)
    return Readiness(unreachable=dependency)


def check_readiness(
    store: EventStore, runners: Sequence[SubscriptionRunner], loops: Sequence[LoopStatus], max_lag: int, wait: float
) -> Readiness:
    """`wait` (`LAPOR_READINESS_WAIT`) bounds each wait for a database: a probe must answer while a database is out
    of reach, and orchestrators give it a second or a few. Session 28: on PostgreSQL it waited the pool's 30 s for a
    connection that could not be made, which every other request still does (a request may outlast a short outage).
    A pool so busy that no connection frees up within `wait` makes the process unready too: it could not answer
    promptly either."""
    report = Readiness()
    try:
        head = store.head_position(wait=wait)
    except Exception as error:  # noqa: BLE001 - any failure to reach the store means "not ready", reported
        return _unreachable(EVENT_STORE, error)
    for runner in runners:
        if runner.standby:
            report.standby.append(runner.name)
        if runner.failure is not None:  # its runner logs the failure itself
            report.retrying.append(f"subscription {runner.name}: {error_kind(runner.failure)}")
            continue
        try:
            lag = runner.lag(head, wait=wait)
        except Exception as error:  # noqa: BLE001 - the read models (checkpoints) unreachable: as above
            return _unreachable(READ_MODELS, error)
        if lag > max_lag:
            report.behind.append({"consumer": runner.name, "lag": lag, "max_lag": max_lag})
    report.stopped.extend(f"background loop {loop.name}" for loop in loops if not loop.alive)
    report.retrying.extend(f"background loop {loop.name}: {loop.retrying}" for loop in loops if loop.retrying)
    report.standby.extend(f"background loop {loop.name}" for loop in loops if loop.standby)
    return report


def health_router(
    metrics: Metrics,
    readiness: Callable[[], Readiness],
) -> APIRouter:
    """The probes and the scrape do not queue behind the API's requests (session 32): they were plain `def` routes, run
    in the thread pool every route shares (40 threads), so while 40 requests waited on the store (its write lock held,
    a PostgreSQL outage: the pool's 30 s each) /healthz did not answer either, and a liveness probe restarted a process
    that was alive and would have served on once the store answered. /healthz now answers on the event loop; /readyz
    and /metrics, which read the databases (each wait bounded by `LAPOR_READINESS_WAIT`), in PROBE_THREADS threads of
    their own."""
    router = APIRouter(tags=["operations"])
    probes = CapacityLimiter(PROBE_THREADS)

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @router.get("/readyz", summary="Store reachable and every subscription caught up")
    async def readyz() -> dict[str, Any]:
        report = await to_thread.run_sync(readiness, limiter=probes)
        if not report.ready:
            reasons = []
            if report.unreachable is not None:
                reasons.append(f"{report.unreachable} unreachable (the service's log says why)")
            reasons += [f"{b['consumer']} is {b['lag']} positions behind" for b in report.behind]
            reasons += [f"{name} stopped" for name in report.stopped]
            reasons += [f"{failing} (trying again)" for failing in report.retrying]
            raise NotReady(
                "; ".join(reasons), store_ok=report.store_ok, unreachable=report.unreachable, behind=report.behind,
                stopped=report.stopped, retrying=report.retrying, standby=report.standby,
            )
        return {"status": "ready", "standby": report.standby} if report.standby else {"status": "ready"}

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(await to_thread.run_sync(metrics.exposition, limiter=probes), media_type=CONTENT_TYPE_LATEST)

    return router
