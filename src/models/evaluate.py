"""Evaluation on the out-of-time test slice: the model, the rule baseline and (demo data) the oracle.

Reads ``build/train/predictions_<target>.parquet`` and writes ``reports/metrics.json``::

    {"<target>": {"model": {...}, "rule_baseline": {...}, "oracle": {...}, "n_test": N, "base_rate": p,
                  "chain_capped_share": x, "segments": {"<column>": {"<value>": {...}}}}}

Each of model / rule_baseline / oracle holds roc_auc, pr_auc (average precision), brier, ece, log_loss,
and lift_at_<k>pct / recall_at_<k>pct for every ``evaluate.top_fractions``. ``oracle`` is present only on
demo data (the generator's exact probability), so the model is measured against the best any model
could do on that data.

The rule baseline ranks leads by its points. Points are not probabilities, so for brier / ece / log_loss
the points are turned into a probability by a one-variable logistic fit (label ~ points) on the
*calibration* slice, the same slice the model's calibrator sees: both are judged on test with the same
amount of help. Ranking metrics (AUC, lift, recall) use the points themselves.

The model's figures use ``p`` after the funnel-chain cap (what the API serves); ``chain_capped_share`` is
the share of test rows the cap changed.

Ties: a score with few distinct values (the rule's points) ties many leads. Lift and recall at k use the
expected number of positives in the top k under a random order within the tied group at the cut, so a
tied score is neither flattered nor punished by the row order.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.metrics import average_precision_score, roc_auc_score

from leadscore.config import EvaluateParams, Params
from leadscore.models.train import train_dir

_EPS = 1e-15
SERIES = ("model", "rule_baseline", "oracle")


# --- pure metric functions ----------------------------------------------------------------------------


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half)."""
    return float(roc_auc_score(np.asarray(y), np.asarray(score, dtype=np.float64)))


def pr_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (step-wise, no interpolation)."""
    return float(average_precision_score(np.asarray(y), np.asarray(score, dtype=np.float64)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of the probability."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    return float(np.mean((p - y) ** 2))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean negative log-likelihood (probabilities clipped to [1e-15, 1 - 1e-15])."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def equal_frequency_bins(p: np.ndarray, bins: int) -> list[np.ndarray]:
    """Row indices of ``bins`` bins of (near) equal size in increasing order of ``p``.

    Rows are sorted by ``p`` (stable, so ties keep row order) and cut into ``bins`` consecutive chunks
    whose sizes differ by at most one (``np.array_split``); empty bins are dropped.
    """
    order = np.argsort(np.asarray(p, dtype=np.float64), kind="stable")
    return [b for b in np.array_split(order, min(bins, max(len(order), 1))) if len(b)]


def reliability(y: np.ndarray, p: np.ndarray, bins: int) -> pd.DataFrame:
    """Per equal-frequency bin: n, mean predicted probability, observed positive rate."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    rows = [(len(b), float(p[b].mean()), float(y[b].mean())) for b in equal_frequency_bins(p, bins)]
    return pd.DataFrame(rows, columns=["n", "mean_predicted", "observed"])


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: sum over equal-frequency bins of (n_b / n) * |mean p_b - mean y_b|."""
    table = reliability(y, p, bins)
    n = table["n"].sum()
    return float((table["n"] / n * (table["mean_predicted"] - table["observed"]).abs()).sum())


def expected_positives_top(y: np.ndarray, score: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """Expected positives among the ``k`` highest scores, ties at the cut broken uniformly at random.

    Rows with a score above the k-th score count fully; the group tied with the k-th score contributes
    its positive rate times the number of its rows that fit in the top k. One value per ``k``.
    """
    y = np.asarray(y, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # group boundaries of equal scores in descending order
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ends = np.r_[starts[1:], len(s_sorted)]
    cum_y = np.r_[0.0, np.cumsum(y_sorted)]
    k_arr = np.clip(np.atleast_1d(np.asarray(k)), 0, len(s_sorted))
    # the group holding the first row left out (row index k); with k == n, the last group
    g = np.clip(np.searchsorted(starts, k_arr, side="right") - 1, 0, len(starts) - 1)
    before = starts[g]  # rows in groups fully above the cut
    group_pos = cum_y[ends[g]] - cum_y[starts[g]]
    group_n = ends[g] - starts[g]
    taken = np.clip(k_arr - before, 0, group_n)
    expected = cum_y[before] + group_pos * taken / group_n
    return expected


def top_k(n: int, fraction: float) -> int:
    """Number of rows in the top ``fraction`` (rounded, at least one)."""
    return max(1, min(n, round(fraction * n)))


def lift_at(y: np.ndarray, score: np.ndarray, fraction: float) -> float:
    """Positive rate in the top ``fraction`` by score divided by the overall positive rate."""
    y = np.asarray(y, dtype=np.float64)
    k = top_k(len(y), fraction)
    base = y.mean()
    return float(expected_positives_top(y, score, k)[0] / k / base) if base > 0 else float("nan")


def recall_at(y: np.ndarray, score: np.ndarray, fraction: float) -> float:
    """Share of all positives found in the top ``fraction`` by score."""
    y = np.asarray(y, dtype=np.float64)
    total = y.sum()
    k = top_k(len(y), fraction)
    return float(expected_positives_top(y, score, k)[0] / total) if total > 0 else float("nan")


def pct_key(fraction: float) -> str:
    """``0.1`` -> ``10pct`` (metric key suffix)."""
    return f"{round(fraction * 100)}pct"


def score_metrics(
    y: np.ndarray, score: np.ndarray, prob: np.ndarray, params: EvaluateParams
) -> dict[str, float]:
    """All figures of one series: ranking metrics on ``score``, probability metrics on ``prob``."""
    out = {
        "roc_auc": roc_auc(y, score),
        "pr_auc": pr_auc(y, score),
        "brier": brier(y, prob),
        "ece": ece(y, prob, params.ece_bins),
        "log_loss": log_loss(y, prob),
    }
    for fraction in params.top_fractions:
        out[f"lift_at_{pct_key(fraction)}"] = lift_at(y, score, fraction)
        out[f"recall_at_{pct_key(fraction)}"] = recall_at(y, score, fraction)
    return out


# --- the rule baseline as a probability -----------------------------------------------------------------


@dataclass(frozen=True)
class RuleProbability:
    """p = 1 / (1 + exp(-(a * points + b))), fitted by maximum likelihood on the calibration slice."""

    a: float
    b: float

    def transform(self, points: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * np.asarray(points, dtype=np.float64) + self.b)))


def fit_rule_probability(points: np.ndarray, y: np.ndarray) -> RuleProbability:
    """Logistic regression of the label on the rule's points (unpenalised, deterministic L-BFGS).

    The points are standardised for the optimiser and the coefficients mapped back. A constant score
    gets slope 0 and the base rate.
    """
    x = np.asarray(points, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    mu, sd = float(x.mean()), float(x.std())
    if sd == 0:
        return RuleProbability(0.0, math.log(rate / (1 - rate)))
    z = (x - mu) / sd

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        s = theta[0] * z + theta[1]
        p = 1.0 / (1.0 + np.exp(-s))
        return float(np.sum(np.logaddexp(0.0, s) - y * s)), np.array([np.sum((p - y) * z), np.sum(p - y)])

    res = minimize(nll, x0=np.array([0.0, math.log(rate / (1 - rate))]), jac=True, method="L-BFGS-B")
    a = float(res.x[0]) / sd
    return RuleProbability(a, float(res.x[1]) - a * mu)


# --- per target -----------------------------------------------------------------------------------------


def series_scores(test: pd.DataFrame, rule: RuleProbability) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(ranking score, probability) per series present in the test predictions."""
    out = {
        "model": (test["p"].to_numpy(np.float64), test["p"].to_numpy(np.float64)),
        "rule_baseline": (test["rule_score"].to_numpy(np.float64), rule.transform(test["rule_score"])),
    }
    if "oracle_p" in test.columns and test["oracle_p"].notna().all():
        oracle = test["oracle_p"].to_numpy(np.float64)
        out["oracle"] = (oracle, oracle)
    return out


def segment_metrics(
    test: pd.DataFrame, series: Mapping[str, tuple[np.ndarray, np.ndarray]], params: EvaluateParams
) -> dict[str, dict[str, dict[str, float]]]:
    """Per segment column and value with at least ``min_segment_rows`` rows and both classes: n,
    base_rate, model roc_auc and brier, baseline roc_auc."""
    y = test["label"].to_numpy(np.float64)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for col in params.segments:
        if col not in test.columns:
            continue
        values = test[col].astype(str).to_numpy()
        out[col] = {}
        for value in sorted(set(values)):
            m = values == value
            ys = y[m]
            if m.sum() < params.min_segment_rows or ys.min() == ys.max():
                continue
            out[col][value] = {
                "n": int(m.sum()),
                "base_rate": float(ys.mean()),
                "model_roc_auc": roc_auc(ys, series["model"][0][m]),
                "model_brier": brier(ys, series["model"][1][m]),
                "baseline_roc_auc": roc_auc(ys, series["rule_baseline"][0][m]),
            }
    return out


def evaluate_target(predictions: pd.DataFrame, params: EvaluateParams) -> dict[str, Any]:
    """The metrics.json entry of one target from its calibration + test predictions."""
    cal = predictions[predictions["split"] == "calibration"]
    test = predictions[predictions["split"] == "test"].reset_index(drop=True)
    if test.empty or test["label"].nunique() < 2:
        raise ValueError("the test slice is empty or has a single class: nothing to evaluate")
    rule = fit_rule_probability(cal["rule_score"].to_numpy(), cal["label"].to_numpy())
    y = test["label"].to_numpy(np.float64)
    series = series_scores(test, rule)
    out: dict[str, Any] = {name: score_metrics(y, s, p, params) for name, (s, p) in series.items()}
    out["n_test"] = len(test)
    out["base_rate"] = float(y.mean())
    out["chain_capped_share"] = float(test["chain_capped"].mean()) if "chain_capped" in test else 0.0
    out["rule_probability"] = {"a": rule.a, "b": rule.b}
    out["segments"] = segment_metrics(test, series, params)
    return out


def round_floats(data: Any, digits: int = 6) -> Any:
    """Round every float in a nested structure (readable metrics.json, stable diffs)."""
    if isinstance(data, float):
        return round(data, digits) if math.isfinite(data) else None
    if isinstance(data, Mapping):
        return {k: round_floats(v, digits) for k, v in data.items()}
    if isinstance(data, Sequence) and not isinstance(data, str):
        return [round_floats(v, digits) for v in data]
    return data


def read_predictions(params: Params, target: str) -> pd.DataFrame:
    path = train_dir(params) / f"predictions_{target}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `leadscore train` (or `dvc repro`) first")
    return pd.read_parquet(path)


def run_evaluate(params: Params) -> dict[str, Any]:
    """DVC stage ``evaluate``: metrics.json plus the plot data and figures under ``reports/``."""
    from leadscore.models.plots import write_plots

    metrics: dict[str, Any] = {}
    for target in params.snapshots.targets:
        predictions = read_predictions(params, target)
        metrics[target] = evaluate_target(predictions, params.evaluate)
        rule = RuleProbability(**metrics[target]["rule_probability"])
        test = predictions[predictions["split"] == "test"].reset_index(drop=True)
        write_plots(target, test["label"].to_numpy(), series_scores(test, rule), params)
    metrics = round_floats(metrics)
    # The warning is part of the record (metrics.json, the report), not only a line on the console.
    warnings = implausible_warnings(metrics, params.data.build_dir / "train" / "leakage.json")
    for target, text in warnings.items():
        print(text, file=sys.stderr)
        metrics[target]["warning"] = text
    params.data.reports_dir.mkdir(parents=True, exist_ok=True)
    (params.data.reports_dir / "metrics.json").write_text(
        json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )
    return metrics


def implausible_warnings(metrics: dict[str, Any], leakage_json: Path) -> dict[str, str]:
    """A plain warning per target whose test ROC-AUC is too good for lead scoring (> 0.95), naming the
    strongest lead / account attributes the train stage's leakage guard saw (issue 11)."""
    guard = json.loads(leakage_json.read_text()) if leakage_json.is_file() else {}
    out: dict[str, str] = {}
    for target, m in metrics.items():
        auc = (m.get("model") or {}).get("roc_auc")
        if auc is None or auc <= 0.95:
            continue
        cols = [c for c in guard.get(target, {}).get("columns", []) if c.get("auc") and not c.get("excluded")]
        cols = sorted(cols, key=lambda c: -c["auc"])[:3]
        top = ", ".join(f"{c['column']} ({c['auc']:.2f} alone)" for c in cols)
        out[target] = (
            f"WARNING: {target}: test ROC-AUC {auc:.3f} is implausibly high for lead scoring (honest models "
            f"land at 0.65-0.90): something filled in after the outcome probably leaks. Strongest "
            f"attributes: {top or 'n/a'} (build/train/leakage.md)."
        )
    return out
