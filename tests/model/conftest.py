"""A small demo model, built once per session through the real stage functions in a temp folder.

generate (n_leads=6000) -> validate -> snapshots -> features -> train -> evaluate -> bundle, so the model
tests never depend on what happens to lie in data/ or models/. Stage thresholds are fixed probabilities
here (the goal-based thresholds stage is not what these tests are about).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.config import Params
from leadscore.features.online import RAW_ATTRIBUTE_COLUMNS, EventArrays, OnlineFeatureBuilder, StageArrays
from leadscore.models.bundle import Bundle
from tests.model.synthetic import tmp_params

DEMO_LEADS = 6000
FIXED_STAGES = [
    {"name": "sales_ready", "probability": 0.2},
    {"name": "mql", "probability": 0.05},
    {"name": "nurture", "probability": 0.0},
]


@dataclass
class Demo:
    """The built demo: params (paths under a temp folder), the loaded bundle and the interim tables."""

    params: Params
    bundle: Bundle
    tables: dict[str, pd.DataFrame]

    def predictions(self, target: str) -> pd.DataFrame:
        return pd.read_parquet(self.params.data.build_dir / "train" / f"predictions_{target}.parquet")

    def processed(self, target: str, split: str) -> pd.DataFrame:
        return pd.read_parquet(self.params.data.processed_dir / target / f"{split}.parquet")


def build_demo(root: Path, n_leads: int = DEMO_LEADS) -> Demo:
    """Run every stage up to the bundle on generated demo data under ``root``."""
    from leadscore.data.generate import generate, write_tables
    from leadscore.data.validate import run_validate
    from leadscore.features.stage import read_interim, run_features, run_snapshots
    from leadscore.models.bundle import load_bundle, run_bundle
    from leadscore.models.evaluate import run_evaluate
    from leadscore.models.train import run_train

    params = tmp_params(root, **{"generate.n_leads": n_leads, "thresholds.stages": FIXED_STAGES})
    write_tables(generate(params.generate, params.features), params.data.raw_dir)
    run_validate(params)
    run_snapshots(params)
    run_features(params)
    run_train(params)
    run_evaluate(params)
    run_bundle(params)
    tables = read_interim(params, ("accounts", "leads", "events", "stage_history"))
    return Demo(params, load_bundle(params.data.models_dir), tables)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return build_demo(tmp_path_factory.mktemp("demo"))


def seconds(values: pd.Series | np.ndarray) -> np.ndarray:
    """Epoch seconds (int64) of timestamps."""
    return pd.to_datetime(pd.Series(values)).astype("datetime64[s]").astype(np.int64).to_numpy()


def online_features(
    demo: Demo,
    examples: pd.DataFrame,
    extra_events: pd.DataFrame | None = None,
    leads: pd.DataFrame | None = None,
) -> dict[str, np.ndarray]:
    """Online-builder features for ``examples`` (lead_id, snapshot_ts; one row per lead).

    Each example gets its lead's whole event and stage history (the builder itself cuts at as_of, as the
    API's does), plus ``extra_events`` (row, ts, event_type) when given. ``leads`` replaces the leads
    table (for invariance tests).
    """
    builder = OnlineFeatureBuilder(demo.bundle.spec, demo.bundle.baseline)
    leads = demo.tables["leads"] if leads is None else leads
    accounts = demo.tables["accounts"].rename(
        columns={"industry": "_industry", "country": "_account_country"}
    )
    frame = examples[["lead_id", "snapshot_ts"]].merge(leads, on="lead_id", how="left", validate="one_to_one")
    frame = frame.merge(accounts, on="account_id", how="left")
    row_of = pd.Series(np.arange(len(frame)), index=frame["lead_id"])

    ev = demo.tables["events"]
    ev = ev[ev["lead_id"].isin(row_of.index)]
    ev_row = row_of.loc[ev["lead_id"]].to_numpy()
    ev_ts, ev_type = seconds(ev["ts"]), ev["event_type"].to_numpy(dtype=object)
    if extra_events is not None:
        ev_row = np.r_[ev_row, extra_events["row"].to_numpy()]
        ev_ts = np.r_[ev_ts, extra_events["ts"].to_numpy(dtype=np.int64)]
        ev_type = np.r_[ev_type, extra_events["event_type"].to_numpy(dtype=object)]
    events = EventArrays(lead=ev_row, ts=ev_ts, type_code=builder.type_codes(list(ev_type)))

    sh = demo.tables["stage_history"]
    sh = sh[sh["lead_id"].isin(row_of.index)]
    stages = StageArrays(
        lead=row_of.loc[sh["lead_id"]].to_numpy(),
        ts=seconds(sh["ts"]),
        stage=sh["stage"].to_numpy(dtype=object),
    )
    raw = {c: frame[c].to_numpy(dtype=object) for c in RAW_ATTRIBUTE_COLUMNS if c in frame.columns}
    if "tech_stack" not in raw:
        raw["tech_stack"] = np.full(len(frame), None, dtype=object)
    return builder.build(seconds(frame["snapshot_ts"]), seconds(frame["created_at"]), raw, events, stages)


def score(demo: Demo, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Calibrated probability per target (before the chain) for online-builder columns."""
    return demo.bundle.predict(demo.bundle.encoder.transform(cols))
