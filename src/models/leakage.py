"""The leakage guard: find columns that look filled in after the outcome, rank them by evidence.

A CRM export is taken at one moment, long after many leads converted, so it mixes what was known when a
lead arrived with what sales wrote down later (lead grade, call duration, last activity, close date,
deal amount, lost reason). A model trained on the latter looks brilliant offline and is useless on a new
lead. Real post-outcome columns are rarely perfect: on their own they score 0.65-0.85, so the guard
looks at every candidate column on the *training slice only* and flags it on weak evidence:

(a) ``predicts_alone``: single-column ROC-AUC >= ``auc_threshold`` (numbers as they are, missing as
    their own lowest value, and in quantile bins; categories by their target rate, encoded out-of-fold
    so a many-valued column cannot score by memorising);
(a') ``beats_the_rest``: a column whose AUC alone (>= ``rest_min_auc``) is about as good as, or better
    than, a LightGBM on all other unflagged columns together (out-of-fold), leaving out of that rest the
    other columns strong alone (>= ``suspect_auc``) so two leaks cannot vouch for each other; an honest
    strong column (lead source, company size) is weaker than the rest of the export together;
(b) ``missing_for_one_class``: filled ``missing_ratio`` times as often in one class as in
    the other, in at least ``missing_min_share`` of that class (a field sales fills in once a deal
    exists: filled for 15 % of won leads and never for lost ones);
(c) ``follow_up_name`` / ``follow_up_values``: the name or frequent values describe sales follow-up,
    grading or outcomes (``name_patterns`` / ``value_patterns``: status, stage, quality, rating, grade,
    tags, last activity, reason, call duration, closed, won, lost, converted, "Ringing", ...);
(d) ``one_sided_values``: a frequent value occurs in one outcome class only (binomial tail under the
    base rate below ``one_sided_alpha``, so a rare honest value is not enough).

Every column gets a leak score (the strength of its evidence) and a rank. Flagged columns are excluded
from training unless the user allows them (``--allow`` / ``flat.allow_columns``); the report (JSON +
Markdown) lists every column with its evidence numbers and what was done with it. On the lead feature
tables of the event pipeline the guard runs on the lead and account attributes (:func:`run_leakage_report`).
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
    auc_rest: float | None = None  # out-of-fold AUC of the other unflagged, non-suspect columns together
    missing_ratio: float | None = None  # how many times as often filled in one class
    one_sided_values: dict[str, dict[str, float]] = field(default_factory=dict)
    score: float = 0.0  # leak score: the strength of the evidence (ranks the columns)
    rank: int = 0

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

    def strongest(self, n: int = 3, kept_only: bool = True) -> list[ColumnEvidence]:
        """The ``n`` columns with the highest AUC alone (kept ones only by default)."""
        pool = [e for e in self.evidence if e.auc is not None and (not kept_only or not e.excluded)]
        return sorted(pool, key=lambda e: -(e.auc or 0.0))[:n]

    def to_json(self) -> dict[str, Any]:
        cols = []
        for e in sorted(self.evidence, key=lambda e: e.rank):
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
    "beats_the_rest": "alone about as good as all other columns together",
    "missing_for_one_class": "filled far more often in one outcome class",
    "follow_up_name": "name describes sales follow-up, grading or outcomes",
    "follow_up_values": "values describe sales follow-up, grading or outcomes",
    "one_sided_values": "frequent values occur in one outcome class only",
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
        elif flag == "beats_the_rest":
            parts.append(f"AUC alone {_fmt(e.auc)} vs {_fmt(e.auc_rest)} for all other columns together")
        elif flag == "missing_for_one_class":
            parts.append(
                f"missing in {_fmt(e.missing_positive, True)} of converted vs "
                f"{_fmt(e.missing_negative, True)} of not converted ({e.missing_ratio:.1f}×)"
            )
        elif flag == "one_sided_values":
            shown = ", ".join(
                f"'{v}' ({s['rows']:.0f} rows, {s['outcome_rate']:.0%} converted)"
                for v, s in list(e.one_sided_values.items())[:3]
            )
            parts.append(f"values in one class only: {shown}")
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
        "flagged when it predicts the outcome very well on its own or about as well as all weaker columns "
        "together, is filled far more often in one outcome class, has frequent values that "
        "occur in one outcome class only, or its name or values describe sales follow-up, grading or "
        "outcomes. Flagged columns are excluded unless allowed (`--allow COLUMN` or "
        "`flat.allow_columns`). Columns are ranked by leak evidence, strongest first.",
        "",
    ]
    ranked = sorted(result.evidence, key=lambda e: e.rank)
    excluded = [e for e in ranked if e.excluded]
    lines += ["## Excluded", ""]
    if excluded:
        lines += ["| column | why |", "|---|---|"]
        lines += [f"| `{e.column}` | {_why(e, result.params)} |" for e in excluded]
    else:
        lines.append("Nothing: no column looks filled in after the outcome.")
    allowed = [e for e in ranked if e.flags and e.allowed]
    if allowed:
        lines += [
            "",
            "## Flagged but allowed (`--allow` / `flat.allow_columns`)",
            "",
            "| column | evidence |",
            "|---|---|",
        ]
        lines += [f"| `{e.column}` | {_why(e, result.params)} |" for e in allowed]
    lines += [
        "",
        "## All columns",
        "",
        "| rank | column | kind | leak score | AUC alone | AUC other columns | missing (converted) | "
        "missing (not converted) | flags | used |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in ranked:
        lines.append(
            f"| {e.rank} | `{e.column}` | {e.kind} | {e.score:.2f} | {_fmt(e.auc)} | {_fmt(e.auc_rest)} | "
            f"{_fmt(e.missing_positive, True)} | {_fmt(e.missing_negative, True)} | "
            f"{', '.join(e.flags) or '–'} | {'no' if e.excluded else 'yes'} |"
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


def missing_ratio(miss_pos: float, miss_neg: float, params: LeakageParams) -> float:
    """How many times as often the column is filled in one class as in the other (1.0 when the larger
    filled share is below ``missing_min_share``). The smaller share is floored at half a percent so the
    ratio stays finite. Filled shares, not missing ones: a field sales fills once a deal exists is
    filled for some won leads and (almost) never for lost ones; a form field converters always fill and
    others skip now and then (missing 0 % vs 13 %) is honest and has a filled ratio near 1."""
    filled_pos, filled_neg = 1.0 - miss_pos, 1.0 - miss_neg
    hi, lo = max(filled_pos, filled_neg), min(filled_pos, filled_neg)
    return hi / max(lo, 0.005) if hi >= params.missing_min_share else 1.0


def one_sided_values(
    values: pd.Series, kind: str, y: np.ndarray, params: LeakageParams
) -> dict[str, dict[str, float]]:
    """Frequent values (>= ``one_sided_min_share`` of rows, >= ``min_class_rows`` rows) found among
    converters only (and, with ``one_sided_negative``, among non-converters only), and unlikely to be so
    by chance: P(all rows in that class | base rate) below ``one_sided_alpha``. Numbers count by exact
    value (a 0 that means "no deal yet")."""
    s = values if kind == "category" else pd.to_numeric(values, errors="coerce")
    present = s.notna().to_numpy()
    if not present.any():
        return {}
    frame = pd.DataFrame({"v": s[present].astype(str).to_numpy(), "y": y[present]})
    stats = frame.groupby("v")["y"].agg(["sum", "count"])
    n = len(y)
    base = float(y.mean())
    min_rows = max(params.min_class_rows, params.one_sided_min_share * n)
    out: dict[str, dict[str, float]] = {}
    for value, row in stats[stats["count"] >= min_rows].iterrows():
        k, c = int(row["sum"]), int(row["count"])
        # Values found among non-converters only are usually honest disqualifiers (students, competitors,
        # personal e-mail never buy), so by default only converter-only values count.
        if k != c and not (params.one_sided_negative and k == 0):
            continue
        chance = (1.0 - base) ** c if k == 0 else base**c
        if chance < params.one_sided_alpha:
            out[str(value)] = {"rows": float(c), "share": c / n, "outcome_rate": k / c}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["rows"]))


REST_ROWS = 50_000  # the "all weaker columns together" model reads at most this many training rows
REST_FOLDS = 3


def _matrix(frame: pd.DataFrame, kinds: Mapping[str, str]) -> tuple[np.ndarray, list[int]]:
    """Floats per column (categories as codes) and the categorical column indices, for LightGBM."""
    cols, cats = [], []
    for j, c in enumerate(frame.columns):
        if kinds.get(c, "numeric") == "category":
            codes, _ = pd.factorize(frame[c].astype(object), use_na_sentinel=True)
            cols.append(np.where(codes < 0, np.nan, codes).astype(np.float64))
            cats.append(j)
        else:
            cols.append(pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64))
    return (np.column_stack(cols) if cols else np.empty((len(frame), 0))), cats


def rest_auc(frame: pd.DataFrame, kinds: Mapping[str, str], y: np.ndarray, seed: int) -> float | None:
    """Out-of-fold ROC-AUC of a small LightGBM on all columns of ``frame`` together (None: no columns).

    A well-kept library (LightGBM, the project's model) instead of our own combiner: the comparison is
    with what the real model could learn from the other columns."""
    import lightgbm as lgb

    if frame.shape[1] == 0 or len(np.unique(y)) < 2:
        return None
    x, cats = _matrix(frame, kinds)
    fold = _folds(y, seed) % REST_FOLDS
    pred = np.empty(len(y))
    lgbp = {
        "objective": "binary",
        "learning_rate": 0.05,
        "num_leaves": 7,
        "min_data_in_leaf": max(20, len(y) // 100),
        "feature_fraction": 0.8,
        "cat_smooth": 10,
        "verbose": -1,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "max_bin": 63,
        "num_threads": 1,  # small data: one thread is faster than two on a shared machine
    }
    for f in range(REST_FOLDS):
        test = fold == f
        ds = lgb.Dataset(x[~test], y[~test], categorical_feature=cats, free_raw_data=True)
        booster = lgb.train(lgbp, ds, num_boost_round=150)
        pred[test] = booster.predict(x[test], num_threads=1)
    return _auc(y, pred)


def _sample(
    frame: pd.DataFrame, y: np.ndarray, seed: int, rows: int = MAX_ROWS
) -> tuple[pd.DataFrame, np.ndarray]:
    if len(frame) <= rows:
        return frame.reset_index(drop=True), np.asarray(y)
    idx = np.sort(np.random.default_rng(seed).choice(len(frame), rows, replace=False))
    return frame.iloc[idx].reset_index(drop=True), np.asarray(y)[idx]


def _score(flags: list[str], auc: float | None, auc_rest: float | None, ratio: float) -> float:
    """Leak score: one point per kind of evidence, plus how far the numbers pass a neutral value."""
    score = float(len(flags))
    if auc is not None:
        score += max(0.0, auc - 0.5) * 2
        if auc_rest is not None:
            score += max(0.0, auc - auc_rest + 0.05) * 5
    return score + min(np.log10(ratio), 2.0) / 2


def guard(
    frame: pd.DataFrame,
    kinds: Mapping[str, str],
    y: np.ndarray,
    params: LeakageParams,
    allow: Iterable[str] = (),
    check_names: bool = True,
    seed: int = 0,
    judge: Iterable[str] | None = None,
) -> GuardResult:
    """Check every column of ``frame`` (training rows; numbers as floats, categories as text) against the
    outcome ``y`` (0/1) and return the evidence, columns ranked by it. ``allow``: flagged columns to keep
    anyway (they still count as flagged, so they never hide a leak from the "other columns" check).
    ``judge``: the columns to judge (default: all); the others only count in the "other columns" rest
    (the multi-table path judges lead / account attributes against everything else)."""
    allow = set(allow)
    frame, y = _sample(frame, np.asarray(y).astype(np.int64), seed)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    enough = min(n_pos, n_neg) >= params.min_class_rows
    judged = set(frame.columns) if judge is None else set(judge) & set(frame.columns)
    found: dict[str, dict[str, Any]] = {}
    for col in frame.columns:
        kind = kinds.get(col, "numeric")
        values = frame[col]
        if kind != "category":
            values = pd.to_numeric(values, errors="coerce")
        flags: list[str] = []
        auc = single_column_auc(values, kind, y, seed) if enough else None
        if col not in judged:  # context only: its AUC decides whether it is a suspect, nothing else
            found[col] = {"kind": kind, "auc": auc, "flags": [], "context": True}
            continue
        if auc is not None and auc >= params.auc_threshold:
            flags.append("predicts_alone")
        miss_pos, miss_neg = missing_rates(values, y)
        ratio = missing_ratio(miss_pos, miss_neg, params) if enough else 1.0
        if ratio >= params.missing_ratio:
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
        sided = one_sided_values(values, kind, y, params) if enough else {}
        if sided:
            flags.append("one_sided_values")
        found[col] = {
            "kind": kind,
            "auc": auc,
            "missing_positive": miss_pos,
            "missing_negative": miss_neg,
            "missing_ratio": ratio,
            "name_match": matched,
            "follow_up_values": follow,
            "one_sided_values": sided,
            "flags": flags,
            "auc_rest": None,
        }
    # (a') a candidate against the rest: every other unflagged column, except the other *suspects*
    # (strong alone, >= ``suspect_auc``) so two leaks cannot vouch for each other, weakest candidate
    # first so a leak found here leaves the rest of every stronger column. Allowed columns stay out of
    # the rest too: they are suspects the user chose to keep.
    if enough:
        small, ys = _sample(frame, y, seed + 1, REST_ROWS)
        strong = [c for c, f in found.items() if f["auc"] is not None and f["auc"] >= params.rest_min_auc]
        suspects = {c for c in strong if found[c]["auc"] >= params.suspect_auc}
        candidates = sorted((c for c in strong if c in judged), key=lambda c: found[c]["auc"])
        for col in candidates:
            auc = found[col]["auc"]
            rest = [c for c, f in found.items() if c != col and not f["flags"] and c not in suspects]
            if not rest:
                continue
            ar = rest_auc(small[rest], kinds, ys, seed)
            # Alone by the same model and folds as the rest, so neither side wins by how it is measured.
            alone = rest_auc(small[[col]], kinds, ys, seed)
            found[col]["auc_rest"] = ar
            if ar is not None and alone is not None and alone >= ar - params.rest_margin:
                found[col]["flags"].append("beats_the_rest")
    found = {c: f for c, f in found.items() if not f.get("context")}
    scores = {c: _score(f["flags"], f["auc"], f["auc_rest"], f["missing_ratio"]) for c, f in found.items()}
    order = sorted(found, key=lambda c: (not found[c]["flags"], -scores[c]))
    ranks = {c: i + 1 for i, c in enumerate(order)}
    evidence = tuple(
        ColumnEvidence(
            column=c,
            kind=f["kind"],
            auc=f["auc"],
            missing_positive=f["missing_positive"],
            missing_negative=f["missing_negative"],
            name_match=f["name_match"],
            follow_up_values=f["follow_up_values"],
            flags=tuple(f["flags"]),
            allowed=c in allow,
            auc_rest=f["auc_rest"],
            missing_ratio=f["missing_ratio"],
            one_sided_values=f["one_sided_values"],
            score=round(scores[c], 3),
            rank=ranks[c],
        )
        for c, f in found.items()
    )
    return GuardResult(evidence, len(y), n_pos, params.model_dump(mode="json"))


# --- the event pipeline: lead and account attributes ----------------------------------------------------


def attribute_columns() -> tuple[list[str], dict[str, str]]:
    """The lead / account attribute features the guard judges in the multi-table path, and their kinds.

    Event, stage and derived features are computed point in time by our own code; attributes are the
    export's values as of the export (a mapped "Rating" or "Status" column could land there)."""
    from leadscore.features.spec import ATTRIBUTE_NUMERIC, CATEGORICAL

    cols = [*CATEGORICAL, *(c for c in ATTRIBUTE_NUMERIC if c != "lead_age_days")]
    return cols, {c: ("category" if c in CATEGORICAL else "numeric") for c in cols}


def _blank(frame: pd.DataFrame, columns: Iterable[str], kinds: Mapping[str, str]) -> pd.DataFrame:
    return frame.assign(
        **{
            c: pd.Series(np.nan, index=frame.index, dtype=object if kinds.get(c) == "category" else float)
            for c in columns
        }
    )


def guard_attributes(
    frames: Mapping[str, Mapping[str, pd.DataFrame]], params: Params
) -> tuple[dict[str, dict[str, pd.DataFrame]], dict[str, GuardResult]]:
    """Judge the lead / account attributes of each target's training table against the label, with every
    other model feature as context; blank the excluded ones in every split.

    A column missing on every training row never gets a split in LightGBM, so the model ignores it and the
    bundle's feature list, online builder and request contract stay the same (a value a request sends
    for it changes nothing). A column excluded for one target is blanked for all of them: the funnel
    chain scores one target's rows with another target's model. ``train.allow_columns`` keeps a flagged
    attribute."""
    from leadscore.features.spec import FeatureSpec

    spec = FeatureSpec(params.features)
    attrs, kinds = attribute_columns()
    out: dict[str, dict[str, pd.DataFrame]] = {}
    results: dict[str, GuardResult] = {}
    for target, splits in frames.items():
        train = splits["train"]
        features = [c for c in spec.model_features if c in train.columns]
        all_kinds = {c: ("category" if c in spec.categorical else "numeric") for c in features}
        result = guard(
            train[features],
            all_kinds,
            train["label"].to_numpy(),
            params.flat.leakage,
            allow=params.train.allow_columns,
            check_names=False,
            seed=params.train.seed,
            judge=[c for c in attrs if c in train.columns],
        )
        results[target] = result
    excluded = sorted({c for r in results.values() for c in r.excluded})
    for target, splits in frames.items():
        out[target] = {split: _blank(frame, excluded, kinds) for split, frame in splits.items()}
    return out, results


def write_attribute_report(results: Mapping[str, GuardResult], out_dir: Path) -> None:
    """``leakage.json`` (per target) and ``leakage.md`` for the multi-table path's attributes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {t: r.to_json() | {"judged": "lead and account attributes"} for t, r in results.items()}
    (out_dir / "leakage.json").write_text(json.dumps(data, indent=2) + "\n")
    md = "\n".join(
        to_markdown(r, f"Leakage guard: lead and account attributes, target {t}") for t, r in results.items()
    )
    (out_dir / "leakage.md").write_text(md)


def feature_table_report(train: pd.DataFrame, params: Params) -> GuardResult:
    """The guard's statistical checks on one target's training feature table (every model feature judged;
    their names are ours, so the name and value patterns do not apply)."""
    from leadscore.features.spec import FeatureSpec

    spec = FeatureSpec(params.features)
    features = [c for c in spec.model_features if c in train.columns]
    kinds = {c: ("category" if c in spec.categorical else "numeric") for c in features}
    return guard(train[features], kinds, train["label"].to_numpy(), params.flat.leakage, check_names=False)


def run_leakage_report(params: Params) -> dict[str, list[str]]:
    """Write ``reports/leakage_<target>.json`` and ``.md`` for each target's training feature table;
    return the flagged columns per target (a report on every feature; training applies
    :func:`guard_attributes` to the lead / account attributes)."""
    out: dict[str, list[str]] = {}
    params.data.reports_dir.mkdir(parents=True, exist_ok=True)
    for target in params.snapshots.targets:
        path = params.data.processed_dir / target / "train.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `leadscore features` (or `dvc repro`) first")
        result = feature_table_report(pd.read_parquet(path), params)
        flagged = [e.column for e in result.evidence if e.flags]
        out[target] = flagged
        data = result.to_json() | {"mode": "report only", "flagged": flagged}
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
