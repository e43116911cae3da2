"""The engine the data stages run in: one Ibis backend chosen by ``params.engine`` (or ``LEADSCORE_ENGINE``).

validate, snapshots and features write their logic as Ibis expressions; this module is the only place
that knows which backend executes them. DuckDB (embedded, spilling to a local folder) is the default;
``pyspark`` builds a SparkSession from ``engine.spark`` (local mode or a cluster's master URL); any other
Ibis backend (``snowflake``, ``bigquery``, ...) is connected with ``engine.connect`` as keyword arguments.

Scratch tables are unique per run (``leadscore_<what>_<random>``) and dropped when their ``with`` block
ends, so two runs never collide on a shared metastore or warehouse schema.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.config import EngineParams, Params
from leadscore.runtime import threads_or_default

#: Environment variable that overrides ``engine.backend`` (``LEADSCORE_ENGINE=pyspark dvc repro``).
ENGINE_ENV = "LEADSCORE_ENGINE"


def backend_name(engine: EngineParams) -> str:
    """The backend to use: ``LEADSCORE_ENGINE`` when set, else ``engine.backend``."""
    return (os.environ.get(ENGINE_ENV) or engine.backend).strip().lower()


def _spark_session(engine: EngineParams) -> Any:
    """A SparkSession from ``engine.spark``; timestamps are UTC so they mean what DuckDB's mean."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "engine.backend is pyspark but pyspark is not installed: pip install 'leadscore[spark]' "
            "(and a Java 17 runtime)"
        ) from err
    builder = SparkSession.builder.master(engine.spark.master).appName(engine.spark.app_name)
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "false",  # NULL (not an error) for a failed cast, like try_cast elsewhere
        **engine.spark.conf,
    }
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def connect(params: Params) -> ibis.BaseBackend:
    """An Ibis connection to the configured engine (see the module docstring)."""
    engine = params.engine
    name = backend_name(engine)
    if name == "duckdb":
        temp_dir = engine.temp_dir or params.data.build_dir / "engine-tmp"
        temp_dir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "threads": threads_or_default(engine.threads),
            "temp_directory": str(temp_dir),
        }
        if engine.memory_limit:
            config["memory_limit"] = engine.memory_limit
        return ibis.duckdb.connect(**config)
    if name == "pyspark":
        return ibis.pyspark.connect(_spark_session(engine))
    try:
        module = getattr(ibis, name)
    except AttributeError as err:
        raise ValueError(f"engine.backend {name!r} is not an Ibis backend") from err
    return module.connect(**engine.connect)


@contextmanager
def session(params: Params) -> Iterator[ibis.BaseBackend]:
    """Connect for one stage and disconnect afterwards (a Spark session is left to its owner)."""
    con = connect(params)
    try:
        yield con
    finally:
        if con.name == "duckdb":
            con.disconnect()


@contextmanager
def scratch_table(con: ibis.BaseBackend, obj: Any, what: str) -> Iterator[ir.Table]:
    """Materialise ``obj`` (an Ibis expression, a pandas frame or an Arrow table) as a temporary table
    with a unique name, and drop it when the block ends, whatever happens inside."""
    name = f"leadscore_{what}_{uuid.uuid4().hex[:12]}"
    if con.name == "pyspark":
        with _spark_scratch(con, obj, name) as table:
            yield table
        return
    table = con.create_table(name, obj, temp=True)
    try:
        yield table
    finally:
        con.drop_table(name, force=True)


@contextmanager
def _spark_scratch(con: Any, obj: Any, name: str) -> Iterator[ir.Table]:
    """Spark: a persisted (memory and disk) session-local temp view. Ibis 12's pyspark ``create_table``
    has no temporary tables and would write a table into the shared metastore."""
    from pyspark import StorageLevel

    expr = obj if isinstance(obj, ir.Table) else ibis.memtable(obj)
    con._run_pre_execute_hooks(expr)  # registers in-memory frames with the session
    frame = con._session.sql(con.compile(expr)).persist(StorageLevel.MEMORY_AND_DISK)
    frame.createTempView(name)
    try:
        yield con.table(name)
    finally:
        con._session.catalog.dropTempView(name)
        frame.unpersist()


def read_parquet(con: ibis.BaseBackend, path: Path) -> ir.Table:
    """A Parquet file, or a folder of Parquet files, as an engine table (nothing is read into Python)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.suffix == ".parquet" and p.name[0] not in "._")
        return con.read_parquet(files)
    return con.read_parquet(str(path))


def batches(expr: ir.Table, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Stream a query's result back to Python in Arrow batches of at most ``batch_rows`` rows."""
    con = expr._find_backend()
    if con.name == "duckdb" and not hasattr(con.con, "fetch_record_batch"):
        # Ibis 12's DuckDB batch reader calls ``fetch_record_batch``, which DuckDB 2 renamed to
        # ``to_arrow_reader``: run the compiled query through DuckDB's own streaming reader instead
        # (on a relation: on a DB-API result DuckDB would copy every row once more).
        reader = con.con.sql(con.compile(expr)).to_arrow_reader(batch_rows)
    else:
        reader = expr.to_pyarrow_batches(chunk_size=batch_rows)
    yield from reader


def fixed_chunks(stream: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Re-cut a stream of batches into tables of exactly ``rows`` rows (the last one may be shorter).

    Engines choose their own batch sizes; fixed chunks make per-chunk work in Python (and its floating
    point) independent of the engine.
    """
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in stream:
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending).combine_chunks()
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def write_parquet(
    con: ibis.BaseBackend, expr: ir.Table, path: Path, batch_rows: int, schema: pa.Schema | None = None
) -> int:
    """Write ``expr`` to one Parquet file at ``path``; return its row count.

    DuckDB writes the file itself (streaming, spilling when needed). Other engines stream Arrow batches
    through this process, so memory here stays at about one batch whatever the table's size.
    ``schema``: cast every batch to it (keeps column types identical across engines).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if con.name == "duckdb" and schema is None:
        con.to_parquet(expr, str(path))
        return int(pq.ParquetFile(path).metadata.num_rows)
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for batch in batches(expr, batch_rows):
            if schema is not None:
                batch = batch.select(schema.names).cast(schema)
            if writer is None:
                writer = pq.ParquetWriter(path, batch.schema)
            writer.write_batch(batch)
            rows += batch.num_rows
        if writer is None:  # no rows: still write the columns
            empty = schema or expr.schema().to_pyarrow()
            writer = pq.ParquetWriter(path, empty)
    finally:
        if writer is not None:
            writer.close()
    return rows
