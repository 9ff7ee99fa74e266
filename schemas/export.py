"""Write the JSON Schema of every event (current version) and of the envelope to `schemas/json/`.

`python -m schemas.export` (or `make schemas`). Files are named `<Type>.v<N>.json`; files of older versions
are left in place on purpose: they describe events that are still in the log.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas.envelope import EventEnvelope
from schemas.events import EVENT_TYPES

JSON_DIR = Path(__file__).with_name("json")
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ENVELOPE_FILE = "EventEnvelope.json"


def _render(schema: dict) -> str:
    return json.dumps({"$schema": JSON_SCHEMA_DIALECT, **schema}, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_schemas() -> dict[str, str]:
    """File name -> file content, for every current event version and the envelope."""
    files = {
        f"{name}.v{model.schema_version}.json": _render(model.model_json_schema())
        for name, model in EVENT_TYPES.items()
    }
    files[ENVELOPE_FILE] = _render(EventEnvelope.model_json_schema())
    return files


def write_schemas(directory: Path = JSON_DIR) -> list[Path]:
    """Write every rendered schema whose file is missing or differs; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in render_schemas().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            written.append(path)
    return written


def main() -> None:
    written = write_schemas()
    for path in written:
        print(f"wrote {path}")
    print(f"{len(render_schemas())} schemas in {JSON_DIR}, {len(written)} changed", file=sys.stderr)


if __name__ == "__main__":
    main()
