"""A fair comparison: the champion and the challenger scored on the same most recent out-of-time slice.

DVC stage ``compare`` (after ``bundle``). The challenger is the bundle just built (``models/``); the
champion is ``params.compare.champion`` (default: the registry alias ``champion``, downloaded and
verified by ``models.source``). Both score the *same* rows: the test slice of the new export (the latest
snapshots whose labels are fully observed), each bundle through its own feature spec and rule, so a
challenger with different features is still judged on the same leads and times.

Leakage guard: rows whose snapshot lies before the champion's training cutoff plus the horizon are
dropped (the champion may have learned those leads' outcomes); ``slice.dropped_champion_overlap`` counts
them.

Uncertainty: a paired bootstrap over *leads* (a lead's snapshots stay together, as they are correlated):
each draw resamples leads once and computes every metric for both models on the same rows, so the
interval of the difference is much tighter than two separate intervals would suggest.

Lift and recall "at the sales capacity": sales can call ``capacity_per_week`` leads a week, i.e.
``capacity × every_days / 7`` leads per snapshot period; as a share of the leads scored per snapshot date
that is the top fraction at which lift and recall are read.

Writes ``reports/compare.json``::

    {"decision": "promote" | "keep", "reasons": [...], "target": "sql",
     "champion": {"ref", "version", "model_version", "bundle_checksum", "metrics": {...}} | null,
     "challenger": {...}, "difference": {...}, "slice": {...}, "gate": {...}}

where ``metrics[target][metric] = {"value": v, "ci": [lo, hi]}`` and ``difference`` is challenger −
champion with its paired interval.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import CompareParams, Params
from leadscore.features.stage import snapshots_path
from leadscore.models import evaluate as ev
from leadscore.models.bundle import Bundle, load_bundle

METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_at_capacity", "recall_at_capacity")
#: metrics where lower is better (the rest: higher is better)
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece"})


def capacity_fraction(params: Params, examples: pd.DataFrame) -> tuple[float, float | None]:
    """(top fraction, capacity per week): the capacity as a share of leads scored per snapshot date."""
    capacity = params.compare.capacity_per_week
    if capacity is None:
        goals = [
            r.goal.capacity_per_week for r in params.thresholds.stages if r.goal and r.goal.capacity_per_week
        ]
        capacity = goals[0] if goals else None
    if capacity is None or examples.empty:
        return 0.1, None
    per_date = examples.groupby("snapshot_ts").size().mean()
    per_period = capacity * params.snapshots.every_days / 7.0
    return float(min(1.0, max(per_period / per_date, 1.0 / len(examples)))), float(capacity)


def metric_functions(fraction: float, ece_bins: int) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Every compared metric as f(y, p) on calibrated probabilities (what the API serves)."""
    return {
        "roc_auc": ev.roc_auc,
        "pr_auc": ev.pr_auc,
        "log_loss": ev.log_loss,
        "brier": ev.brier,
        "ece": lambda y, p: ev.ece(y, p, ece_bins),
        "lift_at_capacity": lambda y, p: ev.lift_at(y, p, fraction),
        "recall_at_capacity": lambda y, p: ev.recall_at(y, p, fraction),
    }


def lead_bootstrap_indices(groups: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """Row indices of ``n_boot`` resamples of whole groups (leads) with replacement; deterministic."""
    codes, uniques = pd.factorize(pd.Series(groups), sort=True)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(len(uniques)))
    sizes = np.diff(np.r_[starts, len(codes)])
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, len(uniques), len(uniques)), minlength=len(uniques))
        pick = np.repeat(np.arange(len(uniques)), counts)
        first, size = starts[pick], sizes[pick]
        # rows of the picked leads, all at once: start of each pick + 0..size-1
        offsets = np.repeat(first - np.r_[0, np.cumsum(size)[:-1]], size)
        out.append(order[np.arange(size.sum()) + offsets])
    return out


def paired_bootstrap(
    y: np.ndarray,
    p_a: np.ndarray | None,
    p_b: np.ndarray,
    groups: np.ndarray,
    fns: dict[str, Callable[[np.ndarray, np.ndarray], float]],
    n_boot: int,
    confidence: float,
    seed: int,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Point values and percentile intervals for model a (champion, optional), model b (challenger) and
    b − a, every draw on the same resampled leads. Draws with one class only are skipped."""
    y = np.asarray(y, dtype=np.float64)
    draws: dict[str, dict[str, list[float]]] = {k: {m: [] for m in fns} for k in ("a", "b", "diff")}
    for rows in lead_bootstrap_indices(groups, n_boot, seed):
        yy = y[rows]
        if yy.min() == yy.max():
            continue
        for m, fn in fns.items():
            vb = fn(yy, p_b[rows])
            draws["b"][m].append(vb)
            if p_a is not None:
                va = fn(yy, p_a[rows])
                draws["a"][m].append(va)
                draws["diff"][m].append(vb - va)
    alpha = (1 - confidence) / 2

    def summary(point: float, values: list[float]) -> dict[str, Any]:
        arr = np.asarray([v for v in values if np.isfinite(v)])
        ci = (
            [float(np.quantile(arr, alpha)), float(np.quantile(arr, 1 - alpha))] if len(arr) else [None, None]
        )
        return {"value": float(point), "ci": ci}

    out: dict[str, dict[str, dict[str, Any]]] = {"challenger": {}, "champion": {}, "difference": {}}
    for m, fn in fns.items():
        vb = fn(y, p_b)
        out["challenger"][m] = summary(vb, draws["b"][m])
        if p_a is not None:
            va = fn(y, p_a)
            out["champion"][m] = summary(va, draws["a"][m])
            out["difference"][m] = summary(vb - va, draws["diff"][m])
    out["n_boot_used"] = {"draws": len(draws["b"]["roc_auc"])}  # type: ignore[dict-item]
    return out


def gate_decision(result: dict[str, Any], params: CompareParams, same_model: bool) -> tuple[str, list[str]]:
    """("promote" | "keep", reasons) from the gate target's figures and ``params.gate``."""
    g = params.gate
    ch = result["challenger"]
    reasons: list[str] = []
    keep = False
    ece = ch["ece"]["value"]
    if ece > g.max_ece:
        keep = True
        reasons.append(f"challenger ECE {ece:.4f} is above the bound {g.max_ece}")
    else:
        reasons.append(f"challenger ECE {ece:.4f} is within the bound {g.max_ece}")
    if not result.get("difference"):
        return "promote", ["no champion yet: the first model becomes champion", *reasons]
    if same_model:
        return "keep", [
            "the challenger is the champion's model (same model_version): nothing to promote; a "
            "thresholds-only change updates that version when published"
        ]
    d_auc = result["difference"]["roc_auc"]
    lo, hi = d_auc["ci"]
    if hi is not None and hi < -g.max_auc_drop:
        keep = True
        reasons.append(
            f"ROC-AUC worse beyond the interval: challenger − champion {d_auc['value']:+.4f} "
            f"[{lo:+.4f}, {hi:+.4f}] < −{g.max_auc_drop}"
        )
    else:
        reasons.append(
            f"ROC-AUC not worse beyond the interval: challenger − champion {d_auc['value']:+.4f} "
            f"[{lo:+.4f}, {hi:+.4f}]"
        )
    d_ll = result["difference"]["log_loss"]
    lo, hi = d_ll["ci"]
    if lo is not None and lo > g.max_log_loss_increase:
        keep = True
        reasons.append(
            f"log loss worse: challenger − champion {d_ll['value']:+.5f} [{lo:+.5f}, {hi:+.5f}] > "
            f"{g.max_log_loss_increase}"
        )
    else:
        reasons.append(
            f"log loss not worse: challenger − champion {d_ll['value']:+.5f} [{lo:+.5f}, {hi:+.5f}]"
        )
    return ("keep" if keep else "promote"), reasons


@dataclass
class Contender:
    """A bundle in the comparison, where it came from and its registry version (if any)."""

    bundle: Bundle
    ref: str
    version: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "version": self.version,
            "model_version": self.bundle.version,
            "bundle_checksum": self.bundle.checksum,
            "data_cutoff": self.bundle.metadata.get("data_cutoff"),
        }


def champion_ref(params: Params) -> str:
    return params.compare.champion or f"models:/{params.publish.registered_model}@champion"


def load_champion(params: Params) -> Contender | None:
    """The champion bundle, or None when the registry has no champion yet (a missing folder is an error)."""
    from leadscore.models.registry import tracking_uri
    from leadscore.models.source import fetch_bundle, is_registry_ref, registry_version

    ref = champion_ref(params)
    if is_registry_ref(ref):
        from mlflow.tracking import MlflowClient

        uri = tracking_uri()
        if registry_version(MlflowClient(tracking_uri=uri, registry_uri=uri), ref) is None:
            return None
    resolved = fetch_bundle(ref, params.data.build_dir / "registry", tracking_uri())
    return Contender(load_bundle(resolved.path), ref, resolved.version)


def compare_slice(
    params: Params, target: str, champion: Contender | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The challenger's out-of-time test examples of ``target``, minus rows the champion may have seen."""
    examples = pd.read_parquet(snapshots_path(params, target))
    test = examples[examples["split"] == "test"].reset_index(drop=True)
    if test.empty:
        raise ValueError(f"{snapshots_path(params, target)} has no test rows: nothing to compare on")
    dropped = 0
    if champion is not None and champion.bundle.metadata.get("data_cutoff"):
        horizon = params.snapshots.targets[target].horizon_days
        guard = pd.Timestamp(champion.bundle.metadata["data_cutoff"]) + pd.Timedelta(days=horizon)
        keep = test["snapshot_ts"] > guard.tz_localize(None) if guard.tzinfo else test["snapshot_ts"] > guard
        dropped = int((~keep).sum())
        test = test[keep].reset_index(drop=True)
        if test.empty:
            raise ValueError(
                f"every test snapshot of {target} is within the champion's training window plus the "
                f"horizon (cutoff {champion.bundle.metadata['data_cutoff']}): the new export adds no "
                "out-of-time rows the champion has not seen; add months of data before comparing"
            )
    info = {
        "target": target,
        "start": str(test["snapshot_ts"].min()),
        "end": str(test["snapshot_ts"].max()),
        "snapshot_dates": int(test["snapshot_ts"].nunique()),
        "rows": len(test),
        "leads": int(test["lead_id"].nunique()),
        "positives": int(test["label"].sum()),
        "base_rate": float(test["label"].mean()),
        "dropped_champion_overlap": dropped,
    }
    return test, info


def compare(params: Params, challenger: Contender, champion: Contender | None) -> dict[str, Any]:
    """The whole comparison (pure apart from reading the interim tables and snapshots)."""
    from leadscore.models.evaluate import round_floats
    from leadscore.models.rescore import History, score_examples

    target = params.compare.target or params.thresholds.target
    for who in [challenger] + ([champion] if champion else []):
        if target not in who.bundle.targets:
            raise ValueError(f"bundle {who.ref} has no model for target {target!r} ({who.bundle.targets})")
    test, info = compare_slice(params, target, champion)
    if test["label"].nunique() < 2:
        raise ValueError(f"the comparison slice of {target} has a single class: nothing to compare")
    fraction, capacity = capacity_fraction(params, test)
    info.update({"capacity_per_week": capacity, "top_fraction": fraction})
    history = History.open(params)
    p_b = score_examples(challenger.bundle, history, test)[f"p_{target}"].to_numpy()
    p_a = score_examples(champion.bundle, history, test)[f"p_{target}"].to_numpy() if champion else None
    fns = metric_functions(fraction, params.evaluate.ece_bins)
    stats = paired_bootstrap(
        test["label"].to_numpy(), p_a, p_b, test["lead_id"].to_numpy(), fns,
        params.compare.bootstrap, params.compare.confidence, params.compare.seed,
    )  # fmt: skip
    same = champion is not None and champion.bundle.version == challenger.bundle.version
    decision, reasons = gate_decision(
        {"challenger": stats["challenger"], "difference": stats["difference"]}, params.compare, same
    )
    info["bootstrap_draws"] = stats["n_boot_used"]["draws"]
    out = {
        "decision": decision,
        "reasons": reasons,
        "target": target,
        "champion": {**champion.describe(), "metrics": {target: stats["champion"]}} if champion else None,
        "challenger": {**challenger.describe(), "metrics": {target: stats["challenger"]}},
        "difference": {target: stats["difference"]} if champion else {},
        "slice": info,
        "gate": params.compare.gate.model_dump(mode="json"),
        "confidence": params.compare.confidence,
    }
    return round_floats(out)


def run_compare(params: Params) -> dict[str, Any]:
    """DVC stage ``compare``: champion vs the bundle in ``models/``; writes ``reports/compare.json``."""
    challenger = Contender(load_bundle(params.data.models_dir), str(params.data.models_dir))
    champion = load_champion(params)
    result = compare(params, challenger, champion)
    params.data.reports_dir.mkdir(parents=True, exist_ok=True)
    (params.data.reports_dir / "compare.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result
