"""The tracking ID a reporter writes down: short, read forgivingly, and a typo never names another report."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lapor.tracking import (
    ALPHABET,
    InvalidTrackingId,
    canonical_tracking_id,
    format_tracking_id,
    parse_tracking_id,
)

numbers = st.integers(min_value=0, max_value=2**40 - 1)


@given(numbers)
@settings(max_examples=200)
def test_every_issued_id_reads_back_as_itself(number):
    tracking_id = format_tracking_id(number)
    assert len(tracking_id) == 11
    assert parse_tracking_id(tracking_id) == tracking_id


@given(numbers, st.integers(min_value=0, max_value=8), st.sampled_from(ALPHABET))
@settings(max_examples=300)
def test_a_single_mistyped_symbol_is_refused(number, position, replacement):
    symbols = format_tracking_id(number).replace("-", "")
    if symbols[position] == replacement:
        return
    typo = symbols[:position] + replacement + symbols[position + 1 :]
    with pytest.raises(InvalidTrackingId, match="check symbol"):
        parse_tracking_id(typo)


@given(numbers, st.integers(min_value=0, max_value=7))
@settings(max_examples=300)
def test_two_neighbours_swapped_are_refused_except_zero_and_z(number, position):
    symbols = format_tracking_id(number).replace("-", "")
    pair = symbols[position : position + 2]
    if pair[0] == pair[1] or set(pair) == {"0", "Z"}:
        return
    swapped = symbols[:position] + pair[::-1] + symbols[position + 2 :]
    with pytest.raises(InvalidTrackingId):
        parse_tracking_id(swapped)


def test_reporters_may_type_it_in_lower_case_without_dashes_and_with_o_i_l_for_digits():
    tracking_id = format_tracking_id(0x0123456789)
    assert tracking_id == "04HM-ASW9-K"
    assert parse_tracking_id("o4hm asw9 k") == tracking_id
    assert parse_tracking_id("04HMASW9K") == tracking_id
    assert parse_tracking_id("O4HM-ASW9-K") == tracking_id


@pytest.mark.parametrize(
    "typed",
    [
        "04HM\u2013ASW9\u2013K",  # en dashes, as a word processor writes them
        "04HM\u2010ASW9\u2011K",  # the Unicode hyphens, as a PDF gives them
        "04HM\u2212ASW9-K",  # the minus sign
        "04HM\u00a0ASW9\u00a0K",  # no-break spaces
        "\u200e04HM-ASW9-K\u200f",  # the marks of direction a chat puts around what is copied
        "04HM-AS\u00adW9-K\u200b",  # a soft hyphen where a line broke, a zero width space
        "\uff10\uff14\uff28\uff2d\uff0d\uff21\uff33\uff37\uff19\uff0d\uff2b",  # full width
    ],
)
def test_any_dash_or_space_and_characters_that_show_nothing_are_read_as_a_dash(typed):
    """Session 31: only "-", a space and a tab were dashes and spaces to the reader, and an ID written with an en
    dash or a no-break space, or copied with a zero width space, was refused ("it has 9 letters and digits")."""
    assert parse_tracking_id(typed) == "04HM-ASW9-K"


def test_i_and_l_are_read_as_one():
    tracking_id = format_tracking_id(0x0842108421)  # every symbol 1 = 0b00001
    assert tracking_id.startswith("1111-1111")
    assert parse_tracking_id(tracking_id.replace("1", "I", 2).replace("1", "l", 2)) == tracking_id


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("04HM-ASW9", "9 letters and digits"),
        ("04HM-ASW9-KK", "9 letters and digits"),
        ("04HM-ASW9-U", "cannot contain 'U'"),
        ("1' OR '1'='1", "9 letters and digits"),
        ("04HM-ASW$-K", "cannot contain '$'"),
    ],
)
def test_malformed_ids_are_refused_with_the_reason(text, reason):
    with pytest.raises(InvalidTrackingId, match=reason.replace("$", r"\$")):
        parse_tracking_id(text)


def test_a_refusal_quotes_at_most_64_characters_of_what_was_typed():
    with pytest.raises(InvalidTrackingId) as refused:
        parse_tracking_id("7KQ2-" * 1000)
    quoted = "7KQ2-" * 12 + "7KQ…"
    assert str(refused.value) == f"'{quoted}' is not a LAPOR tracking ID: it has 9 letters and digits, like 7KQ2-M9XD-T"
    assert refused.value.text == "7KQ2-" * 1000


@given(numbers)
@settings(max_examples=100)
def test_staff_urls_read_an_id_like_intake_and_leave_other_ids_as_written(number):
    tracking_id = format_tracking_id(number)
    assert canonical_tracking_id(tracking_id.lower().replace("-", "")) == tracking_id
    assert canonical_tracking_id("LAP-G1-01") == "LAP-G1-01"  # not one of ours: looked up as written
