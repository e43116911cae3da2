"""Behavioural tests of a trained demo model (built once per session by ``conftest.demo``).

Directional: more high-intent engagement never lowers P(SQL). Invariance: who a lead is (id, name,
e-mail local part) never changes a score. Calibration: the calibrated probabilities match observed rates
within what the slice size allows. Chain: P(closed_won) <= P(SQL) before SQL. And the online path (the
API's builder + the bundle) reproduces the pipeline's batch predictions exactly.
"""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest

from leadscore.data.contract import NON_FEATURE_COLUMNS, STAGE_RANK
from leadscore.features.attributes import lead_attributes
from leadscore.features.batch import build_features
from leadscore.features.spec import FeatureSpec
from leadscore.models.chain import chain_consistent
from leadscore.models.evaluate import ece, reliability
from tests.model.conftest import Demo, online_features, score, seconds

pytestmark = pytest.mark.slow

INTENT_EVENTS = ("pricing_view", "pricing_view", "demo_view", "demo_view", "demo_request")


def _examples(demo: Demo, target: str, split: str = "test", n: int = 1500) -> pd.DataFrame:
    """Up to ``n`` examples of a slice, one per lead (deterministic sample), with their predictions."""
    pred = demo.predictions(target)
    rows = pred[pred["split"] == split].drop_duplicates("lead_id")
    return rows.sample(n=min(n, len(rows)), random_state=0).reset_index(drop=True)


def _recent_intent(examples: pd.DataFrame, hours_before: float = 24) -> pd.DataFrame:
    """Pricing and demo page views and a demo request, a day before each example's snapshot."""
    as_of = seconds(examples["snapshot_ts"])
    start = as_of - int(hours_before * 3600)
    return pd.concat(
        [
            pd.DataFrame({"row": np.arange(len(examples)), "ts": start + 600 * i, "event_type": event})
            for i, event in enumerate(INTENT_EVENTS)
        ],
        ignore_index=True,
    )


def test_online_path_reproduces_batch_predictions(demo: Demo) -> None:
    """The API's feature builder + the bundle give the pipeline's (batch, DuckDB) predictions."""
    for target in demo.params.snapshots.targets:
        ex = _examples(demo, target)
        probs = score(demo, online_features(demo, ex))
        np.testing.assert_allclose(probs[target], ex["p_uncapped"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("hours_before", [1, 24])
def test_more_recent_high_intent_engagement_never_lowers_p_sql(demo: Demo, hours_before: float) -> None:
    """Two pricing views, two demo-page views and a demo request in the last day: P(SQL) never drops.

    (Monotone constraints in training guarantee this for recent events. For events days back, a
    recency feature moving from "never" (NaN) to a few days is not covered by the constraints, because
    LightGBM routes missing values on its own; see the note in ``models.train.monotone_constraints``.)
    """
    ex = _examples(demo, "sql")
    assert len(ex) >= 500
    assert (ex["stage_rank"] < STAGE_RANK["sql"]).all()
    before = score(demo, online_features(demo, ex))["sql"]
    after = score(demo, online_features(demo, ex, _recent_intent(ex, hours_before)))["sql"]
    assert np.all(after >= before - 1e-12), f"{np.sum(after < before - 1e-12)} leads lowered"
    # and the change is material for most leads, not a flat model
    assert np.median(after / before) > 1.5


def test_identity_is_not_a_feature(demo: Demo) -> None:
    features = set(demo.bundle.spec.model_features)
    assert not features & set(NON_FEATURE_COLUMNS)
    assert not [f for f in features if "name" in f or f.endswith("email")]


def _renamed(demo: Demo) -> tuple[pd.DataFrame, dict[str, str]]:
    """The leads table with new lead ids, first/last names and e-mail local parts (domains kept)."""
    leads = demo.tables["leads"].copy()
    new_ids = {old: f"X-{i:07d}" for i, old in enumerate(leads["lead_id"][::-1])}
    leads["lead_id"] = leads["lead_id"].map(new_ids)
    if "first_name" in leads:
        leads["first_name"] = "Zed"
    if "last_name" in leads:
        leads["last_name"] = leads["last_name"].astype(str).str[::-1]
    if "email" in leads:
        domain = leads["email"].astype(str).str.split("@").str[-1]
        leads["email"] = "someone.else+" + leads.index.astype(str) + "@" + domain
    return leads, new_ids


def test_identity_does_not_change_the_online_score(demo: Demo) -> None:
    ex = _examples(demo, "sql", n=800)
    base = score(demo, online_features(demo, ex))
    leads, new_ids = _renamed(demo)
    renamed = ex.assign(lead_id=ex["lead_id"].map(new_ids))
    ev = demo.tables["events"].assign(lead_id=lambda f: f["lead_id"].map(new_ids))
    sh = demo.tables["stage_history"].assign(lead_id=lambda f: f["lead_id"].map(new_ids))
    other = Demo(demo.params, demo.bundle, {**demo.tables, "leads": leads, "events": ev, "stage_history": sh})
    again = score(other, online_features(other, renamed))
    for target in base:
        np.testing.assert_array_equal(again[target], base[target])


def test_identity_does_not_change_the_batch_features(demo: Demo) -> None:
    """The pipeline's own builder (DuckDB) on renamed leads gives the same features, hence scores."""
    spec = FeatureSpec(demo.params.features)
    ex = _examples(demo, "sql", n=800)[["lead_id", "snapshot_ts"]]
    leads, new_ids = _renamed(demo)

    def batch(leads_table: pd.DataFrame, ids: dict[str, str] | None) -> pd.DataFrame:
        def remap(frame: pd.DataFrame) -> pd.DataFrame:
            return frame.assign(lead_id=frame["lead_id"].map(ids)) if ids else frame

        con = ibis.duckdb.connect()
        events = con.create_table("events", remap(demo.tables["events"]))
        stages = con.create_table("stages", remap(demo.tables["stage_history"]))
        attrs = lead_attributes(leads_table, demo.tables["accounts"], spec.params)
        out = build_features(con, events, stages, remap(ex), attrs, spec, demo.bundle.baseline)
        return out.sort_values("snapshot_ts", kind="stable").set_index(
            out["lead_id"].map({v: k for k, v in (ids or {}).items()}) if ids else out["lead_id"]
        )

    a = batch(demo.tables["leads"], None)
    b = batch(leads, new_ids).loc[a.index]
    cols = [*spec.model_features, "rule_score"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    probs_a = demo.bundle.predict(demo.bundle.encoder.transform(a))
    probs_b = demo.bundle.predict(demo.bundle.encoder.transform(b))
    for target in probs_a:
        np.testing.assert_array_equal(probs_a[target], probs_b[target])


def _noise_ece(y: np.ndarray, p: np.ndarray, bins: int) -> float:
    """Expected ECE of a perfectly calibrated model on this many rows: per bin E|mean y - mean p| for a
    binomial mean, about sqrt(2/pi) * sqrt(p(1-p)/n_b), weighted by bin size."""
    rel = reliability(y, p, bins)
    se = np.sqrt(rel["mean_predicted"] * (1 - rel["mean_predicted"]) / rel["n"])
    return float((rel["n"] / rel["n"].sum() * np.sqrt(2 / np.pi) * se).sum())


@pytest.mark.parametrize("target", ["sql", "closed_won"])
def test_calibration_bound_on_calibration_slice(demo: Demo, target: str) -> None:
    """ECE (10 equal-frequency bins) within 0.03 and within three times the noise level of the slice.

    With base rates near 1 %, 0.03 alone would pass a constant predictor, so the bound that matters
    is the size-justified one: a perfectly calibrated model shows ECE ~ ``_noise_ece`` from binomial noise
    alone; three times that is what a calibrated model stays under.
    """
    pred = demo.predictions(target)
    cal = pred[pred["split"] == "calibration"]
    y, p = cal["label"].to_numpy(), cal["p_uncapped"].to_numpy()
    bins = demo.params.evaluate.ece_bins
    bound = min(0.03, 3 * _noise_ece(y, p, bins))
    assert ece(y, p, bins) <= bound
    # the riskiest decile (where sales calls are decided) is calibrated within three standard errors
    top = reliability(y, p, bins).iloc[-1]
    se = np.sqrt(top["observed"] * (1 - top["observed"]) / top["n"]) + 1e-3
    assert abs(top["mean_predicted"] - top["observed"]) <= 3 * se


def test_calibration_holds_out_of_time(demo: Demo) -> None:
    """On the later test slice (never seen by model or calibrator), ECE stays within the issue's 0.03."""
    for target in demo.params.snapshots.targets:
        metrics = demo.bundle.metrics[target]
        assert metrics["model"]["ece"] <= 0.03
        pred = demo.predictions(target)
        test = pred[pred["split"] == "test"]
        assert abs(test["p"].mean() - test["label"].mean()) <= 0.01


def test_closed_won_never_above_sql_before_sql(demo: Demo) -> None:
    """Online: the bundle's two models plus the chain, for pre-SQL closed-won examples."""
    ex = _examples(demo, "closed_won")
    cols = online_features(demo, ex)
    raw = score(demo, cols)
    chained, capped = chain_consistent(raw, cols["stage_rank"])
    pre_sql = cols["stage_rank"] < STAGE_RANK["sql"]
    assert pre_sql.sum() >= 500
    assert np.all(chained["closed_won"][pre_sql] <= chained["sql"][pre_sql])
    # the pipeline's predictions carry the same capped values
    np.testing.assert_allclose(chained["closed_won"], ex["p"], rtol=0, atol=1e-12)
    assert capped.tolist() == ex["chain_capped"].tolist()
    # leads already at SQL or beyond are left alone
    np.testing.assert_array_equal(chained["closed_won"][~pre_sql], raw["closed_won"][~pre_sql])


def test_model_beats_the_rule_on_sql(demo: Demo) -> None:
    metrics = demo.bundle.metrics["sql"]
    assert metrics["model"]["roc_auc"] >= metrics["rule_baseline"]["roc_auc"] + 0.05
    assert metrics["model"]["roc_auc"] <= metrics["oracle"]["roc_auc"] + 0.01  # no leak past the oracle
