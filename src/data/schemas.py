"""pandera schemas of the *normalised* contract tables, built from ``leadscore.data.contract``.

The schemas describe what a table looks like after ``leadscore.data.validate`` has coerced it: ids and
text as pandas ``str``, timestamps as tz-naive UTC ``datetime64[us]``, numbers as ``float64``. Every
check carries its quarantine reason as its ``error`` so that pandera's ``failure_cases`` translate
directly into row-level reasons (:func:`row_failures`).
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from leadscore.data.contract import (
    EVENT_TYPES,
    OPTIONAL_COLUMNS,
    PRIMARY_KEYS,
    REQUIRED_COLUMNS,
    STAGES,
    TABLES,
)

#: pandas 3's default string dtype (Arrow-backed, NaN as the missing value).
STR: Final = pd.StringDtype("pyarrow", na_value=np.nan)
TIMESTAMP: Final = np.dtype("datetime64[us]")

Kind = Literal["id", "text", "lower", "timestamp", "count", "amount", "raw"]

#: How each contract column is normalised. ``lower``: stripped and lower-cased (vocabularies, domains);
#: ``count``: a whole number ≥ 0 stored as float64 so that missing values stay NaN; ``raw``: the
#: exporter's own format (JSON text, or lists/structs from Parquet), stripped when text, else untouched.
COLUMN_KINDS: Final[dict[str, dict[str, Kind]]] = {
    "accounts": {
        "account_id": "id",
        "industry": "text",
        "employees": "count",
        "annual_revenue": "amount",
        "country": "text",
        "name": "text",
        "tech_stack": "raw",
        "domain": "lower",
    },
    "leads": {
        "lead_id": "id",
        "account_id": "id",
        "created_at": "timestamp",
        "email_domain": "lower",
        "job_title": "text",
        "seniority": "text",
        "department": "text",
        "country": "text",
        "lead_source": "text",
        "first_name": "text",
        "last_name": "text",
        "email": "text",
    },
    "events": {
        "lead_id": "id",
        "ts": "timestamp",
        "event_type": "lower",
        "event_id": "id",
        "properties": "raw",
    },
    "stage_history": {"lead_id": "id", "stage": "lower", "ts": "timestamp", "reason": "text"},
}

#: Columns that must not be null: the primary key, plus a lead's creation time (every point-in-time
#: computation starts from it).
NON_NULLABLE: Final[dict[str, tuple[str, ...]]] = {
    t: PRIMARY_KEYS[t] + (("created_at",) if t == "leads" else ()) for t in TABLES
}

#: Closed vocabularies: (table, column) -> (allowed values, quarantine reason).
VOCABULARIES: Final[dict[tuple[str, str], tuple[tuple[str, ...], str]]] = {
    ("events", "event_type"): (EVENT_TYPES, "unknown_event_type"),
    ("stage_history", "stage"): (STAGES, "unknown_stage"),
}

_DTYPES: Final[dict[Kind, object]] = {
    "id": STR,
    "text": STR,
    "lower": STR,
    "timestamp": TIMESTAMP,
    "count": "float64",
    "amount": "float64",
    "raw": None,
}

#: Prefix of reasons for failures that concern a whole column (not a row): these are bugs or contract
#: breaks, never quarantined row by row.
COLUMN_LEVEL: Final = "column:"


def _column(table: str, name: str, kind: Kind, max_timestamp: pd.Timestamp | None) -> pa.Column:
    """Return the pandera column for one contract column; each check's ``error`` is its reason."""
    checks: list[pa.Check] = []
    if kind in ("count", "amount"):
        checks.append(pa.Check.ge(0, error=f"negative_value:{name}"))
    if kind == "timestamp":
        # pandera's datetime dtype ignores the unit; downstream code relies on microseconds.
        checks.append(
            pa.Check(lambda s: s.dtype == TIMESTAMP, element_wise=False, error=f"{COLUMN_LEVEL}unit:{name}")
        )
        if max_timestamp is not None:
            checks.append(pa.Check.le(max_timestamp, error=f"future_timestamp:{name}"))
    if (table, name) in VOCABULARIES:
        allowed, reason = VOCABULARIES[(table, name)]
        checks.append(pa.Check.isin(list(allowed), error=reason))
    return pa.Column(
        _DTYPES[kind],
        checks,
        nullable=name not in NON_NULLABLE[table],
        required=name in REQUIRED_COLUMNS[table],
    )


def table_schema(
    table: str, columns: tuple[str, ...] | None = None, max_timestamp: pd.Timestamp | None = None
) -> pa.DataFrameSchema:
    """Return the schema of a normalised table.

    ``columns``: the contract columns present (default: required + optional); ``max_timestamp``: the
    latest allowed timestamp (export time + tolerance), or ``None`` to skip the future check.
    Columns outside the contract are allowed and not checked (``strict=False``).
    """
    if columns is None:
        columns = REQUIRED_COLUMNS[table] + OPTIONAL_COLUMNS[table]
    kinds = COLUMN_KINDS[table]
    return pa.DataFrameSchema(
        {c: _column(table, c, kinds[c], max_timestamp) for c in columns},
        name=table,
        strict=False,
        ordered=False,
    )


#: Schemas of the full contract without the export-time bound (documentation, the API, tests).
SCHEMAS: Final[dict[str, pa.DataFrameSchema]] = {t: table_schema(t) for t in TABLES}


def row_failures(
    schema: pa.DataFrameSchema, df: pd.DataFrame
) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """Validate ``df`` (RangeIndex) lazily and return its failures.

    Returns ``(rows, columns)``: ``rows`` is a list of ``(reason, row positions)`` in schema column
    order, null checks before value checks (so the first reason of a row is deterministic);
    ``columns`` describes failures without a row (wrong dtype, unit, missing column).
    """
    try:
        schema.validate(df, lazy=True)
    except SchemaErrors as err:
        fc = err.failure_cases
    else:
        return [], []
    order = {c: i for i, c in enumerate(schema.columns)}
    fc = fc.assign(
        _col=fc["column"].map(order).fillna(len(order)),
        _chk=fc["check_number"].fillna(-1).astype(float),
    ).sort_values(["_col", "_chk"], kind="stable")
    rows: list[tuple[str, np.ndarray]] = []
    columns: list[str] = []
    for (column, check), grp in fc.groupby(["column", "check"], sort=False, dropna=False):
        idx = grp["index"]
        check = str(check)
        # dtype failures come with row indices for object columns, but they are about the column
        if idx.isna().all() or check.startswith((COLUMN_LEVEL, "dtype(", "coerce_dtype(")):
            example = grp["failure_case"].iloc[0]
            columns.append(f"column {column!r}: {check} (e.g. {example!r})")
            continue
        reason = f"missing_value:{column}" if check == "not_nullable" else check
        rows.append((reason, idx.dropna().to_numpy(dtype=np.int64)))
    return rows, columns
