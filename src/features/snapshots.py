"""Point-in-time examples and labels, and the time-ordered split, as Ibis expressions run in the engine.

An example is (lead, snapshot time t). Its features may use only what was known strictly before t
(``batch``/``online`` enforce that); its label is whether the lead reached the target stage in
(t, t + horizon]. Three rules keep the estimate honest:

* right-censored examples (t + horizon after the export) are dropped, not counted as negatives;
* a lead that already reached the target (or a stage past it) by t is not an example;
* splits are by time, train < calibration < test, with a purge gap of one horizon between slices so
  an earlier slice's labels are fully observed before the next slice starts, and every lead belongs to
  exactly one slice (the slice of its first example).

The snapshot calendar and the split boundaries are a few dates, computed here in Python from the first
lead's creation and the export time. Everything per lead runs in the engine (``leadscore.engine``):
``examples_expr`` joins the leads with the calendar and the stage history, so at a million leads no
per-lead table comes into the driver.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandas as pd

from leadscore.config import SnapshotParams, TargetParams

SPLITS = ("train", "calibration", "test")
#: The columns of a snapshot table, in file order (the demo adds ``oracle_p``).
COLUMNS = ("lead_id", "snapshot_ts", "label", "label_ts", "split")
TS = dt.Timestamp(scale=6)  # naive UTC, microseconds: the validated tables' timestamps


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


def split_calendar(
    first_created: pd.Timestamp, end: pd.Timestamp, params: SnapshotParams, target: TargetParams
) -> tuple[pd.DataFrame, SplitBounds]:
    """The usable snapshot dates of one target with their slice; plus the split boundaries.

    Returns ``snapshot_ts`` (datetime64[us]), ``split`` and ``split_rank`` (0 train, 1 calibration,
    2 test), one row per date inside a slice (dates in a purge gap are left out).
    """
    horizon = pd.Timedelta(days=target.horizon_days)
    calendar = snapshot_calendar(first_created, end, params)
    # Right-censoring: a snapshot whose label window is not fully observed is not usable at all.
    calendar = calendar[calendar + horizon <= end]
    if len(calendar) < 3:
        raise ValueError(f"only {len(calendar)} usable snapshot dates for horizon {target.horizon_days} days")
    bounds = split_bounds(calendar[0], calendar[-1], target.horizon_days, params)
    frame = pd.DataFrame({"snapshot_ts": calendar})
    frame["split"] = bounds.label(frame["snapshot_ts"])
    frame = frame[frame["split"].notna()].reset_index(drop=True)
    frame["split_rank"] = frame["split"].map({s: i for i, s in enumerate(SPLITS)}).astype("int8")
    return frame.astype({"split": str}), bounds


def first_stage_times(stage_history: pd.DataFrame, stages: tuple[str, ...] | list[str]) -> pd.Series:
    """Earliest ts per lead_id among rows whose stage is in ``stages`` (pandas, for small frames)."""
    rows = stage_history[stage_history["stage"].isin(list(stages))]
    return rows.groupby("lead_id")["ts"].min()


def first_stage_expr(stage_history: ir.Table, stages: tuple[str, ...] | list[str], name: str) -> ir.Table:
    """Per lead_id, the earliest ts (as column ``name``) among rows whose stage is in ``stages``."""
    rows = stage_history.filter(stage_history.stage.isin(list(stages)))
    return rows.group_by("lead_id").aggregate(**{name: rows.ts.min()})


def examples_expr(
    leads: ir.Table, stage_history: ir.Table, calendar: ir.Table, params: SnapshotParams, target: TargetParams
) -> ir.Table:
    """Labelled, split examples of one target as an engine table (unsorted).

    ``leads``: lead_id, created_at; ``stage_history``: lead_id, stage, ts; ``calendar``: the output of
    ``split_calendar``. Returns lead_id, snapshot_ts, label (int8), label_ts (null if not reached) and
    split.
    """
    t = calendar.snapshot_ts.cast(TS)
    cal = calendar.select(snapshot_ts=t, split=calendar.split, split_rank=calendar.split_rank)
    created = leads.created_at.cast(TS)
    ld = leads.select(lead_id=leads.lead_id, _created=created)
    # A lead is an example at every snapshot after its creation, until it ages out.
    ex = ld.inner_join(
        cal,
        [
            ld._created < cal.snapshot_ts,
            ld._created >= cal.snapshot_ts - ibis.interval(days=params.max_lead_age_days),
        ],
    ).select("lead_id", "snapshot_ts", "split", "split_rank")

    past = first_stage_expr(stage_history, target.past_stages, "_past")
    ex = ex.left_join(past, "lead_id").select(ex, past._past)
    # A lead already at (or past) the target stage by t has nothing left to predict.
    ex = ex.filter(ex._past.isnull() | (ex._past > ex.snapshot_ts))

    reached = first_stage_expr(stage_history, [target.stage], "label_ts")
    ex = ex.left_join(reached, "lead_id").select(ex, reached.label_ts.cast(TS).name("label_ts"))
    horizon = ibis.interval(days=target.horizon_days)
    in_window = (ex.label_ts > ex.snapshot_ts) & (ex.label_ts <= ex.snapshot_ts + horizon)
    ex = ex.mutate(label=ibis.ifelse(in_window, 1, 0).cast("int8"))

    # One lead, one slice: the slice of its first example (slices are ordered in time, so the lowest
    # rank); its examples in other slices are dropped.
    home = ex.split_rank.min().over(ibis.window(group_by=ex.lead_id))
    ex = ex.mutate(_home=home)
    ex = ex.filter(ex.split_rank == ex._home)
    return ex.select(*COLUMNS)


def build_examples(
    leads: pd.DataFrame,
    stage_history: pd.DataFrame,
    end: pd.Timestamp,
    params: SnapshotParams,
    target: TargetParams,
) -> tuple[pd.DataFrame, SplitBounds]:
    """``examples_expr`` on small pandas frames (an in-memory DuckDB), sorted by (snapshot_ts, lead_id).

    Reads leads (lead_id, created_at) and stage_history (lead_id, stage, ts); returns the examples as a
    frame and the split boundaries. The ``snapshots`` stage runs the same expression in the engine.
    """
    calendar, bounds = split_calendar(leads["created_at"].min(), end, params, target)
    con = ibis.duckdb.connect()
    try:
        expr = examples_expr(
            ibis.memtable(leads[["lead_id", "created_at"]]),
            ibis.memtable(stage_history[["lead_id", "stage", "ts"]]),
            ibis.memtable(calendar),
            params,
            target,
        )
        out = con.to_pyarrow(expr.order_by(["snapshot_ts", "lead_id"])).to_pandas()
    finally:
        con.disconnect()
    return out.astype({"split": "string"}), bounds
