"""The data stages on Spark (local mode) give the same tables as on DuckDB, cell by cell.

Small demo data is generated once, with bad events mixed in (unknown type, unparseable and future
timestamps, a duplicate, an unknown lead, an event long before its lead); validate, snapshots (labels,
label times and slices, built in the engine) and features then run through the real stage functions
twice, with ``engine.backend`` duckdb and pyspark, into separate folders. Every column of every
validated table, quarantine, snapshot and feature table is compared (floats to 1e-9 relative). The run
must leave no scratch view in the Spark catalog and no table in a Spark warehouse (scratch tables are
session-local temp views)."""

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


def _tables(params: Params) -> dict[str, pd.DataFrame]:
    interim = params.data.interim_dir
    out = {f"interim/{p.stem}": pd.read_parquet(p) for p in sorted(interim.glob("*.parquet"))}
    out |= {f"quarantine/{p.stem}": pd.read_parquet(p) for p in sorted((interim / "quarantine").glob("*"))}
    out |= {f"snapshots/{p.stem}": pd.read_parquet(p) for p in sorted((interim / "snapshots").glob("*"))}
    for path in sorted(params.data.processed_dir.glob("*/*.parquet")):
        out[f"{path.parent.name}/{path.stem}"] = pd.read_parquet(path)
    return out


def _messy_events(raw_dir: Path) -> int:
    """Append bad rows to the generated events (as text, like a CSV export); return how many."""
    path = raw_dir / "events.parquet"
    events = pd.read_parquet(path)
    first = events.iloc[0]
    bad = pd.DataFrame(
        [
            {"lead_id": first.lead_id, "ts": "2025-01-01T10:00:00+02:00", "event_type": "tweet"},
            {"lead_id": first.lead_id, "ts": "2025-01-01T10:00:00", "event_type": "\fform_submit\v"},
            {"lead_id": first.lead_id, "ts": "yesterday", "event_type": "page_view"},
            {"lead_id": first.lead_id, "ts": "2099-01-01T00:00:00", "event_type": "page_view"},
            # the first event again, padded and upper-cased: a duplicate after normalisation
            {"lead_id": f" {first.lead_id} ", "ts": str(first.ts), "event_type": first.event_type.upper()},
            {"lead_id": "NO_SUCH_LEAD", "ts": "2025-01-01T00:00:00Z", "event_type": "email_open"},
            {"lead_id": first.lead_id, "ts": "2000-01-01T00:00:00", "event_type": "email_open"},
            {"lead_id": None, "ts": "2025-01-01T00:00:00", "event_type": "email_open"},
        ]
    )
    events = events.astype({"ts": "str"})
    pd.concat([events, bad], ignore_index=True).astype({"ts": "str"}).to_parquet(path, index=False)
    return len(bad)


def test_data_stages_on_spark_equal_duckdb(tmp_path: Path) -> None:
    from leadscore.data.generate import generate, write_tables
    from leadscore.data.validate import run_validate
    from leadscore.features.stage import run_features, run_snapshots

    raw_dir = tmp_path / "raw"
    base = tmp_params(tmp_path / "gen", **{"generate.n_leads": N_LEADS})
    write_tables(generate(base.generate, base.features), raw_dir)
    n_bad = _messy_events(raw_dir)

    results = {}
    warehouse = tmp_path / "spark-warehouse"
    conf = {**SPARK["engine.spark.conf"], "spark.sql.warehouse.dir": str(warehouse)}
    for backend, overrides in (("duckdb", {}), ("pyspark", {**SPARK, "engine.spark.conf": conf})):
        params = tmp_params(tmp_path / backend, **{"generate.n_leads": N_LEADS, **overrides})
        data = params.data.model_copy(update={"raw_dir": raw_dir, "source": raw_dir})
        params = params.model_copy(update={"data": data})
        run_validate(params)
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
    assert len(duck) == 4 + 4 + 2 + 2 * 3  # interim, quarantine, snapshots, target x split features
    assert len(duck["quarantine/events"]) == n_bad - 1  # the padded form_submit is accepted
    assert set(duck["quarantine/events"]["reason"]) == {
        "unknown_event_type",
        "bad_timestamp:ts",
        "future_timestamp:ts",
        "duplicate_key",
        "unknown_lead",
        "event_before_lead_created",
        "missing_value:lead_id",
    }
    for name in ("snapshots/sql", "snapshots/closed_won"):  # labels and slices: not a vacuous comparison
        assert set(duck[name]["split"]) == {"train", "calibration", "test"}, name
        assert 0 < duck[name]["label"].sum() < len(duck[name]), name
        assert duck[name]["label_ts"].notna().any(), name
    for name, expected in duck.items():
        assert len(expected) > 0 or name.startswith("quarantine/"), name
        assert_frame_equal(spark_tables[name], expected, check_exact=False, rtol=1e-9, obj=name)
