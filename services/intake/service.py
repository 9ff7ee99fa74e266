"""Intake: channels in (web, mobile, SMS 1708, integrated local systems), tracking out. See docs/intake.md."""

from __future__ import annotations

from lapor.context import ServiceDefinition
from services.intake.api import build_router
from services.intake.demo import seed_demo
from services.intake.handlers import subscriptions
from services.intake.leftovers import sweep_loop

SERVICE = ServiceDefinition(
    name="intake",
    router=build_router,
    subscriptions=subscriptions,
    background=lambda ctx: [sweep_loop(ctx)],
    seed_demo=seed_demo,
)
