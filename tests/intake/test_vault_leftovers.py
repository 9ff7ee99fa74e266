"""Vault entries of reports never recorded (docs/intake.md): intake puts a reporter's identity and the originals of
masked text in the vault before it appends the event. An append that the store says was not recorded leaves no
entry; entries an event never came to refer to (the process killed between the put and the append, an append
whose outcome the store could not tell) are swept once older than the grace; an entry a recorded event refers
to is never swept. Real SQLite and PostgreSQL stores; the failing append is a trigger on the events table."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from lapor.store.open import parse_sqlite_url
from services.intake.leftovers import GRACE, sweep
from tests.intake.conftest import REPORT, Intake, running_intake

NIK = "5371014508850001"
NAMED = {
    **REPORT,
    "body": REPORT["body"] + " Hubungi saya di 081377778888.",
    "reporter": {"name": "Fransiska Pello", "phone": "081377778888", "nik": NIK},
}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/var/events.db"
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
    return request.getfixturevalue("postgres_url")


@contextmanager
def serving(tmp_path: Path, store: str) -> Iterator[Intake]:
    with running_intake(tmp_path / "var", store=store, training=True) as intake:  # a clock the test moves
        yield intake


@contextmanager
def raw(store: str, *, vault: bool = True) -> Iterator[object]:
    """A connection of its own to the store's database (SQLite: the vault's file beside the store, or with
    `vault=False` the events' file)."""
    if store.startswith("postgresql"):
        with psycopg.connect(store, autocommit=True) as conn:
            yield conn
    else:
        import sqlite3

        path = Path(parse_sqlite_url(store)[0])
        conn = sqlite3.connect(path.with_name(path.stem + "-vault.db") if vault else path, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()


def live_entries(store: str) -> set[str]:
    """The references of vault entries that still hold a value."""
    with raw(store) as conn:
        return {row[0] for row in conn.execute("SELECT ref FROM pii_vault WHERE value IS NOT NULL").fetchall()}


def all_entries(store: str) -> set[str]:
    with raw(store) as conn:
        return {row[0] for row in conn.execute("SELECT ref FROM pii_vault").fetchall()}


@contextmanager
def appends_failing(store: str, *, at_commit: bool = False) -> Iterator[None]:
    """Every append fails in the store's transaction, before COMMIT (the store knows it was not recorded) or, on
    PostgreSQL with `at_commit`, at COMMIT (a deferred trigger: as when the connection is lost there, the adapter
    cannot tell whether it committed)."""
    with raw(store, vault=False) as conn:
        try:
            if store.startswith("postgresql"):
                conn.execute(
                    "CREATE FUNCTION refuse_append() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN RAISE EXCEPTION 'the disk is full (test)'; END $$"
                )
                if at_commit:
                    conn.execute("CREATE CONSTRAINT TRIGGER refuse_append AFTER INSERT ON events DEFERRABLE INITIALLY"
                                 " DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_append()")
                else:
                    conn.execute("CREATE TRIGGER refuse_append BEFORE INSERT ON events FOR EACH ROW"
                                 " EXECUTE FUNCTION refuse_append()")
            else:
                assert not at_commit
                # A statement error inside the INSERT (integer overflow), as a full disk or an I/O error would be.
                conn.execute("CREATE TRIGGER refuse_append BEFORE INSERT ON events BEGIN"
                             " SELECT abs(-9223372036854775807 - 1); END")
            yield
        finally:
            conn.execute("DROP TRIGGER refuse_append" + (" ON events" if store.startswith("postgresql") else ""))
            if store.startswith("postgresql"):
                conn.execute("DROP FUNCTION refuse_append()")


def test_a_submission_whose_append_fails_leaves_no_vault_entry(tmp_path, store):
    """Before: the identity and the original text stayed in the vault with no report referring to them."""
    with serving(tmp_path, store) as intake:
        head = intake.head()
        with appends_failing(store):
            response = intake.client.post("/api/complaints", json=NAMED)
        assert response.status_code == 503
        assert intake.head() == head  # nothing recorded
        assert len(all_entries(store)) == 2  # identity and original text were written, and erased
        assert live_entries(store) == set()
        receipt = intake.client.post("/api/complaints", json=NAMED).json()  # the store works again
        [event] = intake.events(receipt["tracking_id"])
        assert live_entries(store) == {event.data["reporter_ref"], event.metadata["pii_original_ref"]}


@pytest.mark.parametrize("action", ["information", "feedback"])
def test_a_reporters_answer_whose_append_fails_leaves_no_vault_entry(tmp_path, store, action):
    with serving(tmp_path, store) as intake:
        receipt = intake.client.post("/api/complaints", json=NAMED).json()
        if action == "information":
            intake.pend(receipt["tracking_id"])
            body = {"text": f"NIK saya {NIK}, HP 081377778888."}
        else:
            intake.resolve(receipt["tracking_id"])
            body = {"satisfied": False, "rating": 2, "comment": "Hubungi Fransiska Pello di 081377778888."}
        before = live_entries(store)
        headers = {"X-Reporter-Token": receipt["reporter_token"]}
        url = f"/api/complaints/{receipt['tracking_id']}/{action}"
        with appends_failing(store):
            assert intake.client.post(url, json=body, headers=headers).status_code == 503
        assert live_entries(store) == before
        assert intake.client.post(url, json=body, headers=headers).status_code == 200
        assert live_entries(store) == before | {intake.events(receipt["tracking_id"])[-1].metadata["pii_original_ref"]}


def test_entries_no_event_refers_to_are_swept_after_the_grace_and_those_of_recorded_reports_never(tmp_path, store):
    with serving(tmp_path, store) as intake:
        ctx = intake.ctx
        recorded = intake.client.post("/api/complaints", json=NAMED).json()
        # A process killed between its puts and its append leaves these behind.
        left = {ctx.vault.put({"name": "Yohanes Lado"}), ctx.vault.put({"body": f"NIK {NIK}"})}
        # A keyed submission whose append failed (its entries are shared with any retry under the key) ...
        key = {"Idempotency-Key": str(uuid.uuid4())}
        late = {**NAMED, "reporter": {"name": "Maria Bria", "phone": "081311112222"}}
        with appends_failing(store):
            assert intake.client.post("/api/complaints", json=late, headers=key).status_code == 503
        kept_for_retry = live_entries(store) - left - set(all_refs(intake, recorded))
        assert len(kept_for_retry) == 2
        ctx.clock.advance(GRACE - timedelta(minutes=1))
        intake.caught_up()
        assert sweep(ctx) == 0  # nothing is older than the grace yet
        # ... and is retried just inside the grace: its event commits late and refers to entries written then.
        retried = intake.client.post("/api/complaints", json=late, headers=key)
        assert retried.status_code == 201
        assert set(all_refs(intake, retried.json())) == kept_for_retry
        ctx.clock.advance(timedelta(minutes=2))
        intake.caught_up()
        assert sweep(ctx) == 2
        assert live_entries(store) == set(all_refs(intake, recorded)) | kept_for_retry
        assert ctx.vault.identity(intake.events(retried.json()["tracking_id"])[0].data["reporter_ref"]) == {
            "name": "Maria Bria", "phone": "+6281311112222"
        }
        assert sweep(ctx) == 0  # again: nothing more to do
        ctx.clock.advance(timedelta(days=400))
        intake.caught_up()
        assert sweep(ctx) == 0  # a recorded report's entries, however old, are never swept


def all_refs(intake: Intake, receipt: dict) -> list[str]:
    [event] = intake.events(receipt["tracking_id"])[:1]
    return [ref for ref in (event.data.get("reporter_ref"), event.metadata.get("pii_original_ref")) if ref]


@pytest.mark.postgres
def test_an_append_of_unknown_outcome_keeps_its_entries_until_the_sweep(tmp_path, postgres_url):
    """A commit that fails at COMMIT may have been recorded (the connection lost there): its entries stay, so a
    recorded report never loses them, and the sweep erases them once the grace shows no event refers to them."""
    with serving(tmp_path, postgres_url) as intake:
        with appends_failing(postgres_url, at_commit=True):
            assert intake.client.post("/api/complaints", json=NAMED).status_code == 503
        assert len(live_entries(postgres_url)) == 2
        intake.ctx.clock.advance(GRACE + timedelta(seconds=1))
        intake.caught_up()
        assert sweep(intake.ctx) == 2
        assert live_entries(postgres_url) == set()


def test_the_sweep_waits_while_the_marking_lags_behind_the_log(tmp_path, store):
    with serving(tmp_path, store) as intake:
        ctx = intake.ctx
        [marking] = [r for r in intake.client.app.state.runtime.runners if r.name == "intake.vault_references"]
        marking.stop()
        receipt = intake.client.post("/api/complaints", json=NAMED).json()
        ctx.clock.advance(GRACE * 2)
        assert sweep(ctx) == 0  # it cannot know yet that the report refers to its entries
        assert set(all_refs(intake, receipt)) <= live_entries(store)


def test_two_processes_sweeping_at_once_erase_each_entry_once_and_no_recorded_one(tmp_path, store):
    with serving(tmp_path, store) as intake:
        recorded = intake.client.post("/api/complaints", json=NAMED).json()
        left = {intake.ctx.vault.put({"name": f"Orang {n}", "nik": NIK}) for n in range(30)}
        intake.caught_up()
        # Two other processes on the same store and read models, with the real clock (ahead of the entries').
        script = (
            "import sys; from datetime import timedelta; from lapor.context import ServiceContext;"
            " from lapor.settings import load_settings; from services.intake.leftovers import sweep;"
            " ctx = ServiceContext.open(load_settings(data=sys.argv[1], store=sys.argv[2]));"
            " print(sweep(ctx, grace=timedelta(0))); ctx.close()"
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
        sweepers = [
            subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "var"), store], env=env,
                             stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        erased = [int(p.communicate(timeout=120)[0].split()[-1]) for p in sweepers]
        assert sum(erased) == len(left)
        assert live_entries(store) == set(all_refs(intake, recorded))


def test_a_keyed_submission_retried_after_the_sweep_keeps_the_reporters_identity(tmp_path, store):
    """A keyed submission's vault references are derived from its key: a retry after the sweep erased the first
    attempt's entries writes them again, instead of recording a report whose identity is already erased."""
    with serving(tmp_path, store) as intake:
        key = {"Idempotency-Key": str(uuid.uuid4())}
        with appends_failing(store):
            assert intake.client.post("/api/complaints", json=NAMED, headers=key).status_code == 503
        intake.ctx.clock.advance(GRACE + timedelta(minutes=1))
        intake.caught_up()
        assert sweep(intake.ctx) == 2
        retried = intake.client.post("/api/complaints", json=NAMED, headers=key)
        assert retried.status_code == 201
        [event] = intake.events(retried.json()["tracking_id"])
        assert intake.ctx.vault.identity(event.data["reporter_ref"])["name"] == "Fransiska Pello"
        assert live_entries(store) == set(all_refs(intake, retried.json()))
