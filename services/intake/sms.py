"""SMS 1708: `KEYWORD <isi laporan>`, and the replies sent back through the gateway.

The first word is looked up as a keyword of the agency directory (case-insensitive; leading, trailing and
repeated spaces, line breaks and invisible characters do not matter, nor a `:`, `,`, `.`, `;` or `#` right after
the keyword). A known keyword routes the report to that regional government and is not part of the report; an
unknown first word is simply the first word of a report for national verification, which then keeps the whole
text. Pure functions: the directory lookup is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from lapor.limits import has_visible_text
from lapor.patterns import INVISIBLE, WHITESPACE
from services.intake.phone import international_form, read_phone
from services.intake.text import shortened

_WORD = re.compile(r"\S+")
# Space, and characters that show nothing (`lapor.patterns.INVISIBLE`: a BOM a gateway leaves from UCS-2, a zero
# width space or the direction marks a phone's keyboard or a pasted keyword brings).
_SPACE = rf"[{WHITESPACE}{INVISIBLE}]"
# A keyword (letters and digits: `SmsKeyword`), after any space or invisible characters, ends at a space, a line
# break or an invisible character, or at one of `: , . ; #` (spaces around it allowed): `KOTKUPANG: isi` and
# `KOTKUPANG#isi` are written as often as the documented space. Not at a hyphen or a slash, which join words
# (`KOTKUPANG-KAB`). Session 31: `\ufeffKOTKUPANG isi` and `KOTKUPANG\u200b isi` went to national verification,
# the government never told, and `KOTKUPANG\u200b` alone was filed as a report instead of answered with help.
_KEYWORD = re.compile(rf"{_SPACE}*([A-Za-z0-9]+)(?:{_SPACE}*[:,.;#]|{_SPACE}|$)")
_SPACES = re.compile(r"[ \t]+")
TITLE_LENGTH = 80


@dataclass(frozen=True)
class KeywordAgency:
    """What the directory says about an SMS keyword."""

    keyword: str
    agency_id: str
    name: str
    region_code: str | None


@dataclass(frozen=True)
class SmsReport:
    content: str  # the report without its keyword
    agency: KeywordAgency | None  # None: national verification


def parse_sms(text: str, lookup: Callable[[str], KeywordAgency | None]) -> SmsReport | None:
    """The report in an SMS, or None when it holds no report (empty, or a keyword alone): answer with help."""
    text = text.strip()
    if _WORD.match(text) is None:
        return None
    first = _KEYWORD.match(text)
    agency = lookup(first.group(1).upper()) if first is not None else None
    content = text[first.end() :].strip() if first is not None and agency is not None else text
    content = "\n".join(_SPACES.sub(" ", line).strip() for line in content.splitlines()).strip()
    if not has_visible_text(content):  # zero-width spaces and the like are nothing to report (session 24)
        return None
    return SmsReport(content, agency)


def sender_number(sender: str) -> str:
    """The sender as one number, whatever way the gateway writes it: an Indonesian number as E.164 (`0812...`,
    `62812...`, `+62812...` and `0062812...` are all `+62812...`), so that one subscriber is one sender for the
    rate limit, the vault and duplicate suspicion; read as the web form reads a reporter's phone
    (`services.intake.phone`). A number lokal-id does not take (a short code) is kept as given, with `00` read as
    "+" all the same."""
    return read_phone(sender).e164 or international_form(sender)


def title_of(content: str) -> str:
    """A title for a report that came without one: its first line, cut at a space near TITLE_LENGTH, else where a
    run of letters and digits ends (never inside one: half a number is a number no detector knows). Intake cuts
    it from the masked text (`submit`), so the title holds nothing the masked body does not."""
    # The first line that shows something (a line of zero-width spaces would be an invisible title).
    line = next((line.strip() for line in content.splitlines() if has_visible_text(line)), "")
    return shortened(line, TITLE_LENGTH)


HELP_REPLY = (
    "LAPOR! 1708: ketik KATAKUNCI<spasi>isi laporan, mis. KOTKUPANG Jalan di depan pasar rusak. "
    "Tanpa kata kunci, laporan diverifikasi admin nasional."
)


def accepted_reply(tracking_id: str, reporter_token: str, agency_name: str | None) -> str:
    """The SMS sent back: where the report goes, the tracking ID, and the access code (the reporter token) that
    opens the reporter's actions on lapor.go.id."""
    to = agency_name or "verifikasi nasional"
    return f"LAPOR! 1708: laporan diterima ({to}). No. lacak {tracking_id}. Kode akses: {reporter_token}"
