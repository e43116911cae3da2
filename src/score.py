"""``leadscore score``: score a file of leads without the server, through the API's own code path.

Each lead becomes the same JSON payload the CRM would send to ``POST /v1/score`` (``payloads_from_tables``),
is validated by the same request model (``TypeAdapter.validate_json``) and scored by the same
``PipelineModel.score`` in chunks, so a file scored here and the same leads sent to the API give identical
numbers.

Input (CSV or Parquet, one row per lead): the contract's lead columns (``lead_id``, ``created_at``,
``email`` / ``email_domain``, ``job_title``, ``seniority``, ``department``, ``country``, ``lead_source``,
optional ``account_id``) and, optionally,

* account columns inline: ``industry``, ``employees``, ``annual_revenue``, ``tech_stack``,
  ``account_country``; or an accounts file (``--accounts``, the contract's accounts table) joined on
  ``account_id``;
* ``as_of`` per lead (else ``--as-of``, else now);
* events and stage history as files in the contract's layout (``--events``: lead_id, ts, event_type
  [, properties]; ``--stage-history``: lead_id, stage, ts [, reason]) or nested in the leads file as
  columns ``events`` / ``stage_history`` holding JSON arrays of ``{"ts", "event_type"}`` /
  ``{"stage", "ts"}`` objects (lists of structs in Parquet).

Events and stage rows after a lead's ``as_of`` are an error for that lead (as in the API); pass files
cut at ``as_of`` or score as of the export time. Output (CSV or Parquet): lead_id, as_of,
``p_<target>`` per target, stage, score, the reasons as JSON text (``reasons_positive``,
``reasons_negative``) when ``--explain``, model_version, bundle_checksum, and ``error`` (the per-lead
validation errors as JSON text; empty for scored leads).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from pydantic import TypeAdapter, ValidationError

from leadscore.data.payloads import normalise_timestamps, payloads_from_tables, read_frame, write_frame
from leadscore.models.bundle import BundleError
from leadscore.serve.payload import PayloadPolicy
from leadscore.serve.pipeline import PipelineModel
from leadscore.serve.schemas import SCORE_ADAPTER, error_list
from leadscore.serve.scorer import ScoringModel

CHUNK = 1000


def _chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def _as_of_text(as_of: str | None) -> str | None:
    """``--as-of`` as ISO text, or None (now)."""
    if as_of is None:
        return None
    ts = pd.Timestamp(as_of)
    if ts.tzinfo is None:
        ts = ts.tz_localize(UTC)
    return ts.isoformat()


def score_payloads(
    model: ScoringModel,
    payloads: Sequence[dict[str, Any]],
    explain: bool,
    policy: PayloadPolicy | None = None,
    reasons_per_lead: int = 3,
    now: float | None = None,
    adapter: TypeAdapter[Any] = SCORE_ADAPTER,
) -> list[dict[str, Any]]:
    """Validate and score payloads exactly as the API does; one result or ``{"errors": [...]}`` each."""
    policy = policy or PayloadPolicy()
    results: list[dict[str, Any]] = [{} for _ in payloads]
    for rows in _chunks(len(payloads), CHUNK):
        requests: list[Any] = []
        indices: list[int] = []
        for i in rows:
            try:
                # through JSON, as the API receives them (NaN becomes null)
                requests.append(adapter.validate_json(orjson.dumps(payloads[i], default=str)))
                indices.append(i)
            except ValidationError as exc:
                results[i] = {"errors": error_list(exc)}
        outcome = model.score(requests, explain, reasons_per_lead, positions=indices, policy=policy, now=now)
        for i, res in outcome.results.items():
            results[i] = res
        for i, errs in outcome.errors.items():
            results[i] = {"errors": errs}
    return results


def results_frame(
    payloads: Sequence[dict[str, Any]],
    results: Sequence[dict[str, Any]],
    targets: Sequence[str],
    explain: bool,
) -> pd.DataFrame:
    """One output row per lead (input order)."""
    rows = []
    for payload, res in zip(payloads, results, strict=True):
        lead_id = payload["lead_id"] if "lead_id" in payload else payload.get("lead", {}).get("lead_id")
        if "errors" in res:
            row: dict[str, Any] = {"lead_id": lead_id, "error": json.dumps(res["errors"])}
        else:
            row = {"lead_id": res["lead_id"], "as_of": res["as_of"]}
            row.update({f"p_{t}": res["probabilities"][t] for t in targets})
            row.update({"stage": res["stage"], "score": res["score"]})
            if explain:
                row["reasons_positive"] = json.dumps(res["reasons"]["positive"])
                row["reasons_negative"] = json.dumps(res["reasons"]["negative"])
            row.update(
                {
                    "model_version": res["model_version"],
                    "bundle_checksum": res["bundle_checksum"],
                    "error": "",
                }
            )
        rows.append(row)
    columns = ["lead_id", "as_of", *(f"p_{t}" for t in targets), "stage", "score"]
    if explain:
        columns += ["reasons_positive", "reasons_negative"]
    columns += ["model_version", "bundle_checksum", "error"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["score"] = frame["score"].astype("Int64")
    return frame


def score_flat_file(
    input: Path, output: Path, bundle_dir: Path, explain: bool = True, crm: Path | None = None
) -> dict[str, Any]:
    """``leadscore score`` with a flat bundle: the rows of an export-like file (the export's own column
    names) as the API's ``FlatRow`` requests, validated and scored by the served ``FlatModel``. One output
    row per input row: the record id (the CRM id field of ``crm``'s writeback block, else the export's id
    column the bundle knows, else the row number), probability, stage, score, reasons, model version,
    error; with ``crm`` under the CRM's field names (failed rows left out and counted). Returns counts."""
    from leadscore.data.flat import read_export
    from leadscore.serve.flat import FlatModel

    model = FlatModel.load(Path(bundle_dir))
    frame = read_export(Path(input)).reset_index(drop=True)
    wb = None
    if crm is not None:
        from leadscore.data.writeback import load_writeback

        wb = load_writeback(crm)
    known = [wb.id] if wb else []
    ids = [c for c in known + model.scorer.metadata.get("id_columns", []) if c in frame.columns]
    record_ids = frame[ids[0]].astype(str).tolist() if ids else [str(i) for i in range(len(frame))]
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    payloads = [{"lead_id": rid, "attributes": row} for rid, row in zip(record_ids, rows, strict=True)]
    results = score_payloads(model, payloads, explain, adapter=model.lead_adapter)
    out = results_frame(payloads, results, model.targets, explain)
    out = out.rename(columns={"lead_id": "record_id"}).drop(columns=["as_of"])
    return _write_scores(out, output, model, "record_id", crm)


def _write_scores(
    frame: pd.DataFrame, output: Path, model: ScoringModel, id_column: str, crm: Path | None
) -> dict[str, Any]:
    """Write the scores (under the CRM's field names with ``crm``; failed rows then left out) and
    return the counts."""
    failed = int((frame["error"] != "").sum())
    if crm is not None:  # the CRM's field names for a bulk import (failed leads are counted below)
        from leadscore.data.writeback import load_writeback, to_crm

        frame = to_crm(frame, load_writeback(crm), id_column, model.table.target)
    write_frame(frame, output)
    return {
        "leads": len(frame) + (failed if crm is not None else 0),
        "scored": len(frame) - (0 if crm is not None else failed),
        "failed": failed,
        "output": str(output),
        "model_version": model.version,
        "kind": model.kind,
    }


def score_file(
    input: Path,
    output: Path,
    bundle_dir: Path = Path("models"),
    events: Path | None = None,
    as_of: str | None = None,
    explain: bool = True,
    stage_history: Path | None = None,
    accounts: Path | None = None,
    crm: Path | None = None,
) -> dict[str, Any]:
    """Score ``input`` (leads) with the bundle in ``bundle_dir``; write ``output``; return counts.
    ``crm``: a mapping file with a ``writeback`` block: the output goes under the CRM's field names.

    Raises ``FileNotFoundError``/``ValueError`` (and ``BundleError``) for unusable inputs; a lead that
    fails validation is written with its ``error`` instead of stopping the run.
    """
    from leadscore.models.flat import is_flat_bundle

    if is_flat_bundle(Path(bundle_dir)):  # a `train-table` bundle: rows of the export, its own columns
        try:
            return score_flat_file(input, output, Path(bundle_dir), explain, crm)
        except BundleError as exc:
            raise ValueError(f"cannot use the bundle in {bundle_dir}: {exc}") from exc
    try:
        model = PipelineModel.load(Path(bundle_dir))
    except BundleError as exc:
        raise ValueError(f"cannot use the bundle in {bundle_dir}: {exc}") from exc
    now = time.time()
    leads = normalise_timestamps(read_frame(input), ("created_at", "as_of"))
    if "lead_id" not in leads.columns:
        raise ValueError(f"{input} has no lead_id column; found {list(leads.columns)}")
    payloads = payloads_from_tables(
        leads,
        accounts=read_frame(accounts) if accounts else None,
        events=normalise_timestamps(read_frame(events), ("ts",)) if events else None,
        stage_history=normalise_timestamps(read_frame(stage_history), ("ts",)) if stage_history else None,
    )
    default = _as_of_text(as_of)
    if default is not None:
        for p in payloads:
            p.setdefault("as_of", default)
    results = score_payloads(model, payloads, explain, now=now)
    frame = results_frame(payloads, results, model.targets, explain)
    return _write_scores(frame, output, model, "lead_id", crm)
