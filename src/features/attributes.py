"""Lead-level attributes: title parsing, e-mail type, company size band, fit flags.

These depend only on the lead and its account (not on the snapshot time), so one pure function serves
the batch builder (applied to the whole leads table) and the online builder (applied to one payload).

Known limitation (documented in DESIGN notes): firmographics are the values in the export, i.e. as known
at export time, not as of each snapshot. CRM exports rarely keep attribute history; employee counts and
industry change slowly, so the leak is small, but it is a leak in principle.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd

from leadscore.config import FeatureParams
from leadscore.data.contract import DEPARTMENTS, SENIORITIES

# Ordered: the first pattern that matches wins, so "VP" beats "manager" in "VP, Product Manager".
_SENIORITY_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("student", re.compile(r"\b(student|intern|phd candidate|undergrad|graduate assistant)\b")),
    ("c_level", re.compile(r"\b(ceo|cto|cfo|coo|cmo|cio|cro|chief|president)\b")),
    ("owner", re.compile(r"\b(owner|founder|co-founder|cofounder|partner)\b")),
    ("vp", re.compile(r"\b(vp|vice president|svp|evp)\b")),
    ("director", re.compile(r"\b(director|head of|head)\b")),
    ("manager", re.compile(r"\b(manager|mgr|lead|team lead|supervisor)\b")),
)
_DEPARTMENT_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("education", re.compile(r"\b(student|intern|professor|teacher|lecturer|phd)\b")),
    ("marketing", re.compile(r"\b(marketing|cmo|growth|demand gen|brand|content|seo)\b")),
    ("sales", re.compile(r"\b(sales|revops|revenue|cro|account executive|business development|bdr|sdr)\b")),
    ("finance", re.compile(r"\b(finance|cfo|accounting|controller|accountant)\b")),
    ("it", re.compile(r"\b(it|cio|information technology|sysadmin|systems|infrastructure)\b")),
    ("engineering", re.compile(r"\b(engineer|engineering|developer|cto|software|data|devops)\b")),
    ("hr", re.compile(r"\b(hr|human resources|people|talent|recruit\w*)\b")),
    ("operations", re.compile(r"\b(operations|ops|coo|supply|logistics)\b")),
    ("executive", re.compile(r"\b(ceo|founder|owner|president|managing director|general manager)\b")),
)


@lru_cache(maxsize=65536)
def parse_title(title: str | None) -> tuple[str, str]:
    """Map a free-text job title to (seniority, department); unknown parts become 'individual'/'other'."""
    if not title or not isinstance(title, str):
        return "unknown", "unknown"
    text = re.sub(r"[^a-z0-9&+\- ]", " ", title.lower())
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
    idx = int(np.searchsorted(np.asarray(bands), employees, side="right")) - 1
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
    frame = leads[
        [
            "lead_id",
            "account_id",
            "created_at",
            "email_domain",
            "job_title",
            "seniority",
            "department",
            "country",
            "lead_source",
        ]
    ].merge(acc, on="account_id", how="left")
    attrs = attributes_from_columns(
        {c: frame[c].to_numpy(dtype=object) for c in frame.columns if c != "created_at"}, params
    )
    return pd.DataFrame({"lead_id": frame["lead_id"].to_numpy(), "created_at": frame["created_at"], **attrs})


def _to_float(values: np.ndarray) -> np.ndarray:
    """Numbers (or numeric strings) as float; anything else as NaN."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        try:
            out[i] = float(v) if v is not None and v is not pd.NA else np.nan
        except (TypeError, ValueError):
            out[i] = np.nan
    return out


def attributes_from_columns(cols: dict[str, np.ndarray], params: FeatureParams) -> dict[str, np.ndarray]:
    """Attribute features from raw lead+account columns given as object arrays of equal length.

    Shared by the batch builder and the online builder (which passes one-element arrays).
    """
    titles = cols["job_title"]
    parsed = [parse_title(t if isinstance(t, str) else None) for t in titles]
    given_sen = [_clean_category(v) for v in cols["seniority"]]
    given_dep = [_clean_category(v) for v in cols["department"]]
    # A seniority/department the CRM filled in wins over the parsed title; unknown values fall back.
    seniority = [g if g in SENIORITIES else p[0] for g, p in zip(given_sen, parsed, strict=True)]
    department = [g if g in DEPARTMENTS else p[1] for g, p in zip(given_dep, parsed, strict=True)]
    employees = _to_float(cols["employees"])
    revenue = _to_float(cols["annual_revenue"])
    industry = [_clean_category(v) for v in cols["_industry"]]
    tech = cols.get("tech_stack")
    tech_size = (
        np.array(
            [
                float(len([x for x in str(v).split(";") if x.strip()])) if isinstance(v, str) else np.nan
                for v in tech
            ]
        )
        if tech is not None
        else np.full(len(titles), np.nan)
    )
    lo, hi = params.sweet_spot
    as_obj = lambda values: np.asarray(values, dtype=object)  # noqa: E731
    return {
        "employees": employees,
        "annual_revenue": revenue,
        "tech_stack_size": tech_size,
        "in_sweet_spot": ((employees >= lo) & (employees <= hi)).astype(float),
        "target_industry": np.array([float(i in params.target_industries) for i in industry]),
        "is_student": np.array([float(s == "student") for s in seniority]),
        "industry": as_obj(industry),
        "country": as_obj([_clean_category(v) for v in cols["country"]]),
        "lead_source": as_obj([_clean_category(v) for v in cols["lead_source"]]),
        "seniority": as_obj(seniority),
        "department": as_obj(department),
        "email_type": as_obj([email_type(d, params) for d in cols["email_domain"]]),
        "size_band": as_obj([size_band(e, params.size_bands) for e in employees]),
    }
