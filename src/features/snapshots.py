"""Point-in-time examples and labels, and the time-ordered split.

An example is (lead, snapshot time t). Its features may use only what was known strictly before t
(``batch``/``online`` enforce that); its label is whether the lead reached the target stage in
(t, t + horizon]. Three rules keep the estimate honest:

* right-censored examples (t + horizon after the export) are dropped, not counted as negatives;
* a lead that already reached the target (or a stage past it) by t is not an example;
* splits are by time, train < calibration < test, with a purge gap of one horizon between slices so
  an earlier slice's labels are fully observed before the next slice starts, and every lead belongs to
  exactly one slice (the slice of its first example).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.config import SnapshotParams, TargetParams

SPLITS = ("train", "calibration", "test")


def snapshot_calendar(
    first_created: pd.Timestamp, end: pd.Timestamp, params: SnapshotParams
) -> pd.DatetimeIndex:
    """Snapshot dates (midnight UTC) every ``every_days`` from first lead + warmup up to ``end``."""
    start = (first_created + pd.Timedelta(days=params.warmup_days)).normalize() + pd.Timedelta(days=1)
    return pd.date_range(start, end, freq=f"{params.every_days}D", unit="us")


@dataclass(frozen=True)
class SplitBounds:
    """Snapshot-time boundaries; a slice is [start, end] inclusive."""

    train: tuple[pd.Timestamp, pd.Timestamp]
    calibration: tuple[pd.Timestamp, pd.Timestamp]
    test: tuple[pd.Timestamp, pd.Timestamp]

    def label(self, ts: pd.Series) -> pd.Series:
        """'train' / 'calibration' / 'test' per snapshot time, or NA inside a purge gap."""
        out = pd.Series(pd.NA, index=ts.index, dtype="string")
        for name in SPLITS:
            lo, hi = getattr(self, name)
            out[(ts >= lo) & (ts <= hi)] = name
        return out


def split_bounds(
    first: pd.Timestamp, last: pd.Timestamp, horizon_days: int, params: SnapshotParams
) -> SplitBounds:
    """Cut the usable snapshot range [first, last] into train / calibration / test by time.

    With ``purge_horizon`` a gap of one horizon separates slices: train labels end before calibration
    starts and calibration labels end before test starts.
    """
    sp = params.split
    gap = pd.Timedelta(days=horizon_days if sp.purge_horizon else 0)
    available = (last - first) - 2 * gap
    if available <= pd.Timedelta(days=3 * params.every_days):
        raise ValueError(
            f"the data spans {(last - first).days} usable days for a {horizon_days}-day horizon: too short "
            f"for three time-ordered slices with purge gaps. Use more history, a shorter horizon, or "
            f"snapshots.split.purge_horizon=false."
        )
    train_end = first + available * sp.train
    cal_start = train_end + gap
    cal_end = cal_start + available * sp.calibration
    test_start = cal_end + gap
    return SplitBounds(
        train=(first, train_end),
        calibration=(cal_start, cal_end),
        test=(test_start, last),
    )


def first_stage_times(stage_history: pd.DataFrame, stages: tuple[str, ...] | list[str]) -> pd.Series:
    """Earliest ts per lead_id among rows whose stage is in ``stages``."""
    rows = stage_history[stage_history["stage"].isin(list(stages))]
    return rows.groupby("lead_id")["ts"].min()


def build_examples(
    leads: pd.DataFrame,
    stage_history: pd.DataFrame,
    end: pd.Timestamp,
    params: SnapshotParams,
    target: TargetParams,
) -> tuple[pd.DataFrame, SplitBounds]:
    """Labelled, split examples for one target.

    Reads leads (lead_id, created_at) and stage_history (lead_id, stage, ts). Returns a frame with
    lead_id, snapshot_ts, label (0/1), label_ts (when the stage was reached, NaT if not) and split,
    sorted by (snapshot_ts, lead_id); plus the split boundaries.
    """
    horizon = pd.Timedelta(days=target.horizon_days)
    calendar = snapshot_calendar(leads["created_at"].min(), end, params)
    # Right-censoring: a snapshot whose label window is not fully observed is not usable at all.
    calendar = calendar[calendar + horizon <= end]
    if len(calendar) < 3:
        raise ValueError(f"only {len(calendar)} usable snapshot dates for horizon {target.horizon_days} days")
    bounds = split_bounds(calendar[0], calendar[-1], target.horizon_days, params)

    lead_ids = leads["lead_id"].to_numpy()
    created = leads["created_at"].to_numpy()
    max_age = np.timedelta64(params.max_lead_age_days, "D")
    pieces = []
    for t in calendar.to_numpy():
        alive = (created < t) & (t - created <= max_age)
        pieces.append(pd.DataFrame({"lead_id": lead_ids[alive], "snapshot_ts": t}))
    ex = pd.concat(pieces, ignore_index=True)

    past = first_stage_times(stage_history, target.past_stages)
    past_ts = ex["lead_id"].map(past)
    # A lead already at (or past) the target stage by t has nothing left to predict.
    ex = ex[~(past_ts <= ex["snapshot_ts"])].copy()

    reached = first_stage_times(stage_history, [target.stage])
    ex["label_ts"] = ex["lead_id"].map(reached).astype("datetime64[us]")
    in_window = (ex["label_ts"] > ex["snapshot_ts"]) & (ex["label_ts"] <= ex["snapshot_ts"] + horizon)
    ex["label"] = in_window.astype(np.int8)

    ex["split"] = bounds.label(ex["snapshot_ts"])
    ex = ex[ex["split"].notna()]
    # One lead, one slice: the slice of its first example; its examples in other slices are dropped.
    ex = ex.sort_values(["snapshot_ts", "lead_id"], kind="stable")
    home = ex.groupby("lead_id")["split"].transform("first")
    ex = ex[ex["split"] == home].reset_index(drop=True)
    return ex[["lead_id", "snapshot_ts", "label", "label_ts", "split"]], bounds
