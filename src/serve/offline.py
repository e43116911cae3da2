"""``leadscore score``: score a file of leads without the server, through the API's own code path.

Each lead becomes the same JSON payload the CRM would send to ``POST /v1/score`` (``payloads_from_tables``),
is validated by the same request model (``TypeAdapter.validate_json``) and scored by the same
``score_requests`` in chunks, so a file scored here and the same leads sent to the API give identical
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
import math
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from pydantic import ValidationError

from leadscore.data.contract import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from leadscore.models.bundle import BundleError
from leadscore.serve.decode import ScoreReq, parse_score
from leadscore.serve.payload import PayloadPolicy
from leadscore.serve.scorer import LoadedModel, load_model, score_requests

CHUNK = 1000
# The contract's lead and account columns (required, then optional) are what a file row may carry.
LEAD_FIELDS = (*REQUIRED_COLUMNS["leads"], *OPTIONAL_COLUMNS["leads"])
ACCOUNT_FIELDS = (*REQUIRED_COLUMNS["accounts"], *OPTIONAL_COLUMNS["accounts"])
#: Inline account columns of a leads file (lead and account both have ``country``).
INLINE_ACCOUNT = {
    "industry": "industry",
    "employees": "employees",
    "annual_revenue": "annual_revenue",
    "tech_stack": "tech_stack",
    "account_country": "country",
    "account_name": "name",
}


def read_frame(path: Path) -> pd.DataFrame:
    """A CSV (all columns as text, only empty fields missing) or Parquet file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    if path.suffix == ".parquet" or path.is_dir():
        return pd.read_parquet(path)
    if path.name.endswith((".csv", ".csv.gz")):
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    raise ValueError(f"{path}: expected .csv, .csv.gz or .parquet")


def normalise_timestamps(frame: pd.DataFrame | None, columns: Sequence[str]) -> pd.DataFrame | None:
    """Timestamp text columns parsed like the pipeline's loader (ISO-8601, dates allowed, offsets converted
    to UTC, naive = UTC); values that do not parse stay text, so the lead gets a validation error."""
    if frame is None:
        return None
    frame = frame.copy()
    for col in columns:
        if col not in frame.columns:
            continue
        s = frame[col]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            frame[col] = s.dt.tz_convert("UTC").dt.tz_localize(None)
        elif not pd.api.types.is_datetime64_dtype(s):
            parsed = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601").dt.tz_localize(None)
            keep = s.astype(object).where(parsed.isna() & s.notna(), None)
            frame[col] = [
                k if k is not None else (p if pd.notna(p) else None)
                for k, p in zip(keep.tolist(), parsed.tolist(), strict=True)
            ]
    return frame


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.name.endswith((".csv", ".csv.gz")):
        frame.to_csv(path, index=False)
    else:
        raise ValueError(f"{path}: expected .csv, .csv.gz or .parquet")


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _ts(value: Any) -> Any:
    """Timestamps as ISO-8601 text (what the CRM sends); text is passed through for the model to check."""
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).isoformat()
    return value


def _number(value: Any) -> Any:
    """Numbers from CSV text; text that is not a number is passed through (the lead then gets a 422-style
    error, not a silent NaN)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def _plain(value: Any) -> Any:
    if _missing(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _nested(value: Any) -> list[dict[str, Any]] | None:
    """A nested events / stage_history cell: JSON text or a list of structs."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return json.loads(value) if value.strip() else []
    return [dict(v) for v in value]


def _properties(value: Any) -> Any:
    if _missing(value):
        return None
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return {"raw": value}
        return parsed if isinstance(parsed, dict) else {"value": parsed}
    return value


def _group_rows(frame: pd.DataFrame | None, columns: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Rows of ``frame`` grouped by lead_id as lists of dicts of ``columns`` (in time order)."""
    if frame is None or frame.empty:
        return {}
    cols = [c for c in columns if c in frame.columns]
    frame = frame.sort_values(["lead_id", "ts"], kind="stable")
    out: dict[str, list[dict[str, Any]]] = {}
    ids = frame["lead_id"].astype(str).to_numpy()
    values = {c: frame[c].to_numpy(dtype=object) for c in cols}
    for i, lead_id in enumerate(ids):
        row: dict[str, Any] = {}
        for c in cols:
            v = values[c][i]
            if c == "ts":
                row[c] = _ts(v)
            elif c == "properties":
                p = _properties(v)
                if p is not None:
                    row[c] = p
            elif not _missing(v):
                row[c] = _plain(v)
        out.setdefault(lead_id, []).append(row)
    return out


def payloads_from_tables(
    leads: pd.DataFrame,
    accounts: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    stage_history: pd.DataFrame | None = None,
    as_of: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """One ``POST /v1/score`` payload (a JSON-ready dict) per row of ``leads``.

    ``accounts``/``events``/``stage_history`` are contract tables (all leads' rows; events and stage rows
    are attached as they are, so pass them cut at ``as_of``); ``as_of``: one value per lead (overrides an
    ``as_of`` column). Lead rows may also carry inline account columns and nested ``events`` /
    ``stage_history`` (see the module docstring).
    """
    ev = _group_rows(events, ("ts", "event_type", "event_id", "properties"))
    st = _group_rows(stage_history, ("stage", "ts", "reason"))
    acc_rows: dict[str, dict[str, Any]] = {}
    if accounts is not None and not accounts.empty:
        acols = [c for c in ACCOUNT_FIELDS if c in accounts.columns]
        for rec in accounts[acols].to_dict("records"):
            if not _missing(rec.get("account_id")):
                acc_rows[str(rec["account_id"])] = rec
    lcols = {c: leads[c].to_numpy(dtype=object) for c in leads.columns}
    out: list[dict[str, Any]] = []
    for i in range(len(leads)):
        lead: dict[str, Any] = {}
        for c in LEAD_FIELDS:
            if c in lcols and not _missing(lcols[c][i]):
                v = lcols[c][i]
                lead[c] = _ts(v) if c == "created_at" else _plain(v)
        if "lead_id" in lead:
            lead["lead_id"] = str(lead["lead_id"])
        payload: dict[str, Any] = {"lead": lead}
        account: dict[str, Any] = {}
        acc_id = lead.get("account_id")
        if acc_id is not None and str(acc_id) in acc_rows:
            account = {k: _plain(v) for k, v in acc_rows[str(acc_id)].items() if not _missing(v)}
        for col, field in INLINE_ACCOUNT.items():
            if col in lcols and not _missing(lcols[col][i]):
                account[field] = _plain(lcols[col][i])
        for field in ("employees", "annual_revenue"):
            if field in account:
                account[field] = _number(account[field])
        if account:
            payload["account"] = account
        lead_key = str(lead.get("lead_id"))
        nested_ev = _nested(lcols["events"][i]) if "events" in lcols else None
        nested_st = _nested(lcols["stage_history"][i]) if "stage_history" in lcols else None
        payload["events"] = (nested_ev or []) + ev.get(lead_key, [])
        payload["stage_history"] = (nested_st or []) + st.get(lead_key, [])
        when = as_of[i] if as_of is not None else (lcols["as_of"][i] if "as_of" in lcols else None)
        if not _missing(when):
            payload["as_of"] = _ts(when)
        out.append(payload)
    return out


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
    model: LoadedModel,
    payloads: Sequence[dict[str, Any]],
    explain: bool,
    policy: PayloadPolicy | None = None,
    reasons_per_lead: int = 3,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """Validate and score payloads exactly as the API does; one result or ``{"errors": [...]}`` each."""
    policy = policy or PayloadPolicy()
    results: list[dict[str, Any]] = [{} for _ in payloads]
    for rows in _chunks(len(payloads), CHUNK):
        requests: list[ScoreReq] = []
        indices: list[int] = []
        for i in rows:
            try:
                requests.append(parse_score(orjson.dumps(payloads[i])))
                indices.append(i)
            except ValidationError as exc:
                results[i] = {
                    "errors": [
                        {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                        for e in exc.errors(include_url=False, include_input=False, include_context=False)
                    ]
                }
        outcome = score_requests(
            model, requests, policy, explain, reasons_per_lead, now=now, indices=indices, loc_prefix=None
        )
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
        lead_id = payload.get("lead", {}).get("lead_id")
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
    from leadscore.models.flat import is_flat_bundle, score_flat_file

    if is_flat_bundle(Path(bundle_dir)):  # a `train-table` bundle: rows of the export, its own columns
        try:
            return score_flat_file(input, output, Path(bundle_dir), explain, crm)
        except BundleError as exc:
            raise ValueError(f"cannot use the bundle in {bundle_dir}: {exc}") from exc
    try:
        model = load_model(Path(bundle_dir))
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
    if crm is not None:  # the CRM's field names for a bulk import (failed leads are counted below)
        from leadscore.data.writeback import load_writeback, to_crm

        wb = load_writeback(crm)
        failed_rows = frame[frame["error"] != ""]
        frame = to_crm(frame, wb, "lead_id", model.stage_target)
        write_frame(frame, output)
        return {
            "leads": len(frame) + len(failed_rows),
            "scored": len(frame),
            "failed": len(failed_rows),
            "output": str(output),
            "model_version": model.version,
        }
    write_frame(frame, output)
    failed = int((frame["error"] != "").sum())
    return {
        "leads": len(frame),
        "scored": len(frame) - failed,
        "failed": failed,
        "output": str(output),
        "model_version": model.version,
    }
