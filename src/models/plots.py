"""Plot data (CSV, for ``dvc plots``) and figures (PNG, for MLflow) of the test-slice evaluation.

For every target and curve there is one CSV per series, so DVC draws the series side by side in one
chart (``dvc.yaml`` lists the files of a chart under ``y``; DVC colours them by file)::

    reports/plots/<target>/roc/{model,rule_baseline,oracle}.csv           fpr, tpr
    reports/plots/<target>/pr/{...}.csv                                  recall, precision
    reports/plots/<target>/calibration/{...}.csv                         mean_predicted, observed
    reports/plots/<target>/gains/{...}.csv                               share_contacted, share_of_positives
    reports/figures/<target>_<curve>.png                                 the same, drawn with matplotlib

ROC, precision-recall and gains are read off one grid of cut-offs (the top 0 %, 0.5 %, ..., 100 % of
leads by score), with tied scores split evenly at the cut (``evaluate.expected_positives_top``), so a
rule with few distinct point values gets its true (linear) ROC segments. The calibration curve uses the
equal-frequency bins of the ECE. ``oracle`` appears on demo data only.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.config import Params
from leadscore.models.evaluate import expected_positives_top, reliability

CURVES: dict[str, tuple[str, str]] = {
    "roc": ("fpr", "tpr"),
    "pr": ("recall", "precision"),
    "calibration": ("mean_predicted", "observed"),
    "gains": ("share_contacted", "share_of_positives"),
}
TITLES = {
    "roc": "ROC (test slice)",
    "pr": "Precision-recall (test slice)",
    "calibration": "Reliability (test slice, equal-frequency bins)",
    "gains": "Cumulative gains (test slice)",
}
GRID_POINTS = 201


def curve_tables(y: np.ndarray, score: np.ndarray, prob: np.ndarray, bins: int) -> dict[str, pd.DataFrame]:
    """The four curves of one series: ranking curves from ``score``, the reliability curve from ``prob``."""
    y = np.asarray(y, dtype=np.float64)
    n, pos = len(y), y.sum()
    neg = n - pos
    k = np.unique(np.round(np.linspace(0.0, 1.0, GRID_POINTS) * n).astype(np.int64))
    tp = expected_positives_top(y, score, k)
    fp = k - tp
    share = k / n
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(k > 0, tp / np.maximum(k, 1), np.nan)
    rel = reliability(y, prob, bins)
    return {
        "roc": pd.DataFrame({"fpr": fp / neg, "tpr": tp / pos}),
        "pr": pd.DataFrame({"recall": tp / pos, "precision": precision})[k > 0].reset_index(drop=True),
        "calibration": rel[["mean_predicted", "observed"]],
        "gains": pd.DataFrame({"share_contacted": share, "share_of_positives": tp / pos}),
    }


def plot_tables(
    y: np.ndarray, series: Mapping[str, tuple[np.ndarray, np.ndarray]], bins: int
) -> dict[str, dict[str, pd.DataFrame]]:
    """curve -> series -> table, for every series given as (ranking score, probability)."""
    per_series = {name: curve_tables(y, s, p, bins) for name, (s, p) in series.items()}
    return {curve: {name: tables[curve] for name, tables in per_series.items()} for curve in CURVES}


def plot_file(reports_dir: Path, target: str, curve: str, series: str) -> Path:
    """Where the CSV of one (target, curve, series) lives (``dvc.yaml`` names these paths)."""
    return Path(reports_dir) / "plots" / target / curve / f"{series}.csv"


def figure_file(reports_dir: Path, target: str, curve: str) -> Path:
    return Path(reports_dir) / "figures" / f"{target}_{curve}.png"


def _draw(curve: str, target: str, tables: Mapping[str, pd.DataFrame], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = CURVES[curve]
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=100)
    styles = {"model": "-", "rule_baseline": "--", "oracle": ":"}
    for name, table in tables.items():
        marker = "o" if curve == "calibration" else None
        ax.plot(table[x], table[y], styles.get(name, "-"), marker=marker, label=name)
    if curve in ("roc", "gains", "calibration"):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, alpha=0.6, label="_diagonal")
    if curve == "calibration":
        top = max(float(t[[x, y]].to_numpy().max()) for t in tables.values())
        ax.set_xlim(0, min(1.0, top * 1.05))
        ax.set_ylim(0, min(1.0, top * 1.05))
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(f"{target}: {TITLES[curve]}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # No timestamp in the PNG metadata: the same data gives the same file.
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def write_plots(
    target: str, y: np.ndarray, series: Mapping[str, tuple[np.ndarray, np.ndarray]], params: Params
) -> list[Path]:
    """Write the CSVs and PNGs of one target; returns the written paths."""
    reports = params.data.reports_dir
    shutil.rmtree(reports / "plots" / target, ignore_errors=True)
    written: list[Path] = []
    for curve, by_series in plot_tables(y, series, params.evaluate.ece_bins).items():
        for name, table in by_series.items():
            path = plot_file(reports, target, curve, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(path, index=False, float_format="%.6f")
            written.append(path)
        fig = figure_file(reports, target, curve)
        _draw(curve, target, by_series, fig)
        written.append(fig)
    return written
