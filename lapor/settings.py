"""Settings: environment variables `LAPOR_*`, then an optional TOML file named by `LAPOR_CONFIG`, then defaults.

```
LAPOR_DATA=./var                         # data directory (event store, read models, secret)
LAPOR_STORE=sqlite:///./var/events.db    # event store URL (default: under LAPOR_DATA)
LAPOR_READMODELS=...                     # read-model database (default: <data>/readmodels.db, or the
                                         # PostgreSQL store's own database)
LAPOR_SECRET=...                         # token signing key, >= 32 characters; required in production
LAPOR_PRODUCTION=true                    # refuse to start without LAPOR_SECRET
LAPOR_TRAINING=true                      # a ManualClock that an admin advances
LAPOR_LIMITS__MAX_BODY_BYTES=1048576     # nested values use a double underscore
LAPOR_FIELD_LIMITS__BODY=10000
LAPOR_CONFIG=/etc/lapor.toml             # [limits] max_body_bytes = ..., [policy] follow_up_days = ...
LAPOR_WEBHOOK_ALLOWED_NETWORKS=10.20.0.0/16,fd00:20::/32   # non-public networks webhooks may reach
LAPOR_WEBHOOK_PROXY=http://proxy.example.go.id:3128         # the HTTP proxy webhooks go through, if any
```

Explicit keyword arguments (the CLI's flags) win over the environment, which wins over the file.
A bad value raises `SettingsError` with one line per problem naming the variable, so the CLI can print it
without a traceback.
"""

from __future__ import annotations

import difflib
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import limits
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceError

ENV_PREFIX = "LAPOR_"
SECRET_FILE = "secret"
MIN_SECRET_LENGTH = 32  # HS256 wants a key at least as long as its 256-bit output


class SettingsError(ValueError):
    """A setting has a bad value; `str()` is a short message fit to print as is."""


def url_scheme_only(value: str) -> str:
    """A URL that may carry a password, fit to print: its scheme only (`postgresql://…`). Only the scheme, since
    a URL mistyped past parsing (`postgres ql://lapor:pw@db`) hides its password from `urlsplit`. One without `://`
    alike, up to its first `:` (`postgresql:/lapor:pw@db` was quoted whole until session 31); a path, which has no
    `:` or `@`, whole."""
    if "://" in value:
        return value.partition("://")[0] + "://…"
    if ":" in value or "@" in value:
        return value.partition(":")[0].partition("@")[0] + ":…"
    return value


# One rate as `limits` writes it: an amount, and a number of units of time when more than one.
_ONE_RATE = re.compile(r"\s*([0-9]+)\s*(?:/|\s*per\s*)\s*([0-9]+)?\s*[a-z]+\s*", re.IGNORECASE)


def _rate(value: str) -> str:
    """One rate of at least one request in at least one unit of time (session 32). `limits.parse` takes several
    (`10/minute;1/second`) and applies the first alone, so the second was accepted and never enforced; it takes
    `0/minute`, which refused every request (the public complaint channel closed by a setting), and reads `10/0minute`
    as `10/minute`."""
    try:
        items = limits.parse_many(value)
    except ValueError as error:
        raise ValueError(f"not a rate like '10/minute' or '100 per hour': {value!r}") from error
    if len(items) != 1:
        raise ValueError(f"one rate like '10/minute', not {len(items)}: only the first would be applied")
    rate = _ONE_RATE.fullmatch(value)  # parse_many took it, so it matches
    if rate is None or int(rate[1]) < 1 or (rate[2] is not None and int(rate[2]) < 1):
        raise ValueError("a rate is at least one request in at least one unit of time, like '10/minute'")
    return value


class RequestLimits(BaseModel):
    """Limits on public input (`lapor.limits` enforces them)."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest request body accepted")
    submission_rate: str = Field("10/minute", description="public submissions per client")
    sms_rate: str = Field("10/minute", description="SMS 1708 messages per sender (session 29: was per client address)")
    statistics_rate: str = Field("60/minute", description="public statistics requests per client (session 29)")
    storage: str = Field("memory://", description="`limits` storage URL; share it between processes")
    trust_forwarded_for: bool = Field(False, description="take the client from X-Forwarded-For (behind a proxy)")

    _check_rates = field_validator("submission_rate", "sms_rate", "statistics_rate")(_rate)

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        # The scheme, and its driver (redis:// needs the redis package): found out at start, not at the first request.
        try:
            limits.storage.storage_from_string(value)
        except limits.errors.ConfigurationError as error:
            shown = str(error).replace(value, url_scheme_only(value))  # redis:// may hold a password
            raise ValueError(f"not a usable storage like memory:// or redis://host:6379: {shown}") from None
        return value


class FieldLimits(BaseModel):
    """Longest accepted text per kind of field, in characters; the services' request models use these through
    `lapor.limits` (Title, Body, ...). They may tighten the event contract's own limits (schemas/events.py),
    never loosen them: a longer text would be accepted here and then refused by the event model."""

    model_config = ConfigDict(extra="forbid")

    title: int = Field(200, ge=1, le=200)
    body: int = Field(10_000, ge=1, le=10_000)
    text: int = Field(10_000, ge=1, le=10_000)  # information provided, follow-ups, resolutions
    comment: int = Field(2_000, ge=1, le=2_000)  # feedback comments
    reason: int = Field(2_000, ge=1, le=2_000)  # archive/return/escalation reasons, notes
    name: int = Field(200, ge=1, le=200)  # reporter name, agency name
    sms: int = Field(1_600, ge=1, le=10_000)  # ten concatenated SMS segments
    attachments: int = Field(10, ge=0, le=20)  # items per request


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data: Path = Field(Path("./var"), description="data directory")
    # "" until `_defaults_and_production` fills it in; given empty, it is refused (`_not_empty`), so the default is
    # not validated.
    store: str = Field("", validate_default=False, description="event store URL; default sqlite:///<data>/events.db")
    readmodels: str = Field("", validate_default=False, description="read-model database URL; default per store")
    store_timeout: float = Field(
        30.0, gt=0, le=3600,
        description="seconds the event store waits for its server: a PostgreSQL statement's answer, a KurrentDB call; "
        "and a statement on PostgreSQL read models (session 30)",
    )
    secret: SecretStr | None = Field(None, description="token signing key")
    production: bool = False
    training: bool = False
    token_ttl: str = Field("8h", description="default lifetime of `lapor token create` tokens")
    readiness_max_lag: int = Field(1000, ge=0, description="/readyz: largest subscription lag, in positions")
    readiness_wait: float = Field(
        0.5, gt=0, le=30,
        description="/readyz and /metrics: longest wait for a database connection, in seconds (session 28)",
    )
    public_statistics_cache: float = Field(
        30.0, ge=0, le=3600,
        description="seconds the public statistics of one selection are served from memory; 0: computed per request",
    )
    log_level: str = "INFO"
    holidays_file: Path | None = Field(None, description="operator-added holidays for the calendar")
    policy: dict[str, Any] = Field(default_factory=dict, description="Sp4nPolicy overrides")
    demo_agency: str = Field("pemda-53.71", description="agency the --demo tokens are scoped to")
    demo_unit: str = Field("pemda-53.71/dinkes", description="unit of the --demo unit_officer token")
    limits: RequestLimits = Field(default_factory=RequestLimits)
    field_limits: FieldLimits = Field(default_factory=FieldLimits)
    # Comma-separated in the environment (NoDecode: not JSON), a list in the file.
    webhook_allowed_networks: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = Field(
        (), description="networks outside the public internet that agencies' webhooks may reach (lapor.egress)"
    )
    webhook_proxy: str | None = Field(
        None, description="an HTTP proxy webhooks go through, http://host:port (lapor.egress); HTTPS_PROXY is not read"
    )

    @field_validator("data", "store", "readmodels", mode="before")
    @classmethod
    def _not_empty(cls, value: object, info: ValidationInfo) -> object:
        """A place given empty is refused (session 32). `LAPOR_STORE=` (a Secret whose key is empty, `${STORE}` of a
        shell that has none) took the default, a SQLite file in the data directory, and `LAPOR_DATA=` the working
        directory: on a pod's `emptyDir` every report acknowledged was gone with the pod, while /readyz said ready."""
        if isinstance(value, str) and not value.strip():
            default = {"data": "./var", "store": "sqlite:///<data>/events.db", "readmodels": "the store's default"}
            raise ValueError(f"is empty; leave it unset for the default ({default[info.field_name or '']}), or name it")
        return value

    @field_validator("store", "readmodels")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and value.partition("://")[0] not in {"sqlite", "postgresql", "postgres", "kurrentdb", "esdb"}:
            raise ValueError("expected a URL like sqlite:///var/events.db or postgresql://host/db")
        return value

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
        return value

    @field_validator("token_ttl")
    @classmethod
    def _ttl(cls, value: str) -> str:
        from lapor.auth import parse_ttl  # auth imports settings

        parse_ttl(value)
        return value

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: dict[str, Any]) -> dict[str, Any]:
        from lapor.policy import Sp4nPolicy

        try:
            Sp4nPolicy.model_validate(value)
        except ValidationError as error:
            raise ValueError(one_line(error)) from None
        return value

    @field_validator("holidays_file")
    @classmethod
    def _holidays(cls, value: Path | None) -> Path | None:
        from lapor.calendar import WorkingCalendar

        if value is not None:
            try:
                WorkingCalendar.from_file(value)
            except ValidationError as error:
                raise ValueError(f"{value}: {one_line(error)}") from None
            except OSError as error:  # a directory, or unreadable: said of this variable, not of LAPOR_CONFIG
                raise ValueError(f"{value}: {error.strerror}") from None
        return value

    @field_validator("webhook_proxy")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = urlsplit(value)
            port = url.port
        except ValueError:  # its words may quote a part of the password
            raise ValueError("expected a proxy URL like http://proxy.example.go.id:3128") from None
        if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/") or url.query:
            raise ValueError("expected a proxy URL like http://proxy.example.go.id:3128")
        if port is None:
            raise ValueError("give the proxy's port, as in http://proxy.example.go.id:3128")
        return value

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        items = value.replace(",", " ").split() if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return items  # pydantic says what it expected
        networks, problems = [], []
        for item in items:
            try:
                # strict: 10.20.1.0/16 is a typo for 10.20.0.0/16 or for 10.20.1.0/24, not a guess to make
                networks.append(ip_network(str(item)))
            except ValueError as error:
                problems.append(str(error))
        if problems:
            raise ValueError(f"expected networks like 10.20.0.0/16 or fd00::/8, comma-separated: {'; '.join(problems)}")
        return tuple(networks)

    @field_validator("demo_agency")
    @classmethod
    def _demo_agency(cls, value: str) -> str:
        from lapor.revocation import agency_problem  # what a token's agency must be

        problem = agency_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("demo_unit")
    @classmethod
    def _demo_unit(cls, value: str, info: ValidationInfo) -> str:
        agency = info.data.get("demo_agency")  # absent when it was refused itself
        if agency is not None and (not value.startswith(agency + "/") or value == agency + "/"):
            raise ValueError(f"expected a unit of LAPOR_DEMO_AGENCY ({agency}), like {agency}/dinkes")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @model_validator(mode="after")
    def _defaults_and_production(self) -> Settings:
        if not self.store:
            self.store = f"sqlite:///{self.data / 'events.db'}"
        if not self.readmodels:
            is_postgres = self.store.startswith(("postgresql://", "postgres://"))
            self.readmodels = self.store if is_postgres else f"sqlite:///{self.data / 'readmodels.db'}"
        if self.production and self.secret is None:
            raise ValueError("LAPOR_SECRET is required when LAPOR_PRODUCTION is set")
        if self.production and self.training:
            raise ValueError("training mode (a movable clock) is not allowed in production")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = config_path()
        if config:
            if not Path(config).is_file():  # a mistyped path must not silently mean "no file"
                raise FileNotFoundError("no such file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config)))
        return tuple(sources)

    def signing_secret(self) -> str:
        """LAPOR_SECRET, or outside production the key kept in `<data>/secret` (created 0600 on first use),
        so tokens survive restarts and `lapor serve` processes on one data directory share it."""
        if self.secret is not None:
            return self.secret.get_secret_value()
        if self.production:
            raise SettingsError("LAPOR_SECRET is required when LAPOR_PRODUCTION is set")
        path = self.data / SECRET_FILE
        try:
            if not path.exists():
                self.data.mkdir(parents=True, exist_ok=True)
                # Written whole under a private name, then linked into place: a process starting beside us
                # (four `lapor serve`s) sees either no secret or all of it, and the first link wins.
                draft = path.with_name(f".{SECRET_FILE}.{os.getpid()}")
                fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as file:
                    file.write(secrets.token_urlsafe(48) + "\n")
                try:
                    os.link(draft, path)
                except FileExistsError:
                    pass
                finally:
                    draft.unlink()
            value = path.read_text().strip()
        except OSError as error:  # e.g. the data directory of the service's own user, read by another
            raise SettingsError(
                f"{path}: cannot read or keep the signing secret there ({error.strerror}); check --data or "
                f"LAPOR_DATA, or set LAPOR_SECRET"
            ) from None
        if len(value) < MIN_SECRET_LENGTH:
            raise SettingsError(f"{path}: the kept secret is shorter than {MIN_SECRET_LENGTH} characters")
        return value


# `LAPOR_*` names of the environment that are not settings: the file's path, and the test suite's own.
NOT_SETTINGS = ("CONFIG", "REQUIRE_BACKENDS", "TEST_")
# What Kubernetes sets in every container for each Service of its namespace (service links): for the Service
# `lapor` of deploy/kubernetes LAPOR_SERVICE_HOST, LAPOR_SERVICE_PORT_HTTP, LAPOR_PORT, LAPOR_PORT_80_TCP_ADDR, ...;
# for a `lapor-postgres` LAPOR_POSTGRES_SERVICE_HOST, ... Names after the prefix, upper case.
SERVICE_LINK = re.compile(
    r"(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT(?:_[0-9]+_(?:TCP|UDP|SCTP)(?:_PROTO|_PORT|_ADDR)?)?)"
)
# DESIGN.md names a transport URL; only tailing the store is built (README, deploy/README.md).
NO_BUS = (
    "only the store is built as a transport (every service tails LAPOR_STORE); the Kafka relay of DESIGN.md is "
    "not, so leave LAPOR_BUS unset"
)


def config_path() -> str | None:
    """LAPOR_CONFIG, named in any case, as pydantic-settings takes every other variable (`lapor_production`)."""
    return next((value for name, value in os.environ.items() if name.upper() == ENV_PREFIX + "CONFIG"), None)


def unknown_variables(environment: Mapping[str, str]) -> list[str]:
    """One problem per `LAPOR_*` variable that names no setting. pydantic-settings passes them over in silence,
    where a mistyped key in the file is refused: `LAPOR_PRODUCTON=true` ran a server outside production."""
    fields = {name.upper() for name in Settings.model_fields}
    known = [ENV_PREFIX + name for name in sorted(fields)]
    problems = []
    for variable in sorted(environment):
        name = variable.upper().removeprefix(ENV_PREFIX)
        if not variable.upper().startswith(ENV_PREFIX) or name.split("__", 1)[0] in fields:
            continue
        if name == "BUS":
            problems.append(f"invalid setting {variable}: {NO_BUS}")
        elif not name.startswith(NOT_SETTINGS) and not SERVICE_LINK.fullmatch(name):
            guess = difflib.get_close_matches(variable.upper(), known, n=1)
            hint = f" (did you mean {guess[0]}?)" if guess else ""
            problems.append(f"unknown setting {variable}{hint}")
    return problems


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning every validation problem into one readable `SettingsError`."""
    unknown = unknown_variables(os.environ)
    if unknown:
        raise SettingsError("; ".join(unknown))
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as error:
        raise SettingsError(describe_errors(error)) from None
    except SourceError as error:  # a structured variable (LAPOR_POLICY, LAPOR_LIMITS) that is not JSON
        raise SettingsError(_undecodable(error)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as error:  # the file: not TOML, not UTF-8, not there
        raise SettingsError(f"{ENV_PREFIX}CONFIG={config_path()}: {error}") from None


_FIELD = re.compile(r'field "([a-z_]+)"')


def _undecodable(error: SourceError) -> str:
    """pydantic-settings names the field of a value it could not decode in its message, and chains why."""
    field = _FIELD.search(str(error))
    name = ENV_PREFIX + field.group(1).upper() if field else "settings"
    return f"invalid setting {name}: not valid JSON ({error.__cause__})"


def one_line(error: ValidationError) -> str:
    """Every problem of `error` on one line: `location: message; ...`."""
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'value'}: {item['msg'].removeprefix('Value error, ')}"
        for item in error.errors(include_url=False)
    )


def describe_errors(error: ValidationError) -> str:
    """One line for every problem, each naming the setting as the environment does (`LAPOR_LIMITS__STORAGE`) and,
    when a LAPOR_CONFIG file is read, as the file does (`limits.storage`), since the value may come from either; a
    key only the file can hold (one that names no setting) is named as the file has it."""
    config = config_path()
    lines = []
    for problem in error.errors(include_url=False):
        location = [str(part) for part in problem["loc"]]
        name = ENV_PREFIX + "__".join(location).upper() if location else "settings"
        if config and location:
            key = ".".join(location)
            if problem["type"] == "extra_forbidden":
                lines.append(f"unknown setting {key} in {ENV_PREFIX}CONFIG={config}")
                continue
            name += f" ({key} in {ENV_PREFIX}CONFIG={config})"
        message = problem["msg"].removeprefix("Value error, ")
        given = problem.get("input")
        # A secret, or a proxy's or storage's URL that may carry a password, is not repeated back; of a store's
        # URL (`postgresql://lapor:<password>@db/lapor`) only the scheme is.
        hidden = not location or isinstance(given, dict) or any(
            word in name.lower() for word in ("secret", "proxy", "storage")
        )
        if location in (["store"], ["readmodels"]) and isinstance(given, str):
            given = url_scheme_only(given)
        shown = "" if hidden else f" (got {given!r})"
        lines.append(f"invalid setting {name}: {message}{shown}")
    return "; ".join(lines)
