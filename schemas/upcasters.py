"""Upcasters: old event data read as the current schema version.

Events are never rewritten in the store (the hash chain forbids it). When a model's `schema_version` goes up,
register a function that lifts data from the previous version; `upcast` chains them, so a v1 event becomes v3
through v1->v2 and v2->v3.

```python
@register("ComplaintSubmitted", from_version=1)
def _split_location(data: dict) -> dict:          # v1 -> v2
    return {**data, "location": ...}
```
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from schemas.events import EVENT_TYPES, UnknownEventType

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UpcastError(ValueError):
    """Data at a schema version this code cannot bring to the current one."""


class UpcasterRegistry:
    def __init__(self, current_versions: Mapping[str, int]) -> None:
        self._current = dict(current_versions)
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def current_version(self, event_type: str) -> int:
        try:
            return self._current[event_type]
        except KeyError:
            raise UnknownEventType(event_type) from None

    def register(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: `fn` lifts `event_type` data from `from_version` to `from_version + 1`."""
        current = self.current_version(event_type)
        if not 1 <= from_version < current:
            raise ValueError(
                f"{event_type} is at schema version {current}: an upcaster must start from 1..{current - 1}"
            )
        key = (event_type, from_version)
        if key in self._steps:
            raise ValueError(f"an upcaster for {event_type} v{from_version} is already registered")

        def add(fn: Upcaster) -> Upcaster:
            self._steps[key] = fn
            return fn

        return add

    def upcast(self, event_type: str, schema_version: int, data: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """`data` lifted to the current version, and that version. Current data comes back as it is."""
        current = self.current_version(event_type)
        if schema_version > current:
            raise UpcastError(
                f"{event_type} v{schema_version} is newer than this code (v{current}); upgrade the reader"
            )
        version = schema_version
        while version < current:
            step = self._steps.get((event_type, version))
            if step is None:
                raise UpcastError(f"no upcaster registered for {event_type} v{version} -> v{version + 1}")
            data = step(data)
            version += 1
        return data, version


upcasters = UpcasterRegistry({name: model.schema_version for name, model in EVENT_TYPES.items()})
register = upcasters.register
upcast = upcasters.upcast
current_version = upcasters.current_version
