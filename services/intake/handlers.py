"""Intake's subscriptions: the directory it needs (SMS keywords, agency names) and the recent reports that
duplicate suspicion looks in, which only write intake's own read models (`projections.py`); and the marking of
the vault entries recorded events refer to (`leftovers.py`), which is not a projection."""

from __future__ import annotations

from lapor.context import ServiceContext
from lapor.directory import DIRECTORY_CATEGORY
from lapor.subscriptions import Subscription
from services.intake.idempotency import IdDerivation
from services.intake.leftovers import VaultReferences
from services.intake.projections import RecentReports, apply_directory_event, setup_directory, setup_recent_reports


def subscriptions(ctx: ServiceContext) -> list[Subscription]:
    recent = RecentReports(ctx.vault, IdDerivation(ctx.settings.signing_secret()).reporter_keys)
    return [
        Subscription("intake.directory", apply_directory_event, category=DIRECTORY_CATEGORY, setup=setup_directory),
        Subscription(
            "intake.recent_reports",
            recent.handle,
            category="complaint",
            setup=setup_recent_reports,
            handle_batch=recent.handle_batch,
            per_stream=False,  # pruned by the newest event's time, whichever report it belongs to
        ),
        VaultReferences(ctx.vault).subscription(),
    ]
