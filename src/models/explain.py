"""SHAP explanations of the bundled models on the test slice, funnel metrics, and the HTML report.

SHAP values are LightGBM's own TreeSHAP contributions (``booster.predict(X, pred_contrib=True)``), in
log-odds of the *raw* model, on at most ``explain.max_rows`` test rows sampled deterministically. The
calibrator is monotone, so a feature that raises the raw log-odds raises the calibrated probability too.

Writes under ``reports/explain/`` (the publish stage logs the folder to MLflow)::

    <target>/importance.csv          per feature: business label, driver group, mean |SHAP|, share, direction
    <target>/groups.csv              per driver group (e.g. all pricing-page features): mean |sum of SHAP|
    <target>/categories.csv          per categorical value: rows, mean SHAP (e.g. personal e-mail < 0)
    <target>/segments.csv            per segment value: rows, base rate, mean p, top drivers
    <target>/examples.json           a few test leads with their probability and top reasons
    <target>/beeswarm.png, importance.png, dependence_<feature>.png
    funnel/summary.json, mql_volume.csv, cohorts.csv, recycle_reasons.csv, disqualify_reasons.csv,
    funnel/threshold_funnel.csv      the funnel the current thresholds make on the test slice
    summary.json                     what the report shows, in one document

and ``reports/explain.html`` (``leadscore.models.report``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import Params
from leadscore.features.spec import FeatureSpec
from leadscore.models.labels import label as business_label
from leadscore.models.reasons import EVENT_WORDS, ReasonBuilder

#: Segments the report breaks drivers down by (plus any in ``evaluate.segments``).
SEGMENTS = ("lead_source", "industry", "seniority", "size_band")
#: Seed of the deterministic row sample (fixed: the sample must not change between runs).
SAMPLE_SEED = 20240101
#: Points drawn per feature in the beeswarm (the SHAP statistics use every sampled row).
BEESWARM_POINTS = 1500
DEPENDENCE_PLOTS = 4
EXAMPLE_LEADS = 4


# --------------------------------------------------------------------------------------------------
# sampling and SHAP


def sample_rows(n: int, max_rows: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Sorted row indices: all rows when n <= max_rows, else a fixed-seed sample without replacement."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def shap_values(booster: Any, matrix: np.ndarray) -> np.ndarray:
    """TreeSHAP contributions (n, n_features + 1; last column the bias) in raw log-odds."""
    return np.asarray(booster.predict(matrix, pred_contrib=True, num_threads=2), dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# driver groups: features that tell the same story are summed (SHAP is additive)

_GROUP_BY_FEATURE = {
    "days_since_last_event": "Overall engagement",
    "events_total": "Overall engagement",
    "engagement_decayed": "Overall engagement",
    "return_visit_7d": "Website visits",
    "email_click_rate": "Marketing e-mails",
    "high_intent_30d": "High-intent actions (pricing, demo, trial)",
    "unsubscribed": "Unsubscribes",
    "stage_rank": "Funnel history",
    "days_since_stage_change": "Funnel history",
    "times_recycled": "Funnel history",
    "days_since_sql": "Funnel history",
    "employees": "Company size",
    "size_band": "Company size",
    "in_sweet_spot": "Company size",
    "annual_revenue": "Company revenue",
    "tech_stack_size": "Tech stack",
    "industry": "Industry",
    "target_industry": "Industry",
    "seniority": "Seniority",
    "is_student": "Seniority",
    "lead_age_days": "Lead age",
    "country": "Country",
    "lead_source": "Lead source",
    "department": "Department",
    "email_type": "E-mail type (personal / business)",
}
_GROUP_BY_EVENT = {
    "page_view": "Website visits",
    "email_open": "Marketing e-mails",
    "email_click": "Marketing e-mails",
    "unsubscribe": "Unsubscribes",
}


def feature_groups(spec: FeatureSpec) -> dict[str, str]:
    """feature -> driver group name, for every model feature."""
    out: dict[str, str] = {}
    for name, event_type, _ in spec.count_features:
        out[name] = _event_group(event_type)
    for name, event_type in spec.recency_features:
        out[name] = _event_group(event_type)
    for name, _ in spec.active_day_features:
        out[name] = "Website visits"
    for f in spec.model_features:
        out.setdefault(f, _GROUP_BY_FEATURE.get(f, f.replace("_", " ").capitalize()))
    return out


def _event_group(event_type: str) -> str:
    if event_type in _GROUP_BY_EVENT:
        return _GROUP_BY_EVENT[event_type]
    words = EVENT_WORDS.get(event_type)
    return words.noun if words else event_type.replace("_", " ").capitalize()


# --------------------------------------------------------------------------------------------------
# statistics


def _numeric(values: pd.Series | np.ndarray) -> np.ndarray:
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)


def _direction(values: pd.Series, shap: np.ndarray, categorical: bool) -> tuple[float, str]:
    """(signed strength, sentence) of how a feature's value moves its contribution."""
    if categorical:
        means = pd.Series(shap).groupby(values.astype(str).to_numpy()).mean()
        if len(means) < 2:
            return 0.0, ""
        return float(means.max() - means.min()), (
            f"highest for {business_label(means.idxmax())}, lowest for {business_label(means.idxmin())}"
        )
    x = _numeric(values)
    ok = np.isfinite(x)
    if ok.sum() < 3 or np.nanstd(x[ok]) == 0 or np.std(shap[ok]) == 0:
        return 0.0, "no clear direction"
    rho = float(pd.Series(x[ok]).rank().corr(pd.Series(shap[ok]).rank()))
    if not math.isfinite(rho) or abs(rho) < 0.1:
        return 0.0, "mixed (depends on other signals)"
    return rho, "higher values raise the probability" if rho > 0 else "higher values lower the probability"


def global_importance(
    contrib: np.ndarray, frame: pd.DataFrame, spec: FeatureSpec, reasons: ReasonBuilder
) -> pd.DataFrame:
    """Per feature: label, group, mean |SHAP|, mean SHAP, share of the total, direction; sorted."""
    features = list(spec.model_features)
    c = contrib[:, : len(features)]
    mean_abs = np.abs(c).mean(axis=0)
    groups = feature_groups(spec)
    rows = []
    for j, f in enumerate(features):
        strength, text = _direction(frame[f], c[:, j], f in spec.categorical)
        rows.append(
            {
                "feature": f,
                "label": reasons.label(f),
                "group": groups[f],
                "mean_abs_shap": float(mean_abs[j]),
                "mean_shap": float(c[:, j].mean()),
                "share": float(mean_abs[j] / mean_abs.sum()) if mean_abs.sum() > 0 else 0.0,
                "direction": text,
                "direction_strength": strength,
            }
        )
    out = pd.DataFrame(rows).sort_values(["mean_abs_shap", "feature"], ascending=[False, True], kind="stable")
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out.reset_index(drop=True)


def group_importance(contrib: np.ndarray, spec: FeatureSpec) -> pd.DataFrame:
    """Per driver group: mean |sum of the group's SHAP| per row (additive), share, member features."""
    features = list(spec.model_features)
    groups = feature_groups(spec)
    names = sorted(set(groups.values()))
    rows = []
    for g in names:
        idx = [j for j, f in enumerate(features) if groups[f] == g]
        s = contrib[:, idx].sum(axis=1)
        rows.append(
            {
                "group": g,
                "mean_abs_shap": float(np.abs(s).mean()),
                "mean_shap": float(s.mean()),
                "features": " ".join(features[j] for j in idx),
            }
        )
    out = pd.DataFrame(rows)
    out["share"] = out["mean_abs_shap"] / max(out["mean_abs_shap"].sum(), 1e-12)
    out = out.sort_values(["mean_abs_shap", "group"], ascending=[False, True], kind="stable")
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out.reset_index(drop=True)


def category_effects(
    contrib: np.ndarray, frame: pd.DataFrame, spec: FeatureSpec, reasons: ReasonBuilder
) -> pd.DataFrame:
    """Per categorical feature and value: rows, mean SHAP of that feature, its sentence."""
    features = list(spec.model_features)
    rows = []
    for f in spec.categorical:
        j = features.index(f)
        values = frame[f].astype(str).to_numpy()
        for v in sorted(set(values)):
            m = values == v
            rows.append(
                {
                    "feature": f,
                    "value": v,
                    "rows": int(m.sum()),
                    "mean_shap": float(contrib[m, j].mean()),
                    "text": reasons.sentence(f, v),
                }
            )
    return pd.DataFrame(rows)


def segment_drivers(
    contrib: np.ndarray,
    frame: pd.DataFrame,
    p: np.ndarray,
    segments: Sequence[str],
    spec: FeatureSpec,
    reasons: ReasonBuilder,
    min_rows: int,
    k: int = 3,
) -> pd.DataFrame:
    """Per segment column and value (>= ``min_rows`` rows): rows, base rate, mean p, top-k drivers by
    mean |SHAP| within the segment (the segment's own column left out: it is constant there)."""
    features = list(spec.model_features)
    c = np.abs(contrib[:, : len(features)])
    y = frame["label"].to_numpy(dtype=np.float64)
    rows = []
    for col in segments:
        if col not in frame:
            continue
        values = frame[col].astype(str).to_numpy()
        for v in sorted(set(values)):
            m = values == v
            if m.sum() < min_rows:
                continue
            imp = c[m].mean(axis=0)
            order = [j for j in np.argsort(-imp, kind="stable") if features[j] != col][:k]
            rows.append(
                {
                    "segment": col,
                    "value": v,
                    "rows": int(m.sum()),
                    "base_rate": float(y[m].mean()),
                    "mean_p": float(p[m].mean()),
                    "top_drivers": " · ".join(reasons.label(features[j]) for j in order),
                    "top_features": " ".join(features[j] for j in order),
                }
            )
    return pd.DataFrame(rows)


def example_leads(
    contrib: np.ndarray,
    frame: pd.DataFrame,
    p: np.ndarray,
    reasons: ReasonBuilder,
    k: int,
    n: int,
    telling: Mapping[str, int] | None,
) -> list[dict[str, Any]]:
    """``n`` test leads across the range of p (highest, around the 90th percentile, median, lowest)
    with their top positive and negative reasons, as the API gives them (``telling``: the bundle's
    informative-missing map of the target)."""
    order = np.argsort(-p, kind="stable")
    picks = [order[0], order[len(order) // 10], order[len(order) // 2], order[-1]][:n]
    picks = list(dict.fromkeys(int(i) for i in picks))
    top = reasons.top_reasons(
        contrib[picks], frame.iloc[picks].reset_index(drop=True), k=k, informative_missing=telling
    )
    out = []
    for i, (pos, neg) in zip(picks, top, strict=True):
        row = frame.iloc[i]
        out.append(
            {
                "lead_id": str(row["lead_id"]),
                "snapshot_ts": str(row["snapshot_ts"]),
                "p": float(p[i]),
                "label": int(row["label"]),
                "positive": [
                    {"feature": r.feature, "text": r.text, "contribution": r.contribution} for r in pos
                ],
                "negative": [
                    {"feature": r.feature, "text": r.text, "contribution": r.contribution} for r in neg
                ],
            }
        )
    return out


# --------------------------------------------------------------------------------------------------
# plots (matplotlib, Agg; no timestamps in the PNGs so equal data gives equal files)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    _plt().close(fig)


def _value_colour(values: pd.Series, categorical: bool) -> np.ndarray:
    """Colour key per point: the value's rank within the feature (0 low .. 1 high), NaN when missing or
    categorical (drawn grey)."""
    if categorical:
        return np.full(len(values), np.nan)
    x = _numeric(values)
    ranks = pd.Series(x).rank(pct=True).to_numpy()
    return ranks


def _odds_axis(ax: Any, which: str, text: str) -> None:
    """Label an axis of SHAP values (log-odds) as odds multipliers: a contribution c makes the lead
    exp(c) times as likely to convert in odds terms, which for rare outcomes is "× more likely"."""
    fmt = _plt().FuncFormatter(lambda v, _: f"×{math.exp(v):.2g}")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(fmt)
    (ax.set_xlabel if which == "x" else ax.set_ylabel)(text)


def plot_beeswarm(
    contrib: np.ndarray,
    frame: pd.DataFrame,
    importance: pd.DataFrame,
    spec: FeatureSpec,
    top: int,
    path: Path,
    title: str,
) -> None:
    """SHAP beeswarm of the ``top`` features: one row per feature, a point per lead at its SHAP value,
    coloured by the value's rank (blue low, red high; grey: missing or a category)."""
    plt = _plt()
    features = list(spec.model_features)
    chosen = importance["feature"].head(top).tolist()
    labels = importance["label"].head(top).tolist()
    rng = np.random.default_rng(0)
    n = contrib.shape[0]
    pick = np.sort(rng.choice(n, size=min(n, BEESWARM_POINTS), replace=False))
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(chosen) + 1.4), dpi=100)
    cmap = plt.get_cmap("coolwarm")
    for row, f in enumerate(chosen):
        y_pos = len(chosen) - 1 - row
        s = contrib[pick, features.index(f)]
        colour = _value_colour(frame[f].iloc[pick].reset_index(drop=True), f in spec.categorical)
        # jitter by local density so dense regions spread out (a cheap beeswarm)
        hist, edges = np.histogram(s, bins=60)
        dens = hist[np.clip(np.searchsorted(edges, s) - 1, 0, len(hist) - 1)] / max(hist.max(), 1)
        jitter = (rng.random(len(s)) - 0.5) * 0.8 * dens
        grey = ~np.isfinite(colour)
        ax.scatter(s[grey], y_pos + jitter[grey], s=4, c="#9a9a9a", alpha=0.5, linewidths=0)
        ax.scatter(s[~grey], y_pos + jitter[~grey], s=4, c=cmap(colour[~grey]), alpha=0.7, linewidths=0)
    ax.axvline(0, color="#444", lw=0.8)
    ax.set_yticks(range(len(chosen)))
    ax.set_yticklabels(list(reversed(labels)), fontsize=8)
    _odds_axis(ax, "x", "how much more likely to convert (×1 = no effect): left lowers, right raises")
    ax.set_title(title, fontsize=10)
    sm = plt.cm.ScalarMappable(cmap=cmap)
    bar = fig.colorbar(sm, ax=ax, fraction=0.025, pad=0.01)
    bar.set_ticks([0, 1])
    bar.set_ticklabels(["low", "high"])
    bar.set_label("feature value", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_importance(table: pd.DataFrame, label_col: str, top: int, path: Path, title: str) -> None:
    """Horizontal bars of mean |SHAP| (``table`` sorted, largest first)."""
    plt = _plt()
    t = table.head(top)
    fig, ax = plt.subplots(figsize=(7.5, 0.36 * len(t) + 1.2), dpi=100)
    ax.barh(range(len(t))[::-1], t["mean_abs_shap"], color="#2e86c1")
    ax.set_yticks(range(len(t))[::-1])
    ax.set_yticklabels(t[label_col], fontsize=8)
    _odds_axis(ax, "x", "average swing in how likely a lead converts (× more or less likely)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_dependence(
    contrib_col: np.ndarray, values: pd.Series, categorical: bool, label: str, path: Path
) -> None:
    """SHAP of one feature against its value (numbers: scatter; categories: mean with spread)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=100)
    if categorical:
        v = np.array([business_label(x) for x in values.astype(str).to_numpy()], dtype=object)
        stats = pd.DataFrame({"v": v, "s": contrib_col}).groupby("v")["s"].agg(["mean", "std", "size"])
        stats = stats.sort_values("mean")
        ax.barh(stats.index, stats["mean"], xerr=stats["std"].fillna(0), color="#2e86c1", alpha=0.8)
        ax.axvline(0, color="#444", lw=0.8)
        _odds_axis(ax, "x", "how much more likely to convert (×1 = no effect)")
        ax.tick_params(axis="y", labelsize=7)
    else:
        x = _numeric(values)
        ok = np.isfinite(x)
        rng = np.random.default_rng(1)
        pick = np.flatnonzero(ok)
        pick = pick if len(pick) <= 4000 else np.sort(rng.choice(pick, 4000, replace=False))
        ax.scatter(x[pick], contrib_col[pick], s=5, alpha=0.35, color="#2e86c1", linewidths=0)
        if ok.any() and np.nanmax(x) > 50 and np.nanmin(x) >= 0:
            ax.set_xscale("symlog", linthresh=1)
        ax.axhline(0, color="#444", lw=0.8)
        ax.set_xlabel("value")
        _odds_axis(ax, "y", "× more likely to convert")
        missing = int((~ok).sum())
        if missing:
            ax.text(
                0.99,
                0.02,
                f"{missing:,} missing: not shown",
                transform=ax.transAxes,
                ha="right",
                fontsize=7,
                color="#666",
            )
    ax.set_title(label, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


# --------------------------------------------------------------------------------------------------
# per target


@dataclass(frozen=True)
class TargetExplanation:
    """Everything explained about one target (also written to ``reports/explain/<target>/``)."""

    target: str
    rows: int
    importance: pd.DataFrame
    groups: pd.DataFrame
    categories: pd.DataFrame
    segments: pd.DataFrame
    examples: list[dict[str, Any]]
    images: dict[str, Path]
    seniority: pd.DataFrame | None = None


def explain_target(
    target: str,
    booster: Any,
    matrix: np.ndarray,
    frame: pd.DataFrame,
    p: np.ndarray,
    spec: FeatureSpec,
    reasons: ReasonBuilder,
    params: Params,
    out_dir: Path,
    telling: Mapping[str, int] | None = None,
) -> TargetExplanation:
    """SHAP statistics, tables and plots of one target on its (sampled) test rows; writes ``out_dir``."""
    ep = params.explain
    contrib = shap_values(booster, matrix)
    imp = global_importance(contrib, frame, spec, reasons)
    groups = group_importance(contrib, spec)
    cats = category_effects(contrib, frame, spec, reasons)
    segs = segment_drivers(
        contrib,
        frame,
        p,
        list(dict.fromkeys([*SEGMENTS, *params.evaluate.segments])),
        spec,
        reasons,
        min_rows=min(params.evaluate.min_segment_rows, max(len(frame) // 20, 1)),
    )
    examples = example_leads(contrib, frame, p, reasons, ep.reasons_per_lead, EXAMPLE_LEADS, telling)
    out_dir.mkdir(parents=True, exist_ok=True)
    imp.to_csv(out_dir / "importance.csv", index=False, float_format="%.6g")
    groups.to_csv(out_dir / "groups.csv", index=False, float_format="%.6g")
    cats.to_csv(out_dir / "categories.csv", index=False, float_format="%.6g")
    segs.to_csv(out_dir / "segments.csv", index=False, float_format="%.6g")
    (out_dir / "examples.json").write_text(json.dumps(examples, indent=2) + "\n")
    images = {
        "beeswarm": out_dir / "beeswarm.png",
        "importance": out_dir / "importance.png",
        "groups": out_dir / "groups.png",
    }
    name = target.replace("_", "-")
    plot_beeswarm(
        contrib,
        frame,
        imp,
        spec,
        ep.top_features,
        images["beeswarm"],
        f"{name}: what moves the score, lead by lead (test slice, {len(frame):,} rows)",
    )
    plot_importance(imp, "label", ep.top_features, images["importance"], f"{name}: top drivers (features)")
    plot_importance(groups, "group", ep.top_features, images["groups"], f"{name}: top drivers (grouped)")
    features = list(spec.model_features)
    for f in imp["feature"].head(DEPENDENCE_PLOTS):
        path = out_dir / f"dependence_{f}.png"
        plot_dependence(
            contrib[:, features.index(f)], frame[f], f in spec.categorical, reasons.label(f), path
        )
        images[f"dependence_{f}"] = path
    evidence = category_evidence(contrib, frame, p, spec, "seniority", reasons.label)
    if evidence is not None:
        evidence.to_csv(out_dir / "seniority.csv", index=False, float_format="%.6g")
    return TargetExplanation(target, len(frame), imp, groups, cats, segs, examples, images, evidence)


def category_evidence(
    contrib: np.ndarray,
    frame: pd.DataFrame,
    p: np.ndarray,
    spec: FeatureSpec,
    column: str,
    label: Any = str,
) -> pd.DataFrame | None:
    """Per value of ``column`` on the test rows: rows, actual conversion rate, mean predicted p, and the
    model's mean SHAP split into the column's own effect, the flags that restate it (``is_<value>``,
    e.g. is_student for seniority = student) and everything else; ``total`` is their sum;
    ``lowered_by``: the three other signals that lower the group most (``label`` names them).

    Why: a category's own average effect can look odd (students above individual contributors) when a
    second feature carries the same fact: SHAP splits the credit between them, so only the sum says
    how the model treats the group. None when the column is not a model feature."""
    features = list(spec.model_features)
    if column not in features or column not in frame:
        return None
    values = frame[column].astype(str).to_numpy()
    y = frame["label"].to_numpy(dtype=np.float64)
    own = contrib[:, features.index(column)]
    rows = []
    for v in sorted(set(values)):
        m = values == v
        flag = f"is_{v}"
        flag_effect = contrib[m, features.index(flag)] if flag in features else np.zeros(int(m.sum()))
        total = contrib[m, : len(features)].sum(axis=1)
        means = contrib[m, : len(features)].mean(axis=0)
        others = [j for j in np.argsort(means, kind="stable") if features[j] not in (column, flag)][:3]
        rows.append(
            {
                "value": v,
                "rows": int(m.sum()),
                "actual_rate": float(y[m].mean()),
                "mean_p": float(p[m].mean()),
                "own_effect": float(own[m].mean()),
                "flag_effect": float(flag_effect.mean()),
                "other_effect": float((total - own[m] - flag_effect).mean()),
                "total_effect": float(total.mean()),
                "lowered_by": "; ".join(f"{label(features[j])} (×{math.exp(means[j]):.2f})" for j in others),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# funnel


def write_funnel(params: Params, thresholds: Mapping[str, Any], out_dir: Path) -> dict[str, Any]:
    """Funnel metrics from the stage history + the funnel the thresholds make on the test slice."""
    from leadscore.models.funnel import (
        funnel_summary,
        mql_cohorts,
        mql_volume,
        reason_counts,
        threshold_funnel,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    path = params.data.interim_dir / "stage_history.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `leadscore validate` (or `dvc repro`) first")
    history = pd.read_parquet(path)
    targets = params.snapshots.targets
    sql_days = next((t.horizon_days for t in targets.values() if t.stage == "sql"), 90)
    won_days = next((t.horizon_days for t in targets.values() if t.stage == "closed_won"), 180)
    summary = funnel_summary(history, sql_days, won_days).to_json()
    tables = {
        "mql_volume": mql_volume(history),
        "cohorts": mql_cohorts(history, sql_days),
        "recycle_reasons": reason_counts(history, "recycled"),
        "disqualify_reasons": reason_counts(history, "disqualified"),
    }
    target = thresholds.get("target", params.thresholds.target)
    preds_path = params.data.build_dir / "train" / f"predictions_{target}.parquet"
    if preds_path.exists():
        preds = pd.read_parquet(preds_path)
        test = preds[preds["split"] == "test"].reset_index(drop=True)
        tables["threshold_funnel"] = threshold_funnel(
            test, thresholds["stages"], params.snapshots.every_days, params.baseline.mql_points
        )
    for name, table in tables.items():
        table.to_csv(out_dir / f"{name}.csv", index=False, float_format="%.6g")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    # the report shows SQL funnel rates only when the history has SQL rows (a closed-won-only funnel has none)
    return {"summary": summary, **tables, "stages_in_history": sorted(history["stage"].dropna().unique())}


# --------------------------------------------------------------------------------------------------
# the stage


def _test_frame(params: Params, target: str) -> pd.DataFrame:
    path = params.data.processed_dir / target / "test.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `leadscore features` (or `dvc repro`) first")
    return pd.read_parquet(path)


def run_explain(params: Params) -> dict[str, Any]:
    """DVC stage ``explain``: SHAP per bundled target, funnel metrics and ``reports/explain.html``."""
    import shutil

    from leadscore.models.bundle import load_bundle
    from leadscore.models.chain import chain_consistent
    from leadscore.models.report import write_report
    from leadscore.progress import progress

    bundle = load_bundle(params.data.models_dir)
    reasons = ReasonBuilder(bundle.spec, bundle.baseline)
    out = params.data.reports_dir / "explain"
    shutil.rmtree(out, ignore_errors=True)  # stale plots of a feature no longer on top must go
    order = sorted(
        bundle.targets, key=lambda t: t != bundle.thresholds.get("target", params.thresholds.target)
    )
    explained: dict[str, TargetExplanation] = {}
    with progress() as bar:
        task = bar.add_task("explain", total=len(order) + 2)
        for target in order:
            frame = _test_frame(params, target)
            frame = frame.iloc[sample_rows(len(frame), params.explain.max_rows)].reset_index(drop=True)
            matrix = bundle.encoder.transform(frame)
            probs = bundle.predict(matrix, num_threads=2)
            probs, _ = chain_consistent(probs, frame["stage_rank"].to_numpy(dtype=np.float64))
            explained[target] = explain_target(
                target,
                bundle.boosters[target],
                matrix,
                frame,
                probs[target],
                bundle.spec,
                reasons,
                params,
                out / target,
                bundle.missing_map(target),
            )
            bar.advance(task)
        funnel = write_funnel(params, bundle.thresholds, out / "funnel")
        bar.advance(task)
        html = write_report(params, bundle, explained, funnel)
        bar.advance(task)
    summary = {
        "bundle_checksum": bundle.checksum,
        "model_version": bundle.version,
        "targets": {
            t: {
                "rows": e.rows,
                "top_features": e.importance["feature"].head(params.explain.top_features).tolist(),
                "top_groups": e.groups["group"].head(params.explain.top_features).tolist(),
            }
            for t, e in explained.items()
        },
        "funnel": funnel["summary"],
        "report": str(html),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
