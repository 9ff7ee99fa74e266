"""Routing: the agency directory, verification (telaah), disposition, SLA timers and escalation.

Placeholder: the router is empty until the service is written on the platform (see docs/platform.md)."""

from __future__ import annotations

from fastapi import APIRouter

from lapor.context import ServiceContext, ServiceDefinition


def build_router(ctx: ServiceContext) -> APIRouter:
    return APIRouter(tags=["routing"])


SERVICE = ServiceDefinition(name="routing", router=build_router)
