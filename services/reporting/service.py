"""Reporting: national and local projections, the live stream, audit replay, public statistics.

Placeholder: the router is empty until the service is written on the platform (see docs/platform.md)."""

from __future__ import annotations

from fastapi import APIRouter

from lapor.context import ServiceContext, ServiceDefinition


def build_router(ctx: ServiceContext) -> APIRouter:
    return APIRouter(tags=["reporting"])


SERVICE = ServiceDefinition(name="reporting", router=build_router)
