"""Benchmark: batch feature builder vs a hand-written DuckDB query, and the online builder's latency.

    .venv/bin/python benchmarks/features_bench.py                 # 1M leads, ~50M events (needs ~10 GB RAM)
    .venv/bin/python benchmarks/features_bench.py --leads 100000 --events 5000000   # quick

Each batch variant runs in its own subprocess so its peak memory (ru_maxrss) is its own. All variants
read the same Parquet files, generated once by DuckDB (seeded), and compute features for one snapshot
per lead ("score everyone as of the export"). Prints a markdown table; writes benchmarks/out/features.md.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np

from leadscore.config import load_params
from leadscore.data.contract import STAGE_RANK
from leadscore.features.spec import SECONDS_PER_DAY, FeatureSpec

AS_OF = "2026-01-01 00:00:00"


def make_data(out: Path, n_leads: int, n_events: int) -> None:
    """Seeded synthetic leads / events / stage history, written by DuckDB straight to Parquet."""
    params = load_params("params.yaml")
    types = list(params.features.event_types)
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SELECT setseed(0.42)")
    type_list = "[" + ", ".join(f"'{t}'" for t in types) + "]"
    con.execute(f"""
        COPY (SELECT 'L' || lpad(CAST(i AS VARCHAR), 8, '0') AS lead_id,
                     CASE WHEN i % 20 = 0 THEN NULL ELSE 'A' || lpad(CAST(i // 3 AS VARCHAR), 8, '0') END AS account_id,
                     TIMESTAMP '2024-01-01' + to_seconds(CAST(floor(random() * 700 * 86400) AS BIGINT)) AS created_at,
                     list_element(['acme.com', 'gmail.com', 'initech.io', 'rivalcrm.io'], CAST(i % 4 AS INT) + 1) AS email_domain,
                     list_element(['VP Marketing', 'Software Engineer', 'Head of Sales', 'Student', 'CEO'], CAST(i % 5 AS INT) + 1) AS job_title,
                     NULL::VARCHAR AS seniority, NULL::VARCHAR AS department,
                     list_element(['US', 'DE', 'GB', 'FR'], CAST(i % 4 AS INT) + 1) AS country,
                     list_element(['webinar', 'referral', 'paid_search'], CAST(i % 3 AS INT) + 1) AS lead_source
              FROM range({n_leads}) t(i)) TO '{out}/leads.parquet' (FORMAT parquet)""")
    con.execute(f"""
        COPY (SELECT 'A' || lpad(CAST(i AS VARCHAR), 8, '0') AS account_id,
                     list_element(['software', 'retail', 'fintech'], CAST(i % 3 AS INT) + 1) AS industry,
                     CAST(floor(exp(random() * 9)) AS BIGINT) AS employees, random() * 1e8 AS annual_revenue,
                     'US' AS country, 'aws;hubspot' AS tech_stack
              FROM range({n_leads // 3 + 1}) t(i)) TO '{out}/accounts.parquet' (FORMAT parquet)""")
    con.execute(f"""
        COPY (SELECT 'L' || lpad(CAST(CAST(floor(random() * {n_leads}) AS BIGINT) AS VARCHAR), 8, '0') AS lead_id,
                     TIMESTAMP '2024-01-01' + to_seconds(CAST(floor(random() * 731 * 86400) AS BIGINT)) AS ts,
                     list_element({type_list}, CAST(floor(random() * {len(types)}) AS INT) + 1) AS event_type
              FROM range({n_events})) TO '{out}/events.parquet' (FORMAT parquet, ROW_GROUP_SIZE 1000000)""")
    con.execute(f"""
        COPY (SELECT 'L' || lpad(CAST(CAST(floor(random() * {n_leads}) AS BIGINT) AS VARCHAR), 8, '0') AS lead_id,
                     list_element(['mql', 'sal', 'sql', 'opportunity', 'recycled'], CAST(floor(random() * 5) AS INT) + 1) AS stage,
                     TIMESTAMP '2024-01-01' + to_seconds(CAST(floor(random() * 731 * 86400) AS BIGINT)) AS ts
              FROM range({n_leads * 2})) TO '{out}/stage_history.parquet' (FORMAT parquet)""")


def hand_sql(spec: FeatureSpec, data: Path) -> str:
    """The same aggregates as ``features.batch``, written by hand as one DuckDB query."""
    day = SECONDS_PER_DAY
    cols = []
    for name, et, w in spec.count_features:
        cols.append(f"count(*) FILTER (WHERE event_type = '{et}' AND age <= {w * day}) AS {name}")
    for name, et in spec.recency_features:
        cols.append(f"min(age) FILTER (WHERE event_type = '{et}') / {day} AS {name}")
    cols.append(f"min(age) / {day} AS days_since_last_event")
    cols.append("count(*) AS events_total")
    weights = " ".join(f"WHEN '{k}' THEN {float(v)}" for k, v in spec.params.decay_weights.items())
    rate = math.log(2.0) / (spec.params.decay_half_life_days * day)
    cols.append(f"sum((CASE event_type {weights} ELSE 0.0 END) * exp(-{rate} * age)) AS engagement_decayed")
    web = ", ".join(f"'{t}'" for t in spec.params.web_types)
    for name, w in spec.active_day_features:
        cols.append(
            f"count(DISTINCT CAST(ts AS DATE)) FILTER (WHERE event_type IN ({web}) AND age <= {w * day}) AS {name}"
        )
    types = ", ".join(f"'{t}'" for t in spec.event_types)
    ranks = " ".join(f"WHEN '{k}' THEN {float(v)}" for k, v in STAGE_RANK.items())
    return f"""
        WITH ex AS (SELECT lead_id, TIMESTAMP '{AS_OF}' AS snapshot_ts FROM '{data}/leads.parquet'),
        ev AS (
          SELECT ex.lead_id, ex.snapshot_ts, e.event_type, e.ts,
                 CAST(epoch(ex.snapshot_ts) - epoch(e.ts) AS DOUBLE) AS age
          FROM ex JOIN '{data}/events.parquet' e ON e.lead_id = ex.lead_id AND e.ts < ex.snapshot_ts
          WHERE e.event_type IN ({types})),
        agg AS (SELECT lead_id, snapshot_ts, {", ".join(cols)} FROM ev GROUP BY ALL),
        st AS (
          SELECT ex.lead_id, ex.snapshot_ts,
                 max(CASE s.stage {ranks} ELSE 0.0 END) AS stage_rank,
                 min(CAST(epoch(ex.snapshot_ts) - epoch(s.ts) AS DOUBLE)) / {day} AS days_since_stage_change,
                 count(*) FILTER (WHERE s.stage = 'recycled') AS times_recycled,
                 min(CAST(epoch(ex.snapshot_ts) - epoch(s.ts) AS DOUBLE)) FILTER (WHERE s.stage = 'sql') / {day} AS days_since_sql
          FROM ex JOIN '{data}/stage_history.parquet' s ON s.lead_id = ex.lead_id AND s.ts < ex.snapshot_ts
          GROUP BY ALL)
        SELECT * FROM agg FULL OUTER JOIN st USING (lead_id, snapshot_ts)
    """


def run_variant(variant: str, data: Path) -> dict[str, float]:
    """Run one batch variant in this process; return seconds and rows."""
    import ibis
    import pandas as pd

    from leadscore.features.attributes import lead_attributes
    from leadscore.features.batch import build_features

    params = load_params("params.yaml")
    spec = FeatureSpec(params.features)
    start = time.perf_counter()
    if variant == "hand_sql":
        con = duckdb.connect()
        rows = len(con.execute(hand_sql(spec, data)).df())
    else:
        con = ibis.duckdb.connect()
        leads = pd.read_parquet(data / "leads.parquet")
        accounts = pd.read_parquet(data / "accounts.parquet")
        examples = pd.DataFrame({"lead_id": leads.lead_id, "snapshot_ts": pd.Timestamp(AS_OF)}).astype(
            {"snapshot_ts": "datetime64[us]"}
        )
        events = con.read_parquet(data / "events.parquet")
        stages = con.read_parquet(data / "stage_history.parquet")
        attrs = lead_attributes(leads, accounts, spec.params)
        rows = len(build_features(con, events, stages, examples, attrs, spec, params.baseline))
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": peak_mb, "rows": rows}


def online_latency(n_events: int = 200, repeats: int = 3000) -> dict[str, float]:
    """Median and p99 wall time of ``OnlineFeatureBuilder.build`` for one lead with ``n_events`` events."""
    from leadscore.features.online import EventArrays, OnlineFeatureBuilder, StageArrays

    params = load_params("params.yaml")
    spec = FeatureSpec(params.features)
    builder = OnlineFeatureBuilder(spec, params.baseline)
    rng = np.random.default_rng(0)
    as_of = np.array([1_767_225_600], dtype=np.int64)
    ts = as_of[0] - rng.integers(1, 200 * SECONDS_PER_DAY, n_events)
    names = rng.choice(list(spec.event_types), n_events).tolist()
    raw = {
        "job_title": np.array(["VP Marketing"], dtype=object),
        "seniority": np.array([None], dtype=object),
        "department": np.array([None], dtype=object),
        "country": np.array(["US"], dtype=object),
        "lead_source": np.array(["webinar"], dtype=object),
        "email_domain": np.array(["acme.com"], dtype=object),
        "_industry": np.array(["software"], dtype=object),
        "employees": np.array([120], dtype=object),
        "annual_revenue": np.array([1e7], dtype=object),
        "tech_stack": np.array(["aws;hubspot"], dtype=object),
    }
    stages = StageArrays(
        lead=np.zeros(2, dtype=np.int64),
        ts=as_of[0] - np.array([90, 30]) * SECONDS_PER_DAY,
        stage=np.array(["mql", "sal"], dtype=object),
    )
    created = as_of - 300 * SECONDS_PER_DAY
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        events = EventArrays(
            lead=np.zeros(n_events, dtype=np.int64), ts=ts, type_code=builder.type_codes(names)
        )
        builder.build(as_of, created, raw, events, stages)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"median_ms": statistics.median(times) * 1e3, "p99_ms": times[int(0.99 * len(times))] * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=50_000_000)
    ap.add_argument("--data", type=Path, default=Path("benchmarks/out/features_data"))
    ap.add_argument("--variant", choices=["builder", "hand_sql"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.data)))
        return
    tag = args.data / f"{args.leads}_{args.events}.done"
    if not tag.exists():
        print(f"generating {args.leads:,} leads / {args.events:,} events …", file=sys.stderr)
        make_data(args.data, args.leads, args.events)
        tag.touch()
    results = {}
    # hand-written SQL first and last, so file-cache warmth cannot favour the builder
    for variant in ("hand_sql", "builder", "hand_sql"):
        proc = subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--data", str(args.data)],
            capture_output=True,
            text=True,
            check=True,
        )
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        prev = results.get(variant)
        results[variant] = res if prev is None or res["seconds"] < prev["seconds"] else prev
    online = online_latency()
    ratio = results["builder"]["seconds"] / results["hand_sql"]["seconds"]
    lines = [
        f"Features for {args.leads:,} leads / {args.events:,} events (one snapshot per lead), 2 cores",
        "",
        "| variant | seconds | peak RSS (MB) | rows |",
        "|---|---|---|---|",
        *(f"| {k} | {v['seconds']:.1f} | {v['peak_mb']:.0f} | {v['rows']:,} |" for k, v in results.items()),
        "",
        f"builder / hand-written SQL time: **{ratio:.2f}×** (target ≤ 1.5×)",
        f"online builder, one lead with 200 events: median **{online['median_ms']:.3f} ms**, "
        f"p99 {online['p99_ms']:.3f} ms (target median < 1 ms)",
    ]
    text = "\n".join(lines)
    print(text)
    out = Path("benchmarks/out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "features.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
