"""Text written by reporters: what intake accepts, and how personal data in it is kept out of the log.

Accepted: plain text (`lapor.limits.check_plain_text`, the same for every service). Refused with a 422 naming the
field: HTML markup (a tag, a `javascript:` link, an event handler attribute), control characters other than tab
and line breaks (NUL included: PostgreSQL cannot store it), and strings that are not valid Unicode (lone
surrogates, which no UTF-8 encoder accepts). SQL fragments are ordinary text to us: every query is
parameterised, so `'; DROP TABLE ...` is stored and shown as written.

Personal data (the reporter's own NIK, phone number, e-mail or name typed into the text) is masked *before*
the event is written, with the central policy (`lapor.privacy`): the log holds the masked text, which is what
everyone but the national admin sees anyway, and the original goes to the PII vault under a reference kept in
the event's metadata (`pii_original_ref`). So the log can be shared with auditors and streamed to Kafka without
personal data, erasing the vault entry erases the original, and the national admin still reads the text as
written (see `views.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from lapor.privacy import identity_values_in, redact_event_data
from schemas.events import EVENT_TYPES

# Between the texts masked in one pass: a private-use character, which no detector pattern takes in.
_JOIN = "\n\ue000\n"

# Where a text is in the fields: keys, and an item's place in a list (an attachment's).
Path = tuple[str | int, ...]
# Strings that nobody wrote: an attachment's hash and media type (its link is masked, session 32).
_NOT_TEXT = frozenset({"sha256", "media_type"})


def _leaves(value: Any, path: Path = ()) -> list[tuple[Path, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, Mapping):
        return [leaf for key, item in value.items() if key not in _NOT_TEXT for leaf in _leaves(item, (*path, key))]
    if isinstance(value, list | tuple):
        return [leaf for index, item in enumerate(value) for leaf in _leaves(item, (*path, index))]
    return []


def _with_leaves(value: Any, texts: Mapping[Path, str], path: Path = ()) -> Any:
    if isinstance(value, Mapping):
        return {key: _with_leaves(item, texts, (*path, key)) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_with_leaves(item, texts, (*path, index)) for index, item in enumerate(value))
    return texts.get(path, value)


def mask_personal_data(
    event_type: str, fields: Mapping[str, Any], identity: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`fields` (free text of an event, possibly nested like a location's address) masked as the public would
    see them, with the reporter's own `identity` values scrubbed wherever they appear; and the originals of the
    fields that changed, None when nothing did.

    The texts are masked in one pass, joined: most of the detector's cost is per call, not per character."""
    leaves = _leaves(fields)
    texts = [text for _, text in leaves]
    # Only the values that occur in the text are scrubbed: compiling a pattern for the others costs every report.
    own = [value for value in (identity or {}).values() if isinstance(value, str)]
    known = identity_values_in(own, " ".join(texts)) if own else []

    def masked_text(text: str) -> str:
        return redact_event_data(event_type, {"text": text, "reporter": known}, None, anonymous=True)["text"]

    parts = masked_text(_JOIN.join(texts)).split(_JOIN)
    if len(parts) != len(texts):  # the reporter typed the separator: mask the texts one by one
        parts = [masked_text(text) for text in texts]
    longest = longest_texts(event_type)
    masked = _with_leaves(
        fields,
        {path: _within(part, longest.get(_in_schema(path))) for (path, _), part in zip(leaves, parts, strict=True)},
    )
    originals = {name: value for name, value in fields.items() if masked.get(name) != value}
    return masked, originals or None


def _within(text: str, longest: int | None) -> str:
    """A masked text the event contract takes (session 32): a mask can be longer than what it replaces (`a@b.id`
    becomes `a***@b.id`, a name `Al` `A***`), so a title of 200 characters could come out longer and the submission
    was refused, 422 "title: String should have at most 200 characters" for a title the form took. Such a text is
    cut to its field's limit, "…" included; the original, whole, is in the vault for the national admin."""
    return text if longest is None or len(text) <= longest else shortened(text, longest - 1)


def shortened(text: str, length: int) -> str:
    """`text` as it is when it has at most `length` characters; else cut at a space near `length`, else where a
    run of letters and digits ends (never inside one: half a number is a number no detector knows), and "…" put
    after it (at most `length` + 1 characters)."""
    if len(text) <= length:
        return text
    cut = text.rfind(" ", 0, length)
    if cut <= length // 2:
        cut = next((n for n in range(length, 0, -1) if not _inside_a_run(text, n)), length)
    return text[:cut].rstrip(" ,.;:") + "…"


def _inside_a_run(text: str, position: int) -> bool:
    return text[position - 1].isalnum() and text[position].isalnum()


def _in_schema(path: Path) -> Path:
    """`path` as `longest_texts` names it: any item of a list is "*"."""
    return tuple("*" if isinstance(step, int) else step for step in path)


@cache
def longest_texts(event_type: str) -> dict[Path, int]:
    """The longest text the event contract of `event_type` takes at each path of its data (its `maxLength`s; any
    item of a list is "*")."""
    schema = EVENT_TYPES[event_type].model_json_schema()
    definitions = schema.get("$defs", {})
    found: dict[Path, int] = {}

    def walk(node: Mapping[str, Any], path: Path) -> None:
        if "$ref" in node:
            node = definitions[node["$ref"].rsplit("/", 1)[-1]]
        for option in node.get("anyOf", ()):
            walk(option, path)
        if "maxLength" in node:
            found[path] = node["maxLength"]
        for key, child in node.get("properties", {}).items():
            walk(child, (*path, key))
        if "items" in node:
            walk(node["items"], (*path, "*"))

    walk(schema, ())
    return found
