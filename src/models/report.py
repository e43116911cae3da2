"""``reports/explain.html``: one self-contained page for marketing and RevOps.

Every image is a base64 PNG inside the page; the only script is the threshold simulator's, inline, with
its data embedded as JSON (``models.simulator``); there is no script, stylesheet, font or request outside
the page, so it opens from a mail attachment or a shared drive without a network. The page reads:

* ``reports/metrics.json`` (or the bundle's copy) and ``reports/plots/<target>/gains/*.csv`` when present;
* ``reports/thresholds.json`` (or the bundle's thresholds) for the threshold table and the test check;
* ``build/train/predictions_<target>.parquet`` (test slice) for calibration by decile;
* the explanations and funnel tables computed by ``leadscore.models.explain``.

Numbers are shown as marketing reads them (percentages, leads per week); the definitions sit next to
the tables.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from leadscore.config import Params

if TYPE_CHECKING:
    from leadscore.models.bundle import Bundle
    from leadscore.models.explain import TargetExplanation

TEMPLATE_DIR = Path(__file__).parent / "templates"
#: Shares of leads at which the report shows a row of the threshold table (plus the chosen thresholds).
TABLE_SHARES = (0.01, 0.02, 0.03, 0.05, 0.075, 0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50, 0.75, 1.0)
SERIES_NAMES = {"model": "Model", "rule_baseline": "Today's point rule", "oracle": "Best possible (oracle)"}


# --------------------------------------------------------------------------------------------------
# formatting (jinja filters)


def _finite(x: object) -> bool:
    try:
        return x is not None and math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def fmt_pct(x: object, digits: int = 1) -> str:
    # a no-break space keeps "12.5 %" on one line in narrow table cells
    return f"{float(x) * 100:.{digits}f}\u00a0%" if _finite(x) else "–"  # type: ignore[arg-type]


def fmt_num(x: object, digits: int = 0) -> str:
    return f"{float(x):,.{digits}f}" if _finite(x) else "–"  # type: ignore[arg-type]


def fmt_times(x: object) -> str:
    """A log-odds contribution as an odds multiplier: 0.22 -> '×1.25'."""
    return f"×{math.exp(float(x)):.2f}" if _finite(x) else "–"  # type: ignore[arg-type]


def fmt_points(x: object, base: object) -> str:
    """A log-odds contribution as percentage points of probability for a lead at rate ``base``."""
    if not _finite(x) or not _finite(base) or not 0 < float(base) < 1:  # type: ignore[arg-type]
        return "–"
    b = float(base)  # type: ignore[arg-type]
    moved = 1 / (1 + math.exp(-(math.log(b / (1 - b)) + float(x))))  # type: ignore[arg-type]
    return f"{(moved - b) * 100:+.1f} points"


def seniority_note(rows: list[dict[str, Any]]) -> str:
    """Plain words on whether the model ranks students and individual contributors as the data does."""
    by = {r["value"]: r for r in rows}
    if "student" not in by or "individual" not in by:
        return ""
    s, i = by["student"], by["individual"]
    same_order = (s["mean_p"] < i["mean_p"]) == (s["actual_rate"] < i["actual_rate"])
    text = (
        f"Students convert at {s['actual_rate']:.1%} against {i['actual_rate']:.1%} for individual "
        f"contributors; the model predicts {s['mean_p']:.1%} against {i['mean_p']:.1%}. "
    )
    if s["own_effect"] > i["own_effect"] and s["total_effect"] < i["total_effect"]:
        text += (
            f"The seniority column alone makes a student ×{math.exp(s['own_effect']):.2f} as likely, because "
            "other signals already take them down: all signals except seniority make a student "
            f"×{math.exp(s['total_effect'] - s['own_effect']):.2f} as likely "
            f"(most: {s.get('lowered_by', '')}). "
            "SHAP splits the credit between signals that say the same thing, and with so few students "
            "converting there is nothing left for the seniority column to explain. Together, all signals "
            "put students at "
            f"×{math.exp(s['total_effect']):.2f} against ×{math.exp(i['total_effect']):.2f}: "
        )
    text += (
        "the model ranks them as the data does; the odd-looking seniority effect is how the credit is "
        "split between signals, not a wrong ranking and not the data."
        if same_order
        else "the model ranks them differently from what happened: treat this as a model problem "
        "(too few students to learn from, or a leak)."
    )
    return text


def fmt_prob(x: object) -> str:
    if not _finite(x):
        return "–"
    v = float(x)  # type: ignore[arg-type]
    return f"{v:.3f}" if v >= 0.01 or v == 0 else f"{v:.4f}"


# --------------------------------------------------------------------------------------------------
# images


def png_data_uri(path_or_bytes: Path | bytes) -> str:
    """A PNG as a ``data:`` URI (the page embeds every image)."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fig_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    _plt().close(fig)
    return buf.getvalue()


def gains_chart(curves: Mapping[str, pd.DataFrame], title: str) -> bytes:
    """Cumulative gains: share of converting leads found when calling the top x % by score."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.0), dpi=100)
    styles = {"model": ("-", "#2e86c1"), "rule_baseline": ("--", "#e67e22"), "oracle": (":", "#27ae60")}
    for name, t in curves.items():
        ls, colour = styles.get(name, ("-", None))
        ax.plot(
            t["share_contacted"],
            t["share_of_positives"],
            ls,
            color=colour,
            label=SERIES_NAMES.get(name, name),
        )
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, alpha=0.6, label="random order")
    ax.axvline(0.10, color="#999", lw=0.8, ls=":")
    ax.set_xlabel("share of leads called (highest score first)")
    ax.set_ylabel("share of future SQLs found")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _fig_bytes(fig)


def calibration_chart(deciles: pd.DataFrame, title: str) -> bytes:
    """Predicted vs actual rate per decile of the predicted probability."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 4.0), dpi=100)
    top = float(max(deciles["predicted"].max(), deciles["actual"].max(), 1e-3)) * 1.08
    ax.plot([0, top], [0, top], color="grey", lw=0.8, alpha=0.7, label="perfect")
    ax.plot(deciles["predicted"], deciles["actual"], "o-", color="#2e86c1", label="model (test slice)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_xlabel("predicted probability (decile average)")
    ax.set_ylabel("actual SQL rate")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _fig_bytes(fig)


def threshold_chart(table: pd.DataFrame, stages: list[dict[str, Any]], title: str) -> bytes:
    """Leads per week (bars' worth of volume) and the MQL→SQL rate against the threshold."""
    from leadscore.models.thresholds import MIN_SUPPORT

    plt = _plt()
    # rates over a handful of leads are noise: draw only thresholds that flag enough leads
    t = table[table["leads_flagged"] >= MIN_SUPPORT].sort_values("threshold")
    fig, ax = plt.subplots(figsize=(7.0, 3.8), dpi=100)
    ax.plot(t["threshold"], t["leads_per_week"], color="#2e86c1", label="leads per week handed over")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("threshold (calibrated probability)")
    ax.set_ylabel("leads per week", color="#2e86c1")
    ax2 = ax.twinx()
    ax2.plot(t["threshold"], t["mql_to_sql_rate"], color="#c0392b", label="MQL→SQL rate of those leads")
    ax2.set_ylabel("MQL→SQL rate", color="#c0392b")
    ax2.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    for s in stages:
        if s["probability"] > 0:
            ax.axvline(s["probability"], color="#555", ls="--", lw=0.9)
            ax.text(s["probability"], ax.get_ylim()[1] * 0.97, f" {s['name']}", fontsize=8, va="top")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _fig_bytes(fig)


def volume_chart(volume: pd.DataFrame, cohorts: pd.DataFrame) -> bytes:
    """MQLs per month (bars) and the cohort MQL→SQL rate (line; dashed where the cohort is incomplete)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.0, 3.4), dpi=100)
    x = pd.to_datetime(volume["period"])
    ax.bar(x, volume["mql_entries"], width=20, color="#aed6f1", label="MQLs (entries)")
    ax.set_ylabel("MQLs per month")
    ax2 = ax.twinx()
    c = cohorts.copy()
    c["period"] = pd.to_datetime(c["period"])
    full = c[c["complete"]]
    ax2.plot(full["period"], full["mql_to_sql"], "o-", color="#c0392b", ms=3, label="MQL→SQL rate (cohort)")
    part = c[~c["complete"]]
    if len(part):
        ax2.plot(part["period"], part["mql_to_sql"], "o--", color="#c0392b", alpha=0.4, ms=3)
    ax2.set_ylim(0, max(0.05, float(c["mql_to_sql"].max()) * 1.2) if len(c) else 1)
    ax2.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax2.set_ylabel("MQL→SQL rate", color="#c0392b")
    ax.set_title("MQLs per month and their MQL→SQL rate (dashed: cohort not complete yet)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    return _fig_bytes(fig)


# --------------------------------------------------------------------------------------------------
# data for the page


def decile_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Equal-count bins of p (highest first): rows, predicted (mean p), actual rate, expected and actual
    positives."""
    order = np.argsort(-p, kind="stable")
    out = []
    for i, idx in enumerate(np.array_split(order, bins), start=1):
        if len(idx) == 0:
            continue
        out.append(
            {
                "decile": i,
                "rows": len(idx),
                "p_from": float(p[idx].min()),
                "p_to": float(p[idx].max()),
                "predicted": float(p[idx].mean()),
                "actual": float(y[idx].mean()),
                "expected_positives": float(p[idx].sum()),
                "actual_positives": int(y[idx].sum()),
            }
        )
    return pd.DataFrame(out)


def gains_from_scores(y: np.ndarray, scores: Mapping[str, np.ndarray]) -> dict[str, pd.DataFrame]:
    """Cumulative gains curves when evaluate's plot CSVs are absent (ties broken by row order)."""
    out = {}
    for name, s in scores.items():
        order = np.argsort(-s, kind="stable")
        found = np.concatenate([[0.0], np.cumsum(y[order])]) / max(y.sum(), 1)
        share = np.arange(len(y) + 1) / max(len(y), 1)
        keep = np.unique(np.linspace(0, len(y), 201).astype(int))
        out[name] = pd.DataFrame({"share_contacted": share[keep], "share_of_positives": found[keep]})
    return out


def read_gains(reports_dir: Path, target: str) -> dict[str, pd.DataFrame]:
    folder = reports_dir / "plots" / target / "gains"
    out = {}
    for name in SERIES_NAMES:
        path = folder / f"{name}.csv"
        if path.exists():
            out[name] = pd.read_csv(path)
    return out


def pick_table_rows(table: pd.DataFrame, shares: tuple[float, ...] = TABLE_SHARES) -> pd.DataFrame:
    """Rows of the full threshold table to show: the one closest to each share of new leads, and every
    chosen threshold (highlighted). Sorted from the highest threshold down."""
    keep = set(np.flatnonzero(table["stage"].fillna("").astype(str) != ""))
    for share in shares:
        keep.add(int((table["share_of_new_leads"] - share).abs().idxmin()))
    return table.iloc[sorted(keep)].sort_values("threshold", ascending=False).reset_index(drop=True)


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None or len(frame) == 0:
        return []
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def _load_json(path: Path) -> Any | None:
    return json.loads(path.read_text()) if path.exists() else None


def _edit_paths(params: Params) -> list[dict[str, str]]:
    """What to edit in params.yaml for each stage rule, with its current value."""
    out = []
    for i, rule in enumerate(params.thresholds.stages):
        if rule.goal is not None:
            key, value = next((k, v) for k, v in rule.goal.model_dump().items() if v is not None)
            out.append(
                {
                    "stage": rule.name,
                    "path": f"thresholds.stages[{i}].goal.{key}",
                    "value": f"{value:g}",
                    "kind": key,
                }
            )
        else:
            out.append(
                {
                    "stage": rule.name,
                    "path": f"thresholds.stages[{i}].probability",
                    "value": f"{rule.probability:g}",
                    "kind": "probability",
                }
            )
    return out


def _params_snippet(params: Params) -> str:
    """The ``thresholds`` section of params.yaml as YAML (what the reader edits)."""
    import yaml

    section = {"thresholds": params.thresholds.model_dump(mode="json", exclude_none=True)}
    for stage in section["thresholds"]["stages"]:
        if "goal" in stage:
            stage["goal"] = {k: v for k, v in stage["goal"].items() if v is not None}
    return yaml.safe_dump(section, sort_keys=False, default_flow_style=None, width=100)


#: How the report speaks of a target's stage: (what the lead does, short label, plural).
OUTCOME_WORDS: dict[str, tuple[str, str, str]] = {
    "sql": ("becomes sales-qualified (SQL)", "SQL", "SQLs"),
    "opportunity": ("becomes an opportunity", "opportunity", "opportunities"),
    "closed_won": ("is won (closed-won)", "won", "won deals"),
}


def outcome_words(stage: str, stages_in_history: set[str] | None = None) -> dict[str, Any]:
    """The report's words for the configured target stage (issue 11: a closed-won-only funnel must not
    read "sales-qualified (SQL)"), and whether the history has SQL rows for the SQL funnel cards."""
    plain = stage.replace("_", " ")
    verb, short, plural = OUTCOME_WORDS.get(stage, (f"reaches {plain}", plain, f"{plain} leads"))
    has_sql = "sql" in stages_in_history if stages_in_history is not None else stage == "sql"
    return {
        "outcome": verb,
        "short": short,
        "plural": plural,
        "conversion": f"MQL→{short}",
        "has_sql": has_sql,
    }


def build_context(
    params: Params,
    bundle: Bundle,
    explained: Mapping[str, TargetExplanation],
    funnel: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything the template shows, as plain values (numbers, strings, data URIs)."""
    from leadscore.models.retrain_report import retrain_context

    reports = params.data.reports_dir
    metrics = _load_json(reports / "metrics.json") or bundle.metrics
    thr_report = _load_json(reports / "thresholds.json")
    thresholds = thr_report or bundle.thresholds
    primary = thresholds.get("target", params.thresholds.target)
    stages = thresholds["stages"]
    target_stage = params.snapshots.targets[primary].stage if primary in params.snapshots.targets else primary
    history_stages = funnel.get("stages_in_history")
    words = outcome_words(target_stage, set(history_stages) if history_stages is not None else None)

    # model vs rule
    comparison = []
    for target in explained:
        m = metrics.get(target, {})
        series = [s for s in SERIES_NAMES if s in m]
        comparison.append(
            {
                "target": target,
                "n_test": m.get("n_test"),
                "base_rate": m.get("base_rate"),
                "warning": m.get("warning"),  # evaluate's implausibly-high-AUC warning (a leak until proven)
                "rows": [{"name": SERIES_NAMES[s], "key": s, **m[s]} for s in series],
            }
        )
    preds_path = params.data.build_dir / "train" / f"predictions_{primary}.parquet"
    test = None
    if preds_path.exists():
        preds = pd.read_parquet(preds_path)
        test = preds[preds["split"] == "test"].reset_index(drop=True)
    gains = read_gains(reports, primary)
    if not gains and test is not None:
        scores = {"model": test["p"].to_numpy(float), "rule_baseline": test["rule_score"].to_numpy(float)}
        if "oracle_p" in test and test["oracle_p"].notna().all():
            scores["oracle"] = test["oracle_p"].to_numpy(float)
        gains = gains_from_scores(test["label"].to_numpy(float), scores)
    images: dict[str, str] = {}
    if gains:
        images["gains"] = png_data_uri(gains_chart(gains, f"{primary}: cumulative gains on the test slice"))
    deciles = None
    if test is not None and len(test):
        deciles = decile_table(test["label"].to_numpy(float), test["p"].to_numpy(float))
        images["calibration"] = png_data_uri(calibration_chart(deciles, f"{primary}: predicted vs actual"))

    # thresholds
    table_rows: list[dict[str, Any]] = []
    if thr_report is not None and thr_report.get("table"):
        full = pd.DataFrame(thr_report["table"])
        full["stage"] = full["stage"].fillna("")
        table_rows = _records(pick_table_rows(full))
        images["thresholds"] = png_data_uri(threshold_chart(full, stages, f"{primary}: volume vs quality"))

    # drivers
    drivers = []
    for target, e in explained.items():
        top = params.explain.top_features
        drivers.append(
            {
                "target": target,
                "rows": e.rows,
                "groups": _records(e.groups.head(top)),
                "features": _records(e.importance.head(top)),
                "categories": _records(
                    e.categories[e.categories["feature"].isin(["email_type", "seniority", "size_band"])]
                ),
                "segments": _segments(e.segments, metrics.get(target, {}).get("segments", {})),
                "examples": e.examples,
                "base_rate": metrics.get(target, {}).get("base_rate"),
                "seniority": _with_wilson(e.seniority),
                "seniority_note": seniority_note(_records(e.seniority)),
                "images": {k: png_data_uri(v) for k, v in e.images.items()},
                "dependence": [
                    {
                        "feature": f,
                        "label": e.importance.set_index("feature").loc[f, "label"],
                        "uri": png_data_uri(e.images[f"dependence_{f}"]),
                    }
                    for f in e.importance["feature"]
                    if f"dependence_{f}" in e.images
                ],
            }
        )

    # funnel
    volume, cohorts = funnel.get("mql_volume"), funnel.get("cohorts")
    if volume is not None and len(volume):
        images["volume"] = png_data_uri(volume_chart(volume, cohorts))
    meta = bundle.metadata
    from leadscore.models.simulator import load_simulator_frame, simulator_grid

    sim_frame = load_simulator_frame(params)
    sim = (
        simulator_grid(
            sim_frame,
            params.snapshots.every_days,
            stages,
            params.baseline.mql_points,
            params.thresholds.grid_points,
        )
        if sim_frame is not None and len(sim_frame)
        else None
    )
    from leadscore.models.intervals import wilson

    today = None
    tf = funnel.get("threshold_funnel")
    if tf is not None and len(tf) and str(tf.iloc[-1]["stage"]).startswith("today"):
        r = tf.iloc[-1]
        lo, hi = wilson(float(r["sql"]), float(r["leads"]))
        today = {"rate": float(r["sql_rate"]), "lo": float(lo), "hi": float(hi), "leads": int(r["leads"])}
    cal = thresholds.get("calibration_slice", {})
    summary = funnel.get("summary", {}) or {}
    first_cohort = cohorts["period"].min() if cohorts is not None and len(cohorts) else None
    dates = {
        "history_from": str(first_cohort)[:10] if first_cohort is not None else "–",
        "history_to": str(summary.get("export_end", "–"))[:10],
        "calibration_from": str(cal.get("from", "–"))[:10],
        "calibration_to": str(cal.get("to", "–"))[:10],
        "test_from": str(test["snapshot_ts"].min())[:10] if test is not None and len(test) else "–",
        "test_to": str(test["snapshot_ts"].max())[:10] if test is not None and len(test) else "–",
    }
    return {
        "today": today,
        "dates": dates,
        "sim": sim,
        "retrain": retrain_context(reports),
        "title": "Lead scoring: what drives conversion, and where to draw the line",
        "model_version": bundle.version,
        "bundle_checksum": bundle.checksum[:12],
        "data_cutoff": meta.get("data_cutoff", "–"),
        "targets": meta.get("target_info", {}),
        "primary": primary,
        "horizon": params.snapshots.targets[primary].horizon_days
        if primary in params.snapshots.targets
        else None,
        "comparison": comparison,
        "primary_metrics": metrics.get(primary, {}),
        "deciles": _records(deciles),
        "stages": stages,
        "definition": thresholds.get("definition", ""),
        "calibration_slice": thresholds.get("calibration_slice", {}),
        "threshold_rows": table_rows,
        "test_check": (thr_report or {}).get("test_check", []),
        "edit_paths": _edit_paths(params),
        "params_snippet": _params_snippet(params),
        "drivers": drivers,
        "funnel": {
            "summary": funnel.get("summary", {}),
            "cohorts": _records(cohorts.tail(12) if cohorts is not None else None),
            "recycle_reasons": _records(funnel.get("recycle_reasons")),
            "disqualify_reasons": _records(funnel.get("disqualify_reasons")),
            "threshold_funnel": _funnel_with_wilson(funnel.get("threshold_funnel")),
        },
        "rule_points": params.baseline.mql_points,
        "every_days": params.snapshots.every_days,
        "images": images,
        "w": words,
    }


def _with_wilson(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Records of a per-group table with the 95 % Wilson interval (lo, hi) of its actual rate."""
    from leadscore.models.intervals import wilson

    if frame is None or frame.empty:
        return []
    lo, hi = wilson(np.round(frame["actual_rate"] * frame["rows"]), frame["rows"])
    return _records(frame.assign(lo=lo, hi=hi))


def _funnel_with_wilson(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The threshold funnel's records with the 95 % Wilson interval (lo, hi) of each SQL rate."""
    from leadscore.models.intervals import wilson

    if frame is None or frame.empty:
        return []
    lo, hi = wilson(frame["sql"].astype(float), frame["leads"].astype(float))
    return _records(frame.assign(lo=lo, hi=hi))


def _segments(drivers: pd.DataFrame, seg_metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Segment tables: drivers per segment value, with the evaluation's AUCs where it has them."""
    out = []
    if drivers is None or drivers.empty:
        return out
    for col, part in drivers.groupby("segment", sort=False):
        rows = []
        for r in _records(part.sort_values("rows", ascending=False)):
            m = seg_metrics.get(col, {}).get(r["value"], {})
            rows.append(
                {**r, "model_roc_auc": m.get("model_roc_auc"), "baseline_roc_auc": m.get("baseline_roc_auc")}
            )
        out.append({"segment": col, "title": col.replace("_", " ").capitalize(), "rows": rows})
    return out


def template_env() -> Environment:
    """The one Jinja environment of every HTML report (explain.html, the flat report), with its filters."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    from leadscore.models.labels import label

    env.filters.update(pct=fmt_pct, num=fmt_num, prob=fmt_prob, times=fmt_times, pts=fmt_points, label=label)
    return env


def render_report(context: Mapping[str, Any]) -> str:
    """The HTML page for a context from ``build_context``."""
    return template_env().get_template("report.html").render(**context)


def render_simulator_page(sim: Mapping[str, Any], words: Mapping[str, Any], horizon: int | None) -> str:
    """A page holding only the threshold simulator (the same partial explain.html includes)."""
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        "<title>Threshold simulator</title></head><body><main>"
        '{% include "simulator.html" %}</main></body></html>'
    )
    return template_env().from_string(page).render(sim=sim, w=words, horizon=horizon)


def write_report(
    params: Params, bundle: Bundle, explained: Mapping[str, TargetExplanation], funnel: Mapping[str, Any]
) -> Path:
    """Render ``reports/explain.html``; returns its path."""
    html = render_report(build_context(params, bundle, explained, funnel))
    path = params.data.reports_dir / "explain.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
