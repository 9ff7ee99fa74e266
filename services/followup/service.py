"""Follow-up (tindak lanjut): agency queues and what liaison officers do with them — accept, return as "bukan
wewenang", assign to a unit, post follow-ups (with optional two-step approval), resolve — and closing: the
reporter's answer closes or reopens a resolved report, silence closes it. Agencies subscribe webhooks to hear of
new queue items and approaching deadlines. See docs/followup.md."""

from __future__ import annotations

from lapor.context import ServiceContext, ServiceDefinition
from lapor.subscriptions import Subscription
from services.followup.api import build_router
from services.followup.demo import seed_demo
from services.followup.handlers import Reactions, background_loops
from services.followup.projections import QueueProjection


def subscriptions(ctx: ServiceContext) -> list[Subscription]:
    return [QueueProjection(ctx.states).subscription(), Reactions(ctx).subscription()]


SERVICE = ServiceDefinition(
    name="followup",
    router=build_router,
    subscriptions=subscriptions,
    background=background_loops,
    seed_demo=seed_demo,
)
