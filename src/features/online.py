"""Online feature builder: the same spec as ``batch``, in NumPy, for one lead or a batch of payloads.

The API hands over events as flat arrays (all leads of a request concatenated, with a lead index), so a
request of 1 or 1,000 leads costs a fixed number of vectorised NumPy calls rather than a Python loop per
event. ``tests/unit/test_parity.py`` proves it equals the batch builder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from leadscore.config import BaselineParams
from leadscore.data.contract import STAGE_RANK
from leadscore.features.attributes import AttributeMemo, attributes_from_columns
from leadscore.features.derive import derive_features, rule_score
from leadscore.features.spec import SECONDS_PER_DAY, FeatureSpec

#: Raw lead + account columns ``OnlineFeatureBuilder.build`` reads (the account's industry as ``_industry``).
RAW_ATTRIBUTE_COLUMNS: tuple[str, ...] = (
    "job_title",
    "seniority",
    "department",
    "country",
    "lead_source",
    "email_domain",
    "_industry",
    "employees",
    "annual_revenue",
    "tech_stack",
)


@dataclass(frozen=True)
class EventArrays:
    """Events of ``n_leads`` leads: ``lead`` is the row index of the owning lead (0..n_leads-1),
    ``ts`` epoch seconds (int64), ``type_code`` the index in ``spec.event_types`` (-1: not in the spec)."""

    lead: np.ndarray
    ts: np.ndarray
    type_code: np.ndarray


@dataclass(frozen=True)
class StageArrays:
    """Stage-history rows of ``n_leads`` leads: ``lead`` row index, ``ts`` epoch seconds, ``stage`` names."""

    lead: np.ndarray
    ts: np.ndarray
    stage: np.ndarray


class OnlineFeatureBuilder:
    """Precomputes spec lookups once (at model load), then builds features per request."""

    def __init__(self, spec: FeatureSpec, baseline: BaselineParams) -> None:
        self.spec = spec
        self.baseline = baseline
        self.type_index_ = {t: i for i, t in enumerate(spec.event_types)}
        n_types = len(spec.event_types)
        self.n_types_ = n_types
        self.decay_weight_ = np.array([spec.params.decay_weights.get(t, 0.0) for t in spec.event_types])
        self.decay_rate_ = math.log(2.0) / (spec.params.decay_half_life_days * SECONDS_PER_DAY)
        self.is_web_ = np.array([t in spec.params.web_types for t in spec.event_types])
        self.count_cols_ = [(n, self.type_index_[t], w) for n, t, w in spec.count_features]
        self.recency_cols_ = [(n, self.type_index_[t]) for n, t in spec.recency_features]
        # Text -> attribute caches shared by all requests on this bundle (the same titles come back).
        self.memo_: AttributeMemo = {}

    def type_codes(self, event_types: list[str] | np.ndarray) -> np.ndarray:
        """Map event type names to codes; names outside the spec map to -1 (ignored)."""
        get = self.type_index_.get
        return np.fromiter((get(t, -1) for t in event_types), dtype=np.int64, count=len(event_types))

    def event_aggregates(self, as_of: np.ndarray, events: EventArrays) -> dict[str, np.ndarray]:
        """``spec.event_aggregates`` for each lead at its ``as_of`` (epoch seconds, shape (n,))."""
        n, t = len(as_of), self.n_types_
        age = as_of[events.lead] - events.ts
        # Point-in-time: only events strictly before as_of count, exactly as in the batch builder.
        keep = (age > 0) & (events.type_code >= 0)
        lead, code, age = events.lead[keep], events.type_code[keep], age[keep].astype(np.float64)
        key = lead * t + code
        out: dict[str, np.ndarray] = {}
        by_window: dict[int, np.ndarray] = {}
        for w in self.spec.windows:
            sel = age <= w * SECONDS_PER_DAY
            by_window[w] = np.bincount(key[sel], minlength=n * t).reshape(n, t).astype(float)
        for name, ti, w in self.count_cols_:
            out[name] = by_window[w][:, ti]
        last = np.full(n * t, np.inf)
        np.minimum.at(last, key, age)
        last = last.reshape(n, t) / SECONDS_PER_DAY
        any_last = last.min(axis=1)
        any_last[np.isinf(any_last)] = np.nan
        last[np.isinf(last)] = np.nan
        for name, ti in self.recency_cols_:
            out[name] = last[:, ti]
        out["days_since_last_event"] = any_last
        out["events_total"] = np.bincount(lead, minlength=n).astype(float)
        decay = self.decay_weight_[code] * np.exp(-self.decay_rate_ * age)
        out["engagement_decayed"] = np.bincount(lead, weights=decay, minlength=n)
        web = self.is_web_[code]
        day = events.ts[keep] // SECONDS_PER_DAY
        for name, w in self.spec.active_day_features:
            sel = web & (age <= w * SECONDS_PER_DAY)
            pairs = np.unique(lead[sel] * np.int64(1 << 32) + day[sel])
            out[name] = np.bincount(pairs >> 32, minlength=n).astype(float)
        return out

    def stage_aggregates(self, as_of: np.ndarray, stages: StageArrays) -> dict[str, np.ndarray]:
        """``spec.stage_aggregates`` from stage rows strictly before each lead's ``as_of``."""
        n = len(as_of)
        age = as_of[stages.lead] - stages.ts
        keep = age > 0
        lead, age, stage = stages.lead[keep], age[keep].astype(np.float64), stages.stage[keep]
        rank = np.fromiter((STAGE_RANK.get(s, 0) for s in stage), dtype=np.float64, count=len(stage))
        best = np.zeros(n)
        np.maximum.at(best, lead, rank)
        last = np.full(n, np.inf)
        np.minimum.at(last, lead, age)
        is_sql = stage == "sql"
        last_sql = np.full(n, np.inf)
        np.minimum.at(last_sql, lead[is_sql], age[is_sql])
        recycled = np.bincount(lead[stage == "recycled"], minlength=n).astype(float)
        last[np.isinf(last)] = np.nan
        last_sql[np.isinf(last_sql)] = np.nan
        return {
            "stage_rank": best,
            "days_since_stage_change": last / SECONDS_PER_DAY,
            "times_recycled": recycled,
            "days_since_sql": last_sql / SECONDS_PER_DAY,
        }

    def build(
        self,
        as_of: np.ndarray,
        created_at: np.ndarray,
        raw_attributes: dict[str, np.ndarray],
        events: EventArrays,
        stages: StageArrays,
        with_rule: bool = True,
    ) -> dict[str, np.ndarray]:
        """All model features + ``rule_score`` for n leads.

        ``as_of`` and ``created_at``: epoch seconds (n,); ``raw_attributes``: lead + account contract
        columns as object arrays (job_title, seniority, department, country, lead_source, email_domain,
        _industry, employees, annual_revenue, tech_stack). ``with_rule=False`` skips the rule baseline.
        """
        cols = self.event_aggregates(as_of, events)
        cols.update(self.stage_aggregates(as_of, stages))
        cols.update(attributes_from_columns(raw_attributes, self.spec.params, self.memo_))
        cols["lead_age_days"] = (as_of - created_at).astype(np.float64) / SECONDS_PER_DAY
        cols.update(derive_features(cols, self.spec))
        if with_rule:  # the baseline is for reports; the API skips it
            cols["rule_score"] = rule_score(cols, self.spec, self.baseline)
        return cols
