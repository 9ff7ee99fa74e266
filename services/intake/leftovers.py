"""Vault entries that no recorded event refers to (docs/intake.md, "Vault entries of reports never recorded").

Intake puts a reporter's identity and the originals of masked text in the vault before it appends the event
that refers to them. When that append is not recorded, the entries would stay for good, a citizen's personal
data kept with no report that shows, audits or erases it. Two things remove them:

- at once, where the request knows the append was not recorded (`erased_unless_recorded`): the command was
  refused, or the store said so (`AppendNotRecorded`), or the request failed before the append;
- later, for the rest (the process killed between the put and the append; an append whose outcome the store
  could not tell): `VaultReferences` marks every entry a recorded event refers to, and `sweep` erases entries
  never marked once they are older than `GRACE`, by the vault's own erase path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from lapor.complaint import IllegalTransition
from lapor.context import BackgroundLoop, ServiceContext
from lapor.db import Tx
from lapor.privacy import ORIGINAL_REF
from lapor.problems import Problem
from lapor.store import AppendNotRecorded, DuplicateEventId, RecordedEvent
from lapor.store.vault import Vault
from lapor.subscriptions import Subscription

log = logging.getLogger("services.intake.leftovers")

# How old an entry no event refers to must be before the sweep erases it: longer than any append can still be
# in flight after its put. Every wait on the way to a commit is bounded far below it (SQLite's busy timeout and
# the read models' 30 s, a writer process's 5 s return, the PostgreSQL pool's 30 s, KurrentDB's 30 s deadline,
# a command's five tries), so an append not recorded 15 minutes after its put has failed or its process is gone.
GRACE = timedelta(minutes=15)
SWEEP_INTERVAL = 60.0  # seconds between sweeps
MARKING = "intake.vault_references"

# What a command raises when its append was surely not recorded: it was refused before anything was appended
# (a Problem, the fold's refusal, an append the store would not take: ValueError), or the store said so.
NOT_RECORDED = (Problem, IllegalTransition, AppendNotRecorded, DuplicateEventId, ValueError)


def references(event: RecordedEvent) -> set[str]:
    """The vault references an event carries: the reporter's identity (`reporter_ref`) and the originals of its
    masked text (`pii_original_ref` in the metadata)."""
    refs = {event.data.get("reporter_ref"), event.metadata.get(ORIGINAL_REF)}
    return {ref for ref in refs if isinstance(ref, str) and ref}


class VaultEntries:
    """The vault entries put for one event, and whether its append has begun."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.refs: list[str] = []
        self.appending = False  # set just before the command that appends the event

    def put(self, value: dict[str, Any], *, ref: str | None = None) -> str:
        ref = self.vault.put(value, ref=ref)
        self.refs.append(ref)
        return ref


@contextmanager
def erased_unless_recorded(vault: Vault, *, shared: bool = False) -> Iterator[VaultEntries]:
    """Around the puts of one event's entries and the command that appends the event: if it raises before the
    append began, or with an error that says nothing was recorded (`NOT_RECORDED`), the entries are erased at
    once. Any other error (a StoreError that cannot tell, an interrupted process) leaves them to the sweep: the
    event may be recorded after all. `shared` references (a keyed submission's, derived from its key) may be
    recorded by a concurrent request under the same key, so they are erased only when the command was refused
    (a Problem, which that same request meets too), and otherwise left to the sweep."""
    entries = VaultEntries(vault)
    try:
        yield entries
    except Exception as error:
        refused = isinstance(error, Problem)
        if refused or (not shared and (not entries.appending or isinstance(error, NOT_RECORDED))):
            for ref in entries.refs:
                vault.erase(ref)
        raise


class VaultReferences:
    """Marks the vault entries recorded events refer to. Not a projection: it writes the vault, not a read model,
    so `lapor rebuild` leaves it out. Marking is idempotent, so an event marked again after a crash (the vault
    is not in the checkpoint's transaction) changes nothing."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    def handle(self, event: RecordedEvent, tx: Tx) -> None:
        self.handle_batch([event], tx)

    def handle_batch(self, events: Sequence[RecordedEvent], tx: Tx) -> None:
        refs: set[str] = set()
        for event in events:
            refs |= references(event)
        self._vault.mark_referenced(refs)

    def subscription(self) -> Subscription:
        return Subscription(MARKING, self.handle, category="complaint", handle_batch=self.handle_batch,
                            projection=False)


def sweep(ctx: ServiceContext, grace: timedelta = GRACE) -> int:
    """Erase the vault entries written more than `grace` ago that no recorded event refers to; returns how many.

    Safe because, in this order: the cutoff is taken first; every event referring to an entry older than it was
    recorded before that moment (`GRACE`), so at a position up to the head read next (positions follow commit
    order); and the marking has handled everything up to that head, nothing parked. Otherwise it erases nothing
    this time. Each entry is checked again as it is erased (`Vault.erase_unreferenced`), so two sweeps, a mark or
    a retried put meanwhile cannot make it erase a referenced entry."""
    cutoff = ctx.clock.now() - grace
    head = ctx.store.head_position()
    with ctx.db.read() as tx:
        row = tx.fetchone("SELECT position FROM subscription_checkpoints WHERE name = ?", (MARKING,))
        parked = tx.fetchone(
            "SELECT count(*) FROM parked_events WHERE name = ? AND replayed_at IS NULL", (MARKING,)
        )
    marked = 0 if row is None else int(row[0])
    if marked < head or (parked is not None and parked[0]):
        log.info("vault sweep: waiting for %s (at %d of %d, %s parked)", MARKING, marked, head,
                 0 if parked is None else parked[0])
        return 0
    erased = 0
    while refs := ctx.vault.erase_unreferenced(cutoff):
        erased += len(refs)
    if erased:
        log.warning("vault sweep: erased %d entries that no recorded report refers to (written before %s)",
                    erased, cutoff.isoformat())
    return erased


def sweep_loop(ctx: ServiceContext) -> BackgroundLoop:
    """The sweep every SWEEP_INTERVAL seconds, in one process at a time (an exclusive loop, under a lease)."""
    return BackgroundLoop.every("intake.vault_sweep", SWEEP_INTERVAL, lambda: sweep(ctx))
