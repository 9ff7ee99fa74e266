"""One agency per SMS keyword, decided by the log: claims on `smskeyword-{KEYWORD}` (services.routing.keywords).
Over HTTP on the routing app (real SQLite store and read models), with the directory's read models held back or
running, and with claims left by commands that never wrote their record."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier
from typing import Any

import pytest

from lapor.directory import agency_stream
from lapor.principal import Role
from schemas.events import AgencyRegistered, SmsKeywordClaimed
from services.routing.directory import fold_agency
from services.routing.keywords import CLAIM_GRACE, keyword_stream
from tests.routing.conftest import caught_up

KEYWORD = "SEHATKUPANG"


@pytest.fixture
def app(serve):
    with serve(training=True) as client:  # a clock the tests move
        yield client


def unit(slug: str, *keywords: str, **changes: Any) -> dict[str, Any]:
    return {"agency_id": f"pemda-53.71/{slug}", "name": f"Unit {slug}", "kind": "unit", "parent_id": "pemda-53.71",
            "sms_keywords": list(keywords), **changes}


def change(slug: str, *keywords: str, **changes: Any) -> dict[str, Any]:
    record = unit(slug, *keywords, **changes)
    del record["agency_id"]
    return record


def holders(client, keyword: str) -> list[str]:
    """Every agency whose record in the log, active, lists `keyword`."""
    store = client.app.state.context.store
    found = []
    for event in store.read_all(0, "directory", 100_000):
        agency = fold_agency(store.read_stream(event.stream)) if event.version == 0 else None
        if agency is not None and agency.active and keyword in agency.sms_keywords:
            found.append(agency.agency_id)
    return found


def directory_held_back(client) -> None:
    """Stop the directory's read models: the log moves on, the tables do not (a projection behind the log)."""
    for runner in client.app.state.runtime.runners:
        if runner.subscription.category == "directory":
            runner.stop()


def test_a_keyword_just_registered_is_taken_though_the_directory_has_not_caught_up(app, admin):
    directory_held_back(app)
    assert app.post("/api/agencies", json=unit("a", KEYWORD), headers=admin).status_code == 201
    response = app.post("/api/agencies", json=unit("b", KEYWORD), headers=admin)
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert f"{KEYWORD} (pemda-53.71/a)" in response.json()["detail"]
    assert app.app.state.context.store.read_stream(agency_stream("pemda-53.71/b")) == []
    assert holders(app, KEYWORD) == ["pemda-53.71/a"]


def test_agencies_registering_one_keyword_at_once_give_it_to_exactly_one(app, admin):
    names = [f"u{n}" for n in range(6)]
    start = Barrier(len(names))

    def register(name: str) -> int:
        start.wait()
        return app.post("/api/agencies", json=unit(name, KEYWORD), headers=admin).status_code

    with ThreadPoolExecutor(len(names)) as pool:
        statuses = list(pool.map(register, names))
    assert sorted(statuses) == [201] + [409] * (len(names) - 1)
    [winner] = [f"pemda-53.71/{name}" for name, status in zip(names, statuses, strict=True) if status == 201]
    assert holders(app, KEYWORD) == [winner]


def test_a_keyword_dropped_or_retired_is_free_for_another_agency(app, admin):
    assert app.post("/api/agencies", json=unit("a", KEYWORD, "LAINKUPANG"), headers=admin).status_code == 201
    assert app.post("/api/agencies", json=unit("b", KEYWORD), headers=admin).status_code == 409
    dropped = app.put("/api/agencies/pemda-53.71/a", json=change("a", "LAINKUPANG"), headers=admin)
    assert dropped.status_code == 200, dropped.text
    assert app.post("/api/agencies", json=unit("b", KEYWORD), headers=admin).status_code == 201
    retired = app.put("/api/agencies/pemda-53.71/a", json=change("a", "LAINKUPANG", active=False), headers=admin)
    assert retired.status_code == 200, retired.text
    assert app.post("/api/agencies", json=unit("c", "LAINKUPANG"), headers=admin).status_code == 201
    assert holders(app, KEYWORD) == ["pemda-53.71/b"]
    assert holders(app, "LAINKUPANG") == ["pemda-53.71/c"]


def test_a_claim_whose_record_was_never_written_holds_the_keyword_only_for_the_grace(app, admin):
    ctx = app.app.state.context
    # A command that claimed the keyword for its record and stopped before writing it.
    claim = SmsKeywordClaimed(keyword=KEYWORD, agency_id="pemda-53.71/hilang", agency_version=0)
    ctx.store.append(keyword_stream(KEYWORD), [claim.to_new_event()])
    response = app.post("/api/agencies", json=unit("b", KEYWORD), headers=admin)
    assert response.status_code == 409, response.text
    assert "pemda-53.71/hilang" in response.json()["detail"]
    ctx.clock.advance(CLAIM_GRACE + timedelta(seconds=1))
    assert app.post("/api/agencies", json=unit("b", KEYWORD), headers=admin).status_code == 201
    assert [event.data["agency_id"] for event in ctx.store.read_stream(keyword_stream(KEYWORD))] == [
        "pemda-53.71/hilang", "pemda-53.71/b"
    ]


def test_an_agency_keeps_its_keyword_through_changes_and_its_claim_settles_with_its_record(app, admin):
    ctx = app.app.state.context
    assert app.post("/api/agencies", json=unit("a", KEYWORD), headers=admin).status_code == 201
    renamed = app.put("/api/agencies/pemda-53.71/a", json=change("a", KEYWORD, name="Unit A baru"), headers=admin)
    assert renamed.status_code == 200, renamed.text
    claims = ctx.store.read_stream(keyword_stream(KEYWORD))
    assert [(c.data["agency_id"], c.data["agency_version"]) for c in claims] == [
        ("pemda-53.71/a", 0), ("pemda-53.71/a", 1)
    ]
    assert claims[-1].metadata["actor"] == "admin_national"
    ctx.clock.advance(CLAIM_GRACE * 10)  # settled claims do not expire
    assert app.post("/api/agencies", json=unit("b", KEYWORD), headers=admin).status_code == 409


def test_a_shipped_keyword_without_a_claim_is_still_its_agencys(app, admin, bearer):
    """Agencies registered before claims existed (the shipped directory) hold their keywords by their records."""
    caught_up(app)
    response = app.post("/api/agencies", json=unit("b", "KOTKUPANG"), headers=admin)
    assert response.status_code == 409
    assert "KOTKUPANG (pemda-53.71)" in response.json()["detail"]
    assert app.app.state.context.store.read_stream(keyword_stream("KOTKUPANG")) == []
    # An agency registered straight into the log (as the seed does) is confirmed by its own stream.
    event = AgencyRegistered(agency_id="pemda-53.71/lama", name="Unit lama", kind="unit", parent_id="pemda-53.71",
                             sms_keywords=("LAMAKUPANG",))
    app.app.state.context.store.append(agency_stream("pemda-53.71/lama"), [event.to_new_event()])
    caught_up(app)
    assert app.post("/api/agencies", json=unit("b", "LAMAKUPANG"), headers=admin).status_code == 409
    # Only the national admin registers agencies.
    other = bearer(Role.admin_agency, agency_id="pemda-53.71")
    assert app.post("/api/agencies", json=unit("c", "BARUKUPANG"), headers=other).status_code == 403
    assert app.app.state.context.store.read_stream(keyword_stream("BARUKUPANG")) == []


@pytest.mark.parametrize("registered_by", ["claim", "seed"])
def test_an_agency_keeps_its_keyword_when_a_change_of_its_record_stopped_after_claiming_it(app, admin, registered_by):
    """A change that claimed the agency's keyword again and then never wrote its record (the process stopped between
    the two appends) leaves the agency's record as it was, listing the keyword: past the grace the keyword is still
    the agency's, whether it was claimed before or held since before claims existed."""
    ctx = app.app.state.context
    if registered_by == "claim":
        assert app.post("/api/agencies", json=unit("a", KEYWORD), headers=admin).status_code == 201
    else:
        event = AgencyRegistered(agency_id="pemda-53.71/a", name="Unit a", kind="unit", parent_id="pemda-53.71",
                                 sms_keywords=(KEYWORD,))
        ctx.store.append(agency_stream("pemda-53.71/a"), [event.to_new_event()])
        caught_up(app)
    # What the change claimed before it stopped: the keyword, for the record's next version, which never came.
    claim = SmsKeywordClaimed(keyword=KEYWORD, agency_id="pemda-53.71/a", agency_version=1)
    ctx.store.append(keyword_stream(KEYWORD), [claim.to_new_event()])
    ctx.clock.advance(CLAIM_GRACE + timedelta(seconds=1))
    response = app.post("/api/agencies", json=unit("b", KEYWORD), headers=admin)
    assert response.status_code == 409, response.text
    assert f"{KEYWORD} (pemda-53.71/a)" in response.json()["detail"]
    assert holders(app, KEYWORD) == ["pemda-53.71/a"]
