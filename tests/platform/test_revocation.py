"""Revoking bearer tokens before they expire: one token, or every token of a subject, over HTTP and from the
command line; on SQLite and PostgreSQL read models, and across processes of one installation."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from lapor.app import create_app
from lapor.auth import TokenService
from lapor.clock import ManualClock, SystemClock
from lapor.db import Database, PostgresDatabase, SqliteDatabase
from lapor.logs import JsonFormatter
from lapor.principal import NATIONAL_ADMIN_AGENCY, OMBUDSMAN_AGENCY, Role
from lapor.revocation import Revocations
from lapor.settings import Settings, load_settings
from tests.conftest import with_search_path
from tests.platform import probe
from tests.platform._servers import ROOT, lapor, wait_until

HOME = "pemda-53.71"
FOREIGN = "pemda-35.73"
WHOAMI = "/api/probe/whoami"
REVOCATIONS = "/api/tokens/revocations"


@dataclass
class Installation:
    client: TestClient
    tokens: TokenService
    secret: str

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def issue(
        self, role: Role, *, later: timedelta = timedelta(0), ttl: timedelta = timedelta(hours=8), **scope: Any
    ) -> str:
        """A token as `lapor token create` would sign it, issued `later` after now."""
        return TokenService(self.secret, ManualClock(SystemClock().now() + later)).issue(role, ttl=ttl, **scope)

    def accepted(self, token: str) -> bool:
        status = self.client.get(WHOAMI, headers=self.bearer(token)).status_code
        assert status in (200, 401), status
        return status == 200

    def revoke(self, by: str, **body: Any) -> Any:
        return self.client.post(REVOCATIONS, json={"reason": "officer moved to another office", **body},
                                headers=self.bearer(by))

    def revocations(self, by: str | None = None, query: str = "") -> list[dict[str, Any]]:
        """The revocations `by` (the national admin) lists, every page of them."""
        by = by or self.issue(Role.admin_national)
        page = self.client.get(REVOCATIONS + query, headers=self.bearer(by))
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["total"] == len(body["items"]), "these tests list fewer than a page"
        return body["items"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def installation(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Installation]:
    overrides = {"store": request.getfixturevalue("postgres_url")} if request.param == "postgres" else {}
    settings: Settings = load_settings(data=tmp_path / "var", **overrides)
    with TestClient(create_app(settings, [probe.SERVICE]), raise_server_exceptions=False) as client:
        secret = settings.signing_secret()
        yield Installation(client, TokenService(secret, SystemClock()), secret)


def test_a_revoked_token_is_refused_and_the_subjects_other_tokens_are_not(installation: Installation):
    stolen = installation.issue(Role.liaison, subject="budi", agency_id=HOME)
    other = installation.issue(Role.liaison, subject="budi", agency_id=HOME, later=timedelta(seconds=5))
    admin = installation.issue(Role.admin_national, subject="admin-pusat")
    assert installation.accepted(stolen)
    assert installation.accepted(other)
    response = installation.revoke(admin, token=stolen)
    assert response.status_code == 201
    revocation = response.json()
    assert revocation["subject"] == "budi"
    assert revocation["agency_id"] == HOME
    assert revocation["revoked_by"] == "admin_national:admin-pusat"
    refused = installation.client.get(WHOAMI, headers=installation.bearer(stolen))
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert "revoked" in refused.json()["detail"]
    assert installation.accepted(other)
    # Revoking it again changes nothing and names the first revocation.
    again = installation.revoke(admin, token=stolen)
    assert again.status_code == 201
    assert again.json()["revocation_id"] == revocation["revocation_id"]
    assert [r["revocation_id"] for r in installation.revocations()] == [revocation["revocation_id"]]


def test_a_subjects_tokens_issued_until_the_revocation_are_refused_and_later_ones_work(installation: Installation):
    admin = installation.issue(Role.admin_national)
    home = [installation.issue(Role.liaison, subject="sari", agency_id=HOME, ttl=timedelta(hours=n)) for n in (1, 2)]
    elsewhere = installation.issue(Role.liaison, subject="sari", agency_id=FOREIGN)
    assert all(installation.accepted(token) for token in [*home, elsewhere])
    response = installation.revoke(admin, subject="sari", agency_id=HOME)
    assert response.status_code == 201
    assert [installation.accepted(token) for token in home] == [False, False]
    assert installation.accepted(elsewhere)  # the same name in another agency is another person
    # A token issued after the revocation's second is a new credential.
    assert installation.accepted(installation.issue(Role.liaison, subject="sari", agency_id=HOME,
                                                    later=timedelta(seconds=2)))
    # Without an agency, the national admin revokes the subject everywhere.
    assert installation.revoke(admin, subject="sari").status_code == 201
    assert not installation.accepted(elsewhere)


def test_an_agency_admin_revokes_only_within_its_agency(installation: Installation):
    agency_admin = installation.issue(Role.admin_agency, subject="kepala-kominfo", agency_id=HOME)
    national = installation.issue(Role.admin_national, subject="admin-pusat")
    foreign = installation.issue(Role.liaison, subject="andi", agency_id=FOREIGN)
    officer = installation.issue(Role.unit_officer, subject="rina", unit_id=f"{HOME}/dinkes")
    for body in ({"token": national}, {"token": foreign}, {"subject": "andi", "agency_id": FOREIGN}):
        refused = installation.revoke(agency_admin, **body)
        assert refused.status_code == 403, body
        assert refused.headers["content-type"] == "application/problem+json"
    assert installation.revocations() == []
    assert installation.accepted(national)
    assert installation.accepted(foreign)
    # Its own unit's officer, by token; a subject without an agency means its own agency.
    assert installation.revoke(agency_admin, token=officer).status_code == 201
    assert not installation.accepted(officer)
    by_subject = installation.revoke(agency_admin, subject="andi")
    assert by_subject.status_code == 201
    assert by_subject.json()["agency_id"] == HOME
    assert installation.accepted(foreign)
    listed = installation.revocations(agency_admin)
    assert {r["agency_id"] for r in listed} == {HOME}
    assert len(installation.revocations()) == 2


def test_the_list_comes_a_page_at_a_time_and_by_subject(installation: Installation):
    national = installation.issue(Role.admin_national)
    made = [installation.revoke(national, subject=f"petugas-{n}").json()["revocation_id"] for n in range(5)]
    made += [installation.revoke(national, token=installation.issue(Role.liaison, subject="petugas-1", agency_id=HOME))
             .json()["revocation_id"]]
    seen: list[str] = []
    for offset in (0, 2, 4, 6):
        page = installation.client.get(f"{REVOCATIONS}?limit=2&offset={offset}", headers=installation.bearer(national))
        assert page.status_code == 200
        assert page.json()["total"] == 6
        seen += [r["revocation_id"] for r in page.json()["items"]]
    assert sorted(seen) == sorted(made)  # every one once, across the pages
    assert {r["subject"] for r in installation.revocations(query="?subject=petugas-1")} == {"petugas-1"}
    assert len(installation.revocations(query="?subject=petugas-1")) == 2
    for query in ("?limit=0", "?limit=501", "?offset=-1", "?subject=%00", "?subject=" + "x" * 201):
        refused = installation.client.get(REVOCATIONS + query, headers=installation.bearer(national))
        assert refused.status_code == (400 if "%00" in query else 422), query  # a control character: the URL's 400


def test_an_agency_admin_cannot_cut_off_national_roles_whose_tokens_name_a_directory_agency(
    installation: Installation,
):
    """The Ombudsman's, KSP's and KemenPAN-RB's tokens carry agencies that are in the directory, and those agencies
    may have admins of their own: they still revoke only their agency roles' tokens."""
    ombudsman = installation.issue(Role.ombudsman)  # agency ombudsman-ri
    national = installation.issue(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    liaison = installation.issue(Role.liaison, subject="ombudsman", agency_id=OMBUDSMAN_AGENCY)
    for agency, token in ((OMBUDSMAN_AGENCY, ombudsman), (NATIONAL_ADMIN_AGENCY, national)):
        their_admin = installation.issue(Role.admin_agency, agency_id=agency)
        refused = installation.revoke(their_admin, token=token)
        assert refused.status_code == 403
        assert "may not revoke" in refused.json()["detail"]
    assert installation.revocations() == []
    # By subject, an agency's admin reaches only agency roles: the liaison named "ombudsman", not the Ombudsman.
    ombudsman_admin = installation.issue(Role.admin_agency, agency_id=OMBUDSMAN_AGENCY)
    assert installation.revoke(ombudsman_admin, subject="ombudsman").status_code == 201
    assert not installation.accepted(liaison)
    assert installation.accepted(ombudsman)
    assert installation.accepted(national)
    # The national admin's revocation of the subject reaches every role.
    assert installation.revoke(installation.issue(Role.admin_national), subject="ombudsman").status_code == 201
    assert not installation.accepted(ombudsman)
    # ... and is the national admin's to list: the agency's admin sees only what it could have made.
    listed = installation.revocations(ombudsman_admin)
    assert [(r["subject"], r["agency_roles_only"]) for r in listed] == [("ombudsman", True)]
    assert len(installation.revocations()) == 2


def test_concurrent_revocations_of_one_token_record_it_once(installation: Installation):
    token = installation.issue(Role.liaison, subject="budi", agency_id=HOME)
    admin = installation.issue(Role.admin_national)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: installation.revoke(admin, token=token), range(8)))
    assert [answer.status_code for answer in answers] == [201] * 8
    assert len({answer.json()["revocation_id"] for answer in answers}) == 1
    assert len(installation.revocations()) == 1
    assert not installation.accepted(token)


def test_a_token_dated_ahead_is_refused_so_it_cannot_outlive_its_subjects_revocation(installation: Installation):
    ahead = installation.issue(Role.liaison, subject="budi", agency_id=HOME, later=timedelta(days=1))
    refused = installation.client.get(WHOAMI, headers=installation.bearer(ahead))
    assert refused.status_code == 401
    assert "future" in refused.json()["detail"]
    # Within the clock skew tokens are allowed anyway, a token issued a few seconds ahead is accepted.
    assert installation.accepted(installation.issue(Role.liaison, subject="budi", agency_id=HOME,
                                                    later=timedelta(seconds=5)))


@pytest.mark.parametrize(
    "body",
    [
        {"token": "x.y.z", "subject": "budi"},  # both
        {},  # neither
        {"subject": "budi", "reason": "   "},  # no reason
        {"token": "x.y.z", "agency_id": HOME},  # an agency beside a token
        {"subject": "budi", "agency_id": "../etc"},
        {"subject": "budi", "agency_id": f"{HOME}/dinkes"},  # a unit: its officer's token carries the agency
        {"subject": "budi", "surprise": True},
        {"subject": "a\u0000b"},  # no token is issued with control characters
        {"subject": "   "},
        {"subject": ["budi"]},
    ],
)
def test_a_malformed_revocation_is_a_validation_problem_and_records_nothing(installation: Installation, body):
    admin = installation.issue(Role.admin_national)
    response = installation.client.post(REVOCATIONS, json={"reason": "left", **body},
                                        headers=installation.bearer(admin))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert installation.revocations() == []


def test_a_token_of_another_installation_cannot_be_revoked_here(installation: Installation):
    foreign_token = TokenService("another installation's secret, 32+ chars", SystemClock()).issue(Role.auditor)
    response = installation.revoke(installation.issue(Role.admin_national), token=foreign_token)
    assert response.status_code == 422
    assert response.json()["errors"][0]["location"] == ["body", "token"]
    assert installation.revocations() == []


def test_the_command_line_revokes_for_every_running_process_of_the_installation(tmp_path: Path):
    """`lapor token revoke` writes to the installation's read models; a server already running (another
    process) refuses the token within its refresh, and so does the next start."""
    data = tmp_path / "var"
    secret = load_settings(data=data).signing_secret()
    token = TokenService(secret, SystemClock()).issue(Role.liaison, subject="dewi", agency_id=HOME)
    headers = {"Authorization": f"Bearer {token}"}

    def revoke(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lapor.cli", "token", "revoke", *args, "--data", str(data)],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )

    missing = revoke("--subject", "dewi", "--reason", "left")
    assert missing.returncode == 2
    assert "no event store" in missing.stderr
    with lapor(tmp_path, "up", "--data", str(data), name="first") as server:
        assert server.get(WHOAMI, headers=headers).status_code == 200
        both = revoke("--token", token, "--subject", "dewi", "--reason", "left")
        assert both.returncode == 2
        assert "exactly one" in both.stderr
        done = revoke("--token", token, "--reason", "laptop stolen")
        assert done.returncode == 0, done.stderr
        assert "revoked token" in done.stdout
        assert "dewi" in done.stdout
        wait_until(lambda: server.get(WHOAMI, headers=headers).status_code == 401, timeout=30,
                   describe="the running server refusing the revoked token")
    with lapor(tmp_path, "up", "--data", str(data), name="second") as server:
        assert server.get(WHOAMI, headers=headers).status_code == 401


@pytest.mark.postgres
def test_processes_starting_at_once_on_a_new_postgresql_schema_all_set_up_the_revocations(postgres_server: str):
    """`CREATE TABLE IF NOT EXISTS` run at once by several connections can fail in PostgreSQL's catalogue; the
    read models take the store's DDL lock for it (`Tx.lock_schema_changes`)."""
    for attempt in range(5):
        schema = f"revocations_race_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            url = with_search_path(postgres_server, schema)
            databases = [PostgresDatabase(url) for _ in range(6)]
            barrier = threading.Barrier(len(databases))

            def open_revocations(db: PostgresDatabase, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                Revocations(db, SystemClock())

            with ThreadPoolExecutor(len(databases)) as pool:
                failures = [f.exception() for f in [pool.submit(open_revocations, db) for db in databases]]
            for db in databases:
                db.close()
            assert failures == [None] * len(databases), (attempt, failures)
        finally:
            with psycopg.connect(postgres_server, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    db = (
        PostgresDatabase(request.getfixturevalue("postgres_url"))
        if request.param == "postgres"
        else SqliteDatabase(tmp_path / "readmodels.db")
    )
    yield db
    db.close()


def test_the_process_that_records_a_revocation_refuses_the_token_as_soon_as_it_returns(database: Database):
    """Several revocations at once, of one token and of several, while the copy is reloaded all the time: none
    returns before its own process refuses the token."""
    revocations = Revocations(database, SystemClock(), refresh=0.001)
    revocations.start()
    late: list[str] = []

    def revoke(token: str) -> None:
        revocations.revoke_token(token, subject="budi", agency_id=HOME, role="liaison",
                                 expires_at=2**40, by="test", reason="test")
        if not revocations.revoked(token, "budi", HOME, Role.liaison, 0):
            late.append(token)

    try:
        for round_ in range(30):
            tokens = [f"{round_}-same"] * 2 + [f"{round_}-{n}" for n in range(3)]
            with ThreadPoolExecutor(len(tokens)) as pool:
                list(pool.map(revoke, tokens))
    finally:
        revocations.close()
    assert late == []


@pytest.mark.parametrize(
    "scope",
    [{"subject": "budi\nsari"}, {"subject": "x" * 201}, {"subject": " "}, {"agency_id": f"{HOME}/dinkes"}],
)
def test_no_token_is_issued_that_a_revocation_could_not_name(scope: dict[str, str]):
    tokens = TokenService("a secret of at least thirty-two characters", SystemClock())
    with pytest.raises(ValueError, match=r"subject|agency"):
        tokens.issue(Role.liaison, **{"agency_id": HOME, **scope})


def test_the_log_line_of_a_revocation_says_what_was_revoked_and_by_whom(tmp_path: Path, caplog):
    """The details went into the record as attributes the JSON log never writes: the line said only "bearer tokens
    revoked"."""
    database = SqliteDatabase(tmp_path / "readmodels.db")
    try:
        revocations = Revocations(database, SystemClock())
        with caplog.at_level(logging.INFO, logger="lapor.revocation"):
            revocation = revocations.revoke_subject("budi", HOME, agency_roles_only=True, by="admin_agency:siti",
                                                    reason="pindah tugas")
    finally:
        database.close()
    [record] = [record for record in caplog.records if record.name == "lapor.revocation"]
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "bearer tokens revoked"
    assert (entry["revocation_id"], entry["subject"], entry["agency_id"], entry["revoked_by"]) == (
        revocation.revocation_id, "budi", HOME, "admin_agency:siti"
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_command_line_refuses_a_revocation_into_read_models_no_server_has_run_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest,
    backend: str,
):
    """Read models no server made (LAPOR_READMODELS mistyped, not the servers'): the revocation was recorded there,
    where no server would ever look, and the command said "revoked" (session 31). Nothing is made there now."""
    from lapor.cli import main as cli_main
    from lapor.store import open_store

    data = tmp_path / "var"
    if backend == "postgres":
        url = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("LAPOR_STORE", url)
    else:
        url = f"sqlite:///{data}/events.db"
    open_store(url).close()  # the log exists; no server has run
    assert cli_main(["token", "revoke", "--subject", "dewi", "--reason", "left", "--data", str(data)]) == 2
    said = capsys.readouterr()
    assert said.out == ""
    assert "lapor: no read models at " in said.err
    assert "nothing was created or changed" in said.err
    if backend == "postgres":
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regclass('auth_revocations')").fetchone() == (None,)
    else:
        assert not (data / "readmodels.db").exists()
