"""What a running reporting service holds (its settings and the answers it keeps beside the
shared parts), and the dependency its routes take: `res: Reporting`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from services.reporting.memo import AnswerMemo
from services.reporting.settings import ReportingSettings
from shared.service import Resources, resources


@dataclass
class ReportingCaches:
    """Kept between requests on this instance."""

    # KPI answers under the read-model version they were computed at (memo.py).
    answers: AnswerMemo


def reporting_caches(settings: ReportingSettings) -> ReportingCaches:
    return ReportingCaches(AnswerMemo(settings.reporting_answer_memo_mb * 2**20))


ReportingResources = Resources[ReportingSettings, ReportingCaches]
Reporting = Annotated[ReportingResources, Depends(resources)]
