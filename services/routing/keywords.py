"""SMS keyword claims: one agency per keyword, decided by the log, not by a read model.

An SMS to 1708 that starts with a keyword goes to the agency holding it, so two agencies must never hold one. The
directory's read models could not promise that: they lag the log, so two registrations at once (or one right
after the other) each found the keyword free. Now an agency *claims* each keyword its record is to list before the
record is written: `SmsKeywordClaimed` on the keyword's own stream `smskeyword-{KEYWORD}`, appended at the version
just read. Of two agencies claiming at once, the store lets one append and the other re-reads and finds the
winner's claim (409).

Who holds a keyword, by its latest claim:
- no claim: whoever the directory's read model says (agencies shipped or registered before claims existed) if
  that agency's own stream confirms it, else nobody;
- a claim by agency A is *settled* once A's stream has reached the claim's `agency_version` (the record that was
  to list it is written, or a later one). Settled, A holds the keyword while its record, active, lists it: an
  agency that drops a keyword or retires frees it without another event;
- not settled yet: A's record is being written now, so the keyword is A's for `CLAIM_GRACE`; after that the claim
  failed (the record was refused, or the process stopped between the two appends) and counts as never made: the
  claim before it (or, with none, the read model) decides.

The claims are made in the decision of the command that writes the record (`claim_keywords`), for the version
that record will have, and made again when the command is retried on a newer version. Between a claim and its
record nobody else can take the keyword: the claim is not settled, so it holds for `CLAIM_GRACE`; and if another
change of the agency's record reaches that version first, the record's append fails and the retry claims anew at
the claim stream's version, where a claim taken over meanwhile wins. Only a command stalled for longer than
`CLAIM_GRACE` between its two appends could still list a keyword another agency took.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from lapor.commands import command_metadata
from lapor.context import ServiceContext
from lapor.principal import Principal
from lapor.problems import Conflict
from lapor.store import NO_STREAM, RecordedEvent, WrongExpectedVersion
from schemas.events import SmsKeywordClaimed
from services.routing.directory import Agency, read_agency
from services.routing.projections import keyword_owners

KEYWORD_CATEGORY = "smskeyword"
CLAIM_GRACE = timedelta(minutes=2)  # far longer than a command between its two appends
CLAIM_ATTEMPTS = 3


def keyword_stream(keyword: str) -> str:
    return f"{KEYWORD_CATEGORY}-{keyword}"


def _listed(agency: Agency | None, keyword: str) -> bool:
    return agency is not None and agency.active and keyword in agency.sms_keywords


def _holder(
    ctx: ServiceContext, keyword: str, claims: list[RecordedEvent], now: datetime, *, read_model: bool = True
) -> str | None:
    """The agency holding `keyword` by the latest of its `claims` (see the module's docstring), or None. A failed
    claim counts as never made: the record it was to replace still stands, so the claim before it decides (a change
    that stopped after claiming its agency's own keyword again must not free it)."""
    for claim in reversed(claims):
        claimant = claim.data["agency_id"]
        record = read_agency(ctx.store, claimant)
        if record is not None and record.version >= claim.data["agency_version"]:
            return claimant if _listed(record, keyword) else None
        if now - claim.recorded_at < CLAIM_GRACE:
            return claimant
    if not read_model:
        return None
    with ctx.db.read() as tx:
        owner = keyword_owners(tx, [keyword]).get(keyword)
    return owner if owner is not None and _listed(read_agency(ctx.store, owner), keyword) else None


def claimed_by(ctx: ServiceContext, keyword: str) -> str | None:
    """The agency holding `keyword` by its claims alone, or None (never claimed, or only by failed claims): what the
    seed asks at a start, when the read models may not be there yet."""
    return _holder(ctx, keyword, _claims(ctx, keyword), ctx.clock.now(), read_model=False)


def _claims(ctx: ServiceContext, keyword: str) -> list[RecordedEvent]:
    return ctx.store.read_stream(keyword_stream(keyword))


def _ours(claim: RecordedEvent | None, agency_id: str, agency_version: int) -> bool:
    """The latest claim is the agency's, for the very record about to be written. Any other is claimed again, the
    agency's own included: a claim for an earlier version may already be settled without the keyword (a change
    of the record at the same moment dropped it), and one for a later version would not settle in time."""
    return claim is not None and claim.data["agency_id"] == agency_id and claim.data["agency_version"] == agency_version


def _refuse(taken: dict[str, str]) -> Conflict:
    held = ", ".join(f"{keyword} ({agency_id})" for keyword, agency_id in sorted(taken.items()))
    return Conflict(f"SMS keywords already in use by other agencies: {held}")


def claim_keywords(
    ctx: ServiceContext, agency_id: str, keywords: Iterable[str], agency_version: int, principal: Principal
) -> None:
    """Claim every keyword of `keywords` not already `agency_id`'s, for its record at `agency_version` (the version
    the record will have); 409 naming every keyword another agency holds, and then nothing is claimed."""
    wanted = sorted(set(keywords))
    now = ctx.clock.now()
    claims = {keyword: _claims(ctx, keyword) for keyword in wanted}
    taken: dict[str, str] = {}
    for keyword in wanted:
        if _ours(claims[keyword][-1] if claims[keyword] else None, agency_id, agency_version):
            continue
        holder = _holder(ctx, keyword, claims[keyword], now)
        if holder is not None and holder != agency_id:
            taken[keyword] = holder
    if taken:
        raise _refuse(taken)
    metadata = command_metadata(principal, None)
    for keyword in wanted:
        history = claims[keyword]  # judged above: free, or this agency's
        for _ in range(CLAIM_ATTEMPTS):
            claim = history[-1] if history else None
            if _ours(claim, agency_id, agency_version):
                break
            event = SmsKeywordClaimed(keyword=keyword, agency_id=agency_id, agency_version=agency_version)
            try:
                ctx.store.append(
                    keyword_stream(keyword),
                    [event.to_new_event(metadata=metadata)],
                    expected_version=NO_STREAM if claim is None else claim.version,
                )
                ctx.metrics.appended.labels(event.event_type()).inc()
                break
            except WrongExpectedVersion:  # another agency claimed it first: judge its claim
                history = _claims(ctx, keyword)
                holder = _holder(ctx, keyword, history, ctx.clock.now())
                if holder is not None and holder != agency_id:
                    raise _refuse({keyword: holder}) from None
        else:
            raise Conflict(f"SMS keyword {keyword} kept being claimed by others; try again")
