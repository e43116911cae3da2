"""Score past (lead, snapshot) examples with any bundle, each with its own feature spec.

``compare`` (champion vs challenger on the same slice), ``backtest`` (the champion scoring the past) and
``drift`` (feature and score distributions) all need the same thing: the batch feature builder run with the
*bundle's* feature spec and rule over the validated tables, then the bundle's boosters, calibrators and
funnel-chain cap. Only rows and times change; the features are point-in-time exactly as in training
(events and stage rows strictly before the snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import numpy as np
import pandas as pd

from leadscore.config import Params
from leadscore.features.attributes import lead_attributes
from leadscore.features.batch import build_features
from leadscore.features.stage import read_interim
from leadscore.models.bundle import Bundle
from leadscore.models.chain import chain_consistent


@dataclass
class History:
    """The validated tables of one export (``data/interim``), opened once for many scorings."""

    leads: pd.DataFrame
    accounts: pd.DataFrame
    con: ibis.BaseBackend
    events: ibis.Table
    stages: ibis.Table

    @classmethod
    def open(cls, params: Params) -> History:
        tables = read_interim(params, ("accounts", "leads"))
        con = ibis.duckdb.connect()
        return cls(
            leads=tables["leads"],
            accounts=tables["accounts"],
            con=con,
            events=con.read_parquet(params.data.interim_dir / "events.parquet"),
            stages=con.read_parquet(params.data.interim_dir / "stage_history.parquet"),
        )


def feature_table(bundle: Bundle, history: History, examples: pd.DataFrame) -> pd.DataFrame:
    """``examples`` (lead_id, snapshot_ts, ...) plus the bundle's model features and rule score."""
    attrs = lead_attributes(history.leads, history.accounts, bundle.spec.params)
    return build_features(
        history.con, history.events, history.stages, examples, attrs, bundle.spec, bundle.baseline
    )


def predict_table(bundle: Bundle, features: pd.DataFrame) -> dict[str, np.ndarray]:
    """Calibrated probability per target of the bundle, after the funnel-chain cap (what the API serves)."""
    probs = bundle.predict(bundle.encoder.transform(features), num_threads=2)
    chain = bundle.metadata.get("chain") or {}
    upper = chain.get("upper")
    if upper in probs:
        rank = features["stage_rank"].to_numpy(dtype=np.float64)
        for target in chain.get("capped", ()):
            if target in probs and target != upper:
                both, _ = chain_consistent(
                    {"sql": probs[upper], "lower": probs[target]}, rank, upper="sql", lower="lower"
                )
                probs[target] = both["lower"]
    return probs


def score_examples(bundle: Bundle, history: History, examples: pd.DataFrame) -> pd.DataFrame:
    """``examples`` plus ``p_<target>`` for every target of the bundle, in the examples' row order."""
    features = feature_table(bundle, history, examples)
    out = examples.reset_index(drop=True).copy()
    for target, p in predict_table(bundle, features).items():
        out[f"p_{target}"] = p
    return out


def stage_of(bundle: Bundle, p: np.ndarray) -> np.ndarray:
    """Funnel stage names for probabilities of the bundle's thresholds target, by its own rules."""
    from leadscore.models.thresholds import assign_stages

    return assign_stages(p, list(bundle.thresholds.get("stages", [])))
