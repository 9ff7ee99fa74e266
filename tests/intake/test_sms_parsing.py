"""Reading `KEYWORD <isi laporan>` from an SMS, without a server."""

from __future__ import annotations

import pytest

from services.intake.sms import KeywordAgency, accepted_reply, parse_sms, title_of

KUPANG = KeywordAgency("KOTKUPANG", "pemda-53.71", "Pemerintah Kota Kupang", "53.71")
TANGERANG = KeywordAgency("TANGKAB", "pemda-36.03", "Pemerintah Kabupaten Tangerang", "36.03")
DIRECTORY = {agency.keyword: agency for agency in (KUPANG, TANGERANG)}


def parse(text):
    return parse_sms(text, DIRECTORY.get)


@pytest.mark.parametrize(
    "text",
    ["KOTKUPANG jalan rusak di Oebobo", "kotkupang jalan rusak di Oebobo", "  KotKupang    jalan  rusak di Oebobo  "],
)
def test_a_known_keyword_in_any_case_and_spacing_routes_to_its_government(text):
    report = parse(text)
    assert report.agency == KUPANG
    assert report.content == "jalan rusak di Oebobo"


@pytest.mark.parametrize(
    "text",
    ["KOTKUPANG: jalan rusak di Oebobo", "KOTKUPANG, jalan rusak di Oebobo", "kotkupang.jalan rusak di Oebobo",
     "KOTKUPANG#jalan rusak di Oebobo", "KotKupang ; jalan rusak di Oebobo", "KOTKUPANG:\njalan rusak di Oebobo"],
)
def test_a_keyword_followed_by_punctuation_is_still_the_keyword(text):
    """People write `KOTKUPANG: isi` or `KOTKUPANG#isi` as often as the documented space: the keyword went
    unrecognised and the report to national verification, its government never told."""
    report = parse(text)
    assert report.agency == KUPANG
    assert report.content == "jalan rusak di Oebobo"


@pytest.mark.parametrize(
    "text",
    ["\ufeffKOTKUPANG jalan rusak di Oebobo", "KOTKUPANG\u200b jalan rusak di Oebobo",
     "KOTKUPANG\u200bjalan rusak di Oebobo", "\u2068KOTKUPANG\u2069 jalan rusak di Oebobo",
     "\u200e KOTKUPANG\u2060: jalan rusak di Oebobo"],
)
def test_a_keyword_with_invisible_characters_around_it_is_still_the_keyword(text):
    """Session 31: a BOM a gateway left from UCS-2, or a zero width space, word joiner or direction mark a phone's
    keyboard or a pasted keyword brought, hid the keyword: the report went to national verification, its government
    never told."""
    report = parse(text)
    assert report.agency == KUPANG
    assert report.content == "jalan rusak di Oebobo"


@pytest.mark.parametrize("text", ["KOTKUPANG-jalan rusak", "KOTKUPANG2 jalan rusak", "KOTKUPANG/KAB jalan rusak"])
def test_a_keyword_joined_to_more_letters_or_a_hyphen_is_not_read_as_one(text):
    report = parse(text)
    assert report.agency is None
    assert report.content == text


def test_line_breaks_of_a_joined_multipart_message_are_kept():
    assert parse("TANGKAB jalan rusak\n  di Cikupa   dekat pasar").content == "jalan rusak\ndi Cikupa dekat pasar"


def test_an_unknown_first_word_is_part_of_a_report_for_national_verification():
    report = parse("KOTKUPNG jalan rusak")
    assert report.agency is None
    assert report.content == "KOTKUPNG jalan rusak"


@pytest.mark.parametrize(
    "text",
    ["", "   ", "\n", "KOTKUPANG", "  tangkab  ", "\u200b", "KOTKUPANG \u00ad\u200d", "\ufeff\u2060",
     "KOTKUPANG\u200b", "\ufeffTANGKAB"],
)
def test_an_empty_message_or_a_keyword_alone_holds_no_report(text):
    assert parse(text) is None


def test_the_title_is_the_first_line_that_shows_something():
    assert title_of("\u200b\u200d\nJalan rusak di Oebobo\nsudah sebulan") == "Jalan rusak di Oebobo"


def test_a_long_first_line_is_cut_at_a_word_for_the_title():
    content = "Jalan " + "berlubang " * 20
    title = title_of(content)
    assert len(title) <= 81
    assert title.endswith("berlubang…")


def test_a_long_first_line_without_a_space_near_the_limit_is_cut_where_a_word_ends_never_inside_a_number():
    line = "Laporan jalan rusak, pelapor warga-kel-oebobo-kupang-xxxxxxxxNIK:5371014508850001 mohon segera"
    assert title_of(line) == "Laporan jalan rusak, pelapor warga-kel-oebobo-kupang-xxxxxxxxNIK…"


def test_the_reply_names_the_tracking_id_the_access_code_and_where_the_report_goes():
    reply = accepted_reply("04HM-ASW9-K", "tok", "Pemerintah Kota Kupang")
    assert "04HM-ASW9-K" in reply
    assert "tok" in reply
    assert "Kota Kupang" in reply
    assert "verifikasi nasional" in accepted_reply("04HM-ASW9-K", "tok", None)
