"""Real-world-like flat exports generated in code, with planted post-outcome columns of each kind.

Used by the leakage-guard tests and by ``benchmarks/flat_vs_default.py``. Each shape mimics a kind of
export teams bring (a web-form lead export, a telemarketing list, a Salesforce lead report, a HubSpot
contacts export with lifecycle dates) with its usual mess: placeholders ("Select", "N/A", ""), numbers
as text, mixed date formats, ids (UUIDs, monotonic lead numbers, a row number), identity columns, an
opt-out flag, a many-valued landing-page id. The truth depends only on *honest* columns (known when the
lead arrived); the planted leaks are derived from the outcome the way sales follow-up fills them in:

* ``grade``: a lead quality / rating sales assigns after the first call (0.7-0.8 alone);
* ``last_activity``: a "last notable activity" updated after conversion (~0.7 alone);
* ``duration``: the sales call duration (0.8+ alone, innocent name in the telemarketing shape);
* ``missing``: filled for 10-20 % of won leads and never for lost ones (innocent name);
* ``one_sided``: a frequent value that only won (or only lost) leads carry (innocent name);
* ``follow_up_values``: tags such as "Ringing", "Will revert after reading the email".

No third-party data: everything is drawn from seeded generators.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd

SHAPES = ("web_form", "telemarketing", "salesforce", "hubspot")


@dataclass(frozen=True)
class Export:
    """A generated export and what a test needs to know about it."""

    frame: pd.DataFrame
    target: str
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    date_column: str | None
    honest: tuple[str, ...]  # honest candidate features (headers as in the export)
    leaks: dict[str, str]  # planted leak header -> kind
    truth: np.ndarray  # true probability per row


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _mess(rng: np.random.Generator, values: np.ndarray, share: float = 0.08) -> np.ndarray:
    """Placeholders and stray case / spaces in a text column, as CRM exports have them."""
    out = values.astype(object).copy()
    r = rng.random(len(values))
    out[r < share] = rng.choice(["Select", "N/A", "", "-"], int((r < share).sum()))
    lower = (r >= share) & (r < 2 * share)
    out[lower] = [f"{str(v).lower()} " for v in values[lower]]
    return out


def _dates(rng: np.random.Generator, days: np.ndarray) -> list[str]:
    base = pd.Timestamp("2023-01-01") + pd.to_timedelta(days, unit="D")
    fmts = rng.choice(["%Y-%m-%d", "%m/%d/%Y", "%Y-%m-%d %H:%M", "%d %b %Y"], len(days))
    return [d.strftime(f) for d, f in zip(base, fmts, strict=True)]


def _honest_core(rng: np.random.Generator, n: int) -> tuple[dict[str, object], np.ndarray]:
    """Columns every lead export has (known at arrival) and their contribution to the log-odds."""
    source = rng.choice(
        [
            "Google",
            "Direct Traffic",
            "Organic Search",
            "Referral",
            "Webinar",
            "Olark Chat",
            "Partner",
            "Event",
        ],
        n,
        p=[0.3, 0.2, 0.15, 0.08, 0.07, 0.1, 0.05, 0.05],
    )
    country = rng.choice(
        ["United States", "India", "Germany", "United Kingdom", "France", "Brazil", "Canada", "Singapore"], n
    )
    employees = np.round(rng.lognormal(4.0, 1.5, n)) + 1
    occupation = rng.choice(["Working Professional", "Unemployed", "Student", "Businessman", "Other"], n)
    matters = rng.choice(["Better Career Prospects", "Flexibility", "Price", "Integrations"], n)
    visits = rng.negative_binomial(2, 0.3, n)
    minutes = np.round(rng.gamma(1.5, 4, n) * (1 + 0.3 * visits), 1)
    do_not_email = rng.random(n) < 0.08
    landing = rng.choice([f"LP-{i:03d}" for i in range(25)], n)
    size = np.log10(employees)
    z = 2.0 * (
        0.6 * np.isin(source, ["Referral", "Webinar", "Partner"])
        - 0.5 * (source == "Olark Chat")
        + 0.25 * np.isin(country, ["United States", "Germany", "United Kingdom"])
        + 0.7 * np.exp(-((size - 2.3) ** 2) / 0.6)
        + 0.45 * (occupation == "Working Professional")
        - 0.5 * (occupation == "Student")
        + 0.3 * (matters == "Integrations")
        + 0.6 * np.tanh(visits / 4)
        + 0.6 * np.log1p(minutes) / 3
        - 0.4 * do_not_email
        + 0.15 * np.isin(landing, ["LP-001", "LP-002", "LP-003"])
    )
    cols: dict[str, object] = {
        "Lead Source": _mess(rng, source),
        "Country": _mess(rng, country, 0.05),
        "Company Size": np.where(rng.random(n) < 0.1, "N/A", [f"{int(e):,}" for e in employees]),
        "What is your current occupation": _mess(rng, occupation, 0.15),
        "What matters most to you": _mess(rng, matters, 0.2),
        "Total Visits": visits.astype(str),
        "Time on Website (min)": [f"{m:.1f}" for m in minutes],
        "Do Not Email": np.where(do_not_email, "Yes", "No"),
        "Landing Page ID": landing,
    }
    return cols, z


def _grade(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    """A lead-quality grade sales sets after contact: informative, noisy, often blank."""
    levels = np.array(["High in Relevance", "Might be", "Not Sure", "Low in Relevance", "Worst"])
    noisy = np.clip(np.where(y, 1.0, 2.6) + rng.normal(0, 1.0, len(y)), 0, 4).round().astype(int)
    out = levels[noisy].astype(object)
    out[rng.random(len(y)) < 0.4] = ""
    return out


def _last_activity(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    after = ["Modified", "Email Opened", "SMS Sent", "Page Visited on Website", "Email Link Clicked"]
    won = rng.choice(after, len(y), p=[0.2, 0.25, 0.35, 0.1, 0.1])
    lost = rng.choice(after, len(y), p=[0.45, 0.35, 0.05, 0.1, 0.05])
    return np.where(y, won, lost)


def _missing_for_lost(rng: np.random.Generator, y: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Filled for ~15 % of won leads and never for lost ones (missing 100 % vs 85 %)."""
    return np.where(y & (rng.random(len(y)) < 0.15), values, "")


def _one_sided(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    base = rng.choice(["SMB", "Mid-Market", "Enterprise"], len(y))
    return np.where(y & (rng.random(len(y)) < 0.3), "Named Account", base)


def _ids(rng: np.random.Generator, n: int, seed: int) -> dict[str, object]:
    return {
        "Prospect ID": [str(uuid.UUID(int=int(rng.integers(2**63)) << 64 | i)) for i in range(n)],
        "Lead Number": (660000 + np.cumsum(rng.integers(1, 40, n))).astype(str),
        "Email": [f"lead{seed}_{i}@example{i % 211}.com" for i in range(n)],
    }


def web_form(n: int = 6000, seed: int = 0) -> Export:
    """An online-course / SaaS web-form lead export (one row per lead, a 0/1 ``Converted``)."""
    rng = np.random.default_rng(seed)
    cols, z = _honest_core(rng, n)
    p = _sigmoid(z - 4.3 + rng.normal(0, 0.3, n))
    y = rng.random(n) < p
    days = np.sort(rng.uniform(0, 600, n))
    frame = pd.DataFrame(
        {
            "#": np.arange(1, n + 1).astype(str),
            **_ids(rng, n, seed),
            "Lead Origin": _mess(rng, rng.choice(["Landing Page Submission", "API", "Lead Add Form"], n)),
            **cols,
            "Created": _dates(rng, days),
            "Lead Quality": _grade(rng, y),
            "Last Notable Activity": _last_activity(rng, y),
            "Tags": np.where(
                y,
                rng.choice(["Will revert after reading the email", "Closed by Horizzon", ""], n),
                rng.choice(["Ringing", "Interested in other courses", "Already a student", ""], n),
            ),
            "Billing Country": _missing_for_lost(rng, y, rng.choice(["US", "DE", "IN"], n)),
            "Account Segment": _one_sided(rng, y),
            "Converted": y.astype(int).astype(str),
        }
    )
    leaks = {
        "Lead Quality": "grade",
        "Last Notable Activity": "last_activity",
        "Tags": "follow_up_values",
        "Billing Country": "missing",
        "Account Segment": "one_sided",
    }
    honest = ("Lead Origin", *cols)
    return Export(frame, "Converted", (), (), "Created", honest, leaks, p)


def telemarketing(n: int = 6000, seed: int = 0) -> Export:
    """A call-campaign list: the call's duration is known only after the call that decided the outcome."""
    rng = np.random.default_rng(seed + 100)
    cols, z = _honest_core(rng, n)
    age = rng.integers(18, 80, n)
    balance = np.round(rng.normal(1500, 3000, n))
    campaign = rng.integers(1, 8, n)
    z = 0.6 * z + 0.4 * ((age < 28) | (age > 60)) - 0.15 * campaign + 0.00005 * balance
    p = _sigmoid(z - 2.3)
    y = rng.random(n) < p
    # longer calls when the lead says yes; the strongest single column, innocent name
    engaged = np.round(rng.gamma(2.0, 90, n) * np.where(y, 3.0, 1.0))
    frame = pd.DataFrame(
        {
            "Row": np.arange(n).astype(str),
            "Age": age.astype(str),
            "Balance": [f"{b:,.0f}" for b in balance],
            "Contacts This Campaign": campaign.astype(str),
            **cols,
            "Engaged Seconds": engaged.astype(str),
            "Outcome Notes": np.where(
                y, rng.choice(["Had a Phone Conversation", "Call back booked"], n), "No answer"
            ),
            "Subscribed": np.where(y, "yes", "no"),
        }
    )
    leaks = {"Engaged Seconds": "duration", "Outcome Notes": "follow_up_values"}
    honest = ("Age", "Balance", "Contacts This Campaign", *cols)
    return Export(frame, "Subscribed", (), (), None, honest, leaks, p)


def salesforce(n: int = 6000, seed: int = 0) -> Export:
    """A Salesforce lead report joined to the opportunity: ``Status`` Closed Won / Closed Lost / Open."""
    rng = np.random.default_rng(seed + 200)
    cols, z = _honest_core(rng, n)
    industry = rng.choice(["Technology", "Finance", "Retail", "Healthcare", "Manufacturing"], n)
    z = z + 0.4 * (industry == "Technology")
    p = _sigmoid(z - 3.9)
    y = rng.random(n) < p
    open_ = rng.random(n) < 0.07
    days = np.sort(rng.uniform(0, 700, n))
    status = np.where(open_, rng.choice(["Open", "Negotiation"], n), np.where(y, "Closed Won", "Closed Lost"))
    frame = pd.DataFrame(
        {
            "Lead ID": [f"00Q5e0000{seed:02d}{i:07d}" for i in range(n)],
            "Industry": _mess(rng, industry),
            **cols,
            "Created Date": _dates(rng, days),
            "Rating": np.where(
                rng.random(n) < 0.5,
                np.where(y, "Hot", rng.choice(["Warm", "Cold"], n)),
                rng.choice(["Warm", "Cold", "Hot"], n),
            ),
            "Last Activity": np.where(
                y, rng.choice(["Call", "Meeting", "Email"], n), rng.choice(["Email", "Email", "Call"], n)
            ),
            "Onboarding Contact": _missing_for_lost(
                rng, y, rng.choice(["Ops team", "IT lead", "CFO office"], n)
            ),
            "Status": status,
        }
    )
    leaks = {
        "Rating": "grade",
        "Last Activity": "last_activity",
        "Onboarding Contact": "missing",
    }
    honest = ("Industry", *cols)
    return Export(frame, "Status", ("Closed Won",), ("Closed Lost",), "Created Date", honest, leaks, p)


def hubspot(n: int = 6000, seed: int = 0) -> Export:
    """A HubSpot contacts export: lifecycle stage as the outcome, ``Became a … Date`` columns."""
    rng = np.random.default_rng(seed + 300)
    cols, z = _honest_core(rng, n)
    p = _sigmoid(z - 4.1)
    y = rng.random(n) < p
    days = np.sort(rng.uniform(0, 650, n))
    stage = np.where(y, "customer", rng.choice(["lead", "marketingqualifiedlead", "other"], n))
    became_opp = np.where(y | (rng.random(n) < 0.02), _dates(rng, days + rng.uniform(10, 60, n)), "")
    frame = pd.DataFrame(
        {
            "Record ID": (51000 + np.arange(n) * 3).astype(str),
            **cols,
            "Create Date": _dates(rng, days),
            "Became an Opportunity Date": became_opp,
            "Number of Sales Activities": np.where(y, rng.poisson(6, n), rng.poisson(2, n)).astype(str),
            "Partner Tier": _one_sided(rng, y),
            "Lifecycle Stage": stage,
        }
    )
    leaks = {
        "Became an Opportunity Date": "missing",
        "Number of Sales Activities": "last_activity",
        "Partner Tier": "one_sided",
    }
    return Export(frame, "Lifecycle Stage", ("customer",), (), "Create Date", tuple(cols), leaks, p)


def make(shape: str, n: int = 6000, seed: int = 0) -> Export:
    """One export of ``shape`` (see :data:`SHAPES`)."""
    return {
        "web_form": web_form,
        "telemarketing": telemarketing,
        "salesforce": salesforce,
        "hubspot": hubspot,
    }[shape](n, seed)
