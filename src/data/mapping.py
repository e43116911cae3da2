"""Column mappings: a CRM's export in ``data/raw/`` -> the four contract tables, driven by params.

``params.mapping`` lists, per contract table, its source files and how each becomes contract rows
(see ``leadscore.config.MappingParams`` and docs/byod.md):

* ``rows`` sources: column renames (CRM name -> contract name), value mappings (e.g. Salesforce task
  types or HubSpot engagement types -> event types, lead statuses -> stages), constants for contract
  columns the export lacks, a ``where`` filter (e.g. LeadHistory rows of the field ``Status``), ``explode``
  for multi-valued id cells and a ``lookup`` (e.g. opportunity id -> lead id through the leads file);
* ``lifecycle`` sources: a date column per stage reached -> stage rows (``leadscore.data.lifecycle``);
* ``deals`` sources: deals keyed by lead id -> opportunity / closed_won / closed_lost rows.

The output has the raw export's form (text values, ISO-8601 UTC timestamps) so ``leadscore validate``
runs its usual checks on it and writes the same interim tables as for an export that already follows
the contract. Nothing is lost silently:

* a value with no mapping (an event type, a stage) passes through unchanged, so validate quarantines
  the row (``unknown_event_type`` / ``unknown_stage``) with the value visible, and the mapping report
  lists the unmapped values with their counts, ready to be added to the mapping;
* rows left out on purpose (``where``, a value mapped to ``null``) are counted per reason in
  ``reports/mapping.json`` and written to ``interim/quarantine/mapping.parquet``;
* a mapping naming a missing file or column, a contract column that does not exist, or a timestamp
  column that does not parse stops with a :class:`MappingError` naming the file, the column, an example
  value and the closest existing column.
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from leadscore.config import DealsSource, LifecycleSource, MappingParams, Params, RowsSource
from leadscore.data.contract import EVENT_TYPES, PRIMARY_KEYS, REQUIRED_COLUMNS, STAGES, TABLES
from leadscore.data.flat import parse_number, text
from leadscore.data.lifecycle import (
    DateOptions,
    MappingError,
    deals_to_stages,
    lifecycle_to_stages,
    require_columns,
    timestamp_text,
)
from leadscore.data.load import read_table, table_sources
from leadscore.data.parquet import write_parquet
from leadscore.data.schemas import COLUMN_KINDS

__all__ = ["MappingError", "MappingResult", "apply_mapping", "map_tables", "run_mapping"]

log = logging.getLogger(__name__)

#: Closed vocabularies of the contract: a mapped value must be one of these.
VOCABULARY: Final = {("events", "event_type"): EVENT_TYPES, ("stage_history", "stage"): STAGES}
#: Columns that cannot be left empty: they must be mapped (or be constants).
KEY_COLUMNS: Final = {t: PRIMARY_KEYS[t] + (("created_at",) if t == "leads" else ()) for t in TABLES}
_SUFFIXES: Final = (".csv.gz", ".parquet", ".csv")
DROPPED_COLUMNS: Final = ("table", "file", "source_row", "reason", "value")


@dataclass(frozen=True)
class MappingResult:
    """Contract tables (raw form), rows left out on purpose (``DROPPED_COLUMNS``), and the report."""

    tables: dict[str, pd.DataFrame]
    dropped: pd.DataFrame
    report: dict[str, Any]


def _file_name(file: str) -> str:
    for suffix in _SUFFIXES:
        if file.lower().endswith(suffix):
            return file[: -len(suffix)]
    return file


def read_source(raw_dir: Path, file: str, cache: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Read one source file of ``raw_dir`` (CSV as text, Parquet typed), once per mapping run."""
    name = _file_name(file)
    if name not in cache:
        try:
            table_sources(raw_dir, name)
        except FileNotFoundError as exc:
            present = sorted(p.name for p in Path(raw_dir).iterdir()) if Path(raw_dir).is_dir() else []
            close = difflib.get_close_matches(name, [_file_name(p) for p in present], n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise MappingError(
                f"mapping names file {file!r}: {exc}.{hint} Files in {raw_dir}: {present}"
            ) from exc
        cache[name] = read_table(raw_dir, name)
    return cache[name]


def date_options(src: RowsSource | LifecycleSource | DealsSource, mapping: MappingParams) -> DateOptions:
    """The source's date options, defaulting to the mapping's."""
    fmt = src.date_format if src.date_format is not None else mapping.date_format
    return DateOptions(
        fmt=None if fmt == "auto" else fmt,  # "auto": per value, overriding the mapping's format
        dayfirst=src.dayfirst if src.dayfirst is not None else mapping.dayfirst,
        tz=src.timezone or mapping.timezone,
    )


def _check_contract_column(table: str, column: str, where: str) -> None:
    allowed = list(COLUMN_KINDS[table])
    if column not in allowed:
        close = difflib.get_close_matches(column, allowed, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise MappingError(
            f"{where} names {column!r}, which is not a column of the contract table {table!r}.{hint} "
            f"Contract columns: {allowed}"
        )


def _dropped(table: str, file: str, rows: pd.Index, reason: str, values: pd.Series | None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "table": table,
            "file": file,
            "source_row": np.asarray(rows, dtype=np.int64),
            "reason": reason,
            "value": values.astype(str).to_numpy() if values is not None else "",
        }
    )


def map_rows(
    table: str,
    frame: pd.DataFrame,
    src: RowsSource,
    mapping: MappingParams,
    where: str,
    max_bad_share: float,
    lookup_frame: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Turn one ``rows`` source into contract rows (text); return rows, rows left out, and counts.

    The output index is the source row (0-based data row of the file), so every row stays traceable.
    """
    file = src.file
    targets: dict[str, str] = {}
    for source_col, contract in src.columns.items():
        for c in (contract,) if isinstance(contract, str) else contract:
            _check_contract_column(table, c, f"{where}.columns[{source_col!r}]")
            if c in targets:
                raise MappingError(
                    f"{where}: contract column {c!r} is mapped from both {targets[c]!r} and {source_col!r}"
                )
            targets[c] = source_col
    for c in src.constants:
        _check_contract_column(table, c, f"{where}.constants")
        if c in targets:
            raise MappingError(f"{where}: {c!r} is both mapped from {targets[c]!r} and a constant; keep one")
    for c in src.values:
        _check_contract_column(table, c, f"{where}.values")
        if c not in targets and c not in src.constants:
            raise MappingError(f"{where}.values maps values of {c!r}, but no column is mapped to {c!r}")
        vocab = VOCABULARY.get((table, c))
        if vocab is not None:
            wrong = {k: v for k, v in src.values[c].items() if v is not None and v not in vocab}
            if wrong:
                raise MappingError(
                    f"{where}.values.{c} maps to values outside the contract: {wrong}; "
                    f"use one of {list(vocab)} "
                    f"(or null to leave the row out)"
                )
    needed = [*src.columns, *src.where, *src.explode, *([src.lookup.column] if src.lookup else [])]
    require_columns(frame, dict.fromkeys(needed), file, where)

    df = frame.reset_index(drop=True)
    dropped: list[pd.DataFrame] = []
    counts: dict[str, Any] = {"rows_read": len(df)}
    for col, allowed in src.where.items():
        wanted = {a.casefold() for a in allowed}
        keep = text(df[col]).map(lambda v, w=wanted: isinstance(v, str) and v.casefold() in w)
        keep = keep.astype(bool)
        if (~keep).any():
            dropped.append(_dropped(table, file, df.index[~keep], f"where:{col}", df.loc[~keep, col]))
        df = df[keep]
    for col, sep in src.explode.items():
        df = df.assign(**{col: text(df[col]).str.split(sep)}).explode(col)
        df[col] = text(df[col])
        empty = df[col].isna()
        if empty.any():
            dropped.append(_dropped(table, file, df.index[empty], f"explode_empty:{col}", None))
        df = df[~empty]
    if src.lookup is not None:
        lk = src.lookup
        assert lookup_frame is not None
        require_columns(lookup_frame, [lk.key, lk.value], lk.file, f"{where}.lookup")
        table_ = pd.DataFrame({"k": text(lookup_frame[lk.key]), "v": text(lookup_frame[lk.value])}).dropna()
        table_ = table_.drop_duplicates("k", keep="first")
        found = text(df[lk.column]).map(dict(zip(table_["k"], table_["v"], strict=True)))
        # An unmatched key stays visible: validate quarantines the row as unknown_lead with this value.
        unmatched = found.isna() & text(df[lk.column]).notna()
        counts["lookup_unmatched"] = int(unmatched.sum())
        df = df.assign(
            **{lk.column: found.where(~unmatched, "unmatched: " + text(df[lk.column]).astype(str))}
        )

    out = pd.DataFrame(index=df.index)
    missing_marks = {m.strip().casefold() for m in mapping.missing_values}
    for contract, source_col in targets.items():
        values = text(df[source_col])
        out[contract] = values.mask(
            values.map(lambda v: isinstance(v, str) and v.casefold() in missing_marks)
        )
    for contract, value in src.constants.items():
        out[contract] = np.nan if value is None else str(value)

    opts = date_options(src, mapping)
    unmapped: dict[str, dict[str, int]] = {}
    for contract in list(out.columns):
        kind = COLUMN_KINDS[table][contract]
        if contract in src.values or (table, contract) in VOCABULARY:
            lookup = {k.strip().casefold(): v for k, v in src.values.get(contract, {}).items()}
            vocab = {v.casefold(): v for v in VOCABULARY.get((table, contract), ())}
            values = out[contract]
            folded = values.map(lambda v: v.casefold() if isinstance(v, str) else v)
            to_null = folded.map(lambda v, lk=lookup: isinstance(v, str) and v in lk and lk[v] is None)
            to_null = to_null.astype(bool)
            mapped = folded.map(
                lambda v, lk=lookup, vc=vocab: (
                    lk.get(v)
                    if isinstance(v, str) and v in lk
                    else vc.get(v, np.nan)
                    if isinstance(v, str)
                    else np.nan
                )
            )
            if to_null.any():
                dropped.append(
                    _dropped(table, file, out.index[to_null], f"mapped_to_null:{contract}", values[to_null])
                )
            still = values.notna() & mapped.isna() & ~to_null
            if (table, contract) in VOCABULARY and still.any():
                unmapped[contract] = {
                    str(k): int(n) for k, n in values[still].value_counts().head(20).items()
                }
            # Unmapped values pass through unchanged: validate quarantines them with the value visible.
            out[contract] = mapped.where(mapped.notna(), values)
            out = out[~to_null]
        elif kind == "timestamp":
            out[contract], _ = timestamp_text(
                out[contract], opts, file, targets.get(contract, contract), max_bad_share
            )
        elif kind in ("count", "amount"):
            values = out[contract]
            nums = values.map(lambda v: parse_number(v) if isinstance(v, str) else None)
            # Unparseable numbers stay as text: validate quarantines them as bad_type with the value.
            out[contract] = values.where(
                nums.isna(), nums.map(lambda x: repr(float(x)) if x is not None else x)
            )
    if src.deduplicate:
        dup = out.duplicated(keep="first")
        if dup.any():
            dropped.append(_dropped(table, file, out.index[dup], "duplicate_after_mapping", None))
            out = out[~dup]
    counts["rows_out"] = len(out)
    if unmapped:
        counts["unmapped_values"] = unmapped
    drops = pd.concat(dropped, ignore_index=True) if dropped else pd.DataFrame(columns=list(DROPPED_COLUMNS))
    if len(drops):
        counts["left_out"] = {str(k): int(v) for k, v in drops["reason"].value_counts().items()}
    return out, drops, counts


def _deal_files(mapping: MappingParams) -> set[str]:
    return {
        _file_name(s.file).casefold()
        for s in mapping.tables.get("stage_history", ())
        if isinstance(s, DealsSource)
    }


def check_point_in_time(mapping: MappingParams) -> None:
    """Refuse a leads or accounts source read from a deals file: deal attributes (amount, owner, deal
    stage, ...) exist only once a deal exists, so they must never describe a lead."""
    deal_files = _deal_files(mapping)
    for table in ("leads", "accounts"):
        for i, src in enumerate(mapping.tables.get(table, ())):
            if _file_name(src.file).casefold() in deal_files:
                raise MappingError(
                    f"mapping.tables.{table}[{i}] reads {src.file!r}, which is a deals source: "
                    "deal attributes "
                    f"exist only once a deal exists and would leak the outcome into lead features. Take "
                    f"{table} columns from the leads export, and deals only through a `kind: deals` source."
                )


def map_tables(raw_dir: Path, mapping: MappingParams, max_bad_share: float = 0.05) -> MappingResult:
    """Read the sources of ``mapping`` from ``raw_dir`` and return the four contract tables (raw form).

    ``max_bad_share``: a timestamp column with a larger share of unparseable values stops the run
    (:class:`MappingError`); fewer bad values are passed on for validate to quarantine. A table without
    sources is empty (a leads + deals export has no events); contract columns no source provides are
    added empty and listed in the report (``filled_empty``), except keys, which must be mapped.
    """
    raw_dir = Path(raw_dir)
    check_point_in_time(mapping)
    cache: dict[str, pd.DataFrame] = {}
    tables: dict[str, pd.DataFrame] = {}
    dropped: list[pd.DataFrame] = []
    report: dict[str, Any] = {}
    for table in TABLES:
        parts: list[pd.DataFrame] = []
        sources_report: list[dict[str, Any]] = []
        for i, src in enumerate(mapping.tables.get(table, ())):
            where = f"mapping.tables.{table}[{i}]"
            frame = read_source(raw_dir, src.file, cache)
            opts = date_options(src, mapping)
            entry: dict[str, Any] = {"file": src.file, "kind": src.kind}
            if isinstance(src, RowsSource):
                lookup = read_source(raw_dir, src.lookup.file, cache) if src.lookup else None
                out, drops, counts = map_rows(table, frame, src, mapping, where, max_bad_share, lookup)
                dropped.append(drops)
                entry |= counts
            elif isinstance(src, LifecycleSource):
                out = lifecycle_to_stages(frame, src, opts, src.file, max_bad_share)
                entry |= {"rows_read": len(frame), "rows_out": len(out)}
            else:
                out, counts = deals_to_stages(frame, src, opts, src.file, max_bad_share)
                entry |= counts | {"rows_out": len(out)}
            parts.append(out.reset_index(drop=True))
            sources_report.append(entry)
        columns = list(dict.fromkeys([c for p in parts for c in p.columns]))
        table_df = (
            pd.concat(parts, ignore_index=True)[columns].astype(object)
            if parts
            else pd.DataFrame(columns=list(REQUIRED_COLUMNS[table]), dtype=object)
        )
        missing_keys = [c for c in KEY_COLUMNS[table] if c not in table_df.columns]
        if parts and missing_keys:
            raise MappingError(
                f"mapping.tables.{table}: no source provides the key column(s) {missing_keys}; map a column "
                f"to each (e.g. columns: {{Id: {missing_keys[0]}}})"
            )
        filled = [c for c in REQUIRED_COLUMNS[table] if c not in table_df.columns]
        for c in filled:
            table_df[c] = np.nan
        if table == "stage_history" and "reason" not in table_df.columns:
            table_df["reason"] = np.nan
        tables[table] = table_df
        report[table] = {"rows": len(table_df), "sources": sources_report}
        if filled:
            report[table]["filled_empty"] = filled
        if not parts:
            report[table]["note"] = "no source in the mapping: empty table"
        log.info("mapping %s: %d rows from %d source(s)", table, len(table_df), len(parts))
    drops = (
        pd.concat([d for d in dropped if len(d)], ignore_index=True)
        if any(len(d) for d in dropped)
        else (pd.DataFrame(columns=list(DROPPED_COLUMNS)))
    )
    return MappingResult(tables=tables, dropped=drops, report=report)


def apply_mapping(
    raw_dir: Path, mapping: MappingParams, max_bad_share: float = 0.05
) -> dict[str, pd.DataFrame]:
    """The contract tables (raw form, ready for ``validate_tables``) that ``mapping`` makes of ``raw_dir``."""
    return map_tables(raw_dir, mapping, max_bad_share).tables


def run_mapping(params: Params) -> dict[str, pd.DataFrame]:
    """Map ``data.source`` (read only) through ``params.mapping``; write ``reports/mapping.json`` and the
    rows left out on purpose to ``interim/quarantine/mapping.parquet``; return the tables for validation."""
    if params.mapping is None:
        raise ValueError("params.mapping is null: data/raw already follows the contract")
    result = map_tables(params.data.source, params.mapping, params.validate_.max_reject_share)
    quarantine_dir = params.data.interim_dir / "quarantine"
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(result.dropped.astype({"source_row": "int64"}), quarantine_dir / "mapping.parquet")
    params.data.reports_dir.mkdir(parents=True, exist_ok=True)
    (params.data.reports_dir / "mapping.json").write_text(json.dumps(result.report, indent=2) + "\n")
    return result.tables
