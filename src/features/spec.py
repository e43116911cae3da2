"""The declarative feature spec, built once from ``params.features``.

Both executors (``batch`` over SQL, ``online`` over NumPy) read the same ``FeatureSpec``, so a feature
exists in exactly one place: its name and definition here, its two executions in the executors, and a
parity test that proves they agree.

Point-in-time rule shared by both executors: at snapshot time ``t`` an event counts only if
``ts < t`` (strictly before); a window of ``w`` days holds events with ``t - w days <= ts < t``.
Timestamps are whole seconds (the loader floors them), so these comparisons are exact in both engines.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Final

from leadscore.config import FeatureParams

SECONDS_PER_DAY: Final = 86400

#: Categorical model inputs (LightGBM native categoricals; vocabularies are stored in the bundle).
CATEGORICAL: Final = (
    "industry",
    "country",
    "lead_source",
    "seniority",
    "department",
    "email_type",
    "size_band",
)

#: Lead / account attributes used as numeric features.
ATTRIBUTE_NUMERIC: Final = (
    "employees",
    "annual_revenue",
    "tech_stack_size",
    "in_sweet_spot",
    "target_industry",
    "is_student",
    "lead_age_days",
)


@dataclass(frozen=True)
class FeatureSpec:
    """What to compute, in a fixed column order; derived from ``FeatureParams``.

    The column lists are computed once per spec (``cached_property``): the API's one-lead path reads
    them on every request.
    """

    params: FeatureParams

    @property
    def event_types(self) -> tuple[str, ...]:
        return self.params.event_types

    @cached_property
    def windows(self) -> tuple[int, ...]:
        return tuple(sorted(self.params.windows_days))

    @cached_property
    def max_window(self) -> int:
        return max(self.params.windows_days)

    def count_name(self, event_type: str, window: int) -> str:
        return f"cnt_{event_type}_{window}d"

    def recency_name(self, event_type: str) -> str:
        return f"days_since_last_{event_type}"

    def active_days_name(self, window: int) -> str:
        return f"web_active_days_{window}d"

    @cached_property
    def count_features(self) -> tuple[tuple[str, str, int], ...]:
        """(name, event_type, window) for every windowed count."""
        return tuple((self.count_name(et, w), et, w) for et in self.params.count_types for w in self.windows)

    @cached_property
    def recency_features(self) -> tuple[tuple[str, str], ...]:
        return tuple((self.recency_name(et), et) for et in self.params.recency_types)

    @cached_property
    def active_day_features(self) -> tuple[tuple[str, int], ...]:
        return tuple((self.active_days_name(w), w) for w in sorted(self.params.active_day_windows))

    @cached_property
    def event_aggregates(self) -> tuple[str, ...]:
        """Columns the executors compute from events (before derivation)."""
        return (
            *(n for n, _, _ in self.count_features),
            *(n for n, _ in self.recency_features),
            "days_since_last_event",
            "events_total",
            "engagement_decayed",
            *(n for n, _ in self.active_day_features),
        )

    @property
    def stage_aggregates(self) -> tuple[str, ...]:
        """Columns computed from the stage history strictly before t (where the lead is in the funnel)."""
        return ("stage_rank", "days_since_stage_change", "times_recycled", "days_since_sql")

    @property
    def derived(self) -> tuple[str, ...]:
        """Columns computed from the aggregates by ``derive.derive_features`` (shared code)."""
        return ("return_visit_7d", "email_click_rate", "high_intent_30d", "unsubscribed")

    @cached_property
    def numeric(self) -> tuple[str, ...]:
        return (*self.event_aggregates, *self.stage_aggregates, *self.derived, *ATTRIBUTE_NUMERIC)

    @property
    def categorical(self) -> tuple[str, ...]:
        return CATEGORICAL

    @cached_property
    def model_features(self) -> tuple[str, ...]:
        """The model's input columns, in order."""
        return (*self.numeric, *self.categorical)

    @cached_property
    def high_intent_types(self) -> tuple[str, ...]:
        known = set(self.params.count_types)
        return tuple(t for t in ("pricing_view", "demo_view", "demo_request", "trial_signup") if t in known)
