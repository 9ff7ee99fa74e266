"""The reporting figures against an independent oracle (tests/reporting/oracle.py), over a few hundred seeded
histories drawn through the real decisions (tests/reporting/decided.py): returns up to the bounce limit, red marks
up the levels, late answers before and after a red mark, reassignments, reopenings, pends, archives, duplicates,
Ombudsman offers and takeovers, confidential and anonymous reports, units, several regions.

The histories are appended to the real app's store in time order, its live subscriptions build the read models,
and each view's answer is compared figure by figure with what the oracle computes from the same events (read back
from the store), with no filter and with periods and regions. A failure lists every differing figure as
`path: oracle X != API Y`. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lapor.policy import Sp4nPolicy
from lapor.principal import Role
from lapor.store import RecordedEvent
from tests.conftest import fresh_schema
from tests.reporting import decided, oracle, scenario
from tests.reporting.conftest import Reporting, played

START = scenario.DAY0  # 09:00 WIB
# When the figures are asked for, with the histories drawn up to then: an afternoon after five months, and half
# past midnight (WIB) after eighty days, when a report of the evening before is a day old.
MOMENTS = {"afternoon": START + timedelta(days=150, hours=5), "past-midnight": START + timedelta(days=80, hours=15.5)}
SEED = 2021
REPORTS = 300
SETTLE_EVERY = 97  # the projections catch up every so many appends: their batches end inside the histories


@dataclass
class Played:
    service: Reporting
    walked: list[oracle.Walked]
    policy: Sp4nPolicy
    now: datetime
    events: list[RecordedEvent]

    def check(self, path: str, expected: dict[str, Any], **scope: Any) -> None:
        role = scope.pop("role", Role.admin_national)
        found = oracle.differences(expected, self.service.get(path, role, **scope))
        assert not found, f"{path}: {len(found)} figures differ\n" + "\n".join(found)


BACKENDS = {"sqlite": (), "postgres": (pytest.mark.postgres,)}


@pytest.fixture(scope="module", params=[
    pytest.param((moment, backend), id=f"{moment}-{backend}", marks=marks)
    for moment in sorted(MOMENTS) for backend, marks in BACKENDS.items()
])
def history(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    """The histories up to the moment, played into the app on SQLite or a fresh PostgreSQL schema of their own."""
    moment, backend = request.param
    with ExitStack() as stack:
        store = None
        if backend == "postgres":
            store = stack.enter_context(fresh_schema(request.getfixturevalue("postgres_server")))
        yield stack.enter_context(_played(MOMENTS[moment], tmp_path_factory.mktemp("oracle") / "var", store))


@contextmanager
def _played(now: datetime, data: Path, store: str | None) -> Iterator[Played]:
    policy = Sp4nPolicy()
    reports = decided.draw_histories(SEED, REPORTS, START, (now - START).days - 2, now, policy)
    with played(data, store, reports, now=now, settle_every=SETTLE_EVERY) as service:
        events, position = [], 0
        while batch := service.ctx.store.read_all(position, category="complaint", limit=5000):
            events.extend(batch)
            position = batch[-1].position + 1
        assert len(events) == sum(len(report.steps) for report in reports)
        yield Played(service, oracle.walk_all(events), service.ctx.policy, now, events)


def query(selection: oracle.Selection) -> str:
    parts = [f"{name}={value}" for name, value in selection.applied().items() if value is not None]
    return "?" + "&".join(parts) if parts else ""


def day(n: int) -> date:
    return (START + timedelta(days=n)).date()


SELECTIONS = [
    oracle.Selection(),
    oracle.Selection(region="35"),
    oracle.Selection(region="53.71"),
    oracle.Selection(start=day(20), end=day(60)),
    oracle.Selection(start=day(45), region="53"),
    oracle.Selection(end=day(30), region="35.73"),
]
IDS = ["all", "35", "53.71", "days-20-60", "from-45-in-53", "to-30-in-35.73"]


def test_the_histories_have_what_the_figures_must_handle(history: Played):
    """Guards the generator: the seeded draw holds every case the comparison is meant to cover (the Ombudsman's
    only after five months: it is offered a report 60 working days after its disposition)."""
    kinds = {h.metric for w in history.walked for h in w.happenings}
    wanted = ["escalated:follow_up_overdue", "escalated:bounce_limit", "escalated:verification_overdue", "returned",
              "assigned", "closed"]
    if history.now == MOMENTS["afternoon"]:
        wanted += ["escalated:ombudsman_offer", "escalated:ombudsman"]
        # The Ombudsman holding reports disposed to it by the admin, as well as reports it took over.
        assert any(e.type == "ComplaintDisposed" and e.data["agency_id"] == "ombudsman-ri" for e in history.events)
    assert set(wanted) <= kinds
    states = [w.state for w in history.walked]
    assert any(s.confidential for s in states)
    assert any(s.anonymous for s in states)
    assert any(s.reopen_count for s in states)
    assert {s.status.value for s in states if s.status} >= {"submitted", "pended", "disposed", "in_progress",
                                                           "resolved", "closed", "archived", "duplicate", "returned"}
    # Deadlines answered late before routing looked (red-marked afterwards, with no new deadline), and red marks
    # answered later (late too).
    marks = [e.data for e in history.events if e.type == "ComplaintEscalated" and e.data["kind"] == "follow_up_overdue"]
    assert any(mark.get("follow_up_due") is None for mark in marks)
    assert any(w.follow_up == "late" and w.answered_at and w.state.escalations for w in history.walked)


@pytest.mark.parametrize("selection", SELECTIONS, ids=IDS)
def test_the_national_view_is_the_oracles(history: Played, selection: oracle.Selection):
    expected = oracle.national(history.walked, selection, history.now, history.policy)
    history.check(f"/api/reports/national{query(selection)}", expected)


@pytest.mark.parametrize("selection", SELECTIONS, ids=IDS)
def test_the_scoreboard_is_the_oracles(history: Played, selection: oracle.Selection):
    expected = oracle.scoreboard(history.walked, selection, history.now)
    history.check(f"/api/reports/national/agencies{query(selection)}", expected)


AGENCIES = ["pemda-53.71", "pemda-35", "pemda-35.73/dinkes", "ombudsman-ri", "kementerian-kesehatan"]


@pytest.mark.parametrize("agency_id", AGENCIES)
@pytest.mark.parametrize("selection", SELECTIONS[:4], ids=IDS[:4])
def test_an_agency_view_is_the_oracles(history: Played, agency_id: str, selection: oracle.Selection):
    if not oracle.known(history.walked, agency_id):  # the Ombudsman, before it took anything over
        assert history.service.client.get(f"/api/reports/agencies/{agency_id}",
                                          headers=history.service.bearer(Role.admin_national)).status_code == 404
        return
    expected = oracle.agency(history.walked, agency_id, selection, history.now, history.policy)
    history.check(f"/api/reports/agencies/{agency_id}{query(selection)}", expected)


# A kecamatan over two days (widened to its city and month), and a small regency (cells withheld).
PUBLIC = [*SELECTIONS, oracle.Selection(region="53.71.01", start=day(40), end=day(41)),
          oracle.Selection(region="53.02")]


@pytest.mark.parametrize("selection", PUBLIC, ids=[*IDS, "kecamatan-two-days", "53.02"])
def test_the_public_statistics_are_the_oracles(history: Played, selection: oracle.Selection):
    expected = oracle.public(history.walked, selection, history.now, history.policy)
    response = history.service.client.get(f"/api/public/statistics{query(selection)}")
    assert response.status_code == 200, response.text
    found = oracle.differences(expected, response.json())
    assert not found, f"{len(found)} public figures differ\n" + "\n".join(found)
    # Confidential reports are counted and reveal nothing: no report's id or title is in the answer.
    assert "LAP-OR-" not in response.text
    assert "Laporan warga" not in response.text
