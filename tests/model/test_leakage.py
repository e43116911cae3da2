"""The leakage guard: columns filled in after the outcome are flagged with evidence and excluded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.config import LeakageParams
from leadscore.models.leakage import (
    guard,
    name_match,
    single_column_auc,
    target_rate_oof,
    to_markdown,
)

PARAMS = LeakageParams()


def frame(n: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, dict[str, str], np.ndarray]:
    """Honest columns (weak signal, noise, a many-valued category) and planted leaks of each kind."""
    rng = np.random.default_rng(seed)
    honest = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(honest - 0.5)))).astype(int)
    df = pd.DataFrame(
        {
            "web_visits": honest + rng.normal(0, 1, n),
            "noise": rng.normal(size=n),
            "city": rng.choice([f"city{i}" for i in range(600)], n),  # many values: must not look perfect
            "industry": rng.choice(["software", "retail", "finance"], n),
            # (a) predicts alone, numeric and non-monotone (0 for open, ±large for won)
            "days_to_x": np.where(y == 1, rng.choice([-1, 1], n) * rng.uniform(30, 60, n), 0.0),
            # (a) predicts alone, categorical with an innocent name
            "flag_b": np.where(y == 1, "B", "A"),
            # (b) missing for one class only, innocent name and values
            "score_v2": np.where(y == 1, rng.uniform(0, 1, n), np.nan),
            # (c) name only: no statistical evidence
            "lost_reason": rng.choice(["budget", "timing", None], n),
            # (c) values only
            "pipeline": np.where(rng.random(n) < 0.5, "Closed Won", "Marketing"),
        }
    )
    kinds = {c: "category" for c in ("city", "industry", "flag_b", "lost_reason", "pipeline")}
    return df, kinds, y


def test_guard_flags_each_kind_of_leak_with_evidence() -> None:
    df, kinds, y = frame()
    result = guard(df, kinds, y, PARAMS)
    ev = {e.column: e for e in result.evidence}
    assert set(result.excluded) == {"days_to_x", "flag_b", "score_v2", "lost_reason", "pipeline"}
    assert result.kept == ["web_visits", "noise", "city", "industry"]
    assert "predicts_alone" in ev["days_to_x"].flags and ev["days_to_x"].auc > 0.99
    assert "predicts_alone" in ev["flag_b"].flags and ev["flag_b"].auc == pytest.approx(1.0)
    assert ev["score_v2"].flags[:2] == ("predicts_alone", "missing_for_one_class")
    assert ev["score_v2"].missing_positive == 0.0 and ev["score_v2"].missing_negative == 1.0
    assert ev["lost_reason"].flags == ("follow_up_name",) and ev["lost_reason"].name_match == "lost"
    assert ev["pipeline"].flags == ("follow_up_values",)
    assert set(ev["pipeline"].follow_up_values) == {"Closed Won"}
    assert 0.4 < ev["pipeline"].follow_up_values["Closed Won"]["share"] < 0.6
    # honest columns: real but imperfect signal, and a many-valued category that cannot memorise
    assert 0.6 < ev["web_visits"].auc < 0.9
    assert ev["city"].auc < 0.6
    assert not ev["noise"].flags


def test_allowed_columns_are_kept_and_reported() -> None:
    df, kinds, y = frame()
    result = guard(df, kinds, y, PARAMS, allow=["lost_reason"])
    assert "lost_reason" not in result.excluded and "lost_reason" in result.kept
    assert result.allowed_flagged == ["lost_reason"]
    md = to_markdown(result)
    assert "## Flagged but allowed" in md and "`lost_reason`" in md
    data = result.to_json()
    assert data["allowed_despite_flags"] == ["lost_reason"]
    col = next(c for c in data["columns"] if c["column"] == "score_v2")
    assert col["excluded"] and col["flags"] == ["predicts_alone", "missing_for_one_class"]


def test_markdown_report_lists_what_was_excluded_and_why() -> None:
    df, kinds, y = frame()
    md = to_markdown(guard(df, kinds, y, PARAMS), "Leakage guard: test")
    excluded = md.split("## Excluded")[1].split("## All columns")[0]
    assert "`days_to_x` | AUC alone 1.000 ≥ 0.95" in excluded
    assert "missing in 0.0% of converted vs 100.0% of not converted" in excluded
    assert "name contains 'lost'" in excluded
    assert "'Closed Won' (" in excluded
    assert "`web_visits`" not in excluded


def test_thresholds_come_from_params() -> None:
    df, kinds, y = frame()
    strict = LeakageParams(auc_threshold=0.6, name_patterns=(), value_patterns=())
    result = guard(df, kinds, y, strict)
    assert "web_visits" in result.excluded and "lost_reason" not in result.excluded
    assert "days_to_x" in guard(df, kinds, y, PARAMS, check_names=False).excluded
    assert "lost_reason" not in guard(df, kinds, y, PARAMS, check_names=False).excluded


def test_too_few_rows_of_a_class_skip_the_statistics() -> None:
    df, kinds, y = frame(n=200)
    y = np.zeros(200, dtype=int)
    y[:5] = 1
    result = guard(df, kinds, y, PARAMS)
    assert all(e.auc is None for e in result.evidence)
    assert set(result.excluded) == {"lost_reason", "pipeline"}  # names and values still count


def test_target_rate_encoding_is_out_of_fold() -> None:
    keys = np.array([f"k{i}" for i in range(100)])  # every key unique: in-sample encoding would be perfect
    y = np.tile([0, 1], 50)
    enc = target_rate_oof(keys, y, seed=0)
    assert np.allclose(enc, enc[0], atol=0.05)  # every row gets (about) the prior of the other folds
    assert single_column_auc(pd.Series(keys), "category", y) < 0.65


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("close_date", "close"),
        ("closed_won", "closed"),
        ("deal_amount", "deal"),
        ("lead_status", "status"),
        ("sales_owner", "owner"),
        ("meeting_held", "meeting_held"),
        ("annual_revenue", None),
        ("industry", None),
        ("opportunity_stage", "opportunity"),
        ("company_size", None),
        ("disclosed", None),
    ],
)
def test_name_patterns(name: str, match: str | None) -> None:
    assert name_match(name, PARAMS.name_patterns) == match
