"""Intake on PostgreSQL: the store, the vault and intake's read models in one database."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from lapor.principal import NATIONAL_ADMIN_AGENCY, Role
from tests.intake.conftest import REPORT, running_intake

pytestmark = pytest.mark.postgres


def test_submission_idempotency_sms_keywords_and_tracking_work_on_postgresql(postgres_url, tmp_path):
    with running_intake(tmp_path / "var", store=postgres_url) as intake:
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        body = {
            **REPORT,
            "body": REPORT["body"] + " Saya Dewi Rahayu, HP 081299998888.",
            "reporter": {"name": "Dewi Rahayu"},
        }
        with ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(
                pool.map(lambda _: intake.client.post("/api/complaints", json=body, headers=headers), range(20))
            )
        assert {r.status_code for r in responses} == {201}
        assert len({r.text for r in responses}) == 1
        tracking_id = responses[0].json()["tracking_id"]
        assert len(intake.events(tracking_id)) == 1

        admin = intake.bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
        assert intake.client.get(f"/api/complaints/{tracking_id}", headers=admin).json()["body"] == body["body"]
        assert "99998888" not in intake.client.get(f"/api/complaints/{tracking_id}").text

        intake.register_agency("pemda-36.03", "Pemerintah Kabupaten Tangerang", "36.03", "TANGKAB")
        intake.caught_up()
        sms = {
            "message_id": "pg-1",
            "sender": "6281234567890",
            "text": "tangkab  jalan rusak di Cikupa",
            "received_at": "2026-03-06T08:00:00Z",
        }
        reply = intake.client.post(
            "/api/channels/sms", json=sms, headers=intake.bearer(Role.integration, channel="sms")
        )
        assert reply.status_code == 201
        assert intake.events(reply.json()["tracking_id"])[0].data["suggested_agency_id"] == "pemda-36.03"

        copy = intake.submit()
        assert intake.events(copy["tracking_id"])[0].data["duplicate_suspect_of"] == [tracking_id]
