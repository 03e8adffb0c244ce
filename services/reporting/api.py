"""Reporting's HTTP routes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from services.reporting.store import daily_kpis
from shared.http import ErrorBody
from shared.service import Resources, resources

router = APIRouter(prefix="/v1", tags=["kpis"])

MAX_DAYS = 3 * 366


class DailyKpi(BaseModel):
    day: date
    revenue: Decimal = Field(description="Net of refunds, reporting currency.")
    orders: int
    buyers: int = Field(description="Distinct customers who bought that day (exact).")


@router.get(
    "/kpis/daily",
    response_model=list[DailyKpi],
    summary="Revenue, orders and distinct buyers per day",
    responses={422: {"model": ErrorBody, "description": "Bad or too long date range."}},
)
async def get_daily(
    res: Annotated[Resources, Depends(resources)],
    first: Annotated[date, Query(alias="from", examples=["2026-11-01"])],
    last: Annotated[date, Query(alias="to", examples=["2026-11-30"])],
) -> list[DailyKpi]:
    if last < first:
        raise HTTPException(
            422,
            {
                "detail": "invalid range",
                "errors": [{"field": "query.to", "message": "before 'from'"}],
            },
        )
    if (last - first).days >= MAX_DAYS:
        raise HTTPException(
            422,
            {
                "detail": "invalid range",
                "errors": [
                    {"field": "query.to", "message": f"a range covers at most {MAX_DAYS} days"}
                ],
            },
        )
    return [DailyKpi(**row) for row in await daily_kpis(res.pool, first, last)]
