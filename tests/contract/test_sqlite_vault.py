"""The SQLite vault's shared commits: puts that queue while another put commits are written together by the
next one to hold the connection, none is lost, and a commit that fails fails every put in it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lapor.clock import SystemClock
from lapor.store.vault import SqliteVault, VaultError
from tests.conftest import wait_until


@pytest.fixture
def vault(tmp_path: Path):
    opened = SqliteVault(tmp_path / "vault.db", clock=SystemClock())
    yield opened
    opened.close()


def test_puts_queued_behind_a_commit_are_written_together_in_the_next(vault):
    commits: list[str] = []
    vault._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    refs: dict[int, str] = {}
    with vault._lock:  # a commit in flight: the puts below queue behind it
        threads = [
            threading.Thread(target=lambda n=n: refs.__setitem__(n, vault.put({"nama": f"pelapor {n}"})))
            for n in range(3)
        ]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(vault._queued) == 3)
    for thread in threads:
        thread.join()
    assert len(commits) == 1
    assert {n: vault.get(ref) for n, ref in refs.items()} == {n: {"nama": f"pelapor {n}"} for n in range(3)}


def test_concurrent_puts_are_all_kept_across_a_reopen(tmp_path):
    path = tmp_path / "vault.db"
    vault = SqliteVault(path, clock=SystemClock())
    start = threading.Barrier(16)
    refs: dict[tuple[int, int], str] = {}

    def put_many(writer: int) -> None:
        start.wait()
        for n in range(20):
            refs[(writer, n)] = vault.put({"writer": writer, "n": n})

    threads = [threading.Thread(target=put_many, args=(w,)) for w in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    vault.close()
    reopened = SqliteVault(path, clock=SystemClock())
    try:
        assert len(set(refs.values())) == 16 * 20
        assert all(reopened.get(ref) == {"writer": w, "n": n} for (w, n), ref in refs.items())
    finally:
        reopened.close()


def test_a_failed_commit_fails_its_puts_and_keeps_nothing_of_them(vault):
    vault._conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON pii_vault WHEN NEW.ref = 'pii_poisoned' "
        "BEGIN SELECT RAISE(ABORT, 'disk said no'); END"
    )
    with pytest.raises(VaultError, match="disk said no"):
        vault.put({"nama": "Maria"}, ref="pii_poisoned")
    assert vault.get("pii_poisoned") is None
    ref = vault.put({"nama": "Maria"})  # the vault goes on
    assert vault.get(ref) == {"nama": "Maria"}
