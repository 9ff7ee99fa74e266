"""The `lapor` command.

Subcommands are small functions registered with `@command("name words", help=..., arguments=[...])`; a name
with a space becomes a nested command (`lapor token create`). Each returns an exit code. A bad setting or
argument prints one line on stderr and exits 2, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import multiprocessing
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError
from rich.progress import Progress

from lapor import rebuild as rebuilding
from lapor.__main__ import interrupted
from lapor.app import SERVICE_NAMES, Runtime, create_app, load_services
from lapor.audit import IntegrityReport, verify_chain
from lapor.auth import TokenService, parse_ttl, token_agency
from lapor.clock import SystemClock
from lapor.context import ServiceContext, ServiceDefinition
from lapor.db import Database, open_database, sqlite_path, table_exists
from lapor.directory import directory_is_empty, read_record
from lapor.logs import configure_logging
from lapor.orphans import stop_when_orphaned
from lapor.principal import KSP_AGENCY, NATIONAL_ADMIN_AGENCY, Role
from lapor.problems import Unauthenticated, quoted
from lapor.revocation import Revocations
from lapor.settings import SECRET_FILE, Settings, SettingsError, load_settings, one_line
from lapor.store import StoreError, open_store
from lapor.store.open import parse_sqlite_url, shown_url, store_exists, without_password
from lapor.store.writer import WriterProcess
from lapor.store.writer import run as run_store_writer
from lapor.subscriptions import SubscriptionRunner, committed_checkpoints, describe_failure
from lapor.terminal import output_console
from lapor.tokens import RevokeRequest

Run = Callable[[argparse.Namespace], int]
log = logging.getLogger("lapor.cli")


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

def _port(text: str) -> int:
    """A TCP port. One out of range was taken modulo 65536 by the event loop (80800 served on 15264)."""
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, not {text!r}")
    return int(text)


def _directory(text: str) -> Path:
    """A data directory. An empty one (`--data "$DIR"` with DIR unset) was the working directory (session 32)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; leave it out for LAPOR_DATA or ./var, or name the directory")
    return Path(text)


DATA = arg("--data", type=_directory, help="data directory (default: LAPOR_DATA or ./var)")
HOST = arg("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
PORT = arg("--port", type=_port, default=8000, help="port (default 8000)")
TRAINING = arg("--training", action="store_true", default=None, help="a clock an admin can move forward")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return load_settings(data=getattr(args, "data", None), **extra)


def _require_store(url: str, *, option: str) -> None:
    """CliError unless `url` names a store that exists: a command that reads a log must not create an empty one
    where the operator mistyped a path (and then report on nothing)."""
    try:
        exists = store_exists(url)
    except (OSError, ValueError, psycopg.Error) as error:
        raise _cannot_open(error, url) from None
    if not exists:
        raise CliError(f"no event store at {shown_url(url)}: nothing was created or changed; check {option}")


def _cannot_open(error: Exception, store: str, readmodels: str | None = None) -> CliError:
    """What to say when the store (and the read models) would not open: URLs without their password, the
    driver's error on one line."""
    where = f"the store {shown_url(store)}" + (f" or the read models {shown_url(readmodels)}" if readmodels else "")
    return CliError(f"cannot open {where}: {_said(error, store, readmodels)}")


def _said(error: Exception, *urls: str | None) -> str:
    """`error` on one line, without the password of any of `urls` (a driver's error may quote it)."""
    said = " ".join(str(error).split())
    for url in urls:
        if url:
            said = without_password(said, url)
    return said


def _kept_signing_secret(settings: Settings) -> str:
    """The key the installation's servers sign with. CliError where there is none yet (no LAPOR_SECRET, no
    `<data>/secret`): a key made now would be this command's alone, and no server would accept what it signs."""
    path = settings.data / SECRET_FILE
    if settings.secret is None and not path.exists():
        raise CliError(
            f"no signing secret: LAPOR_SECRET is not set and there is no {path}, so no server signs with the key this "
            "would make; give the server's --data or LAPOR_DATA, or its LAPOR_SECRET"
        )
    return settings.signing_secret()


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


# What opening the store or the read models raises when they cannot be reached (`_cannot_open` says it in a line);
# opening by a URL a command was given, not one the settings checked, also a ValueError.
_OPENING_FAILED = (OSError, sqlite3.Error, psycopg.Error, StoreError)
_OPENING_BY_URL_FAILED = (ValueError, *_OPENING_FAILED)


def _require_writer(url: str) -> None:
    """CliError when the store's URL sends appends to a writer process (`?writer=<socket>`) that does not answer.
    Asked before anything is opened by the commands that append: `lapor up` otherwise started and failed at its first
    append with a traceback (exit 3), and `lapor serve intake` served, refusing every report with a 500."""
    try:
        _, socket_path = parse_sqlite_url(url)
    except ValueError:
        return  # not SQLite: no writer process
    if socket_path is None:
        return
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(socket_path)
        except OSError as error:
            raise CliError(
                f"the store writer at {socket_path} does not answer ({error.strerror or error}): start it first "
                "(lapor writer --data DIR), or leave ?writer= out of LAPOR_STORE"
            ) from None


def _refuse_read_models_of_another_log(ctx: ServiceContext) -> None:
    """CliError, `ctx` closed, when a subscription's checkpoint lies past the end of the store: the read models
    handled events this store does not hold. They were built from another store (LAPOR_STORE changed, LAPOR_DATA's
    read models kept), or the store was restored from an older backup than they were. Served as they are, every
    event the store records at positions up to that checkpoint is never handled: reports missing from every queue
    and view, and /readyz saying ready (a lag below 0 counts as none)."""
    try:
        with ctx.db.read() as tx:
            checkpoints = committed_checkpoints(tx)
        head = ctx.store.head_position()  # after the checkpoints: the head only grows, a checkpoint never passes it
    except BaseException:
        ctx.close()
        raise
    ahead = {name: position for name, position in checkpoints.items() if position > head}
    if ahead:
        ctx.close()
        name = max(ahead, key=lambda key: ahead[key])
        raise CliError(
            f"the read models {shown_url(ctx.settings.readmodels)} have handled events up to position {ahead[name]} "
            f"({name}), but the store {shown_url(ctx.settings.store)} ends at {head}: they were built from another "
            "store, or the store was restored from an older backup. Give the read models of this store (--data, "
            "LAPOR_READMODELS), or move these aside to build them again from it"
        )


def _open_app(settings: Settings, services: Sequence[ServiceDefinition], *, seed_demo: bool = False) -> FastAPI:
    _require_writer(settings.store)
    try:
        app = create_app(settings, services, seed_demo=seed_demo)
    except _OPENING_FAILED as error:
        raise _cannot_open(error, settings.store, settings.readmodels) from None
    _refuse_read_models_of_another_log(app.state.context)
    return app


def _open_readmodels(settings: Settings) -> Database:
    """The read-model database of an installation whose store exists and whose servers have run on it (a command
    must not start an empty one). Session 31: where there were none (`LAPOR_READMODELS` mistyped, not the servers'),
    `parked list` made an empty file and said "0 parked" of it, and `token revoke` recorded a revocation that no
    server would ever read, and said "revoked"."""
    _require_store(settings.store, option="--data or LAPOR_STORE")
    url = settings.readmodels
    path = sqlite_path(url)
    if path is not None and not Path(path).is_file():
        raise _no_readmodels(url)
    try:
        db = open_database(url, answer_timeout=settings.store_timeout)
    except _OPENING_BY_URL_FAILED as error:
        raise _cannot_open(error, settings.store, url) from None
    try:
        with db.read() as tx:  # a server's first start makes its subscriptions' checkpoints
            servers_ran = table_exists(tx, "subscription_checkpoints")
    except _OPENING_FAILED as error:
        db.close()
        raise _cannot_open(error, settings.store, url) from None
    if not servers_ran:
        db.close()
        raise _no_readmodels(url)
    return db


def _no_readmodels(url: str) -> CliError:
    return CliError(f"no read models at {shown_url(url)}: no server has run on them, so none would read what this "
                    "command reads or records there; nothing was created or changed; check --data or LAPOR_READMODELS")


def _open_context(settings: Settings, *, runs_subscriptions: bool = True) -> ServiceContext:
    """`runs_subscriptions`: the command appends and goes on from the read models' checkpoints, as a server does, so
    the store's writer must answer and the checkpoints must be this store's."""
    if runs_subscriptions:
        _require_writer(settings.store)
    try:
        ctx = ServiceContext.open(settings)
    except _OPENING_FAILED as error:
        raise _cannot_open(error, settings.store, settings.readmodels) from None
    if runs_subscriptions:
        _refuse_read_models_of_another_log(ctx)
    return ctx


def http_url(host: str, port: int, path: str = "") -> str:
    """The URL of a server listening on `host` and `port`, as RFC 3986 writes it: an IPv6 address in brackets
    (`http://[::1]:8000`), the `%` of its zone escaped (`http://[fe80::1%25eth0]:8000`, RFC 6874). Session 28: `lapor
    up --host ::1` said `http://::1:8000`, which no client reads as that address and port."""
    if ":" in host:  # only an IPv6 address has one: neither a name nor an IPv4 address may
        host = "[" + host.replace("%", "%25") + "]"
    return f"http://{host}:{port}{path}"


def _run_server(
    app: FastAPI, host: str, port: int, *, workers: Workers | None = None, listener: socket.socket | None = None
) -> int:
    """Serve until SIGINT/SIGTERM; the lifespan then stops subscriptions and closes the store. Exit 0 on a
    clean stop; an app that fails to start ends the process with uvicorn's exit code 3 (SystemExit) before this
    returns. `workers` are more processes serving on `listener`'s port."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    sockets = None if listener is None else [listener]
    if listener is not None:  # uvicorn says where it listens only on a socket it binds itself
        log.info("listening on %s", http_url(host, port))
    children: list[multiprocessing.process.BaseProcess] = []
    if workers is not None:
        spawn = multiprocessing.get_context("spawn")
        children = [
            spawn.Process(target=_serve_worker, args=(workers, host, port, os.getpid()), name=f"lapor-http-{n}")
            for n in range(2, workers.count + 2)
        ]
        for child in children:
            child.start()
            threading.Thread(target=_report_exit, args=(child, server), name=f"watch-{child.name}", daemon=True).start()

    # uvicorn handles the signals itself and re-raises them once it has shut down; these handlers receive
    # that re-raise, so a requested stop ends as a normal exit instead of a KeyboardInterrupt or a kill.
    def stopped(signum: int, frame: FrameType | None) -> None:
        return None

    previous = {sig: signal.signal(sig, stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=sockets)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children:
            child.terminate()  # SIGTERM: each drains its requests and closes its store, as this one did
        for child in children:
            child.join(WORKER_STOP_TIMEOUT)
            if child.exitcode is None:
                child.kill()
                child.join()
    return 0 if server.started else 1


def _report_exit(child: multiprocessing.process.BaseProcess, server: uvicorn.Server) -> None:
    """Log a worker process that ended while the server still runs (this process goes on serving alone)."""
    child.join()
    if not server.should_exit:
        log.error("HTTP worker %s (pid %s) exited with code %s; the others go on serving", child.name, child.pid,
                  child.exitcode)


WORKER_STOP_TIMEOUT = 30.0  # seconds a worker process may take to drain before it is killed


@dataclass(frozen=True)
class Workers:
    """The extra HTTP processes of `lapor up --workers N` (`count` = N - 1) and what each needs to build the same
    app (it is spawned, so it reads the same environment): the data directory and the services, by name."""

    count: int
    data: Path | None
    services: tuple[str, ...]


def _address(host: str, port: int) -> tuple[Any, ...]:
    """The first (family, type, proto, canonname, sockaddr) to listen on at host:port."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except OSError as error:
        raise CliError(f"cannot listen on {host}:{port}: {error}") from None


def _refuse_a_taken_port(host: str, port: int) -> None:
    """CliError when a server listens on host:port already. Asked before anything is opened: a second `lapor up` on
    the same data otherwise ran every subscription, background loop and seeding beside the first before its bind
    failed (exit 3), and with --workers SO_REUSEPORT would let it join the other server on the port."""
    family, kind, proto, _, address = _address(host, port)
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise CliError(f"cannot listen on {host}:{port}: {error}") from None


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket on host:port that the other worker processes bind too (SO_REUSEPORT): the kernel then spreads
    connections over the processes evenly. One socket shared by all would not: whichever process is idle
    accepts, and under a burst of new connections one process took nearly all of them."""
    family, kind, proto, _, address = _address(host, port)
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {error}") from None
    return sock


def _serve_worker(workers: Workers, host: str, port: int, parent: int) -> None:
    """An HTTP-only copy of the app on the parent's socket: no subscriptions, background loops that act or seeding
    (the parent runs those); the live stream's hub, which wakes this process's own feeds, runs. It stops with the
    parent, also when the parent was killed."""
    settings = load_settings(data=workers.data)
    configure_logging(settings.log_level)
    app = create_app(settings, load_services(workers.services), background=False)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))

    def stop() -> None:
        server.should_exit = True

    stop_when_orphaned(parent, stop, lambda: server.should_exit)
    server.run(sockets=[_listening_socket(host, port)])


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
        PORT,
        TRAINING,
        arg("--demo", action="store_true", help="load the directory and sample reports; print a token per role"),
        arg(
            "--workers",
            type=int,
            default=1,
            help="processes answering HTTP on the port (default 1); the first also runs every subscription",
        ),
        arg(
            "--store-writer",
            action="store_true",
            help="SQLite: every process sends its appends to one writer process, which commits them together",
        ),
    ],
)
def up(args: argparse.Namespace) -> int:
    settings = _settings(args, training=args.training)
    configure_logging(settings.log_level)
    services = _services(args)
    workers = _workers(args, settings, services)
    _refuse_a_taken_port(args.host, args.port)  # before anything is opened
    # Bound now where the port must be known before uvicorn binds: the workers share it, and `--port 0` (any free
    # port) is said in the banner and to the workers as the port the system gave (both said 0 until session 28,
    # and each worker bound a port of its own).
    with contextlib.ExitStack() as stack:
        listener = (None if workers is None and args.port
                    else stack.enter_context(_listening_socket(args.host, args.port)))
        port = args.port if listener is None else listener.getsockname()[1]
        if args.store_writer:
            settings = stack.enter_context(_store_writer(settings))
        app = _open_app(settings, services, seed_demo=args.demo)
        if args.demo:
            print(f"LAPOR demo on {http_url(args.host, port, '/docs')} — bearer tokens (Authorization: Bearer ...):")
            for label, token in demo_tokens(settings):
                print(f"  {label:<18} {token}")
            sys.stdout.flush()
        return _run_server(app, args.host, port, workers=workers, listener=listener)


def _sqlite_store_path(settings: Settings) -> Path:
    """The file of the SQLite store the settings name without a writer: what a store writer may serve."""
    try:
        path, writer = parse_sqlite_url(settings.store)
    except ValueError:
        path, writer = None, None
    if path is None or writer is not None:
        raise CliError(f"a store writer serves a SQLite store given by its path, not {shown_url(settings.store)}")
    return Path(path)


@contextlib.contextmanager
def _store_writer(settings: Settings) -> Iterator[Settings]:
    """A writer process for the SQLite store while the block runs, and `settings` pointing at it. Spawned workers
    read the environment, so LAPOR_STORE is set for them too."""
    try:
        writer = WriterProcess(_sqlite_store_path(settings), stop_with_us=True, restart=True)
    except StoreError as error:
        raise CliError(str(error)) from None
    os.environ["LAPOR_STORE"] = writer.url
    try:
        yield settings.model_copy(update={"store": writer.url})
    finally:
        log.info(writer.stop())  # after every process that appends has stopped: what they sent is committed


@command(
    "writer",
    help="serve the appends of every process to the SQLite store, committed together; point the processes' "
    "LAPOR_STORE at it with ?writer=<data>/events.db-writer.sock",
    arguments=[DATA],
)
def writer(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(settings.log_level)
    return run_store_writer(_sqlite_store_path(settings))


def _workers(
    args: argparse.Namespace, settings: Settings, services: Sequence[ServiceDefinition]
) -> Workers | None:
    """The extra HTTP processes `--workers` asks for (one fewer than the number: this process is the first)."""
    if args.workers < 1:
        raise CliError(f"--workers must be at least 1, not {args.workers}")
    if args.workers == 1:
        return None
    if settings.training:
        raise CliError("training mode's clock lives in one process: run it with --workers 1")
    names = tuple(service.name for service in services)
    if any(name not in SERVICE_NAMES for name in names):
        raise CliError("--workers serves the four LAPOR services only")
    if settings.limits.storage.startswith("memory://"):
        log.warning(
            "rate limits count per process with limits.storage=%s: a client may make up to %d times as many "
            "requests; set LAPOR_LIMITS__STORAGE to a shared store (redis://...) to count them together",
            settings.limits.storage,
            args.workers,
        )
    return Workers(args.workers - 1, args.data, names)


@command(
    "serve",
    help="run one service alone against the shared store (run several side by side, one port each)",
    arguments=[
        arg("service", help=f"one of {', '.join(SERVICE_NAMES)}"),
        DATA,
        HOST,
        PORT,
        TRAINING,
    ],
)
def serve(args: argparse.Namespace) -> int:
    settings = _settings(args, training=args.training)
    configure_logging(settings.log_level)
    _refuse_a_taken_port(args.host, args.port)
    app = _open_app(settings, _services(args, args.service))
    return _run_server(app, args.host, args.port)


@command(
    "token create",
    help="print a signed bearer token",
    arguments=[
        arg("--role", required=True, choices=[r.value for r in Role if r is not Role.reporter]),
        arg("--agency", help="agency id (admin_agency, liaison, unit_officer; integration may), one the directory "
            "holds as active; a national role only its own (admin_national kemenpanrb, operator ksp, ombudsman "
            "ombudsman-ri), an auditor none"),
        arg("--unit", help="unit id, <agency_id>/<unit> (unit_officer only)"),
        arg("--channel", help="channel an integration client pushes for, e.g. sms (integration only)"),
        arg("--ttl", help="lifetime like 30m, 8h, 7d (default: LAPOR_TOKEN_TTL or 8h)"),
        arg("--subject", help="who the token is for (default: the role)"),
        DATA,
    ],
)
def token_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        ttl = parse_ttl(args.ttl or settings.token_ttl)
        token = TokenService(_kept_signing_secret(settings), SystemClock()).issue(
            Role(args.role),
            subject=args.subject,
            agency_id=args.agency,
            unit_id=args.unit,
            channel=args.channel,
            ttl=ttl,
        )
    except ValueError as error:
        raise CliError(str(error)) from None
    # What the token carries, given or implied (a unit officer's agency is its unit's, an ombudsman's its office).
    agency = token_agency(Role(args.role), args.agency, args.unit)
    _refuse_what_the_directory_lacks(settings, {"agency": agency, "unit": args.unit})
    print(token)
    return 0


def _refuse_what_the_directory_lacks(settings: Settings, scopes: dict[str, str | None]) -> None:
    """CliError naming the first agency or unit of `scopes` (by kind; None where not given) that routing's directory
    does not hold, or holds as inactive. The directory is in the log, a stream `directory-{agency_id}` per agency and
    per unit, opened by AgencyRegistered and changed by AgencyUpdated (schemas.events), so it is read there
    (`lapor.directory`), current, even while no server runs.

    Session 28: `lapor token create --agency` signed a token for any id, a mistyped one too, whose holder then saw an
    empty queue. A directory that cannot be read (no store at the settings' URL, one that does not open or answer)
    is refused as well, with what stopped it, and so is an id while the directory is still empty (routing registers
    it at its first start): a credential is issued only for an agency that was checked. A token naming no agency or
    unit needs no store, as before. Session 28 too: one the directory marks inactive (AgencyUpdated with `active`
    false: a retired agency, a closed unit) is refused, as routing refuses to dispose or assign to it; until then its
    officers were issued tokens like any other. And session 28: the agency a token takes without being told (an
    ombudsman's) is checked like one it is given, so `--role ombudsman` and `--role ombudsman --agency ombudsman-ri`,
    the same token, are refused alike where the directory lacks the Ombudsman or switched it off."""
    named = {kind: scope for kind, scope in scopes.items() if scope}
    if not named:
        return
    url = settings.store
    # Quoted as a problem quotes a client's input (session 31: a 100,000-character --agency came back whole, twice).
    what = " and ".join(f"{kind} {quoted(scope)}" for kind, scope in named.items())
    try:
        if not store_exists(url):
            raise CliError(f"no event store at {shown_url(url)}, so no directory to check {what} against; no token "
                           "was issued: give the server's --data or LAPOR_STORE")
        with open_store(url) as store:
            for kind, scope in named.items():
                record = read_record(store, scope)
                if record is not None and not record.active:
                    raise CliError(f"{kind} {quoted(scope)!r} is inactive in the directory of {shown_url(url)}; no "
                                   "token was issued")
                if record is None:
                    empty = directory_is_empty(store)
                    raise CliError(
                        f"{kind} {quoted(scope)!r} is not in the directory of {shown_url(url)}"
                        + (" (it is empty: routing registers it at its first start)" if empty else "")
                        + "; no token was issued"
                    )
    except _OPENING_BY_URL_FAILED as error:
        raise CliError(f"{_cannot_open(error, url)}; so {what} could not be checked against the directory and no "
                       "token was issued") from None


@command(
    "token revoke",
    help="refuse a bearer token, or every token of a subject issued until now, before it expires",
    arguments=[
        arg("--token", help="the token to revoke (this one only)"),
        arg("--subject", help="revoke every token of this subject issued until now"),
        arg("--agency", help="with --subject: only its tokens carrying this agency (default: in every agency)"),
        arg("--reason", required=True, help="why, kept with the revocation"),
        DATA,
    ],
)
def token_revoke(args: argparse.Namespace) -> int:
    """Records the revocation in the installation's read-model database, where every running process of it
    looks (within `lapor.revocation.REFRESH` seconds)."""
    try:  # the API's request, so both say the same of the same input
        request = RevokeRequest(token=args.token, subject=args.subject, agency_id=args.agency, reason=args.reason)
    except ValidationError as error:
        raise CliError(one_line(error)) from None
    settings = _settings(args)
    secret = None if request.token is None else _kept_signing_secret(settings)  # refused before anything opens
    db = _open_readmodels(settings)
    try:
        revocations = Revocations(db, SystemClock())
        by = f"cli:{getpass.getuser()}"
        if secret is not None:
            assert request.token is not None
            tokens = TokenService(secret, SystemClock(), revocations=revocations)
            try:
                revocation = tokens.revoke(request.token, by=by, reason=request.reason)
            except Unauthenticated as error:
                raise CliError(f"not a token of this installation: {error.detail}") from None
            print(f"revoked token {revocation.token_id} of {revocation.subject} ({revocation.revocation_id})")
        else:
            assert request.subject is not None
            revocation = revocations.revoke_subject(
                request.subject, request.agency_id, agency_roles_only=False, by=by, reason=request.reason
            )
            where = f"with agency {request.agency_id}" if request.agency_id else "in every agency"
            print(
                f"revoked every token of {revocation.subject} {where} issued until "
                f"{revocation.revoked_at:%Y-%m-%dT%H:%M:%SZ} ({revocation.revocation_id})"
            )
    finally:
        db.close()
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
    _require_store(url, option="--store, --data or LAPOR_STORE")
    try:
        # Read-only (session 31): an auditor verifies a copy it may not change, on read-only media or a file it may
        # only read; opening for writing failed there ("attempt to write a readonly database") and changed a copy
        # it could write (its journal, a lock file and a vault beside it).
        store = open_store(url, read_only=True)
    except _OPENING_BY_URL_FAILED as error:
        raise _cannot_open(error, url) from None
    walked = 0  # the last position checked
    # The walk's progress on stderr, and only on a terminal: off one rich printed an empty line where the bar had
    # been, first on stdout, so `lapor audit verify | head -1` read nothing of the verdict (session 31).
    console = output_console(stderr=True)
    with store, Progress(transient=True, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("verifying hash chains", total=None)

        def advance(checked: int, position: int, head: int) -> None:
            nonlocal walked
            walked = position
            progress.update(task, completed=position, total=head or None)

        try:
            report = verify_chain(store, stop_at_first=not args.all, progress=advance)
        except _OPENING_FAILED as error:  # the store fails under the walk: "database disk image is malformed"
            raise CliError(
                f"cannot read the store {shown_url(url)} after position {walked}: {_said(error, url)}; "
                "nothing could be said of the rest of the log"
            ) from None
        if store.changed_while_read():
            raise CliError(
                f"the store {shown_url(url)} was opened for writing while it was read as a file at rest; nothing is "
                "said of it: run the verification again"
            )
    if report.ok:
        print(f"ok: {report.events_checked} events in {report.streams_checked} streams, every hash chain intact")
        return 0
    for link in report.broken:
        print(f"BROKEN: {link.describe()}")
    if not args.all:  # the count alone read as if the log held only the events before the break
        print(
            f"stopped at the first broken link (position {report.broken[0].position} of {report.head_position}) "
            f"after checking {report.events_checked} events{_unread(report)}; the log was altered after it was written "
            "(--all walks the rest and names every broken stream)"
        )
        return 1
    links = "broken link" if len(report.broken) == 1 else "broken links"
    print(
        f"checked {report.events_checked} events{_unread(report)} in {report.streams_checked} streams up to position "
        f"{report.head_position}: {len(report.broken)} {links}; the log was altered after it was written"
    )
    return 1


def _unread(report: IntegrityReport) -> str:
    """What a count of the events checked leaves out: those found that could not be read."""
    if not report.events_unreadable:
        return ""
    return f" (and {report.events_unreadable} it could not read)"


@command(
    "parked list",
    help="the events subscriptions parked (their handler failed on them again and again), oldest first",
    arguments=[DATA],
)
def parked_list(args: argparse.Namespace) -> int:
    """What /metrics counts as `lapor_subscription_parked_events`, event by event, with the error that parked it."""
    db = _open_readmodels(_settings(args))
    try:
        with db.read() as tx:
            rows = tx.fetchall(
                "SELECT name, position, stream, version, type, attempts, parked_at, error FROM parked_events "
                "WHERE replayed_at IS NULL ORDER BY name, position"
            ) if table_exists(tx, "parked_events") else []
    finally:
        db.close()
    for name, position, stream, version, event_type, attempts, parked_at, reason in rows:
        print(f"{name}: position {position}, {stream} version {version} ({event_type}), parked {parked_at} after "
              f"{attempts} attempt{'' if attempts == 1 else 's'}: {reason}")
    print(f"{len(rows)} parked" + ("; once the cause is fixed: lapor parked replay --subscription NAME --all"
                                   if rows else ""))
    return 0


@command(
    "parked replay",
    help="run parked events through their subscription's handler again, once the cause is fixed (stop a server "
    "running that subscription on this data first); exit 1 if one still fails (it stays parked)",
    arguments=[
        arg("--subscription", required=True, help="the subscription's name, as `lapor parked list` gives it"),
        arg("--position", type=int, help="the parked event's position"),
        arg("--all", action="store_true", help="every event the subscription has parked, oldest first"),
        DATA,
    ],
)
def parked_replay(args: argparse.Namespace) -> int:
    """Takes the subscription's lease (`lapor.lease`), so it never runs beside the subscription's own runner: a
    server running it holds the lease, and the replay is refused until that server stops."""
    if (args.position is None) == (not args.all):
        raise CliError("give --position N or --all")
    settings = _settings(args)
    _require_store(settings.store, option="--data or LAPOR_STORE")
    ctx = _open_context(settings)  # a reaction replayed appends
    try:
        services = args.services if args.services is not None else load_services()
        subscriptions = {subscription.name: subscription for service in services
                         for subscription in service.subscriptions(ctx)}
        subscription = subscriptions.get(args.subscription)
        if subscription is None:
            raise CliError(f"no subscription {args.subscription!r}; there are: {', '.join(sorted(subscriptions))}")
        lease = ctx.db.lease(subscription.name)
        if not lease.acquire():
            raise CliError(f"subscription {subscription.name} runs in another process on this data (a server): stop "
                           "it, then replay")
        try:
            runner = SubscriptionRunner(ctx.store, ctx.db, subscription)
            positions = [args.position] if args.position is not None else [p.position for p in runner.parked()]
            failed = 0
            for position in positions:
                try:
                    runner.replay_parked(position)
                except LookupError as error:
                    raise CliError(str(error)) from None
                except Exception as error:  # noqa: BLE001 - said, and the event stays parked
                    failed += 1
                    print(f"position {position}: still fails ({describe_failure(error)}); it stays parked")
                else:
                    print(f"position {position}: handled")
            print(f"{len(positions) - failed} of {len(positions)} handled")
            return 1 if failed else 0
        finally:
            lease.release()
    finally:
        ctx.close()


@command(
    "rebuild",
    help="rebuild every projection from position 0 into fresh tables and report any difference from the live ones",
    arguments=[
        DATA,
        arg("--service", action="append", help="only this service's projections (repeat for more)"),
        arg("--batch-size", type=int, default=rebuilding.DEFAULT_BATCH, help="events per projection transaction"),
        arg("--keep", action="store_true", help="keep the rebuilt tables (their location is printed)"),
        arg(
            "--processes",
            type=int,
            default=os.cpu_count() or 1,
            help="rebuild in this many processes, each a share of the complaints (default: one per CPU, at most 8)",
        ),
    ],
)
def rebuild(args: argparse.Namespace) -> int:
    """Exit 0 when every rebuilt table equals its live table, 1 when any differs."""
    settings = _settings(args)
    configure_logging(settings.log_level)
    if args.processes < 1:
        raise CliError(f"--processes must be at least 1, not {args.processes}")
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, not {args.batch_size}")
    _require_store(settings.store, option="--data or LAPOR_STORE")
    # A service named twice is taken once (in the order first named): its projections twice over were two runners
    # of each subscription on the same fresh tables, and the rebuild failed ("the checkpoint of reporting.directory
    # is no longer at 0: another runner moved it"; session 31).
    names = list(dict.fromkeys(args.service)) if args.service else [None]
    services = [chosen for name in names for chosen in _services(args, name)]
    ctx = _open_context(settings, runs_subscriptions=False)  # writes fresh tables; says how the live ones differ
    try:
        report = rebuilding.run(ctx, services, batch_size=args.batch_size, keep=args.keep, processes=args.processes)
    except rebuilding.RebuildFailed as error:
        raise CliError(f"rebuild failed: {_said(error, settings.store, settings.readmodels)}") from None
    finally:
        ctx.close()
    return 0 if report.identical else 1


@command(
    "seed",
    help="load the demo's directory and sample reports into the store (what `lapor up --demo` loads), then stop",
    arguments=[DATA],
)
def seed(args: argparse.Namespace) -> int:
    """Runs the services' subscriptions while each seeds its demo data, waits until every subscription has handled
    what was appended, and stops: the next `lapor up` starts with the data in its views. Seeding is idempotent, so
    a second run appends nothing."""
    settings = _settings(args)
    configure_logging(settings.log_level)
    services = _services(args)
    ctx = _open_context(settings)
    try:
        before = ctx.store.head_position()
        runtime = Runtime(ctx, services)
        try:
            runtime.start()
            runtime.seed_demo()
            _wait_until_handled(ctx, runtime)
        finally:
            runtime.stop()
        appended = _count_after(ctx, before)
    finally:
        ctx.close()
    print(f"seeded {shown_url(settings.store)}: {appended} events appended")
    return 0


def _wait_until_handled(ctx: ServiceContext, runtime: Runtime) -> None:
    """Until every subscription has handled the log as it stands, and nothing was appended meanwhile (a handler or a
    background loop may append in turn)."""
    while True:
        head = ctx.store.head_position()
        while any(runner.lag(head) for runner in runtime.runners):
            failing = [runner.name for runner in runtime.runners if runner.failure is not None]
            if failing:
                raise CliError(f"subscription {failing[0]} failed while seeding; the log says why")
            time.sleep(SEED_POLL)
        if ctx.store.head_position() == head:
            return


def _count_after(ctx: ServiceContext, position: int) -> int:
    """How many events the log holds past `position` (positions need not be consecutive)."""
    count = 0
    while page := ctx.store.read_all(position + 1, limit=1000):
        count += len(page)
        position = page[-1].position
    return count


SEED_POLL = 0.1  # seconds between looks at the subscriptions while `lapor seed` waits for them


# The benchmarks of a source checkout (`benchmarks/`), by the name `lapor bench` knows them by.
BENCHMARKS = {
    "store": "bench_store",
    "routing": "bench_routing",
    "followup": "bench_followup",
    "reporting": "bench_reporting",
    "intake": "bench_intake_http",
    "startup": "bench_startup",
}


@command(
    "bench",
    help="run one of the checkout's benchmarks (benchmarks/ and docs/performance.md); its options follow its name",
    arguments=[
        arg("benchmark", choices=sorted(BENCHMARKS), help="which: " + ", ".join(sorted(BENCHMARKS))),
        arg("options", nargs=argparse.REMAINDER, help="the benchmark's own options (`lapor bench store --help`)"),
    ],
)
def bench(args: argparse.Namespace) -> int:
    """The benchmark's exit code. They live beside the packages in a source checkout, not in an installed wheel."""
    root = Path(__file__).resolve().parent.parent
    module = BENCHMARKS[args.benchmark]
    if not (root / "benchmarks" / f"{module}.py").is_file():
        raise CliError(f"no benchmarks/{module}.py beside this installation ({root}): run it from a source checkout")
    # `python -m` puts the working directory first on sys.path: the checkout's `benchmarks` package is found there.
    return subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args.options], cwd=root,
                          check=False).returncode


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
        code = args.run(args)
        sys.stdout.flush()  # here, where a reader gone away is caught below, not at the interpreter's exit
        return code
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        # The reader of stdout went away (`lapor audit verify | head -1`): nothing more to say to it, and no traceback
        # (session 31: one from the print that found the pipe closed, or "Exception ignored" from the flush at exit,
        # exit 120). What the command did stands (a revocation recorded, events appended). The shell's code for a
        # process SIGPIPE ended, as Python ignores that signal and so never dies of it.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit goes nowhere
        return STDOUT_CLOSED
    except (SettingsError, CliError) as error:
        print(f"lapor: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C in a command that runs to its end (seed, rebuild, audit, bench): what it appended stays (each
        # append is whole; seeding again appends the rest), a rebuild's fresh tables were dropped on the way out.
        # One line and the shell's code for SIGINT, not a traceback from wherever the signal landed.
        return interrupted()


STDOUT_CLOSED = 128 + signal.SIGPIPE  # 141: the exit code when stdout's reader went away before all was printed


def _stdout_closed() -> bool:
    """Whether stdout is a pipe (or socket) whose reader has gone: a BrokenPipeError raised by anything else (a
    socket of the command's own) is not this, and stays a traceback."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):  # stdout closed or replaced by one without a file descriptor
        return False


if __name__ == "__main__":
    sys.exit(main())
