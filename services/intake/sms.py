"""SMS 1708: `KEYWORD <isi laporan>`, and the replies sent back through the gateway.

The first word is looked up as a keyword of the agency directory (case-insensitive; leading, trailing and
repeated spaces, line breaks and invisible characters do not matter, nor a `:`, `,`, `.`, `;` or `#` right after
the keyword). A known keyword routes the report to that regional government and is not part of the report; an
unknown first word is simply the first word of a report for national verification, which then keeps the whole
text. Pure functions: the directory lookup is passed in.
"""

from __future__ import annotations

import re
import unicodedata
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


# One SMS holds 160 characters of the GSM 03.38 alphabet (GSM-7), or 70 once a single character is outside it (the
# whole message goes as UCS-2). A longer reply goes as parts (153 characters each), which cost the sender's
# operator more, which some gateways and phones cut at 160, and which arrive as separate messages on others: the
# access code, last, is what gets cut or split. Session 32: the names of two governments of the shipped directory
# (DKI Jakarta's, Kepulauan Seribu's) made the reply 161 and 162 characters, a longer name (an agency registered
# through routing's API may have up to 200) more, and a name with a typographic apostrophe or dash made it UCS-2.
SMS_LENGTH = 160
# GSM 03.38's basic set, without the line breaks (a name is one line): one septet each. Its extension table
# (`^{}[]~|\€`) takes two, and is left out too.
_GSM7 = frozenset(
    "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
# What a name typed on a computer holds in place of a GSM-7 character.
_TYPOGRAPHIC = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"', "\u2010": "-", "\u2011": "-",
     "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2026": "..."}
)

# The short forms every Indonesian reads, for a name too long for the reply as it is.
_SHORT_FORMS = (
    ("Pemerintah Provinsi ", "Pemprov "),
    ("Pemerintah Kabupaten ", "Pemkab "),
    ("Pemerintah Kota ", "Pemkot "),
)


def _in_gsm7(name: str) -> str:
    """`name` in GSM-7: a letter with diacritics as its letter where GSM-7 lacks it, typographic quotes and dashes
    as ASCII ones, and any other character outside the alphabet left out."""
    folded = unicodedata.normalize("NFKC", name).translate(_TYPOGRAPHIC)
    kept = []
    for character in folded:
        if character not in _GSM7:
            character = "".join(c for c in unicodedata.normalize("NFKD", character) if c in _GSM7)
        kept.append(character)
    return " ".join("".join(kept).split())


def accepted_reply(tracking_id: str, reporter_token: str, agency_name: str | None) -> str:
    """The SMS sent back: where the report goes, the tracking ID, and the access code (the reporter token) that
    opens the reporter's actions on lapor.go.id. One SMS (`SMS_LENGTH` GSM-7 characters): the agency's name is
    written in GSM-7 and, when the rest leaves it too little room, in its short form (Pemprov, Pemkab, Pemkot),
    and cut with ".." if it is still too long."""
    def reply(to: str) -> str:
        return f"LAPOR! 1708: laporan diterima ({to}). No. lacak {tracking_id}. Kode akses: {reporter_token}"

    to = _in_gsm7(agency_name) if agency_name else ""
    if not to:
        return reply("verifikasi nasional" if agency_name is None else "instansi tujuan")
    room = SMS_LENGTH - len(reply(""))
    for long, short in _SHORT_FORMS:
        if len(to) > room and to.startswith(long):
            to = short + to.removeprefix(long)
    if len(to) > room:
        to = to[: room - 2].rstrip(" ,.;:-") + ".."
    return reply(to)
