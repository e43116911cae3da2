"""Metric functions against hand-computed values; evaluate_target and the plot data on tiny frames."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.config import EvaluateParams
from leadscore.models.evaluate import (
    brier,
    ece,
    equal_frequency_bins,
    evaluate_target,
    expected_positives_top,
    fit_rule_probability,
    lift_at,
    log_loss,
    pr_auc,
    recall_at,
    reliability,
    roc_auc,
    round_floats,
)
from leadscore.models.plots import curve_tables, plot_tables

Y4 = np.array([0, 0, 1, 1])
S4 = np.array([0.1, 0.4, 0.35, 0.8])


def test_roc_and_pr_auc_by_hand() -> None:
    # pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3 of 4
    assert roc_auc(Y4, S4) == pytest.approx(0.75)
    # ranked: 0.8 (pos, precision 1/1), 0.4, 0.35 (pos, precision 2/3), 0.1 -> AP = (1 + 2/3) / 2
    assert pr_auc(Y4, S4) == pytest.approx((1 + 2 / 3) / 2)


def test_roc_auc_counts_ties_as_half() -> None:
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)


def test_brier_and_log_loss_by_hand() -> None:
    assert brier(Y4, S4) == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)
    expected = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert log_loss(Y4, S4) == pytest.approx(expected)
    # a confident mistake is clipped, not infinite
    assert math.isfinite(log_loss(np.array([1]), np.array([0.0])))


def test_equal_frequency_bins_sizes_and_order() -> None:
    p = np.array([0.9, 0.1, 0.5, 0.3, 0.7])
    bins = equal_frequency_bins(p, 2)
    assert [len(b) for b in bins] == [3, 2]
    assert sorted(p[bins[0]]) == [0.1, 0.3, 0.5]
    assert sorted(p[bins[1]]) == [0.7, 0.9]
    # more bins than rows: one row per bin, no empty bins
    assert [len(b) for b in equal_frequency_bins(p[:3], 10)] == [1, 1, 1]


def test_ece_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    # bin 1: mean p 0.2, rate 1/3; bin 2: mean p 2.2/3, rate 2/3
    expected = 0.5 * abs(0.2 - 1 / 3) + 0.5 * abs(2.2 / 3 - 2 / 3)
    assert ece(y, p, bins=2) == pytest.approx(expected)
    assert expected == pytest.approx(0.1)


def test_ece_weights_bins_by_size() -> None:
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.0, 0.0, 0.0, 1.0, 1.0])
    # bins of 3 and 2 rows: |0 - 1/3| * 3/5 + |1 - 1| * 2/5
    assert ece(y, p, bins=2) == pytest.approx(0.2)
    table = reliability(y, p, 2)
    assert table["n"].tolist() == [3, 2]
    assert table["observed"].tolist() == pytest.approx([1 / 3, 1.0])


def test_ece_of_the_base_rate_in_one_bin_is_zero() -> None:
    y = np.array([1, 0, 0, 0] * 25)
    assert ece(y, np.full(100, 0.25), bins=1) == pytest.approx(0.0)
    assert ece(y, np.full(100, 0.5), bins=1) == pytest.approx(0.25)


Y10 = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])


def test_lift_and_recall_without_ties() -> None:
    s = np.arange(10, 0, -1, dtype=float)  # row 0 ranks first
    # top 10%: row 0 (positive): rate 1 / base 0.3
    assert lift_at(Y10, s, 0.1) == pytest.approx(1 / 0.3)
    assert recall_at(Y10, s, 0.1) == pytest.approx(1 / 3)
    # top 20%: rows 0, 1: one positive
    assert lift_at(Y10, s, 0.2) == pytest.approx(0.5 / 0.3)
    assert recall_at(Y10, s, 0.2) == pytest.approx(1 / 3)


def test_lift_splits_tied_scores_evenly() -> None:
    s = np.array([5, 5, 5, 5, 1, 1, 1, 1, 1, 1], dtype=float)
    # the top group: 4 rows, 2 positives; the top 2 rows hold 2 * 2/4 = 1 positive in expectation
    assert expected_positives_top(Y10, s, np.array([0, 1, 2, 4, 10])).tolist() == pytest.approx(
        [0.0, 0.5, 1.0, 2.0, 3.0]
    )
    assert lift_at(Y10, s, 0.2) == pytest.approx(0.5 / 0.3)
    assert recall_at(Y10, s, 0.2) == pytest.approx(1 / 3)
    # row order inside the tie does not matter
    perm = np.array([3, 1, 2, 0, 9, 8, 7, 6, 5, 4])
    assert lift_at(Y10[perm], s[perm], 0.2) == pytest.approx(lift_at(Y10, s, 0.2))


def test_rule_probability_recovers_a_logistic() -> None:
    rng = np.random.default_rng(3)
    points = rng.choice([0.0, 10.0, 20.0, 35.0, 60.0, 80.0], 40000)
    y = (rng.random(40000) < 1 / (1 + np.exp(-(0.05 * points - 2.0)))).astype(int)
    rule = fit_rule_probability(points, y)
    assert rule.a == pytest.approx(0.05, abs=0.004)
    assert rule.b == pytest.approx(-2.0, abs=0.08)
    constant = fit_rule_probability(np.full(10, 7.0), np.array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0]))
    assert constant.a == 0.0
    assert constant.transform(np.array([0.0, 100.0])) == pytest.approx([0.2, 0.2])


def _predictions(rng: np.random.Generator, n: int, oracle: bool) -> pd.DataFrame:
    frames = []
    for split in ("calibration", "test"):
        p = rng.uniform(0.02, 0.6, n)
        y = (rng.random(n) < p).astype(np.int8)
        frame = pd.DataFrame(
            {
                "split": split,
                "label": y,
                "p": p,
                "rule_score": np.round(p * 100, -1) + rng.normal(0, 5, n).round(),
                "chain_capped": np.arange(n) % 4 == 0,
                "lead_source": np.where(np.arange(n) % 10 == 0, "rare", "webinar"),
                "industry": "software",
                "size_band": np.where(y == 1, "pos_only", "neg_only"),
            }
        )
        if oracle:
            frame["oracle_p"] = p
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_evaluate_target_shape_and_segments() -> None:
    params = EvaluateParams(min_segment_rows=200)
    pred = _predictions(np.random.default_rng(0), 1000, oracle=True)
    out = evaluate_target(pred, params)
    keys = {"roc_auc", "pr_auc", "brier", "ece", "log_loss", "lift_at_10pct", "recall_at_10pct"}
    assert keys | {"lift_at_20pct", "recall_at_20pct"} == set(out["model"])
    assert set(out["model"]) == set(out["rule_baseline"]) == set(out["oracle"])
    test = pred[pred.split == "test"]
    assert out["n_test"] == 1000
    assert out["base_rate"] == pytest.approx(test.label.mean())
    assert out["chain_capped_share"] == pytest.approx(0.25)
    # the model's p is the oracle here
    assert out["model"]["roc_auc"] == pytest.approx(out["oracle"]["roc_auc"])
    assert out["model"]["roc_auc"] == pytest.approx(roc_auc(test.label, test.p))
    # segments: 'rare' has 100 rows (< 200), size bands hold one class each: both left out
    assert list(out["segments"]["lead_source"]) == ["webinar"]
    assert out["segments"]["lead_source"]["webinar"]["n"] == 900
    assert out["segments"]["size_band"] == {}
    assert set(out["segments"]["industry"]["software"]) == {
        "n",
        "base_rate",
        "model_roc_auc",
        "model_brier",
        "baseline_roc_auc",
    }
    json.dumps(round_floats(out))  # serialisable


def test_evaluate_target_without_oracle_and_rule_probability_from_calibration() -> None:
    pred = _predictions(np.random.default_rng(1), 800, oracle=False)
    out = evaluate_target(pred, EvaluateParams())
    assert "oracle" not in out
    cal = pred[pred.split == "calibration"]
    rule = fit_rule_probability(cal.rule_score.to_numpy(), cal.label.to_numpy())
    assert out["rule_probability"] == pytest.approx({"a": rule.a, "b": rule.b})
    # changing test labels must not change the rule's probability mapping (fitted on calibration only)
    flipped = pred.copy()
    flipped.loc[flipped.split == "test", "label"] = 1 - flipped.loc[flipped.split == "test", "label"]
    assert evaluate_target(flipped, EvaluateParams())["rule_probability"] == pytest.approx(
        out["rule_probability"]
    )


def test_round_floats() -> None:
    assert round_floats({"a": [1.23456789, float("nan")], "b": 2}) == {"a": [1.234568, None], "b": 2}


def test_curve_tables_end_points_and_monotone() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(500) < 0.3).astype(int)
    s = rng.random(500) + 0.5 * y
    tables = curve_tables(y, s, s, bins=10)
    roc, gains, pr = tables["roc"], tables["gains"], tables["pr"]
    assert (roc.iloc[0].tolist(), roc.iloc[-1].tolist()) == ([0.0, 0.0], [1.0, 1.0])
    assert np.all(np.diff(roc.fpr) >= 0) and np.all(np.diff(roc.tpr) >= 0)
    assert gains.iloc[-1].tolist() == [1.0, 1.0]
    assert pr.precision.iloc[-1] == pytest.approx(y.mean())
    assert len(tables["calibration"]) == 10
    # the ROC curve's area (trapezoids) is the ROC-AUC (up to the grid)
    assert np.trapezoid(roc.tpr, roc.fpr) == pytest.approx(roc_auc(y, s), abs=0.01)


def test_plot_tables_keys() -> None:
    y = np.array([0, 1, 0, 1, 1, 0])
    s = np.linspace(0, 1, 6)
    tables = plot_tables(y, {"model": (s, s), "rule_baseline": (s.round(), s)}, bins=3)
    assert set(tables) == {"roc", "pr", "calibration", "gains"}
    assert all(set(v) == {"model", "rule_baseline"} for v in tables.values())


def test_implausible_auc_is_warned_with_the_strongest_attributes(tmp_path: Path) -> None:
    from leadscore.models.evaluate import implausible_warnings

    leakage = tmp_path / "leakage.json"
    leakage.write_text(
        json.dumps(
            {
                "sql": {
                    "columns": [
                        {"column": "industry", "auc": 0.97, "excluded": False},
                        {"column": "annual_revenue", "auc": 0.99, "excluded": True},
                        {"column": "country", "auc": 0.55, "excluded": False},
                    ]
                }
            }
        )
    )
    metrics = {"sql": {"model": {"roc_auc": 0.98}}, "closed_won": {"model": {"roc_auc": 0.8}}}
    warnings = implausible_warnings(metrics, leakage)
    assert list(warnings) == ["sql"]
    assert "WARNING: sql: test ROC-AUC 0.980 is implausibly high" in warnings["sql"]
    assert "industry (0.97 alone)" in warnings["sql"] and "annual_revenue" not in warnings["sql"]
    assert implausible_warnings({"sql": {"model": {"roc_auc": 0.9}}}, leakage) == {}
