"""The events table's checks as one Ibis expression, run in the engine (``leadscore.engine``).

Events are the big table (about 25 rows per lead), so they are never read into Python: the engine
normalises them, gives every row the reason of the *first* check it fails (the same reasons, in the
same order, as the other tables get in ``validate``) and writes the accepted rows; only the quarantined
rows (bounded by ``validate.max_reject_share``) and the counts come back.

Order of checks: ``bad_timestamp:ts``; ``missing_value:lead_id``, ``missing_value:ts``,
``future_timestamp:ts``, ``missing_value:event_type``, ``unknown_event_type``; ``duplicate_key`` (the
first row in file order is kept); ``unknown_lead``; ``event_before_lead_created``.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import Final

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from leadscore.data.contract import EVENT_TYPES, PRIMARY_KEYS
from leadscore.data.schemas import COLUMN_KINDS

#: The row's 0-based position in the table as read (``source_row`` in the quarantine).
ROW: Final = "_row"
REASON: Final = "_reason"


def _strip(col: ir.StringValue) -> ir.StringValue:
    """Whitespace stripped at both ends. Not ``.strip()``: on PySpark, Ibis 12 compiles it to a TRIM
    whose character list Spark misreads, so it also strips the letters f and v ("form_submit")."""
    # \x0B (vertical tab): Python's str.strip removes it, the \s of RE2 (DuckDB) does not
    return col.re_replace(r"^[\s\x0B]+|[\s\x0B]+$", "")


def _text(col: ir.Value) -> ir.StringValue:
    """Strip text; empty strings become null. Whole-number ids stored as numbers lose their ``.0``."""
    if col.type().is_floating():
        whole = (col % 1) == 0
        col = ibis.ifelse(whole, col.cast("int64").cast("string"), col.cast("string"))
    elif not col.type().is_string():
        col = col.cast("string")
    return _strip(col).nullif("")


def _timestamp(col: ir.Value) -> ir.TimestampValue:
    """Naive UTC timestamp floored to whole seconds; text is parsed as ISO 8601 (offsets converted)."""
    kind = col.type()
    if kind.is_timestamp():
        if kind.timezone is not None:
            col = col.cast(dt.Timestamp(timezone="UTC")).cast(dt.Timestamp())
    else:
        # Only text: epoch numbers are ambiguous (seconds? milliseconds?) and stay unparsed (null).
        text = _strip(col if kind.is_string() else col.cast("string")).nullif("")
        col = text.try_cast(dt.Timestamp(timezone="UTC")).cast(dt.Timestamp())
    return col.truncate("s").cast(dt.Timestamp(scale=6))


def normalised(raw: ir.Table) -> ir.Table:
    """``raw`` (with ``_row``) -> contract columns normalised, ``_bad_ts``, then columns outside it."""
    kinds = COLUMN_KINDS["events"]
    cols: dict[str, ir.Value] = {ROW: raw[ROW]}
    for name, kind in kinds.items():
        if name not in raw.columns:
            continue
        col = raw[name]
        if kind == "timestamp":
            cols[name] = _timestamp(col)
            if col.type().is_timestamp():
                cols["_bad_ts"] = ibis.literal(False)
            else:  # present (not blank) but not a timestamp
                text = _strip(col.cast("string"))
                cols["_bad_ts"] = text.notnull() & (text != "") & cols[name].isnull()
        elif kind == "id":
            cols[name] = _text(col)
        elif kind == "lower":
            cols[name] = _text(col).lower()
        elif kind == "raw" and col.type().is_string():
            cols[name] = _strip(col).nullif("")
        else:
            cols[name] = col
    for name in raw.columns:
        if name not in cols and name != ROW:
            cols[name] = raw[name]
    return raw.select(**cols)


def checked(raw: ir.Table, leads: ir.Table, max_ts: pd.Timestamp, tolerance: pd.Timedelta) -> ir.Table:
    """Normalised events with ``_reason`` (null when accepted) and ``_row``.

    ``raw``: the events as read plus ``_row``; ``leads``: the accepted leads (lead_id, created_at).
    """
    ev = normalised(raw)
    limit = ibis.literal(max_ts.to_pydatetime(), type=dt.Timestamp(scale=6))
    first = ibis.cases(
        (ev._bad_ts, "bad_timestamp:ts"),
        (ev.lead_id.isnull(), "missing_value:lead_id"),
        (ev.ts.isnull(), "missing_value:ts"),
        (ev.ts > limit, "future_timestamp:ts"),
        (ev.event_type.isnull(), "missing_value:event_type"),
        (~ev.event_type.isin(list(EVENT_TYPES)), "unknown_event_type"),
        else_=ibis.null(dt.string),
    )
    ev = ev.mutate(_first=first)
    keys = [ev[k] for k in PRIMARY_KEYS["events"]]
    # Among the rows still accepted, a key's later occurrences (file order) are duplicates.
    window = ibis.window(group_by=[*keys, ev._first.isnull()], order_by=ev[ROW])
    ev = ev.mutate(_dup=ibis.row_number().over(window) > 0)
    lk = leads.select(_lead=leads.lead_id, _created=leads.created_at)
    ev = ev.left_join(lk, ev.lead_id == lk._lead)
    early_limit = ev._created - ibis.interval(seconds=int(tolerance.total_seconds()))
    reason = ibis.cases(
        (ev._first.notnull(), ev._first),
        (ev._dup, "duplicate_key"),
        (ev._lead.isnull(), "unknown_lead"),
        (ev.ts < early_limit, "event_before_lead_created"),
        else_=ibis.null(dt.string),
    )
    out = ev.mutate(**{REASON: reason})
    return out.drop("_first", "_dup", "_lead", "_created", "_bad_ts")


def accepted(checked_events: ir.Table) -> ir.Table:
    """The accepted rows in file order, without the helper columns."""
    rows = checked_events.filter(checked_events[REASON].isnull()).order_by(ROW)
    return rows.drop(REASON, ROW)


def reason_counts(checked_events: ir.Table) -> dict[str, int]:
    """reason -> rows, for the quarantined rows (one small aggregate comes back)."""
    bad = checked_events.filter(checked_events[REASON].notnull())
    counts = bad.group_by(REASON).aggregate(n=bad.count()).to_pyarrow().to_pylist()
    return {row[REASON]: int(row["n"]) for row in counts}


def rejected_rows(raw: ir.Table, checked_events: ir.Table) -> pd.DataFrame:
    """The quarantined rows as read (``_row`` and the raw columns) with their reason, in file order."""
    bad = checked_events.filter(checked_events[REASON].notnull()).select(ROW, REASON)
    rows = raw.inner_join(bad, ROW).order_by(ROW)
    return rows.to_pyarrow().to_pandas()


def numbered_copy(sources: list[Path], out: Path, batch_rows: int = 250_000) -> Path:
    """Copy the raw events file(s) to one Parquet file with ``_row`` (position in the table as read).

    Streams in batches (memory stays at one batch): CSV fields are all read as text (only empty fields
    are missing, as ``load.read_table`` does), Parquet keeps its types; header names are stripped and
    the files of a folder are numbered in name order. Any engine can then read the copy, and
    ``source_row`` in the quarantine means the same row whichever engine ran.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    writer: pq.ParquetWriter | None = None
    offset = 0
    try:
        for path in sources:
            for batch in _batches(path, batch_rows):
                batch = batch.rename_columns([str(c).strip() for c in batch.schema.names])
                rows = pa.array(np.arange(offset, offset + batch.num_rows, dtype=np.int64))
                table = pa.Table.from_batches([batch]).append_column(ROW, rows)
                if writer is None:
                    writer = pq.ParquetWriter(out, table.schema)
                elif table.schema.names != writer.schema.names:
                    raise ValueError(
                        f"table 'events': {path} has columns {table.schema.names[:-1]}, "
                        f"the files before it {writer.schema.names[:-1]}"
                    )
                writer.write_table(table.cast(writer.schema))
                offset += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError(f"table 'events' is empty: {[str(p) for p in sources]}")
    return out


def _batches(path: Path, batch_rows: int):
    if path.name.endswith(".parquet"):
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
        return
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
        header = next(csv.reader(fh), [])
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True, null_values=[""]
    )
    yield from pacsv.open_csv(
        str(path), convert_options=options, read_options=pacsv.ReadOptions(block_size=1 << 24)
    )
