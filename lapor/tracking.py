"""Nomor pelacakan: the tracking ID a reporter writes down, reads out on the phone or types from an SMS (in the
kernel: intake issues it, every service looks reports up by it).

Format `XXXX-XXXX-C`, e.g. `7KQ2-M9XD-T`: eight symbols of Crockford's base32 alphabet (digits and capitals
without I, L, O and U) carrying 40 random bits, and one check symbol. Reading is forgiving the way Crockford
intended: case does not matter, dashes and spaces (any dash or space, and characters that show nothing) may be
left out or put anywhere, O is read as 0 and I or L as 1. The check symbol is the Luhn mod N algorithm over the
same alphabet (N = 32), which catches every single mistyped symbol and every swap of two neighbours except 0 with
Z; a mistyped ID is refused instead of naming another report.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator

from lapor.patterns import INVISIBLE, WHITESPACE
from lapor.problems import quoted
from schemas.events import TRACKING_ID_PATTERN

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_N = len(ALPHABET)
_CODE = {symbol: code for code, symbol in enumerate(ALPHABET)}
# What people type for a symbol that is not in the alphabet.
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
# Dashes and spaces, as typed or as a document or a chat writes them: the hyphen, the Unicode dashes (a word
# processor's en dash, a PDF's hyphen, the minus sign), every space (a no-break one too) and line break, and the
# characters that show nothing (a zero width space, the marks of direction a chat puts around what is copied, the soft
# hyphen a PDF breaks a line with). Read after NFKC, which makes full-width letters, digits and dashes ASCII. Until
# session 31 only "-", " " and tab: `04HM–ASW9–K` (en dashes) or `04HM\u00a0ASW9\u00a0K` was refused ("it has 9
# letters and digits"), a report that exists not found.
_SEPARATOR_CHARACTERS = re.compile(rf"[-\u2010-\u2015\u2212{WHITESPACE}{INVISIBLE}]+")

PAYLOAD_LENGTH = 8
RANDOM_BITS = 5 * PAYLOAD_LENGTH
EXAMPLE = "7KQ2-M9XD-T"


class InvalidTrackingId(ValueError):
    """Not a LAPOR tracking ID; `reason` says how, in words a reporter understands. The message quotes the input
    as problems do (`lapor.problems.quoted`: a 60,000-character path was quoted whole); `text` keeps it whole."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"{quoted(text)!r} is not a LAPOR tracking ID: {reason}")


def _luhn_sum(codes: list[int], *, double_first: bool) -> int:
    """Luhn mod N sum, from the rightmost symbol; `double_first` doubles the rightmost one."""
    total = 0
    double = double_first
    for code in reversed(codes):
        addend = code * 2 if double else code
        total += addend // _N + addend % _N
        double = not double
    return total


def check_symbol(payload: str) -> str:
    codes = [_CODE[symbol] for symbol in payload]
    return ALPHABET[(_N - _luhn_sum(codes, double_first=True) % _N) % _N]


def format_tracking_id(number: int) -> str:
    """The tracking ID for a number below 2**40 (taken from random or derived bits)."""
    if not 0 <= number < 1 << RANDOM_BITS:
        raise ValueError(f"a tracking number has {RANDOM_BITS} bits")
    payload = "".join(ALPHABET[(number >> (5 * i)) & 31] for i in reversed(range(PAYLOAD_LENGTH)))
    return f"{payload[:4]}-{payload[4:]}-{check_symbol(payload)}"


def parse_tracking_id(text: str) -> str:
    """The canonical form (`7KQ2-M9XD-T`) of what a reporter typed; raises InvalidTrackingId."""
    symbols = _SEPARATOR_CHARACTERS.sub("", unicodedata.normalize("NFKC", text).upper()).translate(_ALIASES)
    if len(symbols) != PAYLOAD_LENGTH + 1:
        raise InvalidTrackingId(text, f"it has {PAYLOAD_LENGTH + 1} letters and digits, like {EXAMPLE}")
    unknown = sorted({symbol for symbol in symbols if symbol not in _CODE})
    if unknown:
        raise InvalidTrackingId(text, f"it cannot contain {', '.join(map(repr, unknown))}")
    if _luhn_sum([_CODE[symbol] for symbol in symbols], double_first=False) % _N != 0:
        raise InvalidTrackingId(text, "its check symbol does not match; please check it for a typo")
    return f"{symbols[:4]}-{symbols[4:8]}-{symbols[8]}"


def canonical_tracking_id(text: str) -> str:
    """What a staff URL looks a report up by: the canonical form of a tracking ID typed loosely (`7m9h-psw4-q`,
    O for 0, no dashes), else `text` as it is (an ID of another form, found or not as written). Until session 21
    only intake's reporter-facing lookup forgave case; routing's and the audit's answered 404 to `7m9h-psw4-q`."""
    try:
        return parse_tracking_id(text)
    except InvalidTrackingId:
        return text


# A tracking ID as a path parameter of the staff services (routing, followup, audit).
TrackingIdPath = Annotated[str, Path(pattern=TRACKING_ID_PATTERN), AfterValidator(canonical_tracking_id)]


def stream_of(tracking_id: str) -> str:
    return f"complaint-{tracking_id}"
