"""The built-in demo generator: a synthetic B2B funnel whose true probabilities are known exactly.

Each lead lives on a daily grid ``d`` = whole UTC days since its creation day.

* **Interest** ``I(d) = A · Σ_b g((d − c_b + ½) / τ)`` with ``g(x) = x·e^{1−x}``: a first burst at
  ``c_0 = 0`` and "return to market" bursts as independent Poisson(ρ) counts per later day.
* **Hand-off** (sales accepts the lead) on the first day whose Bernoulli ``1 − e^{−h(d)}`` fires, with
  ``h(d) = κ·e^{fit}·Σ_b m_b·A·g(...)``; ``m_b`` is the webinar/pricing-affinity effect of the burst, taken
  from the drifted effects when the burst starts on/after ``drift.date``. The time is uniform within the
  day. With probability ``P_SAL`` the hand-off is a SAL and the SQL follows ``SAL_DELAY_DAYS`` later;
  otherwise the SQL is the hand-off itself.
* **Events** are Poisson in ``I(d)`` with per-lead type mixes, plus a small background, the form that
  created an inbound lead and a touch at most return-to-market burst starts; they depend on the latents
  (bursts included) and ``I`` only, never on the hand-off, so no observable carries information beyond
  what the oracle knows.
* **Marketing stages** (MQL from the points rule, recycling after ``QUIET_DAYS`` without activity,
  disqualification) are functions of events, latents and independent draws: they never reveal the future.
* **After SQL**: an opportunity ``n`` whole days later with probability ``rates.sql_to_opportunity``
  (won with the lead's ``win_prob``, closed a Gamma delay later); an SQL without opportunity is
  closed-lost ``m`` whole days later. Only opportunities can be won.

:func:`true_probability` is the oracle: the probability the generator used, given the latents, the bursts
started before the snapshot and the realised stage rows before it, with future bursts marginalised on the
same daily grid (so it is exact for this sampler).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray
from scipy.special import expit, gammainc

from leadscore.config import BaselineParams, FeatureParams, GenerateParams
from leadscore.data import contract

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

DAY: Final = 86_400
#: Sales timing after the hand-off, shared by the generator and the oracle.
P_SAL: Final = 0.85
SAL_DELAY_DAYS: Final = (0.5, 2.5)  # SQL this long after SAL (uniform)
OPP_DELAY_DAYS: Final = (1, 10)  # opportunity n whole days after SQL, n uniform (inclusive)
LOST_DELAY_DAYS: Final = (2, 21)  # SQL without opportunity: closed_lost m whole days after SQL
CLOSE_SHAPE: Final = 2.0  # opportunity → close delay ~ Gamma(CLOSE_SHAPE, mean / CLOSE_SHAPE)
CLOSE_MEAN_DAYS: Final = (35.0, 55.0, 90.0)  # by company size: < 50 (or unknown), 50–999, ≥ 1000
QUIET_DAYS: Final = 60  # an MQL without activity this long is recycled
#: Hand-off hazard effect of log webinar / log pricing affinity (scaled by the drift factors).
WEBINAR_BETA: Final = 0.3
PRICING_BETA: Final = 0.3

_CHUNK: Final = 2048  # leads per simulation chunk (fixed: the draws must not depend on the machine)
_NO_BURST: Final = np.iinfo(np.int32).max
_KEY_SHIFT: Final = 40  # lead index << 40 | seconds: a sortable (lead, time) key

EVENT_TYPES: Final = contract.EVENT_TYPES
_T = {name: i for i, name in enumerate(EVENT_TYPES)}
_STAGE = {name: i for i, name in enumerate(contract.STAGES)}
_REASONS: Final = contract.DISQUALIFY_REASONS
_R = {name: i for i, name in enumerate(_REASONS)}

# --- vocabularies -------------------------------------------------------------------------------------
_INDUSTRIES: Final = (
    "software",
    "fintech",
    "saas",
    "it_services",
    "ecommerce",
    "manufacturing",
    "healthcare",
    "education",
    "retail",
    "government",
    "nonprofit",
    "media",
)
_INDUSTRY_P: Final = (0.15, 0.06, 0.10, 0.10, 0.07, 0.12, 0.08, 0.06, 0.08, 0.04, 0.05, 0.09)
_INDUSTRY_SIZE_SHIFT: Final = (0.0, 0.1, -0.1, 0.0, -0.2, 0.6, 0.5, 0.3, 0.4, 0.9, -0.5, -0.2)
_REVENUE_PER_EMPLOYEE: Final = (
    220e3,
    350e3,
    200e3,
    150e3,
    300e3,
    250e3,
    180e3,
    90e3,
    280e3,
    120e3,
    70e3,
    200e3,
)
_LOW_FIT_INDUSTRIES: Final = ("government", "nonprofit", "education")
_INDUSTRY_WORDS: Final = (
    ("Software", "Labs", "Technologies"),
    ("Pay", "Capital", "Finance"),
    ("Cloud", "HQ", "Platform"),
    ("Consulting", "IT", "Solutions"),
    ("Shop", "Commerce", "Store"),
    ("Manufacturing", "Industries", "Works"),
    ("Health", "Care", "Medical"),
    ("Academy", "Learning", "Institute"),
    ("Retail", "Brands", "Outlet"),
    ("Agency", "Authority", "Office"),
    ("Foundation", "Trust", "Alliance"),
    ("Media", "Studios", "Publishing"),
)
_COUNTRIES: Final = ("US", "GB", "DE", "CA", "FR", "NL", "AU", "IN", "BR", "SE", "ES")
_COUNTRY_P: Final = (0.55, 0.10, 0.08, 0.06, 0.04, 0.03, 0.04, 0.05, 0.02, 0.02, 0.01)
_COUNTRY_TLD: Final = (
    ".com",
    ".co.uk",
    ".de",
    ".ca",
    ".fr",
    ".nl",
    ".com.au",
    ".in",
    ".com.br",
    ".se",
    ".es",
)
_TECH: Final = (
    "salesforce",
    "hubspot",
    "marketo",
    "pardot",
    "segment",
    "snowflake",
    "bigquery",
    "aws",
    "gcp",
    "azure",
    "zendesk",
    "intercom",
    "slack",
    "shopify",
)
_TECH_W: Final = (5, 5, 2, 1.5, 1.5, 2, 1.5, 6, 2.5, 3.5, 2, 1.5, 6, 1.5)
_SYLLABLES: Final = (
    "ka",
    "lo",
    "ri",
    "ven",
    "tor",
    "mi",
    "za",
    "nex",
    "qua",
    "bel",
    "dor",
    "fin",
    "gal",
    "hy",
    "jun",
    "kel",
    "lum",
    "mar",
    "nov",
    "or",
    "pax",
    "quin",
    "ros",
    "sol",
    "tal",
    "ul",
    "vor",
    "wex",
    "xan",
    "yel",
    "zen",
    "ar",
    "bri",
    "cor",
    "del",
    "ex",
    "fal",
    "gri",
    "ion",
    "jax",
)
_FIRST: Final = (
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Susan",
    "Richard",
    "Jessica",
    "Thomas",
    "Sarah",
    "Daniel",
    "Karen",
    "Matthew",
    "Emily",
    "Anthony",
    "Laura",
    "Mark",
    "Anna",
    "Steven",
    "Julia",
    "Paul",
    "Sophie",
    "Andrew",
    "Emma",
    "Lukas",
    "Lea",
    "Jonas",
    "Hannah",
    "Pierre",
    "Camille",
    "Lars",
    "Ingrid",
    "Raj",
    "Priya",
    "Arjun",
    "Ananya",
    "Wei",
    "Mei",
    "Diego",
    "Lucia",
    "Carlos",
    "Ana",
    "Kenji",
    "Yuki",
    "Ahmed",
    "Fatima",
    "Olu",
    "Amara",
    "Noah",
    "Mia",
    "Liam",
    "Olivia",
    "Ethan",
    "Chloe",
)
_LAST: Final = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Martinez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Hill",
    "Campbell",
    "Mueller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Dubois",
    "Laurent",
    "Bernard",
    "Jansen",
    "de Vries",
    "Andersson",
    "Johansson",
    "Patel",
    "Sharma",
    "Singh",
    "Kumar",
    "Chen",
    "Wang",
    "Li",
    "Silva",
    "Santos",
    "Tanaka",
    "Sato",
    "O'Brien",
    "Murphy",
)
_PERSONAL_W: Final = {
    "gmail.com": 10.0,
    "yahoo.com": 2.0,
    "hotmail.com": 2.0,
    "outlook.com": 2.5,
    "icloud.com": 1.5,
    "aol.com": 0.5,
    "gmx.de": 1.0,
    "web.de": 0.8,
    "proton.me": 0.5,
    "mail.com": 0.4,
}
_EDU_DOMAINS: Final = (
    "stateu.edu",
    "techuniversity.edu",
    "cityuni.ac.uk",
    "tu-example.de",
    "bschool.edu",
    "college.edu",
)

_SENIORITIES: Final = contract.SENIORITIES  # student individual manager director vp c_level owner
_S = {name: i for i, name in enumerate(_SENIORITIES)}
_SEN_P_SMALL: Final = (0.0, 0.44, 0.22, 0.08, 0.04, 0.08, 0.14)  # < 20 employees or unknown
_SEN_P_LARGE: Final = (0.0, 0.48, 0.26, 0.14, 0.07, 0.04, 0.01)
_DEPARTMENTS: Final = contract.DEPARTMENTS
_D = {name: i for i, name in enumerate(_DEPARTMENTS)}
_DEPT_P: Final = {
    "sales": 0.18,
    "marketing": 0.24,
    "it": 0.13,
    "engineering": 0.14,
    "finance": 0.07,
    "operations": 0.11,
    "hr": 0.06,
    "other": 0.07,
}
_DEPT_LABEL: Final = {
    "sales": "Sales",
    "marketing": "Marketing",
    "it": "IT",
    "engineering": "Engineering",
    "finance": "Finance",
    "operations": "Operations",
    "hr": "HR",
    "other": "Business",
}
_SOURCES: Final = contract.LEAD_SOURCES
_SRC = {name: i for i, name in enumerate(_SOURCES)}
_SOURCE_P: Final = (0.22, 0.15, 0.10, 0.08, 0.12, 0.08, 0.07, 0.12, 0.06)
_PERSONAL_BY_SOURCE: Final = (0.18, 0.15, 0.30, 0.15, 0.20, 0.08, 0.10, 0.02, 0.05)
#: Events a lead's creation leaves behind (inbound forms); outbound/referral/event/partner leave none.
_CREATION_EVENTS: Final = {
    "organic_search": ("form_submit",),
    "paid_search": ("form_submit",),
    "paid_social": ("form_submit",),
    "content": ("form_submit", "content_download"),
    "webinar": ("webinar_register",),
}

# --- fit (log hazard multiplier) components; the unobserved part is FIT_NOISE_SD only ----------------
_FIT_INDUSTRY_TARGET: Final = 0.5
_FIT_INDUSTRY_LOW: Final = -0.4
_FIT_SENIORITY: Final = (-2.0, -0.4, 0.15, 0.45, 0.55, 0.45, 0.25)
_FIT_DEPT: Final = {
    "sales": 0.25,
    "marketing": 0.25,
    "it": 0.0,
    "engineering": -0.15,
    "finance": -0.2,
    "operations": 0.2,
    "hr": -0.45,
    "executive": 0.1,
    "education": -0.3,
    "other": -0.3,
}
_FIT_SOURCE: Final = (0.05, 0.0, -0.35, 0.0, -0.15, 0.45, 0.1, -0.25, 0.25)
_FIT_PERSONAL: Final = -0.5
_FIT_COMPETITOR: Final = -4.0  # competitors snoop (high pricing affinity) but never buy
FIT_SCALE: Final = 2.0  # how strongly the observable persona drives the hazard (spread of e^{fit})
FIT_NOISE_SD: Final = 0.25
_AMPLITUDE_BY_SOURCE: Final = (1.0, 1.0, 0.8, 1.1, 0.9, 1.3, 1.0, 0.6, 1.1)

# --- events ---------------------------------------------------------------------------------------------
#: Interest-driven rate per day per unit of interest, and how strongly it scales with e^{fit}.
_PRIMARY: Final = {
    "page_view": (0.14, 0.05),
    "pricing_view": (0.006, 0.55),
    "demo_view": (0.004, 0.6),
    "content_download": (0.008, 0.0),
    "webinar_register": (0.006, 0.0),
    "email_open": (0.05, 0.0),
    "form_submit": (0.005, 0.2),
    "demo_request": (0.0025, 0.6),
    "trial_signup": (0.002, 0.45),
    "meeting_booked": (0.002, 0.65),
}
_BACKGROUND_MIX: Final = {"email_open": 0.65, "page_view": 0.35}  # newsletters and stray visits
_REENTRY_P: Final = 0.9  # a return-to-market burst starts with a touch event on its first day
_REENTRY_MIX: Final = {
    "form_submit": 0.45,
    "page_view": 0.15,
    "content_download": 0.15,
    "webinar_register": 0.15,
    "pricing_view": 0.10,
}
_BACKGROUND_RATE: Final = 0.012  # per day
_UNSUB_RATE: Final = 0.0012  # per day when interest is low; much lower while engaged
_ATTEND_P: Final = 0.5  # a webinar registration is attended
_CLICK_P: Final = 0.18  # an e-mail open leads to a click
_HOUR_W: Final = (
    1,
    0.7,
    0.5,
    0.4,
    0.4,
    0.5,
    0.8,
    1.2,
    2,
    3,
    3.5,
    3.8,
    4,
    4.5,
    5,
    5,
    4.8,
    4.5,
    4,
    3.5,
    3,
    2.5,
    2,
    1.5,
)  # UTC hour of activity (EU + US business hours)
_MONTH_PROFILE: Final = (0.2, 0.3, 0.35, 0.15, 0.05, -0.2, -0.55, -1.0, 0.25, 0.7, 1.0, 0.3)
_WEEKDAY_W: Final = (1.1, 1.15, 1.15, 1.1, 0.9, 0.35, 0.3)

_PROPERTIES: Final = {
    "page_view": [
        f'{{"path": "{p}"}}'
        for p in (
            "/",
            "/product",
            "/blog/lead-scoring-101",
            "/customers",
            "/integrations",
            "/about",
            "/blog/revops-guide",
        )
    ],
    "pricing_view": ['{"path": "/pricing"}', '{"path": "/pricing#enterprise"}'],
    "demo_view": ['{"path": "/demo"}', '{"path": "/product/tour"}'],
    "content_download": [
        f'{{"asset": "{a}"}}'
        for a in (
            "ebook-mql-handoff",
            "report-state-of-revops",
            "template-scoring-model",
            "whitepaper-attribution",
        )
    ],
    "webinar_register": [f'{{"webinar_id": "W{i:03d}"}}' for i in range(1, 25)],
    "webinar_attend": [f'{{"webinar_id": "W{i:03d}"}}' for i in range(1, 25)],
    "email_open": [f'{{"campaign": "nurture-{i:02d}"}}' for i in range(1, 13)],
    "email_click": [f'{{"campaign": "nurture-{i:02d}"}}' for i in range(1, 13)],
}


@dataclass
class _Leads:
    """Per-lead arrays (index = lead order by creation time)."""

    created: I64  # seconds since start
    day0: I64  # creation day (days since start)
    life: I64  # grid days until the export end
    account: I64  # account row or -1
    employees: F64  # NaN without account
    industry: I64  # index into _INDUSTRIES or -1
    seniority: I64
    department: I64
    source: I64
    personal: NDArray[np.bool_]
    competitor: NDArray[np.bool_]
    student: NDArray[np.bool_]
    fit: F64 = field(default_factory=lambda: np.empty(0))
    fit_noise: F64 = field(default_factory=lambda: np.empty(0))


# === small helpers ======================================================================================
def _g(x: F64) -> F64:
    """Burst shape g(x) = x·e^{1−x} for x > 0, else 0 (peak 1 at x = 1)."""
    xp = np.maximum(x, 0.0)
    return xp * np.exp(1.0 - xp)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _pick(rng: np.random.Generator, p: NDArray[np.float64] | tuple[float, ...], n: int) -> I64:
    """Draw n indices from the probabilities p (normalised)."""
    p = np.asarray(p, dtype=float)
    return np.searchsorted(np.cumsum(p / p.sum()), rng.random(n), side="right").clip(0, len(p) - 1)


def _pick_rows(rng: np.random.Generator, weights: F64, rows: I64) -> I64:
    """Draw one column per entry of ``rows`` from the row-wise (unnormalised) weights."""
    cum = np.cumsum(weights, axis=1)
    cum = cum / cum[:, -1:]
    flat = (cum + np.arange(len(cum))[:, None]).ravel()
    pos = np.searchsorted(flat, rows + rng.random(len(rows)), side="right")
    return np.minimum(pos - rows * weights.shape[1], weights.shape[1] - 1)


def _strings(codes: NDArray[np.integer], vocab: list[str] | tuple[str, ...]) -> pd.Series:
    """Decode integer codes (−1 = null) into a pandas ``str`` Series without a Python loop."""
    codes = np.asarray(codes)
    idx = pa.array(codes.astype(np.int32), mask=codes < 0)
    decoded = pa.DictionaryArray.from_arrays(idx, pa.array(list(vocab), pa.string())).cast(pa.string())
    return pd.Series(decoded.to_pandas(), dtype="str")


def _ids(prefix: str, n: int, width: int) -> pd.Series:
    """``prefix`` + zero-padded 1-based numbers, e.g. L0000001."""
    num = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, n + 1)), pa.string()), width, "0")
    return pd.Series(
        pc.binary_join_element_wise(pa.scalar(prefix), num, pa.scalar("")).to_pandas(), dtype="str"
    )


def _timestamps(seconds: NDArray[np.int64], start: np.datetime64) -> NDArray[np.datetime64]:
    return start + seconds.astype("timedelta64[s]").astype("timedelta64[us]")


def _business_time(rng: np.random.Generator, n: int) -> I64:
    """Seconds into the day, business-hour-ish in UTC."""
    return _pick(rng, _HOUR_W, n) * 3600 + rng.integers(0, 3600, n)


def _burst_sum(days: I64, starts: NDArray[np.int32], tau: F64, weights: F64 | None = None) -> F64:
    """Σ_b w_b · g((d − c_b + ½)/τ) over a lead × day grid; ``starts`` padded with _NO_BURST."""
    out = np.zeros((len(starts), len(days)))
    for b in range(starts.shape[1]):
        rows = np.flatnonzero(starts[:, b] != _NO_BURST)
        if rows.size == 0:
            break
        val = _g((days[None, :] - starts[rows, b, None] + 0.5) / tau[rows, None])
        if weights is not None:
            val *= weights[rows, b, None]
        out[rows] += val
    return out


def _first_crossing(cum: F64, level: F64) -> I64:
    """Index of the first column where the row-wise increasing ``cum`` reaches ``level``, else −1."""
    hit = cum >= level[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def _pad(lists: list[NDArray[np.int64]] | pd.Series, fill: int = _NO_BURST) -> NDArray[np.int32]:
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    out = np.full((len(lists), max(int(lengths.max(initial=0)), 1)), fill, dtype=np.int32)
    if lengths.sum():
        flat = np.concatenate([np.asarray(x) for x in lists])
        rows = np.repeat(np.arange(len(lists)), lengths)
        cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[rows, cols] = flat
    return out


# === accounts and leads =================================================================================
def _accounts(rng: np.random.Generator, cosmetic: np.random.Generator, n: int) -> pd.DataFrame:
    industry = _pick(rng, _INDUSTRY_P, n)
    log_emp = rng.normal(np.log(60.0) + np.asarray(_INDUSTRY_SIZE_SHIFT)[industry], 1.6)
    employees = np.clip(np.round(np.exp(log_emp)), 1, 100_000).astype(np.int64)
    revenue = employees * np.asarray(_REVENUE_PER_EMPLOYEE)[industry] * np.exp(rng.normal(0, 0.45, n))
    country = _pick(rng, _COUNTRY_P, n)
    # tech stack: weighted sampling without replacement (Efraimidis–Spirakis keys)
    keys = rng.random((n, len(_TECH))) ** (1.0 / np.asarray(_TECH_W))
    order = np.argsort(-keys, axis=1)
    n_tech = np.clip(rng.poisson(2.2, n), 0, 6)
    tech = np.array(_TECH, dtype=object)
    tech_stack = [";".join(tech[o[:k]]) for o, k in zip(order, n_tech, strict=True)]
    name, domain = _company_names(cosmetic, industry, country)
    return pd.DataFrame(
        {
            "account_id": _ids("A", n, 6),
            "industry": _strings(industry, _INDUSTRIES),
            "employees": employees,
            "annual_revenue": np.round(revenue, -3).astype(np.float64),
            "country": _strings(country, _COUNTRIES),
            "name": pd.Series(name, dtype="str"),
            "tech_stack": pd.Series(tech_stack, dtype="str"),
            "domain": pd.Series(domain, dtype="str"),
        }
    )


def _company_names(rng: np.random.Generator, industry: I64, country: I64) -> tuple[list[str], list[str]]:
    """Invented brand names ("Zentora Cloud") and unique domains; never used by the process."""
    n = len(industry)
    syl = np.array(_SYLLABLES, dtype=object)
    parts = syl[rng.integers(0, len(syl), (n, 3))]
    three = rng.random(n) < 0.6
    brand = parts[:, 0] + parts[:, 1] + np.where(three, parts[:, 2], "")
    words = np.array(_INDUSTRY_WORDS, dtype=object)[industry, rng.integers(0, 3, n)]
    name = [b.capitalize() + " " + w for b, w in zip(brand, words, strict=True)]
    tld = np.where(rng.random(n) < 0.6, ".com", np.array(_COUNTRY_TLD, dtype=object)[country])
    tld = np.where((industry == 2) & (rng.random(n) < 0.4), ".io", tld)
    base = pd.Series(brand + tld)
    dup = base.groupby(base).cumcount().to_numpy()
    domain = np.where(dup > 0, brand + np.char.mod("%d", dup + 1).astype(object) + tld, brand + tld)
    return name, list(domain)


def _arrival_days(rng: np.random.Generator, n: int, start: pd.Timestamp, n_days: int, amp: float) -> I64:
    """Creation day of each lead: yearly cycle (Q4 peak, August dip) times a weekday effect."""
    dates = start + pd.to_timedelta(np.arange(n_days), unit="D")
    month_pos = dates.month.to_numpy() - 1 + (dates.day.to_numpy() - 0.5) / dates.days_in_month.to_numpy()
    season = np.interp(month_pos - 0.5, np.arange(12), _MONTH_PROFILE, period=12)
    weight = (1.0 + amp * season) * np.asarray(_WEEKDAY_W)[dates.dayofweek.to_numpy()]
    counts = rng.multinomial(n, weight / weight.sum())
    return np.repeat(np.arange(n_days), counts)


def _make_leads(
    rng: np.random.Generator, n: int, accounts: pd.DataFrame, params: GenerateParams, n_days: int
) -> _Leads:
    day0 = _arrival_days(rng, n, pd.Timestamp(params.start), n_days, params.seasonality)
    tod = _business_time(rng, n).clip(0, DAY - 2)  # never the last second: the day must have room
    created = np.sort(day0 * DAY + tod)
    day0 = created // DAY

    competitor = rng.random(n) < 0.01
    student = ~competitor & (rng.random(n) < 0.04)
    no_account = competitor | (student & (rng.random(n) < 0.75)) | (rng.random(n) < 0.01)
    account = np.full(n, -1, dtype=np.int64)
    with_acc = np.flatnonzero(~no_account)
    account[with_acc] = _assign_accounts(rng, len(with_acc), accounts["employees"].to_numpy())
    employees = np.where(account >= 0, accounts["employees"].to_numpy()[account].astype(float), np.nan)
    ind_code = pd.Index(_INDUSTRIES).get_indexer(accounts["industry"].to_numpy())
    industry = np.where(account >= 0, ind_code[account], -1)

    small = ~(employees >= 20)
    seniority = np.where(small, _pick(rng, _SEN_P_SMALL, n), _pick(rng, _SEN_P_LARGE, n))
    seniority[student] = _S["student"]
    dept_names = list(_DEPT_P)
    department = np.array([_D[d] for d in dept_names])[_pick(rng, tuple(_DEPT_P.values()), n)]
    department[np.isin(seniority, [_S["c_level"], _S["owner"]])] = _D["executive"]
    department[student] = _D["education"]
    source = _pick(rng, _SOURCE_P, n)
    personal = rng.random(n) < np.asarray(_PERSONAL_BY_SOURCE)[source]
    personal = np.where(student, rng.random(n) < 0.5, personal)
    personal = (personal | (no_account & ~student)) & ~competitor
    return _Leads(
        created=created,
        day0=day0,
        life=n_days - day0,
        account=account,
        employees=employees,
        industry=industry,
        seniority=seniority,
        department=department,
        source=source,
        personal=personal,
        competitor=competitor,
        student=student,
    )


def _assign_accounts(rng: np.random.Generator, n_leads: int, employees: I64) -> I64:
    """Account of each lead: every account gets one lead first, larger accounts get more of the rest."""
    n_acc = len(employees)
    first = rng.permutation(n_acc)[: min(n_acc, n_leads)]
    weight = employees.astype(float) ** 0.35
    rest = _pick(rng, weight, n_leads - len(first))
    return rng.permutation(np.concatenate([first, rest]))


def _titles(rng: np.random.Generator, cosmetic: np.random.Generator, lead: _Leads) -> pd.Series:
    """Free-text job titles from (seniority, department), with case variants, typos and junk."""
    table: dict[tuple[int, int], list[str]] = {}
    for dept, label in _DEPT_LABEL.items():
        d = _D[dept]
        table[(_S["individual"], d)] = _INDIVIDUAL_TITLES[dept]
        table[(_S["manager"], d)] = [
            f"{label} Manager",
            f"Senior {label} Manager",
            f"{label} Team Lead",
            f"Manager, {label}",
            *_EXTRA_TITLES.get(("manager", dept), []),
        ]
        table[(_S["director"], d)] = [
            f"Director of {label}",
            f"{label} Director",
            f"Sr. Director, {label}",
            f"Head of {label}",
            *_EXTRA_TITLES.get(("director", dept), []),
        ]
        table[(_S["vp"], d)] = [
            f"VP of {label}",
            f"Vice President, {label}",
            f"VP {label}",
            f"SVP {label}",
            *_EXTRA_TITLES.get(("vp", dept), []),
        ]
    for s in ("c_level", "owner", "student"):
        for d in range(len(_DEPARTMENTS)):
            table[(_S[s], d)] = _SPECIAL_TITLES[s]
    vocab = sorted({t for titles in table.values() for t in titles})
    where = {t: i for i, t in enumerate(vocab)}
    width = max(len(v) for v in table.values())
    cand = np.full((len(_SENIORITIES), len(_DEPARTMENTS), width), -1, dtype=np.int64)
    n_cand = np.ones((len(_SENIORITIES), len(_DEPARTMENTS)), dtype=np.int64)
    for (s, d), titles in table.items():
        cand[s, d, : len(titles)] = [where[t] for t in titles]
        n_cand[s, d] = len(titles)
    k = (rng.random(len(lead.seniority)) * n_cand[lead.seniority, lead.department]).astype(np.int64)
    base = cand[lead.seniority, lead.department, k]
    # variants: as typed, lower case, upper case, one typo; ~1 % junk ("n/a", "-")
    variants = [v for t in vocab for v in (t, t.lower(), t.upper(), _typo(cosmetic, t))]
    variant = _pick(cosmetic, (0.85, 0.08, 0.03, 0.04), len(base))
    code = base * 4 + variant
    junk = cosmetic.random(len(base)) < 0.01
    code[junk] = len(variants) + cosmetic.integers(0, len(_JUNK_TITLES), int(junk.sum()))
    return _strings(code, variants + list(_JUNK_TITLES))


def _typo(rng: np.random.Generator, title: str) -> str:
    """Drop or swap one letter (``Markting Manager``, ``Dirctor``)."""
    letters = [i for i, c in enumerate(title) if c.isalpha()]
    if len(letters) < 4:
        return title
    i = letters[int(rng.integers(1, len(letters) - 1))]
    if rng.random() < 0.5:
        return title[:i] + title[i + 1 :]
    return title[:i] + title[i + 1] + title[i] + title[i + 2 :]


_INDIVIDUAL_TITLES: Final = {
    "sales": [
        "Account Executive",
        "Sales Development Representative",
        "SDR",
        "BDR",
        "Inside Sales Rep",
        "Sales Representative",
        "Account Manager",
    ],
    "marketing": [
        "Marketing Specialist",
        "Marketing Coordinator",
        "Content Marketer",
        "Growth Marketer",
        "Demand Generation Specialist",
        "Digital Marketing Specialist",
        "Marketing Ops Specialist",
        "SEO Specialist",
    ],
    "it": [
        "Systems Administrator",
        "IT Specialist",
        "Help Desk Analyst",
        "Network Engineer",
        "IT Support Technician",
    ],
    "engineering": [
        "Software Engineer",
        "Sr. Software Engineer",
        "Senior Software Engineer",
        "Data Engineer",
        "Developer",
        "Full Stack Developer",
        "Data Scientist",
        "DevOps Engineer",
    ],
    "finance": ["Financial Analyst", "Accountant", "FP&A Analyst", "Billing Specialist"],
    "operations": [
        "Operations Analyst",
        "RevOps Analyst",
        "Sales Operations Specialist",
        "Business Analyst",
        "Operations Coordinator",
    ],
    "hr": ["HR Generalist", "Recruiter", "Talent Acquisition Specialist", "People Partner"],
    "other": ["Consultant", "Analyst", "Project Coordinator", "Associate", "Specialist"],
}
_EXTRA_TITLES: Final = {
    ("manager", "it"): ["IT Manager"],
    ("manager", "engineering"): ["Engineering Manager"],
    ("manager", "operations"): ["RevOps Manager", "Sales Ops Manager"],
    ("manager", "marketing"): ["Demand Gen Manager", "Product Marketing Manager"],
    ("manager", "sales"): ["Sales Manager", "Regional Sales Manager"],
    ("director", "operations"): ["Head of RevOps", "Director, Revenue Operations"],
    ("director", "engineering"): ["Head of Engineering"],
    ("director", "it"): ["IT Director"],
    ("vp", "operations"): ["VP Revenue Operations"],
    ("vp", "sales"): ["VP Sales"],
}
_SPECIAL_TITLES: Final = {
    "c_level": [
        "CEO",
        "CTO",
        "CMO",
        "CFO",
        "COO",
        "CRO",
        "CIO",
        "Chief Marketing Officer",
        "Chief Revenue Officer",
        "Chief Executive Officer",
        "Chief Technology Officer",
    ],
    "owner": [
        "Owner",
        "Founder",
        "Co-Founder",
        "CEO & Founder",
        "Founder & CEO",
        "Owner/Operator",
        "Managing Partner",
        "President & Owner",
    ],
    "student": [
        "Student",
        "MBA Student",
        "Graduate Student",
        "Intern",
        "PhD Candidate",
        "Marketing Intern",
        "Undergraduate",
    ],
}
_JUNK_TITLES: Final = ("n/a", "-", ".", "none", "x", "test")


def _leads_frame(
    rng: np.random.Generator,
    cosmetic: np.random.Generator,
    lead: _Leads,
    accounts: pd.DataFrame,
    features: FeatureParams,
    start: np.datetime64,
) -> pd.DataFrame:
    n = len(lead.created)
    acc_country = pd.Index(_COUNTRIES).get_indexer(accounts["country"].to_numpy())
    country = _pick(rng, _COUNTRY_P, n)
    keep = (lead.account >= 0) & (rng.random(n) < 0.9)
    country = np.where(keep, acc_country[lead.account], country)

    personal_domains = list(features.personal_domains)
    pw = np.array([_PERSONAL_W.get(d, 1.0) for d in personal_domains])
    business = lead.account >= 0
    domains = accounts["domain"].to_numpy(dtype=object)
    email_domain = np.where(business, domains[np.maximum(lead.account, 0)], None).astype(object)
    pers = lead.personal
    email_domain[pers] = np.array(personal_domains, dtype=object)[_pick(rng, pw, int(pers.sum()))]
    edu = lead.student & ~pers
    email_domain[edu] = np.array(_EDU_DOMAINS, dtype=object)[rng.integers(0, len(_EDU_DOMAINS), edu.sum())]
    comp = lead.competitor
    email_domain[comp] = np.array(features.competitor_domains, dtype=object)[
        rng.integers(0, len(features.competitor_domains), comp.sum())
    ]
    # leads without an account and without a personal/edu/competitor domain do not exist (see _make_leads)

    first = np.array(_FIRST, dtype=object)[cosmetic.integers(0, len(_FIRST), n)]
    last = np.array(_LAST, dtype=object)[cosmetic.integers(0, len(_LAST), n)]
    email = _emails(cosmetic, first, last, email_domain, pers)

    # the CRM has seniority / department for ~70 % (enrichment); the rest must be parsed from titles
    known_sen = rng.random(n) < 0.7
    known_dep = rng.random(n) < 0.7
    return pd.DataFrame(
        {
            "lead_id": _ids("L", n, 7),
            "account_id": _strings(
                np.where(lead.account >= 0, lead.account, -1), accounts["account_id"].tolist()
            ),
            "created_at": _timestamps(lead.created, start),
            "email_domain": pd.Series(email_domain, dtype="str"),
            "job_title": _titles(rng, cosmetic, lead),
            "seniority": _strings(np.where(known_sen, lead.seniority, -1), _SENIORITIES),
            "department": _strings(np.where(known_dep, lead.department, -1), _DEPARTMENTS),
            "country": _strings(country, _COUNTRIES),
            "lead_source": _strings(lead.source, _SOURCES),
            "first_name": pd.Series(first, dtype="str"),
            "last_name": pd.Series(last, dtype="str"),
            "email": pd.Series(email, dtype="str"),
        }
    )


def _emails(
    rng: np.random.Generator,
    first: NDArray[np.object_],
    last: NDArray[np.object_],
    domain: NDArray[np.object_],
    personal: NDArray[np.bool_],
) -> NDArray[np.object_]:
    f = np.char.lower(first.astype(str)).astype(object)
    la = np.char.replace(np.char.replace(np.char.lower(last.astype(str)), " ", ""), "'", "").astype(object)
    initial = np.array([s[:1] for s in f], dtype=object)
    pattern = rng.integers(0, 4, len(f))
    local = np.select([pattern == 0, pattern == 1, pattern == 2], [f + "." + la, initial + la, f], f + la)
    digits = np.char.mod("%d", rng.integers(1, 999, len(f))).astype(object)
    local = np.where(personal, local + digits, local)
    return local + "@" + domain


# === latents ============================================================================================
@dataclass
class _Latents:
    """Everything the process draws per lead (the oracle's knowledge, with the bursts)."""

    amplitude: F64
    tau: F64
    rho: F64
    log_webinar: F64
    log_pricing: F64
    bursts: NDArray[np.int32]  # padded burst start days (lead grid), _NO_BURST = none
    mult_pre: F64  # hazard multiplier of a burst starting before the drift date
    mult_post: F64
    drift_day: I64  # lead grid day from which bursts are drifted (huge when drift is off)
    win_score: F64  # logit of the win probability, before the calibrated intercept
    close_scale: F64  # Gamma scale of the opportunity → close delay (days)
    type_weight: F64  # lead × primary type: interest-driven rate per unit interest
    background: F64  # per-day background event rate
    unsub: F64  # per-day unsubscribe rate when interest is low
    click_p: F64
    attend_p: F64


def _fit(rng: np.random.Generator, lead: _Leads, features: FeatureParams) -> tuple[F64, F64]:
    """Fit = observable firmographic/persona terms + a small unobserved noise."""
    emp = lead.employees
    lo, hi = features.sweet_spot
    size = np.select(
        [np.isnan(emp), emp < 10, emp < lo, emp <= hi, emp < 5000], [-0.4, -0.7, 0.0, 0.6, 0.15], -0.2
    )
    target = np.isin(
        lead.industry, [_INDUSTRIES.index(i) for i in features.target_industries if i in _INDUSTRIES]
    )
    low = np.isin(lead.industry, [_INDUSTRIES.index(i) for i in _LOW_FIT_INDUSTRIES])
    industry = np.where(target, _FIT_INDUSTRY_TARGET, np.where(low, _FIT_INDUSTRY_LOW, 0.0))
    dept = np.array([_FIT_DEPT[d] for d in _DEPARTMENTS])[lead.department]
    fit_obs = (
        size
        + industry
        + np.asarray(_FIT_SENIORITY)[lead.seniority]
        + dept
        + np.asarray(_FIT_SOURCE)[lead.source]
        + _FIT_PERSONAL * lead.personal
        + _FIT_COMPETITOR * lead.competitor
    )
    noise = rng.normal(0.0, FIT_NOISE_SD, len(emp))
    return FIT_SCALE * fit_obs + noise, noise


def _latents(rng: np.random.Generator, lead: _Leads, params: GenerateParams, drift_day: int) -> _Latents:
    n = len(lead.created)
    src = lead.source
    # heterogeneity the oracle knows but a model must infer from events is kept moderate
    amplitude = np.asarray(_AMPLITUDE_BY_SOURCE)[src] * np.exp(rng.normal(0.0, 0.35, n))
    tau = np.clip(np.exp(rng.normal(np.log(12.0), 0.2, n)), 3.0, 60.0)
    # established companies (≥ 50 employees) come back to market more often
    established = np.nan_to_num(lead.employees, nan=0.0) >= 50
    rho = np.exp(rng.normal(np.log(1 / 700) + 0.4 * established, 0.2, n))
    log_webinar = rng.normal(np.where(src == _SRC["webinar"], 1.0, 0.0), 0.7)
    log_pricing = rng.normal(np.where(lead.competitor, np.log(4.0), 0.0), 0.5)

    # return-to-market bursts: Poisson(ρ) per day on days 1..life−1 ⇔ Poisson(ρ·(life−1)) uniform days
    n_extra = rng.poisson(rho * np.maximum(lead.life - 1, 0))
    owner = np.repeat(np.arange(n), n_extra)
    extra_day = 1 + (rng.random(len(owner)) * (lead.life[owner] - 1)).astype(np.int64)
    order = np.lexsort((extra_day, owner))
    bursts = np.full((n, 1 + int(n_extra.max(initial=0))), _NO_BURST, dtype=np.int32)
    bursts[:, 0] = 0
    col = 1 + np.arange(len(owner)) - np.repeat(np.cumsum(n_extra) - n_extra, n_extra)
    bursts[owner, col] = extra_day[order]

    d = params.drift
    web_post, price_post = (d.webinar_effect, d.pricing_effect) if d.enabled else (1.0, 1.0)
    mult_pre = np.exp(WEBINAR_BETA * log_webinar + PRICING_BETA * log_pricing)
    mult_post = np.exp(WEBINAR_BETA * web_post * log_webinar + PRICING_BETA * price_post * log_pricing)
    lead_drift_day = (drift_day - lead.day0) if d.enabled else np.full(n, 1 << 40)

    emp = lead.employees
    size_win = np.select(
        [np.isnan(emp), emp < 10, emp < 50, emp <= 500, emp < 5000], [-0.2, -0.3, 0.0, 0.3, 0.0], -0.4
    )
    sen_win = np.array([-1.0, -0.3, 0.0, 0.2, 0.3, 0.4, 0.4])[lead.seniority]
    win_score = 0.35 * lead.fit + size_win + sen_win
    close_class = np.select([~(emp >= 50), emp < 1000], [0, 1], 2)
    close_scale = np.asarray(CLOSE_MEAN_DAYS)[close_class] / CLOSE_SHAPE

    type_weight = _type_weights(rng, lead, np.exp(log_webinar), np.exp(log_pricing))
    return _Latents(
        amplitude=amplitude,
        tau=tau,
        rho=rho,
        log_webinar=log_webinar,
        log_pricing=log_pricing,
        bursts=bursts,
        mult_pre=mult_pre,
        mult_post=mult_post,
        drift_day=lead_drift_day,
        win_score=win_score,
        close_scale=close_scale,
        type_weight=type_weight,
        background=_BACKGROUND_RATE * np.exp(rng.normal(0.0, 0.5, n)),
        unsub=_UNSUB_RATE * np.exp(rng.normal(0.0, 0.5, n)),
        click_p=np.clip(_CLICK_P * np.exp(rng.normal(0.0, 0.4, n)), 0.0, 0.8),
        attend_p=np.clip(_ATTEND_P * np.exp(0.3 * log_webinar), 0.0, 0.9),
    )


def _type_weights(rng: np.random.Generator, lead: _Leads, webinar: F64, pricing: F64) -> F64:
    """Per lead and primary type: interest-driven events per day per unit of interest."""
    n = len(lead.created)
    # events see the lead's intent, not the competitor penalty (competitors browse like buyers)
    intent = np.exp(lead.fit - FIT_SCALE * _FIT_COMPETITOR * lead.competitor)
    sen = lead.seniority
    senior = np.select(
        [sen == _S["student"], sen == _S["individual"], sen == _S["manager"]], [0.4, 0.8, 1.2], 1.5
    )
    dept = lead.department
    mult = {
        "pricing_view": pricing * senior,
        "demo_view": senior,
        "content_download": np.select([lead.student, sen == _S["individual"]], [3.0, 1.3], 1.0)
        * np.where(lead.source == _SRC["content"], 2.0, 1.0),
        "webinar_register": webinar,
        "email_open": np.exp(rng.normal(0.0, 0.5, n)),
        "demo_request": np.where(lead.student, 0.0, 1.0),
        "trial_signup": np.where(np.isin(dept, [_D["engineering"], _D["it"]]), 2.0, 1.0)
        * np.where(lead.student, 0.3, 1.0),
        "meeting_booked": np.where(lead.student, 0.0, 1.0)
        * np.where(lead.source == _SRC["outbound"], 2.0, 1.0),
    }
    cols = []
    for name, (base, slope) in _PRIMARY.items():
        cols.append(base * intent**slope * mult.get(name, 1.0))
    return np.column_stack(cols)


# === simulation =========================================================================================
@dataclass
class _Events:
    lead: NDArray[np.int32]
    sec: I64
    kind: NDArray[np.int8]


def _simulate_events(rng: np.random.Generator, lead: _Leads, lat: _Latents) -> _Events:
    """Events of every lead, chunk by chunk (lead × day grid), sorted by (lead, time)."""
    parts = [_chunk_events(rng, lead, lat, sl) for sl in _chunks(len(lead.created), _CHUNK)]
    return _Events(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("lead", "sec", "kind")))


def _chunk_events(rng: np.random.Generator, lead: _Leads, lat: _Latents, sl: slice) -> _Events:
    n = sl.stop - sl.start
    life = lead.life[sl]
    days = np.arange(int(life.max()))
    alive = days[None, :] < life[:, None]
    interest = _burst_sum(days, lat.bursts[sl], lat.tau[sl]) * lat.amplitude[sl, None] * alive
    rows = np.arange(n)

    # interest-driven events: Poisson totals, spread over days ∝ I(d) (⇔ Poisson per day)
    tw = lat.type_weight[sl]
    count = rng.poisson(interest.sum(axis=1) * tw.sum(axis=1))
    r1 = np.repeat(rows, count)
    day1 = _pick_rows(rng, interest, r1)
    kind1 = np.asarray([_T[t] for t in _PRIMARY])[_pick_rows(rng, tw, r1)]

    # background: constant rate over the life
    count2 = rng.poisson(lat.background[sl] * life)
    r2 = np.repeat(rows, count2)
    day2 = (rng.random(len(r2)) * life[r2]).astype(np.int64)
    kind2 = np.asarray([_T[t] for t in _BACKGROUND_MIX])[_pick(rng, tuple(_BACKGROUND_MIX.values()), len(r2))]

    r = np.concatenate([r1, r2])
    day = np.concatenate([day1, day2])
    kind = np.concatenate([kind1, kind2])
    sec = _event_seconds(rng, lead.created[sl][r], lead.day0[sl][r], day)

    # creation events of inbound leads (the form that created them)
    cr, ck = [], []
    for src, types in _CREATION_EVENTS.items():
        who = np.flatnonzero(lead.source[sl] == _SRC[src])
        for t in types:
            cr.append(who)
            ck.append(np.full(len(who), _T[t]))
    cr_rows = np.concatenate(cr)
    r = np.concatenate([r, cr_rows])
    kind = np.concatenate([kind, np.concatenate(ck)])
    sec = np.concatenate([sec, lead.created[sl][cr_rows]])

    # a return to market usually starts with a touch (a form, a visit, a registration)
    rb, cb = np.nonzero(lat.bursts[sl][:, 1:] != _NO_BURST)
    touch = rng.random(len(rb)) < _REENTRY_P
    rb, tday = rb[touch], lat.bursts[sl][rb[touch], cb[touch] + 1].astype(np.int64)
    tkind = np.asarray([_T[t] for t in _REENTRY_MIX])[_pick(rng, tuple(_REENTRY_MIX.values()), len(rb))]
    r = np.concatenate([r, rb])
    kind = np.concatenate([kind, tkind])
    sec = np.concatenate([sec, _event_seconds(rng, lead.created[sl][rb], lead.day0[sl][rb], tday)])

    r, sec, kind = _derived_events(rng, lat, sl, r, sec, kind, lead.life[sl] + lead.day0[sl])
    r, sec, kind = _unsubscribe(rng, lead, lat, sl, interest, alive, r, sec, kind)

    order = np.lexsort((kind, sec, r))
    r, sec, kind = r[order], sec[order], kind[order]
    keep = np.ones(len(r), dtype=bool)  # (lead, ts, type) is the primary key: drop exact repeats
    keep[1:] = (r[1:] != r[:-1]) | (sec[1:] != sec[:-1]) | (kind[1:] != kind[:-1])
    return _Events((r[keep] + sl.start).astype(np.int32), sec[keep], kind[keep].astype(np.int8))


def _event_seconds(rng: np.random.Generator, created: I64, day0: I64, day: I64) -> I64:
    """Business-hour-ish times; on the creation day uniform after the creation time."""
    tod = _business_time(rng, len(day))
    first_tod = created - day0 * DAY
    same_day = first_tod + (rng.random(len(day)) * (DAY - first_tod)).astype(np.int64)
    return (day0 + day) * DAY + np.where(day == 0, same_day, tod)


def _derived_events(
    rng: np.random.Generator, lat: _Latents, sl: slice, r: I64, sec: I64, kind: I64, end_day: I64
) -> tuple[I64, I64, I64]:
    """Webinar attendance after registrations and clicks after opens (before the export end)."""
    reg = np.flatnonzero((kind == _T["webinar_register"]) & (rng.random(len(kind)) < lat.attend_p[sl][r]))
    att_day = sec[reg] // DAY + rng.integers(1, 15, len(reg))
    att_sec = att_day * DAY + _business_time(rng, len(reg))
    ok = att_day < end_day[r[reg]]
    opens = np.flatnonzero((kind == _T["email_open"]) & (rng.random(len(kind)) < lat.click_p[sl][r]))
    click_sec = sec[opens] + rng.integers(5, 3600, len(opens))
    ok2 = click_sec < end_day[r[opens]] * DAY
    return (
        np.concatenate([r, r[reg][ok], r[opens][ok2]]),
        np.concatenate([sec, att_sec[ok], click_sec[ok2]]),
        np.concatenate(
            [kind, np.full(ok.sum(), _T["webinar_attend"]), np.full(ok2.sum(), _T["email_click"])]
        ),
    )


def _unsubscribe(
    rng: np.random.Generator,
    lead: _Leads,
    lat: _Latents,
    sl: slice,
    interest: F64,
    alive: NDArray[np.bool_],
    r: I64,
    sec: I64,
    kind: I64,
) -> tuple[I64, I64, I64]:
    """At most one unsubscribe, likelier while interest is low; no e-mail events after it."""
    hazard = lat.unsub[sl, None] * (0.1 + np.exp(-interest / 0.05)) * alive
    day = _first_crossing(np.cumsum(hazard, axis=1), rng.exponential(size=len(hazard)))
    who = np.flatnonzero(day >= 0)
    u_sec = _event_seconds(rng, lead.created[sl][who], lead.day0[sl][who], day[who])
    cut = np.full(len(hazard), np.iinfo(np.int64).max)
    cut[who] = u_sec
    email = (kind == _T["email_open"]) | (kind == _T["email_click"])
    keep = ~(email & (sec > cut[r]))
    return (
        np.concatenate([r[keep], who]),
        np.concatenate([sec[keep], u_sec]),
        np.concatenate([kind[keep], np.full(len(who), _T["unsubscribe"])]),
    )


def _hazard_weights(lat: _Latents, sl: slice, kappa: float, fit: F64) -> F64:
    """Per-burst hazard per unit of g: κ·e^{fit}·A·m_b (m_b drifted for bursts on/after the drift day)."""
    b = lat.bursts[sl]
    post = b >= lat.drift_day[sl, None]
    mult = np.where(post, lat.mult_post[sl, None], lat.mult_pre[sl, None])
    return kappa * np.exp(fit[sl])[:, None] * lat.amplitude[sl, None] * mult


def _handoff(rng: np.random.Generator, lead: _Leads, lat: _Latents, kappa: float) -> I64:
    """Hand-off time (seconds since start, −1 if none before the export end) by inverse transform."""
    n = len(lead.created)
    level = rng.exponential(size=n)
    u = rng.random(n)
    out = np.full(n, -1, dtype=np.int64)
    for sl in _chunks(n, _CHUNK):
        days = np.arange(int(lead.life[sl].max()))
        w = _hazard_weights(lat, sl, kappa, lead.fit)
        hazard = _burst_sum(days, lat.bursts[sl], lat.tau[sl], w) * (days[None, :] < lead.life[sl, None])
        day = _first_crossing(np.cumsum(hazard, axis=1), level[sl])
        first_tod = lead.created[sl] - lead.day0[sl] * DAY
        lo = np.where(day == 0, first_tod + 1, 1)  # uniform within the day, after creation on day 0
        tod = lo + (u[sl] * (DAY - lo)).astype(np.int64)
        out[sl] = np.where(day >= 0, (lead.day0[sl] + day) * DAY + tod, -1)
    return out


# === calibration ========================================================================================
def _handoff_prob_from_creation(a: F64, rho: F64, g_cum: F64, horizon: I64) -> F64:
    """P(hand-off within ``horizon`` days of creation), future bursts marginalised.

    ``a``: hazard per unit of g of a burst; ``g_cum[:, i]`` = G(i + 1) = Σ_{d≤i} g((d + ½)/τ).
    """
    rows = np.arange(len(a))
    h = horizon - 1
    known = a * g_cum[rows, h]  # the first burst over days 0..H−1
    # a burst starting on day j = 1..H−1 adds a·G(H − j): Σ_j (1 − e^{−a·G(H−j)}) = Φ(H − 1)
    phi = np.cumsum(-np.expm1(-a[:, None] * g_cum), axis=1)
    future = np.where(h >= 1, phi[rows, np.maximum(h - 1, 0)], 0.0)
    return -np.expm1(-known - rho * future)


def _solve_increasing(
    f: Callable[[float], float], lo: float, hi: float, target: float, iters: int = 50
) -> float:
    """Bisection for an increasing scalar function."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _calibrate(
    rng: np.random.Generator,
    lead: _Leads,
    lat: _Latents,
    marketing_mql: NDArray[np.bool_],
    params: GenerateParams,
    n_days: int,
) -> tuple[float, float]:
    """κ such that (#SQL)/(#MQL) ≈ rates.mql_to_sql, and the win intercept for rates.sql_to_won.

    Uses (up to 3000) leads created in the first half of the span over their whole life, with exact
    hand-off probabilities from the latents; events, hence marketing MQLs, do not depend on κ. A lead
    has an MQL when the points rule fires or, failing that, when it is handed off (sales-sourced).
    """
    cohort = np.flatnonzero(lead.day0 < n_days // 2)
    if len(cohort) > 3000:
        cohort = np.sort(rng.choice(cohort, 3000, replace=False))
    horizon = lead.life[cohort]
    days = np.arange(int(horizon.max()))
    g_cum = np.cumsum(_g((days[None, :] + 0.5) / lat.tau[cohort, None]), axis=1)
    a = np.exp(lead.fit[cohort]) * lat.amplitude[cohort] * lat.mult_pre[cohort]
    rho = lat.rho[cohort]
    m = marketing_mql[cohort]

    def rate(log_kappa: float) -> float:
        p = _handoff_prob_from_creation(np.exp(log_kappa) * a, rho, g_cum, horizon)
        return float(p.sum() / (m.sum() + p[~m].sum()))

    kappa = float(np.exp(_solve_increasing(rate, np.log(1e-7), np.log(10.0), params.rates.mql_to_sql, 36)))
    p = _handoff_prob_from_creation(kappa * a, rho, g_cum, horizon)
    win_target = min(params.rates.sql_to_won / params.rates.sql_to_opportunity, 0.95)
    score = lat.win_score[cohort]
    intercept = _solve_increasing(
        lambda c: float((p * expit(c + score)).sum() / p.sum()), -10.0, 10.0, win_target
    )
    return kappa, intercept


# === marketing stages ===================================================================================
def _mql_qualifies(ev: _Events, lead: _Leads, features: FeatureParams, threshold: float) -> NDArray[np.bool_]:
    """Per event: does the marketing points rule reach the threshold at this event?

    Fit points from the lead's attributes; engagement points for each scoring type present at least
    once in the trailing ``baseline.window_days`` (e-mail opens: at least three).
    """
    base = BaselineParams()
    pts, window = base.points, base.window_days * DAY
    lo, hi = features.sweet_spot
    emp = lead.employees
    senior = np.isin(lead.seniority, [_S[s] for s in base.senior_levels if s in _S])
    fit_pts = (
        pts.size_sweet_spot * ((emp >= lo) & (emp <= hi))
        + pts.senior_title * senior
        + pts.personal_email * lead.personal
        + pts.student * lead.student
        + pts.competitor * lead.competitor
    )
    score = fit_pts[ev.lead].astype(float)
    idx = np.arange(len(ev.lead))
    for name, value in (
        ("pricing_view", pts.pricing_view),
        ("content_download", pts.content_download),
        ("webinar_attend", pts.webinar_attend),
        ("demo_view", pts.demo_view),
    ):
        last = np.maximum.accumulate(np.where(ev.kind == _T[name], idx, -1))
        ok = (last >= 0) & (ev.lead[np.maximum(last, 0)] == ev.lead)
        score += value * (ok & (ev.sec - ev.sec[np.maximum(last, 0)] <= window))
    opens = np.flatnonzero(ev.kind == _T["email_open"])
    third = np.full(len(opens), np.iinfo(np.int64).min // 2)  # time of the 3rd most recent open
    same = ev.lead[opens[2:]] == ev.lead[opens[:-2]]
    third[2:] = np.where(same, ev.sec[opens[:-2]], third[2:])
    last_open = np.maximum.accumulate(np.where(ev.kind == _T["email_open"], np.arange(len(idx)), -1))
    pos = np.searchsorted(opens, np.maximum(last_open, 0))
    ok = (last_open >= 0) & (ev.lead[np.maximum(last_open, 0)] == ev.lead)
    score += pts.email_opens_3plus * (ok & (ev.sec - third[pos] <= window))
    return score >= threshold


@dataclass
class _Stages:
    lead: list[I64] = field(default_factory=list)
    stage: list[I64] = field(default_factory=list)
    sec: list[I64] = field(default_factory=list)
    reason: list[I64] = field(default_factory=list)

    def add(self, lead: I64, stage: str, sec: I64, reason: I64 | int = -1) -> None:
        self.lead.append(np.asarray(lead, dtype=np.int64))
        self.stage.append(np.full(len(lead), _STAGE[stage]))
        self.sec.append(np.asarray(sec, dtype=np.int64))
        self.reason.append(np.broadcast_to(np.asarray(reason, dtype=np.int64), (len(lead),)).copy())


def _keys(lead: NDArray[np.integer], sec: I64) -> I64:
    return (lead.astype(np.int64) << _KEY_SHIFT) + sec


def _next_after(keys: I64, lead: I64, sec: I64) -> tuple[I64, NDArray[np.bool_]]:
    """Position of the first key of ``lead`` strictly after ``sec`` and whether it exists."""
    pos = np.searchsorted(keys, _keys(lead, sec), side="right")
    ok = pos < len(keys)
    ok[ok] = (keys[pos[ok]] >> _KEY_SHIFT) == lead[ok]
    return pos, ok


def _marketing_stages(
    rng: np.random.Generator,
    ev: _Events,
    qualifies: NDArray[np.bool_],
    lead: _Leads,
    handoff: I64,
    end: int,
    out: _Stages,
) -> tuple[I64, NDArray[np.bool_]]:
    """MQL cycles (MQL → recycled after QUIET_DAYS quiet → MQL ...) and disqualification.

    Returns the last marketing row time per lead (−1 if none) and whether the lead's current cycle has
    an MQL (so the hand-off does not need a sales-sourced one).
    """
    n = len(lead.created)
    stop = np.where(handoff >= 0, handoff, end + 1)
    q_keys = _keys(ev.lead[qualifies], ev.sec[qualifies])
    active_kinds = (ev.kind != _T["email_open"]) & (ev.kind != _T["unsubscribe"])
    a_lead, a_sec = ev.lead[active_kinds], ev.sec[active_kinds]
    a_keys = _keys(a_lead, a_sec)
    gap = np.full(len(a_sec), np.iinfo(np.int64).max)
    same = a_lead[1:] == a_lead[:-1]
    gap[:-1] = np.where(same, a_sec[1:] - a_sec[:-1], gap[:-1])
    quiet = QUIET_DAYS * DAY
    big = len(a_sec)
    # index of the first activity at/after each position followed by a quiet gap (within the lead,
    # since the last activity of a lead always has an infinite gap)
    first_gap = np.minimum.accumulate(np.where(gap > quiet, np.arange(big), big)[::-1])[::-1]

    leads = np.arange(n)
    pos, ok = _next_after(q_keys, leads, lead.created - 1)
    m1 = np.where(ok, q_keys[np.minimum(pos, len(q_keys) - 1)] & ((1 << _KEY_SHIFT) - 1), -1)

    dq_sec, dq_reason = _disqualification(rng, lead, m1)
    stop = np.minimum(stop, np.where(dq_sec >= 0, dq_sec, stop))
    last_row = np.full(n, -1, dtype=np.int64)
    open_mql = np.zeros(n, dtype=bool)
    cur, who = m1, leads
    while True:
        live = (cur >= 0) & (cur < stop[who])
        who, cur = who[live], cur[live]
        if not len(who):
            break
        out.add(who, "mql", cur)
        last_row[who], open_mql[who] = cur, True
        p, has = _next_after(a_keys, who, cur)
        nxt = a_sec[np.minimum(p, big - 1)]
        soon = has & (nxt - cur <= quiet)
        recycle = np.where(soon, a_sec[first_gap[np.minimum(p, big - 1)]], cur) + quiet
        live = recycle < stop[who]
        who, recycle = who[live], recycle[live]
        out.add(who, "recycled", recycle, _R["bad_timing"])
        last_row[who], open_mql[who] = recycle, False
        p, has = _next_after(q_keys, who, recycle)
        cur = np.where(has, q_keys[np.minimum(p, len(q_keys) - 1)] & ((1 << _KEY_SHIFT) - 1), -1)

    written = (dq_sec >= 0) & (dq_sec < np.where(handoff >= 0, handoff, end + 1)) & (dq_sec <= end)
    out.add(leads[written], "disqualified", dq_sec[written], dq_reason[written])
    last_row = np.where(written, np.maximum(last_row, dq_sec), last_row)
    return last_row, open_mql


def _disqualification(rng: np.random.Generator, lead: _Leads, m1: I64) -> tuple[I64, I64]:
    """Disqualification time (−1: none) and reason, from latents and the first MQL only.

    SDRs review first MQLs (low fit → likelier rejected); competitors and students are also cleaned up
    without an MQL. Independent of the hand-off given the latents, so the oracle stays exact.
    """
    n = len(m1)
    # the SDR judges the lead as it is (fit, noise included: it is small)
    p_mql = np.where(lead.competitor, 0.95, np.where(lead.student, 0.9, expit(-1.8 - 1.2 * lead.fit)))
    at_mql = (m1 >= 0) & (rng.random(n) < p_mql)
    mql_sec = m1 + (rng.uniform(0.5, 14.0, n) * DAY).astype(np.int64)
    hygiene = (lead.competitor | lead.student) & (rng.random(n) < 0.6)
    hyg_sec = lead.created + (rng.uniform(1.0, 30.0, n) * DAY).astype(np.int64)
    sec = np.where(at_mql, mql_sec, -1)
    sec = np.where(hygiene & ((sec < 0) | (hyg_sec < sec)), hyg_sec, sec)

    emp = lead.employees
    wrong_title = np.where(lead.seniority == _S["individual"], 2.0, 0.3)
    not_fit = np.where(
        ~(emp >= 10) | np.isin(lead.industry, [_INDUSTRIES.index(i) for i in _LOW_FIT_INDUSTRIES]), 2.0, 0.3
    )
    weights = np.column_stack([wrong_title, not_fit, np.ones(n)])
    reason = np.array([_R["wrong_title"], _R["not_a_fit"], _R["no_budget"]])[
        _pick_rows(rng, weights, np.arange(n))
    ]
    reason = np.where(lead.student, _R["student"], np.where(lead.competitor, _R["competitor"], reason))
    return sec, reason


def _sales_stages(
    rng: np.random.Generator,
    lead: _Leads,
    lat: _Latents,
    handoff: I64,
    win_intercept: float,
    p_opp: float,
    last_row: I64,
    open_mql: NDArray[np.bool_],
    out: _Stages,
) -> dict[str, F64]:
    """SAL/SQL at the hand-off, then opportunity and close; returns realised times for the truth."""
    n = len(handoff)
    has_sal = rng.random(n) < P_SAL
    lo, hi = (round(x * DAY) for x in SAL_DELAY_DAYS)
    sql = handoff + np.where(has_sal, rng.integers(lo, hi + 1, n), 0)
    opp = rng.random(n) < p_opp
    opp_sec = sql + rng.integers(OPP_DELAY_DAYS[0], OPP_DELAY_DAYS[1] + 1, n) * DAY
    win_prob = expit(win_intercept + lat.win_score)
    won = rng.random(n) < win_prob
    close_delay = np.maximum((rng.gamma(CLOSE_SHAPE, lat.close_scale) * DAY).astype(np.int64), 1)
    lost_sec = sql + rng.integers(LOST_DELAY_DAYS[0], LOST_DELAY_DAYS[1] + 1, n) * DAY
    closed = np.where(opp, opp_sec + close_delay, lost_sec)
    reason_lost = np.array([_R[r] for r in ("no_budget", "bad_timing", "not_a_fit", "competitor")])[
        rng.integers(0, 4, n)
    ]
    mql_gap = rng.integers(60, 4 * 3600, n)

    h = np.flatnonzero(handoff >= 0)
    need = h[~open_mql[h]]  # sales-sourced MQL: just before the hand-off, on the same day
    floor = np.maximum.reduce([handoff[need] // DAY * DAY, lead.created[need], last_row[need] + 1])
    out.add(need, "mql", np.minimum(np.maximum(handoff[need] - mql_gap[need], floor), handoff[need] - 1))
    s = h[has_sal[h]]
    out.add(s, "sal", handoff[s])
    out.add(h, "sql", sql[h])
    o = h[opp[h]]
    out.add(o, "opportunity", opp_sec[o])
    w = o[won[o]]
    out.add(w, "closed_won", closed[w])
    lost = np.setdiff1d(h, w)
    out.add(lost, "closed_lost", closed[lost], reason_lost[lost])

    never = handoff < 0
    return {
        "sql": np.where(never, -1, sql),
        "opportunity": opp & ~never,
        "won": opp & won & ~never,
        "closed": np.where(never, -1, closed),
        "win_prob": win_prob,
    }


# === public API =========================================================================================
def generate(params: GenerateParams, features: FeatureParams) -> dict[str, pd.DataFrame]:
    """Generate the demo tables ``accounts, leads, events, stage_history`` and the oracle's ``truth``.

    Pure and deterministic: independent PCG64 streams spawned from ``params.seed`` (structure, latents,
    events, calibration, hand-off, stages, cosmetics), so the same params give identical frames and
    cosmetic draws (names, e-mails, properties) never influence the process.
    """
    streams = np.random.SeedSequence(params.seed).spawn(8)
    rng_acc, rng_lead, rng_lat, rng_ev, rng_cal, rng_t, rng_stage, rng_cos = (
        np.random.Generator(np.random.PCG64(s)) for s in streams
    )
    start = pd.Timestamp(params.start).normalize()
    end_ts = start + pd.DateOffset(months=params.months)
    n_days = (end_ts - start).days
    end = n_days * DAY
    start64 = np.datetime64(start.to_datetime64(), "us")
    drift_day = (pd.Timestamp(params.drift.date).normalize() - start).days

    n_acc = max(1, round(params.n_leads * params.accounts_per_lead))
    accounts = _accounts(rng_acc, rng_cos, n_acc)
    lead = _make_leads(rng_lead, params.n_leads, accounts, params, n_days)
    lead.fit, lead.fit_noise = _fit(rng_lat, lead, features)
    lat = _latents(rng_lat, lead, params, drift_day)
    leads = _leads_frame(rng_lead, rng_cos, lead, accounts, features, start64)

    ev = _simulate_events(rng_ev, lead, lat)
    qualifies = _mql_qualifies(ev, lead, features, params.mql_points)
    marketing_mql = np.zeros(params.n_leads, dtype=bool)
    marketing_mql[ev.lead[qualifies]] = True
    kappa, win_intercept = _calibrate(rng_cal, lead, lat, marketing_mql, params, n_days)
    handoff = _handoff(rng_t, lead, lat, kappa)

    stages = _Stages()
    last_row, open_mql = _marketing_stages(rng_stage, ev, qualifies, lead, handoff, end, stages)
    realised = _sales_stages(
        rng_stage,
        lead,
        lat,
        handoff,
        win_intercept,
        params.rates.sql_to_opportunity,
        last_row,
        open_mql,
        stages,
    )
    tables = {
        "accounts": accounts,
        "leads": leads,
        "events": _events_frame(rng_cos, ev, leads["lead_id"], start64),
        "stage_history": _stage_frame(stages, leads["lead_id"], end, start64),
        "truth": _truth_frame(lead, lat, leads, kappa, realised, handoff, params, start64, drift_day),
    }
    if params.export_months is None or params.export_months == params.months:
        return tables
    return export_at(tables, start + pd.DateOffset(months=params.export_months))


def export_at(tables: dict[str, pd.DataFrame], cut: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """What a CRM export taken at ``cut`` shows of the simulated world: leads created before it, and only
    the events and stage changes before it (later outcomes are not known yet). Accounts are kept whole."""
    cut64 = np.datetime64(cut.tz_localize(None) if cut.tzinfo else cut, "us")
    leads = tables["leads"]
    keep = leads["created_at"].to_numpy("datetime64[us]") < cut64
    kept_ids = leads["lead_id"][keep]
    out = {"accounts": tables["accounts"], "leads": leads[keep].reset_index(drop=True)}
    for name in ("events", "stage_history"):
        frame = tables[name]
        mask = (frame["ts"].to_numpy("datetime64[us]") < cut64) & frame["lead_id"].isin(kept_ids).to_numpy()
        out[name] = frame[mask].reset_index(drop=True)
    if "truth" in tables:
        truth = tables["truth"]
        out["truth"] = truth[truth["lead_id"].isin(kept_ids)].reset_index(drop=True)
    return out


def _events_frame(
    rng: np.random.Generator, ev: _Events, lead_ids: pd.Series, start: np.datetime64
) -> pd.DataFrame:
    vocab: list[str] = []
    offset = np.full(len(EVENT_TYPES), -1)
    size = np.zeros(len(EVENT_TYPES), dtype=np.int64)
    for name, values in _PROPERTIES.items():
        offset[_T[name]], size[_T[name]] = len(vocab), len(values)
        vocab.extend(values)
    k = ev.kind.astype(np.int64)
    prop = np.where(size[k] > 0, offset[k] + (rng.random(len(k)) * size[k]).astype(np.int64), -1)
    return pd.DataFrame(
        {
            "event_id": _ids("E", len(k), 9),
            "lead_id": _strings(ev.lead, lead_ids.tolist()),
            "ts": _timestamps(ev.sec, start),
            "event_type": _strings(k, EVENT_TYPES),
            "properties": _strings(prop, vocab),
        }
    )


def _stage_frame(stages: _Stages, lead_ids: pd.Series, end: int, start: np.datetime64) -> pd.DataFrame:
    lead = np.concatenate(stages.lead)
    stage = np.concatenate(stages.stage)
    sec = np.concatenate(stages.sec)
    reason = np.concatenate(stages.reason)
    keep = (sec >= 0) & (sec <= end)
    rank = np.array([contract.STAGE_RANK.get(s, 0) for s in contract.STAGES])[stage]
    order = np.lexsort((rank, sec, lead))
    order = order[keep[order]]
    return pd.DataFrame(
        {
            "lead_id": _strings(lead[order], lead_ids.tolist()),
            "stage": _strings(stage[order], contract.STAGES),
            "ts": _timestamps(sec[order], start),
            "reason": _strings(reason[order], _REASONS),
        }
    )


def _truth_frame(
    lead: _Leads,
    lat: _Latents,
    leads: pd.DataFrame,
    kappa: float,
    realised: dict[str, F64],
    handoff: I64,
    params: GenerateParams,
    start: np.datetime64,
    drift_day: int,
) -> pd.DataFrame:
    n = len(lead.created)

    def ts(sec: I64) -> pd.Series:
        stamps = _timestamps(np.maximum(sec, 0), start)
        return pd.Series(np.where(sec >= 0, stamps, np.datetime64("NaT", "us")), dtype="datetime64[us]")

    bursts = [row[row != _NO_BURST].astype(np.int64) for row in lat.bursts]
    drift_at = start + np.timedelta64(drift_day, "D") if params.drift.enabled else np.datetime64("NaT", "us")
    return pd.DataFrame(
        {
            "lead_id": leads["lead_id"],
            "created_at": leads["created_at"],
            "fit": lead.fit,
            "fit_noise": lead.fit_noise,
            "amplitude": lat.amplitude,
            "tau_days": lat.tau,
            "rho_per_day": lat.rho,
            "kappa": np.full(n, kappa),
            "burst_mult_pre": lat.mult_pre,
            "burst_mult_post": lat.mult_post,
            "drift_at": pd.Series(np.full(n, drift_at), dtype="datetime64[us]"),
            "burst_days": bursts,
            "webinar_affinity": np.exp(lat.log_webinar),
            "pricing_affinity": np.exp(lat.log_pricing),
            "win_prob": realised["win_prob"],
            "close_scale_days": lat.close_scale,
            "p_opportunity": np.full(n, params.rates.sql_to_opportunity),
            "handoff_at": ts(handoff),
            "sql_at": ts(realised["sql"]),
            "opportunity": realised["opportunity"],
            "won": realised["won"],
            "closed_at": ts(realised["closed"]),
        }
    )


def write_tables(tables: dict[str, pd.DataFrame], raw_dir: Path) -> None:
    """Write the contract tables to ``raw_dir/*.parquet`` and the truth to ``raw_dir/_truth/`` (bytes that
    depend on the data only: ``data.parquet``)."""
    from leadscore.data.parquet import write_parquet

    raw_dir = Path(raw_dir)
    (raw_dir / "_truth").mkdir(parents=True, exist_ok=True)
    for name in contract.TABLES:
        write_parquet(tables[name], raw_dir / f"{name}.parquet")
    if "truth" in tables:
        write_parquet(tables["truth"], raw_dir / "_truth" / "lead_truth.parquet")


# === the oracle =========================================================================================
def _seconds(values: object) -> F64:
    """Unix seconds as float (NaT → +inf)."""
    arr = np.asarray(values, dtype="datetime64[s]")
    out = arr.astype(np.int64).astype(np.float64)
    out[np.isnat(arr)] = np.inf
    return out


def _uniform_int(y: F64, a: float, b: float) -> F64:
    """∫_0^y P(U(a, b) ≤ v) dv."""
    y = np.asarray(y, dtype=float)
    return np.where(y <= a, 0.0, np.where(y <= b, (y - a) ** 2 / (2 * (b - a)), (b - a) / 2 + (y - b)))


def _gamma_cdf(y: F64, scale: F64, shift: float = 0.0) -> F64:
    return np.where(y > 0, gammainc(CLOSE_SHAPE + shift, np.maximum(y, 0) / scale), 0.0)


def _gamma_int(y: F64, scale: F64) -> F64:
    """∫_0^y F(v) dv for the close delay F = Gamma(CLOSE_SHAPE, scale)."""
    k = CLOSE_SHAPE
    return np.where(y > 0, y * _gamma_cdf(y, scale) - k * scale * _gamma_cdf(y, scale, 1), 0.0)


def _gamma_int2(y: F64, scale: F64) -> F64:
    """∫_0^y ∫_0^v F(u) du dv = E[(y − D)²/2; D ≤ y]."""
    k = CLOSE_SHAPE
    return np.where(
        y > 0,
        0.5
        * (
            y**2 * _gamma_cdf(y, scale)
            - 2 * y * k * scale * _gamma_cdf(y, scale, 1)
            + k * (k + 1) * scale**2 * _gamma_cdf(y, scale, 2)
        ),
        0.0,
    )


def _sql_kernel(horizon: int) -> F64:
    """Q[j]: P(SQL by the window end | hand-off uniform in window day j), j = 0..H−1."""
    a, b = SAL_DELAY_DAYS
    m = horizon - np.arange(horizon, dtype=float)  # days from the start of day j to the window end
    return (1 - P_SAL) + P_SAL * (_uniform_int(m, a, b) - _uniform_int(m - 1, a, b))


def _won_kernel(horizon: int, scale: float) -> F64:
    """K[j]: P(opportunity closes by the window end | hand-off uniform in window day j, opportunity)."""
    a, b = SAL_DELAY_DAYS
    m = horizon - np.arange(horizon, dtype=float)
    s = np.float64(scale)
    total = np.zeros(horizon)
    lags = np.arange(OPP_DELAY_DAYS[0], OPP_DELAY_DAYS[1] + 1)
    for n in lags:
        y = m - n
        direct = _gamma_int(y, s) - _gamma_int(y - 1, s)
        sal = (
            _gamma_int2(y - a, s)
            - _gamma_int2(y - a - 1, s)
            - _gamma_int2(y - b, s)
            + _gamma_int2(y - b - 1, s)
        ) / (b - a)
        total += (1 - P_SAL) * direct + P_SAL * sal
    return total / len(lags)


@dataclass
class _OracleLeads:
    """Per-lead oracle inputs for one window length H (computed once per lead, shared by its examples)."""

    tau: F64
    rho: F64
    a_pre: F64  # hazard per unit of g of a burst starting before / on-or-after the drift day
    a_post: F64
    drift_day: I64  # lead grid day of the drift (huge when off)
    bursts: NDArray[np.int32]
    phi_pre: F64  # Φ(L) = Σ_{n=1..L} (1 − e^{−a·G(n)}), L = 0..H
    phi_post: F64


def _oracle_leads(truth: pd.DataFrame, rows: I64, horizon: int) -> _OracleLeads:
    tr = {
        c: truth[c].to_numpy(dtype=float)[rows]
        for c in ("fit", "amplitude", "tau_days", "rho_per_day", "kappa", "burst_mult_pre", "burst_mult_post")
    }
    created_day = np.floor(_seconds(truth["created_at"].to_numpy()[rows]) / DAY)
    drift = _seconds(truth["drift_at"].to_numpy()[rows]) / DAY - created_day
    base = tr["kappa"] * np.exp(tr["fit"]) * tr["amplitude"]
    a_pre, a_post = base * tr["burst_mult_pre"], base * tr["burst_mult_post"]
    # G(n) = Σ_{i<n} g((i + ½)/τ): what a burst adds over its first n days
    g_cum = np.cumsum(_g((np.arange(horizon)[None, :] + 0.5) / tr["tau_days"][:, None]), axis=1)
    zero = np.zeros((len(rows), 1))
    phi_pre = np.hstack([zero, np.cumsum(-np.expm1(-a_pre[:, None] * g_cum), axis=1)])
    phi_post = (
        phi_pre
        if np.array_equal(a_pre, a_post)
        else np.hstack([zero, np.cumsum(-np.expm1(-a_post[:, None] * g_cum), axis=1)])
    )
    return _OracleLeads(
        tau=tr["tau_days"],
        rho=tr["rho_per_day"],
        a_pre=a_pre,
        a_post=a_post,
        drift_day=np.where(np.isinf(drift), 1 << 40, drift).astype(np.int64),
        bursts=_pad(truth["burst_days"].to_numpy()[rows]),
        phi_pre=phi_pre,
        phi_post=phi_post,
    )


def _handoff_pmf(ol: _OracleLeads, lead: I64, k: I64, horizon: int) -> F64:
    """P(hand-off in window day j | no hand-off before day k), j = 0..H−1 (examples × H).

    The hazard of bursts started before day k is known. Bursts starting on a day j ≥ k are Poisson(ρ)
    and add a·G(m − j + 1) up to day m, so E[e^{−H_future(m)}] = exp(−ρ·Σ_{j=k..m} (1 − e^{−a_j·G(m−j+1)})),
    which is Φ_pre / Φ_post split at the drift day.
    """
    n_ex = len(k)
    jj = np.arange(horizon)
    tau, drift = ol.tau[lead], ol.drift_day[lead]
    days = k[:, None] + jj[None, :]
    known = np.zeros((n_ex, horizon))
    bursts = ol.bursts[lead]
    for b in range(bursts.shape[1]):
        c = bursts[:, b].astype(np.int64)
        hit = (c != _NO_BURST) & (c < k)
        a = np.where(c >= drift, ol.a_post[lead], ol.a_pre[lead])
        if hit.all():  # the first burst: every example, no gather needed
            known += a[:, None] * _g((days - c[:, None] + 0.5) / tau[:, None])
            continue
        rows = np.flatnonzero(hit)
        if len(rows):
            known[rows] += a[rows, None] * _g((days[rows] - c[rows, None] + 0.5) / tau[rows, None])
    future = ol.phi_pre[lead, 1:]
    post_days = np.clip(days - drift[:, None] + 1, 0, jj[None, :] + 1)  # window days on/after the drift
    if post_days.any():
        flat = lead[:, None] * (horizon + 1) + post_days
        future = future - np.take(ol.phi_pre, flat) + np.take(ol.phi_post, flat)
    surv = np.exp(-np.cumsum(known, axis=1) - ol.rho[lead][:, None] * future)
    return np.hstack([np.ones((n_ex, 1)), surv[:, :-1]]) - surv


def true_probability(
    truth: pd.DataFrame, stage_history: pd.DataFrame, examples: pd.DataFrame, stage: str, horizon_days: int
) -> np.ndarray:
    """Exact probability that each example's lead reaches ``stage`` in (snapshot_ts, snapshot_ts + horizon].

    Conditions on what the generator knows at the snapshot: the lead's latents and bursts started before
    it, and its realised stage rows up to it. ``examples``: ``lead_id``, ``snapshot_ts`` (midnight UTC).
    Leads that already reached the stage get 0; snapshots before the lead's first midnight get NaN.
    """
    if stage not in ("sql", "closed_won"):
        raise ValueError(f"stage must be 'sql' or 'closed_won', got {stage!r}")
    pos = pd.Index(truth["lead_id"]).get_indexer(examples["lead_id"])
    if (pos < 0).any():
        missing = examples["lead_id"].to_numpy()[pos < 0][:5]
        raise KeyError(f"leads not in truth: {list(missing)}")
    t = _seconds(examples["snapshot_ts"])
    if (t % DAY != 0).any():
        raise ValueError("snapshot_ts must be at midnight UTC")
    h = float(horizon_days)
    t_day, end = t / DAY, t / DAY + h  # in days since the Unix epoch

    seen = _stage_times(stage_history, truth["lead_id"], pos)
    created_day = np.floor(_seconds(truth["created_at"].to_numpy()[pos]) / DAY)
    k = (t_day - created_day).astype(np.int64)
    p = np.full(len(pos), np.nan)
    sal, sql, opp = seen["sal"], seen["sql"], seen["opportunity"]
    closed = np.minimum(seen["closed_won"], seen["closed_lost"])
    win = truth["win_prob"].to_numpy()[pos]
    p_opp = truth["p_opportunity"].to_numpy()[pos]
    scale = truth["close_scale_days"].to_numpy()[pos]
    a, b = SAL_DELAY_DAYS
    n_lags = np.arange(OPP_DELAY_DAYS[0], OPP_DELAY_DAYS[1] + 1)
    m_lags = np.arange(LOST_DELAY_DAYS[0], LOST_DELAY_DAYS[1] + 1)

    pending = k >= 1
    if stage == "sql":
        done = sql <= t_day
        in_sal = ~done & (sal <= t_day)
        lo = np.maximum(a, t_day - sal)
        p = np.where(done, 0.0, p)
        p = np.where(in_sal, (np.clip(end - sal, lo, b) - lo) / np.maximum(b - lo, 1e-12), p)
        todo = pending & ~done & ~in_sal
        if todo.any():
            kernel = _sql_kernel(horizon_days)[:, None]
            p[todo] = _expect_over_handoff(truth, pos, k, todo, horizon_days, kernel, np.zeros_like(k))
        return np.where(pending, p, np.nan)

    done = closed <= t_day
    p = np.where(done, 0.0, p)
    # opportunity open: win × P(close in window | not closed by t)
    in_opp = ~done & (opp <= t_day)
    if in_opp.any():
        o, s = opp[in_opp], scale[in_opp]
        f_t = _gamma_cdf(t_day[in_opp] - o, s)
        p[in_opp] = win[in_opp] * (_gamma_cdf(end[in_opp] - o, s) - f_t) / (1 - f_t)
    # SQL without an opportunity yet: posterior over "opportunity in n days" vs "lost in m days"
    in_sql = ~done & ~in_opp & (sql <= t_day)
    if in_sql.any():
        s_day, e = sql[in_sql], t_day[in_sql] - sql[in_sql]
        later_n = n_lags[None, :] > e[:, None]
        later_m = (m_lags[None, :] > e[:, None]).mean(axis=1)
        z = p_opp[in_sql] * later_n.mean(axis=1) + (1 - p_opp[in_sql]) * later_m
        close = _gamma_cdf(end[in_sql, None] - s_day[:, None] - n_lags[None, :], scale[in_sql, None])
        num = p_opp[in_sql] * win[in_sql] * (later_n * close).sum(axis=1) / len(n_lags)
        p[in_sql] = num / z
    # SAL seen, SQL pending: SQL = SAL + δ with δ ~ U(max(a, t − SAL), b)
    in_sal = ~done & ~in_opp & ~in_sql & (sal <= t_day)
    if in_sal.any():
        sd, s = sal[in_sal], scale[in_sal, None]
        lo = np.maximum(a, t_day[in_sal] - sd)[:, None]
        y = end[in_sal, None] - sd[:, None] - n_lags[None, :]
        e_close = (_gamma_int(y - lo, s) - _gamma_int(y - b, s)) / np.maximum(b - lo, 1e-12)
        p[in_sal] = p_opp[in_sal] * win[in_sal] * e_close.mean(axis=1)
    todo = pending & ~done & ~in_opp & ~in_sql & ~in_sal
    if todo.any():
        # the close delay scale takes a few values (by company size): one kernel per value
        scales, which = np.unique(scale, return_inverse=True)
        kernels = np.column_stack([_won_kernel(horizon_days, float(v)) for v in scales])
        closes = _expect_over_handoff(truth, pos, k, todo, horizon_days, kernels, which)
        p[todo] = p_opp[todo] * win[todo] * closes
    return np.where(pending, p, np.nan)


def _stage_times(stage_history: pd.DataFrame, lead_ids: pd.Series, pos: I64) -> dict[str, F64]:
    """First time (days since the Unix epoch, inf if never) of each post-marketing stage per example."""
    names = ("sal", "sql", "opportunity", "closed_won", "closed_lost")
    sh = stage_history[stage_history["stage"].isin(names)]
    first = sh.groupby(["stage", "lead_id"])["ts"].min()
    out = {}
    for name in names:
        s = (
            first.xs(name, level="stage")
            if name in first.index.get_level_values(0)
            else pd.Series(dtype="datetime64[us]")
        )
        aligned = s.reindex(lead_ids.to_numpy()).to_numpy()
        out[name] = _seconds(aligned)[pos] / DAY
    return out


def _expect_over_handoff(
    truth: pd.DataFrame, pos: I64, k: I64, mask: NDArray[np.bool_], horizon: int, kernels: F64, which: I64
) -> F64:
    """Σ_j P(hand-off in window day j | none before) · kernels[j, which] for the masked examples."""
    uniq, lead = np.unique(pos[mask], return_inverse=True)
    ol = _oracle_leads(truth, uniq, horizon)
    kk, col = k[mask], which[mask]
    out = np.empty(len(kk))
    for sl in _chunks(len(kk), max(1, 2_000_000 // horizon)):
        per_kernel = _handoff_pmf(ol, lead[sl], kk[sl], horizon) @ kernels
        out[sl] = per_kernel[np.arange(len(per_kernel)), col[sl]]
    return out
