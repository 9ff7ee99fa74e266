"""Every schema the API document and the event contracts publish is written in JSON Schema 2020-12's own keywords
(with OpenAPI 3.1's few additions), so a client generator or validator reads every bound the service applies.

A keyword no vocabulary defines is ignored by every reader: pydantic publishes the bounds of an integer that follow
a validator as `ge`/`le` instead of `minimum`/`maximum`, and clients then saw page limits and stream positions
without bounds (found by schemathesis's positive-data check in session 18)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from lapor.app import load_services
from schemas.export import JSON_DIR

# JSON Schema 2020-12: core, applicator, unevaluated, validation, meta-data, format-annotation and content.
SCHEMA_KEYWORDS = {
    "$schema", "$id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary", "$comment", "$defs",
    "prefixItems", "items", "contains", "additionalProperties", "properties", "patternProperties",
    "dependentSchemas", "propertyNames", "if", "then", "else", "allOf", "anyOf", "oneOf", "not",
    "unevaluatedItems", "unevaluatedProperties",
    "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains",
    "maxProperties", "minProperties", "required", "dependentRequired",
    "title", "description", "default", "deprecated", "readOnly", "writeOnly", "examples",
    "format", "contentEncoding", "contentMediaType", "contentSchema",
}  # fmt: skip
OPENAPI_KEYWORDS = {"discriminator", "xml", "externalDocs", "example"}  # OpenAPI 3.1's Schema Object adds these
ONE_SCHEMA = {
    "items", "contains", "additionalProperties", "propertyNames", "if", "then", "else", "not", "unevaluatedItems",
    "unevaluatedProperties", "contentSchema",
}  # fmt: skip
SCHEMA_LISTS = {"prefixItems", "allOf", "anyOf", "oneOf"}
SCHEMA_MAPS = {"properties", "patternProperties", "dependentSchemas", "$defs"}


def unknown_keywords(schema: Any, where: str, allowed: set[str]) -> Iterator[str]:
    """`where.keyword` for every keyword of `schema` and its subschemas that is not in `allowed` (nor `x-...`)."""
    if not isinstance(schema, dict):
        return  # true and false are schemas too
    for key, value in schema.items():
        if key not in allowed and not key.startswith("x-"):
            yield f"{where}.{key}"
        elif key in ONE_SCHEMA:
            yield from unknown_keywords(value, f"{where}.{key}", allowed)
        elif key in SCHEMA_LISTS:
            for index, item in enumerate(value):
                yield from unknown_keywords(item, f"{where}.{key}[{index}]", allowed)
        elif key in SCHEMA_MAPS:
            for name, item in value.items():
                yield from unknown_keywords(item, f"{where}.{key}.{name}", allowed)


def document_schemas(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every schema an OpenAPI document holds outside `components.schemas`: a parameter's, a header's, a media
    type's (examples are data, not schemas, and are passed over)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema":
                yield f"{where}.schema", value
            elif key not in {"example", "examples"}:
                yield from document_schemas(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from document_schemas(item, f"{where}[{index}]")


@pytest.fixture
def document(serve) -> dict[str, Any]:
    with serve(services=load_services()) as client:
        return client.get("/openapi.json").json()


def test_the_api_document_speaks_only_json_schema(document):
    allowed = SCHEMA_KEYWORDS | OPENAPI_KEYWORDS
    schemas = [
        *document_schemas(document["paths"], "paths"),
        *((f"components.schemas.{name}", schema) for name, schema in document["components"]["schemas"].items()),
    ]
    assert len(schemas) > 100  # the walk really reached the parameters and the bodies
    assert [found for where, schema in schemas for found in unknown_keywords(schema, where, allowed)] == []


def test_the_api_document_publishes_the_bounds_of_a_page(document):
    [limit] = [parameter for parameter in document["paths"]["/api/agencies"]["get"]["parameters"]
               if parameter["name"] == "limit"]  # fmt: skip
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)


def test_the_event_contracts_speak_only_json_schema():
    paths = sorted(JSON_DIR.glob("*.json"))
    assert paths
    assert [found for path in paths for found in unknown_keywords(json.loads(path.read_text()), path.name,
                                                                    SCHEMA_KEYWORDS)] == []  # fmt: skip
