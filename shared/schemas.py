"""Machine-readable contract for other systems: a JSON Schema per event type and an AsyncAPI
document of the topics, both generated from the pydantic models in `events.py`."""

from __future__ import annotations

from functools import cache
from typing import Any

from shared.events import EVENT_TYPES, Envelope, EventType, Topic

ASYNCAPI_VERSION = "3.0.0"


def event_schema(event_type: EventType) -> dict[str, Any]:
    """The JSON Schema (2020-12) of a whole CloudEvent of this type: envelope and data."""
    envelope = Envelope.model_json_schema()
    data = event_type.data_model.model_json_schema()
    definitions = {**envelope.pop("$defs", {}), **data.pop("$defs", {})}
    properties = dict(envelope["properties"])
    properties["type"] = {"const": event_type.name}
    properties["data"] = data
    properties["schemaversion"] = {
        "type": "string",
        "enum": [str(event_type.version)],
        "description": "CloudEvents extension: the version of the data schema (default 1).",
    }
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:crm:event:{event_type.name}:{event_type.version}",
        "title": event_type.name,
        "description": (event_type.data_model.__doc__ or "").strip() or event_type.name,
        "type": "object",
        "properties": properties,
        "required": sorted(set(envelope.get("required", [])) | {"data"}),
        "additionalProperties": True,  # CloudEvents extension attributes
    }
    if definitions:
        schema["$defs"] = definitions
    return schema


@cache
def all_schemas() -> dict[str, dict[str, Any]]:
    return {name: event_schema(t) for (name, _), t in EVENT_TYPES.items()}


@cache
def asyncapi() -> dict[str, Any]:
    """AsyncAPI 3.0: one channel per topic, one message per event type published there."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    components: dict[str, Any] = {"messages": {}, "schemas": {}}
    for (name, _), event_type in sorted(EVENT_TYPES.items()):
        key = name.replace(".", "_")
        components["schemas"][key] = event_schema(event_type)
        components["messages"][key] = {
            "name": name,
            "contentType": "application/cloudevents+json",
            "payload": {"$ref": f"#/components/schemas/{key}"},
            "bindings": {"kafka": {"key": {"type": "string", "description": "subject"}}},
        }
        channel = channels.setdefault(
            event_type.topic.value.replace(".", "_"),
            {"address": event_type.topic.value, "messages": {}},
        )
        channel["messages"][key] = {"$ref": f"#/components/messages/{key}"}
    channels["crm_deadletter"] = {
        "address": Topic.DEADLETTER.value,
        "description": "Records a consumer could not use: original bytes and key, with headers "
        "crm-error, crm-source-topic, crm-source-partition, crm-source-offset, crm-consumer.",
        "messages": {},
    }
    for channel_key, channel in channels.items():
        operations[f"publish_{channel_key}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_key}"},
            "messages": [
                {"$ref": f"#/channels/{channel_key}/messages/{m}"} for m in channel["messages"]
            ],
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "CRM analytics events",
            "version": "1.0.0",
            "description": "CloudEvents 1.0 (JSON, structured mode) on Kafka. Key = subject "
            "(the customer id), so one customer's events stay in order on one partition.",
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
        "components": components,
    }
