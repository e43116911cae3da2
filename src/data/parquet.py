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
from pathlib import Path

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


def write_parquet(frame: pd.DataFrame, path: Path, index: bool = False) -> None:
    """Write ``frame`` to ``path`` (with its index when ``index``), without version stamps."""
    pq.write_table(
        arrow_table(frame, index), path, compression="snappy", version="2.6", data_page_version="1.0",
        use_dictionary=True, write_statistics=True, row_group_size=1 << 20,
    )  # fmt: skip
