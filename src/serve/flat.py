"""A flat bundle (``leadscore train-table``) as a scoring model: one row of export columns per lead.

A flat export has no events or stage history, so there are no point-in-time features; a lead is the row
as the export had it (its own column names, JSON scalars), cleaned exactly as in training
(``models.flat.FlatScorer``). The response is the pipeline bundle's: calibrated probability, the stage
from the bundle's thresholds, the 1–99 score from its cut points, and the top reasons in words (the
column's header and the lead's value, ranked by LightGBM's own SHAP contributions).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import orjson
import pandas as pd
from pydantic import TypeAdapter

from leadscore.models.bundle import BundleError, read_json
from leadscore.models.flat import FlatScorer
from leadscore.models.reasons import Reason
from leadscore.serve.payload import PayloadPolicy, epoch_seconds, iso_utc
from leadscore.serve.schemas import FlatBatch, FlatRow
from leadscore.serve.scorer import ScoreOutcome, StageTable, response_rows


def _value_text(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return "not given"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


class FlatModel:
    """A verified flat bundle (``ScoringModel``)."""

    kind = "flat"
    lead_adapter: TypeAdapter[Any] = TypeAdapter(FlatRow)
    batch_adapter: TypeAdapter[Any] = TypeAdapter(FlatBatch)

    def __init__(self, scorer: FlatScorer, thresholds: Any) -> None:
        self.scorer = scorer
        self.version, self.checksum, self.targets = scorer.version, scorer.checksum, [scorer.target]
        self.table = StageTable.from_thresholds(thresholds, self.targets)
        columns = scorer.spec.columns
        self.labels = [c.source for c in columns]
        # a row may name a column by the export's header or by its normalised name
        self.keys = [(c.source, c.name) for c in columns]
        info = {
            "kind": self.kind,
            "model_version": self.version,
            "bundle_checksum": self.checksum,
            "targets": {scorer.target: {"column": scorer.metadata.get("target_column")}},
            "thresholds": thresholds,
            "reasons_from": scorer.target,
            "metrics": scorer.metadata.get("metrics"),
            "features": [
                {"name": c.name, "label": c.source, "categorical": c.kind == "category"} for c in columns
            ],
            "excluded_by_leakage_guard": scorer.metadata.get("excluded_by_leakage_guard"),
            "split": scorer.metadata.get("split"),
            "warnings": scorer.metadata.get("warnings"),
            "versions": scorer.metadata.get("versions", {}),
        }
        self.info_json = orjson.dumps(info)

    @classmethod
    def load(cls, bundle_dir: Path) -> FlatModel:
        """Verify and load a flat bundle folder; raises ``BundleError``."""
        scorer = FlatScorer.load(Path(bundle_dir))
        if not (Path(bundle_dir) / "thresholds.json").is_file():
            raise BundleError(
                "this flat bundle has no thresholds.json (stages and score cut points): rebuild it with "
                "`leadscore train-table`"
            )
        thresholds = read_json(Path(bundle_dir), "thresholds.json")
        return cls(scorer, thresholds)

    def _reasons(
        self, contrib: np.ndarray, rows: list[dict[str, Any]], k: int
    ) -> list[tuple[list[Reason], list[Reason]]]:
        """Top-k positive and negative columns per row by SHAP contribution, in the export's words."""
        out = []
        nf = len(self.labels)
        for c, row in zip(contrib[:, :nf].tolist(), rows, strict=True):
            order = sorted(range(nf), key=lambda j: (-abs(c[j]), j))

            def reason(j: int, row: dict[str, Any] = row, c: list[float] = c) -> Reason:
                source, name = self.keys[j]
                value = row.get(source, row.get(name))
                return Reason(name, f"{self.labels[j]}: {_value_text(value)}", c[j])

            pos = [reason(j) for j in order if c[j] > 0][:k]
            neg = [reason(j) for j in order if c[j] < 0][:k]
            out.append((pos, neg))
        return out

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
        """Score validated ``FlatRow`` requests (no per-lead checks beyond the request contract)."""
        positions = list(positions) if positions is not None else list(range(len(requests)))
        if not requests:
            return ScoreOutcome({}, {}, {})
        rows = [r["attributes"] for r in requests]
        s = self.scorer
        x = _matrix(s, rows)
        p = s.calibrator.transform(s.booster.predict(x, num_threads=num_threads))
        reasons = None
        if explain:
            booster: lgb.Booster = s.booster
            contrib = np.asarray(booster.predict(x, pred_contrib=True, num_threads=num_threads))
            reasons = self._reasons(contrib, rows, reasons_per_lead)
        now = int(time.time() if now is None else now)
        when = [r.get("as_of") or default_as_of for r in requests]  # echoed; a flat row has no history to cut
        as_of = [iso_utc(now if w is None else epoch_seconds(w)) for w in when]
        out = response_rows(
            self,
            self.table,
            [r["lead_id"] for r in requests],
            as_of,
            {s.target: p},
            reasons,
            positions if batch_rows else None,
        )
        return ScoreOutcome(dict(zip(positions, out, strict=True)), {}, {})


def _matrix(scorer: FlatScorer, rows: list[dict[str, Any]]) -> np.ndarray:
    """The model matrix of raw rows, cleaned as in training (``data.flat.transform``)."""
    from leadscore.data.flat import transform

    frame = pd.DataFrame.from_records(rows).astype(object) if rows else pd.DataFrame()
    if frame.shape[1] == 0:  # rows without any attribute: every column missing
        frame = pd.DataFrame(index=range(len(rows)))
    return transform(frame, scorer.spec)
