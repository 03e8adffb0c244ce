"""The published contract (JSON Schema per type, AsyncAPI) agrees with the validation code."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from shared.events import EVENT_TYPES, Topic
from shared.schemas import all_schemas, asyncapi
from tests.unit.test_events import raw

EXAMPLES: dict[str, dict[str, Any]] = {
    "crm.purchase.completed": {"order_id": "o-1", "amount": "19.99", "currency": "USD"},
    "crm.complaint.opened": {"complaint_id": "k-1", "channel": "email", "category": "delivery"},
    "crm.survey.nps": {"score": 9},
    "crm.customer.registered": {"name": "Li Wei"},
}


@pytest.mark.parametrize("type_name", sorted(EXAMPLES))
def test_a_valid_event_validates_against_its_published_schema(type_name: str) -> None:
    validator = jsonschema_rs.validator_for(all_schemas()[type_name])
    event = raw(type_name, data=EXAMPLES[type_name])
    assert validator.is_valid(event)
    assert not validator.is_valid({**event, "subject": "has space"})
    assert not validator.is_valid({**event, "type": "crm.other"})


def test_every_schema_is_a_valid_json_schema() -> None:
    for name, schema in all_schemas().items():
        jsonschema_rs.validator_for(schema)  # checks the schema against its meta-schema
        assert schema["properties"]["type"] == {"const": name}


def test_asyncapi_lists_every_type_under_its_topic() -> None:
    document = asyncapi()
    assert document["asyncapi"] == "3.0.0"
    for (name, _), event_type in EVENT_TYPES.items():
        channel = document["channels"][event_type.topic.value.replace(".", "_")]
        assert channel["address"] == event_type.topic.value
        assert name.replace(".", "_") in channel["messages"]
    assert document["channels"]["crm_deadletter"]["address"] == Topic.DEADLETTER.value
