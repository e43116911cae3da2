"""Stage history from the shapes CRMs actually export: lifecycle-date columns, and leads + deals.

* **Lifecycle dates** (HubSpot and most marketing tools): one row per contact with a date column per
  stage reached ("Became a Marketing Qualified Lead Date", …, "Became a Customer Date"). Each filled
  date becomes one stage row ``(lead_id, stage, ts)`` through ``mapping`` (date column -> stage).
* **Leads + deals**: a deals / opportunities table keyed by the lead id with a status and two dates.
  A deal's creation is the ``created_stage`` (opportunity) at its created date, a won deal is
  ``closed_won`` at its close date. Deals of one lead that overlap in time form one funnel cycle; a deal
  created after every earlier deal closed starts a new cycle (``recycled`` at its creation), so the
  history stays in funnel order. A cycle with a won deal is won at the earliest won close; a cycle whose
  deals were all lost is ``closed_lost`` at the last close; open deals give no outcome yet.

Point in time: only four columns of the deals table are ever read (lead id, status, created, closed).
Deal attributes (amount, owner, deal stage, forecast, …) exist only once a deal exists, so they never
reach the leads table and can never become a lead's feature.

Nothing is dropped here: a value that cannot be used (unparseable date, unknown status, missing id)
still becomes a row, carrying the offending value, which ``leadscore validate`` then quarantines and
counts with its reason. Timestamps are returned as ISO-8601 UTC text (the raw export's type).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from leadscore.config import DealsSource, LifecycleSource
from leadscore.data.flat import parse_dates, text

#: Prefix of a timestamp value that did not parse (validate quarantines it as ``bad_timestamp:<col>``
#: and the quarantine shows the original value after the prefix).
UNPARSEABLE: Final = "unparseable: "
STAGE_COLUMNS: Final = ("lead_id", "stage", "ts", "reason")


class MappingError(ValueError):
    """A mapping does not fit the export: the message names the file, the column and what exists."""


@dataclass(frozen=True)
class DateOptions:
    """How a source's timestamps are read: strftime format (None: per value), day first, time zone."""

    fmt: str | None = None
    dayfirst: bool = False
    tz: str = "UTC"


def require_columns(frame: pd.DataFrame, columns: Iterable[str], file: str, where: str) -> None:
    """Raise :class:`MappingError` naming the file, each missing column, the closest match and the
    columns that exist."""
    existing = [str(c) for c in frame.columns]
    for col in columns:
        if col in existing:
            continue
        lower = {c.lower(): c for c in existing}
        close = difflib.get_close_matches(col.lower(), list(lower), n=1, cutoff=0.5)
        hint = f" Did you mean {lower[close[0]]!r}?" if close else ""
        raise MappingError(
            f"{file}: column {col!r} named in {where} does not exist.{hint} Columns in {file}: {existing}"
        )


def timestamp_text(
    raw: pd.Series, opts: DateOptions, file: str, column: str, max_bad_share: float
) -> tuple[pd.Series, pd.Series]:
    """Return ``(ISO-8601 UTC text, parsed datetime64)`` of a timestamp column.

    Unparseable values keep their text behind :data:`UNPARSEABLE` (so the row is quarantined with the
    value visible); missing values stay missing. Raises :class:`MappingError` with an example when more
    than ``max_bad_share`` of the present values do not parse (a wrong format, not a few typos).
    """
    parsed, bad = parse_dates(raw, opts.fmt, opts.dayfirst, opts.tz)
    values = text(raw)
    present = int(values.notna().sum())
    if bad.any() and bad.sum() > max_bad_share * present:
        example = values[bad].iloc[0]
        how = f"format {opts.fmt!r}" if opts.fmt else "ISO 8601 or any common date format"
        raise MappingError(
            f"{file}: column {column!r} does not parse as a date: {int(bad.sum())} of {present} values fail "
            f"with {how} (e.g. {example!r} at data row {int(np.flatnonzero(bad)[0])}). Set the source's "
            f"date_format (strftime, e.g. '%d.%m.%Y %H:%M') or dayfirst in params.yaml mapping."
        )
    out = parsed.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object)
    out = out.where(parsed.notna(), np.nan)
    out[bad] = UNPARSEABLE + values[bad].astype(str)
    return out, parsed


def _fold(values: Iterable[str]) -> set[str]:
    return {str(v).strip().casefold() for v in values}


def lifecycle_to_stages(
    contacts: pd.DataFrame, src: LifecycleSource, opts: DateOptions, file: str, max_bad_share: float
) -> pd.DataFrame:
    """One stage row per filled lifecycle date: ``lead_id, stage, ts, reason`` (text).

    ``src.stages`` maps date columns to contract stages; ``src.reason_column`` (optional) is copied onto
    ``disqualified`` / ``closed_lost`` rows. Columns not listed are never read.
    """
    needed = [src.id_column, *src.stages, *([src.reason_column] if src.reason_column else [])]
    require_columns(contacts, needed, file, "mapping (lifecycle source)")
    ids = text(contacts[src.id_column])
    reason = text(contacts[src.reason_column]) if src.reason_column else None
    parts = []
    for column, stage in src.stages.items():
        ts, _ = timestamp_text(contacts[column], opts, file, column, max_bad_share)
        filled = ts.notna()
        parts.append(
            pd.DataFrame(
                {
                    "lead_id": ids[filled],
                    "stage": stage,
                    "ts": ts[filled],
                    "reason": reason[filled]
                    if reason is not None and stage in ("disqualified", "closed_lost")
                    else np.nan,
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=list(STAGE_COLUMNS), dtype=object)
    return pd.concat(parts, ignore_index=True)[list(STAGE_COLUMNS)].astype(object)


@dataclass
class _Cycle:
    start: pd.Timestamp
    deals: list[int]
    open_: bool
    end: pd.Timestamp


def _cycles(
    created: np.ndarray, closed: np.ndarray, is_open: np.ndarray, order: Sequence[int]
) -> list[_Cycle]:
    """Group one lead's deals (positions ``order``, by creation time) into funnel cycles."""
    cycles: list[_Cycle] = []
    for i in order:
        c = created[i]
        if cycles and not cycles[-1].open_ and c > cycles[-1].end:
            cycles.append(_Cycle(c, [i], bool(is_open[i]), closed[i]))
        elif cycles:
            cyc = cycles[-1]
            cyc.deals.append(i)
            cyc.open_ = cyc.open_ or bool(is_open[i])
            if not is_open[i] and not pd.isna(closed[i]):
                cyc.end = closed[i] if pd.isna(cyc.end) else max(cyc.end, closed[i])
        else:
            cycles.append(_Cycle(c, [i], bool(is_open[i]), closed[i]))
    return cycles


def deals_to_stages(
    deals: pd.DataFrame, src: DealsSource, opts: DateOptions, file: str, max_bad_share: float
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Stage rows (``lead_id, stage, ts, reason`` as text) from a deals table, and counts for the report.

    Only ``src.lead_id_column``, ``status_column``, ``created_column`` and ``closed_column`` are read
    (with ``all_won`` there is no status: every row is a closed-won deal).
    A status outside won/lost/open values becomes a row whose stage is that status (quarantined by
    validate as ``unknown_stage``, counted); a deal whose created date is missing or unparseable becomes a
    row with that value (quarantined as ``missing_value:ts`` / ``bad_timestamp:ts``).
    """
    closed_column = src.closed_column or src.created_column
    cols = [src.lead_id_column, src.created_column, closed_column]
    cols += [src.status_column] if src.status_column and not src.all_won else []
    require_columns(deals, cols, file, "mapping (deals source)")
    lead = text(deals[src.lead_id_column]).to_numpy(dtype=object)
    if src.all_won:  # a table of won deals (orders, customers): every row is a win, no status to read
        status = pd.Series("won", index=deals.index, dtype=object)
        won = np.ones(len(deals), dtype=bool)
        lost = is_open = np.zeros(len(deals), dtype=bool)
    else:
        status = text(deals[src.status_column])
        folded = status.map(lambda v: v.casefold() if isinstance(v, str) else "")
        won = folded.isin(_fold(src.won_values)).to_numpy()
        lost = folded.isin(_fold(src.lost_values)).to_numpy()
        is_open = folded.isin(_fold(src.open_values)).to_numpy()
    created_txt, created = timestamp_text(
        deals[src.created_column], opts, file, src.created_column, max_bad_share
    )
    closed_txt, closed = timestamp_text(deals[closed_column], opts, file, closed_column, max_bad_share)
    # A deal cannot close before it was created; date-only close dates (midnight) often look like it.
    closed = closed.where(closed.isna() | (closed >= created) | created.isna(), created)
    closed_txt = closed_txt.where(closed.isna(), closed.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))

    rows: list[tuple[object, object, object, object]] = []
    counts = {"deals": len(deals), "won": int(won.sum()), "lost": int(lost.sum()), "open": int(is_open.sum())}
    unknown = ~(won | lost | is_open)
    for i in np.flatnonzero(unknown):
        # The raw status as the stage: validate quarantines it (unknown_stage) with the value visible.
        rows.append(
            (lead[i], status.iloc[i] if isinstance(status.iloc[i], str) else "", created_txt.iloc[i], np.nan)
        )
    counts["unmapped_status"] = int(unknown.sum())
    usable = ~unknown & created.notna().to_numpy() & pd.notna(lead)
    for i in np.flatnonzero(~unknown & ~usable):
        rows.append((lead[i], src.created_stage, created_txt.iloc[i], np.nan))
    counts["unusable"] = int((~unknown & ~usable).sum())

    created_a = created.to_numpy()
    closed_a = closed.to_numpy()
    # A won/lost deal without a usable close date keeps its cycle open and yields a row to quarantine.
    open_a = is_open | pd.isna(closed_a)
    idx = np.flatnonzero(usable)
    frame = pd.DataFrame({"lead": lead[idx], "created": created_a[idx], "pos": idx}).sort_values(
        ["lead", "created", "pos"], kind="stable"
    )
    n_cycles = 0
    for lead_id, grp in frame.groupby("lead", sort=False):
        for k, cyc in enumerate(_cycles(created_a, closed_a, open_a, grp["pos"].tolist())):
            n_cycles += 1
            start = pd.Timestamp(cyc.start).strftime("%Y-%m-%dT%H:%M:%SZ")
            if k:
                rows.append((lead_id, "recycled", start, np.nan))
            rows.append((lead_id, src.created_stage, start, np.nan))
            won_in = [i for i in cyc.deals if won[i]]
            won_closed = [i for i in won_in if not pd.isna(closed_a[i])]
            for i in won_in:
                if pd.isna(closed_a[i]):
                    rows.append((lead_id, "closed_won", closed_txt.iloc[i], np.nan))
            if won_closed:
                first = min(won_closed, key=lambda i: closed_a[i])
                rows.append((lead_id, "closed_won", closed_txt.iloc[first], np.nan))
            elif not won_in and all(lost[i] for i in cyc.deals):
                lost_closed = [i for i in cyc.deals if not pd.isna(closed_a[i])]
                for i in cyc.deals:
                    if pd.isna(closed_a[i]):
                        rows.append((lead_id, "closed_lost", closed_txt.iloc[i], np.nan))
                if len(lost_closed) == len(cyc.deals):
                    last = max(lost_closed, key=lambda i: closed_a[i])
                    rows.append((lead_id, "closed_lost", closed_txt.iloc[last], np.nan))
    counts["cycles"] = n_cycles
    out = pd.DataFrame(rows, columns=list(STAGE_COLUMNS), dtype=object)
    return out, counts
