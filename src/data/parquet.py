"""Parquet files whose bytes depend on the data, not on who wrote them (stable md5s in ``dvc.lock``).

``DataFrame.to_parquet`` stamps every file with the pandas and pyarrow versions (the ``pandas`` schema
metadata: ``pandas_version`` and ``creator``), and pandas 3 writes strings as ``large_string``; so the
same frame gave other bytes, hence other md5s in ``dvc.lock``, on another machine. This writer drops
those two version stamps (the rest of the pandas metadata stays, so dtypes and indexes round-trip),
writes strings as plain ``string`` and fixes the writer settings. What remains is the footer's
``created_by`` ("parquet-cpp-arrow version X"), which pyarrow always writes: files are byte-identical
for the same pyarrow version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def arrow_table(frame: pd.DataFrame, index: bool = False) -> pa.Table:
    """``frame`` as an Arrow table (with its index when ``index``), without version stamps and with
    plain ``string`` columns."""
    table = pa.Table.from_pandas(frame, preserve_index=index)
    fields = [
        pa.field(f.name, pa.string(), f.nullable, f.metadata)
        if pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type)
        else f
        for f in table.schema
    ]
    meta = dict(table.schema.metadata or {})
    if b"pandas" in meta:
        pandas_meta = json.loads(meta[b"pandas"])
        pandas_meta.pop("pandas_version", None)
        pandas_meta.pop("creator", None)
        meta[b"pandas"] = json.dumps(pandas_meta, sort_keys=True).encode()
    return table.cast(pa.schema(fields)).replace_schema_metadata(meta)


#: Rows per row group, and the writer settings every file of ours is written with.
ROW_GROUP_ROWS = 1 << 20
WRITER_OPTIONS: dict[str, Any] = {
    "compression": "snappy", "version": "2.6", "data_page_version": "1.0", "use_dictionary": True,
    "write_statistics": True,
}  # fmt: skip


def write_parquet(frame: pd.DataFrame, path: Path, index: bool = False) -> None:
    """Write ``frame`` to ``path`` (with its index when ``index``), without version stamps."""
    pq.write_table(arrow_table(frame, index), path, row_group_size=ROW_GROUP_ROWS, **WRITER_OPTIONS)


def write_frames(frames: Iterable[pd.DataFrame], path: Path, empty: pd.DataFrame) -> int:
    """Write ``frames`` (same columns and dtypes), one after another, to one file at ``path``; return
    the rows written.

    The bytes are those ``write_parquet`` writes for the frames' concatenation: rows are cut into the
    same row groups, and at most one row group's rows are held at a time. ``empty``: a frame with the
    columns and dtypes, written when ``frames`` yields nothing.
    """
    writer: pq.ParquetWriter | None = None
    pending: list[pa.Table] = []
    held = rows = 0

    def flush(final: bool) -> None:
        nonlocal pending, held
        table = pa.concat_tables(pending).combine_chunks()
        full = held if final else held - held % ROW_GROUP_ROWS
        assert writer is not None
        writer.write_table(table.slice(0, full), row_group_size=ROW_GROUP_ROWS)
        pending, held = [table.slice(full)], held - full

    try:
        for frame in frames:
            table = arrow_table(frame)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, **WRITER_OPTIONS)
            pending.append(table.cast(writer.schema))
            held += table.num_rows
            rows += table.num_rows
            if held >= ROW_GROUP_ROWS:
                flush(final=False)
        if writer is None:
            write_parquet(empty, path)
        elif held:
            flush(final=True)
    finally:
        if writer is not None:
            writer.close()
    return rows
