"""Routing: the agency directory, verification (telaah), disposition, SLA timers and escalation (docs/routing.md).

At start it registers the shipped directory where the store lacks it; two subscriptions keep its read models
(the directory, and the reports with their open deadlines); one background loop, the deadline scheduler,
escalates, archives and offers the Ombudsman as deadlines pass.
"""

from __future__ import annotations

from functools import partial

from lapor.context import BackgroundLoop, ServiceContext, ServiceDefinition
from lapor.directory import DIRECTORY_CATEGORY
from lapor.subscriptions import Subscription, holding_subscription
from services.routing.api import build_router
from services.routing.handlers import DeadlineScheduler
from services.routing.projections import (
    DIRECTORY_TABLE_NAMES,
    HeldComplaints,
    apply_directory_event,
    setup_complaints,
    setup_directory,
)
from services.routing.seed import seed_demo, seed_directory

DIRECTORY_SUBSCRIPTION = "routing.directory"
COMPLAINT_SUBSCRIPTION = "routing.complaints"
# 2: a follow-up deadline answered after it passed stays in `routing_deadlines` until red-marked; the queue row
# keeps the report's `reporter_ref` (its identity is scrubbed from officials' texts for monitoring roles).
# 3 (session 27): no Ombudsman hand-over deadline while the report is resolved (a consent given just before the
# resolution waits for a reopening). 4 (session 27): no Ombudsman offer for a report the Ombudsman holds.
# 5 (session 31): no Ombudsman hand-over once the Ombudsman has taken the report over (returned by it, the report
# is the national admin's to dispose).
COMPLAINTS_VERSION = 5
# 2 (session 31): each routing rule keeps the version of its latest change, which a change's If-Match names.
DIRECTORY_VERSION = 2


def subscriptions(ctx: ServiceContext) -> list[Subscription]:
    return [
        Subscription(DIRECTORY_SUBSCRIPTION, apply_directory_event, category=DIRECTORY_CATEGORY, setup=setup_directory,
                     version=DIRECTORY_VERSION, tables=DIRECTORY_TABLE_NAMES),
        holding_subscription(COMPLAINT_SUBSCRIPTION, partial(HeldComplaints, ctx.states), setup=setup_complaints,
                             version=COMPLAINTS_VERSION, tables=("routing_complaints", "routing_deadlines")),
    ]


def background(ctx: ServiceContext) -> list[BackgroundLoop]:
    return [DeadlineScheduler(ctx).loop()]


SERVICE = ServiceDefinition(
    name="routing",
    router=build_router,
    subscriptions=subscriptions,
    background=background,
    seed_demo=seed_demo,
    on_start=seed_directory,
)
