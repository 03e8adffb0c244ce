"""Scoring's settings (environment variables; defaults documented in the README)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PrivateAttr

from services.scoring.customer_classes import (
    DEFAULT_TIER_RULES,
    ChurnRiskConfig,
    LifecycleConfig,
    RhythmConfig,
    TierConfig,
    TierRule,
    ValueClassConfig,
)
from services.scoring.population import ScoringConfig
from shared.settings import CommonSettings


class ScoringSettings(CommonSettings):
    scoring_time_unit: Literal["day", "week"] = Field(
        default="week", description="Time unit of the lifetime-value models."
    )
    scoring_horizon_weeks: int = Field(
        default=52, ge=1, le=520, description="Predictive CLV horizon, weeks (any model unit)."
    )
    scoring_discount_rate: float = Field(
        default=0.0018, ge=0, lt=1, description="Discount rate per time unit (10%/yr weekly)."
    )
    scoring_margin: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Margin share of revenue: CLV, and the value weighed against the cost to "
        "serve in the value class (1.0: revenue).",
    )
    scoring_expected_lifespan_weeks: float = Field(
        default=156,
        gt=0,
        description="Simple CLV lifespan, weeks, until the base has 20 ended lifetimes.",
    )
    scoring_min_observation_days: float = Field(
        default=90,
        ge=7,
        description="Simple CLV: a customer's own rate and value count after this many days.",
    )
    scoring_count_zero_value_orders: bool = Field(
        default=False, description="Orders of value 0 count as purchases (free samples)."
    )
    scoring_rescore_seconds: float = Field(
        default=300, ge=1, description="Period of the re-score that moves recency with time."
    )
    scoring_rescore_timeout_seconds: float = Field(
        default=3600,
        gt=0,
        description="How long one statement of a re-score may run (it has a connection of its "
        "own: requests keep the pool's 60 s); at a million customers the population's load "
        "takes tens of seconds.",
    )
    scoring_refit_seconds: float = Field(
        default=86_400, ge=1, description="Period of the lifetime-value model refit."
    )
    scoring_trend_window_days: int = Field(
        default=90, ge=1, description="Window compared with the one before it for trends."
    )
    scoring_silent_after_gaps: float = Field(
        default=3.0,
        gt=0,
        description="Silent for more than this many own expected gaps: not gold or developing.",
    )
    scoring_decline_after_gaps: float = Field(
        default=2.0,
        gt=0,
        description="Silent for more than this many own expected gaps: lifecycle decline.",
    )
    scoring_prior_gap_days: float = Field(
        default=60.0,
        gt=0,
        description="Expected gap of a one-time buyer; prior the own gap is shrunk towards.",
    )
    scoring_prior_gap_weight: float = Field(
        default=1.0, gt=0, description="Weight of the prior gap, in gaps."
    )
    scoring_min_window_purchases: float = Field(
        default=2.0,
        ge=0,
        description="Trend windows judged only when the own rhythm expects this many purchases.",
    )
    scoring_cost_per_complaint: float = Field(
        default=25,
        ge=0,
        description="Cost to serve one complaint: about an hour of an agent at 25 an hour.",
    )
    scoring_cost_per_interaction: float = Field(
        default=2, ge=0, description="Cost to serve one interaction: about five agent minutes."
    )
    scoring_mvc_top_share: float = Field(
        default=0.2, gt=0, le=1, description="Share of customers, by net value, that is MVC."
    )
    scoring_tier_rules: list[TierRule] | None = Field(
        default=None,
        description="Tier rules as JSON, first match wins, e.g. "
        '[{"tier":"gold","min_recency":3,"min_frequency":4,"min_monetary":4}]',
    )

    # Built at the first call: a score read asks for it, and building it was 40 us of each.
    _config: ScoringConfig | None = PrivateAttr(default=None)

    def scoring_config(self) -> ScoringConfig:
        if self._config is None:
            self._config = self._build_config()
        return self._config

    def _build_config(self) -> ScoringConfig:
        rhythm = RhythmConfig(
            prior_gap_days=self.scoring_prior_gap_days,
            prior_weight=self.scoring_prior_gap_weight,
        )
        rules = tuple(self.scoring_tier_rules) if self.scoring_tier_rules else DEFAULT_TIER_RULES
        tier = TierConfig(
            rules=rules,
            churn_after_days=self.churn_after_days,
            silent_after_gaps=self.scoring_silent_after_gaps,
            rhythm=rhythm,
        )
        return ScoringConfig(
            time_unit=self.scoring_time_unit,
            horizon_weeks=self.scoring_horizon_weeks,
            discount_rate=self.scoring_discount_rate,
            margin=self.scoring_margin,
            expected_lifespan_weeks=self.scoring_expected_lifespan_weeks,
            min_observation_days=self.scoring_min_observation_days,
            tier=tier,
            value=ValueClassConfig(
                cost_per_complaint=self.scoring_cost_per_complaint,
                cost_per_interaction=self.scoring_cost_per_interaction,
                mvc_top_share=self.scoring_mvc_top_share,
            ),
            lifecycle=LifecycleConfig(
                churn_after_days=self.churn_after_days,
                decline_after_gaps=self.scoring_decline_after_gaps,
                trend_window_days=self.scoring_trend_window_days,
                min_window_purchases=self.scoring_min_window_purchases,
                rhythm=rhythm,
            ),
            churn=ChurnRiskConfig(),
        )
