"""The followup service inside the embedded app (all four services, as `lapor up` runs them): a report goes in
through intake, routing verifies and disposes it, the agency works it, the reporter's answer closes it; and the
agency's settings routes are reached beside routing's `/api/agencies/{agency_id}`."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from lapor.app import create_app, load_services
from lapor.auth import TokenService
from lapor.clock import SystemClock
from lapor.principal import NATIONAL_ADMIN_AGENCY, Role
from lapor.settings import load_settings
from tests.followup.conftest import DINKES, KUPANG


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, TokenService]]:
    settings = load_settings(data=tmp_path_factory.mktemp("embedded") / "var")
    with TestClient(create_app(settings, load_services()), raise_server_exceptions=False) as client:
        yield client, TokenService(settings.signing_secret(), SystemClock())


def wait_for_status(client: TestClient, tracking_id: str, token: str, status: str) -> None:
    deadline = time.monotonic() + 20
    while client.get(f"/api/complaints/{tracking_id}", headers={"X-Reporter-Token": token}).json()["status"] != status:
        assert time.monotonic() < deadline, f"{tracking_id} never became {status}"
        time.sleep(0.05)


def disposed_to_kupang(
    client: TestClient, national: dict[str, str], title: str, body: str, category: str
) -> tuple[str, str]:
    """A report submitted through intake, verified and disposed to Kota Kupang by the national admin: its tracking
    id and reporter token."""
    submitted = client.post(
        "/api/complaints", json={"title": title, "body": body, "category": category, "region_code": "53.71"}
    )
    assert submitted.status_code == 201, submitted.text
    tracking_id, token = submitted.json()["tracking_id"], submitted.json()["reporter_token"]
    for verb, data in [("verify", {"category": category}), ("dispose", {"agency_id": KUPANG})]:
        response = client.post(f"/api/complaints/{tracking_id}/{verb}", headers=national, json=data)
        assert response.status_code == 200, response.text
    return tracking_id, token


def test_a_report_from_submission_through_the_agency_to_closing(embedded):
    client, tokens = embedded

    def bearer(role: Role, **scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.issue(role, subject=f'{role}-1', **scope)}"}

    national = bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    liaison = bearer(Role.liaison, agency_id=KUPANG)
    tracking_id, token = disposed_to_kupang(
        client, national, "Puskesmas Oebobo tutup di jam pelayanan",
        "Sudah tiga hari puskesmas tutup pukul 10 pagi; warga pulang tanpa dilayani.", "kesehatan",
    )

    for verb, body, headers in [
        ("accept", None, liaison),
        ("assign", {"unit_id": DINKES}, liaison),
        ("follow-ups", {"text": "Kepala puskesmas sudah dipanggil."}, bearer(Role.unit_officer, unit_id=DINKES)),
        ("resolve", {"resolution": "Jam pelayanan kembali 08.00–14.00."}, liaison),
    ]:
        response = client.post(f"/api/complaints/{tracking_id}/{verb}", headers=headers, json=body)
        assert response.status_code in (200, 201), f"{verb}: {response.text}"

    answered = client.post(f"/api/complaints/{tracking_id}/feedback", headers={"X-Reporter-Token": token},
                           json={"satisfied": True, "rating": 5})
    assert answered.status_code == 200, answered.text
    wait_for_status(client, tracking_id, token, "closed")


def test_the_agency_settings_routes_are_not_taken_by_the_directory_route(embedded):
    client, tokens = embedded
    admin = {"Authorization": f"Bearer {tokens.issue(Role.admin_agency, agency_id=KUPANG)}"}
    assert client.get(f"/api/agencies/{KUPANG}/webhooks", headers=admin).json() == []
    turned_on = client.put(f"/api/agencies/{KUPANG}/follow-up-approval", headers=admin, json={"required": True})
    assert turned_on.status_code == 200, turned_on.text
    assert client.get(f"/api/agencies/{KUPANG}").json()["agency_id"] == KUPANG  # routing's own route still works


def test_a_regencys_missed_follow_up_reaches_the_provinces_worklist_and_leaves_it_when_answered(tmp_path):
    """All four services in training mode: routing's scheduler escalates Kota Kupang's missed follow-up deadline to
    its province (`pemda-53`, Kupang's parent in the seeded directory), whose liaison officer finds it in
    `GET /api/queues/pemda-53/escalated` (session 29), until Kupang answers the reporter."""
    settings = load_settings(data=tmp_path / "var", training=True)
    with TestClient(create_app(settings, load_services()), raise_server_exceptions=False) as client:
        tokens = TokenService(settings.signing_secret(), SystemClock())

        def bearer(role: Role, **scope: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {tokens.issue(role, subject=f'{role}-1', **scope)}"}

        national = bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
        kupang, province = bearer(Role.liaison, agency_id=KUPANG), bearer(Role.liaison, agency_id="pemda-53")
        tracking_id, _ = disposed_to_kupang(
            client, national, "Lampu jalan di Oebobo mati sebulan",
            "Sudah sebulan lampu jalan di depan pasar Oebobo mati; malam hari gelap dan rawan.", "infrastruktur",
        )
        assert client.post(f"/api/complaints/{tracking_id}/accept", headers=kupang).status_code == 200

        def worklist() -> list[dict]:
            response = client.get("/api/queues/pemda-53/escalated", headers=province)
            assert response.status_code == 200, response.text
            return response.json()["items"]

        assert worklist() == []
        moved = client.post("/api/training/clock", headers=national, json={"advance": "P14D"})
        assert moved.status_code == 200, moved.text
        deadline = time.monotonic() + 30
        while not (items := worklist()):
            assert time.monotonic() < deadline, "never escalated to the province's worklist"
            time.sleep(0.1)
        [item] = items
        assert (item["tracking_id"], item["agency_id"], item["level"]) == (tracking_id, KUPANG, "regional")
        assert (item["escalation"]["kind"], item["escalation"]["automatic"]) == ("follow_up_overdue", True)
        assert (item["deadline_kind"], item["overdue"]) == ("follow_up", False)  # the new deadline, for the province
        assert client.get("/api/queues/pemda-53/escalated", headers=bearer(Role.unit_officer, unit_id=DINKES)
                          ).status_code == 403
        answered = client.post(f"/api/complaints/{tracking_id}/follow-ups", headers=kupang,
                               json={"text": "Lampu sudah diganti petugas PJU."})
        assert answered.status_code == 201, answered.text
        deadline = time.monotonic() + 30
        while worklist():
            assert time.monotonic() < deadline, "still on the province's worklist after the answer"
            time.sleep(0.1)
