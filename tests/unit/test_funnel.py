"""Funnel metrics on hand-built stage histories, and the funnel the thresholds make."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.models.funnel import funnel_summary, mql_cohorts, mql_volume, reason_counts, threshold_funnel


def _h(rows: list[tuple[str, str, str, str | None]]) -> pd.DataFrame:
    f = pd.DataFrame(rows, columns=["lead_id", "stage", "ts", "reason"])
    f["ts"] = pd.to_datetime(f["ts"])
    return f


@pytest.fixture
def history() -> pd.DataFrame:
    return _h(
        [
            # A: MQL Jan 5, SQL 10 days later, opportunity, won
            ("A", "mql", "2025-01-05", None),
            ("A", "sql", "2025-01-15", None),
            ("A", "opportunity", "2025-02-01", None),
            ("A", "closed_won", "2025-03-01", None),
            # B: MQL Jan 20, recycled Jan 30, SQL Feb 19 (30 days after the first MQL), MQL again in Mar
            ("B", "mql", "2025-01-20", None),
            ("B", "recycled", "2025-01-30", "bad_timing"),
            ("B", "mql", "2025-03-01", None),
            ("B", "sql", "2025-02-19", None),
            ("B", "closed_lost", "2025-04-01", "no_budget"),
            # C: MQL Feb, disqualified
            ("C", "mql", "2025-02-10", None),
            ("C", "disqualified", "2025-02-20", "student"),
            # D: MQL Feb, recycled without a reason, never SQL
            ("D", "mql", "2025-02-15", None),
            ("D", "recycled", "2025-03-01", ""),
            # E: MQL in Jan, SQL 200 days later (outside a 90-day window)
            ("E", "mql", "2025-01-10", None),
            ("E", "sql", "2025-07-29", None),
            # F: recent MQL (immature cohort) -> the export ends 2025-12-31
            ("F", "mql", "2025-12-01", None),
            ("Z", "recycled", "2025-12-31", "bad_timing"),
        ]
    )


def test_mql_volume_counts_entries_and_new_leads(history: pd.DataFrame) -> None:
    out = mql_volume(history)
    expected = pd.DataFrame(
        {
            "period": pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01", "2025-12-01"]),
            "mql_entries": [3, 2, 1, 1],
            "new_mql_leads": [3, 2, 0, 1],
        }
    )
    pd.testing.assert_frame_equal(out, expected, check_dtype=False)


def test_cohorts_count_sql_within_window_and_flag_incomplete_months(history: pd.DataFrame) -> None:
    out = mql_cohorts(history, mature_days=90)
    jan = out[out["period"] == pd.Timestamp("2025-01-01")].iloc[0]
    # A (10 days) and B (30 days) convert within 90 days; E (200 days) does not
    assert (jan["mql_leads"], jan["sql_leads"]) == (3, 2)
    assert jan["mql_to_sql"] == pytest.approx(2 / 3)
    assert bool(jan["complete"])
    dec = out[out["period"] == pd.Timestamp("2025-12-01")].iloc[0]
    assert not bool(dec["complete"])


def test_funnel_summary(history: pd.DataFrame) -> None:
    s = funnel_summary(history, mature_days_sql=90, mature_days_won=180)
    assert s.mqls == 7
    assert s.mql_leads == 6
    # mature MQL leads (first MQL + 90d <= Dec 31): A, B, C, D, E -> A and B convert within 90 days
    assert s.mql_to_sql == pytest.approx(2 / 5)
    # mature SQLs (first SQL + 180d <= Dec 31): A, B (E's SQL is Jul 29 -> +180d > Dec 31)
    assert s.sql_to_opportunity == pytest.approx(1 / 2)
    assert s.sql_to_won == pytest.approx(1 / 2)
    # days to SQL: A 10, B 30, E 200
    assert s.median_days_to_sql == pytest.approx(30.0)
    # recycled after first MQL: B, D out of 6 MQL leads (Z has no MQL)
    assert s.recycle_rate == pytest.approx(2 / 6)
    assert s.to_json()["export_end"].startswith("2025-12-31")


def test_reason_counts(history: pd.DataFrame) -> None:
    out = reason_counts(history, "recycled")
    expected = pd.DataFrame(
        {"reason": ["bad_timing", "(none given)"], "count": [2, 1], "share": [2 / 3, 1 / 3]}
    )
    pd.testing.assert_frame_equal(out, expected, check_dtype=False)
    assert reason_counts(history, "disqualified")["reason"].tolist() == ["student"]


def test_threshold_funnel_counts_handovers_per_stage_after_burn_in() -> None:
    d = pd.date_range("2025-01-01", periods=3, freq="30D")
    preds = pd.DataFrame(
        {
            "lead_id": ["A", "A", "A", "B", "B", "C", "D", "E", "E"],
            "snapshot_ts": [d[0], d[1], d[2], d[0], d[1], d[2], d[0], d[1], d[2]],
            "p": [0.1, 0.6, 0.1, 0.3, 0.25, 0.05, 0.7, 0.55, 0.1],
            "label": [0, 1, 0, 1, 0, 0, 0, 1, 0],
            "rule_score": [70, 70, 10, 20, 65, 0, 80, 10, 75],
        }
    )
    stages = [
        {"name": "sales_ready", "probability": 0.5},
        {"name": "mql", "probability": 0.2},
        {"name": "nurture", "probability": 0.0},
    ]
    out = threshold_funnel(preds, stages, every_days=30, rule_points=60)
    weeks = 2 * 30 / 7  # the first date is the burn-in
    by = out.set_index("stage")
    # sales_ready: A (date 2, label 1) and E (arrives date 2, label 1); D was sales-ready at burn-in
    assert by.loc["sales_ready", "leads"] == 2
    assert by.loc["sales_ready", "sql"] == 2
    assert by.loc["sales_ready", "expected_sql_rate"] == pytest.approx((0.6 + 0.55) / 2)
    # mql or higher: A (0.1 -> 0.6 at date 2) and E; B was >= 0.2 at burn-in already
    assert by.loc["mql", "leads"] == 2
    assert by.loc["mql", "leads_per_week"] == pytest.approx(2 / weeks)
    # everyone: new arrivals after the burn-in date: C and E
    assert by.loc["nurture", "leads"] == 2
    assert by.loc["nurture", "sql_rate"] == pytest.approx(0.5)
    # today's rule (>= 60 points): B at date 2 (label 0), E at date 3 (label 0); A and D were MQLs at
    # burn-in already
    rule = by.loc["today's rule (MQL points)"]
    assert rule["leads"] == 2
    assert rule["sql"] == 0
    assert np.isnan(rule["expected_sql_rate"])
