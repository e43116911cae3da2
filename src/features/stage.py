"""DVC stage entries for ``snapshots`` and ``features``: the I/O edge around the pure builders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from math import nan
from pathlib import Path

import ibis
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.config import Params, TargetParams
from leadscore.data.parquet import ROW_GROUP_ROWS, arrow_table, write_frames
from leadscore.engine import batches, fixed_chunks, read_parquet, scratch_table, session
from leadscore.features.attributes import lead_attributes
from leadscore.features.batch import KEYS, aggregates_expr, assemble
from leadscore.features.snapshots import COLUMNS, SPLITS, examples_expr, split_calendar
from leadscore.features.spec import FeatureSpec
from leadscore.progress import progress

TRUTH_FILE = Path("_truth") / "lead_truth.parquet"
#: The column types of a snapshot table, whatever the engine returns.
EXAMPLE_SCHEMA = pa.schema(
    [
        ("lead_id", pa.string()),
        ("snapshot_ts", pa.timestamp("us")),
        ("label", pa.int8()),
        ("label_ts", pa.timestamp("us")),
        ("split", pa.string()),
    ]
)


def read_interim(params: Params, tables: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Validated tables written by the ``validate`` stage."""
    out = {}
    for name in tables:
        path = params.data.interim_dir / f"{name}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `leadscore validate` (or `dvc repro`) first")
        out[name] = pd.read_parquet(path)
    return out


def snapshots_path(params: Params, target: str) -> Path:
    return params.data.interim_dir / "snapshots" / f"{target}.parquet"


def features_path(params: Params, target: str, split: str) -> Path:
    return params.data.processed_dir / target / f"{split}.parquet"


def _timestamp(value: object) -> pd.Timestamp:
    """A scalar from the engine as a naive UTC timestamp in microseconds."""
    ts = pd.Timestamp(value)
    return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).as_unit("us")


def export_end(con: ibis.BaseBackend, interim_dir: Path) -> pd.Timestamp:
    """The effective export time: the latest timestamp in leads, events and stage history.

    Three scalar aggregates run in the engine; no table is read into Python.
    """
    latest = []
    for table, column in (("leads", "created_at"), ("events", "ts"), ("stage_history", "ts")):
        value = read_parquet(con, interim_dir / f"{table}.parquet")[column].max().to_pyarrow().as_py()
        if value is not None:
            latest.append(_timestamp(value))
    return max(latest)


def split_stats(examples: ibis.Table) -> dict[str, dict]:
    """Per split: examples, leads and the base rate (one small aggregate comes back from the engine)."""
    stats = examples.group_by("split").aggregate(
        n=examples.count(), leads=examples.lead_id.nunique(), positives=examples.label.sum()
    )
    found = {row["split"]: row for row in stats.to_pyarrow().to_pylist()}
    out = {}
    for split in SPLITS:
        row = found.get(split, {"n": 0, "leads": 0, "positives": 0})
        n = int(row["n"])
        # the mean of 0/1 labels, as pandas computes it (NaN for an empty split)
        base_rate = int(row["positives"]) / n if n else nan
        out[split] = {"n": n, "leads": int(row["leads"]), "base_rate": base_rate}
    return out


def _example_frames(
    rows: ibis.Table,
    batch_rows: int,
    truth: pd.DataFrame | None,
    stage_history: pd.DataFrame | None,
    target: TargetParams,
) -> Iterator[pd.DataFrame]:
    """Stream sorted examples from the engine as frames, with the oracle's probability on demo data.

    Frames are one Parquet row group each, cut at the same rows whatever the engine's batches: the
    oracle's floating point then depends only on the rows (a single frame up to 1M examples).
    """
    for chunk in fixed_chunks(batches(rows, batch_rows), ROW_GROUP_ROWS):
        # Cast to one schema, so every engine hands over the same column types.
        part = chunk.select(list(COLUMNS)).cast(EXAMPLE_SCHEMA).to_pandas().astype({"split": "string"})
        if truth is not None and stage_history is not None:
            # Demo data only: the generator's exact probability, so reports can show the ceiling.
            from leadscore.data.generate import true_probability

            part["oracle_p"] = true_probability(truth, stage_history, part, target.stage, target.horizon_days)
        yield part


def run_snapshots(params: Params) -> dict[str, dict]:
    """Write labelled, split examples per target (+ the oracle's probability on demo data).

    The examples are built in the engine (``examples_expr``) and kept there as a scratch table; the
    split counts come back as one small aggregate and the rows stream to Parquet in batches, so no
    per-lead table is held in this process (except on demo data: the generator's truth table and the
    stage history, for the oracle).
    """
    interim = params.data.interim_dir
    truth_path = params.data.source / TRUTH_FILE
    truth = pd.read_parquet(truth_path) if truth_path.exists() else None
    oracle_stages = (
        pd.read_parquet(interim / "stage_history.parquet", columns=["lead_id", "stage", "ts"])
        if truth is not None
        else None
    )
    with session(params) as con, progress() as bar:
        leads = read_parquet(con, interim / "leads.parquet").select("lead_id", "created_at")
        stages = read_parquet(con, interim / "stage_history.parquet").select("lead_id", "stage", "ts")
        if params.validate_.export_time:
            end = _timestamp(params.validate_.export_time)   # "...Z", "+02:00": tables hold naive UTC
        else:
            end = export_end(con, interim)
        first_created = _timestamp(leads.created_at.min().to_pyarrow().as_py())
        summary: dict[str, dict] = {"export_end": str(end)}
        task = bar.add_task("snapshots", total=len(params.snapshots.targets))
        for name, target in params.snapshots.targets.items():
            calendar, bounds = split_calendar(first_created, end, params.snapshots, target)
            expr = examples_expr(leads, stages, ibis.memtable(calendar), params.snapshots, target)
            with scratch_table(con, expr, f"examples_{name}") as examples:
                stats = split_stats(examples)
                rows = examples.order_by([examples.snapshot_ts, examples.lead_id])
                frames = _example_frames(rows, params.engine.batch_rows, truth, oracle_stages, target)
                path = snapshots_path(params, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                empty = EXAMPLE_SCHEMA.empty_table().to_pandas().astype({"split": "string"})
                write_frames(frames, path, empty)
            summary[name] = {
                "horizon_days": target.horizon_days,
                "bounds": {s: [str(a), str(b)] for s, (a, b) in vars(bounds).items()},
                **stats,
            }
            bar.advance(task)
    params.data.reports_dir.mkdir(parents=True, exist_ok=True)
    (params.data.reports_dir / "snapshots.json").write_text(json.dumps(summary, indent=2))
    return summary


def _assemble_batch(
    batch: pa.RecordBatch,
    example_schema: pa.Schema,
    attributes: pd.DataFrame,
    spec: FeatureSpec,
    params: Params,
) -> pd.DataFrame:
    """One streamed batch of examples + aggregates -> feature rows (attributes, derived, rule score)."""
    aggregate_cols = [*spec.event_aggregates, *spec.stage_aggregates]
    # Cast to the snapshot file's types, so every engine hands over the same column types.
    examples = pa.Table.from_batches([batch.select(example_schema.names)]).cast(example_schema).to_pandas()
    aggregates = pd.DataFrame({c: batch.column(c).to_numpy(zero_copy_only=False) for c in aggregate_cols})
    aggregates = aggregates.astype("float64")
    for key in KEYS:
        aggregates[key] = examples[key].to_numpy()
    return assemble(examples, aggregates, attributes, spec, params.baseline)


def run_features(params: Params) -> dict[str, int]:
    """Build the feature tables per target and split, streaming from the engine.

    The joins and aggregates over events run in the engine; only one batch of example rows at a time
    comes back to Python, where the lead attributes, derived columns and the rule score are added (the
    same NumPy code the online builder runs), and is appended to the split's Parquet file.
    """
    spec = FeatureSpec(params.features)
    tables = read_interim(params, ("accounts", "leads"))
    attrs = lead_attributes(tables["leads"], tables["accounts"], spec.params)
    del tables
    interim = params.data.interim_dir
    counts: dict[str, int] = {}
    with session(params) as con, progress() as bar:
        events = read_parquet(con, interim / "events.parquet")
        stages = read_parquet(con, interim / "stage_history.parquet")
        snaps = {name: read_parquet(con, snapshots_path(params, name)) for name in params.snapshots.targets}
        task = bar.add_task("features", total=1 + len(snaps) * len(SPLITS))
        keys = ibis.union(*[t.select(*KEYS) for t in snaps.values()], distinct=True)
        with (
            scratch_table(con, keys, "keys") as key_table,
            scratch_table(con, aggregates_expr(events, stages, key_table, spec), "aggregates") as aggs,
        ):
            bar.advance(task)
            for name, snap in snaps.items():
                example_schema = pq.read_schema(snapshots_path(params, name))
                agg_cols = [c for c in aggs.columns if c not in KEYS]
                for split in SPLITS:
                    rows = snap.filter(snap.split == split)
                    joined = rows.left_join(aggs, list(KEYS)).select(
                        *[rows[c] for c in example_schema.names], *[aggs[c] for c in agg_cols]
                    )
                    joined = joined.order_by([joined.snapshot_ts, joined.lead_id])
                    counts[f"{name}/{split}"] = _write_stream(
                        joined, features_path(params, name, split), example_schema, attrs, spec, params
                    )
                    bar.advance(task)
    return counts


def _write_stream(
    expr: ibis.Table,
    path: Path,
    example_schema: pa.Schema,
    attributes: pd.DataFrame,
    spec: FeatureSpec,
    params: Params,
) -> int:
    """Stream ``expr`` in batches, assemble each and append it to one Parquet file; return the rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        for batch in batches(expr, params.engine.batch_rows):
            part = _assemble_batch(batch, example_schema, attributes, spec, params)
            table = arrow_table(part)  # no version stamps: stable md5s in dvc.lock
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
            rows += len(part)
        if writer is None:  # an empty split still gets its file with every column
            empty = pa.Table.from_batches([], schema=expr.schema().to_pyarrow())
            writer = pq.ParquetWriter(path, empty.schema)
    finally:
        if writer is not None:
            writer.close()
    return rows
