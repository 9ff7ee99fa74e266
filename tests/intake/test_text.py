"""What intake accepts as text, and how the reporter's personal data is masked before it reaches the log."""

from __future__ import annotations

import re
import unicodedata

import pytest
from pydantic_core import PydanticCustomError

from lapor.limits import check_plain_text
from services.intake.text import mask_personal_data

IDENTITY = {"name": "Budi Santoso", "phone": "+6281234567890", "nik": "5371011508850001"}


@pytest.mark.parametrize(
    "text",
    ["Jalan rusak, harga < 5.000 & > 1.000", "Baris satu\nBaris dua\tdengan tab", "Robert'); DROP TABLE x;--",
     "Pesan dari \u2068Bapak Lurah\u2069 diteruskan", "Bacaan \u0627\u0644\u0633\u0644\u0627\u0645 dalam laporan",
     # A phone number copied from WhatsApp or an Android contact comes wrapped in LRE ... PDF (U+202A, U+202C).
     "Hubungi saya di \u202a+62 812-3456-7890\u202c setelah jam kerja"],
)
def test_plain_text_with_symbols_quotes_and_line_breaks_is_accepted(text):
    assert check_plain_text(text) == text


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("<script>alert(1)</script>", "text_markup"),
        ("<IMG SRC=x>", "text_markup"),
        ("klik javascript:alert(1)", "text_markup"),
        ('<a onclick="x">', "text_markup"),
        ("nul \x00 byte", "text_control"),
        ("escape \x1b[0m", "text_control"),
        ("csi \x9b31m", "text_control"),
        ("Laporan \u202egnp.exe", "text_control"),  # shown as "Laporan exe.png"
        ("embedded \u202bteks\u202c", "text_control"),
        ("lone \ud800 surrogate", "text_encoding"),
    ],
)
def test_markup_control_characters_and_broken_unicode_are_refused(text, kind):
    with pytest.raises(PydanticCustomError) as refused:
        check_plain_text(text)
    assert refused.value.type == kind


def test_the_reporters_phone_is_masked_however_it_is_written():
    body = "Hubungi 0812-3456-7890, 081234567890 atau 6281234567890."
    masked, originals = mask_personal_data("ComplaintSubmitted", {"body": body}, IDENTITY)
    assert "3456" not in masked["body"]
    assert "7890" not in masked["body"]
    assert originals == {"body": body}


@pytest.mark.parametrize(
    "typed",
    [
        "hp0812-3456-7890",
        "HP0812-3456-7890",
        "+62.812.3456.7890",
        "0812 34 56 78 90",
        "０８１２３４５６７８９０",
        "nik 5371.0115.0885.0001",
        "NIK5371011508850001",
        "5371/0115/0885/0001",
        "NIK ５３７１０１１５０８８５０００１",
    ],
)
def test_the_reporters_own_phone_and_nik_are_masked_glued_to_a_word_or_spelled_with_separators(typed):
    masked, originals = mask_personal_data("ComplaintSubmitted", {"body": f"Pelapor {typed}, jalan rusak"}, IDENTITY)
    digits = re.sub(r"\D", "", unicodedata.normalize("NFKC", masked["body"]))
    assert "81234567890" not in digits
    assert "5371011508850001" not in digits
    assert originals == {"body": f"Pelapor {typed}, jalan rusak"}


def test_a_bare_name_of_the_reporter_is_masked_even_without_a_cue():
    masked, _ = mask_personal_data("ComplaintSubmitted", {"title": "Budi Santoso: jalan rusak"}, IDENTITY)
    assert "Santoso" not in masked["title"]


def test_personal_data_of_someone_unknown_is_masked_by_the_detector():
    masked, _ = mask_personal_data("ComplaintSubmitted", {"body": "NIK tetangga saya 3201010101900001"})
    assert "3201010101900001" not in masked["body"]


def test_every_text_of_an_event_is_masked_nested_ones_included_and_numbers_kept():
    fields = {
        "title": "Laporan Budi Santoso",
        "body": "Jalan rusak.",
        "location": {"lat": -10.17, "lon": 123.6, "address": "Depan rumah Budi Santoso, Jl. El Tari"},
    }
    masked, originals = mask_personal_data("ComplaintSubmitted", fields, IDENTITY)
    assert masked["body"] == "Jalan rusak."
    assert "Santoso" not in masked["title"] + masked["location"]["address"]
    assert "Jl. El Tari" in masked["location"]["address"]  # the place of the problem stays readable
    assert (masked["location"]["lat"], masked["location"]["lon"]) == (-10.17, 123.6)
    assert set(originals) == {"title", "location"}


def test_nothing_goes_to_the_vault_when_nothing_was_masked():
    assert (
        mask_personal_data("ComplaintSubmitted", {"title": "Lampu mati", "body": "Sejak kemarin."}, IDENTITY)[1] is None
    )


def test_a_text_holding_the_internal_separator_is_still_masked_field_by_field():
    fields = {"title": "Saya Budi Santoso\n\ue000\n", "body": "HP 081234567890"}
    masked, _ = mask_personal_data("ComplaintSubmitted", fields, IDENTITY)
    assert "Santoso" not in masked["title"]
    assert "34567890" not in masked["body"]
