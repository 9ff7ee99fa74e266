"""Erasing a vault entry (UU PDP) takes the value out of the files the vault keeps, not only out of `get`'s answers."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from lapor.clock import SystemClock
from lapor.store import StoreError, open_store
from lapor.store import postgres as postgres_store
from lapor.store.vault import SqliteVault, VaultEntryErased

NIK = "3171234567890123"
OTHER_NIK = "5371010101800002"


def vault_bytes(path: Path) -> bytes:
    """Every byte of the vault's files: the database, its WAL and shared-memory index."""
    return b"".join(file.read_bytes() for file in sorted(path.parent.glob(f"{path.name}*")))


def test_an_erased_value_is_gone_from_the_sqlite_vaults_files(tmp_path):
    path = tmp_path / "vault.db"
    vault = SqliteVault(path, clock=SystemClock())
    try:
        kept = vault.put({"nama": "Yohanes Lado", "nik": OTHER_NIK})
        identity = vault.put({"nama": "Siti Rahayu", "nik": NIK})
        # An original of a masked text, longer than a page: it lives on overflow pages.
        original = vault.put({"body": f"NIK saya {NIK}. " + "Jalan di depan rumah rusak parah. " * 300})
        assert NIK.encode() in vault_bytes(path)
        assert vault.erase(identity)
        assert vault.erase(original)
        on_disk = vault_bytes(path)
        assert NIK.encode() not in on_disk
        assert b"Siti Rahayu" not in on_disk
        assert OTHER_NIK.encode() in on_disk  # what was not erased stays
        assert vault.get(kept) == {"nama": "Yohanes Lado", "nik": OTHER_NIK}
    finally:
        vault.close()


def vacuums_of_the_vault(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'pii_vault'::regclass"
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.postgres
def test_erasing_from_the_postgresql_vault_vacuums_its_table(postgres_url):
    # What can be checked without pageinspect (not installed on the shared test server): that VACUUM ran after
    # the erase. Whether it could remove the old row depends on other sessions' snapshots, which a test on a shared
    # server does not control.
    with open_store(postgres_url) as store:
        ref = store.vault.put({"nama": "Siti Rahayu", "nik": NIK})
        before = vacuums_of_the_vault(postgres_url)
        assert store.vault.erase(ref)
        assert vacuums_of_the_vault(postgres_url) == before + 1
        assert not store.vault.erase(ref)  # nothing left to erase: no VACUUM either
        assert vacuums_of_the_vault(postgres_url) == before + 1


@pytest.mark.postgres
def test_an_erase_whose_vacuum_waits_longer_than_a_statement_is_given_still_erases(postgres_url):
    """The VACUUM after an erase may rightly take longer than the store's answer timeout (a large vault, or another
    session holding the table): it is given VACUUM_TIMEOUT instead, so the erase is not reported failed (and then
    "nothing left to erase") while the value is gone. Here another session holds the lock VACUUM needs for longer
    than the store's timeout."""
    timeout = 0.5
    with open_store(postgres_url, answer_timeout=timeout) as store:
        ref = store.vault.put({"nama": "Siti Rahayu", "nik": NIK})
        before = vacuums_of_the_vault(postgres_url)
        with psycopg.connect(postgres_url) as holder:
            holder.execute("LOCK TABLE pii_vault IN SHARE UPDATE EXCLUSIVE MODE")  # what VACUUM takes
            releasing = threading.Timer(4 * timeout, holder.rollback)
            releasing.start()
            try:
                assert store.vault.erase(ref)
            finally:
                releasing.join()
        with pytest.raises(VaultEntryErased):
            store.vault.get(ref)
        assert vacuums_of_the_vault(postgres_url) == before + 1


@pytest.mark.postgres
def test_an_erase_whose_vacuum_outlasts_its_own_bound_names_that_bound_not_the_store_s(postgres_url, monkeypatch):
    """Session 31: the timeout's message always said "(LAPOR_STORE_TIMEOUT)", also when the bound that ran out was
    the VACUUM's own. Here VACUUM_TIMEOUT is made short, and another session holds the lock VACUUM needs."""
    monkeypatch.setattr(postgres_store, "VACUUM_TIMEOUT", 1.0)
    with open_store(postgres_url, answer_timeout=30.0) as store:
        ref = store.vault.put({"nama": "Siti Rahayu", "nik": NIK})
        with psycopg.connect(postgres_url) as holder:
            holder.execute("LOCK TABLE pii_vault IN SHARE UPDATE EXCLUSIVE MODE")  # what VACUUM takes
            with pytest.raises(StoreError) as raised:
                store.vault.erase(ref)
    # the bound's source, whether the answer or (since session 31) the lock wait a little below it ran out
    assert "s (VACUUM_TIMEOUT, a vault erase's VACUUM)" in str(raised.value)
    assert "LAPOR_STORE_TIMEOUT" not in str(raised.value)
