"""Features derived from the event aggregates, and the rule baseline.

Pure NumPy over a mapping of column -> array, so the batch builder (a DataFrame's columns) and the online
builder (arrays for one or many leads) run literally the same code here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from leadscore.config import BaselineParams
from leadscore.features.attributes import member
from leadscore.features.spec import FeatureSpec


def _col(cols: Mapping[str, np.ndarray], name: str, n: int) -> np.ndarray:
    return np.asarray(cols[name], dtype=float) if name in cols else np.zeros(n)


def _window_at_least(spec: FeatureSpec, days: int) -> int:
    """The smallest configured window of at least ``days`` (or the largest there is)."""
    wider = [w for w in spec.windows if w >= days]
    return min(wider) if wider else spec.max_window


def derive_features(cols: Mapping[str, np.ndarray], spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Return the derived columns (``spec.derived``) from the event aggregates in ``cols``."""
    n = len(cols["events_total"])
    active = spec.active_day_features
    # A return visit: web activity on two or more distinct days within the shortest active-day window.
    rv = (_col(cols, active[0][0], n) >= 2).astype(float) if active else np.zeros(n)
    w = spec.max_window
    opens = _col(cols, spec.count_name("email_open", w), n)
    clicks = _col(cols, spec.count_name("email_click", w), n)
    with np.errstate(divide="ignore", invalid="ignore"):
        ctr = np.where(opens > 0, clicks / np.where(opens > 0, opens, 1.0), np.nan)
    w30 = _window_at_least(spec, 30)
    high = np.zeros(n)
    for et in spec.high_intent_types:
        high = high + _col(cols, spec.count_name(et, w30), n)
    unsub_name = spec.recency_name("unsubscribe")
    unsub = (
        (~np.isnan(np.asarray(cols[unsub_name], dtype=float))).astype(float)
        if unsub_name in cols
        else np.zeros(n)
    )
    return {"return_visit_7d": rv, "email_click_rate": ctr, "high_intent_30d": high, "unsubscribed": unsub}


def rule_score(cols: Mapping[str, np.ndarray], spec: FeatureSpec, params: BaselineParams) -> np.ndarray:
    """Today's point-based lead score (the baseline every report shows next to the model).

    Reads the attribute columns and the ``params.window_days`` counts; returns points per row.
    """
    pts = params.points
    n = len(cols["events_total"])
    w = _window_at_least(spec, params.window_days)

    def seen(event_type: str) -> np.ndarray:
        return (_col(cols, spec.count_name(event_type, w), n) > 0).astype(float)

    seniority = np.asarray(cols["seniority"], dtype=object)
    email = np.asarray(cols["email_type"], dtype=object)
    score = (
        pts.size_sweet_spot * _col(cols, "in_sweet_spot", n)
        + pts.senior_title * member(seniority, frozenset(params.senior_levels))
        + pts.pricing_view * seen("pricing_view")
        + pts.content_download * seen("content_download")
        + pts.webinar_attend * seen("webinar_attend")
        + pts.demo_view * seen("demo_view")
        + pts.email_opens_3plus * (_col(cols, spec.count_name("email_open", w), n) >= 3).astype(float)
        + pts.personal_email * (email == "personal").astype(float)
        + pts.student * _col(cols, "is_student", n)
        + pts.competitor * (email == "competitor").astype(float)
    )
    return score
