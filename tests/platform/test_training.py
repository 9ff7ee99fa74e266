"""Training mode: a national admin moves the clock, and what the services decide follows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lapor.app import load_services
from lapor.principal import NATIONAL_ADMIN_AGENCY, Role

SUBMISSION = {"title": "Puskesmas tutup", "body": "Puskesmas Oepoi tutup pada jam pelayanan."}


def test_an_admin_moves_the_clock_and_new_events_carry_the_moved_time(serve, bearer):
    admin = bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    with serve(training=True) as client:
        before = datetime.fromisoformat(client.get("/api/training/clock", headers=admin).json()["now"])
        moved = client.post("/api/training/clock", json={"advance": "P3D"}, headers=admin)
        assert moved.status_code == 200
        after = datetime.fromisoformat(moved.json()["now"])
        assert after - before == timedelta(days=3)
        tracking_id = client.post("/api/probe/complaints", json=SUBMISSION).json()["tracking_id"]
        [event] = client.app.state.context.store.read_stream(f"complaint-{tracking_id}")
    assert event.recorded_at >= after


def test_the_clock_never_moves_back(serve, bearer):
    admin = bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    with serve(training=True) as client:
        response = client.post("/api/training/clock", json={"to": "2020-01-01T00:00:00+07:00"}, headers=admin)
    assert response.status_code == 422
    assert "forward" in response.json()["detail"]


def test_a_moment_given_as_a_number_is_refused(serve, bearer):
    """A number used to pass as Unix time; the clock stays where it was."""
    admin = bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    with serve(training=True) as client:
        before = client.get("/api/training/clock", headers=admin).json()["now"]
        response = client.post("/api/training/clock", json={"to": 4102444800}, headers=admin)
        assert response.status_code == 422
        assert "ISO-8601 date and time" in response.json()["errors"][0]["message"]
        assert client.get("/api/training/clock", headers=admin).json()["now"] == before


def test_only_the_national_admin_moves_the_clock(serve, bearer):
    with serve(training=True) as client:
        response = client.post(
            "/api/training/clock", json={"advance": "P1D"}, headers=bearer(Role.admin_agency, agency_id="pemda-53.71")
        )
    assert response.status_code == 403


def test_outside_training_there_is_no_clock_to_move(serve, bearer):
    admin = bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    with serve() as client:
        assert client.post("/api/training/clock", json={"advance": "P1D"}, headers=admin).status_code == 404


def test_a_move_past_what_a_date_holds_is_refused_and_the_clock_stays(serve, bearer):
    """Each was a 500: the duration (or the moment in UTC) overflowed Python's dates."""
    admin = bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    with serve(training=True) as client:
        before = client.get("/api/training/clock", headers=admin).json()["now"]
        for move in ({"advance": "P3000000D"}, {"advance": "P99999999999D"}, {"to": "9999-12-31T23:59:59-05:00"}):
            response = client.post("/api/training/clock", json=move, headers=admin)
            assert response.status_code == 422, move
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["detail"].startswith("the training clock stays before 9990-01-01"), move
        assert client.get("/api/training/clock", headers=admin).json()["now"] == before


def test_a_move_so_late_that_deadlines_would_pass_the_year_9999_is_refused_and_the_clock_stays(serve, bearer):
    """A move to the last day a date can name was taken, and then every report was a 500 (its verification deadline,
    three working days on, past the year 9999), the webhook delivery loop failed at every tick and reporting parked
    every event it could not date. The clock now stays early enough for every deadline it starts."""
    admin = bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    with serve(services=load_services(["intake"]), training=True) as client:
        before = client.get("/api/training/clock", headers=admin).json()["now"]
        to_december_9999 = f"P{(datetime(9999, 12, 1, tzinfo=UTC) - datetime.now(UTC)).days}D"
        for move in ({"to": "9999-12-31T23:59:59Z"}, {"to": "9999-06-01T00:00:00+07:00"},
                     {"to": "9990-01-01T00:00:00Z"}, {"advance": to_december_9999}):
            response = client.post("/api/training/clock", json=move, headers=admin)
            assert response.status_code == 422, move
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["detail"].startswith("the training clock stays before 9990-01-01"), move
        assert client.get("/api/training/clock", headers=admin).json()["now"] == before
        # the latest moment it may show, and a report there gets its deadlines
        assert client.post("/api/training/clock", json={"to": "9989-12-31T23:59:59Z"}, headers=admin).status_code == 200
        submitted = client.post("/api/complaints", json={**SUBMISSION, "region_code": "53.71"})
        assert submitted.status_code == 201, submitted.text
        assert submitted.json()["verification_due"].startswith("9990-01-0")


def test_a_moment_before_the_first_year_in_utc_does_not_move_the_clock_back(serve, bearer):
    """0001-01-01T00:00:00+14:00 is in the year 0 in UTC, which no date holds: it was refused as a move "past the
    year 9999"."""
    admin = bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    with serve(training=True) as client:
        before = client.get("/api/training/clock", headers=admin).json()["now"]
        for move in ({"to": "0001-01-01T00:00:00+14:00"}, {"advance": "-P1D"}):
            response = client.post("/api/training/clock", json=move, headers=admin)
            assert response.status_code == 422, move
            assert response.json()["detail"] == "time only moves forward"
        assert client.get("/api/training/clock", headers=admin).json()["now"] == before
