"""Funnel metrics as revenue teams track them, from the stage history; and the funnel the current
thresholds would make on the test slice.

Conventions (one lead can cycle: MQL -> recycled -> MQL again):

* **MQL volume** per period counts MQL entries (a recycled lead that comes back is a new MQL, as in a
  marketing automation tool) and, separately, the distinct leads that became MQL for the first time.
* **Conversion rates** follow cohorts: a lead enters the cohort of the month of its first MQL and
  converts when it reaches SQL after that MQL within ``mature_days``. Cohorts younger than ``mature_days``
  at the export are not complete (their leads may still convert) and are left out of the overall rates
  and flagged in the monthly table, so recent months do not look like a collapse.
* SQL -> opportunity and SQL -> closed-won: among leads whose first SQL is at least ``mature_days``
  before the export, the share that reached the stage after it within ``mature_days``.
* **Days to SQL**: first SQL after first MQL, in days (converted leads only; median and quartiles).
* **Recycle rate**: share of MQL leads with a ``recycled`` row after their first MQL; reasons are the
  ``reason`` texts of recycled rows. Disqualify reasons likewise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from leadscore.models.thresholds import ResolvedStage, threshold_metrics


@dataclass(frozen=True)
class FunnelSummary:
    """The headline funnel figures (rates as shares, 0..1)."""

    mqls: int
    mql_leads: int
    mql_to_sql: float
    sql_to_opportunity: float
    sql_to_won: float
    median_days_to_sql: float
    p25_days_to_sql: float
    p75_days_to_sql: float
    recycle_rate: float
    mature_days_sql: int
    mature_days_won: int
    export_end: str

    def to_json(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in vars(self).items()
        }


def _first(history: pd.DataFrame, stage: str) -> pd.Series:
    """Earliest ts of ``stage`` per lead_id."""
    rows = history[history["stage"] == stage]
    return rows.groupby("lead_id")["ts"].min()


def _first_after(history: pd.DataFrame, stage: str, after: pd.Series) -> pd.Series:
    """Earliest ts of ``stage`` per lead strictly after that lead's ``after`` time (leads in ``after``)."""
    rows = history[history["stage"] == stage][["lead_id", "ts"]]
    rows = rows.merge(after.rename("after").reset_index(), on="lead_id", how="inner")
    rows = rows[rows["ts"] > rows["after"]]
    return rows.groupby("lead_id")["ts"].min()


def export_end(history: pd.DataFrame) -> pd.Timestamp:
    return pd.Timestamp(history["ts"].max())


def mql_volume(history: pd.DataFrame, freq: str = "M") -> pd.DataFrame:
    """MQL entries and first-time MQL leads per period (``freq``: a pandas period alias, 'M' monthly).

    Returns columns period (Timestamp), mql_entries, new_mql_leads, sorted by period.
    """
    mql = history[history["stage"] == "mql"]
    entries = mql.groupby(mql["ts"].dt.to_period(freq).dt.start_time).size()
    first = _first(history, "mql")
    new = first.groupby(first.dt.to_period(freq).dt.start_time).size()
    out = pd.DataFrame({"mql_entries": entries, "new_mql_leads": new}).fillna(0).astype(np.int64)
    out.index.name = "period"
    return out.sort_index().reset_index()


def mql_cohorts(history: pd.DataFrame, mature_days: int = 90, freq: str = "M") -> pd.DataFrame:
    """Per cohort month of first MQL: leads, SQL within ``mature_days``, rate, and whether complete.

    Columns: period, mql_leads, sql_leads, mql_to_sql, complete.
    """
    end = export_end(history)
    window = pd.Timedelta(days=mature_days)
    mql = _first(history, "mql")
    sql = _first_after(history, "sql", mql)
    frame = pd.DataFrame({"mql": mql})
    frame["sql"] = sql.reindex(frame.index)
    frame["converted"] = frame["sql"].notna() & (frame["sql"] - frame["mql"] <= window)
    frame["period"] = frame["mql"].dt.to_period(freq).dt.start_time
    out = frame.groupby("period").agg(mql_leads=("mql", "size"), sql_leads=("converted", "sum"))
    out["mql_to_sql"] = out["sql_leads"] / out["mql_leads"]
    # complete: every lead of the cohort had the whole window before the export
    last_day = out.index.to_period(freq).to_timestamp(how="end")
    out["complete"] = last_day + window <= end
    return out.reset_index()


def funnel_summary(
    history: pd.DataFrame, mature_days_sql: int = 90, mature_days_won: int = 180
) -> FunnelSummary:
    """Headline rates from the stage history (lead_id, stage, ts, reason); see the module docstring."""
    end = export_end(history)
    w_sql, w_won = pd.Timedelta(days=mature_days_sql), pd.Timedelta(days=mature_days_won)
    mql = _first(history, "mql")
    sql_after_mql = _first_after(history, "sql", mql)
    mature_mql = mql[mql + w_sql <= end]
    conv = sql_after_mql.reindex(mature_mql.index)
    mql_to_sql = float(((conv - mature_mql) <= w_sql).mean()) if len(mature_mql) else np.nan

    sql = _first(history, "sql")
    mature_sql = sql[sql + w_won <= end]

    def rate_after(stage: str) -> float:
        if not len(mature_sql):
            return np.nan
        reached = _first_after(history, stage, mature_sql).reindex(mature_sql.index)
        return float(((reached - mature_sql) <= w_won).mean())

    days = (sql_after_mql - mql.reindex(sql_after_mql.index)).dt.total_seconds() / 86400.0
    recycled = _first_after(history, "recycled", mql)
    q = np.nanpercentile(days, [25, 50, 75]) if len(days) else [np.nan] * 3
    return FunnelSummary(
        mqls=int((history["stage"] == "mql").sum()),
        mql_leads=len(mql),
        mql_to_sql=mql_to_sql,
        sql_to_opportunity=rate_after("opportunity"),
        sql_to_won=rate_after("closed_won"),
        median_days_to_sql=float(q[1]),
        p25_days_to_sql=float(q[0]),
        p75_days_to_sql=float(q[2]),
        recycle_rate=float(len(recycled) / len(mql)) if len(mql) else np.nan,
        mature_days_sql=mature_days_sql,
        mature_days_won=mature_days_won,
        export_end=str(end),
    )


def reason_counts(history: pd.DataFrame, stage: str) -> pd.DataFrame:
    """Reasons given on rows of ``stage`` (e.g. 'recycled', 'disqualified'): reason, count, share.

    A missing reason counts as '(none given)'; sorted by count, then reason.
    """
    rows = history[history["stage"] == stage]
    reasons = rows["reason"].astype("string").str.strip().replace("", pd.NA).fillna("(none given)")
    counts = reasons.value_counts()
    out = pd.DataFrame({"reason": counts.index.astype(str), "count": counts.to_numpy(dtype=np.int64)})
    out["share"] = out["count"] / max(int(out["count"].sum()), 1)
    return out.sort_values(["count", "reason"], ascending=[False, True], kind="stable").reset_index(drop=True)


def threshold_funnel(
    predictions: pd.DataFrame,
    stages: list[ResolvedStage] | list[dict[str, Any]],
    every_days: int,
    rule_points: float | None = None,
) -> pd.DataFrame:
    """The funnel the stage thresholds make on a slice of predictions (e.g. the test slice).

    Counted like the threshold table (``thresholds.handovers``): a lead is handed over once, at the first
    snapshot where it reaches a stage's threshold, after the slice's burn-in date. Per stage: leads (and
    per week) entering this stage or a higher one, their SQLs (label at handover), SQL rate and predicted
    SQL rate. These are flows (a lead enters "MQL or higher" once, and "sales-ready" once, maybe later),
    so two stages' counts are not nested bands. With ``rule_points``, a row
    for today's point rule (rule_score >= rule_points) counted the same way, for comparison.
    """
    norm = [(s["name"], s["probability"]) if isinstance(s, dict) else (s.name, s.probability) for s in stages]
    taus = np.array([tau for _, tau in norm], dtype=np.float64)
    m = threshold_metrics(predictions, taus, every_days)
    out = pd.DataFrame(
        {
            "stage": [name for name, _ in norm],
            "threshold": taus,
            "leads": m["leads_flagged"].to_numpy(),
            "leads_per_week": m["leads_per_week"].to_numpy(),
            "sql": m["actual_sql"].to_numpy(),
            "sql_rate": m["mql_to_sql_rate"].to_numpy(),
            "expected_sql_rate": m["mql_to_sql_expected"].to_numpy(),
        }
    )
    if rule_points is not None and "rule_score" in predictions:
        rule = predictions.assign(p=predictions["rule_score"].astype(float)).drop(
            columns="p_won", errors="ignore"
        )
        r = threshold_metrics(rule, np.array([float(rule_points)]), every_days).iloc[0]
        out.loc[len(out)] = {
            "stage": "today's rule (MQL points)",
            "threshold": float(rule_points),
            "leads": r["leads_flagged"],
            "leads_per_week": r["leads_per_week"],
            "sql": r["actual_sql"],
            "sql_rate": r["mql_to_sql_rate"],
            "expected_sql_rate": np.nan,  # points are not probabilities
        }
    return out
