"""The ``validate`` stage: normalise the raw contract tables, quarantine bad rows, report, and fail loudly.

:func:`validate_tables` is the pure core (frames in, frames out); :func:`run_validate` is the I/O edge
that reads ``data.source`` and writes ``data.interim_dir`` and ``reports/validation.json``.

Checks run in this order and a row gets the reason of the *first* check it fails (so the counts add
up: ``read == accepted + quarantined``):

1. table level: the table and its required columns exist (else :class:`ContractError`);
2. types: ``bad_type:<column>`` (numbers), ``bad_timestamp:<column>``;
3. domain (pandera, :mod:`leadscore.data.schemas`): ``missing_value:<column>`` (keys, created_at),
   ``negative_value:<column>``, ``future_timestamp:<column>``, ``unknown_event_type``, ``unknown_stage``;
4. keys: ``duplicate_key`` (first occurrence in file order is kept);
5. referential: ``unknown_lead`` (events, stage_history), ``event_before_lead_created``,
   ``stage_out_of_order``. A lead whose account is unknown is *kept* with ``account_id`` set to null and
   counted as ``unknown_account_nulled`` in its report's ``reasons`` (a note, not a quarantine).

Normalised types: ids and text are pandas ``str`` (stripped, empty → NaN); ``event_type``, ``stage``,
``email_domain`` and ``domain`` are lower-cased; timestamps are tz-naive UTC ``datetime64[us]`` floored
to whole seconds (an offset or ``Z`` is converted to UTC, naive values are taken as UTC);
``employees`` and ``annual_revenue`` are ``float64`` (NaN when missing: one dtype whatever the data,
no pandas nullable extension types downstream; ``employees`` must still be a whole number).
Columns outside the contract are passed through untouched.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api import types as ptypes

from leadscore.config import Params, ValidateParams
from leadscore.data import validate_events as ev
from leadscore.data.contract import PRIMARY_KEYS, REQUIRED_COLUMNS, STAGE_RANK, TABLES
from leadscore.data.load import read_table, table_sources
from leadscore.data.parquet import write_parquet
from leadscore.data.schemas import COLUMN_KINDS, STR, TIMESTAMP, row_failures, table_schema

log = logging.getLogger(__name__)

#: Events may precede the lead's created_at by this much: CRMs often create the lead record after the
#: first touch (the form fill or page view that created it), and clocks of tools differ.
EVENT_BEFORE_LEAD_TOLERANCE: Final = pd.Timedelta(days=1)

#: Reasons that are notes on kept rows, not quarantines (they do not count towards ``quarantined``).
NOTE_REASONS: Final = frozenset({"unknown_account_nulled"})

#: Name of the quarantine frame's index (the row's 0-based position in the table as read).
SOURCE_ROW: Final = "source_row"


@dataclass(frozen=True)
class TableReport:
    """Row counts of one table; ``reasons`` maps reason -> rows (plus notes, see ``NOTE_REASONS``)."""

    table: str
    read: int
    accepted: int
    quarantined: int
    reasons: dict[str, int]


@dataclass(frozen=True)
class ValidationResult:
    """Accepted (normalised) tables, quarantined rows (raw values as strings), reports, export time."""

    tables: dict[str, pd.DataFrame]
    quarantine: dict[str, pd.DataFrame]
    reports: dict[str, TableReport]
    export_time: pd.Timestamp


class ContractError(ValueError):
    """A table breaks the data contract: missing table/column, or too many bad rows."""


class _Reasons:
    """Row-level reasons of one table, as small integer codes; the first reason given to a row wins."""

    def __init__(self, n: int) -> None:
        self.codes = np.zeros(n, dtype=np.int16)
        self.labels: list[str] = [""]

    def add(self, mask: np.ndarray | pd.Series, reason: str) -> None:
        """Give ``reason`` to the rows in boolean ``mask`` that have no reason yet."""
        mask = np.asarray(mask, dtype=bool) & (self.codes == 0)
        if mask.any():
            if reason not in self.labels:
                self.labels.append(reason)
            self.codes[mask] = self.labels.index(reason)

    def add_rows(self, positions: np.ndarray, reason: str) -> None:
        """Give ``reason`` to the rows at ``positions`` that have no reason yet."""
        mask = np.zeros(len(self.codes), dtype=bool)
        mask[positions] = True
        self.add(mask, reason)

    @property
    def ok(self) -> np.ndarray:
        return self.codes == 0

    def of(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.labels, dtype=object)[self.codes[positions]]

    def counts(self) -> dict[str, int]:
        found = np.bincount(self.codes, minlength=len(self.labels))
        return {self.labels[i]: int(c) for i, c in enumerate(found) if i and c}


# --- types -----------------------------------------------------------------------------------------


def _text(s: pd.Series) -> pd.Series:
    """Return ``s`` as pandas ``str``, stripped, with empty strings as NaN."""
    s = s.astype(STR).str.strip()
    return s.mask(s == "")


def _to_raw(s: pd.Series) -> pd.Series:
    """Strip a text column; non-text Parquet values (lists, structs) are left as they are."""
    if ptypes.is_object_dtype(s) and pd.api.types.infer_dtype(s, skipna=True) not in ("string", "empty"):
        return s
    return _text(s)


def _to_id(s: pd.Series) -> pd.Series:
    """Return ids as ``str``; whole floats (nullable integer ids written as float) lose their ``.0``."""
    if ptypes.is_float_dtype(s) and bool(((s % 1 == 0) | s.isna()).all()):
        s = s.astype("Int64")
    return _text(s)


def _to_timestamp(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Return ``(tz-naive UTC datetime64[us] floored to seconds, mask of unparseable values)``."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        present = s.notna()
        values = s.dt.tz_convert("UTC").dt.tz_localize(None)
    elif ptypes.is_datetime64_dtype(s):
        present = s.notna()
        values = s
    else:
        # Everything else goes through ISO-8601 text: epoch numbers are ambiguous (s? ms?) and rejected.
        text = _text(s)
        present = text.notna()
        values = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601").dt.tz_localize(None)
    bad = (present & values.isna()).to_numpy()
    return values.astype(TIMESTAMP).dt.floor("s"), bad


def _to_number(s: pd.Series, whole: bool) -> tuple[pd.Series, np.ndarray]:
    """Return ``(float64 values, mask of values that are not finite numbers [or not whole])``."""
    if ptypes.is_numeric_dtype(s) and not ptypes.is_bool_dtype(s):
        present = s.notna()
        values = s.astype("float64")
    else:
        text = _text(s)
        present = text.notna()
        values = pd.to_numeric(text, errors="coerce").astype("float64")
    finite = np.isfinite(values.to_numpy())
    bad = present.to_numpy() & ~finite
    if whole:
        bad |= finite & (values.to_numpy() % 1 != 0)
    return values.mask(bad), bad


def _normalise(table: str, raw: pd.DataFrame, reasons: _Reasons) -> pd.DataFrame:
    """Return ``raw`` coerced to the contract types (same rows, RangeIndex); flags type failures.

    Contract columns come first in contract order (so a row's first type failure is deterministic),
    then the columns outside the contract, untouched.
    """
    kinds = COLUMN_KINDS[table]
    out: dict[str, pd.Series] = {}
    for col, kind in kinds.items():
        if col not in raw.columns:
            continue
        s = raw[col]
        if kind == "timestamp":
            out[col], bad = _to_timestamp(s)
            reasons.add(bad, f"bad_timestamp:{col}")
        elif kind in ("count", "amount"):
            out[col], bad = _to_number(s, whole=kind == "count")
            reasons.add(bad, f"bad_type:{col}")
        elif kind == "id":
            out[col] = _to_id(s)
        elif kind == "lower":
            out[col] = _text(s).str.lower()
        elif kind == "text":
            out[col] = _text(s)
        else:
            out[col] = _to_raw(s)
    if table == "leads" and "email" in out:
        # The domain carries the signal (company vs personal mail); fill it from the address when absent.
        derived = out["email"].astype(STR).str.extract(r"@([^@]+)$", expand=False).str.strip().str.lower()
        derived = derived.mask(derived == "")
        out["email_domain"] = out["email_domain"].fillna(derived) if "email_domain" in out else derived
    for col in raw.columns:
        if col not in out:
            out[col] = raw[col]
    return pd.DataFrame(out, index=pd.RangeIndex(len(raw)))


# --- table-level checks -----------------------------------------------------------------------------


def _check_columns(table: str, df: pd.DataFrame) -> None:
    """Raise ContractError when ``df`` lacks a required column of ``table`` or repeats a column name."""
    dupes = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dupes:
        raise ContractError(f"table {table!r} has duplicate column names {dupes}")
    optional = {"email_domain"} if table == "leads" and "email" in df.columns else set()
    missing = [c for c in REQUIRED_COLUMNS[table] if c not in df.columns and c not in optional]
    if missing:
        raise ContractError(
            f"table {table!r} is missing required column(s) {missing}; found columns {list(df.columns)}"
        )


def _export_time(params: ValidateParams) -> pd.Timestamp:
    """Return ``params.export_time`` (UTC, tz-naive) or, when null, the current UTC time, in seconds."""
    if params.export_time is None:
        t = pd.Timestamp.now(tz="UTC")
    else:
        try:
            t = pd.Timestamp(params.export_time)
        except ValueError as err:
            raise ContractError(f"validate.export_time {params.export_time!r} is not a timestamp") from err
        if t.tzinfo is None:
            t = t.tz_localize("UTC")
    return t.tz_convert("UTC").tz_localize(None).as_unit("us").floor("s")


# --- row-level checks -------------------------------------------------------------------------------


def _check_domain(table: str, df: pd.DataFrame, reasons: _Reasons, max_ts: pd.Timestamp) -> None:
    """Flag null keys, negative numbers, future timestamps and unknown vocabulary (pandera, lazy)."""
    present = tuple(c for c in COLUMN_KINDS[table] if c in df.columns)
    rows, columns = row_failures(table_schema(table, present, max_timestamp=max_ts), df)
    if columns:
        raise ContractError(f"table {table!r} fails its schema after normalisation: {'; '.join(columns)}")
    for reason, positions in rows:
        reasons.add_rows(positions, reason)


def _check_keys(table: str, df: pd.DataFrame, reasons: _Reasons) -> None:
    """Flag every repeat of a primary key among the rows still accepted (first one kept)."""
    ok = reasons.ok
    dup = np.zeros(len(df), dtype=bool)
    dup[ok] = df.loc[ok, list(PRIMARY_KEYS[table])].duplicated(keep="first").to_numpy()
    reasons.add(dup, "duplicate_key")


def _lead_positions(lead_ids: pd.Series, leads: pd.DataFrame) -> np.ndarray:
    """Return, for each id in ``lead_ids``, its row in ``leads`` (accepted, unique ids), or -1."""
    return pd.Index(leads["lead_id"]).get_indexer(lead_ids)


def stage_out_of_order(stages: pd.DataFrame) -> pd.Series:
    """Return a boolean Series (``stages``' index): rows whose stage moves the funnel backwards.

    Per lead in time order, ``recycled`` starts a new cycle; within a cycle a ranked stage
    (``STAGE_RANK``) must not be lower than the highest rank reached at an *earlier* timestamp. Rows
    with the same timestamp are simultaneous (CRMs bulk-update stages within a second) and never
    conflict with each other; unranked stages (``recycled``, ``disqualified``) may follow anything.
    """
    s = stages[["lead_id", "stage", "ts"]].sort_values(["lead_id", "ts"], kind="stable")
    rank = s["stage"].map(STAGE_RANK).astype("float64")
    cycle = (s["stage"] == "recycled").groupby(s["lead_id"]).cumsum()
    by_cycle = [s["lead_id"], cycle]
    reached = rank.groupby(by_cycle).cummax().groupby(by_cycle).ffill()
    before = reached.groupby(by_cycle).shift(1).fillna(0.0)
    # the highest rank reached strictly before this row's timestamp: the value at the first tied row
    before = before.groupby([s["lead_id"], cycle, s["ts"]]).transform("first")
    return (rank < before).reindex(stages.index, fill_value=False)


def _check_stages(stages: pd.DataFrame, leads: pd.DataFrame, reasons: _Reasons) -> None:
    """Flag stage rows of unknown leads, then stage rows out of funnel order."""
    reasons.add(_lead_positions(stages["lead_id"], leads) < 0, "unknown_lead")
    ok = reasons.ok
    bad = np.zeros(len(stages), dtype=bool)
    bad[ok] = stage_out_of_order(stages.loc[ok]).to_numpy()
    reasons.add(bad, "stage_out_of_order")


# --- the core -------------------------------------------------------------------------------------


def _quarantine(raw: pd.DataFrame, reasons: _Reasons) -> pd.DataFrame:
    """Return the rejected rows: index ``source_row``, ``reason``, then the raw values as strings.

    An original column called ``reason`` (stage_history's) is kept as ``raw_reason``.
    """
    positions = np.flatnonzero(~reasons.ok)
    rows = raw.iloc[positions].astype(STR).rename(columns=lambda c: f"raw_{c}" if c == "reason" else c)
    rows.insert(0, "reason", pd.Series(reasons.of(positions), index=rows.index, dtype=STR))
    rows.index = pd.Index(positions, name=SOURCE_ROW)
    return rows


def validate_tables(
    raw: dict[str, pd.DataFrame],
    params: ValidateParams,
    events: tuple[ibis.BaseBackend, ibis.Table] | None = None,
) -> ValidationResult:
    """Validate the raw contract tables and return accepted/quarantined rows and per-table reports.

    ``raw``: table name -> frame as read (CSV strings or typed Parquet). ``events``: instead of
    ``raw["events"]``, an engine connection and the events table in it (with ``_row``, see
    ``validate_events.numbered_copy``); then ``tables["events"]`` is the engine expression of the
    checked events, for the caller to write. Raises ContractError for a missing table or column.
    Does not apply ``max_reject_share`` (see :func:`check_reject_share`).
    """
    have = set(raw) | ({"events"} if events is not None else set())
    missing = [t for t in TABLES if t not in have]
    if missing:
        raise ContractError(f"missing table(s) {missing}; got {sorted(have)}")
    for table in TABLES:
        if table == "events" and events is not None:
            _check_columns(table, pd.DataFrame(columns=[c for c in events[1].columns if c != ev.ROW]))
        else:
            _check_columns(table, raw[table])
    export_time = _export_time(params)
    max_ts = export_time + pd.Timedelta(hours=params.future_tolerance_hours)

    small = tuple(t for t in TABLES if t != "events")
    reasons = {t: _Reasons(len(raw[t])) for t in small}
    df = {t: _normalise(t, raw[t].reset_index(drop=True), reasons[t]) for t in small}
    for t in small:
        _check_domain(t, df[t], reasons[t], max_ts)
        _check_keys(t, df[t], reasons[t])

    notes: dict[str, dict[str, int]] = {t: {} for t in TABLES}
    accounts = df["accounts"].loc[reasons["accounts"].ok, "account_id"]
    leads = df["leads"]
    orphan = (
        reasons["leads"].ok & leads["account_id"].notna() & ~leads["account_id"].isin(accounts)
    ).to_numpy()
    if orphan.any():
        leads.loc[orphan, "account_id"] = np.nan
        notes["leads"]["unknown_account_nulled"] = int(orphan.sum())
    accepted_leads = leads.loc[reasons["leads"].ok, ["lead_id", "created_at"]].reset_index(drop=True)
    _check_stages(df["stage_history"], accepted_leads, reasons["stage_history"])

    tables, quarantine, reports = {}, {}, {}
    for t in small:
        ok = reasons[t].ok
        tables[t] = df[t] if ok.all() else df[t].loc[ok].reset_index(drop=True)
        quarantine[t] = _quarantine(raw[t].reset_index(drop=True), reasons[t])
        reports[t] = _report(t, len(ok), reasons[t].counts() | notes[t])
    if events is None:
        # In-memory frames (tests, notebooks): the same engine expression, on an in-memory DuckDB.
        con = ibis.duckdb.connect()
        frame = raw["events"].reset_index(drop=True)
        arrow = pa.Table.from_pandas(frame.assign(**{ev.ROW: np.arange(len(frame))}), preserve_index=False)
        # an empty or all-missing column has no type: it is text, as a CSV export would give it
        arrow = arrow.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                                      for f in arrow.schema]))
        events = con.create_table("events_raw", arrow, temp=True)
        checked = _check_events(con, events, accepted_leads, max_ts)
        tables["events"] = _events_frame(ev.accepted(checked).to_pyarrow().to_pandas())
    else:
        con, events = events
        checked = _check_events(con, events, accepted_leads, max_ts)
        # The accepted events stay in the engine: the caller writes them (``run_validate``).
        tables["events"] = checked
    counts = ev.reason_counts(checked)
    quarantine["events"] = _events_quarantine(ev.rejected_rows(events, checked))
    reports["events"] = _report("events", int(events.count().to_pyarrow().as_py()), counts)
    reports = {t: reports[t] for t in TABLES}
    return ValidationResult(tables=tables, quarantine=quarantine, reports=reports, export_time=export_time)


def _check_events(
    con: ibis.BaseBackend, events: ibis.Table, accepted_leads: pd.DataFrame, max_ts: pd.Timestamp
) -> ibis.Table:
    """The events' reasons, computed in the engine against the accepted leads (uploaded once)."""
    # One row per lead: small next to the events; the backend registers it with each query.
    return ev.checked(events, ibis.memtable(accepted_leads), max_ts, EVENT_BEFORE_LEAD_TOLERANCE)


def _events_frame(accepted: pd.DataFrame) -> pd.DataFrame:
    """Accepted events in the pipeline's pandas types (text as ``str``, timestamps in microseconds)."""
    kinds = COLUMN_KINDS["events"]
    for col, kind in kinds.items():
        if col in accepted.columns and kind in ("id", "text", "lower"):
            accepted[col] = accepted[col].astype(STR)
        elif col in accepted.columns and kind == "timestamp":
            accepted[col] = accepted[col].astype(TIMESTAMP)
    return accepted


def _events_quarantine(rows: pd.DataFrame) -> pd.DataFrame:
    """Rejected events like the other tables' quarantine: index source_row, reason, raw values as text."""
    reason = rows.pop(ev.REASON).astype(STR)
    index = pd.Index(rows.pop(ev.ROW).to_numpy(), name=SOURCE_ROW)
    out = rows.astype(STR)
    out.insert(0, "reason", reason.to_numpy())
    out["reason"] = out["reason"].astype(STR)
    out.index = index
    return out


def _report(table: str, read: int, counts: dict[str, int]) -> TableReport:
    quarantined = sum(n for r, n in counts.items() if r not in NOTE_REASONS)
    report = TableReport(
        table=table,
        read=read,
        accepted=read - quarantined,
        quarantined=quarantined,
        reasons=dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
    )
    log.info("%s: read %d, accepted %d, quarantined %d %s", table, read, report.accepted, quarantined, counts)
    return report


# --- the I/O edge ----------------------------------------------------------------------------------


def _reason_columns(table: str, reason: str) -> tuple[str, ...]:
    """Return the columns that show why a row got ``reason`` (for error messages)."""
    if ":" in reason:
        return (reason.split(":", 1)[1],)
    return {
        "unknown_event_type": ("event_type",),
        "unknown_stage": ("stage",),
        "duplicate_key": PRIMARY_KEYS[table],
        "unknown_lead": ("lead_id",),
        "event_before_lead_created": ("lead_id", "ts"),
        "stage_out_of_order": ("lead_id", "stage", "ts"),
    }.get(reason, ())


def _example(table: str, quarantine: pd.DataFrame, reason: str) -> str:
    """Return ``source_row N: col='value', ...`` for the first quarantined row with ``reason``."""
    rows = quarantine[quarantine["reason"] == reason]
    if rows.empty:
        return ""
    row = rows.iloc[0]
    cols = [c for c in _reason_columns(table, reason) if c in rows.columns]
    values = ", ".join(f"{c}={row[c]!r}" for c in cols)
    return f" (e.g. {SOURCE_ROW} {rows.index[0]}: {values})"


def check_reject_share(result: ValidationResult, max_share: float, quarantine_dir: Path) -> None:
    """Raise ContractError listing every table whose quarantined share exceeds ``max_share``."""
    problems = []
    for table, rep in result.reports.items():
        share = rep.quarantined / rep.read if rep.read else 0.0
        if share <= max_share:
            continue
        top = [r for r in rep.reasons if r not in NOTE_REASONS][:3]
        listed = "; ".join(
            f"{r} × {rep.reasons[r]}{_example(table, result.quarantine[table], r)}" for r in top
        )
        problems.append(
            f"table {table!r}: {rep.quarantined} of {rep.read} rows quarantined ({share:.2%}), more than "
            f"validate.max_reject_share = {max_share:.2%}. Top reasons: {listed}. "
            f"Rows and reasons: {Path(quarantine_dir) / f'{table}.parquet'}"
        )
    if problems:
        raise ContractError("\n".join(problems))


def _validate_in_engine(params: Params) -> ValidationResult:
    """Contract tables from ``data.source`` (read only): per-lead tables in pandas, events in the engine.

    Writes the accepted tables to ``interim_dir``; the accepted events are written by the engine
    (``result.tables["events"]`` is their engine expression, valid only inside this call).
    """
    from leadscore.engine import session
    from leadscore.engine import write_parquet as write_in_engine

    data = params.data
    raw = {t: read_table(data.source, t) for t in TABLES if t != "events"}
    staging = ev.numbered_copy(
        table_sources(data.source, "events"),
        data.build_dir / "engine-tmp" / f"events-{uuid.uuid4().hex[:12]}.parquet",
        params.engine.batch_rows,
    )
    try:
        with session(params) as con:
            events = con.read_parquet(str(staging))
            result = validate_tables(raw, params.validate_, events=(con, events))
            for t in TABLES:
                path = data.interim_dir / f"{t}.parquet"
                if t != "events":
                    write_parquet(result.tables[t], path)
                    continue
                accepted = ev.accepted(result.tables[t])
                schema = None if con.name == "duckdb" else accepted.schema().to_pyarrow()
                write_in_engine(con, accepted, path, params.engine.batch_rows, schema=schema)
    finally:
        staging.unlink(missing_ok=True)
    return result


def run_validate(params: Params) -> ValidationResult:
    """Read ``data.source`` (the demo or the user's export; read only), validate, write accepted tables,
    quarantine and report, check the bound.

    Writes ``interim_dir/{table}.parquet``, ``interim_dir/quarantine/{table}.parquet`` and
    ``reports_dir/validation.json`` (always, so a failure can be inspected), then raises ContractError
    when a table's quarantined share exceeds ``validate.max_reject_share``. ``raw_dir/_truth/`` (the demo
    generator's oracle) is not a contract table and is neither read nor moved.
    """
    data = params.data
    quarantine_dir = data.interim_dir / "quarantine"
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    data.reports_dir.mkdir(parents=True, exist_ok=True)
    if params.mapping is not None:  # a CRM export: its column mapping makes the contract tables
        from leadscore.data.mapping import run_mapping

        result = validate_tables(run_mapping(params), params.validate_)
        for t in TABLES:
            write_parquet(result.tables[t], data.interim_dir / f"{t}.parquet")
    else:
        # The mapping report is a DVC metric of this stage, so it exists in contract mode too.
        (data.reports_dir / "mapping.json").write_text(json.dumps({"mode": "contract"}) + "\n")
        result = _validate_in_engine(params)
    for t in TABLES:
        write_parquet(result.quarantine[t], quarantine_dir / f"{t}.parquet", index=True)
    report = {
        t: {"read": r.read, "accepted": r.accepted, "quarantined": r.quarantined, "reasons": r.reasons}
        for t, r in result.reports.items()
    }
    (data.reports_dir / "validation.json").write_text(json.dumps(report, indent=2) + "\n")
    check_reject_share(result, params.validate_.max_reject_share, quarantine_dir)
    return result


if __name__ == "__main__":  # python -m leadscore.data.validate (reads ./params.yaml)
    from leadscore.config import load_params

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_validate(load_params())
