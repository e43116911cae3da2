"""Backtest: cohorts scored in the past, checked against what they did (6sense-style monthly check).

The champion scores every past snapshot whose outcome window has closed (the snapshot tables hold only
those: a snapshot is usable once its horizon has passed), as if it had scored them then, with its own
feature spec and only what was known before each snapshot. Per target, calendar month of the snapshot and
stage (the champion's thresholds): leads scored, expected conversion (mean calibrated probability),
realized conversion, and calibration-in-the-large (realized / expected). Months up to the champion's
training cutoff are marked ``in_training_window``: they flatter the champion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def backtest_table(scored: pd.DataFrame, target: str, cutoff: pd.Timestamp | None) -> pd.DataFrame:
    """Rows per (month, stage) plus an ``all`` stage row per month.

    ``scored`` has snapshot_ts, label, stage and ``p_<target>``.
    """
    frame = scored.assign(month=scored["snapshot_ts"].dt.to_period("M").astype(str), p=scored[f"p_{target}"])
    both = pd.concat([frame, frame.assign(stage="all")], ignore_index=True)
    out = (
        both.groupby(["month", "stage"], sort=True)
        .agg(
            n=("p", "size"),
            expected_conversions=("p", "sum"),
            realized_conversions=("label", "sum"),
            last_snapshot=("snapshot_ts", "max"),
        )
        .reset_index()
    )
    out.insert(0, "target", target)
    out["expected_rate"] = out["expected_conversions"] / out["n"]
    out["realized_rate"] = out["realized_conversions"] / out["n"]
    out["calibration_ratio"] = np.where(
        out["expected_conversions"] > 0, out["realized_conversions"] / out["expected_conversions"], np.nan
    )
    out["in_training_window"] = (out["last_snapshot"] <= cutoff) if cutoff is not None else False
    return out.drop(columns="last_snapshot")
