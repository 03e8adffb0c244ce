"""A typed Python client of the CRM analytics services, on httpx.

    async with CrmClient(token) as crm:
        receipt = await crm.post_events([purchase])
        view = await crm.get_customer("customer-42", min_position=receipt.receipt)
        async for complaint in crm.list_complaints(breached=True):
            ...

Its methods call the services' operations by their OpenAPI operationId (OPERATIONS), and
their answers are the pydantic models in `crm_client.models`.
"""

from crm_client.client import MIN_POSITION_HEADER, CrmClient
from crm_client.errors import FieldError, Problem, ProblemError
from crm_client.models import (
    Alert,
    ClvModel,
    CommandAccepted,
    Complaint,
    CrisisAlert,
    CustomerListItem,
    CustomerScore,
    CustomerView,
    DailyKpi,
    KpiRow,
    KpiTable,
    LeadItem,
    QueueItem,
    Receipt,
    Rfm,
    StepDurations,
    Summary,
)
from crm_client.operations import COMMANDS, OPERATIONS, Operation

__all__ = [
    "COMMANDS",
    "MIN_POSITION_HEADER",
    "OPERATIONS",
    "Alert",
    "ClvModel",
    "CommandAccepted",
    "Complaint",
    "CrisisAlert",
    "CrmClient",
    "CustomerListItem",
    "CustomerScore",
    "CustomerView",
    "DailyKpi",
    "FieldError",
    "KpiRow",
    "KpiTable",
    "LeadItem",
    "Operation",
    "Problem",
    "ProblemError",
    "QueueItem",
    "Receipt",
    "Rfm",
    "StepDurations",
    "Summary",
]
