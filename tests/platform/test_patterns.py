"""Every pattern the API document and the event contracts publish means the same to their readers (JSON Schema's
`pattern` is ECMA-262) as to the service, which validates with pydantic (Rust's `regex`) and, for a few values,
Python's `re` (`lapor.patterns`). Each is run through all three engines on strings drawn from the pattern and
then spoiled with characters where the engines' shorthand classes differ."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
import regress
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import StringConstraints, TypeAdapter, ValidationError

from lapor.app import load_services
from lapor.patterns import NOT_WHITESPACE, WHITESPACE
from schemas.export import JSON_DIR

# Where the engines' shorthand classes disagree, and what a client may well send by mistake.
AWKWARD = [
    # spaces to one engine or another
    *"\t\n\x0b\x0c\r\x1c\x1f \x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000\ufeff",
    *"５١०",  # digits of other scripts
    *"éßıſ\u212a画",  # letters beyond ASCII (ſ and the Kelvin sign fold to ASCII letters ignoring case)
    *"\x00\x7f\x9f",  # control characters
    *"@<>/.:-_+\"'*",
]
SHORTHAND = re.compile(r"(?<!\\)(?:\\\\)*\\[dDwWsSbB]")


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(node, list):
        for item in node:
            yield from _patterns(item)


@pytest.fixture
def published(serve) -> dict[str, list[str]]:
    """pattern -> where it is published (the API document of all four services, the exported event schemas)."""
    with serve(services=load_services()) as client:
        documents = {"/openapi.json": client.get("/openapi.json").json()}
    documents |= {f"schemas/json/{path.name}": json.loads(path.read_text()) for path in sorted(JSON_DIR.glob("*.json"))}
    found: dict[str, list[str]] = {}
    for name, document in documents.items():
        for pattern in _patterns(document):
            if name not in found.setdefault(pattern, []):
                found[pattern].append(name)
    return found


def test_no_published_pattern_uses_a_shorthand_class(published):
    assert len(published) > 15  # the document and the contracts do publish patterns
    assert {pattern: where for pattern, where in published.items() if SHORTHAND.search(pattern)} == {}


def test_every_published_pattern_means_the_same_to_ecma_rust_and_python(published):
    for pattern, where in published.items():
        engines_agree_on(pattern, where)


def engines_agree_on(pattern: str, where: list[str]) -> None:
    ecma = regress.Regex(pattern)
    rust = TypeAdapter(Annotated[str, StringConstraints(pattern=pattern)])
    python = re.compile(pattern)

    def rust_matches(text: str) -> bool:
        try:
            rust.validate_python(text)
        except ValidationError:
            return False
        return True

    @settings(max_examples=150, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def agree(data: st.DataObject) -> None:
        text = data.draw(st.from_regex(python, fullmatch=True), label="drawn")
        if data.draw(st.booleans(), label="spoil"):
            at = data.draw(st.integers(0, len(text)), label="at")
            awkward = data.draw(st.sampled_from(AWKWARD), label="with")
            text = text[:at] + awkward + text[at + data.draw(st.integers(0, 1), label="replacing"):]
        matches = {"ECMA-262": ecma.find(text) is not None, "Rust": rust_matches(text)}
        if not text.endswith("\n"):  # Python's `$` also matches before a final newline; the service fullmatches
            matches["Python"] = python.search(text) is not None
        assert len(set(matches.values())) == 1, (pattern, where, text, matches)

    agree()


def test_whitespace_is_what_str_isspace_says_in_every_engine():
    """`lapor.patterns.WHITESPACE` is exactly the characters `str.strip()` takes away, to all three engines."""
    ecma = regress.Regex(f"^{NOT_WHITESPACE}$")
    rust = TypeAdapter(Annotated[str, StringConstraints(pattern=f"^{NOT_WHITESPACE}$")])
    python = re.compile(f"[{WHITESPACE}]")
    ecma_spaces, rust_spaces, python_spaces, spaces = [], [], [], []
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:  # surrogates are not characters of a valid string
            continue
        character = chr(code)
        if character.isspace():
            spaces.append(character)
        if ecma.find(character) is None:
            ecma_spaces.append(character)
        if python.fullmatch(character):
            python_spaces.append(character)
        try:
            rust.validate_python(character)
        except ValidationError:
            rust_spaces.append(character)
    assert len(spaces) == 29
    assert ecma_spaces == python_spaces == rust_spaces == spaces
