"""Leads + a table of won deals (no status column), a tz-aware export time, a funnel with closed-won only.

Issue 11 item 5: a deals table whose every row is a win (``all_won: true``) maps without a status
column; ``validate.export_time`` ending in ``Z`` works through snapshots; a funnel without an ``sql``
stage runs end to end (validate -> snapshots -> features -> train -> evaluate -> thresholds -> bundle ->
explain) and the report speaks of the configured target, not of SQL.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest

from leadscore.models.bundle import run_bundle
from leadscore.models.explain import run_explain
from leadscore.models.thresholds import run_thresholds
from tests.integration.test_byod_end_to_end import (
    EXPORT_TIME,
    LEADS_DEALS_MAPPING,
    latent_funnel,
    leads_deals_export,
    run_pipeline,
    small_params,
)

pytestmark = pytest.mark.slow


def won_only_mapping() -> dict:
    mapping = copy.deepcopy(LEADS_DEALS_MAPPING)
    deals = mapping["tables"]["stage_history"][1]
    for key in ("status_column", "won_values", "lost_values", "open_values"):
        deals.pop(key)
    deals |= {"all_won": True, "created_stage": "opportunity"}
    return mapping


def test_won_deals_without_status_tz_export_time_and_closed_won_only_funnel(tmp_path: Path) -> None:
    funnel = latent_funnel()
    leads_deals_export(funnel, tmp_path / "raw")
    deals_path = tmp_path / "raw" / "deals.csv"
    deals = pd.read_csv(deals_path, dtype=str, keep_default_na=False)
    won = deals[deals["Status"] == "Closed Won"].drop(columns=["Status"])  # an orders-like export
    won.to_csv(deals_path, index=False)

    targets = {
        "closed_won": {
            "stage": "closed_won",
            "horizon_days": 60,
            "past_stages": ["closed_won", "closed_lost", "disqualified"],
        }
    }
    params = small_params(tmp_path, won_only_mapping(), targets, threshold_target="closed_won")
    params = params.model_copy(
        update={"validate_": params.validate_.model_copy(update={"export_time": EXPORT_TIME + "Z"})}
    )
    params = params.model_copy(
        update={
            "thresholds": params.thresholds.model_validate(
                {"target": "closed_won", "stages": [{"name": "hot", "probability": 0.05},
                                                    {"name": "rest", "probability": 0.0}]}
            )
        }
    )  # fmt: skip
    metrics = run_pipeline(params)
    assert set(metrics) == {"closed_won"}
    stages = pd.read_parquet(params.data.interim_dir / "stage_history.parquet")
    won_truth = set(funnel["stage_history"].loc[lambda d: d["stage"] == "closed_won", "lead_id"])
    assert set(stages.loc[stages["stage"] == "closed_won", "lead_id"]) == won_truth
    assert "closed_lost" not in set(stages["stage"])
    snap = json.loads((params.data.reports_dir / "snapshots.json").read_text())
    assert snap["export_end"].startswith("2025-06-15")

    run_thresholds(params)
    run_bundle(params)
    run_explain(params)
    html = (params.data.reports_dir / "explain.html").read_text()
    assert "closed_won" in html or "closed-won" in html.lower()
    assert "sales-qualified (SQL)" not in html
    assert "MQL→SQL" not in html


def test_dvc_yaml_names_no_target() -> None:
    """Target names come from params (snapshots.targets, thresholds.target), never from dvc.yaml."""
    from tests.integration.test_thresholds_dvc import ROOT

    text = (ROOT / "dvc.yaml").read_text()
    for name in ("sql", "closed_won", "opportunity"):
        assert f"/{name}/" not in text and f"_{name}." not in text and f"{name}_" not in text, name
