from __future__ import annotations

import httpx
import pytest

from services.ingest.main import app as ingest_app
from services.ingest.settings import IngestSettings
from shared.events import Topic
from shared.settings import CommonSettings
from tests.helpers import purchase, read_topic, wait_until

pytestmark = pytest.mark.integration


async def test_posted_event_reaches_topic(settings: CommonSettings) -> None:
    app = ingest_app(IngestSettings(**settings.model_dump()))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            response = await client.post("/v1/events", json=purchase("c-1", "10.00"))
            assert response.status_code == 202, response.text
            records = await wait_until(
                lambda: read_topic(settings.kafka_bootstrap_servers, Topic.PURCHASES),
                what="the purchase on crm.purchases",
            )
    assert len(records) == 1
    assert records[0].key == b"c-1"
