"""CrmClient: the services' operations as typed async methods on one httpx client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar

import httpx
from pydantic import BaseModel

from crm_client.errors import raise_for_problem
from crm_client.models import (
    Alert,
    AlertPage,
    ClvModel,
    CommandAccepted,
    Complaint,
    CrisisAlert,
    CrisisAlertPage,
    CustomerListItem,
    CustomerPage,
    CustomerScore,
    CustomerView,
    DailyKpi,
    KpiTable,
    LeadItem,
    LeadPage,
    QueueItem,
    QueuePage,
    Receipt,
    Rfm,
    StepDurations,
    Summary,
)
from crm_client.operations import COMMANDS, OPERATIONS, Service

# The header of a read that must include events already posted (their receipt).
MIN_POSITION_HEADER = "X-CRM-Min-Position"
CLOUDEVENT = "application/cloudevents+json"
CLOUDEVENT_BATCH = "application/cloudevents-batch+json"
DEFAULT_PORTS: dict[Service, int] = {
    "ingest": 8001,
    "scoring": 8002,
    "complaints": 8003,
    "reporting": 8004,
}

A = TypeVar("A", bound=BaseModel)
Item = TypeVar("Item", covariant=True)


class Page(Protocol[Item]):
    """A page of a cursor-paged list, as every list of the services answers."""

    @property
    def items(self) -> Sequence[Item]: ...

    @property
    def next_cursor(self) -> str | None: ...


async def every_item(page_at: Callable[[str | None], Awaitable[Page[Item]]]) -> AsyncIterator[Item]:
    """Every item of a cursor-paged list: page after page, following `next_cursor`."""
    cursor: str | None = None
    while True:
        page = await page_at(cursor)
        for item in page.items:
            yield item
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


Query = Mapping[str, str | int | float | bool | None]


class CrmClient:
    """The four services, each at its own base URL (by default those of `make run` on
    localhost), with one API key. Use it as an async context manager, or call `aclose()`.

    Every error answer raises `ProblemError` with the problem detail; reads take
    `min_position` (a receipt of `post_events`) to see those events applied."""

    def __init__(
        self,
        token: str,
        *,
        urls: Mapping[Service, str] | None = None,
        host: str = "http://127.0.0.1",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        given = dict(urls or {})
        self.urls: dict[Service, str] = {
            s: given.get(s, f"{host}:{port}").rstrip("/") for s, port in DEFAULT_PORTS.items()
        }
        self._http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> CrmClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- ingest --------------------------------------------------------------------------

    async def post_events(self, events: Sequence[Mapping[str, Any]]) -> Receipt:
        """Post CloudEvents as one batch (structured content mode): stored all or none."""
        response = await self._send(
            "post_events",
            content=_json(list(events)),
            headers={"Content-Type": CLOUDEVENT_BATCH},
        )
        return Receipt.model_validate(response.json())

    async def post_event(self, event: Mapping[str, Any]) -> Receipt:
        """Post one CloudEvent (structured content mode)."""
        response = await self._send(
            "post_events",
            content=_json(dict(event)),
            headers={"Content-Type": CLOUDEVENT},
        )
        return Receipt.model_validate(response.json())

    # ---- scoring -------------------------------------------------------------------------

    async def get_customer(
        self, customer_id: str, *, latest: int | None = None, min_position: str | None = None
    ) -> CustomerView:
        """The unified view of a customer."""
        return await self._read(
            CustomerView,
            "get_customer",
            {"customer_id": customer_id},
            {"latest": latest},
            min_position,
        )

    async def get_rfm(self, customer_id: str, *, min_position: str | None = None) -> Rfm:
        """A customer's recency, frequency and monetary value with their 1-5 scores."""
        return await self._read(Rfm, "get_rfm", {"customer_id": customer_id}, {}, min_position)

    async def get_score(
        self,
        customer_id: str,
        *,
        as_of: datetime | None = None,
        horizon_weeks: int | None = None,
        min_position: str | None = None,
    ) -> CustomerScore:
        """A customer's tier, value class, lifetime value and churn risk."""
        query = {"as_of": _text(as_of), "horizon_weeks": horizon_weeks}
        return await self._read(
            CustomerScore, "get_score", {"customer_id": customer_id}, query, min_position
        )

    async def list_customers_page(
        self,
        *,
        segment: str | None = None,
        tier: str | None = None,
        lifecycle: str | None = None,
        min_churn_risk: float | None = None,
        sort: Literal["clv", "churn_risk", "monetary", "recency"] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        min_position: str | None = None,
    ) -> CustomerPage:
        """One page of a campaign list: buyers by their latest scores, highest `sort` first
        (`lifecycle="prospect"`: customers with no purchase that counts, by id)."""
        query = {
            "segment": segment,
            "tier": tier,
            "lifecycle": lifecycle,
            "min_churn_risk": min_churn_risk,
            "sort": sort,
            "limit": limit,
            "cursor": cursor,
        }
        return await self._read(CustomerPage, "list_customers", {}, query, min_position)

    def list_customers(
        self,
        *,
        segment: str | None = None,
        tier: str | None = None,
        lifecycle: str | None = None,
        min_churn_risk: float | None = None,
        sort: Literal["clv", "churn_risk", "monetary", "recency"] | None = None,
        page_size: int | None = None,
        min_position: str | None = None,
    ) -> AsyncIterator[CustomerListItem]:
        """The whole campaign list, page after page (following `next_cursor`)."""

        async def page_at(cursor: str | None) -> Page[CustomerListItem]:
            return await self.list_customers_page(
                segment=segment,
                tier=tier,
                lifecycle=lifecycle,
                min_churn_risk=min_churn_risk,
                sort=sort,
                limit=page_size,
                cursor=cursor,
                min_position=min_position,
            )

        return every_item(page_at)

    async def list_leads_page(
        self,
        *,
        man_class: str | None = None,
        action: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        min_position: str | None = None,
    ) -> LeadPage:
        """One page of leads by customer id, with the MAN rule's action for each."""
        query = {"class": man_class, "action": action, "limit": limit, "cursor": cursor}
        return await self._read(LeadPage, "list_leads", {}, query, min_position)

    def list_leads(
        self,
        *,
        man_class: str | None = None,
        action: str | None = None,
        page_size: int | None = None,
        min_position: str | None = None,
    ) -> AsyncIterator[LeadItem]:
        """Every lead of a MAN class (`M+a+N`) or action (`pursue`), page after page."""

        async def page_at(cursor: str | None) -> Page[LeadItem]:
            return await self.list_leads_page(
                man_class=man_class,
                action=action,
                limit=page_size,
                cursor=cursor,
                min_position=min_position,
            )

        return every_item(page_at)

    async def get_clv_model(self) -> ClvModel:
        """The current lifetime-value model (404 ProblemError: none fitted yet)."""
        return await self._read(ClvModel, "get_model", {}, {}, None)

    async def fit_clv_model(
        self, *, as_of: date | datetime | None = None, time_unit: str | None = None
    ) -> ClvModel:
        """Fit BG/NBD and Gamma-Gamma now (an admin key; 409 ProblemError: too few customers)."""
        body = {"as_of": _text(as_of), "time_unit": time_unit}
        response = await self._send(
            "fit_model",
            content=_json({k: v for k, v in body.items() if v is not None}),
            headers={"Content-Type": "application/json"},
        )
        return ClvModel.model_validate(response.json())

    # ---- complaints ----------------------------------------------------------------------

    async def get_complaint(
        self, complaint_id: str, *, min_position: str | None = None
    ) -> Complaint:
        """A complaint: state, SLA clocks, steps and history."""
        return await self._read(
            Complaint, "get_complaint", {"complaint_id": complaint_id}, {}, min_position
        )

    async def list_complaints_page(
        self,
        *,
        status: str | None = None,
        breached: bool | None = None,
        due_before: datetime | None = None,
        priority: str | None = None,
        tier: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        min_position: str | None = None,
    ) -> QueuePage:
        """One page of the agents' queue, most urgent first."""
        query = {
            "status": status,
            "breached": breached,
            "due_before": _text(due_before),
            "priority": priority,
            "tier": tier,
            "limit": limit,
            "cursor": cursor,
        }
        return await self._read(QueuePage, "list_complaints", {}, query, min_position)

    def list_complaints(
        self,
        *,
        status: str | None = None,
        breached: bool | None = None,
        due_before: datetime | None = None,
        priority: str | None = None,
        tier: str | None = None,
        page_size: int | None = None,
        min_position: str | None = None,
    ) -> AsyncIterator[QueueItem]:
        """The whole queue, most urgent first, page after page (following `next_cursor`)."""

        async def page_at(cursor: str | None) -> Page[QueueItem]:
            return await self.list_complaints_page(
                status=status,
                breached=breached,
                due_before=due_before,
                priority=priority,
                tier=tier,
                limit=page_size,
                cursor=cursor,
                min_position=min_position,
            )

        return every_item(page_at)

    def list_alerts(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        stage: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Alert]:
        """Every crisis alert, latest window first, page after page."""

        async def page_at(cursor: str | None) -> Page[Alert]:
            query = {
                "from": _text(start),
                "to": _text(end),
                "stage": stage,
                "limit": page_size,
                "cursor": cursor,
            }
            return await self._read(AlertPage, "get_alerts", {}, query, None)

        return every_item(page_at)

    async def command(self, complaint_id: str, command: str, **fields: Any) -> CommandAccepted:
        """An agent's command on a complaint (`respond`, `follow_up`, `close`, ...: see
        COMMANDS) with the body's fields; refused ones raise ProblemError (409: not now,
        `errors[0].field` says what stands in the way)."""
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}; one of {', '.join(COMMANDS)}")
        response = await self._send(
            f"complaint_{command}",
            {"complaint_id": complaint_id},
            content=_json(fields),
            headers={"Content-Type": "application/json"},
        )
        return CommandAccepted.model_validate(response.json())

    async def get_step_durations(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        clock: Literal["business", "wall"] | None = None,
    ) -> StepDurations:
        """How long each handling step took over [start, end)."""
        query = {"from": _text(start), "to": _text(end), "clock": clock}
        return await self._read(StepDurations, "get_step_durations", {}, query, None)

    # ---- reporting -----------------------------------------------------------------------

    async def get_kpis(
        self,
        metrics: Sequence[str],
        *,
        start: date | None = None,
        end: date | None = None,
        granularity: Literal["day", "week", "month"] | None = None,
        by: str | None = None,
        min_position: str | None = None,
    ) -> KpiTable:
        """KPIs over a period, per day, week or month, optionally by a dimension."""
        query = {
            "metrics": ",".join(metrics),
            "from": _text(start),
            "to": _text(end),
            "granularity": granularity,
            "by": by,
        }
        return await self._read(KpiTable, "get_kpis", {}, query, min_position)

    async def get_summary(
        self,
        *,
        period: Literal["day", "week", "month"] | None = None,
        day: date | None = None,
        min_position: str | None = None,
    ) -> Summary:
        """The dashboard's cards: each KPI of the period against the previous one."""
        query = {"period": period, "date": _text(day)}
        return await self._read(Summary, "get_summary", {}, query, min_position)

    async def get_daily(
        self, start: date, end: date, *, min_position: str | None = None
    ) -> list[DailyKpi]:
        """Revenue, orders and buyers per day, from `start` to `end` included."""
        query = {"from": start.isoformat(), "to": end.isoformat()}
        response = await self._send("get_daily", params=_params(query), min_position=min_position)
        return [DailyKpi.model_validate(row) for row in response.json()]

    async def list_crisis_alerts_page(
        self,
        *,
        status: Literal["open", "all"] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        min_position: str | None = None,
    ) -> CrisisAlertPage:
        """One page of reporting's crisis alerts, newest first: the open ones (the latest of
        each series whose window ended within REPORTING_CRISIS_OPEN_HOURS) or all."""
        query = {"status": status, "limit": limit, "cursor": cursor}
        return await self._read(CrisisAlertPage, "get_crisis_alerts", {}, query, min_position)

    def list_crisis_alerts(
        self,
        *,
        status: Literal["open", "all"] | None = None,
        page_size: int | None = None,
        min_position: str | None = None,
    ) -> AsyncIterator[CrisisAlert]:
        """Reporting's crisis alerts, newest first, page after page."""

        async def page_at(cursor: str | None) -> Page[CrisisAlert]:
            return await self.list_crisis_alerts_page(
                status=status, limit=page_size, cursor=cursor, min_position=min_position
            )

        return every_item(page_at)

    # ---- transport -----------------------------------------------------------------------

    async def _read(
        self,
        answer: type[A],
        operation_id: str,
        path: Mapping[str, str],
        query: Query,
        min_position: str | None,
    ) -> A:
        response = await self._send(
            operation_id, path, params=_params(query), min_position=min_position
        )
        return answer.model_validate(response.json())

    async def _send(
        self,
        operation_id: str,
        path: Mapping[str, str] | None = None,
        *,
        min_position: str | None = None,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> httpx.Response:
        operation = OPERATIONS[operation_id]
        url = self.urls[operation.service] + operation.url_path(**(path or {}))
        sent = dict(headers or {})
        if min_position is not None:
            sent[MIN_POSITION_HEADER] = min_position
        response = await self._http.request(operation.method, url, headers=sent, **options)
        raise_for_problem(response)
        return response


def _params(query: Query) -> dict[str, str | int | float | bool]:
    """The query without the parameters left out; booleans as the services read them."""
    return {
        k: ("true" if v else "false") if isinstance(v, bool) else v
        for k, v in query.items()
        if v is not None
    }


def _json(value: Any) -> bytes:
    """JSON text; dates, times and decimals (amounts) as the events' schemas take them."""
    return json.dumps(value, default=_as_json).encode()


def _as_json(value: Any) -> str:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _text(value: Any) -> Any:
    """Dates and times as ISO 8601 text (query parameters, JSON bodies); the rest as given."""
    return value.isoformat() if isinstance(value, date | datetime) else value
