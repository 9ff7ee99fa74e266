"""SMS 1708 over HTTP: the gateway posts each message, intake files the report and answers with the SMS to send
back. The directory (keywords) is written as routing writes it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from lapor.app import create_app, load_services
from lapor.auth import TokenService
from lapor.clock import SystemClock
from lapor.principal import NATIONAL_ADMIN_AGENCY, Role
from lapor.settings import load_settings
from schemas.events import AgencyKind, AgencyUpdated, Channel, ComplaintKind
from services.intake.decide import SubmitComplaint
from services.intake.idempotency import IdDerivation
from services.intake.sms import HELP_REPLY, sender_number
from services.intake.submit import RECEIVED_AT_LEEWAY, Report, submit
from tests.intake.conftest import OPEN_LIMITS, Intake


def message(message_id: str = "sms-0001", text: str = "KOTKUPANG jalan rusak di Oebobo", **fields):
    return {
        "message_id": message_id,
        "sender": "6281234567890",
        "text": text,
        "received_at": "2026-03-06T08:00:00+07:00",
        **fields,
    }


@pytest.fixture
def gateway(intake):
    intake.register_agency("pemda-53.71", "Pemerintah Kota Kupang", "53.71", "KOTKUPANG")
    intake.register_agency("pemda-36.03", "Pemerintah Kabupaten Tangerang", "36.03", "TANGKAB")
    intake.caught_up()
    headers = intake.bearer(Role.integration, channel="sms", subject="gateway-1708")
    return lambda body: intake.client.post("/api/channels/sms", json=body, headers=headers)


def test_a_known_keyword_routes_the_report_to_its_government_and_the_reply_names_the_tracking_id(intake, gateway):
    response = gateway(message(text="  tangkab   jalan rusak di Cikupa dekat pasar"))
    assert response.status_code == 201
    reply = response.json()
    [event] = intake.events(reply["tracking_id"])
    assert event.data["suggested_agency_id"] == "pemda-36.03"
    assert event.data["region_code"] == "36.03"
    assert event.data["body"] == "jalan rusak di Cikupa dekat pasar"
    assert event.data["channel"] == "sms"
    assert event.metadata["received_at"] == "2026-03-06T08:00:00+07:00"
    assert reply["tracking_id"] in reply["reply"]
    assert "Kabupaten Tangerang" in reply["reply"]


def test_a_keyword_after_a_bom_or_before_a_zero_width_space_routes_the_report_to_its_government(intake, gateway):
    """Session 31: a gateway that leaves the BOM of a UCS-2 message, or a keyword followed by a zero width space,
    sent the report to national verification (the government never told), and a keyword alone with one was filed
    as a report rather than answered with the help text."""
    for number, text in enumerate(["\ufeffKOTKUPANG jalan rusak di Oebobo", "KOTKUPANG\u200b jalan rusak di Oebobo"]):
        reply = gateway(message(f"sms-bom-{number}", text)).json()
        [event] = intake.events(reply["tracking_id"])
        assert event.data["suggested_agency_id"] == "pemda-53.71"
        assert event.data["body"] == "jalan rusak di Oebobo"
        assert "Kota Kupang" in reply["reply"]
    head = intake.head()
    alone = gateway(message("sms-bom-alone", "\ufeffKOTKUPANG\u200b"))
    assert (alone.status_code, alone.json()) == (200, {"reply": HELP_REPLY, "tracking_id": None})
    assert intake.head() == head


def test_the_access_code_in_the_reply_opens_the_report_for_the_sender(intake, gateway):
    reply = gateway(message()).json()
    access_code = reply["reply"].rsplit("Kode akses: ", 1)[1]
    view = intake.client.get(f"/api/complaints/{reply['tracking_id']}", headers={"X-Reporter-Token": access_code})
    assert view.status_code == 200


def test_the_senders_number_is_identity_kept_in_the_vault_and_out_of_every_view(intake, gateway):
    reply = gateway(message(text="KOTKUPANG hubungi saya di 081234567890, jalan rusak")).json()
    [event] = intake.events(reply["tracking_id"])
    assert intake.ctx.vault.get(event.data["reporter_ref"]) == {"phone": "+6281234567890"}
    assert "1234567890" not in event.data["body"]
    agency = intake.bearer(Role.admin_agency, agency_id="pemda-53.71")
    intake.dispose(reply["tracking_id"])
    for headers in ({}, agency):
        shown = intake.client.get(f"/api/complaints/{reply['tracking_id']}", headers=headers)
        assert "1234567890" not in shown.text
        assert "sms-0001" not in shown.text  # an SMS reference is derived from the sender


@pytest.mark.parametrize("digits_in_title", range(10, 17))
def test_the_title_cut_from_a_long_first_line_never_shows_what_the_masked_body_hides(intake, gateway, digits_in_title):
    """Session 24: the title was cut at 80 characters from the text as written and masked alone, so a NIK cut short
    escaped the detector (`NIK:537101450885000…`) while the body showed `5371********0001`: the whole NIK."""
    head = "Laporan jalan rusak, pelapor warga-kel-oebobo-kupang-"
    first_line = f"{head}{'x' * (80 - len(head) - 4 - digits_in_title)}NIK:5371014508850001 mohon segera"
    reply = gateway(message(message_id=f"sms-nik-{digits_in_title}", text=f"{first_line}\nbaris dua")).json()
    shown = intake.client.get(f"/api/complaints/{reply['tracking_id']}").json()
    for text in (shown["title"], shown["body"]):
        assert "01450885" not in text
    assert shown["body"].startswith(shown["title"].removesuffix("…"))
    admin = intake.bearer(Role.admin_national, agency_id=NATIONAL_ADMIN_AGENCY)
    as_written = intake.client.get(f"/api/complaints/{reply['tracking_id']}", headers=admin).json()
    assert first_line.startswith(as_written["title"].removesuffix("…"))


def test_an_unknown_or_missing_keyword_goes_to_national_verification_with_the_whole_text(intake, gateway):
    reply = gateway(message(text="Jalan rusak di depan pasar Oeba")).json()
    [event] = intake.events(reply["tracking_id"])
    assert event.data["suggested_agency_id"] is None
    assert event.data["region_code"] is None
    assert event.data["body"] == "Jalan rusak di depan pasar Oeba"
    assert "verifikasi nasional" in reply["reply"]
    shown = intake.client.get(f"/api/complaints/{reply['tracking_id']}").json()
    assert shown["level"] == "national"


def test_before_routing_loads_the_directory_every_keyword_goes_to_national_verification(intake):
    headers = intake.bearer(Role.integration, channel="sms")
    response = intake.client.post("/api/channels/sms", json=message(), headers=headers)
    assert response.status_code == 201
    [event] = intake.events(response.json()["tracking_id"])
    assert event.data["suggested_agency_id"] is None
    assert event.data["body"] == "KOTKUPANG jalan rusak di Oebobo"


@pytest.mark.parametrize("text", ["", "   ", "KOTKUPANG", "kotkupang   "])
def test_an_empty_message_gets_the_help_text_and_files_nothing(intake, gateway, text):
    head = intake.head()
    response = gateway(message(text=text))
    assert response.status_code == 200
    assert response.json() == {"reply": HELP_REPLY, "tracking_id": None}
    assert intake.head() == head


@pytest.mark.parametrize(
    ("keyword", "name", "shown"),
    [
        # The longest names of the shipped directory: the reply was 161 and 162 characters.
        ("DKIJAKARTA", "Pemerintah Provinsi Daerah Khusus Ibukota Jakarta", "Pemprov Daerah Khusus Ibukota Jakarta"),
        ("KEPSERIBU", "Pemerintah Kabupaten Administrasi Kepulauan Seribu", "Pemkab Administrasi Kepulauan Seribu"),
        # A typographic apostrophe and dash: the whole reply went as UCS-2, 70 characters an SMS.
        ("DINASPU", "Dinas PU – Pemerintah Kota Bau’bau", "Dinas PU - Pemerintah Kota Bau'bau"),
        # An agency registered through routing's API may have a name of up to 200 characters.
        ("DINASPUPR", "Dinas Pekerjaan Umum dan Penataan Ruang Kabupaten Timor Tengah Selatan", "Dinas Pekerjaan Umum"),
    ],
)
def test_the_reply_fits_one_sms_of_the_gsm_alphabet_whatever_the_agencys_name(intake, gateway, keyword, name, shown):
    """Session 32: the reply is 112 characters besides the agency's name, so a name over 48 made it two SMS (which
    some gateways and phones cut at 160, the access code last), and a character outside GSM-7 made it UCS-2."""
    intake.register_agency(f"agency-{keyword.lower()}", name, None, keyword)
    intake.caught_up()
    reply = gateway(message(f"sms-fit-{keyword}", f"{keyword} jalan rusak")).json()
    text = reply["reply"]
    assert len(text) <= 160, (len(text), text)
    assert text.isascii(), text  # and in GSM-7's basic set, one septet each:
    assert not set(text) & set("`^{}[]~|\\"), text
    assert shown in text
    access_code = text.rsplit("Kode akses: ", 1)[1]
    # The whole access code: the report's own token (a 409, not pended; a token cut short is a 401).
    acted = intake.client.post(f"/api/complaints/{reply['tracking_id']}/information", json={"text": "Oebobo"},
                               headers={"X-Reporter-Token": access_code})
    assert acted.status_code == 409, acted.text
    [event] = intake.events(reply["tracking_id"])
    assert event.data["suggested_agency_id"] == f"agency-{keyword.lower()}"


def test_a_duplicate_delivery_of_a_message_id_files_one_report_and_gets_the_same_reply(intake, gateway):
    first = gateway(message())
    again = gateway(message(received_at="2026-03-06T08:05:00+07:00"))  # gateways redeliver with a new time
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    submitted = [e for e in intake.ctx.store.read_all(0, "complaint") if e.type == "ComplaintSubmitted"]
    assert len(submitted) == 1


def test_a_redelivery_after_the_agency_was_renamed_gets_the_reply_it_got_first(intake, gateway):
    """Session 24: the reply named the agency as the directory called it at each delivery."""
    first = gateway(message())
    renamed = AgencyUpdated(
        agency_id="pemda-53.71",
        name="Pemkot Kupang (baru)",
        kind=AgencyKind.pemerintah_kabupaten_kota,
        region_code="53.71",
        sms_keywords=("KOTKUPANG",),
    )
    intake.ctx.store.append("directory-pemda-53.71", [renamed.to_new_event()])
    intake.caught_up()
    again = gateway(message(received_at="2026-03-06T08:05:00+07:00"))
    assert again.json() == first.json()
    assert "Pemerintah Kota Kupang" in again.json()["reply"]
    assert "Pemkot Kupang (baru)" in gateway(message("sms-0002")).json()["reply"]  # a new message: the new name


def test_a_reused_message_id_with_another_text_is_a_conflict(intake, gateway):
    gateway(message())
    response = gateway(message(text="KOTKUPANG lampu jalan mati"))
    assert response.status_code == 409
    assert "sms-0001" in response.json()["detail"]


def submitted(intake) -> int:
    return sum(e.type == "ComplaintSubmitted" for e in intake.ctx.store.read_all(0, "complaint"))


@pytest.mark.parametrize("spelling", ["081234567890", "+6281234567890", "006281234567890", "+006281234567890"])
def test_a_redelivery_with_the_senders_number_spelled_another_way_gets_the_first_reply(intake, gateway, spelling):
    """Session 31: the redelivery was compared by the sender as spelled, so the same subscriber's number written
    another way (the message first came as `6281234567890`) made the same message a 409 of another one."""
    first = gateway(message())
    again = gateway(message(sender=spelling, received_at="2026-03-06T08:05:00+07:00"))
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert submitted(intake) == 1


def test_a_reused_message_id_from_another_number_is_a_conflict(intake, gateway):
    gateway(message())
    head = intake.head()
    response = gateway(message(sender="081298765432"))
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert "another sender or text" in response.json()["detail"]
    assert "81298765432" not in response.text
    assert "81234567890" not in response.text
    assert intake.head() == head


def record_as_before_session_31(intake, message_id: str, sender: str, text: str):
    """An SMS recorded as intake recorded one until session 31: the digest its redelivery is compared by
    (`intake.request`) holds the sender as the gateway spelled it."""
    command = SubmitComplaint(
        tracking_id="",
        kind=ComplaintKind.pengaduan,
        title="",
        body=text,
        region_code=None,
        channel=Channel.sms,
        channel_ref=message_id,
        reporter_token_hash="",
    )
    return submit(
        intake.ctx,
        IdDerivation(intake.ctx.settings.signing_secret()),
        Report(command, {"phone": sender_number(sender)}, title_from_body=True),
        principal=None,
        natural_key=f"sms:{message_id}",
        request={"sender": sender, "text": text},
    )


def test_a_message_recorded_before_session_31_redelivered_as_first_spelled_gets_its_receipt(intake, gateway):
    text = "Lampu jalan mati di Oebobo"
    before = record_as_before_session_31(intake, "sms-old-1", "081234567890", text)
    again = gateway(message("sms-old-1", text, sender="081234567890"))
    assert again.status_code == 201
    assert again.json()["tracking_id"] == before.tracking_id
    assert again.json()["reply"].endswith(f"Kode akses: {before.reporter_token}")
    assert submitted(intake) == 1
    # Still one message: another number or another text under its id is the 409.
    for other in (message("sms-old-1", text, sender="081298765432"), message("sms-old-1", text + " lagi")):
        head = intake.head()
        assert gateway(other).status_code == 409
        assert intake.head() == head


def test_a_joined_multipart_message_is_accepted_up_to_the_limit(intake, gateway):
    long_text = "KOTKUPANG " + "jalan rusak parah di Oebobo dekat sekolah. " * 36  # ~1550 characters
    assert gateway(message("long-1", long_text)).status_code == 201
    response = gateway(message("long-2", long_text + "x" * 100))
    assert response.status_code == 422
    assert response.json()["errors"][0]["location"] == ["body", "text"]


@pytest.mark.parametrize(
    ("role", "scope", "status"),
    [
        (Role.integration, {"channel": "sambat-malang"}, 403),
        (Role.admin_national, {"agency_id": "kemenpanrb"}, 403),
        (None, {}, 401),
    ],
)
def test_only_the_sms_gateway_may_post_messages(intake, role, scope, status):
    headers = intake.bearer(role, **scope) if role else {}
    assert intake.client.post("/api/channels/sms", json=message(), headers=headers).status_code == status


def test_a_keyword_follows_the_directory_when_an_agency_changes_or_retires(intake, gateway):
    def update(*keywords, active=True):
        event = AgencyUpdated(
            agency_id="pemda-53.71",
            name="Pemerintah Kota Kupang",
            kind=AgencyKind.pemerintah_kabupaten_kota,
            region_code="53.71",
            sms_keywords=keywords,
            active=active,
        )
        intake.ctx.store.append("directory-pemda-53.71", [event.to_new_event()])
        intake.caught_up()

    def routed(message_id, text):
        reply = gateway(message(message_id, text)).json()
        return intake.events(reply["tracking_id"])[0].data["suggested_agency_id"]

    update("KUPANG")
    assert routed("k-1", "KUPANG lampu mati") == "pemda-53.71"
    assert routed("k-2", "KOTKUPANG lampu mati") is None
    update("KUPANG", active=False)
    assert routed("k-3", "KUPANG lampu mati") is None


@pytest.mark.parametrize(
    ("text", "agency_id", "region_code"),
    [
        ("KOTKUPANG jalan rusak di Oebobo", "pemda-53.71", "53.71"),
        ("tangkab  jalan rusak di Cikupa", "pemda-36.03", "36.03"),
    ],
)
def test_the_keywords_of_routings_shipped_directory_route_sms_reports(tmp_path, text, agency_id, region_code):
    """With routing running beside intake (as in `lapor up`), its directory is what intake reads keywords from."""
    settings = load_settings(data=tmp_path / "var", limits=OPEN_LIMITS)
    with TestClient(create_app(settings, load_services(["intake", "routing"]))) as client:
        intake = Intake(client, TokenService(settings.signing_secret(), SystemClock()))
        intake.caught_up()
        response = client.post(
            "/api/channels/sms", json=message(text=text), headers=intake.bearer(Role.integration, channel="sms")
        )
        [event] = intake.events(response.json()["tracking_id"])
        assert (event.data["suggested_agency_id"], event.data["region_code"]) == (agency_id, region_code)


def test_a_message_received_at_a_moment_still_to_come_is_refused_and_nothing_is_filed(intake, gateway):
    """A gateway's clock a little fast is taken (`RECEIVED_AT_LEEWAY`); a moment beyond it has not happened yet."""
    now = intake.ctx.clock.now()
    head = intake.head()
    later = (now + RECEIVED_AT_LEEWAY + timedelta(minutes=1)).isoformat()
    refused = gateway(message(message_id="sms-future", received_at=later))
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert [error["location"] for error in refused.json()["errors"]] == [["body", "received_at"]]
    assert intake.head() == head
    soon = (now + RECEIVED_AT_LEEWAY - timedelta(minutes=1)).isoformat()
    assert gateway(message(message_id="sms-soon", received_at=soon)).status_code == 201
