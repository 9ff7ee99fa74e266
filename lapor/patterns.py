r"""Pieces of regular expressions that mean the same to every engine that reads them.

A pattern here is read three ways: by pydantic (Rust's `regex` crate) when a request or an event is validated,
by Python's `re` where a service checks a value itself, and as ECMA-262 by whoever reads the API's document or
the event contracts in `schemas/json` (JSON Schema's `pattern` is ECMA-262). The shorthand classes differ
between them: `\d` and `\w` are Unicode in Rust and Python ("５３" and "١٢" are digits) but ASCII in ECMA; `\s`
is a different set in each (U+0085 is space to Rust and Python, not to ECMA; U+FEFF the other way round); and
`.` stops at U+2028 in ECMA only. So no published pattern uses a shorthand class or `.`: digits are `[0-9]`,
and whitespace is spelled out here as exactly the characters Python's `str.isspace()` (and so `str.strip()`)
takes, so that what a pattern calls space is what `strip_whitespace` strips. `tests/platform/test_patterns.py`
holds every published pattern to this with an ECMA engine beside the two others.
"""

from __future__ import annotations

# Exactly str.isspace(): \t \n \v \f \r, the separators U+001C–U+001F, the space, NEL, NBSP, OGHAM SPACE MARK,
# the EN QUAD … HAIR SPACE run, LINE and PARAGRAPH SEPARATOR, NNBSP, MMSP, IDEOGRAPHIC SPACE. For use inside
# a character class.
WHITESPACE = r"\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_WHITESPACE = f"[^{WHITESPACE}]"
# The C0 and C1 control characters and DEL.
CONTROL = r"\x00-\x1f\x7f-\x9f"
# Characters that show nothing (session 31): SOFT HYPHEN, ARABIC LETTER MARK, MONGOLIAN VOWEL SEPARATOR, ZERO WIDTH
# SPACE, the joiners, the marks, embeddings, overrides and isolates of direction, WORD JOINER and the invisible
# operators, the BOM. For use inside a character class.
INVISIBLE = r"\xad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"

# An email address as people type it: something@something.something, with no space, control character, angle
# bracket or second @ (the mail server has the last word; this refuses what is certainly not an address).
_EMAIL_PART = f"[^@<>{WHITESPACE}{CONTROL}]+"
EMAIL_PATTERN = rf"^{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}$"

# The channel an integration client pushes for (`/api/channels/{channel}/complaints`; `sms` too, which has a route of
# its own), as its token's `channel` claim carries it.
CHANNEL_NAME = r"^[a-z0-9][a-z0-9-]{1,39}$"
