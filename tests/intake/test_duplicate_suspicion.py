"""Duplicate suspicion at intake, over HTTP: flagged in the event for routing to confirm, never merged."""

from __future__ import annotations

from datetime import timedelta

from lapor.principal import Role
from services.intake.duplicates import WINDOW
from tests.intake.conftest import REPORT


def test_a_copied_report_about_the_same_place_is_flagged_as_a_likely_duplicate_but_kept(intake):
    first = intake.submit()
    intake.caught_up()
    second = intake.submit(title=REPORT["title"].upper(), body=REPORT["body"] + "!!")
    elsewhere = intake.submit(region_code="35.73")
    assert intake.events(second["tracking_id"])[0].data["duplicate_suspect_of"] == [first["tracking_id"]]
    assert intake.events(elsewhere["tracking_id"])[0].data["duplicate_suspect_of"] == []
    assert intake.client.get(f"/api/complaints/{second['tracking_id']}").json()["status"] == "submitted"


def test_the_same_reporter_rewording_a_report_is_flagged(intake):
    first = intake.submit(reporter={"phone": "081234567890"})
    intake.caught_up()
    reworded = intake.submit(
        title="Jalan El Tari berlubang",
        body="Lubang besar di jalan depan kantor kelurahan sejak tiga bulan, pengendara jatuh.",
        reporter={"phone": "+62 812 3456 7890", "name": "Yohanes"},
        region_code="53.71.02",
    )
    stranger = intake.submit(
        title="Jalan El Tari berlubang",
        body="Lubang besar di jalan depan kantor kelurahan sejak tiga bulan, pengendara jatuh.",
        reporter={"phone": "081298765432"},
    )
    assert intake.events(reworded["tracking_id"])[0].data["duplicate_suspect_of"] == [first["tracking_id"]]
    assert first["tracking_id"] not in intake.events(stranger["tracking_id"])[0].data["duplicate_suspect_of"]


def test_a_copy_of_a_report_older_than_the_window_is_not_suspected(serve_intake):
    with serve_intake(training=True) as intake:  # a clock the test moves
        intake.submit()
        intake.caught_up()
        intake.ctx.clock.advance(WINDOW + timedelta(hours=1))
        later = intake.submit()
        assert intake.events(later["tracking_id"])[0].data["duplicate_suspect_of"] == []


def test_an_sms_repeating_a_web_report_about_the_same_city_is_suspected(intake):
    intake.register_agency("pemda-53.71", "Pemerintah Kota Kupang", "53.71", "KOTKUPANG")
    first = intake.submit()
    intake.caught_up()
    sms = {
        "message_id": "m-77",
        "sender": "6281234567890",
        "text": f"KOTKUPANG {REPORT['title']}. {REPORT['body']}",
        "received_at": "2026-03-06T08:00:00Z",
    }
    reply = intake.client.post("/api/channels/sms", json=sms, headers=intake.bearer(Role.integration, channel="sms"))
    assert intake.events(reply.json()["tracking_id"])[0].data["duplicate_suspect_of"] == [first["tracking_id"]]
