"""Batch feature builder: the spec as one Ibis expression, executed by DuckDB (embedded) by default.

The event aggregation is written in Ibis, not SQL text, so the same expression compiles to Spark,
Snowflake or BigQuery when a company outgrows one machine: pass another Ibis backend's tables.
Lead attributes and derived columns reuse the shared NumPy code (``attributes``, ``derive``), which is
also what the online builder runs.
"""

from __future__ import annotations

import math

import ibis
import numpy as np
import pandas as pd
from ibis import _

from leadscore.config import BaselineParams
from leadscore.data.contract import STAGE_RANK
from leadscore.features.derive import derive_features, rule_score
from leadscore.features.spec import SECONDS_PER_DAY, FeatureSpec

KEYS = ("lead_id", "snapshot_ts")


def event_aggregates_expr(events: ibis.Table, examples: ibis.Table, spec: FeatureSpec) -> ibis.Table:
    """Per (lead_id, snapshot_ts) event aggregates of the spec, using only events strictly before t.

    ``events`` has lead_id, ts, event_type; ``examples`` has lead_id, snapshot_ts. Examples without any
    event before t are absent from the result (the caller fills counts with 0, recency with NaN).
    """
    ev = events.filter(events.event_type.isin(list(spec.event_types))).select("lead_id", "ts", "event_type")
    joined = examples.select(*KEYS).join(
        ev,
        # Point-in-time: only events strictly before the snapshot can be known at the snapshot.
        [examples.lead_id == ev.lead_id, ev.ts < examples.snapshot_ts],
    )
    joined = joined.mutate(
        age_s=(_.snapshot_ts.epoch_seconds() - _.ts.epoch_seconds()).cast("float64"),
        day=_.ts.date(),
    )
    et = joined.event_type
    age = joined.age_s
    aggs: dict[str, ibis.Value] = {}
    for name, event_type, window in spec.count_features:
        aggs[name] = et.count(where=(et == event_type) & (age <= window * SECONDS_PER_DAY))
    for name, event_type in spec.recency_features:
        aggs[name] = age.min(where=et == event_type) / SECONDS_PER_DAY
    aggs["days_since_last_event"] = age.min() / SECONDS_PER_DAY
    aggs["events_total"] = et.count()
    weights = {k: float(v) for k, v in spec.params.decay_weights.items()}
    rate = math.log(2.0) / (spec.params.decay_half_life_days * SECONDS_PER_DAY)
    aggs["engagement_decayed"] = (et.substitute(weights, else_=0.0) * (-rate * age).exp()).sum()
    web = et.isin(list(spec.params.web_types))
    for name, window in spec.active_day_features:
        aggs[name] = joined.day.nunique(where=web & (age <= window * SECONDS_PER_DAY))
    return joined.group_by(list(KEYS)).aggregate(**aggs)


def stage_aggregates_expr(stages: ibis.Table, examples: ibis.Table) -> ibis.Table:
    """Per (lead_id, snapshot_ts) funnel position from stage rows strictly before t.

    ``stages`` has lead_id, stage, ts. Examples without stage rows before t are absent (filled later).
    """
    joined = examples.select(*KEYS).join(
        stages.select("lead_id", "stage", "ts"),
        [examples.lead_id == stages.lead_id, stages.ts < examples.snapshot_ts],
    )
    age = (joined.snapshot_ts.epoch_seconds() - joined.ts.epoch_seconds()).cast("float64")
    rank = joined.stage.substitute({k: float(v) for k, v in STAGE_RANK.items()}, else_=0.0)
    return joined.group_by(list(KEYS)).aggregate(
        stage_rank=rank.max(),
        days_since_stage_change=age.min() / SECONDS_PER_DAY,
        times_recycled=joined.stage.count(where=joined.stage == "recycled"),
        days_since_sql=age.min(where=joined.stage == "sql") / SECONDS_PER_DAY,
    )


_ZERO_WHEN_ABSENT = ("stage_rank", "times_recycled")


def assemble(
    examples: pd.DataFrame,
    aggregates: pd.DataFrame,
    attributes: pd.DataFrame,
    spec: FeatureSpec,
    baseline: BaselineParams,
) -> pd.DataFrame:
    """Join examples with their event aggregates and lead attributes; add derived columns and the rule.

    ``examples``: lead_id, snapshot_ts (+ any label columns, kept). ``aggregates``: from
    ``event_aggregates_expr`` joined with ``stage_aggregates_expr``.
    ``attributes``: from ``attributes.lead_attributes``.
    Returns examples' columns + ``spec.model_features`` + ``rule_score``, in the examples' row order.
    """
    out = examples.merge(aggregates, on=list(KEYS), how="left", validate="one_to_one")
    for name in (*spec.event_aggregates, *spec.stage_aggregates):
        if name not in out.columns:
            out[name] = np.nan
        if not name.startswith("days_since") or name in _ZERO_WHEN_ABSENT:
            # No event before t means zero of everything (but an unknown recency stays NaN).
            out[name] = out[name].fillna(0).astype(float)
        else:
            out[name] = out[name].astype(float)
    out = out.merge(attributes, on="lead_id", how="left", validate="many_to_one")
    created = out.pop("created_at")
    out["lead_age_days"] = (out["snapshot_ts"] - created).dt.total_seconds().to_numpy() / SECONDS_PER_DAY
    cols = {c: out[c].to_numpy() for c in out.columns}
    for name, values in derive_features(cols, spec).items():
        out[name] = values
        cols[name] = values
    out["rule_score"] = rule_score(cols, spec, baseline)
    keep = [c for c in examples.columns] + list(spec.model_features) + ["rule_score"]
    return out[keep]


def aggregates_expr(
    events: ibis.Table, stages: ibis.Table, examples: ibis.Table, spec: FeatureSpec
) -> ibis.Table:
    """Event and stage aggregates per (lead_id, snapshot_ts) of ``examples``, in one engine expression.

    Only keys with an event or a stage row before t are present; ``assemble`` fills the rest.
    """
    ev = event_aggregates_expr(events, examples, spec)
    st = stage_aggregates_expr(stages, examples)
    return ev.outer_join(st, list(KEYS)).select(
        lead_id=ibis.coalesce(ev.lead_id, st.lead_id),
        snapshot_ts=ibis.coalesce(ev.snapshot_ts, st.snapshot_ts),
        **{c: ev[c].cast("float64") for c in spec.event_aggregates},
        **{c: st[c].cast("float64") for c in spec.stage_aggregates},
    )


def build_features(
    con: ibis.BaseBackend,
    events: ibis.Table,
    stages: ibis.Table,
    examples: pd.DataFrame,
    attributes: pd.DataFrame,
    spec: FeatureSpec,
    baseline: BaselineParams,
) -> pd.DataFrame:
    """Feature table for in-memory ``examples`` (lead_id, snapshot_ts, ...): the whole batch path in one
    call, for tests and notebooks. The pipeline stage streams instead (``features.stage``)."""
    from leadscore.engine import scratch_table

    unique = examples[list(KEYS)].drop_duplicates()
    with scratch_table(con, unique, "examples") as ex_table:
        aggregates = aggregates_expr(events, stages, ex_table, spec).to_pandas()
    aggregates["snapshot_ts"] = aggregates["snapshot_ts"].astype(examples["snapshot_ts"].dtype)
    return assemble(examples, aggregates, attributes, spec, baseline)
