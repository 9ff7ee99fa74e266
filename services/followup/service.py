"""Follow-up: agency queues and their actions (accept, return as bukan wewenang, assign, tindak lanjut,
resolve), closing.

Placeholder: the router is empty until the service is written on the platform (see docs/platform.md)."""

from __future__ import annotations

from fastapi import APIRouter

from lapor.context import ServiceContext, ServiceDefinition


def build_router(ctx: ServiceContext) -> APIRouter:
    return APIRouter(tags=["followup"])


SERVICE = ServiceDefinition(name="followup", router=build_router)
