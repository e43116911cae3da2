"""Contract tables -> the JSON payloads of ``POST /v1/score``, and the file I/O of ``leadscore score``.

``payloads_from_tables`` turns a leads table (with inline account columns or an accounts table, and
events and stage history as tables or nested columns) into one request payload per lead, exactly what a
CRM would send; ``leadscore score``, the serving tests and the serving benchmark all build their
requests here. Timestamps become ISO-8601 text, numbers from CSV text become numbers, missing values
are left out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.data.contract import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

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
