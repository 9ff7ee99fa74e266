"""Intake: channels in (web, mobile, SMS 1708, integrated local systems), tracking out.

Placeholder: the router is empty until the service is written on the platform (see docs/platform.md)."""

from __future__ import annotations

from fastapi import APIRouter

from lapor.context import ServiceContext, ServiceDefinition


def build_router(ctx: ServiceContext) -> APIRouter:
    return APIRouter(tags=["intake"])


SERVICE = ServiceDefinition(name="intake", router=build_router)
