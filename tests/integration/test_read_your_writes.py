"""Post, then read what was posted, on the real broker and PostgreSQL: ingest's 202 carries a
receipt; a read that sends it (X-CRM-Min-Position) answers only once the service applied
those events, and says so (X-CRM-Position); the receipt names the partition and log number
the relay really published the event at."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.settings import CommonSettings
from tests.helpers import purchase, read_topic
from tests.integration.test_auth import all_services, bearer, issue, known_everywhere

pytestmark = pytest.mark.integration

DAY = "2026-03-02"
AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


async def test_a_read_with_the_receipt_sees_the_write(settings: CommonSettings) -> None:
    _, token = await issue(settings, ["admin"])
    auth = bearer(token)
    async with all_services(settings) as clients:
        await known_everywhere(clients, token)
        posted = await clients["ingest"].post(
            "/v1/events",
            json=[
                purchase("c-ryw", "20.00", time=AT),
                purchase("c-ryw", "2.50", time=AT),
            ],
            headers=auth,
        )
        assert posted.status_code == 202, posted.text
        receipt = posted.json()["receipt"]
        waited = {**auth, "X-CRM-Min-Position": receipt}

        # At once after the 202, with no polling by the client: the answer has both purchases.
        rfm = await clients["scoring"].get("/v1/customers/c-ryw/rfm", headers=waited)
        assert rfm.status_code == 200, rfm.text
        assert rfm.headers["x-crm-position"] == "reached"
        assert (rfm.json()["frequency"], rfm.json()["monetary"]) == (2, "22.50")  # by hand

        kpis = await clients["reporting"].get(
            f"/v1/kpis?metrics=revenue&from={DAY}&to={DAY}", headers=waited
        )
        assert kpis.headers["x-crm-position"] == "reached"
        assert kpis.json()["rows"][0]["revenue"] == "22.50"

        # Complaints reads no purchases: nothing to wait for.
        queue = await clients["complaints"].get("/v1/complaints", headers=waited)
        assert queue.status_code == 200
        assert queue.headers["x-crm-position"] == "reached"

        # The receipt names where the relay put the events: partition and log number.
        (item,) = receipt.split(",")
        log, topic, partition, seq = item.split(":")
        records = [
            r
            for r in await read_topic(settings.kafka_bootstrap_servers, topic)
            if r.key == b"c-ryw" and dict(r.headers).get("crm-log") == log.encode()
        ]
        assert {r.partition for r in records} == {int(partition)}
        assert max(int(dict(r.headers)["crm-seq"]) for r in records) == int(seq)


async def test_a_receipt_not_applied_in_time_is_said_and_bad_ones_refused(
    settings: CommonSettings,
) -> None:
    _, token = await issue(settings, ["admin"])
    auth = bearer(token)
    async with all_services(settings) as clients:
        await known_everywhere(clients, token)
        scoring = clients["scoring"]
        future = "ingest:crm.purchases:0:999999999"
        late = await scoring.get(
            "/v1/segments", headers={**auth, "X-CRM-Min-Position": future, "X-CRM-Max-Wait": "0.2"}
        )
        assert late.status_code == 200
        assert late.headers["x-crm-position"] == "not-reached"
        for header, value, field in (
            ("X-CRM-Min-Position", "ingest:crm.purchases:zero:1", "header.X-CRM-Min-Position"),
            ("X-CRM-Max-Wait", "3600", "header.X-CRM-Max-Wait"),
        ):
            headers = {**auth, "X-CRM-Min-Position": future, header: value}
            bad = await scoring.get("/v1/segments", headers=headers)
            assert bad.status_code == 422
            assert bad.json()["errors"][0]["field"] == field
        anonymous = await scoring.get("/v1/segments", headers={"X-CRM-Min-Position": future})
        assert anonymous.status_code == 401  # not held: a wait is for callers with a key
        assert anonymous.headers["x-crm-position"] == "not-reached"
