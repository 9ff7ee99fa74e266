"""The `lapor` command.

Subcommands are small functions registered with `@command("name words", help=..., arguments=[...])`; a name
with a space becomes a nested command (`lapor token create`). Each returns an exit code. A bad setting or
argument prints one line on stderr and exits 2, without a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
import uvicorn
from fastapi import FastAPI
from rich.progress import Progress

from lapor import rebuild as rebuilding
from lapor.app import SERVICE_NAMES, create_app, load_services
from lapor.audit import verify_chain
from lapor.auth import TokenService, parse_ttl
from lapor.clock import SystemClock
from lapor.context import ServiceContext, ServiceDefinition
from lapor.observability import configure_logging
from lapor.principal import KSP_AGENCY, NATIONAL_ADMIN_AGENCY, Role
from lapor.settings import Settings, SettingsError, load_settings
from lapor.store import StoreError, open_store

Run = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Argument:
    flags: tuple[str, ...]
    options: dict[str, Any]


def arg(*flags: str, **options: Any) -> Argument:
    return Argument(flags, options)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Sequence[Argument]
    run: Run


COMMANDS: list[Command] = []


def command(name: str, *, help: str, arguments: Sequence[Argument] = ()) -> Callable[[Run], Run]:
    def register(run: Run) -> Run:
        COMMANDS.append(Command(name, help, arguments, run))
        return run

    return register


class CliError(Exception):
    """A mistake on the command line or in the environment: printed as one line, exit code 2."""


# -- shared pieces ------------------------------------------------------------------------------------------

DATA = arg("--data", type=Path, help="data directory (default: LAPOR_DATA or ./var)")
HOST = arg("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
TRAINING = arg("--training", action="store_true", default=None, help="a clock an admin can move forward")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return load_settings(data=getattr(args, "data", None), **extra)


def _services(args: argparse.Namespace, name: str | None = None) -> list[ServiceDefinition]:
    """Every service, or the one called `name`."""
    available: list[ServiceDefinition] = args.services if args.services is not None else []
    if name is None:
        return available or load_services()
    chosen = [service for service in available if service.name == name]
    if chosen:
        return chosen
    if name not in SERVICE_NAMES:
        known = sorted({*SERVICE_NAMES, *(service.name for service in available)})
        raise CliError(f"unknown service {name!r}; expected one of {', '.join(known)}")
    return load_services([name])


def _open_app(settings: Settings, services: Sequence[ServiceDefinition], *, seed_demo: bool = False) -> FastAPI:
    try:
        return create_app(settings, services, seed_demo=seed_demo)
    except (OSError, sqlite3.Error, psycopg.Error, StoreError) as error:
        where = f"the store {settings.store} or the read models {settings.readmodels}"
        raise CliError(f"cannot open {where}: {error}") from None


def _run_server(app: FastAPI, host: str, port: int) -> int:
    """Serve until SIGINT/SIGTERM; the lifespan then stops subscriptions and closes the store. Exit 0 on a
    clean stop, 1 if the app failed to start."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    )

    # uvicorn handles the signals itself and re-raises them once it has shut down; these handlers receive
    # that re-raise, so a requested stop ends as a normal exit instead of a KeyboardInterrupt or a kill.
    def stopped(signum: int, frame: FrameType | None) -> None:
        return None

    previous = {sig: signal.signal(sig, stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


def demo_tokens(settings: Settings) -> list[tuple[str, str]]:
    """A token for every role that signs in (a reporter uses the reporter_token of their report)."""
    tokens = TokenService(settings.signing_secret(), SystemClock())
    ttl = parse_ttl(settings.token_ttl)
    scopes: list[tuple[str, Role, dict[str, str]]] = [
        ("admin_national", Role.admin_national, {"agency_id": NATIONAL_ADMIN_AGENCY}),
        ("admin_agency", Role.admin_agency, {"agency_id": settings.demo_agency}),
        ("liaison", Role.liaison, {"agency_id": settings.demo_agency}),
        ("unit_officer", Role.unit_officer, {"agency_id": settings.demo_agency, "unit_id": settings.demo_unit}),
        ("operator", Role.operator, {"agency_id": KSP_AGENCY}),
        ("auditor", Role.auditor, {}),
        ("ombudsman", Role.ombudsman, {}),
        ("integration:sms", Role.integration, {"channel": "sms"}),
    ]
    return [
        (label, tokens.issue(role, subject=f"demo-{role.value}", ttl=ttl, **scope)) for label, role, scope in scopes
    ]


# -- the subcommands ----------------------------------------------------------------------------------------


@command(
    "up",
    help="run all four services and their subscriptions in one process",
    arguments=[
        DATA,
        HOST,
        arg("--port", type=int, default=8000, help="port (default 8000)"),
        TRAINING,
        arg("--demo", action="store_true", help="load the directory and sample reports; print a token per role"),
    ],
)
def up(args: argparse.Namespace) -> int:
    settings = _settings(args, training=args.training)
    configure_logging(settings.log_level)
    app = _open_app(settings, _services(args), seed_demo=args.demo)
    if args.demo:
        print(f"LAPOR demo on http://{args.host}:{args.port}/docs — bearer tokens (Authorization: Bearer ...):")
        for label, token in demo_tokens(settings):
            print(f"  {label:<18} {token}")
        sys.stdout.flush()
    return _run_server(app, args.host, args.port)


@command(
    "serve",
    help="run one service alone against the shared store (run several side by side, one port each)",
    arguments=[
        arg("service", help=f"one of {', '.join(SERVICE_NAMES)}"),
        DATA,
        HOST,
        arg("--port", type=int, default=8000, help="port (default 8000)"),
        TRAINING,
    ],
)
def serve(args: argparse.Namespace) -> int:
    settings = _settings(args, training=args.training)
    configure_logging(settings.log_level)
    app = _open_app(settings, _services(args, args.service))
    return _run_server(app, args.host, args.port)


@command(
    "token create",
    help="print a signed bearer token",
    arguments=[
        arg("--role", required=True, choices=[r.value for r in Role if r is not Role.reporter]),
        arg("--agency", help="agency id (admin_agency, liaison, unit_officer)"),
        arg("--unit", help="unit id, <agency_id>/<unit> (unit_officer)"),
        arg("--channel", help="channel an integration client pushes for, e.g. sms"),
        arg("--ttl", help="lifetime like 30m, 8h, 7d (default: LAPOR_TOKEN_TTL or 8h)"),
        arg("--subject", help="who the token is for (default: the role)"),
        DATA,
    ],
)
def token_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        ttl = parse_ttl(args.ttl or settings.token_ttl)
        token = TokenService(settings.signing_secret(), SystemClock()).issue(
            Role(args.role),
            subject=args.subject,
            agency_id=args.agency,
            unit_id=args.unit,
            channel=args.channel,
            ttl=ttl,
        )
    except ValueError as error:
        raise CliError(str(error)) from None
    print(token)
    return 0


@command(
    "audit verify",
    help="walk every stream's hash chain and name the first broken link (exit 1 if any)",
    arguments=[
        arg("--store", help="store URL (default: LAPOR_STORE, or the data directory's SQLite file)"),
        arg("--all", action="store_true", help="report every broken stream, not only the first"),
        DATA,
    ],
)
def audit_verify(args: argparse.Namespace) -> int:
    settings = _settings(args)
    url = args.store or settings.store
    try:
        store = open_store(url)
    except (OSError, ValueError, sqlite3.Error, psycopg.Error, StoreError) as error:
        raise CliError(f"cannot open the store {url}: {error}") from None
    with store, Progress(transient=True) as progress:
        task = progress.add_task("verifying hash chains", total=None)

        def advance(checked: int, head: int) -> None:
            progress.update(task, completed=checked, total=head or None)

        report = verify_chain(store, stop_at_first=not args.all, progress=advance)
    if report.ok:
        print(f"ok: {report.events_checked} events in {report.streams_checked} streams, every hash chain intact")
        return 0
    for link in report.broken:
        print(f"BROKEN: {link.describe()}")
    print(f"checked {report.events_checked} events; the log was altered after it was written")
    return 1


@command(
    "rebuild",
    help="rebuild every projection from position 0 into fresh tables and report any difference from the live ones",
    arguments=[
        DATA,
        arg("--service", action="append", help="only this service's projections (repeat for more)"),
        arg("--batch-size", type=int, default=rebuilding.DEFAULT_BATCH, help="events per projection transaction"),
        arg("--keep", action="store_true", help="keep the rebuilt tables (their location is printed)"),
    ],
)
def rebuild(args: argparse.Namespace) -> int:
    """Exit 0 when every rebuilt table equals its live table, 1 when any differs."""
    settings = _settings(args)
    configure_logging(settings.log_level)
    names = args.service or [None]
    services = [chosen for name in names for chosen in _services(args, name)]
    try:
        ctx = ServiceContext.open(settings)
    except (OSError, sqlite3.Error, psycopg.Error, StoreError) as error:
        where = f"the store {settings.store} or the read models {settings.readmodels}"
        raise CliError(f"cannot open {where}: {error}") from None
    try:
        report = rebuilding.run(ctx, services, batch_size=args.batch_size, keep=args.keep)
    finally:
        ctx.close()
    return 0 if report.identical else 1


# -- the parser and main ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lapor", description="LAPOR: SP4N-LAPOR! complaint handling")
    groups: dict[tuple[str, ...], argparse._SubParsersAction] = {
        (): parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    }
    for spec in COMMANDS:
        words = tuple(spec.name.split())
        for depth in range(1, len(words)):
            prefix = words[:depth]
            if prefix not in groups:
                sub = groups[prefix[:-1]].add_parser(prefix[-1], help=f"{' '.join(prefix)} commands")
                groups[prefix] = sub.add_subparsers(dest=f"command_{depth}", required=True, metavar="COMMAND")
        sub = groups[words[:-1]].add_parser(words[-1], help=spec.help, description=spec.help)
        for argument in spec.arguments:
            sub.add_argument(*argument.flags, **argument.options)
        sub.set_defaults(run=spec.run)
    return parser


def main(argv: Sequence[str] | None = None, *, services: Sequence[ServiceDefinition] | None = None) -> int:
    """Entry point. `services` replaces the four service modules (a test or an embedding program composing
    its own set)."""
    args = build_parser().parse_args(argv)
    args.services = list(services) if services is not None else None
    try:
        return args.run(args)
    except (SettingsError, CliError) as error:
        print(f"lapor: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
