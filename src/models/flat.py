"""Flat mode: train, calibrate and evaluate on a one-row-per-lead export, with the leakage guard.

``leadscore train-table EXPORT --target COLUMN --out DIR`` runs :func:`run_train_table`:

1. clean the export (``leadscore.data.flat.prepare``): names, placeholders, numbers as text, dates,
   outcome values, duplicates and rows without an outcome quarantined;
2. split: with ``flat.date_column`` by time (train < calibration < test, the last
   ``flat.split.validation_share`` of train for early stopping); without one a stratified random split,
   with a WARNING (printed and in every report) that the estimate is optimistic;
3. the leakage guard (``leadscore.models.leakage``) on the training slice: flagged columns are excluded
   unless listed in ``flat.allow_columns``;
4. LightGBM with ``params.train`` (deterministic, early stopping on the validation slice, then refit on
   the whole training slice for the number of rounds found), calibration on the calibration slice,
   evaluation on the test slice with the metric functions of ``leadscore.models.evaluate``;
5. write ``DIR/bundle/`` (checksummed, no pickle: ``metadata.json`` with ``"kind": "flat"``, the LightGBM
   text model, the calibrator and ``flat_spec.json``), ``DIR/metrics.json`` (the shape of
   ``reports/metrics.json``), ``DIR/leakage.json`` + ``leakage.md``, ``DIR/cleaning.json`` and
   ``DIR/quarantine.csv``.

:class:`FlatScorer` loads such a bundle and scores raw rows with the same cleaning.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from leadscore.config import FlatParams, FlatSplitParams, FlatStageRule, Params, TableParams
from leadscore.data.flat import (
    CLEANING_RULES,
    ColumnSpec,
    FlatDataError,
    FlatSpec,
    Prepared,
    fit_vocabulary,
    prepare,
    read_export,
    resolve_column,
    transform,
)
from leadscore.models.bundle import BundleError, dumps, verify_bundle, write_bundle
from leadscore.models.calibrate import Calibrator, fit_calibrator
from leadscore.models.evaluate import round_floats, score_metrics
from leadscore.models.leakage import GuardResult, guard, to_markdown
from leadscore.models.train import early_stopped_fit, lgb_params

KIND = "flat"
SPLITS = ("train", "calibration", "test")
BUNDLE_DIR = "bundle"


# --- split ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlatSplit:
    """Slice per row (``train`` / ``calibration`` / ``test``), early-stopping rows within train, mode."""

    split: np.ndarray
    validation: np.ndarray
    mode: str  # "time" | "stratified"
    bounds: dict[str, list[str]]


def _cut(dates: pd.Series, rows: np.ndarray, share: float) -> pd.Timestamp:
    """The date at which the first ``share`` of ``rows`` (in date order) ends."""
    ordered = np.sort(dates.to_numpy()[rows])
    return pd.Timestamp(ordered[max(0, min(len(ordered) - 1, int(np.ceil(share * len(ordered))) - 1))])


def split_rows(
    y: np.ndarray, dates: pd.Series | None, params: FlatSplitParams, seed: int, in_order: bool = False
) -> FlatSplit:
    """Time-ordered slices when ``dates`` is given (rows of one date stay together), by row position when
    ``in_order`` (the rows are in time order: ``--rows-in-time-order``), else stratified.

    Raises :class:`FlatDataError` when a slice lacks one of the classes (too few rows for an estimate).
    """
    n = len(y)
    split = np.empty(n, dtype=object)
    bounds: dict[str, list[str]] = {}
    if dates is not None:
        everyone = np.arange(n)
        d = dates.to_numpy()
        t_end = _cut(dates, everyone, params.train)
        c_end = _cut(dates, everyone, params.train + params.calibration)
        split[:] = "test"
        split[d <= c_end] = "calibration"
        split[d <= t_end] = "train"
        train_rows = np.flatnonzero(split == "train")
        v_start = _cut(dates, train_rows, 1.0 - params.validation_share)
        validation = (split == "train") & (d > v_start)
        if not validation.any():  # one date in the whole training slice: hold out its last rows instead
            validation[train_rows[-max(1, int(params.validation_share * len(train_rows))) :]] = True
        for name in SPLITS:
            m = split == name
            if m.any():
                bounds[name] = [str(pd.Timestamp(d[m].min())), str(pd.Timestamp(d[m].max()))]
        mode = "time"
    elif in_order:
        # Row order stands for time: the first rows train, the next calibrate, the last test.
        pos = np.arange(n)
        t_end, c_end = round(params.train * n), round((params.train + params.calibration) * n)
        split[:] = "test"
        split[pos < c_end] = "calibration"
        split[pos < t_end] = "train"
        validation = pos >= round(t_end * (1.0 - params.validation_share))
        validation &= split == "train"
        for name in SPLITS:
            m = np.flatnonzero(split == name)
            if len(m):
                bounds[name] = [f"row {int(m[0])}", f"row {int(m[-1])}"]
        mode = "row order"
    else:
        rng = np.random.default_rng(seed)
        validation = np.zeros(n, dtype=bool)
        cuts = np.cumsum([params.train, params.calibration])
        for cls in (0, 1):
            idx = np.flatnonzero(y == cls)
            idx = idx[rng.permutation(len(idx))]
            a, b = (np.round(cuts * len(idx))).astype(int)
            split[idx[:a]] = "train"
            split[idx[a:b]] = "calibration"
            split[idx[b:]] = "test"
            n_val = round(params.validation_share * a)
            validation[idx[:n_val]] = True
        mode = "stratified"
    for name in SPLITS:
        m = split == name
        if len(np.unique(y[m])) < 2:
            raise FlatDataError(
                f"the {name} slice has {int(m.sum())} rows and a single outcome class: too few rows or "
                f"positives for a train / calibration / test estimate (flat.split)"
            )
    fit = (split == "train") & ~validation
    if len(np.unique(y[fit])) < 2 or len(np.unique(y[validation])) < 2:
        raise FlatDataError(
            "the training slice is too small to hold out a validation period with both classes"
        )
    return FlatSplit(split, validation, mode, bounds)


# --- training -------------------------------------------------------------------------------------------


def build_spec(prepared: Prepared, columns: list[str], train: np.ndarray, params: FlatParams) -> FlatSpec:
    """The cleaning spec of the kept columns; category vocabularies from the training rows only."""
    original = {v: k for k, v in prepared.names.items()}
    cols = []
    for c in columns:
        kind = prepared.kinds[c]
        vocab = fit_vocabulary(prepared.frame.loc[train, c], params) if kind == "category" else ()
        cols.append(ColumnSpec(c, original[c], kind, vocab))
    return FlatSpec(
        target=prepared.target,
        columns=tuple(cols),
        names=dict(prepared.names),
        placeholders=tuple(params.placeholders),
        date_column=prepared.date_column,
        dayfirst=params.dayfirst,
        rules=dict(CLEANING_RULES),
    )


def fit_booster(
    x: np.ndarray, y: np.ndarray, validation: np.ndarray, spec: FlatSpec, params: Params | TableParams
) -> tuple[str, dict[str, Any]]:
    """LightGBM on the training rows: early stopping on ``validation`` rows, then a refit on all of them
    for the rounds found (the held-out period is the most recent: it should not be lost for good).

    ``min_child_samples`` is capped at 5 % of the fitting rows so a small export can still split.
    """
    lgbp = lgb_params(params.train)
    n_fit = int((~validation).sum())
    lgbp["min_data_in_leaf"] = int(min(params.train.min_child_samples, max(10, n_fit // 20)))
    lgbp["min_data_per_group"] = int(min(100, max(10, n_fit // 50)))
    names, cats = spec.feature_names, spec.categorical_indices
    if not names:
        raise FlatDataError(
            "no usable column is left after cleaning and the leakage guard: nothing to learn from"
        )
    # Always refit: the held-out period is the most recent and should not be lost for good.
    model_text, best, probe = early_stopped_fit(
        lgbp, x, y, validation, names, cats, params.train.model_copy(update={"refit_full": True})
    )
    summary = {
        "best_iteration": int(best),
        "validation_logloss": float(probe.best_score["validation"]["binary_logloss"]),
        "min_data_in_leaf": lgbp["min_data_in_leaf"],
        "rows_fit": n_fit,
        "rows_validation": int(validation.sum()),
    }
    return model_text, summary


@dataclass(frozen=True)
class FlatResult:
    """Everything ``train-table`` writes: spec, model, calibrator, metrics, guard, cleaning, split."""

    spec: FlatSpec
    model_text: str
    calibrator: Calibrator
    metrics: dict[str, Any]
    guard: GuardResult
    prepared: Prepared
    split: FlatSplit
    train_summary: dict[str, Any]
    source: str
    notes: tuple[str, ...] = ()  # warnings found after training (an implausibly high test AUC)
    thresholds: dict[str, Any] = field(default_factory=dict)  # stages + score quantiles (calibration)
    report: dict[str, Any] = field(default_factory=dict)  # what the HTML report shows (test slice)

    @property
    def warnings(self) -> list[str]:
        return [*self.prepared.warnings, *self.notes]


IMPLAUSIBLE_AUC = 0.95  # honest lead scoring on real exports lands at 0.65-0.90


def implausible_auc_warning(auc: float, guard_result: GuardResult) -> str | None:
    """A plain warning naming the strongest kept columns when the test ROC-AUC is too good to be true."""
    if not np.isfinite(auc) or auc <= IMPLAUSIBLE_AUC:
        return None
    strongest = ", ".join(f"{e.column!r} (AUC alone {e.auc:.2f})" for e in guard_result.strongest(3))
    return (
        f"WARNING: test ROC-AUC {auc:.3f} is implausibly high for lead scoring (honest models on real "
        f"exports land at 0.65-0.90): a column filled in after the outcome probably leaks. Strongest "
        f"columns used: {strongest or 'none'}. Check how they are filled in and --drop the leaky ones."
    )


def train_flat(
    raw: pd.DataFrame, target: str, params: Params | TableParams, source: str = "export"
) -> FlatResult:
    """Clean ``raw`` (the export as text), guard, split, train, calibrate, evaluate. No I/O."""
    fp = params.flat
    prepared = prepare(raw, target, fp, source)
    y = prepared.y.astype(np.int64)
    sp = split_rows(y, prepared.dates, fp.split, params.train.seed, fp.rows_in_time_order)
    train = sp.split == "train"
    allow = {resolve_column(c, prepared.names, "--allow", source) for c in fp.allow_columns}
    guard_frame = prepared.frame.loc[train].copy()
    for c, kind in prepared.kinds.items():
        if kind != "category":
            # The guard sees the values the model would see (numbers parsed, dates as days).
            col = ColumnSpec(c, c, kind)
            tmp = FlatSpec(prepared.target, (col,), {}, (), prepared.date_column, fp.dayfirst)
            frame = prepared.frame.loc[train, [c]]
            if prepared.date_column is not None and prepared.dates is not None:
                frame = frame.assign(
                    **{prepared.date_column: prepared.dates[train].dt.strftime("%Y-%m-%dT%H:%M:%S")}
                )
            guard_frame[c] = transform(frame, tmp)[:, 0]
    result = guard(guard_frame, prepared.kinds, y[train], fp.leakage, allow=allow, seed=params.train.seed)
    columns = result.kept
    spec = build_spec(prepared, columns, train, fp)

    frame = prepared.frame[columns].copy()
    if prepared.date_column is not None and prepared.dates is not None:
        frame[prepared.date_column] = prepared.dates.dt.strftime("%Y-%m-%dT%H:%M:%S").to_numpy()
    x = transform(frame, spec)
    model_text, summary = fit_booster(x[train], y[train], sp.validation[train], spec, params)
    booster = lgb.Booster(model_str=model_text)
    cal, test = sp.split == "calibration", sp.split == "test"
    raw_cal = booster.predict(x[cal], num_threads=1)
    calibrator = fit_calibrator(raw_cal, y[cal], params.calibrate)
    p_test = calibrator.transform(booster.predict(x[test], num_threads=1))
    entry: dict[str, Any] = {
        "model": score_metrics(y[test], p_test, p_test, params.evaluate),
        "rule_baseline": None,
        "n_test": int(test.sum()),
        "base_rate": float(y[test].mean()),
        "split": sp.mode,
        "optimistic": sp.mode == "stratified",
        "excluded_by_leakage_guard": result.excluded,
    }
    summary |= {
        "calibrator": calibrator.method,
        "rows": {name: int((sp.split == name).sum()) for name in SPLITS},
        "positives": {name: int(y[sp.split == name].sum()) for name in SPLITS},
        "split": sp.mode,
        "bounds": sp.bounds,
    }
    note = implausible_auc_warning(float(entry["model"]["roc_auc"]), result)
    if note:
        entry["warning"] = note
    metrics = round_floats({prepared.target: entry})
    thresholds = flat_thresholds(calibrator.transform(raw_cal), y[cal], fp.stages, prepared.target)
    report = report_data(booster, x[test], y[test], p_test, spec)
    return FlatResult(
        spec,
        model_text,
        calibrator,
        metrics,
        result,
        prepared,
        sp,
        summary,
        source,
        (note,) if note else (),
        thresholds,
        report,
    )


# --- stages, score and reasons (the same response as pipeline bundles) -----------------------------------


def flat_thresholds(
    p_cal: np.ndarray, y_cal: np.ndarray, rules: tuple[FlatStageRule, ...], target: str
) -> dict[str, Any]:
    """Stage thresholds and the 1-99 score's cut points from the *calibration* slice (never test).

    A ``top_share`` rule puts its threshold at that quantile of the calibrated probabilities; a rule
    below the one above it is raised to it, so stages stay ordered. ``score_quantiles``: the 98 cut
    points (1st..98th percentiles) the scorer maps a probability to 1..99 with."""
    p_cal = np.asarray(p_cal, dtype=np.float64)
    stages, ceiling = [], 1.0
    for rule in rules:
        if rule.top_share is not None:
            prob = float(np.quantile(p_cal, 1.0 - rule.top_share)) if len(p_cal) else 1.0
            set_by = f"top {rule.top_share:.0%} of the calibration slice"
        else:
            prob, set_by = float(rule.probability or 0.0), "probability"
        prob = min(prob, ceiling)
        ceiling = prob
        flagged = p_cal >= prob
        stages.append(
            {
                "name": rule.name,
                "probability": prob,
                "set_by": set_by,
                "achieved": {
                    "share": float(flagged.mean()) if len(p_cal) else 0.0,
                    "precision": float(y_cal[flagged].mean()) if flagged.any() else None,
                    "recall": float(y_cal[flagged].sum() / max(y_cal.sum(), 1)),
                },
            }
        )
    from leadscore.models.thresholds import score_quantiles

    return {
        "target": target,
        "stages": stages,
        "score_quantiles": score_quantiles(p_cal),
        "calibration_slice": {"rows": len(p_cal), "positives": int(np.sum(y_cal))},
    }


def report_data(
    booster: lgb.Booster, x_test: np.ndarray, y_test: np.ndarray, p_test: np.ndarray, spec: FlatSpec
) -> dict[str, Any]:
    """What the flat HTML report shows from the test slice: drivers (mean |SHAP|) and deciles."""
    contrib = booster.predict(x_test, pred_contrib=True, num_threads=1)[:, :-1] if len(x_test) else None
    drivers = []
    if contrib is not None:
        mean_abs = np.abs(contrib).mean(axis=0)
        total = float(mean_abs.sum()) or 1.0
        for j in np.argsort(-mean_abs)[:15]:
            drivers.append(
                {
                    "column": spec.columns[j].source,
                    "kind": spec.columns[j].kind,
                    "mean_abs_shap": float(mean_abs[j]),
                    "share": float(mean_abs[j] / total),
                }
            )
    from leadscore.models.report import decile_table

    deciles = decile_table(np.asarray(y_test), np.asarray(p_test)).to_dict("records") if len(y_test) else []
    return {"drivers": drivers, "deciles": deciles}


# --- outputs --------------------------------------------------------------------------------------------


def _version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def input_schema(spec: FlatSpec) -> dict[str, Any]:
    """JSON schema of one row to score: the export's column names, any JSON scalar, extra keys ignored."""
    props = {
        c.source: {"type": ["string", "number", "boolean", "null"], "x-kind": c.kind} for c in spec.columns
    }
    if spec.date_column:
        source = {v: k for k, v in spec.names.items()}[spec.date_column]
        props[source] = {"type": ["string", "null"], "x-kind": "split date (reference for date columns)"}
    return {"type": "object", "properties": props, "additionalProperties": True}


def bundle_files(result: FlatResult) -> dict[str, str]:
    """The files of a flat bundle (all plain text)."""
    target = result.spec.target
    metadata = {
        "kind": KIND,
        "target": target,
        "targets": [target],
        "target_column": {v: k for k, v in result.spec.names.items()}[target],
        "model_version": f"flat-{hashlib.sha256(result.model_text.encode()).hexdigest()[:12]}",
        "source": result.source,
        "features": result.spec.feature_names,
        "excluded_by_leakage_guard": result.guard.excluded,
        "id_columns": [
            src
            for src, norm in result.spec.names.items()
            if str(result.prepared.report["columns"].get(norm, {}).get("reason", "")).startswith("id column")
        ],
        "split": result.split.mode,
        "split_bounds": result.split.bounds,
        "warnings": result.warnings,
        "train": result.train_summary,
        "versions": {
            "leadscore": _version("leadscore"),
            "lightgbm": lgb.__version__,
            "pandas": pd.__version__,
        },
    }
    return {
        "metadata.json": dumps(metadata),
        f"model_{target}.txt": result.model_text,
        f"calibrator_{target}.json": dumps(result.calibrator.to_json()),
        "flat_spec.json": dumps(result.spec.to_json()),
        "input_schema.json": dumps(input_schema(result.spec)),
        "metrics.json": dumps(result.metrics),
        "leakage.json": dumps(result.guard.to_json()),
        "thresholds.json": dumps(result.thresholds),
    }


def write_flat(result: FlatResult, out: Path) -> str:
    """Write the bundle and the reports into ``out``; return the bundle checksum."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checksum = write_bundle(out / BUNDLE_DIR, bundle_files(result))
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2, sort_keys=True) + "\n")
    (out / "leakage.json").write_text(json.dumps(result.guard.to_json(), indent=2) + "\n")
    md = to_markdown(result.guard, f"Leakage guard: {result.source}, outcome {result.spec.target!r}")
    if result.warnings:
        md = "\n".join(f"> **{w}**\n" for w in result.warnings) + "\n" + md
    (out / "leakage.md").write_text(md)
    from leadscore.models.flat_report import write_flat_report

    write_flat_report(result, out / "report.html")
    cleaning = result.prepared.report | {
        "source": result.source,
        "target": result.spec.target,
        "warnings": result.warnings,
        "column_names": result.spec.names,
        "features": result.spec.feature_names,
        "train": result.train_summary,
        "quarantine_file": "quarantine.csv",
    }
    (out / "cleaning.json").write_text(json.dumps(cleaning, indent=2, default=str) + "\n")
    result.prepared.quarantine.to_csv(out / "quarantine.csv", index=False)
    return checksum


def run_train_table(export: Path, target: str, params: Params | TableParams, out: Path) -> dict[str, Any]:
    """CLI ``leadscore train-table``: read ``export``, train with the guard, write ``out``; return metrics.

    When the export cannot be used, the rows set aside so far are still written to
    ``out/quarantine.csv`` before the error is raised, so the file the message names exists."""
    export = Path(export)
    raw = read_export(export)
    try:
        result = train_flat(raw, target, params, export.name)
    except FlatDataError as exc:
        if exc.quarantine is None:
            raise
        Path(out).mkdir(parents=True, exist_ok=True)
        path = Path(out) / "quarantine.csv"
        exc.quarantine.to_csv(path, index=False)
        raise FlatDataError(f"{exc}\nRows set aside and why: {path}") from exc
    for w in result.warnings:
        print(w, file=sys.stderr)
    checksum = write_flat(result, out)
    m = result.metrics[result.spec.target]["model"]
    q = result.prepared.report["quarantined"]
    print(
        f"train-table: {len(result.spec.columns)} columns used, excluded by the leakage guard: "
        f"{result.guard.excluded or 'none'} (why: {Path(out) / 'leakage.md'}); rows set aside: "
        f"{q or 'none'} ({Path(out) / 'quarantine.csv'}); test ROC-AUC {m['roc_auc']:.3f}, "
        f"Brier {m['brier']:.4f} ({result.split.mode} split); bundle {Path(out) / BUNDLE_DIR} "
        f"({checksum[:12]})",
        file=sys.stderr,
    )
    return result.metrics


# --- scoring ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlatScorer:
    """A verified flat bundle, ready to score raw rows (the export's column names, any JSON scalars)."""

    path: Path
    checksum: str
    metadata: dict[str, Any]
    spec: FlatSpec
    booster: lgb.Booster
    calibrator: Calibrator

    @property
    def version(self) -> str:
        return str(self.metadata.get("model_version", self.checksum[:12]))

    @property
    def target(self) -> str:
        return self.spec.target

    @classmethod
    def load(cls, bundle_dir: Path) -> FlatScorer:
        """Verify every checksum, then read the plain files; raises ``BundleError`` on anything else."""
        bundle_dir = Path(bundle_dir)
        manifest = verify_bundle(bundle_dir)
        try:
            metadata = json.loads((bundle_dir / "metadata.json").read_text())
            if metadata.get("kind") != KIND:
                raise BundleError(f"{bundle_dir} is not a flat bundle (kind {metadata.get('kind')!r})")
            spec = FlatSpec.from_json(json.loads((bundle_dir / "flat_spec.json").read_text()))
            target = metadata["target"]
            booster = lgb.Booster(model_str=(bundle_dir / f"model_{target}.txt").read_text())
            calibrator = Calibrator.from_json(
                json.loads((bundle_dir / f"calibrator_{target}.json").read_text())
            )
            if booster.num_feature() != len(spec.columns):
                raise BundleError(
                    f"model_{target}.txt expects {booster.num_feature()} features, spec has "
                    f"{len(spec.columns)}"
                )
        except BundleError:
            raise
        except (OSError, KeyError, ValueError, TypeError, AttributeError, lgb.basic.LightGBMError) as exc:
            raise BundleError(f"flat bundle content is invalid: {exc}") from exc
        return cls(bundle_dir, manifest["bundle_checksum"], metadata, spec, booster, calibrator)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities for raw rows (same cleaning as training)."""
        if frame.empty:
            return np.zeros(0)
        return self.calibrator.transform(self.booster.predict(transform(frame, self.spec), num_threads=1))


def is_flat_bundle(bundle_dir: Path) -> bool:
    """Whether ``bundle_dir`` holds a flat bundle (``metadata.json`` kind ``flat``)."""
    try:
        return json.loads((Path(bundle_dir) / "metadata.json").read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False
