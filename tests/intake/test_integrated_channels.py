"""An agency's own complaint system (a city's "Sambat Online", a hotline) pushes its reports into LAPOR."""

from __future__ import annotations

from lapor.principal import Role
from tests.intake.conftest import REPORT

SAMBAT = {**REPORT, "region_code": "35.73", "external_id": "SBT-2026-00042", "received_at": "2026-03-06T09:00:00+07:00"}


def push(intake, body=SAMBAT, channel="sambat-malang", **scope):
    headers = intake.bearer(Role.integration, channel=channel, **scope)
    return intake.client.post(f"/api/channels/{channel}/complaints", json=body, headers=headers)


def test_a_pushed_report_names_its_system_and_external_id_and_gets_a_receipt(intake):
    response = push(intake, agency_id="pemda-35.73")
    assert response.status_code == 201
    receipt = response.json()
    [event] = intake.events(receipt["tracking_id"])
    assert event.data["channel"] == "integration"
    assert event.data["channel_ref"] == "sambat-malang:SBT-2026-00042"
    assert event.data["suggested_agency_id"] == "pemda-35.73"
    assert event.metadata["actor"] == "integration"


def test_pushing_the_same_external_id_again_is_idempotent(intake):
    first = push(intake)
    again = push(intake, {**SAMBAT, "received_at": "2026-03-06T10:00:00+07:00"})
    assert again.status_code == 201
    assert again.json() == first.json()
    assert len([e for e in intake.ctx.store.read_all(0, "complaint") if e.type == "ComplaintSubmitted"]) == 1


def test_the_same_external_id_with_other_content_is_a_conflict(intake):
    push(intake)
    assert push(intake, {**SAMBAT, "title": "Lampu jalan mati"}).status_code == 409


def test_the_same_external_id_from_two_systems_is_two_reports(intake):
    first = push(intake).json()
    other = push(intake, channel="hotline-kupang").json()
    assert first["tracking_id"] != other["tracking_id"]


def test_the_system_reads_its_own_reports_and_not_another_systems(intake):
    receipt = push(intake, {**SAMBAT, "confidential": True}).json()
    path = f"/api/complaints/{receipt['tracking_id']}"
    own = intake.client.get(path, headers=intake.bearer(Role.integration, channel="sambat-malang"))
    assert own.status_code == 200
    assert own.json()["channel_ref"] == "sambat-malang:SBT-2026-00042"
    other = intake.client.get(path, headers=intake.bearer(Role.integration, channel="hotline-kupang"))
    assert other.status_code == 404


def test_a_system_named_after_a_citizens_channel_reads_only_what_it_pushed(intake):
    """A client whose channel is named "web" or "mobile" read every report citizens sent through the web form or the
    mobile app, confidential ones included, as if it had submitted them (session 27)."""
    for channel in ("web", "mobile"):
        sent = intake.submit(channel=channel, confidential=True, reporter={"name": "Oktovianus Ndun"})
        pushed = push(intake, {**SAMBAT, "external_id": f"{channel.upper()}-1", "confidential": True}, channel=channel)
        client = intake.bearer(Role.integration, channel=channel)
        assert intake.client.get(f"/api/complaints/{sent['tracking_id']}", headers=client).status_code == 404
        own = intake.client.get(f"/api/complaints/{pushed.json()['tracking_id']}", headers=client)
        assert own.status_code == 200
        assert own.json()["channel_ref"] == f"{channel}:{channel.upper()}-1"


def test_a_system_may_push_only_for_its_own_channel(intake):
    headers = intake.bearer(Role.integration, channel="hotline-kupang")
    response = intake.client.post("/api/channels/sambat-malang/complaints", json=SAMBAT, headers=headers)
    assert response.status_code == 403


def test_a_report_without_external_id_or_region_is_refused(intake):
    for missing in ("external_id", "region_code"):
        body = {k: v for k, v in SAMBAT.items() if k != missing}
        assert push(intake, body).status_code == 422


def test_another_systems_token_cannot_deliver_sms_and_nothing_is_filed(intake):
    headers = intake.bearer(Role.integration, channel="sambat-malang")
    head = intake.head()
    sms = {"message_id": "m-1", "sender": "081234567890", "text": "jalan rusak", "received_at": "2026-03-06T08:00:00Z"}
    response = intake.client.post("/api/channels/sms", json=sms, headers=headers)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    # It named the route's channel as <Channel.sms: 'sms'> until session 32.
    assert response.json()["detail"] == "this client pushes for channel 'sambat-malang', not 'sms'"
    assert intake.head() == head
