"""Training on small synthetic feature tables: validation split, vocabularies, leakage guards, settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.config import Params
from leadscore.features.encode import MatrixEncoder
from leadscore.features.spec import FeatureSpec
from leadscore.models.train import (
    fit_target,
    fit_vocabulary,
    lgb_params,
    monotone_constraints,
    train_all,
    validation_mask,
)
from tests.model.synthetic import synthetic_frames, tmp_params


@pytest.fixture(scope="module")
def params(tmp_path_factory: pytest.TempPathFactory) -> Params:
    return tmp_params(tmp_path_factory.mktemp("train"), **{"train.n_estimators": 80})


@pytest.fixture(scope="module")
def frames(params: Params) -> dict[str, dict[str, pd.DataFrame]]:
    return synthetic_frames(params, n_leads=1000)


def test_validation_is_late_lead_disjoint_and_sized() -> None:
    dates = pd.date_range("2024-01-01", periods=10, freq="30D", unit="us")
    rng = np.random.default_rng(0)
    first = rng.integers(0, 10, 3000)
    rows = [(f"L{i}", dates[d]) for i, f in enumerate(first) for d in range(f, min(10, f + 4))]
    train = pd.DataFrame(rows, columns=["lead_id", "snapshot_ts"])
    mask = validation_mask(train, share=0.15)
    val, fit = train[mask], train[~mask]
    assert not set(val.lead_id) & set(fit.lead_id)
    # every validation lead is first seen after every fit lead
    assert val.groupby("lead_id").snapshot_ts.min().min() > fit.groupby("lead_id").snapshot_ts.min().max()
    assert mask.mean() >= 0.15
    # the latest cut that reaches the share: one date later would be too small
    cutoff = val.snapshot_ts.min()
    later = train.groupby("lead_id").snapshot_ts.transform("min") > cutoff
    assert later.mean() < 0.15
    assert train.snapshot_ts.min() in set(fit.snapshot_ts)


def test_validation_needs_two_dates() -> None:
    one = pd.DataFrame({"lead_id": ["a", "b"], "snapshot_ts": pd.to_datetime(["2024-01-01"] * 2)})
    with pytest.raises(ValueError, match="single snapshot date"):
        validation_mask(one, 0.15)


def test_vocabulary_comes_from_training_slices_only(params: Params, frames: dict) -> None:
    spec = FeatureSpec(params.features)
    changed = {t: {s: f.copy() for s, f in splits.items()} for t, splits in frames.items()}
    for target in changed:
        changed[target]["test"]["industry"] = "brand_new_industry"
        changed[target]["calibration"].loc[:5, "country"] = "atlantis"
    vocab = fit_vocabulary({t: changed[t]["train"] for t in changed}, spec)
    assert "brand_new_industry" not in vocab["industry"]
    assert "atlantis" not in vocab["country"]
    assert vocab == fit_vocabulary({t: frames[t]["train"] for t in frames}, spec)
    assert all(v == sorted(v) for v in vocab.values())
    # unseen categories are scored (as missing), not rejected
    x = MatrixEncoder(spec, vocab).transform(changed["sql"]["test"])
    assert np.isnan(x[:, spec.model_features.index("industry")]).all()


def test_lightgbm_settings_are_deterministic_and_unweighted(params: Params, frames: dict) -> None:
    lp = lgb_params(params.train)
    assert lp["deterministic"] and lp["force_col_wise"]
    assert lp["seed"] == lp["bagging_seed"] == lp["feature_fraction_seed"] == lp["data_random_seed"] == 7
    assert not {"scale_pos_weight", "is_unbalance", "class_weight"} & set(lp)
    spec = FeatureSpec(params.features)
    encoder = MatrixEncoder(spec, fit_vocabulary({"sql": frames["sql"]["train"]}, spec))
    model = fit_target("sql", frames["sql"], encoder, params)
    text = model.model_text
    assert "[scale_pos_weight: 1]" in text and "[is_unbalance: 0]" in text
    assert "[deterministic: 1]" in text
    # the saved model is cut at the early-stopping iteration
    assert text.count("\nTree=") == model.summary["best_iteration"] >= 1
    assert model.booster.feature_name() == list(spec.model_features)
    categorical = text.split("[categorical_feature: ", 1)[1].split("]", 1)[0]
    assert [int(i) for i in categorical.split(",")] == encoder.categorical_indices_


def test_monotone_constraints_follow_the_spec(params: Params, frames: dict) -> None:
    spec = FeatureSpec(params.features)
    sign = dict(zip(spec.model_features, monotone_constraints(spec), strict=True))
    assert sign["cnt_pricing_view_30d"] == sign["engagement_decayed"] == sign["high_intent_30d"] == 1
    assert sign["days_since_last_demo_request"] == sign["days_since_last_event"] == -1
    # negative events, attributes and funnel position are free
    assert sign["cnt_unsubscribe_7d"] == sign["days_since_last_unsubscribe"] == 0
    assert sign["employees"] == sign["lead_age_days"] == sign["stage_rank"] == sign["industry"] == 0
    encoder = MatrixEncoder(spec, fit_vocabulary({"sql": frames["sql"]["train"]}, spec))
    text = fit_target("sql", frames["sql"], encoder, params).model_text
    assert f"[monotone_constraints: {','.join(map(str, monotone_constraints(spec)))}]" in text
    off = params.model_copy(update={"train": params.train.model_copy(update={"monotone_intent": False})})
    assert "[monotone_constraints: ]" in fit_target("sql", frames["sql"], encoder, off).model_text


def _fit(params: Params, frames: dict) -> dict:
    return train_all(frames, params).targets


def test_test_labels_never_reach_the_models(params: Params, frames: dict) -> None:
    """Flip every test label: models, calibrators and predicted probabilities stay the same."""
    base = _fit(params, frames)
    flipped = {t: {s: f.copy() for s, f in splits.items()} for t, splits in frames.items()}
    for t in flipped:
        flipped[t]["test"]["label"] = (1 - flipped[t]["test"]["label"]).astype(np.int8)
    again = _fit(params, flipped)
    for t in base:
        assert again[t].model_text == base[t].model_text
        assert again[t].calibrator == base[t].calibrator
        np.testing.assert_array_equal(again[t].predictions["p"], base[t].predictions["p"])


def test_calibration_labels_move_the_calibrator_only(params: Params, frames: dict) -> None:
    base = _fit(params, frames)
    shuffled = {t: {s: f.copy() for s, f in splits.items()} for t, splits in frames.items()}
    rng = np.random.default_rng(5)
    for t in shuffled:
        cal = shuffled[t]["calibration"]
        cal["label"] = rng.permutation(cal["label"].to_numpy())
    again = _fit(params, shuffled)
    for t in base:
        assert again[t].model_text == base[t].model_text
        assert again[t].calibrator != base[t].calibrator


def test_predictions_columns_and_chain(params: Params, frames: dict) -> None:
    result = train_all(frames, params)
    sql, won = result.predictions["sql"], result.predictions["closed_won"]
    common = {
        "lead_id", "snapshot_ts", "split", "label", "p_raw", "p", "p_uncapped", "chain_capped", "rule_score",
        "oracle_p", "stage_rank", "lead_source", "industry", "size_band", "seniority", "department",
        "email_type",
    }  # fmt: skip
    assert set(sql.columns) == common
    assert set(won.columns) == common | {"p_sql"}
    assert set(sql.split) == {"calibration", "test"}
    assert len(won) == len(frames["closed_won"]["calibration"]) + len(frames["closed_won"]["test"])
    pre_sql = won.stage_rank < 3
    assert (won.p[pre_sql] <= won.p_sql[pre_sql]).all()
    assert won.chain_capped.any()  # the synthetic data makes the cap bind sometimes
    assert (won.p[~pre_sql] == won.p_uncapped[~pre_sql]).all()
    assert result.summary["targets"]["closed_won"]["chain_capped"] == int(won.chain_capped.sum())
    assert result.summary["data_cutoff"] == str(max(frames[t]["train"].snapshot_ts.max() for t in frames))


def test_missing_feature_column_fails_clearly(params: Params, frames: dict) -> None:
    broken = {t: dict(splits) for t, splits in frames.items()}
    broken["sql"]["train"] = frames["sql"]["train"].drop(columns=["engagement_decayed"])
    with pytest.raises(ValueError, match="engagement_decayed"):
        train_all(broken, params)
