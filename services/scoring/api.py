"""Scoring's HTTP routes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from services.scoring.store import load_summaries
from shared.events import CUSTOMER_ID_PATTERN
from shared.http import ErrorBody
from shared.service import Resources, resources

router = APIRouter(prefix="/v1", tags=["customers"])

CustomerId = Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN, examples=["customer-42"])]


class Rfm(BaseModel):
    customer_id: str = Field(examples=["customer-42"])
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    recency_days: float | None = Field(description="Days since the last purchase.")
    frequency: int = Field(description="Number of purchases.")
    monetary: Decimal = Field(description="Total spent, net of refunds, reporting currency.")


@router.get(
    "/customers/{customer_id}/rfm",
    response_model=Rfm,
    summary="Recency, frequency and monetary value of one customer",
    responses={404: {"model": ErrorBody, "description": "No purchase of this customer seen."}},
)
async def get_rfm(customer_id: CustomerId, res: Annotated[Resources, Depends(resources)]) -> Rfm:
    found = (await load_summaries(res.pool, [customer_id])).get(customer_id)
    if found is None:
        raise HTTPException(404, f"no purchases of customer '{customer_id}'")
    recency = None
    if found.last_purchase_at is not None:
        recency = (datetime.now(UTC) - found.last_purchase_at).total_seconds() / 86_400
    return Rfm(
        customer_id=customer_id,
        first_purchase_at=found.first_purchase_at,
        last_purchase_at=found.last_purchase_at,
        recency_days=recency,
        frequency=found.purchase_count,
        monetary=found.total_spent,
    )
