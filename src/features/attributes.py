"""Lead-level attributes: title parsing, e-mail type, company size band, fit flags.

These depend only on the lead and its account (not on the snapshot time), so one pure function serves
the batch builder (applied to the whole leads table) and the online builder (applied to one payload).

Known limitation (documented in DESIGN notes): firmographics are the values in the export, i.e. as known
at export time, not as of each snapshot. CRM exports rarely keep attribute history; employee counts and
industry change slowly, so the leak is small, but it is a leak in principle.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import FeatureParams
from leadscore.data.contract import DEPARTMENTS, REQUIRED_COLUMNS, SENIORITIES

# Ordered: the first pattern that matches wins ("Vice President" is a VP, not a president).
_SENIORITY_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("student", re.compile(r"\b(student|intern|undergraduate|undergrad|phd|grad student)\b")),
    ("vp", re.compile(r"\b(vp|svp|evp)\b")),
    ("owner", re.compile(r"\b(owner|founder|co founder|cofounder|managing partner)\b")),
    ("c_level", re.compile(r"\b(ceo|cto|cfo|coo|cmo|cio|cro|chief|president)\b")),
    ("director", re.compile(r"\b(director|head)\b")),
    ("manager", re.compile(r"\b(manager|mgr|team lead|supervisor)\b")),
)
_DEPARTMENT_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("education", re.compile(r"\b(student|intern|undergraduate|undergrad|professor|teacher|phd)\b")),
    (
        "executive",
        re.compile(r"\b(ceo|cto|cfo|coo|cmo|cio|cro|chief|founder|owner|president|managing partner)\b"),
    ),
    (
        "operations",
        re.compile(r"\b(revops|revenue operations|sales operations|sales ops|business analyst)\b"),
    ),
    (
        "marketing",
        re.compile(r"\b(marketing|marketer|growth|demand gen|demand generation|brand|content|seo)\b"),
    ),
    ("sales", re.compile(r"\b(sales|account executive|account rep|business development|bdr|sdr)\b")),
    ("finance", re.compile(r"\b(finance|financial|accounting|accountant|controller|fp&a|billing)\b")),
    (
        "it",
        re.compile(
            r"\b(it|information technology|systems administrator|sysadmin|help desk|network"
            r"|support technician)\b"
        ),
    ),
    ("engineering", re.compile(r"\b(engineer|engineering|developer|software|data|devops|full stack)\b")),
    ("hr", re.compile(r"\b(hr|human resources|people|talent|recruiter|recruiting)\b")),
    ("operations", re.compile(r"\b(operations|ops)\b")),
)
# Words the rules look for; a token within edit distance of one of them is read as it ("Mnaager").
_KEYWORDS: tuple[str, ...] = tuple(
    sorted(
        {
            w
            for _, rx in (*_SENIORITY_RULES, *_DEPARTMENT_RULES)
            for alt in re.findall(r"[a-z&]+(?: [a-z&]+)*", rx.pattern.replace("\\b", " "))
            for w in alt.split()
            if len(w) >= 5
        }
    )
)
_PLACEHOLDERS = frozenset({"", "none", "n/a", "na", "null", "unknown", "-", "select", "tbd"})
_ALIASES = (
    (re.compile(r"\bvice president\b"), "vp"),
    (re.compile(r"\baccount manager\b"), "account rep"),  # account managers are individual contributors
    (re.compile(r"\bsr\b"), "senior"),
)


def _normalise_title(title: str) -> str:
    text = re.sub(r"[^a-z0-9&]+", " ", title.lower()).strip()
    words = []
    for word in text.split():
        if len(word) >= 5 and word not in _KEYWORDS:
            close = difflib.get_close_matches(word, _KEYWORDS, n=1, cutoff=0.8)
            word = close[0] if close else word
        words.append(word)
    text = " ".join(words)
    for rx, repl in _ALIASES:
        text = rx.sub(repl, text)
    return text


@lru_cache(maxsize=65536)
def parse_title(title: str | None) -> tuple[str, str]:
    """Map a free-text job title to (seniority, department), tolerating case, punctuation and one-letter
    typos; a title with no known word gives 'individual'/'other', a missing one 'unknown'/'unknown'."""
    if (
        not isinstance(title, str)
        or title.strip().lower() in _PLACEHOLDERS
        or not re.search(r"[A-Za-z]{2}", title)
    ):
        return "unknown", "unknown"
    text = _normalise_title(title)
    seniority = next((name for name, rx in _SENIORITY_RULES if rx.search(text)), "individual")
    department = next((name for name, rx in _DEPARTMENT_RULES if rx.search(text)), "other")
    return seniority, department


def email_type(domain: str | None, params: FeatureParams) -> str:
    """'personal', 'competitor', 'business' or 'unknown' for an e-mail domain."""
    if not domain or not isinstance(domain, str):
        return "unknown"
    domain = domain.strip().lower()
    if domain in params.competitor_domains:
        return "competitor"
    if domain in params.personal_domains:
        return "personal"
    return "business"


def size_band(employees: float | None, bands: tuple[int, ...]) -> str:
    """Label such as '50-199' for an employee count (bands are lower bounds); 'unknown' when missing."""
    if employees is None or not np.isfinite(employees):
        return "unknown"
    idx = bisect.bisect_right(bands, employees) - 1
    if idx < 0:
        return "unknown"
    lo = bands[idx]
    return f"{lo}+" if idx == len(bands) - 1 else f"{lo}-{bands[idx + 1] - 1}"


def _clean_category(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "unknown"
    text = str(value).strip().lower()
    return text or "unknown"


def lead_attributes(leads: pd.DataFrame, accounts: pd.DataFrame, params: FeatureParams) -> pd.DataFrame:
    """One row per lead: lead_id, created_at and the attribute features of ``spec.ATTRIBUTE_*``.

    Reads the contract columns of ``leads`` and ``accounts``; identity columns (names, e-mail local part)
    are never read, so they cannot influence a score.
    """
    acc_cols = ["account_id", "industry", "employees", "annual_revenue"]
    acc = accounts[acc_cols + (["tech_stack"] if "tech_stack" in accounts.columns else [])]
    acc = acc.rename(columns={"industry": "_industry"})
    frame = leads[list(REQUIRED_COLUMNS["leads"])].merge(acc, on="account_id", how="left")
    attrs = attributes_from_columns(
        {c: frame[c].to_numpy(dtype=object) for c in frame.columns if c != "created_at"}, params
    )
    return pd.DataFrame({"lead_id": frame["lead_id"].to_numpy(), "created_at": frame["created_at"], **attrs})


#: A memo of one column (raw text -> derived value) is emptied when it grows past this many entries.
MEMO_LIMIT = 65_536

#: Column name -> (raw text or None -> derived value). The online builder keeps one per bundle.
AttributeMemo = dict[str, dict[Any, Any]]
_UNSET = object()


def _per_unique(
    values: np.ndarray, fn: Callable[[Any], Any], memo: dict[Any, Any] | None = None
) -> list[Any]:
    """``[fn(v) for v in values]``, calling ``fn`` once per distinct value (a million leads share a few
    thousand titles); tiny inputs (the online path) skip the factorize overhead.

    With ``memo`` (kept across calls by the online builder: the CRM sends the same titles, domains and
    industries again and again) a column of known values costs one dict lookup each. Only text and None
    are memo keys: ``fn`` of them is pure, and unlike numbers they cannot collide with another type's equal
    key (``1 == 1.0 == True``) or miss forever (NaN); a column with any other value takes the plain path.
    """
    if memo is not None:
        try:
            return list(map(memo.__getitem__, values))
        except (KeyError, TypeError):
            pass
        if all(v is None or isinstance(v, str) for v in values):
            if len(memo) > MEMO_LIMIT:
                memo.clear()
            # Results are read from ``found``, never from ``memo`` again: another request's thread may
            # clear the memo meanwhile.
            found: dict[Any, Any] = {}
            for v in values:
                if v not in found:
                    r = memo.get(v, _UNSET)
                    if r is _UNSET:
                        r = memo[v] = fn(v)
                    found[v] = r
            return [found[v] for v in values]
    if len(values) <= 16:
        return [fn(v) for v in values]
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    mapped = [fn(u) for u in uniques]
    missing = fn(None)
    return [mapped[c] if c >= 0 else missing for c in codes]


def size_bands(employees: np.ndarray, bands: tuple[int, ...]) -> np.ndarray:
    """``size_band`` of each employee count (float array), vectorised: ``searchsorted(side="right")`` is
    ``bisect_right``; missing, infinite and below-the-first-band counts are 'unknown'."""
    labels = np.array(
        [f"{lo}+" if i == len(bands) - 1 else f"{lo}-{bands[i + 1] - 1}" for i, lo in enumerate(bands)]
        + ["unknown"],
        dtype=object,
    )
    idx = np.searchsorted(np.asarray(bands, dtype=np.float64), employees, side="right") - 1
    idx[(idx < 0) | ~np.isfinite(employees)] = len(bands)
    return labels[idx]


def member(values: np.ndarray, allowed: frozenset[str]) -> np.ndarray:
    """1.0 where the value is in ``allowed`` (``np.isin`` on object arrays sorts; this is a hash lookup)."""
    return np.fromiter((v in allowed for v in values), dtype=bool, count=len(values)).astype(float)


def _to_float(value: Any) -> float:
    """A number (or numeric string) as float; anything else as NaN."""
    if value is None or value is pd.NA:
        return np.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _floats(values: np.ndarray) -> np.ndarray:
    """``_to_float`` of each value as a float array; floats and None (the API's values) in one NumPy
    conversion (None becomes NaN, as ``_to_float`` makes it)."""
    if all(v is None or type(v) is float for v in values):
        return np.array(list(values), dtype=float)
    return np.asarray(_per_unique(values, _to_float), dtype=float)


def _tech_stack_size(value: Any) -> float:
    return float(len([x for x in value.split(";") if x.strip()])) if isinstance(value, str) else np.nan


def attributes_from_columns(
    cols: dict[str, np.ndarray], params: FeatureParams, memo: AttributeMemo | None = None
) -> dict[str, np.ndarray]:
    """Attribute features from raw lead+account columns given as object arrays of equal length.

    Shared by the batch builder and the online builder, which passes its ``memo`` (per-column caches of
    the text functions, valid for these ``params`` only).
    """
    m: AttributeMemo = {} if memo is None else memo
    use = memo is not None

    def per_unique(col: str, values: np.ndarray, fn: Callable[[Any], Any]) -> list[Any]:
        return _per_unique(values, fn, m.setdefault(col, {}) if use else None)

    parsed = per_unique(
        "job_title", cols["job_title"], lambda t: parse_title(t if isinstance(t, str) else None)
    )
    given_sen = per_unique("seniority", cols["seniority"], _clean_category)
    given_dep = per_unique("department", cols["department"], _clean_category)
    # A seniority/department the CRM filled in wins over the parsed title; unknown values fall back.
    seniority = np.array(
        [g if g in SENIORITIES else p[0] for g, p in zip(given_sen, parsed, strict=True)], dtype=object
    )
    department = [g if g in DEPARTMENTS else p[1] for g, p in zip(given_dep, parsed, strict=True)]
    employees = _floats(cols["employees"])
    revenue = _floats(cols["annual_revenue"])
    industry = np.array(per_unique("_industry", cols["_industry"], _clean_category), dtype=object)
    tech = cols.get("tech_stack")
    n = len(employees)
    tech_size = (
        np.asarray(per_unique("tech_stack", tech, _tech_stack_size), dtype=float)
        if tech is not None
        else np.full(n, np.nan)
    )
    lo, hi = params.sweet_spot
    as_obj = lambda values: np.asarray(values, dtype=object)  # noqa: E731
    return {
        "employees": employees,
        "annual_revenue": revenue,
        "tech_stack_size": tech_size,
        "in_sweet_spot": ((employees >= lo) & (employees <= hi)).astype(float),
        "target_industry": member(industry, frozenset(params.target_industries)),
        "is_student": (seniority == "student").astype(float),
        "industry": industry,
        "country": as_obj(per_unique("country", cols["country"], _clean_category)),
        "lead_source": as_obj(per_unique("lead_source", cols["lead_source"], _clean_category)),
        "seniority": seniority,
        "department": as_obj(department),
        "email_type": as_obj(
            per_unique("email_domain", cols["email_domain"], lambda d: email_type(d, params))
        ),
        "size_band": size_bands(employees, params.size_bands),
    }
