"""A tiny service built only from platform parts, standing in for the four services while they are empty:
it submits real ComplaintSubmitted events through the command runner, refuses an illegal disposition with
the real complaint fold, counts every event its subscription handles, and has a route that fails."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel

from lapor.auth import authorize_complaint, current_principal, new_reporter_token, reporter_token_hash, require
from lapor.commands import if_match_header, run_command
from lapor.complaint import ComplaintState, ensure_allowed
from lapor.context import Context, ServiceContext, ServiceDefinition
from lapor.db import Tx
from lapor.limits import Body as BodyText
from lapor.limits import MaxItems, Title, rate_limit
from lapor.principal import Principal, Role
from lapor.store import RecordedEvent
from lapor.subscriptions import Subscription
from schemas.events import ComplaintSubmitted


class Submission(BaseModel):
    title: Title
    body: BodyText
    region_code: str = "53.71"
    attachments: Annotated[list[str], MaxItems("attachments")] = []


def submitted_event(tracking_id: str, title: str, body: str, region_code: str, token: str, now: datetime) -> Any:
    return ComplaintSubmitted(
        tracking_id=tracking_id,
        kind="pengaduan",
        title=title,
        body=body,
        region_code=region_code,
        channel="web",
        reporter_token_hash=reporter_token_hash(token),
        verification_due=now,
    ).to_new_event()


def build_router(ctx: ServiceContext) -> APIRouter:
    router = APIRouter(prefix="/api/probe", tags=["probe"])

    @router.post("/complaints", status_code=201, dependencies=[Depends(rate_limit("submission"))])
    def submit(ctx: Context, submission: Submission, response: Response) -> dict[str, str]:
        tracking_id = "LAP-" + secrets.token_hex(4).upper()
        token = new_reporter_token()

        def decide(state: ComplaintState | None, now: datetime) -> list[Any]:
            return [submitted_event(tracking_id, submission.title, submission.body, submission.region_code, token,
                                    now)]

        reporter = Principal(subject=f"reporter:{tracking_id}", role=Role.reporter, tracking_id=tracking_id)
        result = run_command(ctx, f"complaint-{tracking_id}", decide, principal=reporter, must_exist=False)
        response.headers["ETag"] = result.etag
        return {"tracking_id": tracking_id, "reporter_token": token}

    @router.post("/complaints/{tracking_id}/dispose")
    def dispose(
        ctx: Context,
        tracking_id: str,
        response: Response,
        principal: Annotated[Principal, Depends(require("complaint.dispose"))],
        if_match: Annotated[int | None, Depends(if_match_header)],
    ) -> dict[str, int]:
        def decide(state: ComplaintState, now: datetime) -> list[Any]:
            authorize_complaint(principal, "complaint.dispose", state)
            ensure_allowed(state, "ComplaintDisposed")  # a submitted report must be verified first
            return []

        result = run_command(ctx, f"complaint-{tracking_id}", decide, principal=principal, if_match=if_match)
        response.headers["ETag"] = result.etag
        return {"version": result.version}

    @router.get("/whoami")
    def whoami(principal: Annotated[Principal | None, Depends(current_principal)]) -> dict[str, str | None]:
        if principal is None:
            return {"role": None}
        return {"role": principal.role.value, "agency": principal.agency_id, "subject": principal.subject}

    @router.get("/boom")
    def boom() -> None:
        raise RuntimeError("database password is hunter2")  # must never reach the client

    @router.get("/handled")
    def handled(ctx: Context) -> dict[str, int]:
        with ctx.db.read() as tx:
            rows, twice = tx.fetchone(
                "SELECT count(*), coalesce(sum(CASE WHEN times > 1 THEN 1 ELSE 0 END), 0) FROM probe_handled"
            ) or (0, 0)
        return {"events": int(rows), "handled_twice": int(twice)}

    return router


def _setup(tx: Tx) -> None:
    tx.execute(
        "CREATE TABLE IF NOT EXISTS probe_handled "
        "(stream TEXT NOT NULL, version INTEGER NOT NULL, times INTEGER NOT NULL, PRIMARY KEY (stream, version))"
    )


def _handle(event: RecordedEvent, tx: Tx) -> None:
    # Counts rather than ignores repeats: the restart test looks for any event handled twice.
    tx.execute(
        "INSERT INTO probe_handled (stream, version, times) VALUES (?, ?, 1) "
        "ON CONFLICT (stream, version) DO UPDATE SET times = probe_handled.times + 1",
        (event.stream, event.version),
    )


SUBSCRIPTION = Subscription("probe.events", _handle, category="complaint", setup=_setup)

SERVICE = ServiceDefinition(name="probe", router=build_router, subscriptions=lambda ctx: [SUBSCRIPTION])
