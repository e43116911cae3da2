"""Train one LightGBM model per funnel target, calibrate it on its own slice, keep its predictions.

Reads the feature tables ``data/processed/<target>/<split>.parquet`` and writes to ``build/train/``:

    model_<target>.txt          LightGBM native text model (as many rounds as early stopping chose)
    calibrator_<target>.json    calibrator as plain numbers (fitted on the calibration slice only)
    categories.json             category vocabularies (fitted on the training slices only)
    predictions_<target>.parquet  calibration + test rows: raw and calibrated probability, the chain
                                cap, the rule score, the oracle (demo data) and the segment columns
    train_summary.json          best iteration, rows and positives per split, calibrator, data cutoff,
                                features whose missing value is a reason (informative_missing)

Honesty rules this module keeps:

* early stopping uses the *last* ``snapshots.split.validation_share`` of the training period, and a
  lead whose first training example falls in that period is held out entirely (no lead on both sides);
  with ``train.refit_full`` the model is then refitted on the whole training slice with the number of
  rounds early stopping chose;
* the calibrator never sees a training or test row, the test slice is only predicted;
* no class re-weighting (it would distort the probabilities the calibrator then has to undo);
* deterministic LightGBM settings and fixed seeds: two runs give byte-identical models and predictions.

Chain: for targets past SQL in the funnel (``closed_won``), ``p`` is capped at the SQL model's calibrated
probability for pre-SQL leads (``models.chain``); ``p_uncapped`` keeps the value before the cap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.config import Params, TargetParams, TrainParams
from leadscore.data.contract import STAGE_RANK
from leadscore.data.parquet import write_parquet
from leadscore.features.encode import MatrixEncoder, fit_categories
from leadscore.features.spec import FeatureSpec
from leadscore.models.calibrate import Calibrator, fit_calibrator
from leadscore.models.chain import SQL_RANK, chain_consistent
from leadscore.models.missing import informative_missing
from leadscore.progress import progress
from leadscore.runtime import threads_or_default

SPLITS = ("train", "calibration", "test")
PREDICTED_SPLITS = ("calibration", "test")
#: Columns carried from the feature table into the predictions (segments, chain, reports).
CONTEXT_COLUMNS = (
    "stage_rank",
    "lead_source",
    "industry",
    "size_band",
    "seniority",
    "department",
    "email_type",
)
#: The funnel stage whose model caps the later stages' probabilities.
CHAIN_STAGE = "sql"


def train_dir(params: Params) -> Path:
    """``build/train``: everything this stage writes."""
    return params.data.build_dir / "train"


def lgb_params(p: TrainParams) -> dict[str, Any]:
    """LightGBM parameters from ``params.train``: fixed seeds and deterministic, single-order histograms."""
    return {
        "objective": p.objective,
        "metric": "binary_logloss",
        "learning_rate": p.learning_rate,
        "num_leaves": p.num_leaves,
        "max_depth": p.max_depth,
        "min_data_in_leaf": p.min_child_samples,
        "feature_fraction": p.feature_fraction,
        "bagging_fraction": p.bagging_fraction,
        "bagging_freq": p.bagging_freq,
        "lambda_l2": p.lambda_l2,
        "cat_smooth": p.cat_smooth,
        "max_cat_to_onehot": p.max_cat_to_onehot,
        "num_threads": threads_or_default(p.num_threads),
        "seed": p.seed,
        "bagging_seed": p.seed,
        "feature_fraction_seed": p.seed,
        "data_random_seed": p.seed,
        "deterministic": True,
        "force_col_wise": True,
        "verbose": -1,
    }


#: Events that signal lower intent: their counts and recency are left unconstrained.
NEGATIVE_EVENTS = ("unsubscribe",)


def monotone_constraints(spec: FeatureSpec) -> list[int]:
    """Per model feature: +1 where more engagement must not lower the probability, -1 where a longer
    time since the last engagement must not raise it, 0 elsewhere (attributes, ratios, negative events).

    This is what marketing expects of a score ("more pricing views never count against a lead") and what
    the directional model test checks; it also keeps the trees from learning noise in sparse corners.
    Limitation: a recency feature is NaN for "never"; LightGBM constrains only non-missing values and
    routes NaN by gain, so "never -> seen N days ago" is guaranteed not to lower a score only when N is
    below every split threshold (recent events). Encoding "never" as a large number would close that.
    """
    up = {name for name, et, _ in spec.count_features if et not in NEGATIVE_EVENTS}
    up |= {name for name, _ in spec.active_day_features}
    up |= {"events_total", "engagement_decayed", "high_intent_30d", "return_visit_7d"}
    down = {name for name, et in spec.recency_features if et not in NEGATIVE_EVENTS}
    down |= {"days_since_last_event"}
    return [1 if f in up else -1 if f in down else 0 for f in spec.model_features]


def fit_vocabulary(train_frames: Mapping[str, pd.DataFrame], spec: FeatureSpec) -> dict[str, list[str]]:
    """Category vocabularies from the training slices of all targets (one encoder serves every model).

    Only training rows are read, so a category that first appears in the calibration or test period is
    unknown to the models (NaN, routed like a missing value) exactly as it will be in production.
    """
    cols = list(spec.categorical)
    return fit_categories(pd.concat([f[cols] for f in train_frames.values()], ignore_index=True), spec)


def validation_mask(train: pd.DataFrame, share: float) -> np.ndarray:
    """Rows of the training slice held out for early stopping (a boolean mask).

    A lead belongs to the period of its first training example (lead-disjoint, as between the slices).
    The validation period is the latest run of snapshot dates whose leads hold at least ``share`` of the
    rows; the earliest date always stays in the fit. Most rows at a late date belong to leads first
    seen earlier, so cutting by rows, not by dates, keeps the validation set near its intended size.
    """
    dates = np.sort(train["snapshot_ts"].unique())
    if len(dates) < 2:
        raise ValueError("the training slice has a single snapshot date: no room for a validation period")
    first_seen = train.groupby("lead_id")["snapshot_ts"].transform("min").to_numpy()
    rows_from = np.cumsum(np.bincount(np.searchsorted(dates, first_seen), minlength=len(dates))[::-1])[::-1]
    # rows_from[i]: rows of leads first seen at dates[i] or later
    enough = np.flatnonzero(rows_from[1:] >= share * len(train)) + 1
    cutoff = dates[enough[-1]] if len(enough) else dates[1]
    return first_seen >= cutoff


@dataclass(frozen=True)
class TrainedTarget:
    """One target's fitted model: the booster cut at its best iteration (as text and loaded), the
    calibrator, a summary, and its calibration + test predictions before the chain cap."""

    name: str
    model_text: str
    booster: lgb.Booster
    calibrator: Calibrator
    summary: dict[str, Any]
    predictions: pd.DataFrame

    def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw, calibrated) probabilities for an encoded matrix, exactly as the bundle computes them."""
        raw = self.booster.predict(matrix, num_threads=1)
        return raw, self.calibrator.transform(raw)


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    return {
        "rows": len(frame),
        "positives": int(frame["label"].sum()),
        "leads": int(frame["lead_id"].nunique()),
    }


def early_stopped_fit(
    lgbp: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    validation: np.ndarray,
    names: list[str],
    categorical: list[int],
    params: TrainParams,
) -> tuple[str, int, lgb.Booster]:
    """Early stopping on the ``validation`` rows picks the number of rounds; with ``params.refit_full``
    the model is then refit on all rows with that many rounds, so the last period (the newest leads, a
    large share of the positives) is learned from too. Still training rows only: calibration and test
    stay unseen. Returns (model text, rounds, the early-stopping booster)."""
    # One binned Dataset of all training rows; the fit and validation sets are row subsets of it, so
    # the raw matrix is binned once and never copied (LightGBM subsets share the bins).
    dall = lgb.Dataset(
        x, label=y, feature_name=names, categorical_feature=categorical, params=lgbp, free_raw_data=True
    ).construct()
    dfit = dall.subset(np.flatnonzero(~validation).astype(np.int32))
    dval = dall.subset(np.flatnonzero(validation).astype(np.int32))
    probe = lgb.train(
        lgbp,
        dfit,
        num_boost_round=params.n_estimators,
        valid_sets=[dval],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    best = probe.best_iteration if probe.best_iteration > 0 else probe.current_iteration()
    if not params.refit_full:
        return probe.model_to_string(num_iteration=best), best, probe
    return lgb.train(lgbp, dall, num_boost_round=best).model_to_string(), best, probe


def fit_target(
    name: str, frames: Mapping[str, pd.DataFrame], encoder: MatrixEncoder, params: Params
) -> TrainedTarget:
    """Fit LightGBM on the training slice (early stopping on its last period) and the calibrator on the
    calibration slice; predict the calibration and test slices. Pure: reads only ``frames``."""
    train = frames["train"].sort_values(["snapshot_ts", "lead_id"], kind="stable").reset_index(drop=True)
    is_val = validation_mask(train, params.snapshots.split.validation_share)
    # float32 halves the matrix LightGBM bins (7 significant digits: far finer than its <= 255 bins).
    x_all = encoder.transform(train, dtype=np.float32)
    y_all = train["label"].to_numpy(dtype=np.float64)
    lgbp = lgb_params(params.train)
    if params.train.monotone_intent:
        lgbp["monotone_constraints"] = monotone_constraints(encoder.spec)
        lgbp["monotone_constraints_method"] = "intermediate"
    model_text, best, booster = early_stopped_fit(
        lgbp, x_all, y_all, is_val, encoder.feature_names_, encoder.categorical_indices_, params.train
    )
    # Predict with the booster rebuilt from the saved text, so these are the bundle's numbers exactly.
    final = lgb.Booster(model_str=model_text)

    cal = frames["calibration"]
    raw_cal = final.predict(encoder.transform(cal), num_threads=1)
    calibrator = fit_calibrator(raw_cal, cal["label"].to_numpy(), params.calibrate)

    parts = []
    for split in PREDICTED_SPLITS:
        frame = frames[split]
        raw = raw_cal if split == "calibration" else final.predict(encoder.transform(frame), num_threads=1)
        part = pd.DataFrame(
            {
                "lead_id": frame["lead_id"].to_numpy(),
                "snapshot_ts": frame["snapshot_ts"].to_numpy(),
                "split": split,
                "label": frame["label"].to_numpy(dtype=np.int8),
                "p_raw": raw,
                "p": calibrator.transform(raw),
                "rule_score": frame["rule_score"].to_numpy(dtype=np.float64),
            }
        )
        if "oracle_p" in frame.columns:
            part["oracle_p"] = frame["oracle_p"].to_numpy(dtype=np.float64)
        for col in CONTEXT_COLUMNS:
            part[col] = frame[col].to_numpy()
        parts.append(part)
    predictions = pd.concat(parts, ignore_index=True)

    summary = {
        "best_iteration": int(best),
        "num_boost_round": params.train.n_estimators,
        "validation_logloss": float(booster.best_score["validation"]["binary_logloss"]),
        "refit_full": params.train.refit_full,
        "calibrator": calibrator.method,
        "fit": _counts(train[~is_val]),
        "validation": _counts(train[is_val]),
        "validation_start": str(train.loc[is_val, "snapshot_ts"].min()),
        "data_cutoff": str(train["snapshot_ts"].max()),
        **{split: _counts(frames[split]) for split in SPLITS},
        # Where a missing value is itself a reason (feature -> +1/-1), measured on the training slice
        # only: the bundle carries it, so the API and the report give the same reasons for a lead.
        "informative_missing": informative_missing(train, encoder.feature_names_),
    }
    return TrainedTarget(name, model_text, final, calibrator, summary, predictions)


def chain_upper(targets: Mapping[str, TargetParams]) -> str | None:
    """The target whose stage is SQL (the chain's upper bound), if there is one."""
    return next((name for name, t in targets.items() if t.stage == CHAIN_STAGE), None)


def apply_chain(
    trained: Mapping[str, TrainedTarget],
    frames: Mapping[str, Mapping[str, pd.DataFrame]],
    encoder: MatrixEncoder,
    targets: Mapping[str, TargetParams],
) -> dict[str, pd.DataFrame]:
    """Predictions per target with ``p`` after the chain cap, ``p_uncapped`` and ``chain_capped``.

    For a target past SQL in the funnel, the SQL model scores the same rows (``p_sql``) and
    ``chain_consistent`` caps ``p`` at it for pre-SQL leads. Other targets pass through uncapped.
    """
    upper = chain_upper(targets)
    out: dict[str, pd.DataFrame] = {}
    for name, model in trained.items():
        pred = model.predictions.copy()
        pred["p_uncapped"] = pred["p"]
        pred["chain_capped"] = False
        stage_rank = STAGE_RANK.get(targets[name].stage, 0)
        if upper is not None and upper in trained and name != upper and stage_rank > SQL_RANK:
            rows = pd.concat([frames[name][s] for s in PREDICTED_SPLITS], ignore_index=True)
            _, p_sql = trained[upper].predict(encoder.transform(rows))
            pred["p_sql"] = p_sql
            capped, mask = chain_consistent(
                {"sql": p_sql, "lower": pred["p"].to_numpy()},
                pred["stage_rank"].to_numpy(dtype=np.float64),
                upper="sql",
                lower="lower",
            )
            pred["p"] = capped["lower"]
            pred["chain_capped"] = mask
        out[name] = pred
    return out


@dataclass(frozen=True)
class TrainResult:
    """Everything ``run_train`` writes: vocabularies, fitted targets, chained predictions, summary."""

    categories: dict[str, list[str]]
    targets: dict[str, TrainedTarget]
    predictions: dict[str, pd.DataFrame]
    summary: dict[str, Any]


def train_all(
    frames: Mapping[str, Mapping[str, pd.DataFrame]], params: Params, bar: Any = None
) -> TrainResult:
    """Fit every target of ``params.snapshots.targets`` from its split frames (the chain's upper target
    first, so later targets can be capped by it). ``bar``: optional (progress, task) to advance."""
    spec = FeatureSpec(params.features)
    targets = params.snapshots.targets
    missing = [
        c for c in (*spec.model_features, "rule_score") for t in targets if c not in frames[t]["train"]
    ]
    if missing:
        raise ValueError(f"feature tables lack columns {sorted(set(missing))}: rerun `leadscore features`")
    categories = fit_vocabulary({t: frames[t]["train"] for t in targets}, spec)
    encoder = MatrixEncoder(spec, categories)
    upper = chain_upper(targets)
    order = sorted(targets, key=lambda t: (t != upper, list(targets).index(t)))
    trained: dict[str, TrainedTarget] = {}
    for name in order:
        trained[name] = fit_target(name, frames[name], encoder, params)
        if bar is not None:
            bar[0].advance(bar[1])
    trained = {t: trained[t] for t in targets}
    predictions = apply_chain(trained, frames, encoder, targets)
    summary = {
        "targets": {
            t: {**trained[t].summary, "chain_capped": int(predictions[t]["chain_capped"].sum())}
            for t in targets
        },
        "data_cutoff": max(trained[t].summary["data_cutoff"] for t in targets),
        "n_features": len(encoder.feature_names_),
        "categories": {c: len(v) for c, v in categories.items()},
    }
    return TrainResult(categories, trained, predictions, summary)


def frame_columns(spec: FeatureSpec, available: list[str]) -> list[str]:
    """The columns training reads from a feature table (never the whole table): keys, label, model
    features, the rule score, the segment columns and, on demo data, the oracle."""
    keys = ["lead_id", "snapshot_ts", "label"]
    wanted = [*keys, *spec.model_features, "rule_score", "oracle_p", *CONTEXT_COLUMNS]
    return [c for c in dict.fromkeys(wanted) if c in available]


def sample_negatives(batch: pa.RecordBatch, rate: float, seed: int) -> pa.RecordBatch:
    """Every positive and a deterministic ``rate`` share of the negatives of one batch.

    A negative is kept when a seeded hash of (lead_id, snapshot_ts) falls below ``rate``: the same
    share in every snapshot period (time-stratified in expectation), the same rows on every run, and
    decided row by row, so the table is never held whole.
    """
    frame = batch.to_pandas()
    key = pd.util.hash_pandas_object(frame[["lead_id", "snapshot_ts"]], index=False, hash_key=f"{seed:016d}")
    keep = (frame["label"].to_numpy() == 1) | (key.to_numpy() < np.uint64(rate * 2.0**64))
    return batch.filter(pa.array(keep))


def negative_rate(path: Path, params: TrainParams) -> float:
    """The share of the training slice's negatives to keep: ``train.negative_sample_rate``, lowered so
    that at most ``train.max_negatives`` are kept (reads the label column only)."""
    rate = params.negative_sample_rate
    if params.max_negatives is None:
        return rate
    labels = pq.read_table(path, columns=["label"]).column("label").to_numpy()
    negatives = int((labels == 0).sum())
    # Past the cap, more negatives mostly add training time, not accuracy: the calibrator (fitted on
    # the whole calibration slice) restores the real base rate, as with a chosen sample rate.
    return min(rate, params.max_negatives / negatives) if negatives else rate


def read_split(path: Path, spec: FeatureSpec, params: TrainParams, training: bool) -> pd.DataFrame:
    """One feature table, only the needed columns, streamed in row groups.

    For the training slice, model features are kept as float32 (half the memory; training bins them
    anyway) and negatives are sampled while reading at ``negative_rate`` when it is below 1. The
    calibration and test slices are always read whole, in float64, so calibration and evaluation see
    the real class balance and the bundle's exact inputs.
    """
    file = pq.ParquetFile(path)
    columns = frame_columns(spec, file.schema_arrow.names)
    rate = negative_rate(path, params) if training else 1.0
    parts = []
    for batch in file.iter_batches(batch_size=200_000, columns=columns):
        if rate < 1:
            batch = sample_negatives(batch, rate, params.seed)
        part = batch.to_pandas()
        if training:
            numeric = [c for c in spec.model_features if c not in spec.categorical and c in part.columns]
            part[numeric] = part[numeric].astype(np.float32)
        parts.append(part)
    if not parts:
        return pq.read_table(path, columns=columns).to_pandas()
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def read_frames(params: Params) -> dict[str, dict[str, pd.DataFrame]]:
    """The feature tables per target and split from ``data/processed`` (see ``read_split``)."""
    spec = FeatureSpec(params.features)
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for target in params.snapshots.targets:
        out[target] = {}
        for split in SPLITS:
            path = params.data.processed_dir / target / f"{split}.parquet"
            if not path.exists():
                raise FileNotFoundError(f"{path} not found: run `leadscore features` (or `dvc repro`) first")
            out[target][split] = read_split(path, spec, params.train, training=split == "train")
    return out


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write_result(result: TrainResult, out_dir: Path) -> None:
    """Write models, calibrators, vocabularies, predictions and the summary into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*"):
        if stale.is_file():
            stale.unlink()
    for name, model in result.targets.items():
        (out_dir / f"model_{name}.txt").write_text(model.model_text)
        (out_dir / f"calibrator_{name}.json").write_text(_dump(model.calibrator.to_json()))
        write_parquet(result.predictions[name], out_dir / f"predictions_{name}.parquet")
    (out_dir / "categories.json").write_text(_dump(result.categories))
    (out_dir / "train_summary.json").write_text(_dump(result.summary))


def run_train(params: Params) -> dict[str, Any]:
    """DVC stage ``train``: read the feature tables, fit all targets, write ``build/train``."""
    from leadscore.models.leakage import guard_attributes, write_attribute_report

    # Lead / account attributes that look filled in after the outcome are blanked before training
    # (reasons: build/train/leakage.md), like post-outcome columns of a flat export.
    frames, leakage = guard_attributes(read_frames(params), params)
    with progress() as bar:
        task = bar.add_task("train", total=len(params.snapshots.targets))
        result = train_all(frames, params, bar=(bar, task))
    for target, summary in result.summary["targets"].items():
        rate = negative_rate(params.data.processed_dir / target / "train.parquet", params.train)
        if rate < 1:  # recorded only when negatives were sampled
            summary["negative_sample_rate"] = rate
    write_result(result, train_dir(params))
    write_attribute_report(leakage, train_dir(params))
    return result.summary
