"""Complaints' HTTP routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel

from services.complaints.store import load_complaint
from shared.http import ErrorBody
from shared.service import Resources, resources

router = APIRouter(prefix="/v1", tags=["complaints"])

ComplaintId = Annotated[str, Path(min_length=1, max_length=128, examples=["c-1001"])]


class ComplaintView(BaseModel):
    complaint_id: str
    customer_id: str
    status: str
    channel: str | None
    category: str | None
    priority: str | None
    product: str | None
    opened_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    escalation_level: int
    feedback_score: int | None


@router.get(
    "/complaints/{complaint_id}",
    response_model=ComplaintView,
    summary="One complaint's state",
    responses={404: {"model": ErrorBody, "description": "Unknown complaint."}},
)
async def get_complaint(
    complaint_id: ComplaintId, res: Annotated[Resources, Depends(resources)]
) -> ComplaintView:
    found = await load_complaint(res.pool, complaint_id)
    if found is None:
        raise HTTPException(404, f"no complaint '{complaint_id}'")
    return ComplaintView(**found)
