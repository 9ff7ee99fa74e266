"""Reporting: national and local projections, the live stream, audit replay, public statistics.

It decides nothing and emits nothing: it reads the log into its own read models (`projections`), answers the
views from them (`reports`), streams the log as it grows (`stream`) and replays it for auditors (`audit`)."""

from __future__ import annotations

from lapor.context import BackgroundLoop, ServiceContext, ServiceDefinition
from lapor.subscriptions import Subscription
from services.reporting.api import build_router
from services.reporting.projections import subscriptions
from services.reporting.stream import hub_loop


def _subscriptions(ctx: ServiceContext) -> list[Subscription]:
    return subscriptions(ctx.states)


def _background(ctx: ServiceContext) -> list[BackgroundLoop]:
    return [hub_loop(ctx)]


SERVICE = ServiceDefinition(name="reporting", router=build_router, subscriptions=_subscriptions, background=_background)
