"""Cleaning a flat export (one row per lead, an outcome column, any attribute columns) for ``train-table``.

Real flat exports are messy; this module turns one into typed columns without losing a row silently:

* column names with spaces and capitals become snake_case (``"Lead Source"`` -> ``lead_source``); the map
  original -> normalised is kept for the reports and for scoring with the export's own names;
* placeholders (``flat.placeholders``: "Select", "N/A", "-", "", "null", ...) are missing values;
* numbers stored as text ("1,200", "$5k", "15%", "(300)") are parsed; dates are parsed per value, so one
  column may mix "2024-03-05", "03/05/2024" and "5 Mar 2024";
* the outcome (0/1, yes/no, true/false, or a status with ``flat.positive_values``) becomes 0/1; any
  other value stops the run with the file, the column and examples;
* rows without an outcome, exact duplicate rows and rows whose split date does not parse are quarantined
  with their reason (:class:`Prepared.quarantine`), counted, and the run stops when their share passes
  ``flat.max_reject_share`` or nothing is left;
* ID-like columns (named like an id, or unique per row), identity columns (e-mail, phone, names),
  free text (too many distinct values) and constant columns are dropped, with the reason in the report.

Everything that depends on the outcome or on the training rows (category vocabularies, the leakage
guard's choice) is fitted later on the training slice only (``leadscore.models.flat``).
:func:`transform` applies a fitted :class:`FlatSpec` to raw rows, for training and scoring alike.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from leadscore.config import FlatParams

Kind = Literal["numeric", "boolean", "date", "category"]

TRUE_VALUES: Final = frozenset({"1", "1.0", "yes", "y", "true", "t"})
FALSE_VALUES: Final = frozenset({"0", "0.0", "no", "n", "false", "f"})
ID_TOKENS: Final = frozenset({"id", "uuid", "guid", "ids"})
OTHER: Final = "other"


class FlatDataError(ValueError):
    """A flat export cannot be used as it is; the message names the file, the column and examples.

    ``quarantine``: the rows set aside so far (the CLI writes them before it reports the error, so the
    quarantine file the message names exists)."""

    def __init__(self, message: str, quarantine: pd.DataFrame | None = None) -> None:
        super().__init__(message)
        self.quarantine = quarantine


# --- names ---------------------------------------------------------------------------------------------


def snake_case(name: str) -> str:
    """``"Lead Source"`` / ``"LeadSource"`` / ``"# of Employees"`` -> ``lead_source`` / ``of_employees``."""
    text = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z0-9])(?=[A-Z][a-z])", "_", str(name).strip())
    text = re.sub(r"[^\w]+", "_", text.lower(), flags=re.UNICODE).strip("_")
    text = re.sub(r"_+", "_", text)
    if text and text[0].isdigit():
        text = f"c_{text}"
    return text


def normalise_names(columns: Iterable[str]) -> dict[str, str]:
    """Original column name -> unique snake_case name (``_2``, ``_3`` on collisions, in column order)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for i, col in enumerate(columns):
        base = snake_case(col) or f"column_{i}"
        name, k = base, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        out[str(col)] = name
    return out


def suggest(name: str, candidates: Sequence[str]) -> str:
    """`` Did you mean 'X'?`` for the closest candidate (case-insensitive), or an empty string."""
    lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
    return f" Did you mean {lower[close[0]]!r}?" if close else ""


def resolve_column(name: str, names: Mapping[str, str], where: str, file: str) -> str:
    """The normalised name of ``name`` given as an original or a normalised column name, or raise."""
    if name in names:
        return names[name]
    if name in names.values():
        return name
    if snake_case(name) in names.values():
        return snake_case(name)
    raise FlatDataError(
        f"{file}: {where} names column {name!r}, which is not in the export.{suggest(name, list(names))} "
        f"Columns: {list(names)}"
    )


# --- values --------------------------------------------------------------------------------------------


def text(s: pd.Series) -> pd.Series:
    """``s`` as stripped object strings with NaN for missing / empty values."""
    out = s.astype(object).where(s.notna(), None)
    out = out.map(lambda v: None if v is None else str(v).strip())
    return out.where(out.notna() & (out != ""), np.nan)


def blank_placeholders(
    frame: pd.DataFrame, placeholders: Iterable[str]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Placeholder values (case-insensitive, stripped) -> NaN; return the frame and counts per column."""
    marks = {p.strip().casefold() for p in placeholders}
    out, counts = {}, {}
    for col in frame.columns:
        values = text(frame[col])
        is_ph = values.map(lambda v: isinstance(v, str) and v.casefold() in marks).astype(bool)
        counts[col] = int(is_ph.sum())
        out[col] = values.mask(is_ph)
    return pd.DataFrame(out, index=frame.index), counts


_NUMBER = re.compile(
    r"^(?P<open>\()?\s*(?P<sign>[-+−])?\s*(?:[$€£¥]|usd|eur|gbp|chf)?\s*"
    r"(?P<num>\d[\d,.'’ ]*|[.,]\d+)\s*(?P<mult>k|m|mm|mn|b|bn)?\s*(?:[$€£¥]|usd|eur|gbp|chf)?\s*"
    r"(?P<pct>%)?\s*(?P<close>\))?$",
    re.IGNORECASE,
)
_MULT: Final = {"k": 1e3, "m": 1e6, "mm": 1e6, "mn": 1e6, "b": 1e9, "bn": 1e9}


def _digits(num: str) -> float | None:
    """Parse the digit part with thousands separators (",", ".", "'", " ") and one decimal mark."""
    num = re.sub(r"['’ ]", "", num)
    if "," in num and "." in num:
        dec = "," if num.rfind(",") > num.rfind(".") else "."
        num = num.replace("." if dec == "," else ",", "").replace(",", ".")
    elif num.count(",") >= 1:
        groups = num.split(",")
        if all(len(g) == 3 for g in groups[1:]) and groups[0]:
            num = num.replace(",", "")  # 1,200 / 1,200,000
        elif num.count(",") == 1:
            num = num.replace(",", ".")  # 3,5 (decimal comma)
        else:
            return None
    elif num.count(".") > 1:
        groups = num.split(".")
        if not all(len(g) == 3 for g in groups[1:]):
            return None
        num = num.replace(".", "")  # 1.200.000
    try:
        return float(num)
    except ValueError:
        return None


def parse_number(value: str) -> float | None:
    """One text value as a number ("1,200", "$5k", "15%" -> 0.15, "(300)" -> -300), or None."""
    m = _NUMBER.match(value.strip())
    if m is None or bool(m["open"]) != bool(m["close"]):
        return None
    x = _digits(m["num"])
    if x is None:
        return None
    if m["mult"]:
        x *= _MULT[m["mult"].lower()]
    if m["pct"]:
        x /= 100.0
    if m["open"] or m["sign"] in ("-", "−"):
        x = -x
    return x


def parse_numbers(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Return ``(float64 values, mask of present values that are not numbers)``; numbers pass through."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.astype("float64"), np.zeros(len(s), dtype=bool)
    values = text(s)
    lookup = {u: parse_number(u) for u in pd.unique(values.dropna())}
    parsed = values.map(lambda v: lookup.get(v) if isinstance(v, str) else None)
    out = pd.to_numeric(parsed, errors="coerce").astype("float64")
    bad = (values.notna() & out.isna()).to_numpy()
    return out, bad


_AWARE = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|UTC|GMT|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
_EPOCH = re.compile(r"^\d{10}(?:\d{3})?$")


def _parse_group(values: pd.Series, fmt: str | None, dayfirst: bool, utc: bool) -> pd.Series:
    """Parse text timestamps: ``fmt`` if given, else ISO 8601 first and every other value on its own."""
    if fmt:
        return pd.to_datetime(values, format=fmt, errors="coerce", utc=utc)
    out = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=utc)
    rest = values[out.isna() & values.notna()]
    if len(rest):
        uniq = pd.Series(pd.unique(rest))
        parsed = pd.Series(
            [pd.to_datetime(v, format="mixed", dayfirst=dayfirst, errors="coerce", utc=utc) for v in uniq],
            index=uniq.to_numpy(),
            dtype=out.dtype,
        )
        out = out.copy()
        out.loc[rest.index] = rest.map(parsed).to_numpy()
    return out


def parse_dates(
    s: pd.Series, fmt: str | None = None, dayfirst: bool = False, tz: str = "UTC"
) -> tuple[pd.Series, np.ndarray]:
    """Return ``(tz-naive UTC datetime64[us], mask of present values that do not parse)``.

    Values with an offset ("…Z", "…+02:00") are converted to UTC; values without one are taken in the
    time zone ``tz`` (the CRM's). ``fmt`` (strftime) parses every value with one format; without it each
    value is parsed on its own (ISO 8601, "03/05/2024", "5 Mar 2024 14:00", epoch seconds or ms).
    """
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        out = s.dt.tz_convert("UTC").dt.tz_localize(None)
        return out.astype("datetime64[us]"), np.zeros(len(s), dtype=bool)
    if pd.api.types.is_datetime64_dtype(s):
        values = s
        if tz != "UTC":
            values = values.dt.tz_localize(tz, ambiguous=np.ones(len(s), bool), nonexistent="shift_forward")
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return values.astype("datetime64[us]"), np.zeros(len(s), dtype=bool)
    values = text(s)
    present = values.notna()
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us]")
    is_epoch = values.str.match(_EPOCH.pattern, na=False).astype(bool) if fmt is None else present & False
    aware = values.str.contains(_AWARE.pattern, na=False, regex=True).astype(bool) & ~is_epoch
    naive = present & ~aware & ~is_epoch
    if is_epoch.any():
        num = values[is_epoch].astype("int64")
        unit_ms = values[is_epoch].str.len() == 13
        secs = np.where(unit_ms, num // 1000, num)
        out.loc[is_epoch] = pd.to_datetime(secs, unit="s").astype("datetime64[us]")
    if aware.any():
        group = values[aware].str.replace(r"\s*(UTC|GMT)$", "Z", regex=True, case=False)
        parsed = _parse_group(group, fmt, dayfirst, utc=True)
        out.loc[aware] = parsed.dt.tz_localize(None).astype("datetime64[us]")
    if naive.any():
        parsed = _parse_group(values[naive], fmt, dayfirst, utc=False)
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):  # a format with %z
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        elif tz != "UTC":
            # DST: an ambiguous wall time is read as summer time, a nonexistent one moves forward.
            parsed = parsed.dt.tz_localize(
                tz, ambiguous=np.ones(len(parsed), bool), nonexistent="shift_forward"
            )
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        out.loc[naive] = parsed.astype("datetime64[us]")
    bad = (present & out.isna()).to_numpy()
    return out, bad


@dataclass(frozen=True)
class Outcome:
    """The outcome per row: ``y`` 1.0 / 0.0 (NaN when missing or open), the open rows (neither a
    positive nor a negative value), and which values were read as negative (for the report)."""

    y: pd.Series
    open: np.ndarray
    negatives: dict[str, int]
    opens: dict[str, int]


def parse_outcome(
    values: pd.Series, positive: Sequence[str], negative: Sequence[str], file: str, column: str
) -> Outcome:
    """Read the outcome column, or raise :class:`FlatDataError` (file, column, example values).

    With ``positive`` empty the column must be boolean-like (1/0, yes/no, true/false, y/n). With only
    ``positive`` set, every other value is negative (and listed in ``negatives`` so nothing is silent).
    With both set, any other value (an open deal, "Working") is *open*: not an example, quarantined.
    """
    raw = text(values)
    folded = raw.map(lambda v: v.casefold() if isinstance(v, str) else v)
    pos = {p.strip().casefold() for p in positive}
    neg = {p.strip().casefold() for p in negative}
    present = folded.notna().to_numpy()
    open_ = np.zeros(len(values), dtype=bool)
    if pos:
        is_pos = folded.isin(pos).to_numpy()
        is_neg = (folded.isin(neg).to_numpy() if neg else ~is_pos) & present
        open_ = present & ~is_pos & ~is_neg
        y = pd.Series(np.where(is_pos, 1.0, np.where(is_neg, 0.0, np.nan)), index=values.index)
    else:
        if neg:
            raise FlatDataError(
                f"{file}: --negative is given for outcome column {column!r} but no --positive value"
            )
        known = TRUE_VALUES | FALSE_VALUES
        unexpected = folded.notna() & ~folded.isin(known)
        if unexpected.any():
            counts = raw[unexpected].value_counts().head(5)
            listed = ", ".join(f"{v!r} ×{n}" for v, n in counts.items())
            raise FlatDataError(
                f"{file}: outcome column {column!r} is not yes/no: {listed} (first at data row "
                f"{int(np.flatnonzero(unexpected.to_numpy())[0])}); say which values mean converted with "
                '--positive (e.g. --positive "Closed Won"), and --negative for the lost ones'
            )
        y = folded.map(lambda v: np.nan if not isinstance(v, str) else 1.0 if v in TRUE_VALUES else 0.0)
        is_neg = (y == 0.0).to_numpy()
    if pos and not (folded.isin(pos)).any():
        counts = raw.value_counts().head(5)
        raise FlatDataError(
            f"{file}: no row of outcome column {column!r} has a --positive value {sorted(positive)}; "
            f"its values are e.g. {', '.join(repr(v) for v in counts.index)}"
        )
    negatives = raw[is_neg].value_counts().to_dict() if pos else {}
    opens = raw[open_].value_counts().to_dict()
    return Outcome(y.astype("float64"), open_, {str(k): int(v) for k, v in negatives.items()}, opens)


# --- the cleaning spec ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnSpec:
    """One model input: its normalised name, the export's header, its kind and (category) vocabulary."""

    name: str
    source: str
    kind: Kind
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class FlatSpec:
    """Everything needed to turn raw export rows into the model matrix (stored in the bundle as JSON)."""

    target: str
    columns: tuple[ColumnSpec, ...]
    names: dict[str, str]  # original header -> normalised name (all columns of the export)
    placeholders: tuple[str, ...]
    date_column: str | None = None  # normalised; date features are days relative to it
    dayfirst: bool = False
    rules: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c.kind == "category"]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["columns"] = [asdict(c) for c in self.columns]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FlatSpec:
        cols = tuple(
            ColumnSpec(c["name"], c["source"], c["kind"], tuple(c.get("categories", ())))
            for c in data["columns"]
        )
        return cls(
            target=data["target"],
            columns=cols,
            names=dict(data["names"]),
            placeholders=tuple(data["placeholders"]),
            date_column=data.get("date_column"),
            dayfirst=bool(data.get("dayfirst", False)),
            rules=dict(data.get("rules", {})),
        )


CLEANING_RULES: Final = {
    "names": "snake_case; the export's headers are accepted too",
    "placeholders": "values equal to a placeholder (case-insensitive, stripped) are missing",
    "numeric": "thousands separators, currency symbols, k/m/b suffixes, percent (15% -> 0.15), (x) = -x",
    "boolean": "1/yes/true/y/t -> 1, 0/no/false/n/f -> 0",
    "date": "parsed per value; feature = days from the split date column (or since 1970 without one)",
    "category": "stripped, case-folded; values outside the vocabulary -> 'other'; missing stays missing",
}


def category_values(s: pd.Series) -> pd.Series:
    """Category text as compared everywhere: stripped, inner blanks collapsed, case-folded."""
    return text(s).map(lambda v: re.sub(r"\s+", " ", v).casefold() if isinstance(v, str) else v)


def _date_reference(frame: pd.DataFrame, spec: FlatSpec) -> pd.Series | None:
    if spec.date_column is None:
        return None
    if spec.date_column in frame.columns:
        ref, _ = parse_dates(frame[spec.date_column], dayfirst=spec.dayfirst)
    else:
        ref = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us]")
    # A row scored without its date is scored as of now (a new lead).
    return ref.fillna(pd.Timestamp.now(tz="UTC").tz_localize(None).as_unit("us"))


def column_values(s: pd.Series, col: ColumnSpec, ref: pd.Series | None, dayfirst: bool) -> np.ndarray:
    """Model values of one cleaned column (placeholders already missing): float64, codes for categories."""
    if col.kind == "numeric":
        return parse_numbers(s)[0].to_numpy(dtype=np.float64)
    if col.kind == "boolean":
        folded = text(s).map(lambda v: v.casefold() if isinstance(v, str) else v)
        return folded.map(
            lambda v: 1.0 if v in TRUE_VALUES else 0.0 if v in FALSE_VALUES else np.nan
        ).to_numpy(dtype=np.float64)
    if col.kind == "date":
        dates, _ = parse_dates(s, dayfirst=dayfirst)
        base = ref if ref is not None else pd.Series(pd.Timestamp("1970-01-01"), index=s.index)
        return ((dates - base).dt.total_seconds() / 86400.0).to_numpy(dtype=np.float64)
    lookup = {v: float(i) for i, v in enumerate(col.categories)}
    other = lookup.get(OTHER, np.nan)
    values = category_values(s)
    return values.map(lambda v: np.nan if not isinstance(v, str) else lookup.get(v, other)).to_numpy(
        dtype=np.float64
    )


def rename_to_spec(frame: pd.DataFrame, spec: FlatSpec) -> pd.DataFrame:
    """Columns renamed to their normalised names (the export's headers or normalised names both work)."""
    known = set(spec.names.values())
    target = [c if c in known else spec.names.get(str(c).strip(), snake_case(c)) for c in frame.columns]
    if len(set(target)) == len(target):
        return frame.set_axis(target, axis=1)
    # Rows that name a column both ways ("Lead Source" and "lead_source"): the first non-missing value wins.
    out = {}
    for name in dict.fromkeys(target):
        parts = [frame.iloc[:, i] for i, t in enumerate(target) if t == name]
        col = parts[0]
        for other in parts[1:]:
            col = col.where(col.notna(), other)
        out[name] = col
    return pd.DataFrame(out, index=frame.index)


def transform(frame: pd.DataFrame, spec: FlatSpec) -> np.ndarray:
    """The (n, n_features) float64 model matrix of raw rows (original or normalised column names).

    Applies exactly the training cleaning: placeholders -> missing, numbers / booleans / dates parsed,
    categories coded by the vocabulary ('other' for unknown values). A column absent from ``frame`` is
    all missing (LightGBM routes missing values), so a partial payload still scores.
    """
    frame = rename_to_spec(frame, spec)
    needed = [c.name for c in spec.columns] + ([spec.date_column] if spec.date_column else [])
    present = [c for c in dict.fromkeys(needed) if c in frame.columns]
    clean, _ = blank_placeholders(frame[present], spec.placeholders)
    ref = _date_reference(clean, spec)
    out = np.full((len(frame), len(spec.columns)), np.nan)
    for j, col in enumerate(spec.columns):
        if col.name in clean.columns:
            out[:, j] = column_values(clean[col.name], col, ref, spec.dayfirst)
    return out


# --- preparing an export ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """A cleaned export: kept rows (normalised names, placeholders missing), outcome, dates, decisions.

    ``frame``: candidate feature columns only (text, as cleaned); ``kinds``: their inferred kinds;
    ``y``: 0/1 per kept row; ``dates``: the split date per kept row (or None); ``quarantine``: dropped
    rows with ``source_row`` (0-based data row of the export), ``reason`` and the raw values;
    ``report``: per column what happened (for ``cleaning.json``).
    """

    frame: pd.DataFrame
    kinds: dict[str, Kind]
    y: np.ndarray
    dates: pd.Series | None
    names: dict[str, str]
    target: str
    date_column: str | None
    quarantine: pd.DataFrame
    report: dict[str, Any]
    warnings: list[str]


def read_export(path: Path) -> pd.DataFrame:
    """Read a CSV (every value as text; only empty fields are missing) or Parquet export, or raise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"export not found: {path}")
    name = path.name.lower()
    if name.endswith(".parquet"):
        frame = pd.read_parquet(path)
    elif name.endswith((".csv", ".csv.gz", ".txt", ".tsv")):
        sep = "\t" if name.endswith(".tsv") else None
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            sep=sep,
            engine="python",
            encoding="utf-8-sig",
        )
    else:
        raise FlatDataError(f"{path}: unknown file type; give a .csv, .csv.gz, .tsv or .parquet export")
    if frame.empty:
        raise FlatDataError(f"{path}: the export has no data rows")
    return frame


def _quarantine_rows(raw: pd.DataFrame, mask: np.ndarray, reason: str) -> pd.DataFrame:
    rows = raw.loc[mask].astype(str).copy()
    rows.insert(0, "reason", reason)
    rows.insert(0, "source_row", np.flatnonzero(mask))
    return rows.reset_index(drop=True)


_DATE_LIKE: Final = (
    r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|[a-z]{3,9}\.? \d{1,2},? \d{4}"
    r"|\d{1,2}[ -][a-z]{3,9}\.?[ -]\d{2,4}|^\d{10}(?:\d{3})?$"
)


def _looks_like_dates(values: pd.Series) -> bool:
    sample = values.dropna().head(200)
    return bool(len(sample)) and bool(sample.str.contains(_DATE_LIKE, case=False).mean() > 0.8)


def infer_kind(values: pd.Series, params: FlatParams) -> tuple[Kind, dict[str, Any]]:
    """Kind of one cleaned text column (placeholders already missing) and evidence for the report."""
    present = values.dropna()
    folded = present.map(str.casefold)
    if len(present) and folded.isin(TRUE_VALUES | FALSE_VALUES).all() and folded.nunique() <= 2:
        return "boolean", {}
    _, bad = parse_numbers(present)
    share = 1.0 - bad.mean() if len(present) else 0.0
    if len(present) and share >= params.numeric_share:
        info: dict[str, Any] = {}
        if bad.any():
            info["unparseable"] = int(bad.sum())
            info["example"] = str(present[bad].iloc[0])
        return "numeric", info
    if _looks_like_dates(present):
        _, dbad = parse_dates(present, dayfirst=params.dayfirst)
        if 1.0 - dbad.mean() >= params.date_share:
            info = {}
            if dbad.any():
                info["unparseable"] = int(dbad.sum())
                info["example"] = str(present[dbad].iloc[0])
            return "date", info
    return "category", {}


_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
_UUID: Final = re.compile(
    r"^\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$"  # UUID / GUID
    r"|^(0x)?[0-9a-f]{24,128}$"  # hashes (md5, sha1, sha256), Mongo ObjectIds
    r"|^(?=.*\d)(?=.*[a-z])[a-z0-9]{15}(?:[a-z0-9]{3})?$",  # Salesforce-style record ids
    re.IGNORECASE,
)
_PHONE: Final = re.compile(r"^\+?[\d\s().\-/]{7,}$")
PERSON_NAMES: Final = frozenset(
    {"name", "first_name", "last_name", "full_name", "firstname", "lastname", "fullname", "contact_name"}
)


def identity_reason(name: str, present: pd.Series, kind: Kind) -> str | None:
    """Why a column identifies a person (by its values, not by its name alone), or None.

    Opt-out flags ("Do Not Email", "Do Not Call": yes/no) and counts ("Email Opens") are not identity:
    a column is identity when its values are e-mail addresses, phone numbers in a phone-named column,
    LinkedIn URLs, or many different person names in a name column."""
    if kind == "boolean" or present.nunique() <= 2:
        return None
    sample = present.astype(str).head(2000)
    if sample.str.match(_EMAIL).mean() > 0.5:
        return "identity column (e-mail addresses)"
    if sample.str.contains("linkedin.com/", case=False, regex=False).mean() > 0.5:
        return "identity column (LinkedIn URLs)"
    tokens = set(name.split("_"))
    if tokens & {"phone", "mobile", "tel", "telephone", "fax"} and sample.str.match(_PHONE).mean() > 0.5:
        return "identity column (phone numbers)"
    if name in PERSON_NAMES and kind == "category" and present.nunique() / len(present) > 0.2:
        return "identity column (person names)"
    return None


def id_reason(name: str, present: pd.Series, kind: Kind) -> str | None:
    """Why a column is a record id (by content), or None: UUID- or hash-like values, unique values per
    row, or unique whole numbers that grow (or shrink) with the row order (row numbers, lead numbers)."""
    sample = present.astype(str).str.strip().head(2000)
    if len(sample) and sample.str.match(_UUID).mean() >= 0.9:
        return "id column (UUID- or hash-like values)"
    unique_share = present.nunique() / len(present)
    if kind == "category" and unique_share >= 0.99 and len(present) >= 20:
        wordy = bool(present.str.contains(r"\s").mean() > 0.5)
        if not wordy:
            return "id column (unique per row)"
    if kind == "numeric" and unique_share >= 0.95 and len(present) >= 20:
        nums = parse_numbers(present)[0].dropna().to_numpy()
        if len(nums) and bool((nums % 1 == 0).all()):
            steps = np.diff(nums)
            if len(steps) and max((steps > 0).mean(), (steps < 0).mean()) >= 0.95:
                return "id column (unique whole numbers in row order)"
            span = nums.max() - nums.min() + 1
            if span <= 1.5 * len(nums):
                return "id column (unique, consecutive whole numbers)"
    if set(name.split("_")) & ID_TOKENS and unique_share >= 0.5:
        return "id column (named like an id, mostly unique values)"
    return None


def _drop_reason(
    name: str,
    values: pd.Series,
    kind: Kind,
    params: FlatParams,
    n_rows: int,
    forced: Mapping[str, str],
    allowed: bool = False,
) -> str | None:
    """Why column ``name`` is not a candidate feature, or None. ``allowed`` (``--allow``) overrides every
    heuristic below; only an explicit drop and an empty column still win."""
    if name in forced:
        return forced[name]
    present = values.dropna()
    if present.empty:
        return "empty after cleaning"
    if allowed:
        return None
    reason = identity_reason(name, present, kind)
    if reason:
        return reason
    if present.nunique() == 1 and len(present) == n_rows:
        return f"constant ({present.iloc[0]!r})"
    reason = id_reason(name, present, kind)
    if reason:
        return reason
    if kind == "category":
        n_distinct = present.map(lambda v: re.sub(r"\s+", " ", v).casefold()).nunique()
        if n_distinct > params.max_categories and n_distinct / len(present) > params.high_cardinality_share:
            return (
                f"free text ({n_distinct} distinct values in {len(present)} rows, more than "
                f"flat.high_cardinality_share = {params.high_cardinality_share})"
            )
    return None


def prepare(raw: pd.DataFrame, target: str, params: FlatParams, file: str = "export") -> Prepared:
    """Clean a flat export read as text (:func:`read_export`) and decide which columns are candidates.

    Raises :class:`FlatDataError` (file, column, examples) for an unknown target / column name, unexpected
    outcome values, a split date column that mostly does not parse, too many quarantined rows, a single
    outcome class, or an export empty after cleaning.
    """
    raw = raw.reset_index(drop=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    names = normalise_names(raw.columns)
    frame = raw.rename(columns=names)
    target_n = resolve_column(target, names, "--target", file)
    date_n = (
        resolve_column(params.date_column, names, "flat.date_column", file) if params.date_column else None
    )
    forced = {
        resolve_column(c, names, "flat.id_columns", file): "id column (flat.id_columns)"
        for c in params.id_columns
    }
    forced |= {
        resolve_column(c, names, "--drop / flat.drop_columns", file): "dropped (--drop / flat.drop_columns)"
        for c in params.drop_columns
    }
    allowed = {resolve_column(c, names, "--allow / flat.allow_columns", file) for c in params.allow_columns}
    if target_n in allowed:
        raise FlatDataError(
            f"{file}: --allow names the outcome column {target!r}; the outcome is never a feature"
        )
    clean, ph_counts = blank_placeholders(frame, params.placeholders)

    n = len(raw)
    reasons = np.full(n, "", dtype=object)
    outcome = parse_outcome(clean[target_n], params.positive_values, params.negative_values, file, target)
    y = outcome.y
    # Open rows (an open deal, "Working") are not examples yet: set aside, counted, never negatives.
    reasons[outcome.open] = f"open_outcome:{target_n}"
    reasons[(y.isna() & (reasons == "")).to_numpy()] = f"missing_outcome:{target_n}"
    dup = raw.astype(str).duplicated(keep="first").to_numpy()
    reasons[dup & (reasons == "")] = "duplicate_row"
    dates = None
    if date_n is not None:
        dates, bad = parse_dates(clean[date_n], dayfirst=params.dayfirst)
        present = clean[date_n].notna().to_numpy()
        if present.sum() and bad.sum() / max(present.sum(), 1) > params.max_reject_share:
            example = clean.loc[bad, date_n].iloc[0]
            raise FlatDataError(
                f"{file}: date column {params.date_column!r} does not parse: {int(bad.sum())} of "
                f"{int(present.sum())} values (e.g. {example!r} at data row {int(np.flatnonzero(bad)[0])}). "
                "Fix the export or set flat.date_column to another column "
                "(flat.dayfirst for 03/04 = 3 April)."
            )
        reasons[bad & (reasons == "")] = f"bad_date:{date_n}"
        reasons[~present & (reasons == "")] = f"missing_date:{date_n}"

    dropped = reasons != ""
    quarantine = (
        pd.concat(
            [_quarantine_rows(raw, reasons == r, r) for r in pd.unique(reasons[dropped])]
            or [pd.DataFrame(columns=["source_row", "reason", *raw.columns])],
            ignore_index=True,
        )
        .sort_values("source_row", kind="stable")
        .reset_index(drop=True)
    )
    counts = {str(r): int((reasons == r).sum()) for r in pd.unique(reasons[dropped])}
    if dropped.all():
        raise FlatDataError(
            f"{file}: the export is empty after cleaning: every row was set aside {counts}", quarantine
        )
    bad_rows = dropped & ~outcome.open  # open rows are not bad rows: they do not count towards the bound
    share = bad_rows.mean()
    if share > params.max_reject_share:
        first = int(np.flatnonzero(bad_rows)[0])
        raise FlatDataError(
            f"{file}: {int(bad_rows.sum())} of {n} rows quarantined ({share:.1%}), more than "
            f"flat.max_reject_share = {params.max_reject_share:.0%}: {counts} (e.g. data row {first}, "
            f"{reasons[first]}, value {_shown(raw.iloc[first][_reason_column(reasons[first], names)])})",
            quarantine,
        )
    keep = ~dropped
    y_kept = y.to_numpy()[keep].astype(np.int8)
    if len(np.unique(y_kept)) < 2:
        raise FlatDataError(
            f"{file}: outcome column {target!r} has a single class after cleaning ({int(y_kept[0])} in all "
            f"{len(y_kept)} rows); check --positive / --negative",
            quarantine,
        )
    kept = clean.loc[keep].reset_index(drop=True)

    report: dict[str, Any] = {}
    kinds: dict[str, Kind] = {}
    original = {v: k for k, v in names.items()}
    for col in kept.columns:
        entry: dict[str, Any] = {
            "source": original[col],
            "placeholders": ph_counts.get(col, 0),
            "missing": int(kept[col].isna().sum()),
        }
        if col == target_n:
            report[col] = entry | {"role": "outcome"}
            continue
        if col == date_n:
            report[col] = entry | {"role": "split date (not a feature)"}
            continue
        kind, info = infer_kind(kept[col], params)
        reason = _drop_reason(col, kept[col], kind, params, len(kept), forced, col in allowed)
        if col in allowed:
            entry["allowed"] = True
        entry |= {"kind": kind, **info}
        if reason is None:
            kinds[col] = kind
            entry["role"] = "candidate"
        else:
            entry["role"] = "dropped"
            entry["reason"] = reason
        report[col] = entry
    warnings: list[str] = []
    if outcome.negatives and len(outcome.negatives) > 1 and not params.negative_values:
        shown = ", ".join(f"{v!r} ×{k}" for v, k in list(outcome.negatives.items())[:5])
        warnings.append(
            f"note: every outcome value other than {list(params.positive_values)} is read as NEGATIVE: "
            f"{shown}. If some are still open (e.g. open deals), list the lost ones with --negative: "
            "the rest are then set aside as open."
        )
    if date_n is None and params.rows_in_time_order:
        pass  # the split goes by row position (see models.flat.split_rows)
    elif date_n is None:
        warnings.append(
            "WARNING: no date column (flat.date_column), so the split is stratified at random, not by "
            "time. The test estimate is OPTIMISTIC: it mixes past and future leads. Set flat.date_column "
            "to the lead's creation date for an honest, time-ordered estimate."
        )
        guess = [
            c
            for c in kinds
            if kinds[c] == "date" and re.search(r"creat|added|sign_?(?:ed_)?up|regist|first|inbound", c)
        ]
        if guess:
            warnings.append(
                f"hint: {guess[0]!r} looks like a creation date; try flat.date_column: {original[guess[0]]!r}"
            )
    return Prepared(
        frame=kept[list(kinds)],
        kinds=kinds,
        y=y_kept,
        dates=dates[keep].reset_index(drop=True) if dates is not None else None,
        names=names,
        target=target_n,
        date_column=date_n,
        quarantine=quarantine,
        report={
            "rows_read": n,
            "rows_kept": int(keep.sum()),
            "quarantined": counts,
            "open_outcome_values": outcome.opens,
            "negative_outcome_values": outcome.negatives,
            "columns": report,
        },
        warnings=warnings,
    )


def _shown(value: object) -> str:
    """A raw value for an error message: quoted, or ``empty``."""
    return "empty" if value is None or (isinstance(value, float) and np.isnan(value)) else repr(str(value))


def _reason_column(reason: str, names: Mapping[str, str]) -> str:
    """The export's header of the column a quarantine reason ("missing_outcome:converted") names."""
    col = reason.split(":", 1)[-1]
    return {v: k for k, v in names.items()}.get(col, next(iter(names)))


def fit_vocabulary(values: pd.Series, params: FlatParams) -> tuple[str, ...]:
    """Category vocabulary from training rows: the ``max_categories`` most frequent values with at least
    ``min_category_rows`` rows (ties by name, so it is deterministic), plus 'other' for the rest."""
    counts = category_values(values).dropna().value_counts()
    counts = counts[counts >= params.min_category_rows]
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: params.max_categories]
    vocab = sorted(v for v, _ in top if v != OTHER)
    return (*vocab, OTHER)
