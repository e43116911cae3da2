"""DVC stage ``monitor``: backtest and drift of the champion on the newest export.

The champion is ``compare.champion`` (default: the registry alias), or the bundle in ``models/`` when
there is no champion yet (then the figures describe the new model itself; ``model.ref`` says which).

Writes ``reports/backtest.csv`` (``models.backtest``), ``reports/drift.json`` (``models.drift``: PSI per
feature and on the score, expected ROC-AUC and conversions, backtest summary, and
``retrain_recommended`` with the reasons from ``params.monitor.retrain``) and
``reports/drift_features.csv``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import Params
from leadscore.features.snapshots import first_stage_times
from leadscore.features.stage import snapshots_path
from leadscore.models.backtest import backtest_table
from leadscore.models.bundle import load_bundle
from leadscore.models.compare import Contender, load_champion
from leadscore.models.drift import drift_table, expected_auc, feature_psi
from leadscore.models.evaluate import round_floats
from leadscore.models.rescore import History, feature_table, predict_table, stage_of
from leadscore.models.thresholds import json_default


def sample_leads(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """At most ~``max_rows`` rows, whole leads, chosen by a hash of the lead id (same leads every run)."""
    if len(frame) <= max_rows:
        return frame
    h = pd.util.hash_pandas_object(frame["lead_id"].astype(str), index=False).to_numpy()
    keep = (h % 1_000_003) < int(1_000_003 * max_rows / len(frame))
    return frame[keep].reset_index(drop=True)


def newest_window(history: History, params: Params, target: str, end: pd.Timestamp) -> pd.DataFrame:
    """Every lead still open for ``target`` at the export's end: the leads the model scores today."""
    leads = history.leads
    tp = params.snapshots.targets[target]
    age = end - leads["created_at"]
    alive = (leads["created_at"] < end) & (age <= pd.Timedelta(days=params.snapshots.max_lead_age_days))
    ex = pd.DataFrame({"lead_id": leads.loc[alive, "lead_id"].to_numpy(), "snapshot_ts": end})
    stages = history.stages.select("lead_id", "stage", "ts").to_pandas()
    past = first_stage_times(stages, tp.past_stages)
    ex = ex[~(ex["lead_id"].map(past) <= end)].reset_index(drop=True)
    ex["snapshot_ts"] = ex["snapshot_ts"].astype("datetime64[us]")
    return ex


def run_monitor(params: Params) -> dict[str, Any]:
    champion = load_champion(params)
    model = champion or Contender(load_bundle(params.data.models_dir), str(params.data.models_dir))
    bundle = model.bundle
    target = params.thresholds.target if params.thresholds.target in bundle.targets else bundle.targets[0]
    cutoff_raw = bundle.metadata.get("data_cutoff")
    cutoff = pd.Timestamp(cutoff_raw) if cutoff_raw else None
    history = History.open(params)
    snapshots = pd.read_parquet(snapshots_path(params, target))
    summary = json.loads((params.data.reports_dir / "snapshots.json").read_text())
    end = pd.Timestamp(summary["export_end"]).tz_localize(None)

    # --- backtest: past cohorts with closed outcome windows ------------------------------------------
    lag = params.monitor.backtest_lag_days
    past = snapshots if lag is None else snapshots[snapshots["snapshot_ts"] <= end - pd.Timedelta(days=lag)]
    past = sample_leads(past.reset_index(drop=True), params.monitor.max_rows)
    feats_past = feature_table(bundle, history, past)
    p_past = predict_table(bundle, feats_past)[target]
    scored = past.assign(**{f"p_{target}": p_past, "stage": stage_of(bundle, p_past)})
    table = backtest_table(scored, target, cutoff)
    reports = params.data.reports_dir
    reports.mkdir(parents=True, exist_ok=True)
    round_floats_frame(table).to_csv(reports / "backtest.csv", index=False)

    # --- drift: training window vs the leads open now -------------------------------------------------
    ref_rows = snapshots[snapshots["snapshot_ts"] <= cutoff] if cutoff is not None else snapshots.iloc[0:0]
    if ref_rows.empty:
        ref_rows = snapshots[snapshots["split"] == "train"]
    ref_rows = sample_leads(ref_rows.reset_index(drop=True), params.monitor.max_rows)
    newest = sample_leads(newest_window(history, params, target, end), params.monitor.max_rows)
    ref_feats = feats_past if ref_rows is past else feature_table(bundle, history, ref_rows)
    new_feats = feature_table(bundle, history, newest)
    p_ref = predict_table(bundle, ref_feats)[target]
    p_new = predict_table(bundle, new_feats)[target]
    features = list(bundle.spec.model_features)
    psi_table = drift_table(ref_feats, new_feats, features, params.monitor.psi_bins)
    round_floats_frame(psi_table).to_csv(reports / "drift_features.csv", index=False)
    score_psi = feature_psi(pd.Series(p_ref), pd.Series(p_new), params.monitor.psi_bins)
    rule = params.monitor.retrain
    drifted = psi_table[psi_table["psi"] > rule.feature_psi]
    auc_ref, auc_new = expected_auc(p_ref), expected_auc(p_new)
    stages_new = stage_of(bundle, p_new)
    expected_by_stage = (
        pd.DataFrame({"stage": stages_new, "p": p_new})
        .groupby("stage")["p"]
        .agg(["size", "sum"])
        .reset_index()
    )
    # calibration-in-the-large out of sample: every closed month after the champion's training window
    closed = table[(table["stage"] == "all") & ~table["in_training_window"]]
    latest = None
    if len(closed):
        exp_sum, real_sum = closed["expected_conversions"].sum(), closed["realized_conversions"].sum()
        latest = {
            "month": f"{closed['month'].iloc[0]}..{closed['month'].iloc[-1]}",
            "n": int(closed["n"].sum()),
            "expected_rate": exp_sum / closed["n"].sum(),
            "realized_rate": real_sum / closed["n"].sum(),
            "calibration_ratio": real_sum / exp_sum if exp_sum > 0 else float("nan"),
        }

    reasons = []
    if score_psi > rule.score_psi:
        reasons.append(f"score PSI {score_psi:.3f} > {rule.score_psi}")
    if len(drifted) > rule.max_drifted_features:
        reasons.append(
            f"{len(drifted)} features with PSI > {rule.feature_psi} (more than {rule.max_drifted_features}): "
            + ", ".join(drifted["feature"].head(5))
        )
    if np.isfinite(auc_ref) and np.isfinite(auc_new) and auc_ref - auc_new > rule.expected_auc_drop:
        reasons.append(
            f"expected ROC-AUC fell from {auc_ref:.3f} to {auc_new:.3f} (> {rule.expected_auc_drop})"
        )
    if latest is not None and np.isfinite(latest["calibration_ratio"]):
        lo, hi = rule.calibration_ratio
        if not lo <= latest["calibration_ratio"] <= hi:
            ratio = latest["calibration_ratio"]
            reasons.append(
                f"backtest {latest['month']} (after training): realized / expected conversions {ratio:.2f} "
                f"outside [{lo}, {hi}]"
            )
    out = {
        "model": {**model.describe(), "is_champion": champion is not None},
        "target": target,
        "windows": {
            "reference": {"until": str(cutoff) if cutoff is not None else None, "rows": len(ref_rows)},
            "newest": {"as_of": str(end), "rows": len(newest)},
        },
        "score_psi": score_psi,
        "feature_psi_top": psi_table.head(10).to_dict(orient="records"),
        "drifted_features": drifted["feature"].tolist(),
        "expected_roc_auc": {"reference": auc_ref, "newest": auc_new},
        "test_roc_auc": ((bundle.metrics.get(target) or {}).get("model") or {}).get("roc_auc"),
        "expected_conversions": {
            "horizon_days": params.snapshots.targets[target].horizon_days,
            "total": float(np.sum(p_new)),
            "by_stage": {
                r.stage: {"leads": int(r.size), "expected": float(r.sum)}
                for r in expected_by_stage.itertuples()
            },
        },
        "backtest_latest": None
        if latest is None
        else {k: latest[k] for k in ("month", "n", "expected_rate", "realized_rate", "calibration_ratio")},
        "retrain_recommended": bool(reasons),
        "reasons": reasons or ["no retrain rule passed"],
        "rule": rule.model_dump(mode="json"),
    }
    out = round_floats(json.loads(json.dumps(out, default=json_default)))
    (reports / "drift.json").write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return out



def round_floats_frame(frame: pd.DataFrame, digits: int = 6) -> pd.DataFrame:
    return frame.round(digits)
