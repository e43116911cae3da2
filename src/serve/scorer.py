"""The scorer protocol both bundle kinds implement, the one response builder, and the model holder.

A *pipeline* bundle (``dvc repro``: events, stage history, point-in-time features; ``serve.pipeline``) and
a *flat* bundle (``leadscore train-table``: one row of export columns; ``serve.flat``) answer the same
endpoints with the same response: calibrated probabilities, the stage from the thresholds, the 1–99
score and the top reasons in words. ``load_model`` is the one function that turns a bundle folder into
a model (verify checksums, then load); a registry resolver hands it the folder it downloaded.
``Scorer`` holds the model being served; a request grabs it once and finishes on it, so a reload can swap
the reference at any time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import TypeAdapter

from leadscore.models.bundle import BundleError, read_json, verify_bundle
from leadscore.models.reasons import Reason
from leadscore.serve.payload import PayloadPolicy

log = logging.getLogger("leadscore.serve")


@dataclass
class ScoreOutcome:
    """Per request position: a result dict or a list of errors; plus unknown event types met."""

    results: dict[int, dict[str, Any]]
    errors: dict[int, list[dict[str, Any]]]
    unknown_event_types: dict[str, int]


class ScoringModel(Protocol):
    """What the routes need from a loaded bundle, whatever its kind."""

    kind: str
    version: str
    checksum: str
    targets: list[str]
    info_json: bytes
    #: validate one lead's JSON / a batch body's JSON (pydantic; the request contract of this kind)
    lead_adapter: TypeAdapter[Any]
    batch_adapter: TypeAdapter[Any]

    def score(
        self,
        requests: Sequence[Any],
        explain: bool,
        reasons_per_lead: int,
        *,
        default_as_of: datetime | None = None,
        positions: Sequence[int] | None = None,
        loc_prefix: tuple[Any, ...] | None = None,
        num_threads: int = 1,
        batch_rows: bool = False,
        policy: PayloadPolicy | None = None,
        now: float | None = None,
    ) -> ScoreOutcome:
        """Score validated requests (``lead_adapter`` output); a bad lead never fails the others.
        ``policy``: the server's limits on what a lead may contain; ``now``: the time of "now"."""
        ...


# ---- stages and the 1–99 score ---------------------------------------------------------------------------


def score_from_probability(p: np.ndarray, quantiles: np.ndarray | None) -> np.ndarray:
    """The 1–99 score for people: the lead's percentile band on the calibration slice.

    ``quantiles``: 98 non-decreasing cut points, the 1/99 … 98/99 quantiles of the thresholds target's
    calibrated probability on the calibration slice (``score_quantiles`` in thresholds.json); the score
    is 1 + the number of cut points at or below p, so calibration leads spread evenly over 1..99. A
    bundle without cut points (older bundles) falls back to round(99·p) clipped to 1..99.
    """
    p = np.asarray(p, dtype=np.float64)
    if quantiles is not None and len(quantiles):
        return (1 + np.searchsorted(quantiles, p, side="right")).clip(1, 99).astype(np.int64)
    return np.clip(np.rint(99.0 * p), 1, 99).astype(np.int64)


@dataclass(frozen=True)
class StageTable:
    """Ordered stage rules (name, probability floor) of one target and the score cut points."""

    target: str
    names: list[str]
    floor: np.ndarray
    quantiles: np.ndarray | None

    @classmethod
    def from_thresholds(cls, th: Any, targets: Sequence[str]) -> StageTable:
        """From a bundle's thresholds.json document; ``BundleError`` for any other shape."""
        if not isinstance(th, dict):
            raise BundleError("thresholds.json must be an object with `target` and `stages`")
        target, rules = th.get("target"), th.get("stages")
        if target not in targets:
            raise BundleError(f"thresholds target {target!r} is not a model of the bundle {list(targets)}")
        if not isinstance(rules, list):
            raise BundleError("thresholds.json `stages` must be a list")
        try:
            names = [str(r["name"]) for r in rules]
            floor = np.asarray([float(r["probability"]) for r in rules], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"thresholds.json stages need a name and a probability each: {exc}") from exc
        raw = th.get("score_quantiles")
        quantiles = None
        if raw:
            try:
                quantiles = np.asarray(raw, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise BundleError(f"score_quantiles must be a list of numbers: {exc}") from exc
            if quantiles.ndim != 1 or not np.all(np.isfinite(quantiles)) or np.any(np.diff(quantiles) < 0):
                raise BundleError("score_quantiles must be a finite, non-decreasing list")
        return cls(str(target), names, floor, quantiles)

    def stages(self, p: np.ndarray) -> list[str | None]:
        """The first rule each probability passes (None when it passes none)."""
        passes = p[:, None] >= self.floor[None, :]
        first, has = passes.argmax(axis=1).tolist(), passes.any(axis=1).tolist()
        return [self.names[j] if h else None for j, h in zip(first, has, strict=True)]

    def scores(self, p: np.ndarray) -> list[int]:
        return score_from_probability(p, self.quantiles).tolist()


# ---- the one response builder ------------------------------------------------------------------------


def _reasons_json(reasons: tuple[list[Reason], list[Reason]]) -> dict[str, Any]:
    pos, neg = reasons
    return {
        "positive": [{"feature": r.feature, "text": r.text, "contribution": r.contribution} for r in pos],
        "negative": [{"feature": r.feature, "text": r.text, "contribution": r.contribution} for r in neg],
    }


def response_rows(
    model: ScoringModel,
    table: StageTable,
    lead_ids: Sequence[str],
    as_of_texts: Sequence[str],
    probs: dict[str, np.ndarray],
    reasons: list[tuple[list[Reason], list[Reason]]] | None,
    positions: Sequence[int] | None,
) -> list[dict[str, Any]]:
    """One response dict per scored lead (the order of keys is the order of the JSON): lead_id, as_of,
    probabilities, stage, score, [reasons], model_version, bundle_checksum; led by ``index`` and
    ``status: "ok"`` when ``positions`` (request positions) is given, as the batch response's rows."""
    p_stage = probs[table.target]
    stages, scores = table.stages(p_stage), table.scores(p_stage)
    targets = list(probs)
    per_lead = [
        dict(zip(targets, values, strict=True))
        for values in zip(*(probs[t].tolist() for t in targets), strict=True)
    ]
    version, checksum = model.version, model.checksum
    rows = []
    for i, lead_id in enumerate(lead_ids):
        row: dict[str, Any] = {} if positions is None else {"index": positions[i], "status": "ok"}
        row["lead_id"] = lead_id
        row["as_of"] = as_of_texts[i]
        row["probabilities"] = per_lead[i]
        row["stage"] = stages[i]
        row["score"] = scores[i]
        if reasons is not None:
            row["reasons"] = _reasons_json(reasons[i])
        row["model_version"] = version
        row["bundle_checksum"] = checksum
        rows.append(row)
    return rows


# ---- loading and the current model ---------------------------------------------------------------------


def bundle_kind(bundle_dir: Path) -> str:
    """``"flat"`` or ``"pipeline"`` from a verified bundle's metadata.json (``BundleError`` otherwise)."""
    return "flat" if read_json(Path(bundle_dir), "metadata.json").get("kind") == "flat" else "pipeline"


def load_model(bundle_dir: Path) -> ScoringModel:
    """Verify a bundle folder (checksums, names inside the folder, no symlinks) and load it as the model
    of its kind; raises ``BundleError`` for anything that cannot serve. The one entry point for serving a
    bundle, whether it comes from ``models/`` or from a model registry."""
    from leadscore.serve.flat import FlatModel
    from leadscore.serve.pipeline import PipelineModel

    verify_bundle(bundle_dir)
    if bundle_kind(bundle_dir) == "flat":
        return FlatModel.load(bundle_dir)
    return PipelineModel.load(bundle_dir)


@dataclass(frozen=True)
class ReloadResult:
    reloaded: bool
    model: ScoringModel | None
    previous_checksum: str | None
    error: str | None = None
    seconds: float = 0.0


class Scorer:
    """Holds the model being served. ``reload`` loads and verifies a bundle off the request path and
    swaps one reference; a refused bundle leaves the current model serving."""

    def __init__(self, bundle_dir: Path, source: Callable[[], Path] | None = None) -> None:
        self.bundle_dir = Path(bundle_dir)
        #: resolves the bundle folder on every load (a registry alias, ``serve.source``); None: bundle_dir
        self.source = source
        self._model: ScoringModel | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def model(self) -> ScoringModel | None:
        return self._model

    def reload(self, bundle_dir: Path | None = None) -> ReloadResult:
        """Load + verify ``bundle_dir`` (default: the configured one) and swap it in. Never raises: any
        failure refuses the bundle and the result says why. Reloads are serialised."""
        with self._lock:
            start = time.perf_counter()
            previous = self._model
            prev_sum = previous.checksum if previous is not None else None
            try:
                model = load_model(bundle_dir or (self.source() if self.source else self.bundle_dir))
            except Exception as exc:
                # BundleError says what is wrong; anything else is a bundle shape no check foresaw, and
                # refusing it (the current model keeps serving) is the right answer to it too.
                why = str(exc) if isinstance(exc, BundleError | OSError) else f"invalid bundle ({exc!r})"
                self.last_error = why
                log.error(
                    "bundle refused, %s: %s", "keeping the current model" if previous else "no model", why
                )
                return ReloadResult(False, previous, prev_sum, why, time.perf_counter() - start)
            self._model = model  # one reference assignment: in-flight requests keep the model they took
            self.last_error = None
            log.info("serving %s bundle %s (model %s)", model.kind, model.checksum[:12], model.version)
            return ReloadResult(True, model, prev_sum, None, time.perf_counter() - start)
