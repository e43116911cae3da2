"""Scoring: a loaded bundle with everything precomputed, and the one function that scores requests.

``LoadedModel`` is built once per bundle (at startup or reload, off the request path): feature builder,
reason templates, encoder column plan, LightGBM single-row predictors, threshold arrays, the ``/v1/model``
document. ``score_requests`` is the only scoring code: the API's single and batch endpoints and
``leadscore score`` all call it, so they return the same numbers. A request grabs the current model once
and finishes on it, so ``Scorer.reload`` can swap the reference at any time without disturbing it.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from leadscore.features.online import OnlineFeatureBuilder
from leadscore.features.spec import FeatureSpec
from leadscore.models.bundle import Bundle, BundleError, load_bundle
from leadscore.models.chain import chain_consistent, chain_consistent_one
from leadscore.models.reasons import Reason, ReasonBuilder
from leadscore.serve.decode import ScoreReq
from leadscore.serve.forest import CompiledForest
from leadscore.serve.payload import LeadArrays, OneLead, PayloadPolicy, Prepared, event_type_lookup, prepare
from leadscore.serve.predict import PREDICT_CONTRIB, PREDICT_NORMAL, SingleRowPredictor, check_row_predictor

log = logging.getLogger("leadscore.serve")

#: Requests of up to this many leads are predicted row by row through the single-row fast path.
FAST_ROWS = 32


def score_from_probability(p: np.ndarray, quantiles: np.ndarray | None) -> np.ndarray:
    """The 1–99 score for people.

    With ``quantiles`` (98 increasing cut points of the thresholds target's calibrated probability on the
    calibration slice, i.e. its 1st..98th percentiles / 99) the score is the lead's percentile band:
    1 + the number of cut points at or below p. Without them: round(99·p) clipped to 1..99.
    """
    p = np.asarray(p, dtype=np.float64)
    if quantiles is not None and len(quantiles):
        return (1 + np.searchsorted(quantiles, p, side="right")).clip(1, 99).astype(np.int64)
    return np.clip(np.rint(99.0 * p), 1, 99).astype(np.int64)


def _score_quantiles(bundle: Bundle) -> np.ndarray | None:
    """Cut points for ``score_from_probability`` if the bundle carries them (thresholds.json
    ``score_quantiles``), else None."""
    raw = bundle.thresholds.get("score_quantiles") or bundle.metadata.get("score_quantiles")
    if not raw:
        return None
    q = np.asarray(raw, dtype=np.float64)
    if q.ndim != 1 or not np.all(np.isfinite(q)) or np.any(np.diff(q) < 0):
        raise BundleError("score_quantiles must be a finite, non-decreasing list")
    return q


def _mtime(bundle: Bundle) -> str:
    stamp = max((bundle.path / f"model_{t}.txt").stat().st_mtime for t in bundle.targets)
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


def chain_of(bundle: Bundle) -> tuple[str | None, tuple[str, ...]]:
    """(upper target, targets capped at it) from the bundle's metadata ``chain``."""
    chain = bundle.metadata.get("chain") or {}
    upper = chain.get("upper")
    capped = tuple(t for t in chain.get("capped", ()) if t in bundle.boosters and t != upper)
    if upper is not None and upper not in bundle.boosters:
        raise BundleError(f"metadata chain.upper {upper!r} is not a model of the bundle {bundle.targets}")
    return upper, capped


def apply_chain(
    probs: dict[str, np.ndarray], stage_rank: np.ndarray, chain: tuple[str | None, tuple[str, ...]]
) -> dict[str, np.ndarray]:
    """Cap each capped target at the upper target for pre-SQL leads, exactly as the pipeline's
    predictions do (``models.train.apply_chain`` → ``models.chain.chain_consistent``)."""
    upper, capped = chain
    if upper is None:
        return probs
    out = dict(probs)
    rank = np.asarray(stage_rank, dtype=np.float64)
    for target in capped:
        both, _ = chain_consistent(
            {"sql": probs[upper], "lower": probs[target]}, rank, upper="sql", lower="lower"
        )
        out[target] = both["lower"]
    return out


@dataclass
class LoadedModel:
    """A verified bundle plus all per-bundle precomputation for fast scoring."""

    bundle: Bundle
    builder: OnlineFeatureBuilder
    reasons: ReasonBuilder
    type_lookup: dict[str, int]
    reason_target: str
    stage_target: str
    stage_names: list[str]
    stage_floor: np.ndarray
    score_quantiles: np.ndarray | None
    chain: tuple[str | None, tuple[str, ...]]
    info: dict[str, Any]
    info_json: bytes
    loaded_at: str
    #: Per target, the trees compiled by numba (``serve.forest``; empty when a model is not supported).
    forests: dict[str, CompiledForest] = field(default_factory=dict)
    row_predict: dict[str, SingleRowPredictor] = field(default_factory=dict)
    row_contrib: SingleRowPredictor | None = None
    #: (stage name, probability floor) in rule order, and the score cut points as a list (one-lead path).
    stage_rules: list[tuple[str, float]] = field(default_factory=list)
    score_cuts: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stage_rules = list(zip(self.stage_names, self.stage_floor.tolist(), strict=True))
        self.score_cuts = [] if self.score_quantiles is None else self.score_quantiles.tolist()

    @property
    def checksum(self) -> str:
        return self.bundle.checksum

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def targets(self) -> list[str]:
        return self.bundle.targets

    # -- model inputs ------------------------------------------------------------------------------

    def encode(self, cols: dict[str, np.ndarray]) -> np.ndarray:
        """The model matrix for built feature columns (the bundle's encoder, as in training)."""
        return self.bundle.encoder.transform(cols)

    def predict(self, matrix: np.ndarray, num_threads: int = 1) -> dict[str, np.ndarray]:
        """Calibrated probability per target: the compiled trees when the bundle's models are supported
        (bit-identical to ``Booster.predict``, ~10x faster); else up to ``FAST_ROWS`` rows go row by row
        through LightGBM's single-row predictor (``Booster.predict`` costs ~100 µs of Python per call)."""
        b = self.bundle
        if self.forests:
            return {
                t: b.calibrators[t].transform(self.forests[t].predict(matrix, num_threads))
                for t in b.boosters
            }
        if len(matrix) <= FAST_ROWS and self.row_predict:
            return {
                t: b.calibrators[t].transform(np.concatenate([self.row_predict[t](row) for row in matrix]))
                for t in b.boosters
            }
        return b.predict(matrix, num_threads=num_threads)

    def contributions(self, matrix: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """SHAP contributions (n, n_features + 1) of the reason target's model, in log-odds."""
        if len(matrix) <= FAST_ROWS and self.row_contrib is not None:
            return np.vstack([self.row_contrib(row) for row in matrix])
        booster = self.bundle.boosters[self.reason_target]
        return np.asarray(booster.predict(matrix, pred_contrib=True, num_threads=num_threads))


def build_model(bundle: Bundle) -> LoadedModel:
    """Precompute everything scoring needs from a verified bundle; raises ``BundleError`` if unusable."""
    spec: FeatureSpec = bundle.spec
    try:
        reasons = ReasonBuilder(spec, bundle.baseline)
    except KeyError as exc:
        raise BundleError(f"cannot explain this bundle's features: {exc}") from exc
    th = bundle.thresholds
    stage_target = str(th.get("target", ""))
    rules = th.get("stages") or []
    if stage_target not in bundle.boosters:
        raise BundleError(f"thresholds target {stage_target!r} is not a model of the bundle {bundle.targets}")
    try:
        names = [str(r["name"]) for r in rules]
        floor = np.asarray([float(r["probability"]) for r in rules], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"thresholds.json stages need a name and a probability each: {exc}") from exc
    reason_target = stage_target

    info = {
        "model_version": bundle.version,
        "bundle_checksum": bundle.checksum,
        "created_at": bundle.manifest.get("created_at"),
        # The bundle holds no wall-clock time (reruns are byte-identical); when the manifest has no
        # created_at, the model files' modification time says when this copy was trained.
        "trained_at": bundle.metadata.get("trained_at")
        or bundle.manifest.get("created_at")
        or _mtime(bundle),
        "data_cutoff": bundle.metadata.get("data_cutoff"),
        "targets": bundle.metadata.get("target_info") or {t: {} for t in bundle.targets},
        "thresholds": th,
        "reasons_from": reason_target,
        "metrics": bundle.metrics,
        "features": [
            {"name": f, "label": reasons.label(f), "categorical": f in spec.categorical}
            for f in spec.model_features
        ],
        "versions": bundle.metadata.get("versions", {}),
    }
    model = LoadedModel(
        bundle=bundle,
        builder=OnlineFeatureBuilder(spec, bundle.baseline),
        reasons=reasons,
        type_lookup=event_type_lookup(spec.event_types),
        reason_target=reason_target,
        stage_target=stage_target,
        stage_names=names,
        stage_floor=floor,
        score_quantiles=_score_quantiles(bundle),
        chain=chain_of(bundle),
        info=info,
        info_json=orjson.dumps(info, option=orjson.OPT_SERIALIZE_NUMPY),
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    _attach_fast_path(model)
    _attach_forests(model)
    return model


def _attach_forests(model: LoadedModel) -> None:
    """Compile the bundle's trees (``serve.forest``; it proves itself equal to ``Booster.predict`` on
    probe rows); a model it does not support is predicted by LightGBM instead."""
    try:
        model.forests = {t: CompiledForest.from_booster(b) for t, b in model.bundle.boosters.items()}
    except Exception as exc:  # UnsupportedModel, or numba unable to compile here: LightGBM still works
        log.warning("compiled trees unavailable (%s); predicting with LightGBM", exc)


def _attach_fast_path(model: LoadedModel) -> None:
    """Set up the single-row predictors and prove them equal to ``Booster.predict`` on probe rows."""
    ncol = len(model.bundle.encoder.feature_names_)
    rng = np.random.default_rng(0)
    probes = np.vstack([np.full(ncol, np.nan), np.zeros(ncol), rng.uniform(0, 50, size=(3, ncol))])
    try:
        row_predict = {
            t: SingleRowPredictor(b, PREDICT_NORMAL, ncol) for t, b in model.bundle.boosters.items()
        }
        row_contrib = SingleRowPredictor(model.bundle.boosters[model.reason_target], PREDICT_CONTRIB, ncol)
        ok = all(
            check_row_predictor(p, model.bundle.boosters[t], probes, contrib=False)
            for t, p in row_predict.items()
        ) and check_row_predictor(row_contrib, model.bundle.boosters[model.reason_target], probes, True)
    except Exception as exc:
        log.warning("LightGBM single-row fast path unavailable (%s); using Booster.predict", exc)
        return
    if not ok:
        log.warning("LightGBM single-row fast path disagrees with Booster.predict; using Booster.predict")
        return
    model.row_predict = row_predict
    model.row_contrib = row_contrib


def load_model(bundle_dir: Path) -> LoadedModel:
    """Verify and load a bundle directory and precompute; raises ``BundleError``."""
    return build_model(load_bundle(Path(bundle_dir)))


# ---- scoring -----------------------------------------------------------------------------------------


@dataclass
class ScoreOutcome:
    """Per request position: a result dict or a list of errors; plus unknown event types met."""

    results: dict[int, dict[str, Any]]
    errors: dict[int, list[dict[str, Any]]]
    unknown_event_types: dict[str, int]
    model: LoadedModel


def _response(
    model: LoadedModel,
    lead_id: str,
    as_of_text: str,
    probabilities: dict[str, float],
    stage: str | None,
    score: int,
    reasons: tuple[list[Reason], list[Reason]] | None,
) -> dict[str, Any]:
    """One lead's response dict (the order of keys is the order of the JSON)."""
    result: dict[str, Any] = {
        "lead_id": lead_id,
        "as_of": as_of_text,
        "probabilities": probabilities,
        "stage": stage,
        "score": score,
    }
    if reasons is not None:
        pos, neg = reasons
        result["reasons"] = {
            "positive": [{"feature": r.feature, "text": r.text, "contribution": r.contribution} for r in pos],
            "negative": [{"feature": r.feature, "text": r.text, "contribution": r.contribution} for r in neg],
        }
    result["model_version"] = model.version
    result["bundle_checksum"] = model.checksum
    return result


def _score_one(model: LoadedModel, lead: OneLead, explain: bool, reasons_per_lead: int) -> dict[str, Any]:
    """``score_arrays`` for one lead, row-wise in plain Python (the API's one-lead path).

    Each step is the scalar twin of the array code (``build_one``, ``transform_one``, the single-row
    LightGBM predictors, ``top_reasons_one``) with the same operations in the same order, so results
    equal the array path's; ``tests/serve/test_parity.py`` checks it lead by lead.
    """
    values = model.builder.build_one(
        lead.as_of, lead.created_at, lead.raw, lead.ev_ts, lead.ev_code, lead.st_ts, lead.st_stage
    )
    row = model.bundle.encoder.transform_one(values)
    calibrators = model.bundle.calibrators
    if model.forests:
        probs = {t: calibrators[t].transform_one(f.predict_one(row)) for t, f in model.forests.items()}
    else:
        probs = {t: calibrators[t].transform_one(p.value(row)) for t, p in model.row_predict.items()}
    upper, capped = model.chain
    if upper is not None:
        for t in capped:
            probs[t] = chain_consistent_one(probs[upper], probs[t], values["stage_rank"])
    p_stage = probs[model.stage_target]
    stage = next((name for name, floor in model.stage_rules if p_stage >= floor), None)
    q = model.score_cuts
    # score_from_probability for one value (searchsorted side="right" is bisect_right; rint is round)
    score = 1 + bisect.bisect_right(q, p_stage) if q else round(99.0 * p_stage)
    score = min(99, max(1, score))
    reasons = None
    if explain:
        assert model.row_contrib is not None
        reasons = model.reasons.top_reasons_one(model.row_contrib(row).tolist(), values, reasons_per_lead)
    return _response(model, lead.lead_id, lead.as_of_text, probs, stage, score, reasons)


def score_arrays(
    model: LoadedModel,
    arrays: LeadArrays,
    explain: bool,
    reasons_per_lead: int = 3,
    num_threads: int = 1,
    positions: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Score prepared leads: one feature build, one predict per target, SHAP only when ``explain``.

    Returns one response dict per row of ``arrays`` (lead_id, as_of, probabilities, stage, score,
    [reasons], model_version, bundle_checksum), each led by ``index`` (its request position from
    ``positions``) and ``status: "ok"`` when ``positions`` is given (the batch response's rows).
    """
    n = len(arrays)
    if n == 0:
        return []
    cols = model.builder.build(
        arrays.as_of, arrays.created_at, arrays.raw, arrays.events, arrays.stages, with_rule=False
    )
    matrix = model.encode(cols)
    probs = apply_chain(model.predict(matrix, num_threads), cols["stage_rank"], model.chain)
    p_stage = probs[model.stage_target]
    passes = p_stage[:, None] >= model.stage_floor[None, :]
    first = passes.argmax(axis=1)
    has = passes.any(axis=1)
    names = model.stage_names
    stages = [names[j] if h else None for j, h in zip(first.tolist(), has.tolist(), strict=True)]
    scores = score_from_probability(p_stage, model.score_quantiles).tolist()
    reasons: list[tuple[list[Reason], list[Reason]]] | None = None
    if explain:
        contrib = model.contributions(matrix, num_threads)
        reasons = model.reasons.top_reasons(contrib, cols, reasons_per_lead)
    targets = list(probs)
    per_lead = [
        dict(zip(targets, values, strict=True))
        for values in zip(*(probs[t].tolist() for t in targets), strict=True)
    ]
    if reasons is not None:
        rows = [
            _response(
                model, arrays.lead_ids[i], arrays.as_of_text[i], per_lead[i], stages[i], scores[i], reasons[i]
            )
            for i in range(n)
        ]
        return rows if positions is None else _batch_rows(positions, rows)
    # _response's dict without reasons, inline: a batch of 1,000 builds 1,000 of them.
    version, checksum = model.version, model.checksum
    if positions is not None:
        return [
            {
                "index": pos,
                "status": "ok",
                "lead_id": lead_id,
                "as_of": as_of,
                "probabilities": p,
                "stage": stage,
                "score": score,
                "model_version": version,
                "bundle_checksum": checksum,
            }
            for pos, lead_id, as_of, p, stage, score in zip(
                positions, arrays.lead_ids, arrays.as_of_text, per_lead, stages, scores, strict=True
            )
        ]
    return [
        {
            "lead_id": lead_id,
            "as_of": as_of,
            "probabilities": p,
            "stage": stage,
            "score": score,
            "model_version": version,
            "bundle_checksum": checksum,
        }
        for lead_id, as_of, p, stage, score in zip(
            arrays.lead_ids, arrays.as_of_text, per_lead, stages, scores, strict=True
        )
    ]


def score_requests(
    model: LoadedModel,
    requests: Sequence[ScoreReq],
    policy: PayloadPolicy,
    explain: bool,
    reasons_per_lead: int = 3,
    num_threads: int = 1,
    default_as_of: datetime | None = None,
    now: float | None = None,
    loc_prefix: tuple[Any, ...] | None = None,
    indices: Sequence[int] | None = None,
    batch_rows: bool = False,
) -> ScoreOutcome:
    """Check, build and score validated requests on ``model``; per-lead errors never fail the others.
    ``batch_rows``: results are the batch response's rows (``score_prepared``)."""
    prepared: Prepared = prepare(
        requests,
        model.type_lookup,
        policy,
        default_as_of=default_as_of,
        now=now,
        loc_prefix=loc_prefix,
        indices=indices,
    )
    return score_prepared(model, prepared, explain, reasons_per_lead, num_threads, batch_rows)


def _batch_rows(positions: Sequence[int], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"index": pos, "status": "ok", **row} for pos, row in zip(positions, rows, strict=True)]


def score_prepared(
    model: LoadedModel,
    prepared: Prepared,
    explain: bool,
    reasons_per_lead: int = 3,
    num_threads: int = 1,
    batch_rows: bool = False,
) -> ScoreOutcome:
    """Score checked leads (``payload.prepare`` or ``columnar.prepare_batch_text``) on ``model``.
    ``batch_rows``: results are the batch response's rows (led by ``index`` and ``status``)."""
    positions = prepared.positions if batch_rows else None
    if len(prepared) == 1 and (model.forests or model.row_predict) and model.row_contrib is not None:
        # One lead (every single-lead API call): row-wise in plain Python, a few hundred µs faster.
        rows = [_score_one(model, prepared.one(), explain, reasons_per_lead)]
        if positions is not None:
            rows = _batch_rows(positions, rows)
    else:
        rows = score_arrays(model, prepared.arrays, explain, reasons_per_lead, num_threads, positions)
    return ScoreOutcome(
        results=dict(zip(prepared.positions, rows, strict=True)),
        errors=prepared.errors,
        unknown_event_types=prepared.unknown_event_types,
        model=model,
    )


# ---- the current model and reloads ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReloadResult:
    reloaded: bool
    model: LoadedModel | None
    previous_checksum: str | None
    error: str | None = None
    seconds: float = 0.0


class Scorer:
    """Holds the model being served. ``reload`` loads and verifies a bundle off the request path and
    swaps one reference; a failed load leaves the current model serving."""

    def __init__(self, bundle_dir: Path, source: Callable[[], Path] | None = None) -> None:
        self.bundle_dir = Path(bundle_dir)
        #: resolves the bundle folder on every load (a registry alias, ``serve.source``); None: bundle_dir
        self.source = source
        self._model: LoadedModel | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def model(self) -> LoadedModel | None:
        return self._model

    def reload(self, bundle_dir: Path | None = None) -> ReloadResult:
        """Load + verify ``bundle_dir`` (default: the configured one) and swap it in; never raises for a
        bad bundle (the result says why it was refused). Reloads are serialised."""
        with self._lock:
            start = time.perf_counter()
            previous = self._model
            prev_sum = previous.checksum if previous is not None else None
            try:
                model = load_model(bundle_dir or (self.source() if self.source else self.bundle_dir))
            except (BundleError, OSError) as exc:
                self.last_error = str(exc)
                log.error(
                    "bundle refused, %s: %s", "keeping the current model" if previous else "no model", exc
                )
                return ReloadResult(False, previous, prev_sum, str(exc), time.perf_counter() - start)
            self._model = model  # one reference assignment: in-flight requests keep the model they took
            self.last_error = None
            log.info("serving bundle %s (model %s)", model.checksum[:12], model.version)
            return ReloadResult(True, model, prev_sum, None, time.perf_counter() - start)
