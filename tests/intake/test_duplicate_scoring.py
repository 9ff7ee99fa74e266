"""Which earlier reports a new one is suspected to duplicate, without a server."""

from __future__ import annotations

import pytest
from rapidfuzz import fuzz

from services.intake.duplicates import area_of, comparable_lengths, comparable_text, suspects

NEW = comparable_text("Jalan rusak di Jl. El Tari", "Jalan di depan kantor kelurahan berlubang besar sejak 3 bulan.")


def test_the_same_text_reworded_slightly_by_someone_else_is_suspected():
    copy = comparable_text(
        "jalan rusak di jl. el tari", "Jalan di depan kantor kelurahan berlubang besar sejak 3 bulan!"
    )
    assert suspects(NEW, [("A", copy)], []) == ("A",)


def test_a_different_problem_in_the_same_area_is_not_suspected():
    other = comparable_text("Sampah menumpuk di pasar", "Sampah tidak diangkut seminggu dan berbau.")
    assert suspects(NEW, [("B", other)], []) == ()


def test_the_same_reporter_rewording_is_suspected_where_a_stranger_would_not_be():
    reworded = comparable_text(
        "Jalan El Tari berlubang", "Lubang besar di jalan depan kantor kelurahan, sudah 3 bulan."
    )
    assert suspects(NEW, [("C", reworded)], []) == ()
    assert suspects(NEW, [("C", reworded)], [("C", reworded)]) == ("C",)


def test_the_most_similar_come_first_and_the_list_is_bounded():
    exact = ("EXACT", NEW)
    near = ("NEAR", NEW.replace("besar", "lebar"))
    many = [(f"N{i:02d}", NEW) for i in range(30)]
    assert suspects(NEW, [near, exact], [])[0] == "EXACT"
    assert len(suspects(NEW, many, [])) == 20


def test_areas_are_regencies_and_cities():
    assert area_of("53.71.02.1003") == "53.71"
    assert area_of("35") == "35"
    assert area_of(None) == ""


@pytest.mark.parametrize("score", [60.0, 88.0])
def test_the_length_bounds_never_exclude_a_text_that_could_reach_the_score(score):
    shortest, longest = comparable_lengths(100, score)
    base = "a" * 100  # identical characters: the best ratio any text of each length can have
    reaching = [n for n in range(1, 400) if fuzz.ratio(base, "a" * n) >= score]
    assert shortest <= min(reaching)
    assert max(reaching) <= longest
    assert min(reaching) - shortest <= 2
    assert longest - max(reaching) <= 2
