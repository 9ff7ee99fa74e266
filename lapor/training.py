"""Training mode (`lapor up --training`): the clock is a ManualClock that a national admin moves, so a class can
watch deadlines pass, escalations fire and reports close without waiting weeks. Mounted only in training."""

from __future__ import annotations

from datetime import datetime, timedelta

import isodate
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, model_validator

from lapor.auth import require
from lapor.clock import ManualClock
from lapor.context import Context
from lapor.limits import IsoDateTime
from lapor.problems import ValidationProblem


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
        try:
            if move.advance is not None:
                delta = isodate.parse_duration(move.advance)
                if not isinstance(delta, timedelta):
                    raise ValidationProblem("use days and times (P3D, PT2H), not months or years")
                clock.advance(delta)
            elif move.to is not None:
                clock.set(move.to)
        except (ValueError, isodate.ISO8601Error) as error:
            raise ValidationProblem(str(error)) from None
        except OverflowError:
            raise ValidationProblem("that moves the clock past the year 9999") from None
        return ClockView(now=clock.now())

    return router
