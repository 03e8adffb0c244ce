"""Every operation the client calls, by its OpenAPI operationId: the service that serves it,
its method and its path. The client makes no request outside this table, and a test checks
the table against the services' OpenAPI documents, so a renamed or moved operation fails the
build instead of the client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

Service = Literal["ingest", "scoring", "complaints", "reporting"]

# The agents' commands on a complaint: POST /v1/complaints/{complaint_id}/<command>.
COMMANDS = (
    "listen",
    "thank",
    "apologise",
    "promise",
    "respond",
    "customer_reply",
    "wait",
    "propose",
    "escalate",
    "resolve",
    "follow_up",
    "reopen",
    "close",
    "feedback",
)


@dataclass(frozen=True)
class Operation:
    operation_id: str  # unique within its service
    service: Service
    method: Literal["GET", "POST", "PATCH"]
    path: str  # the OpenAPI path template
    name: str = ""  # the client's key for it, where two services use the same operationId

    @property
    def key(self) -> str:
        return self.name or self.operation_id

    def url_path(self, **parameters: str) -> str:
        """The path with its parameters filled in, each percent-encoded as one segment."""
        return self.path.format(**{k: quote(v, safe="") for k, v in parameters.items()})


def _table(*operations: Operation) -> dict[str, Operation]:
    table = {o.key: o for o in operations}
    assert len(table) == len(operations), "two operations under one key"
    return table


OPERATIONS: dict[str, Operation] = _table(
    Operation("post_events", "ingest", "POST", "/v1/events"),
    Operation("get_customer", "scoring", "GET", "/v1/customers/{customer_id}"),
    Operation("get_rfm", "scoring", "GET", "/v1/customers/{customer_id}/rfm"),
    Operation("get_score", "scoring", "GET", "/v1/customers/{customer_id}/score"),
    Operation("list_customers", "scoring", "GET", "/v1/customers"),
    Operation("list_leads", "scoring", "GET", "/v1/leads"),
    Operation("get_model", "scoring", "GET", "/v1/models/clv"),
    Operation("fit_model", "scoring", "POST", "/v1/models/clv/fit"),
    Operation("get_complaint", "complaints", "GET", "/v1/complaints/{complaint_id}"),
    Operation("list_complaints", "complaints", "GET", "/v1/complaints"),
    Operation("get_step_durations", "complaints", "GET", "/v1/complaints/steps/durations"),
    Operation("get_alerts", "complaints", "GET", "/v1/alerts"),
    *(
        Operation(
            f"complaint_{command}",
            "complaints",
            "POST",
            f"/v1/complaints/{{complaint_id}}/{command}",
        )
        for command in COMMANDS
    ),
    Operation("get_kpis", "reporting", "GET", "/v1/kpis"),
    Operation("get_summary", "reporting", "GET", "/v1/kpis/summary"),
    Operation("get_daily", "reporting", "GET", "/v1/kpis/daily"),
    # complaints has its own get_alerts (alerts with their handling stage)
    Operation("get_alerts", "reporting", "GET", "/v1/alerts", name="get_crisis_alerts"),
)
