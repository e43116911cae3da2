"""Scores back into the CRM: one row per record under the CRM's own field names, ready for a bulk import.

The ``writeback`` block of a mapping file (the one that read the export: ``src/data/mappings/*.yaml`` or
``params.yaml``) names the record id field and the fields for score, probability, stage, reasons (top
reasons as one line of text) and model version. ``leadscore score --crm FILE`` applies it to the scores of
either bundle kind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from leadscore.config import MappingParams, WritebackParams


def load_writeback(path: Path) -> WritebackParams:
    """The ``writeback`` block of a mapping file (top-level ``mapping:`` as in params.yaml), or raise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CRM mapping file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    block = raw.get("mapping", raw) if isinstance(raw, dict) else {}
    mapping = MappingParams.model_validate(block or {})
    if mapping.writeback is None:
        raise ValueError(
            f"{path}: no mapping.writeback block (record id and field names); see "
            "src/data/mappings/salesforce.yaml for an example"
        )
    return mapping.writeback


def reasons_text(reasons: Mapping[str, Any] | str | None) -> str:
    """Top reasons as one line for a CRM text field: ``+ Lead Source is Webinar; - Country is X``."""
    if reasons is None or (isinstance(reasons, float) and pd.isna(reasons)):
        return ""
    if isinstance(reasons, str):
        reasons = json.loads(reasons) if reasons else {}
    parts = [f"+ {r['text']}" for r in reasons.get("positive", [])]
    parts += [f"- {r['text']}" for r in reasons.get("negative", [])]
    return "; ".join(parts)


def to_crm(scores: pd.DataFrame, wb: WritebackParams, id_column: str, target: str) -> pd.DataFrame:
    """The scores (``leadscore score`` output: ``id_column``, ``p_<target>``, ``stage``, ``score``,
    ``reasons_positive`` / ``reasons_negative`` as JSON, ``model_version``) under the CRM's field names.
    Rows that failed (``error`` set) are left out of the import file; the caller reports them."""
    rows = scores[scores["error"].fillna("") == ""] if "error" in scores.columns else scores
    values: dict[str, pd.Series] = {
        "score": rows["score"],
        "probability": rows[f"p_{wb.target or target}"],
        "stage": rows["stage"],
        "model_version": rows["model_version"],
    }
    if "reasons_positive" in rows.columns:
        values["reasons"] = pd.Series(
            [
                reasons_text({"positive": json.loads(p or "[]"), "negative": json.loads(n or "[]")})
                for p, n in zip(rows["reasons_positive"], rows["reasons_negative"], strict=True)
            ],
            index=rows.index,
        )
    out = pd.DataFrame({wb.id: rows[id_column].astype(str)})
    for what, field in wb.fields.items():
        if what not in values:
            raise ValueError(f"writeback field {field!r} asks for {what!r}, which this run has not computed")
        out[field] = values[what].to_numpy()
    return out.reset_index(drop=True)
