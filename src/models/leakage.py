"""The leakage guard: find columns that look filled in after the outcome, with the evidence.

A CRM export is taken at one moment, long after many leads converted, so it mixes what was known when a
lead arrived with what sales wrote down later (close date, deal amount, lost reason, "meeting held").
A model trained on the latter looks brilliant offline and is useless on a new lead. The guard looks at
every candidate column on the *training slice only* and flags it when

(a) it predicts the outcome almost perfectly on its own: single-column ROC-AUC >= ``auc_threshold``
    (numbers as they are, with missing values as their own lowest value, and in quantile bins; categories
    by their target rate, encoded out-of-fold within the training slice so a many-valued column cannot
    score by memorising);
(b) it is missing for one outcome class only: missing in >= ``missing_high`` of one class and in
    <= ``missing_low`` of the other (a field sales fills in once a deal exists);
(c) its name or its values describe sales follow-up (``name_patterns`` / ``value_patterns``: closed, won,
    lost, opportunity, deal, contract, stage, status, reason, amount, owner, "meeting held", …).

Flagged columns are excluded from training unless the user lists them in ``flat.allow_columns``; the
report (JSON + Markdown) lists every column with its evidence numbers and what was done with it.
On the lead feature tables of the event pipeline (point-in-time by construction) the guard runs as a
report only: :func:`run_leakage_report`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from leadscore.config import LeakageParams, Params

FOLDS = 5
SMOOTHING = 10.0  # pseudo-rows of the prior in the target-rate encoding
NUMERIC_BINS = 20
MAX_ROWS = 200_000  # the statistical checks read at most this many training rows (deterministic sample)
MISSING = "\x00missing"


@dataclass(frozen=True)
class ColumnEvidence:
    """What the guard found about one column; ``flags`` empty means nothing suspicious."""

    column: str
    kind: str
    auc: float | None
    missing_positive: float
    missing_negative: float
    name_match: str | None = None
    follow_up_values: dict[str, dict[str, float]] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    allowed: bool = False

    @property
    def excluded(self) -> bool:
        return bool(self.flags) and not self.allowed


@dataclass(frozen=True)
class GuardResult:
    """Per-column evidence (in column order), the excluded columns and the kept ones."""

    evidence: tuple[ColumnEvidence, ...]
    n_rows: int
    n_positive: int
    params: dict[str, Any]

    @property
    def excluded(self) -> list[str]:
        return [e.column for e in self.evidence if e.excluded]

    @property
    def kept(self) -> list[str]:
        return [e.column for e in self.evidence if not e.excluded]

    @property
    def allowed_flagged(self) -> list[str]:
        return [e.column for e in self.evidence if e.flags and e.allowed]

    def to_json(self) -> dict[str, Any]:
        cols = []
        for e in self.evidence:
            d = asdict(e)
            d["flags"] = list(e.flags)
            d["excluded"] = e.excluded
            cols.append(d)
        return {
            "checked_on": "training slice",
            "n_rows": self.n_rows,
            "n_positive": self.n_positive,
            "excluded": self.excluded,
            "allowed_despite_flags": self.allowed_flagged,
            "kept": self.kept,
            "thresholds": self.params,
            "columns": cols,
        }


FLAG_TEXT = {
    "predicts_alone": "predicts the outcome almost perfectly on its own",
    "missing_for_one_class": "missing for one outcome class only",
    "follow_up_name": "name describes sales follow-up",
    "follow_up_values": "values describe sales follow-up",
}


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:.1%}" if pct else f"{x:.3f}"


def _why(e: ColumnEvidence, p: LeakageParams | Mapping[str, Any]) -> str:
    get = p.get if isinstance(p, Mapping) else lambda k: getattr(p, k)
    parts = []
    for flag in e.flags:
        if flag == "predicts_alone":
            parts.append(f"AUC alone {_fmt(e.auc)} ≥ {get('auc_threshold')}")
        elif flag == "missing_for_one_class":
            parts.append(
                f"missing in {_fmt(e.missing_positive, True)} of converted vs "
                f"{_fmt(e.missing_negative, True)} of not converted"
            )
        elif flag == "follow_up_name":
            parts.append(f"name contains '{e.name_match}'")
        elif flag == "follow_up_values":
            shown = ", ".join(
                f"'{v}' ({s['share']:.1%} of rows, {s['outcome_rate']:.0%} converted)"
                for v, s in list(e.follow_up_values.items())[:3]
            )
            parts.append(f"values {shown}")
    return "; ".join(parts)


def to_markdown(result: GuardResult, title: str = "Leakage guard") -> str:
    """The guard's report for people: excluded columns and why, flagged-but-allowed, all evidence."""
    lines = [
        f"# {title}",
        "",
        f"Checked on the training slice: {result.n_rows} rows, {result.n_positive} converted. A column is "
        "flagged when it predicts the outcome almost perfectly on its own, is missing for one outcome class "
        "only, or its name or values describe sales follow-up. Flagged columns are excluded unless listed "
        "in `flat.allow_columns`.",
        "",
    ]
    excluded = [e for e in result.evidence if e.excluded]
    lines += ["## Excluded", ""]
    if excluded:
        lines += ["| column | why |", "|---|---|"]
        lines += [f"| `{e.column}` | {_why(e, result.params)} |" for e in excluded]
    else:
        lines.append("Nothing: no column looks filled in after the outcome.")
    allowed = [e for e in result.evidence if e.flags and e.allowed]
    if allowed:
        lines += [
            "",
            "## Flagged but allowed (`flat.allow_columns`)",
            "",
            "| column | evidence |",
            "|---|---|",
        ]
        lines += [f"| `{e.column}` | {_why(e, result.params)} |" for e in allowed]
    lines += [
        "",
        "## All columns",
        "",
        "| column | kind | AUC alone | missing (converted) | missing (not converted) | flags | used |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in result.evidence:
        lines.append(
            f"| `{e.column}` | {e.kind} | {_fmt(e.auc)} | {_fmt(e.missing_positive, True)} | "
            f"{_fmt(e.missing_negative, True)} | {', '.join(e.flags) or '–'} | "
            f"{'no' if e.excluded else 'yes'} |"
        )
    return "\n".join(lines) + "\n"


# --- evidence --------------------------------------------------------------------------------------------


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """max(AUC, 1 - AUC): a column that predicts in reverse leaks just as much."""
    auc = float(roc_auc_score(y, score))
    return max(auc, 1.0 - auc)


def _folds(y: np.ndarray, seed: int) -> np.ndarray:
    """Stratified fold number per row (deterministic)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        idx = idx[rng.permutation(len(idx))]
        fold[idx] = np.arange(len(idx)) % FOLDS
    return fold


def target_rate_oof(keys: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Out-of-fold smoothed target rate per row of a categorical ``keys`` (strings, missing as a key).

    Each row's value is the outcome rate of its key in the *other* folds, shrunk to the prior with
    ``SMOOTHING`` pseudo-rows, so a key seen once cannot predict its own row.
    """
    fold = _folds(y, seed)
    out = np.empty(len(y), dtype=np.float64)
    frame = pd.DataFrame({"k": keys, "y": y, "f": fold})
    for f in range(FOLDS):
        test = fold == f
        fit = frame[~test]
        prior = fit["y"].mean()
        stats = fit.groupby("k")["y"].agg(["sum", "count"])
        rate = (stats["sum"] + SMOOTHING * prior) / (stats["count"] + SMOOTHING)
        out[test] = frame.loc[test, "k"].map(rate).fillna(prior).to_numpy(dtype=np.float64)
    return out


def single_column_auc(values: pd.Series, kind: str, y: np.ndarray, seed: int = 0) -> float | None:
    """The best single-column ROC-AUC of ``values`` for outcome ``y`` (None when it cannot be computed)."""
    if len(np.unique(y)) < 2:
        return None
    if kind == "category":
        keys = values.astype(object).where(values.notna(), MISSING).astype(str).to_numpy()
        return _auc(y, target_rate_oof(keys, y, seed))
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    present = np.isfinite(x)
    if not present.any():
        return None
    low = np.nanmin(x[present]) - 1.0
    best = _auc(y, np.where(present, x, low))
    # Non-monotone leaks (e.g. 0 for open leads, large for won and lost ones): binned target rate.
    # Frequent exact values (a 0 that means "not filled in") are keys of their own, the rest quantile bins.
    xs = pd.Series(x)
    counts = xs.value_counts()
    frequent = set(counts.index[counts >= 0.01 * len(xs)])
    bins = pd.qcut(xs, NUMERIC_BINS, labels=False, duplicates="drop").fillna(-1).astype(int)
    keys = np.where(
        ~present, MISSING, np.where(xs.isin(frequent), "v" + xs.astype(str), "b" + bins.astype(str))
    )
    return max(best, _auc(y, target_rate_oof(keys, y, seed)))


def missing_rates(values: pd.Series, y: np.ndarray) -> tuple[float, float]:
    """(missing share among positives, missing share among negatives)."""
    miss = values.isna().to_numpy()
    return float(miss[y == 1].mean()), float(miss[y == 0].mean())


def follow_up_values(
    values: pd.Series, y: np.ndarray, patterns: Iterable[str], min_share: float
) -> dict[str, dict[str, float]]:
    """Values matching a follow-up pattern and covering >= ``min_share`` of rows: share, outcome rate."""
    rx = [re.compile(p, re.IGNORECASE) for p in patterns]
    out: dict[str, dict[str, float]] = {}
    s = values.astype(object)
    present = s.notna().to_numpy()
    for value in pd.unique(s[present]):
        if not any(r.search(str(value)) for r in rx):
            continue
        hit = (s == value).to_numpy()
        share = float(hit.mean())
        if share >= min_share:
            out[str(value)] = {"share": share, "outcome_rate": float(y[hit].mean())}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["share"]))


def name_match(column: str, patterns: Iterable[str]) -> str | None:
    """The part of the (normalised) column name that matches a follow-up pattern, or None."""
    for p in patterns:
        m = re.search(p, column, flags=re.IGNORECASE)
        if m:
            return m.group(0).strip("_")
    return None


def _sample(frame: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    if len(frame) <= MAX_ROWS:
        return frame.reset_index(drop=True), np.asarray(y)
    idx = np.sort(np.random.default_rng(seed).choice(len(frame), MAX_ROWS, replace=False))
    return frame.iloc[idx].reset_index(drop=True), np.asarray(y)[idx]


def guard(
    frame: pd.DataFrame,
    kinds: Mapping[str, str],
    y: np.ndarray,
    params: LeakageParams,
    allow: Iterable[str] = (),
    check_names: bool = True,
    seed: int = 0,
) -> GuardResult:
    """Check every column of ``frame`` (training rows; numbers as floats, categories as text) against the
    outcome ``y`` (0/1) and return the evidence. ``allow``: flagged columns to keep anyway."""
    allow = set(allow)
    frame, y = _sample(frame, np.asarray(y).astype(np.int64), seed)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    enough = min(n_pos, n_neg) >= params.min_class_rows
    evidence = []
    for col in frame.columns:
        kind = kinds.get(col, "numeric")
        values = frame[col]
        if kind != "category":
            values = pd.to_numeric(values, errors="coerce")
        flags: list[str] = []
        auc = single_column_auc(values, kind, y, seed) if enough else None
        if auc is not None and auc >= params.auc_threshold:
            flags.append("predicts_alone")
        miss_pos, miss_neg = missing_rates(values, y)
        hi, lo = max(miss_pos, miss_neg), min(miss_pos, miss_neg)
        if enough and hi >= params.missing_high and lo <= params.missing_low:
            flags.append("missing_for_one_class")
        matched = name_match(col, params.name_patterns) if check_names else None
        if matched:
            flags.append("follow_up_name")
        follow = (
            follow_up_values(frame[col], y, params.value_patterns, params.value_min_share)
            if kind == "category" and check_names
            else {}
        )
        if follow:
            flags.append("follow_up_values")
        evidence.append(
            ColumnEvidence(
                column=col,
                kind=kind,
                auc=auc,
                missing_positive=miss_pos,
                missing_negative=miss_neg,
                name_match=matched,
                follow_up_values=follow,
                flags=tuple(flags),
                allowed=col in allow,
            )
        )
    return GuardResult(tuple(evidence), len(y), n_pos, params.model_dump(mode="json"))


# --- report on the event pipeline's lead feature tables ------------------------------------------------


def feature_table_report(train: pd.DataFrame, params: Params) -> GuardResult:
    """The guard's statistical checks (a) and (b) on one target's training feature table (report only:
    these features are point-in-time by construction; their names are ours, so (c) does not apply)."""
    from leadscore.features.spec import FeatureSpec

    spec = FeatureSpec(params.features)
    features = [c for c in spec.model_features if c in train.columns]
    kinds = {c: ("category" if c in spec.categorical else "numeric") for c in features}
    return guard(train[features], kinds, train["label"].to_numpy(), params.flat.leakage, check_names=False)


def run_leakage_report(params: Params) -> dict[str, list[str]]:
    """Write ``reports/leakage_<target>.json`` and ``.md`` for each target's training feature table;
    return the flagged columns per target (nothing is excluded: this is a report)."""
    out: dict[str, list[str]] = {}
    params.data.reports_dir.mkdir(parents=True, exist_ok=True)
    for target in params.snapshots.targets:
        path = params.data.processed_dir / target / "train.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `leadscore features` (or `dvc repro`) first")
        result = feature_table_report(pd.read_parquet(path), params)
        flagged = [e.column for e in result.evidence if e.flags]
        out[target] = flagged
        data = result.to_json() | {"mode": "report only (point-in-time features)", "flagged": flagged}
        (params.data.reports_dir / f"leakage_{target}.json").write_text(json.dumps(data, indent=2) + "\n")
        (params.data.reports_dir / f"leakage_{target}.md").write_text(
            to_markdown(result, f"Leakage report: {target} feature table")
        )
    return out


def write_report(result: GuardResult, out_dir: Path, title: str = "Leakage guard") -> None:
    """``leakage.json`` and ``leakage.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "leakage.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    (out_dir / "leakage.md").write_text(to_markdown(result, title))


if __name__ == "__main__":  # python -m leadscore.models.leakage (reads ./params.yaml)
    from leadscore.config import load_params

    print(json.dumps(run_leakage_report(load_params()), indent=2))
