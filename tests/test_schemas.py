"""Event contracts: valid events survive storage, invalid ones never get in, the exported JSON Schema stays in
step with the models, and old event data is upcast in order."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pydantic
import pytest

from lapor.clock import ManualClock
from lapor.store import NO_STREAM, NewEvent, open_store
from schemas import EVENT_TYPES, EventEnvelope, UpcasterRegistry, UpcastError, parse_event_data, upcast
from schemas.events import COMPLAINT_EVENTS, ComplaintSubmitted, FeedbackGiven, UnknownEventType
from schemas.export import JSON_DIR, render_schemas
from tests.event_examples import T0, TRACKING_ID, examples, submitted


def test_every_event_type_has_an_example():
    assert set(examples()) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_event_data_survives_the_trip_through_json(event_type):
    event = examples()[event_type]
    stored = orjson.loads(orjson.dumps(event.to_data()))
    assert parse_event_data(event_type, stored) == event


def test_events_written_to_the_store_read_back_as_the_same_event(tmp_path):
    event = submitted()
    with open_store(f"sqlite:///{tmp_path}/events.db", clock=ManualClock(T0)) as store:
        store.append(f"complaint-{TRACKING_ID}", [event.to_new_event(metadata={"actor": "web"})], NO_STREAM)
        [recorded] = store.read_stream(f"complaint-{TRACKING_ID}")
    envelope = EventEnvelope.from_recorded(recorded)
    assert (envelope.type, envelope.schema_version, envelope.version) == ("ComplaintSubmitted", 1, 0)
    assert envelope.metadata.actor == "web"
    assert envelope.recorded_at == T0
    assert envelope.event_data() == event
    assert EventEnvelope.model_validate_json(envelope.model_dump_json()) == envelope


def test_stored_deadlines_are_iso_8601_strings_with_a_timezone():
    data = submitted().to_data()
    assert data["verification_due"] == "2026-03-05T09:00:00Z"


@pytest.mark.parametrize("region_code", ["5371", "53.7", "53.71.1", "53.71.01.100", "KUPANG", ""])
def test_region_codes_must_follow_kemendagri_notation(region_code):
    with pytest.raises(pydantic.ValidationError, match="region_code"):
        submitted(region_code=region_code)


@pytest.mark.parametrize("region_code", ["53", "53.71", "53.71.01", "53.71.01.1001"])
def test_region_codes_at_every_level_are_accepted(region_code):
    assert submitted(region_code=region_code).region_code == region_code


@pytest.mark.parametrize("rating", [0, 6])
def test_rating_outside_one_to_five_is_rejected(rating):
    with pytest.raises(pydantic.ValidationError, match="rating"):
        FeedbackGiven(satisfied=True, rating=rating)


@pytest.mark.parametrize("field", ["reporter_name", "nik", "phone", "email"])
def test_identity_cannot_be_written_into_a_submission(field):
    data = submitted().to_data() | {field: "3171234567890123"}
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        parse_event_data("ComplaintSubmitted", data)


def test_identity_cannot_hide_in_an_attachment_either():
    data = submitted().to_data()
    data["attachments"][0]["uploader_phone"] = "081234567890"
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        parse_event_data("ComplaintSubmitted", data)


@pytest.mark.parametrize(
    ("event_type", "changes", "field"),
    [
        ("ComplaintSubmitted", {"kind": "keluhan"}, "kind"),
        ("ComplaintSubmitted", {"channel": "fax"}, "channel"),
        ("ComplaintSubmitted", {"title": "   "}, "title"),
        ("ComplaintSubmitted", {"reporter_token_hash": "not-a-hash"}, "reporter_token_hash"),
        ("ComplaintSubmitted", {"reporter_ref": "Budi Santoso"}, "reporter_ref"),
        ("ComplaintSubmitted", {"verification_due": "2026-03-05T09:00:00"}, "verification_due"),
        ("ComplaintSubmitted", {"location": {"lat": -10.16}}, "location"),
        ("ComplaintEscalated", {"to_level": "presiden"}, "to_level"),
        ("ComplaintClosed", {"reason": "bosan"}, "reason"),
        ("ComplaintDisposed", {"level": "unit"}, "level"),
        ("RoutingRuleChanged", {"match": {}}, "match"),
    ],
)
def test_malformed_event_data_is_rejected(event_type, changes, field):
    data = examples()[event_type].to_data() | changes
    with pytest.raises(pydantic.ValidationError, match=field):
        parse_event_data(event_type, data)


def test_events_cannot_be_changed_once_made():
    event = submitted()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        event.title = "lain"


def test_unknown_event_type_is_named_in_the_error():
    with pytest.raises(UnknownEventType, match="ComplaintTeleported"):
        parse_event_data("ComplaintTeleported", {})


def test_new_events_carry_their_type_and_current_schema_version():
    new_event = submitted().to_new_event()
    assert (new_event.type, new_event.schema_version) == ("ComplaintSubmitted", ComplaintSubmitted.schema_version)


def test_new_events_get_time_ordered_ids_unless_given_one():
    """Fresh ids are UUIDv7: each later one sorts after the earlier (the store's id index grows at its end). An
    id the caller derived (a cause, an idempotency key) is kept as given."""
    made = [submitted().to_new_event().event_id for _ in range(50)]
    made += [NewEvent("Noted", {}).event_id for _ in range(50)]
    assert all(event_id.version == 7 for event_id in made)
    assert made == sorted(made, key=lambda event_id: event_id.bytes)
    assert len(set(made)) == len(made)
    given = uuid.uuid5(uuid.NAMESPACE_URL, "lapor:cause")
    assert submitted().to_new_event(event_id=given).event_id == given


def test_exported_json_schemas_match_the_models():
    expected = render_schemas()
    stale = [name for name, content in expected.items() if _read(JSON_DIR / name) != content]
    assert not stale, f"schemas/json is out of date for {stale}: run `make schemas` and commit the result"


def test_every_exported_schema_belongs_to_a_known_event():
    known = set(EVENT_TYPES) | {"EventEnvelope"}
    strays = [path.name for path in JSON_DIR.glob("*.json") if path.name.split(".")[0] not in known]
    assert not strays, f"schemas/json holds schemas of no known event: {strays}"


def test_exported_schema_rejects_unknown_fields_for_other_languages_too():
    schema = orjson.loads((JSON_DIR / "ComplaintSubmitted.v1.json").read_bytes())
    assert schema["additionalProperties"] is False
    assert "reporter_token_hash" in schema["required"]


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


# -- upcasting -------------------------------------------------------------------------------------------


def _registry_at_v3() -> UpcasterRegistry:
    """ComplaintSubmitted as if it had gone through two schema changes."""
    registry = UpcasterRegistry({"ComplaintSubmitted": 3})

    @registry.register("ComplaintSubmitted", from_version=1)
    def _rename_text(data: dict) -> dict:  # v1 called the body "text"
        data = dict(data)
        data["body"] = data.pop("text")
        return data

    @registry.register("ComplaintSubmitted", from_version=2)
    def _add_channel(data: dict) -> dict:  # v2 had no channel: everything came from the web
        return {**data, "channel": "web"}

    return registry


def test_upcasting_chains_every_step_to_the_current_version():
    data, version = _registry_at_v3().upcast("ComplaintSubmitted", 1, {"text": "jalan rusak"})
    assert (data, version) == ({"body": "jalan rusak", "channel": "web"}, 3)


def test_upcasting_from_an_intermediate_version_runs_only_the_later_steps():
    data, version = _registry_at_v3().upcast("ComplaintSubmitted", 2, {"body": "jalan rusak"})
    assert (data, version) == ({"body": "jalan rusak", "channel": "web"}, 3)


def test_current_data_is_not_touched_by_upcasting():
    original = {"body": "jalan rusak", "channel": "sms"}
    assert _registry_at_v3().upcast("ComplaintSubmitted", 3, original) == (original, 3)


def test_upcasting_leaves_the_stored_data_unchanged():
    stored = {"text": "jalan rusak"}
    _registry_at_v3().upcast("ComplaintSubmitted", 1, stored)
    assert stored == {"text": "jalan rusak"}


def test_a_missing_upcaster_step_is_reported():
    registry = UpcasterRegistry({"ComplaintSubmitted": 3})
    registry.register("ComplaintSubmitted", from_version=2)(lambda data: data)
    with pytest.raises(UpcastError, match="v1 -> v2"):
        registry.upcast("ComplaintSubmitted", 1, {})


def test_data_from_newer_code_is_refused():
    with pytest.raises(UpcastError, match="newer than this code"):
        _registry_at_v3().upcast("ComplaintSubmitted", 4, {})


def test_an_upcaster_cannot_be_registered_twice_or_from_the_current_version():
    registry = _registry_at_v3()
    with pytest.raises(ValueError, match="already registered"):
        registry.register("ComplaintSubmitted", from_version=1)
    with pytest.raises(ValueError, match="must start from"):
        registry.register("ComplaintSubmitted", from_version=3)


def test_every_v1_event_is_current_in_the_default_registry():
    for model in COMPLAINT_EVENTS:
        data = examples()[model.event_type()].to_data()
        assert upcast(model.event_type(), 1, data) == (data, 1)
