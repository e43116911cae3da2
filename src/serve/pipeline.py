"""A pipeline bundle as a scoring model: payloads → checks → online features → LightGBM → response rows.

``PipelineModel`` is built once per bundle (at startup or reload, off the request path): the online
feature builder, reason templates, the stage table, the ``/v1/model`` document. ``score`` is the only
scoring code: one lead or a thousand go through the same ``payload.prepare``, one vectorised feature
build, one ``Booster.predict`` per target and SHAP only when asked, and the API, the micro-batcher and
``leadscore score`` all call it. (LightGBM's single-row C predictor saved ~50 µs for a lone lead and
nothing under concurrency, where the micro-batcher already hands over several rows; it was dropped.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pydantic import TypeAdapter

from leadscore.features.online import OnlineFeatureBuilder
from leadscore.models.bundle import Bundle, BundleError, load_bundle
from leadscore.models.chain import chain_consistent
from leadscore.models.reasons import ReasonBuilder
from leadscore.serve.payload import LeadArrays, PayloadPolicy, event_type_lookup, prepare
from leadscore.serve.schemas import BATCH_ADAPTER, SCORE_ADAPTER
from leadscore.serve.scorer import ScoreOutcome, StageTable, response_rows


def chain_of(bundle: Bundle) -> tuple[str | None, tuple[str, ...]]:
    """(upper target, targets capped at it) from the bundle's metadata ``chain``."""
    chain = bundle.metadata.get("chain") or {}
    if not isinstance(chain, dict):
        raise BundleError("metadata.json `chain` must be an object")
    upper = chain.get("upper")
    capped = tuple(t for t in chain.get("capped") or () if t in bundle.boosters and t != upper)
    if upper is not None and upper not in bundle.boosters:
        raise BundleError(f"metadata chain.upper {upper!r} is not a model of the bundle {bundle.targets}")
    return upper, capped


def apply_chain(
    probs: dict[str, np.ndarray], stage_rank: np.ndarray, chain: tuple[str | None, tuple[str, ...]]
) -> dict[str, np.ndarray]:
    """Cap each capped target at the upper target for pre-SQL leads, exactly as the pipeline's
    predictions do (``models.train.apply_chain`` → ``models.chain.chain_consistent``)."""
    upper, capped = chain
    out = dict(probs)
    for target in capped:
        out[target] = chain_consistent(probs, stage_rank, upper=upper, lower=target)[0][target]
    return out


def _mtime(bundle: Bundle) -> str:
    stamp = max((bundle.path / f"model_{t}.txt").stat().st_mtime for t in bundle.targets)
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


class PipelineModel:
    """A verified pipeline bundle plus all per-bundle precomputation (``ScoringModel``)."""

    kind = "pipeline"
    lead_adapter: TypeAdapter[Any] = SCORE_ADAPTER
    batch_adapter: TypeAdapter[Any] = BATCH_ADAPTER

    def __init__(self, bundle: Bundle) -> None:
        spec = bundle.spec
        self.bundle = bundle
        self.version, self.checksum, self.targets = bundle.version, bundle.checksum, bundle.targets
        try:
            self.reasons = ReasonBuilder(spec, bundle.baseline)
        except KeyError as exc:
            raise BundleError(f"cannot explain this bundle's features: {exc}") from exc
        self.table = StageTable.from_thresholds(bundle.thresholds, bundle.targets)
        self.informative_missing = bundle.missing_map(self.table.target)
        self.chain = chain_of(bundle)
        self.builder = OnlineFeatureBuilder(spec, bundle.baseline)
        self.type_lookup = event_type_lookup(spec.event_types)
        info = {
            "kind": self.kind,
            "model_version": bundle.version,
            "bundle_checksum": bundle.checksum,
            "created_at": bundle.manifest.get("created_at"),
            # The bundle holds no wall-clock time (reruns are byte-identical); without created_at, the
            # model files' modification time says when this copy was trained.
            "trained_at": bundle.metadata.get("trained_at")
            or bundle.manifest.get("created_at")
            or _mtime(bundle),
            "data_cutoff": bundle.metadata.get("data_cutoff"),
            "targets": bundle.metadata.get("target_info") or {t: {} for t in bundle.targets},
            "thresholds": bundle.thresholds,
            "reasons_from": self.table.target,
            "metrics": bundle.metrics,
            "features": [
                {"name": f, "label": self.reasons.label(f), "categorical": f in spec.categorical}
                for f in spec.model_features
            ],
            "versions": bundle.metadata.get("versions", {}),
        }
        self.info_json = orjson.dumps(info, option=orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def load(cls, bundle_dir: Path) -> PipelineModel:
        """Verify and load a pipeline bundle folder; raises ``BundleError``."""
        return cls(load_bundle(Path(bundle_dir)))

    # -- model inputs ------------------------------------------------------------------------------

    def predict(self, matrix: np.ndarray, num_threads: int = 1) -> dict[str, np.ndarray]:
        """Calibrated probability per target for an encoded matrix.

        LightGBM's own predict: the compiled trees of the former ``serve/forest.py`` (652 lines) are not
        restored, because predict is ~0.5x the echo route's time for a 1,000-lead batch against ~1.3x for
        pydantic validation (benchmarks/serve_bench.py), so they cannot bring the batch target in reach."""
        return self.bundle.predict(matrix, num_threads=num_threads)

    def contributions(self, matrix: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """SHAP contributions (n, n_features + 1) of the thresholds target's model, in log-odds."""
        booster = self.bundle.boosters[self.table.target]
        return np.asarray(booster.predict(matrix, pred_contrib=True, num_threads=num_threads))

    # -- scoring -----------------------------------------------------------------------------------

    def score_arrays(
        self,
        arrays: LeadArrays,
        explain: bool,
        reasons_per_lead: int = 3,
        num_threads: int = 1,
        positions: Sequence[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Response rows of prepared leads: one feature build, one predict per target, SHAP on demand."""
        if len(arrays) == 0:
            return []
        cols = self.builder.build(
            arrays.as_of, arrays.created_at, arrays.raw, arrays.events, arrays.stages, with_rule=False
        )
        matrix = self.bundle.encoder.transform(cols)
        probs = apply_chain(self.predict(matrix, num_threads), cols["stage_rank"], self.chain)
        reasons = None
        if explain:
            contrib = self.contributions(matrix, num_threads)
            reasons = self.reasons.top_reasons(contrib, cols, reasons_per_lead, self.informative_missing)
        return response_rows(self, self.table, arrays.lead_ids, arrays.as_of_text, probs, reasons, positions)

    def score(
        self,
        requests: Sequence[Any],
        explain: bool,
        reasons_per_lead: int = 3,
        *,
        default_as_of: datetime | None = None,
        positions: Sequence[int] | None = None,
        loc_prefix: tuple[Any, ...] | None = None,
        num_threads: int = 1,
        batch_rows: bool = False,
        policy: PayloadPolicy | None = None,
        now: float | None = None,
    ) -> ScoreOutcome:
        """Check, build and score validated requests (``schemas.ScoreRequest``); per-lead errors never
        fail the others. ``batch_rows``: results are the batch response's rows."""
        prepared = prepare(
            requests,
            self.type_lookup,
            policy or PayloadPolicy(),
            default_as_of=default_as_of,
            now=now,
            loc_prefix=loc_prefix,
            indices=positions,
        )
        rows = self.score_arrays(
            prepared.arrays,
            explain,
            reasons_per_lead,
            num_threads,
            prepared.positions if batch_rows else None,
        )
        return ScoreOutcome(
            results=dict(zip(prepared.positions, rows, strict=True)),
            errors=prepared.errors,
            unknown_event_types=prepared.unknown_event_types,
        )
