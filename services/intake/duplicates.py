"""Duplicate suspicion (dugaan laporan ganda): flagged at intake for routing to confirm, never merged.

A new report is suspected to duplicate an earlier one submitted within `WINDOW` when
- the same reporter (same NIK, phone number or e-mail) sent it and the texts are at least loosely alike
  (`SAME_REPORTER_SCORE`): the same person asking again, reworded; or
- anyone sent it about the same area (regency/city, or the province for a province-level report) and the texts
  are nearly the same (`SAME_TEXT_SCORE`): a copied text, a form resubmitted, a campaign.

Similarity is rapidfuzz's `token_sort_ratio` (0–100) over the opening of the masked title and body: word order
and case do not matter, extra or missing words do. A report lists at most `MAX_SUSPECTS`, the most similar
first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from rapidfuzz import fuzz, process

WINDOW = timedelta(days=14)
SAME_TEXT_SCORE = 88.0
SAME_REPORTER_SCORE = 60.0
MAX_SUSPECTS = 20
MAX_CANDIDATES = 300  # the most recent earlier reports looked at per area
COMPARED_LENGTH = 200  # characters of each text compared: the opening says what a report is about


def comparable_text(title: str, body: str) -> str:
    """The report's opening, lower-cased, its words sorted: `fuzz.ratio` of two such texts is their
    `token_sort_ratio`, and the read model keeps them ready for it (sorting once, not on every comparison)."""
    # A title cut from the body's opening (an SMS has no title of its own) would count those words twice.
    text = body if body.startswith(title.removesuffix("…")) else f"{title} {body}"
    return " ".join(sorted(text.lower()[:COMPARED_LENGTH].split()))


def area_of(region_code: str | None) -> str:
    """Regency/city for codes below it ("35.73.05" -> "35.73"); a province or no region stands for itself."""
    return (region_code or "")[:5]


Report = tuple[str, str]  # (tracking_id, comparable_text)


def comparable_lengths(length: int, score: float) -> tuple[int, int]:
    """The lengths another text may have and still reach `score` against a text of `length`: `fuzz.ratio` is
    2·M/(a+b) with M <= min(a, b), so the shorter must be at least score/(200-score) of the longer. Filtering on
    it in SQL drops candidates that cannot match before they are read."""
    factor = score / (200 - score)
    return int(length * factor), int(length / factor) + 1


def suspects(text: str, area_reports: Sequence[Report], own_reports: Sequence[Report]) -> tuple[str, ...]:
    """Tracking IDs of the earlier reports this text likely duplicates, the most similar first: `own_reports`
    are the same reporter's, `area_reports` anyone's in the same area."""
    own = {tracking_id for tracking_id, _ in own_reports}
    others = [report for report in area_reports if report[0] not in own]
    scored: list[tuple[float, str]] = []
    for group, threshold in ((own_reports, SAME_REPORTER_SCORE), (others, SAME_TEXT_SCORE)):
        if not group:
            continue
        # One call per group: rapidfuzz prepares `text` once and scores the whole list in C.
        matches = process.extract(text, [t for _, t in group], scorer=fuzz.ratio, score_cutoff=threshold, limit=None)
        scored.extend((score, group[index][0]) for _, score, index in matches)
    scored.sort(key=lambda item: (-item[0], item[1]))
    return tuple(tracking_id for _, tracking_id in scored[:MAX_SUSPECTS])
