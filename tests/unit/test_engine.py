"""The engine setting: backend choice, unique scratch tables that are always dropped, CPU defaults."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from leadscore.config import EngineParams
from leadscore.engine import ENGINE_ENV, backend_name, batches, connect, fixed_chunks, scratch_table
from leadscore.runtime import available_cpus, threads_or_default
from tests.model.synthetic import tmp_params


def test_environment_overrides_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    assert backend_name(EngineParams()) == "duckdb"
    monkeypatch.setenv(ENGINE_ENV, " PySpark ")
    assert backend_name(EngineParams()) == "pyspark"


def test_unknown_backend_fails_with_its_name(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENGINE_ENV, "no_such_engine")
    with pytest.raises(ValueError, match="no_such_engine"):
        connect(tmp_params(tmp_path))


def _tables(con) -> set[str]:
    # DuckDB's own catalog (Ibis 12's list_tables uses a DuckDB 1.x API that DuckDB 2 removed)
    return {row[0] for row in con.con.execute("select table_name from duckdb_tables()").fetchall()}


def test_scratch_tables_are_unique_and_dropped_even_on_error(tmp_path) -> None:
    con = connect(tmp_params(tmp_path))
    frame = pd.DataFrame({"lead_id": ["a", "b"], "n": [1, 2]})
    with scratch_table(con, frame, "x") as one, scratch_table(con, frame, "x") as two:
        names = {one.op().name, two.op().name}
        assert len(names) == 2 and all(n.startswith("leadscore_x_") for n in names)
        assert names <= _tables(con)
        assert one.to_pandas()["n"].sum() == 3
    assert not names & _tables(con)
    with pytest.raises(RuntimeError), scratch_table(con, frame, "y") as three:
        name = three.op().name
        raise RuntimeError("boom")
    assert name not in _tables(con)


def test_batches_stream_in_order_and_bounded(tmp_path) -> None:
    con = connect(tmp_params(tmp_path))
    frame = pd.DataFrame({"i": range(10_000)})
    with scratch_table(con, frame, "b") as table:
        got = list(batches(table.order_by(table.i.desc()), 1000))
    assert max(b.num_rows for b in got) <= 1000
    values = [v for b in got for v in b.column("i").to_pylist()]
    assert values == list(range(9_999, -1, -1))


def test_fixed_chunks_cut_uneven_batches_at_the_same_rows() -> None:
    sizes = [3, 700, 1, 1500, 296]
    start = [0, *np.cumsum(sizes)]
    stream = [pa.record_batch({"i": np.arange(a, a + n)}) for a, n in zip(start, sizes, strict=False)]
    chunks = list(fixed_chunks(iter(stream), 1000))
    assert [c.num_rows for c in chunks] == [1000, 1000, 500]
    assert np.concatenate([c.column("i").to_numpy() for c in chunks]).tolist() == list(range(2500))
    assert list(fixed_chunks(iter([]), 1000)) == []


def test_threads_default_to_the_cpus_this_process_may_use() -> None:
    cpus = available_cpus()
    assert 1 <= cpus <= (os.cpu_count() or cpus)
    if hasattr(os, "sched_getaffinity"):
        assert cpus == len(os.sched_getaffinity(0))
    assert threads_or_default(None) == cpus
    assert threads_or_default(3) == 3
