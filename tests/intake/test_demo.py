"""The demo data `lapor up --demo` loads: a few hundred realistic reports across the seed cities, once."""

from __future__ import annotations

from collections import Counter

from services.intake.demo import DEMO_REPORTS, seed_demo


def test_the_demo_seeds_a_few_hundred_reports_across_cities_and_channels_and_only_once(intake):
    seed_demo(intake.ctx)
    submitted = [e for e in intake.ctx.store.read_all(0, "complaint", 10_000) if e.type == "ComplaintSubmitted"]
    assert len(submitted) == DEMO_REPORTS >= 200
    regions = Counter(e.data["region_code"] for e in submitted)
    assert {"53.71", "82.71", "81.71", "35.73", "35", "36.03", "36.71"} <= set(regions)
    assert regions.most_common(1)[0][0] == "53.71"  # the demo tokens' agency has work to do
    channels = Counter(e.data["channel"] for e in submitted)
    assert {"web", "mobile", "sms", "integration"} <= set(channels)
    assert any(e.data["anonymous"] for e in submitted)
    assert any(e.data["confidential"] for e in submitted)
    assert any("pii_original_ref" in e.metadata for e in submitted)  # some reporters wrote their details

    head = intake.head()
    seed_demo(intake.ctx)
    assert intake.head() == head
