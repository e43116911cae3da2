"""The data stages on Spark (local mode) give the same tables as on DuckDB, cell by cell.

Small demo data is generated and validated once; snapshots and features then run through the real stage
functions twice, with ``engine.backend`` duckdb and pyspark, into separate folders. Every column of every
snapshot and feature table is compared (floats to 1e-9 relative). The run must leave no scratch view
in the Spark catalog and no table in a Spark warehouse (scratch tables are session-local temp views).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from leadscore.config import Params
from tests.model.synthetic import tmp_params

pytest.importorskip("pyspark", reason="pyspark is installed by scripts/setup.sh (extra 'spark')")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.spark,
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java (setup.sh installs it)"),
]

N_LEADS = 1500
SPARK = {
    "engine.backend": "pyspark",
    "engine.spark.master": "local[2]",
    "engine.spark.conf": {
        "spark.sql.shuffle.partitions": "4",  # tiny data: Spark's default 200 partitions only cost time
        "spark.ui.enabled": "false",
        "spark.sql.warehouse.dir": "",  # set per test below
    },
}


def _params(root: Path, shared: Path, **overrides: object) -> Params:
    """Params writing under ``root`` but reading the raw and validated tables from ``shared``."""
    params = tmp_params(root, **{"generate.n_leads": N_LEADS, **overrides})
    data = params.data.model_copy(update={"raw_dir": shared / "raw", "interim_dir": shared / "interim"})
    return params.model_copy(update={"data": data})


def _tables(params: Params) -> dict[str, pd.DataFrame]:
    out = {
        f"snapshots/{t}": pd.read_parquet(params.data.interim_dir / "snapshots" / f"{t}.parquet")
        for t in params.snapshots.targets
    }
    for path in sorted(params.data.processed_dir.glob("*/*.parquet")):
        out[f"{path.parent.name}/{path.stem}"] = pd.read_parquet(path)
    return out


def test_snapshots_and_features_on_spark_equal_duckdb(tmp_path: Path) -> None:
    from leadscore.data.generate import generate, write_tables
    from leadscore.data.validate import run_validate
    from leadscore.features.stage import run_features, run_snapshots

    shared = tmp_path / "shared"
    base = tmp_params(tmp_path / "gen", **{"generate.n_leads": N_LEADS})
    write_tables(generate(base.generate, base.features), shared / "raw")
    run_validate(_params(tmp_path / "gen", shared))

    results = {}
    warehouse = tmp_path / "spark-warehouse"
    conf = {**SPARK["engine.spark.conf"], "spark.sql.warehouse.dir": str(warehouse)}
    for backend, overrides in (("duckdb", {}), ("pyspark", {**SPARK, "engine.spark.conf": conf})):
        params = _params(tmp_path / backend, shared, **overrides)
        # snapshots write to interim_dir/snapshots: give each engine its own copy of the interim folder
        interim = tmp_path / backend / "interim"
        shutil.copytree(shared / "interim", interim)
        params = params.model_copy(update={"data": params.data.model_copy(update={"interim_dir": interim})})
        run_snapshots(params)
        run_features(params)
        results[backend] = _tables(params)

    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    assert spark is not None, "the pyspark run did not use Spark"
    try:
        leftovers = [t.name for t in spark.catalog.listTables() if t.name.startswith("leadscore_")]
        assert leftovers == [], f"scratch views not dropped: {leftovers}"
    finally:
        spark.stop()
    assert not warehouse.exists() or not any(warehouse.iterdir()), "Spark wrote a metastore table"

    duck, spark_tables = results["duckdb"], results["pyspark"]
    assert sorted(duck) == sorted(spark_tables)
    assert len(duck) == 2 + 2 * 3  # snapshots per target + target x split feature tables
    for name, expected in duck.items():
        assert len(expected) > 0, name
        assert_frame_equal(spark_tables[name], expected, check_exact=False, rtol=1e-9, obj=name)
