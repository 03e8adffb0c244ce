"""No secrets and no personal data in the logs: the four services run at DEBUG while keys are
issued, used, mistyped and refused, and personal data flows through every path (accepted,
rejected, dead-lettered, agent commands). Their logs then hold neither a token nor a name,
an e-mail address, a phone number or free text; customers appear only as ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from shared.events import Topic
from shared.settings import CommonSettings
from tests.e2e.conftest import Stack
from tests.helpers import (
    TEST_SIGNING_SECRET,
    TEST_TOKEN,
    api_client,
    event,
    mistyped,
    produce_raw,
    read_topic,
    wait_until,
)
from tooling import cli

pytestmark = [pytest.mark.e2e]

NAME, EMAIL, PHONE = "Zhang Xiuying", "zhang.xiuying@example.com", "+86 138 0013 8000"
TEXT = "Zhang Xiuying of 88 Harbour Road says the invoice doubled"
SECRETS_AND_PERSONAL = (NAME, EMAIL, PHONE, TEXT, "Harbour Road", "invoice doubled")


@pytest.fixture
def stack_env() -> dict[str, str]:
    return {"LOG_LEVEL": "DEBUG"}


async def test_logs_hold_no_secrets_and_no_personal_data(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = CommonSettings(
        database_url=stack.database_url,
        kafka_bootstrap_servers=stack.broker.bootstrap,
        key_signing_secret=TEST_SIGNING_SECRET,
    )
    await cli.keys_create(
        settings, "agent", ["events:write", "customers:read", "complaints:act"], None
    )
    token = capsys.readouterr().out.strip().splitlines()[-1]
    key_id = token.split("_", 2)[1]
    key = {"Authorization": f"Bearer {token}"}
    at = datetime.now(UTC) - timedelta(minutes=5)
    history = [
        event(
            "crm.customer.registered",
            "cust-audit",
            {"name": NAME, "email": EMAIL, "phone": PHONE},
            time=at,
        ),
        event(
            "crm.complaint.opened",
            "cust-audit",
            {
                "complaint_id": "cmp-audit",
                "channel": "email",
                "category": "price_billing",
                "description": TEXT,
            },
            time=at + timedelta(minutes=1),
        ),
    ]
    async with api_client(timeout=10) as client:
        ingest, scoring, complaints = (stack.url(n) for n in ("ingest", "scoring", "complaints"))

        async def accepted() -> bool:
            response = await client.post(f"{ingest}/v1/events", json=history, headers=key)
            return response.status_code == 202

        await wait_until(accepted, timeout=60, what="the issued key at ingest")
        wrong = {"Authorization": f"Bearer {mistyped(token)}"}
        assert (await client.get(f"{scoring}/v1/segments", headers=wrong)).status_code == 401
        forbidden = await client.get(f"{stack.url('reporting')}/v1/kpis/metrics", headers=key)
        assert forbidden.status_code in (401, 403)  # 401 until reporting has folded the key
        bad = event("crm.customer.updated", "cust-audit", {"name": NAME, "email": PHONE})
        assert (await client.post(f"{ingest}/v1/events", json=bad)).status_code == 422
        raw = orjson.dumps({"type": "crm.customer.registered", "data": {"name": NAME}})
        await produce_raw(stack.broker.bootstrap, Topic.CUSTOMERS, [raw], key=b"cust-audit")

        async def folded() -> bool:
            customer = await client.get(f"{scoring}/v1/customers/cust-audit", headers=key)
            complaint = await client.get(f"{complaints}/v1/complaints/cmp-audit", headers=key)
            return customer.status_code == 200 and complaint.status_code == 200

        await wait_until(folded, timeout=60, what="the customer and complaint folded")
        respond = await client.post(
            f"{complaints}/v1/complaints/cmp-audit/respond",
            json={"message": f"Dear {NAME}, we call you at {PHONE}"},
            headers=key,
        )
        assert respond.status_code == 202, respond.text

        async def dead_lettered() -> bool:
            records = await read_topic(stack.broker.bootstrap, Topic.DEADLETTER, timeout=2)
            return any(NAME.encode() in (r.value or b"") for r in records)

        await wait_until(dead_lettered, timeout=60, what="the malformed record dead-lettered")
    for service in stack.services.values():
        service.stop()  # flushes the logs
    logs = {
        p.name: p.read_text(errors="replace")
        for p in stack.services["ingest"].log_dir.glob("*.log")
    }
    assert set(logs) >= {"ingest.log", "scoring.log", "complaints.log", "reporting.log"}
    refusal = '"message":"request refused: key not valid"'
    assert refusal in logs["scoring.log"], "the refused key is not in the audit log"
    assert key_id in logs["scoring.log"], "the refused key's id is not in the audit log"
    secret = token.split("_", 2)[2]  # the secret itself may hold "_"
    assert len(secret) == 43
    for name, text in logs.items():
        assert secret not in text, f"{name} logs an API key's secret"
        assert TEST_TOKEN not in text, f"{name} logs the admin token"
        assert TEST_SIGNING_SECRET not in text, f"{name} logs the key signing secret"
        for value in SECRETS_AND_PERSONAL:
            assert value not in text, f"{name} logs personal data: {value!r}"
