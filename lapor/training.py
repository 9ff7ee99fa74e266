"""Training mode (`lapor up --training`): the clock is a ManualClock that a national admin moves, so a class can
watch deadlines pass, escalations fire and reports close without waiting weeks. Mounted only in training."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import isodate
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, model_validator

from lapor.auth import require
from lapor.clock import ManualClock
from lapor.context import Context
from lapor.limits import IsoDateTime
from lapor.problems import ValidationProblem

# The clock stays before this moment: a deadline counted from it (at most 365 working days: `lapor.policy`, about a
# year and a half) and the loops' steps after it must still fall within the year 9999, the last a date can name.
# Until session 30 a move to 9999-12-31 was taken, and every report then was a 500.
LATEST = datetime(9990, 1, 1, tzinfo=UTC)
_TOO_LATE = (
    f"the training clock stays before {LATEST:%Y-%m-%d} (UTC): every deadline it starts, up to 365 working days "
    "later, must fall within the year 9999, the last a date can name"
)


class ClockView(BaseModel):
    now: datetime


class MoveClock(BaseModel):
    advance: str | None = Field(None, description="ISO-8601 duration, e.g. P3D or PT2H", examples=["P3D"])
    to: IsoDateTime | None = Field(None, description="an aware moment later than now")

    @model_validator(mode="after")
    def _one_of(self) -> MoveClock:
        if (self.advance is None) == (self.to is None):
            raise ValueError("give exactly one of 'advance' and 'to'")
        return self


def training_router() -> APIRouter:
    router = APIRouter(prefix="/api/training", tags=["training"])

    @router.get("/clock", dependencies=[Depends(require("training.clock"))])
    def read_clock(ctx: Context) -> ClockView:
        return ClockView(now=ctx.clock.now())

    @router.post("/clock", dependencies=[Depends(require("training.clock"))])
    def move_clock(ctx: Context, move: MoveClock) -> ClockView:
        clock = ctx.clock
        assert isinstance(clock, ManualClock), "the training router is mounted only in training mode"
        now = clock.now()
        try:
            if move.advance is not None:
                delta = isodate.parse_duration(move.advance)
                if not isinstance(delta, timedelta):
                    raise ValidationProblem("use days and times (P3D, PT2H), not months or years")
                to = now + delta
            else:
                assert move.to is not None  # exactly one of them (MoveClock)
                to = move.to
            # Compared as given: in UTC a moment of the year 1 east of Greenwich is in the year 0, which no date holds.
            if to < now:
                raise ValidationProblem("time only moves forward")
            if to >= LATEST:
                raise ValidationProblem(_TOO_LATE)
            clock.set(to)
        except (ValueError, isodate.ISO8601Error) as error:
            raise ValidationProblem(str(error)) from None
        except OverflowError:  # a duration that takes the clock past what a date holds
            raise ValidationProblem(_TOO_LATE) from None
        return ClockView(now=clock.now())

    return router
