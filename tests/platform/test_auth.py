"""Bearer tokens, reporter tokens, and the scope rules of `authorize`."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from lapor.auth import (
    ReporterCredential,
    TokenService,
    authorize,
    new_reporter_token,
    parse_ttl,
    reporter_token_hash,
)
from lapor.clock import ManualClock
from lapor.context import ServiceContext
from lapor.directory import agency_stream, read_record
from lapor.principal import OMBUDSMAN_AGENCY, Principal, Role
from lapor.problems import Forbidden, Unauthenticated
from lapor.settings import load_settings
from lapor.store import open_store
from schemas.events import AgencyUpdated
from services.routing.seed import seed_directory
from tests.platform._servers import run_lapor

SECRET = "k" * 48


def test_a_token_carries_role_agency_unit_and_channel():
    tokens = TokenService(SECRET, ManualClock())
    officer = tokens.verify(
        tokens.issue(Role.unit_officer, subject="siti", agency_id="pemda-53.71", unit_id="pemda-53.71/dinkes")
    )
    assert officer == Principal("siti", Role.unit_officer, agency_id="pemda-53.71", unit_id="pemda-53.71/dinkes")
    gateway = tokens.verify(tokens.issue(Role.integration, channel="sms"))
    assert (gateway.role, gateway.channel) == (Role.integration, "sms")


def test_an_ombudsman_token_belongs_to_ombudsman_ri_by_default():
    tokens = TokenService(SECRET, ManualClock())
    assert tokens.verify(tokens.issue(Role.ombudsman)).agency_id == OMBUDSMAN_AGENCY


def test_a_token_expires_after_its_lifetime():
    clock = ManualClock()
    tokens = TokenService(SECRET, clock)
    token = tokens.issue(Role.auditor, ttl=timedelta(minutes=30))
    clock.advance(timedelta(minutes=29))
    assert tokens.verify(token).role is Role.auditor
    clock.advance(timedelta(minutes=5))
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.verify(token)


def test_a_principal_knows_the_last_moment_its_token_is_accepted():
    """`valid_until` is what long-lived responses (the live stream) end at: it must be exactly where `verify`
    starts refusing the token, not earlier (a feed cut short) nor later (rights outliving the token)."""
    clock = ManualClock()
    tokens = TokenService(SECRET, clock)
    token = tokens.issue(Role.operator, ttl=timedelta(hours=1))
    valid_until = tokens.verify(token).valid_until
    assert valid_until is not None
    clock.set(valid_until)
    assert tokens.verify(token).role is Role.operator
    clock.set(valid_until + timedelta(seconds=1))
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.verify(token)


def test_a_token_valid_past_what_a_datetime_holds_has_no_end():
    claims = {"iss": "lapor", "sub": "ops", "role": "operator", "iat": 0, "exp": 10**15}
    principal = TokenService(SECRET, ManualClock()).verify(jwt.encode(claims, SECRET, algorithm="HS256"))
    assert (principal.role, principal.valid_until) == (Role.operator, None)


def test_a_tampered_token_is_refused():
    tokens = TokenService(SECRET, ManualClock())
    header, payload, signature = tokens.issue(Role.liaison, agency_id="pemda-53.71").split(".")
    with pytest.raises(Unauthenticated):
        tokens.verify(f"{header}.{payload[:-2]}xx.{signature}")


@pytest.mark.parametrize(
    ("role", "scope", "message"),
    [
        (Role.admin_agency, {}, "needs an agency"),
        (Role.unit_officer, {"agency_id": "pemda-53.71"}, "needs a unit"),
        (Role.unit_officer, {"agency_id": "pemda-53.71", "unit_id": "pemda-35.73/dinkes"}, "not inside"),
        # A unit without its `/<unit>` is the agency: its officer would act on every report of the agency.
        (Role.unit_officer, {"unit_id": "pemda-53.71"}, "not the agency pemda-53.71 itself"),
        (Role.unit_officer, {"agency_id": "pemda-53.71", "unit_id": "pemda-53.71"}, "not the agency"),
        (Role.reporter, {}, "reporter_token"),
        (Role.integration, {}, "needs the channel it pushes for"),  # every push of it was a 403
    ],
)
def test_tokens_that_could_not_work_are_not_issued(role, scope, message):
    with pytest.raises(ValueError, match=message):
        TokenService(SECRET, ManualClock()).issue(role, **scope)


def test_a_token_naming_its_agency_as_its_unit_opens_nothing():
    """Signed before `issue` refused it: such a unit officer passed the scope check for every report of the agency,
    the unassigned ones included."""
    claims = {"iss": "lapor", "sub": "siti", "role": "unit_officer", "agency": "pemda-53.71", "unit": "pemda-53.71",
              "iat": 1_800_000_000, "exp": 1_800_003_600}
    tokens = TokenService(SECRET, ManualClock(datetime.fromtimestamp(1_800_000_100, UTC)))
    with pytest.raises(Unauthenticated, match="not the agency"):
        tokens.verify(jwt.encode(claims, SECRET, algorithm="HS256"))


@pytest.mark.parametrize(("text", "expected"), [("30m", timedelta(minutes=30)), ("8h", timedelta(hours=8)),
                                                 ("7d", timedelta(days=7)), ("45s", timedelta(seconds=45))])
def test_token_lifetimes_are_written_like_8h(text, expected):
    assert parse_ttl(text) == expected


@pytest.mark.parametrize("text", ["8", "0h", "h8", "8 weeks", ""])
def test_unreadable_lifetimes_are_refused(text):
    with pytest.raises(ValueError, match="like 30m"):
        parse_ttl(text)


@pytest.mark.parametrize("text", ["365001d", "3000000d", "99999999999d"])
def test_a_lifetime_longer_than_a_token_can_carry_is_refused(text):
    """Its `exp` would be past the year 9999 (or past what a timedelta holds): issuing failed with an OverflowError."""
    with pytest.raises(ValueError, match="at most 365000d"):
        parse_ttl(text)


def test_lapor_token_create_refuses_an_endless_lifetime_in_one_line(tmp_path):
    result = run_lapor("token", "create", "--role", "auditor", "--ttl", "3000000d", "--data", str(tmp_path / "var"))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "lapor: a lifetime is at most 365000d (1000 years), not '3000000d'\n"


@dataclass(frozen=True)
class Complaint:
    tracking_id: str
    reporter_token_hash: str | None


def test_a_reporter_token_opens_only_its_own_complaint():
    token = new_reporter_token()
    mine = Complaint("LAP-MINE", reporter_token_hash(token))
    other = Complaint("LAP-OTHER", reporter_token_hash(new_reporter_token()))
    credential = ReporterCredential(token)
    assert credential.principal_for(mine) == Principal(
        "reporter:LAP-MINE", Role.reporter, tracking_id="LAP-MINE"
    )
    with pytest.raises(Unauthenticated):
        credential.principal_for(other)
    with pytest.raises(Unauthenticated):
        ReporterCredential(None).principal_for(mine)


def test_the_stored_reporter_token_hash_is_hex_sha256():
    token = new_reporter_token()
    assert len(token) >= 40  # 256 bits, url-safe
    assert reporter_token_hash(token) == hashlib.sha256(token.encode()).hexdigest()


def officer(unit: str) -> Principal:
    return Principal("o", Role.unit_officer, agency_id=unit.split("/")[0], unit_id=unit)


def test_a_unit_officer_acts_only_on_reports_assigned_to_their_unit():
    dinkes = officer("pemda-53.71/dinkes")
    authorize(dinkes, "complaint.post_follow_up", agency_id="pemda-53.71", unit_id="pemda-53.71/dinkes")
    with pytest.raises(Forbidden):
        authorize(dinkes, "complaint.post_follow_up", agency_id="pemda-53.71", unit_id="pemda-53.71/disdik")
    with pytest.raises(Forbidden):  # disposed to the agency, not yet assigned to the unit
        authorize(dinkes, "complaint.post_follow_up", agency_id="pemda-53.71")


def test_an_agency_is_not_confused_with_one_whose_id_starts_the_same():
    admin = Principal("a", Role.admin_agency, agency_id="pemda-53.71")
    authorize(admin, "queue.read", agency_id="pemda-53.71/dinkes")
    with pytest.raises(Forbidden):
        authorize(admin, "queue.read", agency_id="pemda-53.710")


def test_an_integration_client_pushes_only_for_its_channel():
    gateway = Principal("gw", Role.integration, channel="sms")
    authorize(gateway, "channel.submit", channel="sms")
    with pytest.raises(Forbidden):
        authorize(gateway, "channel.submit", channel="sambat-malang")


def test_an_unknown_action_is_a_programming_error_not_a_denial():
    with pytest.raises(KeyError, match="ACTIONS"):
        authorize(None, "complaint.teleport")


def _installation(data: Path) -> None:
    """The installation on `data` as its first start makes it: the secret kept, routing's directory registered."""
    ctx = ServiceContext.open(load_settings(data=data))
    try:
        seed_directory(ctx)
    finally:
        ctx.close()


def test_lapor_token_create_prints_only_a_token_the_data_dir_secret_verifies(tmp_path):
    data = tmp_path / "var"
    _installation(data)
    result = subprocess.run(
        [sys.executable, "-m", "lapor.cli", "token", "create", "--role", "liaison", "--agency", "pemda-53.71",
         "--ttl", "30m", "--data", str(data)],
        capture_output=True, text=True, check=True,
    )
    [token] = result.stdout.split()
    settings = load_settings(data=data)
    principal = TokenService(settings.signing_secret(), ManualClock()).verify(token)
    assert (principal.role, principal.agency_id) == (Role.liaison, "pemda-53.71")
    assert (data / "secret").stat().st_mode & 0o777 == 0o600


def _lapor(*arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if not name.upper().startswith("LAPOR_")}
    return run_lapor(*arguments, env=environment)


def test_lapor_token_create_where_no_server_keeps_a_secret_is_refused_and_makes_none(tmp_path):
    """Run from another directory than the server's (default ./var), or without the server's LAPOR_SECRET, it made a
    new key there and printed a token every server refused ("invalid token: Signature verification failed")."""
    data = tmp_path / "var"
    result = _lapor("token", "create", "--role", "admin_national", "--agency", "kemenpanrb", "--data", str(data))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"lapor: no signing secret: LAPOR_SECRET is not set and there is no {data}/secret, so no server signs with "
        "the key this would make; give the server's --data or LAPOR_DATA, or its LAPOR_SECRET\n"
    )
    assert not data.exists()


@pytest.mark.parametrize(
    ("scope", "refused"),
    [
        (["--role", "liaison", "--agency", "pemda-53.7l"], "agency 'pemda-53.7l'"),
        (["--role", "admin_agency", "--agency", "kementerian-sihir"], "agency 'kementerian-sihir'"),
        (["--role", "unit_officer", "--unit", "pemda-53.71/dinas-sihir"], "unit 'pemda-53.71/dinas-sihir'"),
        (["--role", "liaison", "--agency", "routing-rules"], "agency 'routing-rules'"),  # the rules' stream
    ],
)
def test_lapor_token_create_refuses_an_agency_or_unit_the_directory_does_not_know(tmp_path, scope, refused):
    """Until session 28 it signed a token for any id, a mistyped one too: its holder saw an empty queue."""
    data = tmp_path / "var"
    _installation(data)
    result = _lapor("token", "create", *scope, "--data", str(data))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"lapor: {refused} is not in the directory of sqlite:///{data}/events.db; no token was issued\n"
    )
    known = _lapor("token", "create", "--role", "unit_officer", "--agency", "pemda-53.71", "--unit",
                   "pemda-53.71/dinkes", "--data", str(data))
    assert (known.returncode, known.stderr) == (0, "")
    assert known.stdout.count(".") == 2  # a signed token


def _switch(data: Path, agency_id: str, *, active: bool) -> None:
    """What routing appends for `PUT /api/agencies/{agency_id}` with `active` as given: its whole record, as it is."""
    with open_store(f"sqlite:///{data}/events.db") as store:
        record = read_record(store, agency_id)
        assert record is not None
        update = AgencyUpdated(**{**record.data, "active": active})
        store.append(agency_stream(agency_id), [update.to_new_event()], record.version)


@pytest.mark.parametrize(
    ("scope", "switched_off", "refused"),
    [
        (["--role", "liaison", "--agency", "pemda-53.71"], "pemda-53.71", "agency 'pemda-53.71'"),
        (["--role", "unit_officer", "--agency", "pemda-53.71", "--unit", "pemda-53.71/dinkes"], "pemda-53.71/dinkes",
         "unit 'pemda-53.71/dinkes'"),
        # The agency a unit officer's token takes from its unit is the token's agency too.
        (["--role", "unit_officer", "--unit", "pemda-53.71/dinkes"], "pemda-53.71", "agency 'pemda-53.71'"),
        # And the agency an ombudsman's token takes without being told: the Ombudsman's office.
        (["--role", "ombudsman"], "ombudsman-ri", "agency 'ombudsman-ri'"),
    ],
)
def test_lapor_token_create_refuses_an_agency_or_unit_the_directory_marks_inactive(
    tmp_path, scope, switched_off, refused
):
    """Session 28: the directory's check refused only ids it did not hold, so a retired agency's or a closed unit's
    officers were still issued tokens, though nothing can be disposed or assigned to it. Switched on again, it is
    issued for: what counts is the record as it stands."""
    data = tmp_path / "var"
    _installation(data)
    _switch(data, switched_off, active=False)
    result = _lapor("token", "create", *scope, "--data", str(data))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"lapor: {refused} is inactive in the directory of sqlite:///{data}/events.db; no token " \
                            "was issued\n"
    _switch(data, switched_off, active=True)
    issued = _lapor("token", "create", *scope, "--data", str(data))
    assert (issued.returncode, issued.stderr) == (0, "")
    assert issued.stdout.count(".") == 2  # a signed token


def test_lapor_token_create_for_an_agency_without_a_directory_to_check_it_against_is_refused(tmp_path):
    """No store at the data directory (a mistyped --data beside a kept secret): nothing to check the agency against,
    so no token, and no empty store made; an agency in a store routing never started on is not known either. A token
    naming no agency needs no directory; an ombudsman's names the Ombudsman's office without being told."""
    data = tmp_path / "var"
    data.mkdir()
    (data / "secret").write_text("s3cret-" + "x" * 40)
    (data / "secret").chmod(0o600)
    result = _lapor("token", "create", "--role", "liaison", "--agency", "pemda-53.71", "--data", str(data))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"lapor: no event store at sqlite:///{data}/events.db, so no directory to check agency pemda-53.71 against; "
        "no token was issued: give the server's --data or LAPOR_STORE\n"
    )
    assert sorted(path.name for path in data.iterdir()) == ["secret"]
    assert _lapor("token", "create", "--role", "auditor", "--data", str(data)).returncode == 0
    ombudsman = _lapor("token", "create", "--role", "ombudsman", "--data", str(data))  # its agency is implied
    assert (ombudsman.returncode, ombudsman.stdout) == (2, "")
    assert "so no directory to check agency ombudsman-ri against; no token was issued" in ombudsman.stderr
    open_store(f"sqlite:///{data}/events.db").close()
    for scope in (["--role", "liaison", "--agency", "pemda-53.71"], ["--role", "ombudsman"]):
        empty = _lapor("token", "create", *scope, "--data", str(data))
        assert (empty.returncode, empty.stdout) == (2, "")
        assert "(it is empty: routing registers it at its first start); no token was issued" in empty.stderr
    away = run_lapor("token", "create", "--role", "liaison", "--agency", "pemda-53.71", "--data", str(data), env={
        **{name: value for name, value in os.environ.items() if not name.upper().startswith("LAPOR_")},
        "LAPOR_STORE": "postgresql://lapor:pw@127.0.0.1:1/lapor",  # nothing listens on port 1
    })
    assert (away.returncode, away.stdout) == (2, "")
    assert away.stderr.startswith("lapor: cannot open the store postgresql://lapor:***@127.0.0.1:1/lapor: ")
    assert away.stderr.endswith("; so agency pemda-53.71 could not be checked against the directory and no token was "
                                "issued\n")


def test_lapor_token_revoke_without_the_servers_secret_says_so_and_makes_none(tmp_path):
    """A store kept where LAPOR_SECRET signs (PostgreSQL, Kubernetes), revoked from a shell without it: a new key was
    made under --data and the token called "not a token of this installation"."""
    data = tmp_path / "var"
    open_store(f"sqlite:///{data}/events.db").close()
    token = TokenService("s3cret-" + "x" * 40, ManualClock()).issue(Role.auditor, ttl=timedelta(hours=1))
    result = _lapor("token", "revoke", "--token", token, "--reason", "laptop stolen", "--data", str(data))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("lapor: no signing secret: LAPOR_SECRET is not set")
    assert not (data / "secret").exists()


@pytest.mark.parametrize(
    ("scope", "refusal"),
    [
        # A channel no route takes: `SMS` is not `sms` (403 at the SMS route), a space or capital is refused by the
        # path of /api/channels/{channel}/complaints (422). Every push of such a token failed.
        ({"channel": "SMS"}, "channel 'SMS' is not one a client can push for"),
        ({"channel": "sambat malang"}, "channel 'sambat malang' is not one a client can push for"),
        # A byte of the shell's argument that is not UTF-8: signed as a JSON escape, then refused as not text by every
        # request naming the subject, so the token could not be revoked by name.
        ({"subject": "bu\udcffdi", "channel": "sms"}, "a subject must be text"),
    ],
)
def test_a_token_its_holder_could_not_use_or_nobody_revoke_by_name_is_not_issued(scope, refusal):
    tokens = TokenService(SECRET, ManualClock())
    with pytest.raises(ValueError, match=refusal):
        tokens.issue(Role.integration, **scope)


def test_lapor_token_create_refuses_a_channel_no_route_takes_and_prints_no_token(tmp_path):
    data = tmp_path / "var"
    load_settings(data=data).signing_secret()  # the installation keeps one
    result = _lapor("token", "create", "--role", "integration", "--channel", "SMS", "--data", str(data))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("lapor: channel 'SMS' is not one a client can push for")


@pytest.mark.parametrize(
    ("options", "refusal"),
    [
        # Session 31: signed, and every event it caused recorded a national admin acting for that agency.
        (["--role", "admin_national", "--agency", "pemda-53.71"],
         "role admin_national acts as kemenpanrb, not pemda-53.71"),
        (["--role", "operator", "--agency", "pemda-53.71"], "role operator acts as ksp, not pemda-53.71"),
        (["--role", "auditor", "--agency", "kemenpanrb"], "role auditor belongs to no agency, not kemenpanrb"),
        (["--role", "ombudsman", "--agency", "pemda-53.71"], "role ombudsman acts as ombudsman-ri, not pemda-53.71"),
        (["--role", "liaison", "--agency", "pemda-53.71", "--channel", "sms"],
         "only role integration pushes for a channel, not role liaison"),
        (["--role", "admin_national", "--channel", "sms"], "only role integration pushes for a channel"),
        (["--role", "liaison", "--agency", "pemda-53.71", "--unit", "pemda-53.71/dinkes"],
         "only role unit_officer works in a unit, not role liaison"),
    ],
)
def test_lapor_token_create_refuses_a_scope_the_role_does_not_act_in_and_prints_no_token(tmp_path, options, refusal):
    data = tmp_path / "var"
    _installation(data)  # the directory holds pemda-53.71: only the role's scope is refused
    result = _lapor("token", "create", *options, "--data", str(data))
    assert (result.returncode, result.stdout) == (2, ""), result.stdout
    assert result.stderr.startswith(f"lapor: {refusal}")


@pytest.mark.parametrize(
    ("role", "scope"),
    [(Role.admin_national, {"agency_id": "kemenpanrb"}), (Role.admin_national, {}),
     (Role.operator, {"agency_id": "ksp"}), (Role.auditor, {}),
     (Role.integration, {"channel": "sambat-malang", "agency_id": "pemda-35.73"})],
)
def test_a_role_with_its_own_scope_or_none_is_issued(role, scope):
    tokens = TokenService(SECRET, ManualClock())
    principal = tokens.verify(tokens.issue(role, **scope))
    assert (principal.role, principal.agency_id) == (role, scope.get("agency_id"))


def test_a_token_signed_for_a_national_role_in_another_agency_opens_nothing():
    """One issued before session 31 refused it is refused when presented, as an ombudsman's naming another agency."""
    claims = {"iss": "lapor", "sub": "rina", "role": "admin_national", "agency": "pemda-53.71",
              "iat": 1_800_000_000, "exp": 1_800_003_600}
    tokens = TokenService(SECRET, ManualClock(datetime.fromtimestamp(1_800_000_100, UTC)))
    with pytest.raises(Unauthenticated, match=r"acts as kemenpanrb, not pemda-53\.71"):
        tokens.verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_lapor_token_create_quotes_a_very_long_agency_it_refuses_as_a_problem_does(tmp_path):
    """Session 31: a 100,000-character --agency came back whole, twice, in the one line refusing it."""
    data = tmp_path / "var"
    load_settings(data=data).signing_secret()
    open_store(f"sqlite:///{data}/events.db").close()
    agency = "pemda-" + "9" * 100_000
    result = _lapor("token", "create", "--role", "liaison", "--agency", agency, "--data", str(data))
    assert (result.returncode, result.stdout) == (2, "")
    assert f"lapor: agency '{agency[:63]}…' is not in the directory of " in result.stderr
    assert len(result.stderr) < 500
