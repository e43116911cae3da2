"""Bring your own data, end to end: messy CRM exports of each shape, built here in code.

* Salesforce-style (Account, Lead, Task, CampaignMember, LeadHistory, Opportunity, OpportunityHistory)
  and HubSpot-style (companies, contacts with lifecycle dates, engagements) exports go through the
  shipped example mappings (src/data/mappings/*.yaml) -> validate -> snapshots -> features -> train ->
  evaluate, with small params in a tmp dir;
* leads + deals: a deal attribute (amount) planted in the deals file never reaches the leads table nor
  the features; mapping a post-deal column onto a lead column is caught by the leakage report;
* flat: a messy one-row-per-lead export -> ``leadscore train-table`` -> bundle -> ``FlatScorer``, with
  planted leaky columns the guard must flag and exclude.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.config import Params, load_params
from leadscore.data.flat import FlatDataError
from leadscore.data.mapping import MappingError, map_tables
from leadscore.data.validate import run_validate
from leadscore.features.spec import FeatureSpec
from leadscore.features.stage import features_path, run_features, run_snapshots
from leadscore.models.bundle import BundleError
from leadscore.models.evaluate import run_evaluate
from leadscore.models.flat import FlatScorer, run_train_table, train_flat
from leadscore.models.leakage import run_leakage_report
from leadscore.models.train import run_train
from tests.paths import data_dirs

ROOT = Path(__file__).resolve().parents[2]
PARAMS_YAML = ROOT / "params.yaml"
MAPPINGS = ROOT / "src" / "data" / "mappings"
START = pd.Timestamp("2024-01-01")
EXPORT_TIME = "2025-06-15T00:00:00"

INDUSTRIES = ["software", "fintech", "retail", "education", "manufacturing"]
TITLES = [
    "VP Marketing",
    "CTO",
    "Marketing Manager",
    "Software Engineer",
    "Student",
    "Head of Sales",
    "Operations Analyst",
    "CEO",
]
SOURCES = ["organic_search", "paid_search", "webinar", "referral", "event"]
EVENTS = [
    "page_view",
    "pricing_view",
    "email_open",
    "email_click",
    "form_submit",
    "content_download",
    "demo_request",
    "webinar_register",
    "webinar_attend",
    "meeting_booked",
]

pytestmark = pytest.mark.slow


# --- a latent funnel, then exported in each CRM's shape ----------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def latent_funnel(n: int = 1500, seed: int = 3) -> dict[str, pd.DataFrame]:
    """Accounts, leads (with a latent propensity), events and stage rows, in contract vocabulary."""
    rng = np.random.default_rng(seed)
    n_acc = n // 2
    accounts = pd.DataFrame(
        {
            "account_id": [f"A{i:04d}" for i in range(n_acc)],
            "industry": rng.choice(INDUSTRIES, n_acc),
            "employees": np.round(rng.lognormal(4.5, 1.4, n_acc)).astype(int) + 1,
            "annual_revenue": np.round(rng.lognormal(15, 1.5, n_acc), -3),
            "country": rng.choice(["US", "DE", "GB", "FR"], n_acc),
        }
    )
    acc = rng.integers(0, n_acc, n)
    created = START + pd.to_timedelta(rng.uniform(0, 420, n), unit="D").round("s")
    title = rng.choice(TITLES, n)
    source = rng.choice(SOURCES, n)
    ind = accounts["industry"].to_numpy()[acc]
    z = (
        -1.3
        + 0.9 * np.isin(ind, ["software", "fintech"])
        + 0.7 * np.isin(title, ["VP Marketing", "CTO", "Head of Sales", "CEO"])
        - 1.2 * (title == "Student")
        + 0.4 * (source == "webinar")
        + rng.normal(0, 0.4, n)
    )
    leads = pd.DataFrame(
        {
            "lead_id": [f"L{i:05d}" for i in range(n)],
            "account_id": accounts["account_id"].to_numpy()[acc],
            "created_at": created,
            "email": [f"p{i}@{'gmail.com' if rng.random() < 0.2 else f'acme{i % 97}.com'}" for i in range(n)],
            "job_title": title,
            "lead_source": source,
            "country": accounts["country"].to_numpy()[acc],
            "z": z,
        }
    )
    ev_rows, st_rows = [], []
    for i in range(n):
        c, zi = created[i], z[i]
        k = rng.poisson(2.0 + 3.0 * _sigmoid(zi))
        hot = _sigmoid(zi)
        probs = np.array([5, 3 * hot, 3, 2, 1, 1, 2 * hot, 1, 1, hot])
        for t, d in zip(rng.choice(EVENTS, k, p=probs / probs.sum()), rng.uniform(0, 45, k), strict=True):
            ev_rows.append((leads.lead_id[i], c + pd.Timedelta(days=float(d)), t))
        mql = c + pd.Timedelta(days=float(rng.uniform(0.1, 3)))
        st_rows.append((leads.lead_id[i], "mql", mql))
        if rng.random() < _sigmoid(zi):
            sql = mql + pd.Timedelta(days=float(rng.uniform(3, 40)))
            st_rows.append((leads.lead_id[i], "sql", sql))
            if rng.random() < 0.75:
                opp = sql + pd.Timedelta(days=float(rng.uniform(1, 10)))
                st_rows.append((leads.lead_id[i], "opportunity", opp))
                close = opp + pd.Timedelta(days=float(rng.uniform(10, 50)))
                st_rows.append(
                    (
                        leads.lead_id[i],
                        "closed_won" if rng.random() < 0.3 + 0.4 * hot else "closed_lost",
                        close,
                    )
                )
        elif rng.random() < 0.3:
            st_rows.append(
                (leads.lead_id[i], "disqualified", mql + pd.Timedelta(days=float(rng.uniform(20, 80))))
            )
    events = pd.DataFrame(ev_rows, columns=["lead_id", "ts", "event_type"])
    events["ts"] = events["ts"].dt.round("s")
    events = events.drop_duplicates(["lead_id", "ts", "event_type"])
    stages = pd.DataFrame(st_rows, columns=["lead_id", "stage", "ts"])
    stages["ts"] = stages["ts"].dt.round("s")
    return {"accounts": accounts, "leads": leads, "events": events, "stage_history": stages}


def _write(frames: dict[str, pd.DataFrame], raw: Path) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    for name, df in frames.items():
        df.to_csv(raw / f"{name}.csv", index=False)


def _local(ts: pd.Series, tz: str, fmt: str) -> list[str]:
    return ts.dt.tz_localize("UTC").dt.tz_convert(tz).dt.strftime(fmt).tolist()


SF_TYPES = {
    "page_view": "Web Visit",
    "pricing_view": "Pricing Page",
    "email_open": "Email Open",
    "email_click": "Email Click",
    "form_submit": "Form Fill",
    "content_download": "Content Download",
    "demo_request": "Demo Request",
    "meeting_booked": "Meeting",
}
SF_STATUS = {"mql": "Marketing Qualified", "sql": "Sales Qualified", "disqualified": "Disqualified"}


def salesforce_export(f: dict[str, pd.DataFrame], raw: Path, seed: int = 5) -> dict[str, int]:
    """Write a Salesforce-style export of the latent funnel; return counts the test checks."""
    rng = np.random.default_rng(seed)
    acc, leads, ev, st = f["accounts"], f["leads"], f["events"], f["stage_history"]
    account = pd.DataFrame(
        {
            "Id": acc["account_id"].str.replace("A", "001"),
            "Name": [f"Company {i}" for i in range(len(acc))],
            "Industry": acc["industry"].str.title(),
            "NumberOfEmployees": [f"{e:,}" for e in acc["employees"]],  # "1,200"
            "AnnualRevenue": acc["annual_revenue"].astype(int).astype(str),
            "BillingCountry": acc["country"],
        }
    )
    opp_leads = st.loc[st["stage"] == "opportunity", "lead_id"].unique()
    opp_id = {lead: f"006{i:05d}" for i, lead in enumerate(opp_leads)}
    converted = leads["lead_id"].isin(opp_leads)
    lead = pd.DataFrame(
        {
            "Id": leads["lead_id"].str.replace("L", "00Q"),
            "Account__c": np.where(
                rng.random(len(leads)) < 0.85, leads["account_id"].str.replace("A", "001"), ""
            ),
            "CreatedDate": _local(leads["created_at"], "America/New_York", "%-m/%-d/%Y %-I:%M %p"),
            "Email": leads["email"],
            "Title": leads["job_title"],
            "LeadSource": leads["lead_source"].map(
                {
                    "organic_search": "Web",
                    "paid_search": "Paid Search",
                    "webinar": "Webinar",
                    "referral": "Referral",
                    "event": "Trade Show",
                }
            ),
            "Country": leads["country"],
            # filled at conversion only: must never be used (a decoy the mapping does not read)
            "ConvertedAccountId": np.where(converted, leads["account_id"].str.replace("A", "001"), ""),
            "ConvertedOpportunityId": leads["lead_id"].map(opp_id).fillna(""),
            "Status": np.where(converted, "Closed - Converted", "Working - Contacted"),
        }
    )
    web = ev["event_type"].str.startswith("webinar")
    task = pd.DataFrame(
        {
            "Id": [f"00T{i:06d}" for i in range((~web).sum())],
            "WhoId": ev.loc[~web, "lead_id"].str.replace("L", "00Q").to_numpy(),
            "CreatedDate": ev.loc[~web, "ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.000Z").to_numpy(),
            "Type": ev.loc[~web, "event_type"].map(SF_TYPES).to_numpy(),
        }
    )
    n_calls, n_weird = 60, 12
    extra = task.sample(n_calls + n_weird, random_state=seed).copy()
    extra["Type"] = ["Call"] * n_calls + ["LinkedIn InMail"] * n_weird  # dropped by mapping / unmapped
    extra["CreatedDate"] = (pd.to_datetime(extra["CreatedDate"]) + pd.Timedelta(seconds=1)).dt.strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )
    task = pd.concat([task, extra], ignore_index=True)
    member = pd.DataFrame(
        {
            "LeadId": ev.loc[web, "lead_id"].str.replace("L", "00Q").to_numpy(),
            "CreatedDate": ev.loc[web, "ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(),
            "Status": ev.loc[web, "event_type"]
            .map({"webinar_register": "Registered", "webinar_attend": "Attended"})
            .to_numpy(),
        }
    )
    lead_stages = st[st["stage"].isin(list(SF_STATUS))]
    history = pd.DataFrame(
        {
            "LeadId": lead_stages["lead_id"].str.replace("L", "00Q").to_numpy(),
            "Field": "Status",
            "NewValue": lead_stages["stage"].map(SF_STATUS).to_numpy(),
            "CreatedDate": lead_stages["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(),
        }
    )
    rating = history.sample(100, random_state=seed).assign(Field="Rating", NewValue="Hot")
    history = pd.concat([history, rating], ignore_index=True)
    opp_st = st[st["stage"].isin(["opportunity", "closed_won", "closed_lost"])]
    opp_history = pd.DataFrame(
        {
            "OpportunityId": opp_st["lead_id"].map(opp_id).to_numpy(),
            "StageName": opp_st["stage"]
            .map({"opportunity": "Prospecting", "closed_won": "Closed Won", "closed_lost": "Closed Lost"})
            .to_numpy(),
            "CreatedDate": opp_st["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(),
        }
    )
    won = st.loc[st["stage"] == "closed_won", "lead_id"]
    opportunity = pd.DataFrame(
        {
            "Id": [opp_id[x] for x in opp_leads],
            "Amount": [str(50000 if x in set(won) else 1000) for x in opp_leads],  # post-deal attribute
            "OwnerId": "005000",
        }
    )
    _write(
        {
            "Account": account,
            "Lead": lead,
            "Task": task,
            "CampaignMember": member,
            "LeadHistory": history,
            "OpportunityHistory": opp_history,
            "Opportunity": opportunity,
        },
        raw,
    )
    return {"calls": n_calls, "weird": n_weird, "rating": len(rating)}


HS_TYPES = {
    "page_view": "Page view",
    "pricing_view": "Pricing page view",
    "email_open": "Email opened",
    "email_click": "Email clicked",
    "form_submit": "Form submission",
    "content_download": "Content download",
    "demo_request": "Demo requested",
    "webinar_register": "Webinar registered",
    "webinar_attend": "Webinar attended",
    "meeting_booked": "Meeting booked",
}
HS_LIFECYCLE = {
    "mql": "Became a Marketing Qualified Lead Date",
    "sql": "Became a Sales Qualified Lead Date",
    "opportunity": "Became an Opportunity Date",
    "closed_won": "Became a Customer Date",
}


def hubspot_export(f: dict[str, pd.DataFrame], raw: Path, seed: int = 6) -> dict[str, int]:
    """Write a HubSpot-style export (lifecycle dates in Europe/Berlin local time)."""
    rng = np.random.default_rng(seed)
    acc, leads, ev, st = f["accounts"], f["leads"], f["events"], f["stage_history"]
    hs_ind = {
        "software": "COMPUTER_SOFTWARE",
        "fintech": "FINANCIAL_SERVICES",
        "retail": "RETAIL",
        "education": "EDUCATION_MANAGEMENT",
        "manufacturing": "MACHINERY",
    }
    companies = pd.DataFrame(
        {
            "Record ID": acc["account_id"].str[1:].astype(int) + 9000,
            "Company name": [f"Company {i}" for i in range(len(acc))],
            "Industry": acc["industry"].map(hs_ind),
            "Number of Employees": acc["employees"].astype(str),
            "Annual Revenue": acc["annual_revenue"].astype(int).astype(str),
            "Country/Region": acc["country"],
        }
    )
    contact_id = leads["lead_id"].str[1:].astype(int) + 100
    contacts = pd.DataFrame(
        {
            "Record ID": contact_id,
            "Associated Company ID": leads["account_id"].str[1:].astype(int) + 9000,
            "Create Date": _local(leads["created_at"], "Europe/Berlin", "%Y-%m-%d %H:%M:%S"),
            "Email": leads["email"],
            "Job Title": np.where(rng.random(len(leads)) < 0.05, "-", leads["job_title"]),
            "Original Source": leads["lead_source"].str.upper(),
            "Country/Region": leads["country"],
        }
    )
    first = st.groupby(["lead_id", "stage"])["ts"].min().unstack()
    for stage, col in HS_LIFECYCLE.items():
        ts = leads["lead_id"].map(first[stage]) if stage in first else pd.Series(pd.NaT, index=leads.index)
        contacts[col] = [
            ""
            if pd.isna(t)
            else t.tz_localize("UTC").tz_convert("Europe/Berlin").strftime("%Y-%m-%d %H:%M:%S")
            for t in ts
        ]
    # Written after the outcome (not mapped, so never a feature).
    contacts["Lead Status"] = np.where(contacts[HS_LIFECYCLE["closed_won"]] != "", "Customer", "Open")
    contacts["Close Date"] = contacts[HS_LIFECYCLE["closed_won"]]
    lead_contact = dict(zip(leads["lead_id"], contact_id.astype(str), strict=True))
    engagements = pd.DataFrame(
        {
            "Activity ID": np.arange(len(ev)),
            "Activity Type": ev["event_type"].map(HS_TYPES).to_numpy(),
            "Activity Date": ev["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(),
            "Associated Contact IDs": ev["lead_id"].map(lead_contact).to_numpy(),
        }
    )
    notes = engagements.sample(80, random_state=seed).assign(**{"Activity Type": "Note"})
    engagements = pd.concat([engagements, notes], ignore_index=True)
    _write({"companies": companies, "contacts": contacts, "engagements": engagements}, raw)
    return {"notes": len(notes)}


def leads_deals_export(f: dict[str, pd.DataFrame], raw: Path, seed: int = 7) -> dict[str, Any]:
    """A leads table (MQL date in day-first format) and a deals table keyed by lead id.

    Deals carry a planted post-deal attribute (``Amount``: large for won deals) and a few leads have a
    lost deal followed by a second, won one. ``leads.csv`` also carries ``Deal Amount`` copied back from
    the deal (filled only for leads with a deal): a post-deal column on the lead row.
    """
    rng = np.random.default_rng(seed)
    acc, leads, st = f["accounts"], f["leads"], f["stage_history"]
    merged = leads.merge(acc, on="account_id", suffixes=("", "_acc"))
    first = st.groupby(["lead_id", "stage"])["ts"].min().unstack()
    rows = []
    for lead_id in first.index[first["opportunity"].notna()]:
        opp = first.loc[lead_id, "opportunity"]
        won = pd.notna(first.loc[lead_id].get("closed_won"))
        close = first.loc[lead_id, "closed_won" if won else "closed_lost"]
        if won and rng.random() < 0.15:  # an earlier lost deal, then the won one
            mql, gap = first.loc[lead_id, "mql"], opp - first.loc[lead_id, "mql"]
            rows.append((lead_id, mql + 0.3 * gap, mql + 0.6 * gap, "Closed Lost", "1000"))
        rows.append(
            (lead_id, opp, close, "Closed Won" if won else "Closed Lost", "90,000" if won else "2,000")
        )
    deals = pd.DataFrame(rows, columns=["lead", "created", "closed", "Status", "Amount"])
    deals = pd.DataFrame(
        {
            "Deal ID": [f"D{i:05d}" for i in range(len(deals))],
            "Lead ID": deals["lead"],
            "Created": deals["created"].dt.strftime("%Y-%m-%d %H:%M"),
            "Close Date": deals["closed"].dt.strftime("%Y-%m-%d"),  # date only: clamped to >= created
            "Status": deals["Status"],
            "Amount": deals["Amount"],
            "Deal Owner": "Sam",
        }
    )
    open_deals = deals.sample(10, random_state=seed).assign(
        **{"Status": "In Progress", "Close Date": "", "Deal ID": lambda d: d["Deal ID"] + "b"}
    )
    open_deals["Created"] = (pd.to_datetime(open_deals["Created"]) + pd.Timedelta(minutes=1)).dt.strftime(
        "%Y-%m-%d %H:%M"
    )
    deals = pd.concat([deals, open_deals], ignore_index=True)
    amount = deals.groupby("Lead ID")["Amount"].last()
    out = pd.DataFrame(
        {
            "Lead ID": merged["lead_id"],
            "Created": merged["created_at"].dt.strftime("%d.%m.%Y %H:%M"),
            "MQL Date": merged["lead_id"].map(first["mql"]).dt.strftime("%d.%m.%Y %H:%M"),
            "Company": merged["account_id"],
            "Company Size": [f"{e:,}" for e in merged["employees"]],
            "Industry": merged["industry"],
            "Job Title": merged["job_title"],
            "Source": merged["lead_source"],
            "Country": merged["country"],
            "Email": merged["email"],
            "Deal Amount": merged["lead_id"].map(amount).fillna(""),
        }
    )
    _write({"leads": out, "deals": deals}, raw)
    return {"deals": len(deals)}


LEADS_DEALS_MAPPING = {
    "date_format": "%d.%m.%Y %H:%M",
    "timezone": "UTC",
    "tables": {
        "accounts": [
            {
                "file": "leads",
                "columns": {
                    "Company": "account_id",
                    "Company Size": "employees",
                    "Industry": "industry",
                    "Country": "country",
                },
                "constants": {"annual_revenue": None},
                "deduplicate": True,  # one row per lead, several leads per company
            }
        ],
        "leads": [
            {
                "file": "leads",
                "columns": {
                    "Lead ID": "lead_id",
                    "Company": "account_id",
                    "Created": "created_at",
                    "Email": "email",
                    "Job Title": "job_title",
                    "Source": "lead_source",
                    "Country": "country",
                },
                "constants": {"seniority": None, "department": None},
            }
        ],
        "stage_history": [
            {
                "file": "leads",
                "columns": {"Lead ID": "lead_id", "MQL Date": "ts"},
                "constants": {"stage": "mql", "reason": None},
            },
            {
                "kind": "deals",
                "file": "deals",
                "lead_id_column": "Lead ID",
                "created_column": "Created",
                "closed_column": "Close Date",
                "status_column": "Status",
                "won_values": ["Closed Won"],
                "lost_values": ["Closed Lost"],
                "open_values": ["In Progress"],
                "date_format": "auto",
            },
        ],
    },
}


# --- params -------------------------------------------------------------------------------------------------


def small_params(
    tmp: Path,
    mapping: dict[str, Any] | None,
    targets: dict[str, Any] | None = None,
    threshold_target: str = "sql",
) -> Params:
    """Params with every folder under ``tmp``, short horizons and a small model."""
    overrides: dict[str, Any] = {
        **data_dirs(tmp),
        "validate.export_time": EXPORT_TIME,
        "mapping": mapping,
        "snapshots.every_days": 14,
        "snapshots.warmup_days": 14,
        "snapshots.max_lead_age_days": 120,
        "snapshots.targets": targets
        or {
            "sql": {
                "stage": "sql",
                "horizon_days": 30,
                "past_stages": ["sql", "opportunity", "closed_won", "closed_lost", "disqualified"],
            },
            "closed_won": {
                "stage": "closed_won",
                "horizon_days": 60,
                "past_stages": ["closed_won", "closed_lost", "disqualified"],
            },
        },
        "thresholds.target": threshold_target,
        "train.min_child_samples": 20,
        "train.n_estimators": 80,
        "train.early_stopping_rounds": 15,
        "calibrate.method": "sigmoid",
    }
    return load_params(PARAMS_YAML, overrides=overrides)


def example_mapping(name: str) -> dict[str, Any]:
    return yaml.safe_load((MAPPINGS / f"{name}.yaml").read_text())["mapping"]


def run_pipeline(params: Params) -> dict[str, Any]:
    """validate (through the mapping) -> snapshots -> features -> train -> evaluate; return metrics."""
    run_validate(params)
    run_snapshots(params)
    run_features(params)
    run_train(params)
    return run_evaluate(params)


def _reports(params: Params, name: str) -> dict[str, Any]:
    return json.loads((params.data.reports_dir / name).read_text())


def _interim_columns(params: Params) -> dict[str, set[str]]:
    return {
        t: set(pd.read_parquet(params.data.interim_dir / f"{t}.parquet").columns)
        for t in ("accounts", "leads", "events", "stage_history")
    }


CONTRACT = {
    "accounts": {
        "account_id",
        "industry",
        "employees",
        "annual_revenue",
        "country",
        "name",
        "tech_stack",
        "domain",
    },
    "leads": {
        "lead_id",
        "account_id",
        "created_at",
        "email_domain",
        "job_title",
        "seniority",
        "department",
        "country",
        "lead_source",
        "first_name",
        "last_name",
        "email",
    },
    "events": {"lead_id", "ts", "event_type", "event_id", "properties"},
    "stage_history": {"lead_id", "stage", "ts", "reason"},
}


@pytest.fixture(scope="module")
def funnel() -> dict[str, pd.DataFrame]:
    return latent_funnel()


# --- the event shapes ---------------------------------------------------------------------------------------


def test_salesforce_export_end_to_end(tmp_path: Path, funnel: dict[str, pd.DataFrame]) -> None:
    counts = salesforce_export(funnel, tmp_path / "raw")
    params = small_params(tmp_path, example_mapping("salesforce"))
    metrics = run_pipeline(params)

    validation = _reports(params, "validation.json")
    mapping = _reports(params, "mapping.json")
    # unmapped task types are quarantined by validate (counted, value visible), never dropped silently
    assert validation["events"]["reasons"].get("unknown_event_type") == counts["weird"]
    quarantine = pd.read_parquet(params.data.interim_dir / "quarantine" / "events.parquet")
    assert set(quarantine.loc[quarantine["reason"] == "unknown_event_type", "event_type"]) == {
        "LinkedIn InMail"
    }
    task = mapping["events"]["sources"][0]
    assert task["unmapped_values"] == {"event_type": {"LinkedIn InMail": counts["weird"]}}
    assert task["left_out"] == {"mapped_to_null:event_type": counts["calls"]}
    assert mapping["stage_history"]["sources"][0]["left_out"]["where:Field"] == counts["rating"]
    left_out = pd.read_parquet(params.data.interim_dir / "quarantine" / "mapping.parquet")
    assert (left_out["reason"] == "mapped_to_null:event_type").sum() == counts["calls"]
    # every lead and stage row made it; timestamps came from New York local time
    assert validation["leads"]["quarantined"] == 0
    assert validation["stage_history"]["quarantined"] == 0
    leads = pd.read_parquet(params.data.interim_dir / "leads.parquet")
    first = funnel["leads"].set_index("lead_id")["created_at"].iloc[0]
    got = leads.set_index("lead_id")["created_at"].iloc[0]
    assert abs(got - first) < pd.Timedelta(minutes=1)
    # only contract columns reach the interim tables: the decoys (ConvertedAccountId, Status, Amount) do not
    for table, cols in _interim_columns(params).items():
        assert cols <= CONTRACT[table], (table, cols - CONTRACT[table])
    assert set(metrics) == {"sql", "closed_won"}
    assert metrics["sql"]["model"]["roc_auc"] > 0.6
    flagged = run_leakage_report(params)
    assert not set(flagged["sql"]) & {"industry", "employees", "annual_revenue", "lead_source", "country"}


def test_hubspot_lifecycle_export_end_to_end(tmp_path: Path, funnel: dict[str, pd.DataFrame]) -> None:
    counts = hubspot_export(funnel, tmp_path / "raw")
    params = small_params(tmp_path, example_mapping("hubspot"))
    metrics = run_pipeline(params)

    stages = pd.read_parquet(params.data.interim_dir / "stage_history.parquet")
    truth = funnel["stage_history"]
    truth = truth[truth["stage"].isin(list(HS_LIFECYCLE))]
    # one stage row per filled lifecycle date, at the right UTC time (from Europe/Berlin local time)
    assert len(stages) == len(truth)
    merged = stages.assign(lead_id=stages["lead_id"].astype(int) - 100).merge(
        truth.assign(lead_id=truth["lead_id"].str[1:].astype(int)), on=["lead_id", "stage"]
    )
    assert len(merged) == len(truth)
    assert (merged["ts_x"] == merged["ts_y"]).all()
    mapping = _reports(params, "mapping.json")
    assert mapping["events"]["sources"][0]["left_out"] == {"mapped_to_null:event_type": counts["notes"]}
    assert _reports(params, "validation.json")["events"]["quarantined"] == 0
    for table, cols in _interim_columns(params).items():
        assert cols <= CONTRACT[table]
    assert metrics["sql"]["model"]["roc_auc"] > 0.6


def test_leads_and_deals_end_to_end(tmp_path: Path, funnel: dict[str, pd.DataFrame]) -> None:
    leads_deals_export(funnel, tmp_path / "raw")
    targets = {
        "opportunity": {
            "stage": "opportunity",
            "horizon_days": 45,
            "past_stages": ["opportunity", "closed_won", "closed_lost", "disqualified"],
        },
        "closed_won": {
            "stage": "closed_won",
            "horizon_days": 60,
            "past_stages": ["closed_won", "closed_lost", "disqualified"],
        },
    }
    params = small_params(tmp_path, LEADS_DEALS_MAPPING, targets, threshold_target="opportunity")
    metrics = run_pipeline(params)
    assert set(metrics) == {"opportunity", "closed_won"}

    # a lead is won when it has a won deal: closed_won rows = leads with a won deal
    stages = pd.read_parquet(params.data.interim_dir / "stage_history.parquet")
    won_truth = set(funnel["stage_history"].loc[lambda d: d["stage"] == "closed_won", "lead_id"])
    assert set(stages.loc[stages["stage"] == "closed_won", "lead_id"]) == won_truth
    assert "recycled" in set(stages["stage"])  # lost deal, then a new (won) one
    assert _reports(params, "validation.json")["stage_history"]["quarantined"] == 0

    # the planted post-deal attribute (Amount, Deal Owner, Deal Amount) never reaches leads or features
    for table, cols in _interim_columns(params).items():
        assert cols <= CONTRACT[table]
        assert not {"amount", "Amount", "Deal Amount", "Deal Owner"} & cols
    spec = FeatureSpec(params.features)
    for target in targets:
        table = pd.read_parquet(features_path(params, target, "train"))
        extra = (
            set(table.columns)
            - set(spec.model_features)
            - {"lead_id", "snapshot_ts", "label", "label_ts", "split", "rule_score"}
        )
        assert not extra
        for value in ("90,000", "90000", "90000.0"):
            assert not (table.astype(str) == value).any().any()


def test_post_deal_column_mapped_onto_a_lead_is_flagged(
    tmp_path: Path, funnel: dict[str, pd.DataFrame]
) -> None:
    """A user maps the leads file's "Deal Amount" (copied back from the deal) as annual_revenue: the
    firmographic then exists only for leads that got a deal, and the leakage report flags it."""
    leads_deals_export(funnel, tmp_path / "raw")
    mapping = json.loads(json.dumps(LEADS_DEALS_MAPPING))
    acc = mapping["tables"]["accounts"][0]
    acc["constants"] = {}
    # each lead its own account (one source column feeds two contract columns), revenue from the deal
    acc["columns"] = {
        "Lead ID": "account_id",
        "Company Size": "employees",
        "Industry": "industry",
        "Country": "country",
        "Deal Amount": "annual_revenue",
    }
    leads = mapping["tables"]["leads"][0]["columns"]
    del leads["Company"]
    leads["Lead ID"] = ["lead_id", "account_id"]
    targets = {
        "opportunity": {
            "stage": "opportunity",
            "horizon_days": 45,
            "past_stages": ["opportunity", "closed_won", "closed_lost", "disqualified"],
        }
    }
    params = small_params(tmp_path, mapping, targets, threshold_target="opportunity")
    run_validate(params)
    run_snapshots(params)
    run_features(params)
    flagged = run_leakage_report(params)
    assert "annual_revenue" in flagged["opportunity"]
    report = json.loads((params.data.reports_dir / "leakage_opportunity.json").read_text())
    revenue = next(c for c in report["columns"] if c["column"] == "annual_revenue")
    assert revenue["auc"] >= 0.95 or "missing_for_one_class" in revenue["flags"]
    assert "annual_revenue" in (params.data.reports_dir / "leakage_opportunity.md").read_text()

    # training applies the guard to lead / account attributes: the column is blanked, the honest ones stay
    run_train(params)
    guard = json.loads((params.data.build_dir / "train" / "leakage.json").read_text())["opportunity"]
    assert "annual_revenue" in guard["excluded"]
    assert not {"industry", "country", "employees", "lead_source"} & set(guard["excluded"])
    assert "annual_revenue" in (params.data.build_dir / "train" / "leakage.md").read_text()
    allowed = params.model_copy(
        update={"train": params.train.model_copy(update={"allow_columns": ("annual_revenue",)})}
    )
    run_train(allowed)
    guard = json.loads((params.data.build_dir / "train" / "leakage.json").read_text())["opportunity"]
    assert guard["excluded"] == [] and guard["allowed_despite_flags"] == ["annual_revenue"]


def test_deals_file_cannot_feed_the_leads_table(tmp_path: Path, funnel: dict[str, pd.DataFrame]) -> None:
    leads_deals_export(funnel, tmp_path / "raw")
    mapping = json.loads(json.dumps(LEADS_DEALS_MAPPING))
    mapping["tables"]["leads"][0]["file"] = "deals.csv"
    params = small_params(tmp_path, mapping)
    with pytest.raises(MappingError, match="deals source"):
        map_tables(params.data.raw_dir, params.mapping)


# --- flat ---------------------------------------------------------------------------------------------------


def flat_export(n: int = 2500, seed: int = 11, with_date: bool = True) -> pd.DataFrame:
    """A messy one-row-per-lead export with two planted leaky columns."""
    rng = np.random.default_rng(seed)
    industry = rng.choice(["Software", "software ", "Retail", "Finance", "Education", "N/A", "Select"], n)
    employees = np.round(rng.lognormal(4, 1.3, n)) + 1
    visits = rng.poisson(3, n)
    source = rng.choice(["Webinar", "Organic", "Paid", "Referral"], n)
    z = (
        -1.5
        + 0.9 * np.isin(industry, ["Software", "software "])
        + 0.25 * visits
        + 0.2 * np.log1p(employees)
        - 0.6 * (source == "Paid")
    )
    y = rng.random(n) < _sigmoid(z)
    created = START + pd.to_timedelta(np.sort(rng.uniform(0, 600, n)), unit="D")
    fmts = rng.choice(["%Y-%m-%d", "%m/%d/%Y", "%d %b %Y"], n)
    frame = pd.DataFrame(
        {
            "Lead ID": [f"L-{i:05d}" for i in range(n)],
            "Email": [f"x{i}@example.com" for i in range(n)],
            "Industry": industry,
            "# Employees": [f"{int(e):,}" for e in employees],
            "Web Visits": visits.astype(str),
            "Lead Source": source,
            "Conversion Rate (%)": [f"{v:.0f}%" for v in rng.uniform(0, 30, n)],
            "Notes": [f"called {rng.integers(1e9)}" for _ in range(n)],
            "Created Date": [d.strftime(f) for d, f in zip(created, fmts, strict=True)],
            # planted leaks: filled in by sales after the outcome
            "Sales Stage": np.where(y, "Closed Won", rng.choice(["Closed Lost", "Nurture"], n)),
            "Signed Contract Value": np.where(y, [f"${v}k" for v in rng.integers(5, 90, n)], "-"),
            "Converted": np.where(y, "Yes", "No"),
        }
    )
    if not with_date:
        frame = frame.drop(columns=["Created Date"])
    return pd.concat([frame, frame.iloc[:25]], ignore_index=True)  # exact duplicate rows


def test_flat_export_train_table_bundle_and_scorer(tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    flat_export().to_csv(export, index=False)
    params = load_params(PARAMS_YAML, overrides={"flat.date_column": "Created Date"})
    out = tmp_path / "flat"
    metrics = run_train_table(export, "Converted", params, out)

    entry = metrics["converted"]
    assert set(entry) >= {"model", "rule_baseline", "n_test", "base_rate"}
    assert entry["rule_baseline"] is None and entry["split"] == "time" and not entry["optimistic"]
    assert set(entry["model"]) >= {"roc_auc", "pr_auc", "brier", "ece", "log_loss", "lift_at_10pct"}
    assert 0.6 < entry["model"]["roc_auc"] < 0.95  # honest columns only: good, not too good
    leakage = json.loads((out / "leakage.json").read_text())
    assert {"sales_stage", "signed_contract_value"} <= set(leakage["excluded"])
    assert {"industry", "employees", "web_visits", "lead_source"} <= set(leakage["kept"])
    md = (out / "leakage.md").read_text()
    assert "sales_stage" in md and "AUC alone" in md
    cleaning = json.loads((out / "cleaning.json").read_text())
    assert cleaning["quarantined"] == {"duplicate_row": 25}
    assert cleaning["columns"]["lead_id"]["role"] == "dropped"
    assert cleaning["columns"]["notes"]["reason"].startswith("free text")
    assert cleaning["columns"]["employees"]["kind"] == "numeric"
    assert len(pd.read_csv(out / "quarantine.csv")) == 25

    scorer = FlatScorer.load(out / "bundle")
    assert scorer.metadata["kind"] == "flat"
    assert set(scorer.spec.feature_names) & {"sales_stage", "signed_contract_value"} == set()
    rows = [
        {
            "Industry": "Software",
            "# Employees": "1,200",
            "Web Visits": "9",
            "Lead Source": "Webinar",
            "Created Date": "2025-09-01",
        },
        {"industry": "education", "web_visits": 0, "lead_source": "Paid"},
        {"Industry": "a brand new industry", "Sales Stage": "Closed Won"},  # leak column is ignored
        {},
    ]
    scores = scorer.predict(pd.DataFrame.from_records(rows).astype(object))
    assert len(scores) == 4 and all(0 < s < 1 for s in scores)
    assert scores[0] > scores[1]
    # the same rows give the same probabilities after a re-load
    again = FlatScorer.load(out / "bundle").predict(pd.DataFrame.from_records(rows).astype(object))
    assert again.tolist() == scores.tolist()

    (out / "bundle" / "flat_spec.json").write_text("{}")
    with pytest.raises(BundleError, match="checksum"):
        FlatScorer.load(out / "bundle")


def test_flat_without_date_warns_and_cli_reports_errors(tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    flat_export(n=1500, with_date=False).to_csv(export, index=False)
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "train-table",
            str(export),
            "--target",
            "Converted",
            "--params",
            str(PARAMS_YAML),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "WARNING" in res.output and "OPTIMISTIC" in res.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["converted"]["split"] == "stratified" and metrics["converted"]["optimistic"]
    assert "OPTIMISTIC" in (tmp_path / "out" / "leakage.md").read_text()

    res = runner.invoke(
        app,
        [
            "train-table",
            str(export),
            "--target",
            "Lead Source",
            "--params",
            str(PARAMS_YAML),
            "--out",
            str(tmp_path / "bad"),
        ],
    )
    assert res.exit_code == 1
    assert "export.csv" in res.output and "'Lead Source'" in res.output and "Webinar" in res.output
    res = runner.invoke(
        app,
        [
            "train-table",
            str(export),
            "--target",
            "Convertd",
            "--params",
            str(PARAMS_YAML),
            "--out",
            str(tmp_path / "bad"),
        ],
    )
    assert res.exit_code == 1 and "Did you mean 'Converted'" in res.output
    params = load_params(PARAMS_YAML, overrides={"flat.allow_columns": ["Sales Stag"]})
    with pytest.raises(FlatDataError, match=r"flat.allow_columns names column 'Sales Stag'.*'Sales Stage'"):
        train_flat(pd.read_csv(export, dtype=str, keep_default_na=False), "Converted", params, "export.csv")
    allowed = load_params(PARAMS_YAML, overrides={"flat.allow_columns": ["Sales Stage"]})
    raw = pd.read_csv(export, dtype=str, keep_default_na=False)
    result = train_flat(raw, "Converted", allowed, "export.csv")
    assert "sales_stage" in result.spec.feature_names and result.guard.allowed_flagged == ["sales_stage"]
    assert result.metrics["converted"]["model"]["roc_auc"] > 0.95  # what the leak would have promised
