"""The threshold simulator's data: one precomputed grid over the calibration predictions.

The report embeds this grid as JSON; the page's script only looks figures up (and interpolates linearly
between two grid points), so every number the simulator shows comes from here, computed with the same
``threshold_metrics`` as the threshold table. Beside each model threshold sits today's point rule at
the same volume: the rule cut (in points) whose handovers per week are closest to the model's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from leadscore.models.intervals import wilson
from leadscore.models.thresholds import handover_window, threshold_grid, threshold_metrics

#: Columns of the grid (per week where the name says so); the page shows these.
MODEL_COLUMNS = (
    "threshold",
    "leads_per_week",
    "share_of_new_leads",
    "expected_sql_per_week",
    "actual_sql_per_week",
    "expected_won_per_week",
    "actual_won_per_week",
    "mql_to_sql_rate",
    "mql_to_sql_rate_lo",
    "mql_to_sql_rate_hi",
    "precision",
    "recall",
)
#: Rows the page shows per stage: (column, label, format).
ROWS = (
    ("leads_per_week", "leads handed to sales", "num"),
    ("share_of_new_leads", "share of new leads", "pct"),
    ("expected_sql_per_week", "expected SQLs", "num"),
    ("actual_sql_per_week", "actual SQLs", "num"),
    ("expected_won_per_week", "expected wins", "num"),
    ("actual_won_per_week", "actual wins", "num"),
    ("mql_to_sql_rate", "MQL→SQL rate (95 % interval)", "rate"),
    ("precision", "precision", "pct"),
    ("recall", "recall", "pct"),
)
RULE_COLUMNS = (
    "points",
    "leads_per_week",
    "share_of_new_leads",
    "actual_sql_per_week",
    "actual_won_per_week",
    "mql_to_sql_rate",
    "mql_to_sql_rate_lo",
    "mql_to_sql_rate_hi",
    "precision",
    "recall",
)


def _per_week(m: pd.DataFrame, frame: pd.DataFrame, taus: np.ndarray, every_days: int) -> pd.DataFrame:
    """Add per-week columns and actual wins (the won label counted like SQLs) to ``threshold_metrics``."""
    weeks = handover_window(frame["snapshot_ts"], every_days)[1]
    m = m.copy()
    m["mql_to_sql_rate_lo"], m["mql_to_sql_rate_hi"] = wilson(m["actual_sql"], m["leads_flagged"])
    m["actual_sql_per_week"] = m["actual_sql"] / weeks
    if "label_won" in frame and frame["label_won"].notna().all():
        won = frame.assign(label=frame["label_won"].astype(float)).drop(columns="p_won", errors="ignore")
        m["actual_won_per_week"] = threshold_metrics(won, taus, every_days)["actual_sql"].to_numpy() / weeks
    else:
        m["actual_won_per_week"] = np.nan
    return m


def simulator_grid(
    frame: pd.DataFrame,
    every_days: int,
    stages: list[dict[str, Any]],
    rule_points: float | None = None,
    grid_points: int = 200,
) -> dict[str, Any]:
    """The grid the page's simulator reads.

    ``frame``: calibration prediction rows (lead_id, snapshot_ts, label, p, optional p_won, label_won,
    rule_score). ``stages``: the chosen stages (name, probability). Returns {"model": {column: [values
    by ascending threshold]}, "rule": {...} (the rule at the same volume, row by row) or None,
    "stages": [...], "rule_points": ..., "weeks": ...}. Values are rounded to 6 significant digits;
    NaN becomes None.
    """
    p = frame["p"].to_numpy(dtype=np.float64)
    chosen = np.array([float(s["probability"]) for s in stages], dtype=np.float64)
    taus = np.unique(np.concatenate([threshold_grid(p, grid_points), chosen, [0.0]]))
    m = _per_week(threshold_metrics(frame, taus, every_days), frame, taus, every_days)
    out: dict[str, Any] = {
        # thresholds at full precision: a rounded τ could flag a different set of leads than the figures
        "model": {c: _clean(m[c], digits=17 if c == "threshold" else 6) for c in MODEL_COLUMNS},
        "rule": None,
        "stages": [{"name": s["name"], "probability": float(s["probability"])} for s in stages],
        "rule_points": rule_points,
        "weeks": float(handover_window(frame["snapshot_ts"], every_days)[1]),
        "rows": [list(r) for r in ROWS],
    }
    if "rule_score" in frame and frame["rule_score"].notna().all():
        rule_frame = frame.assign(p=frame["rule_score"].astype(float)).drop(columns="p_won", errors="ignore")
        cuts = np.unique(rule_frame["p"].to_numpy(dtype=np.float64))
        r = _per_week(threshold_metrics(rule_frame, cuts, every_days), frame, cuts, every_days)
        r["points"] = cuts
        # the rule's cut whose volume is closest to the model's at each model threshold
        gap = np.abs(r["leads_per_week"].to_numpy()[None, :] - m["leads_per_week"].to_numpy()[:, None])
        idx = np.argmin(np.nan_to_num(gap, nan=np.inf), axis=1)
        same = r.iloc[idx].reset_index(drop=True)
        out["rule"] = {c: _clean(same[c]) for c in RULE_COLUMNS}
    return out


def _clean(values: pd.Series, digits: int = 6) -> list[float | None]:
    return [
        None if not np.isfinite(v) else float(f"{v:.{digits}g}") for v in values.to_numpy(dtype=np.float64)
    ]


def load_simulator_frame(params: Any) -> pd.DataFrame | None:
    """The calibration rows of the thresholds target with p_won and, where closed-won predictions exist
    for the same rows, their label as ``label_won`` (None when there are no predictions)."""
    from leadscore.models.thresholds import load_predictions, predictions_path

    try:
        frame, _ = load_predictions(params)
    except FileNotFoundError:
        return None
    cal = frame[frame["split"] == "calibration"].reset_index(drop=True)
    won_path = predictions_path(params, "closed_won")
    if params.thresholds.target == "closed_won":
        cal["label_won"] = cal["label"]
    elif won_path.exists():
        won = pd.read_parquet(won_path, columns=["lead_id", "snapshot_ts", "label"])
        won = won.drop_duplicates(["lead_id", "snapshot_ts"]).rename(columns={"label": "label_won"})
        cal = cal.merge(won, on=["lead_id", "snapshot_ts"], how="left", validate="many_to_one")
    if "label_won" not in cal or cal["label_won"].isna().any():
        cal["label_won"] = won_labels(params, cal)
    return cal


def won_labels(params: Any, rows: pd.DataFrame) -> pd.Series:
    """Closed-won within the closed-won target's horizon after each row's snapshot, from the stage
    history (the closed-won model's own rows can sit on other snapshot dates). Only what happened after
    the snapshot counts, as for the training labels; NaN when there is no closed-won target or history."""
    target = next((t for t in params.snapshots.targets.values() if t.stage == "closed_won"), None)
    path = params.data.interim_dir / "stage_history.parquet"
    if target is None or not path.exists():
        return pd.Series(np.nan, index=rows.index)
    history = pd.read_parquet(path, columns=["lead_id", "stage", "ts"])
    won = history[history["stage"] == "closed_won"][["lead_id", "ts"]]
    keyed = rows[["lead_id", "snapshot_ts"]].reset_index().merge(won, on="lead_id", how="left")
    horizon = pd.Timedelta(days=target.horizon_days)
    keyed["hit"] = (keyed["ts"] > keyed["snapshot_ts"]) & (keyed["ts"] <= keyed["snapshot_ts"] + horizon)
    return keyed.groupby("index")["hit"].any().reindex(rows.index).astype(float)
