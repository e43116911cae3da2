"""Column mappings: a CRM's names and values -> the contract tables, with errors a person can act on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from pandas.testing import assert_frame_equal
from pydantic import ValidationError

from leadscore.config import MappingParams
from leadscore.data.contract import TABLES
from leadscore.data.mapping import MappingError, apply_mapping, map_tables
from leadscore.data.validate import run_validate

from .conftest import good_tables, make_params, write_tables

MAPPINGS = Path(__file__).resolve().parents[2] / "src" / "data" / "mappings"

#: The good contract tables of conftest, exported by a "CRM" with its own names and words.
CRM_EVENT = {
    "page_view": "Web Visit",
    "pricing_view": "Pricing Page",
    "email_open": "Email Open",
    "demo_request": "Demo Request",
}
CRM_STAGE = {"mql": "Marketing Qualified", "sql": "Sales Qualified", "disqualified": "Unqualified"}


def crm_export(raw_dir: Path) -> None:
    """Write conftest's good tables under CRM names: renamed columns, CRM words, local time stamps."""
    t = good_tables()
    raw_dir.mkdir(parents=True, exist_ok=True)
    t["accounts"].rename(
        columns={
            "account_id": "Id",
            "industry": "Industry",
            "employees": "Employees",
            "annual_revenue": "Revenue",
            "country": "Country",
        }
    ).to_csv(raw_dir / "Company.csv", index=False)
    leads = t["leads"].rename(
        columns={
            "lead_id": "Lead Id",
            "account_id": "Company Id",
            "created_at": "Created",
            "email_domain": "Domain",
            "job_title": "Title",
            "lead_source": "Source",
        }
    )
    # local Berlin time (UTC+1 in March) in US format
    leads["Created"] = (pd.to_datetime(leads["Created"]) + pd.Timedelta(hours=1)).dt.strftime(
        "%m/%d/%Y %H:%M:%S"
    )
    leads.to_csv(raw_dir / "Lead.csv", index=False)
    ev = t["events"].rename(columns={"lead_id": "Who", "ts": "When", "event_type": "Type"})
    ev["Type"] = ev["Type"].map(CRM_EVENT)
    ev["When"] = (pd.to_datetime(ev["When"]) + pd.Timedelta(hours=1)).dt.strftime("%m/%d/%Y %H:%M:%S")
    calls = ev.iloc[:2].assign(Type="Call")  # not lead engagement: mapped to null
    pd.concat([ev, calls], ignore_index=True).to_csv(raw_dir / "Task.csv", index=False)
    st = t["stage_history"].rename(
        columns={"lead_id": "Lead", "stage": "New Value", "ts": "Date", "reason": "Why"}
    )
    st["New Value"] = st["New Value"].map(CRM_STAGE)
    st["Field"] = "Status"
    st["Date"] = (pd.to_datetime(st["Date"]) + pd.Timedelta(hours=1)).dt.strftime("%m/%d/%Y %H:%M:%S")
    other = st.iloc[:3].assign(Field="Rating", **{"New Value": "Hot"})  # another field's history
    pd.concat([st, other], ignore_index=True).to_csv(raw_dir / "History.csv", index=False)


CRM_MAPPING: dict[str, Any] = {
    "timezone": "Europe/Berlin",
    "date_format": "%m/%d/%Y %H:%M:%S",
    "tables": {
        "accounts": [
            {
                "file": "Company",
                "columns": {
                    "Id": "account_id",
                    "Industry": "industry",
                    "Employees": "employees",
                    "Revenue": "annual_revenue",
                    "Country": "country",
                },
            }
        ],
        "leads": [
            {
                "file": "Lead.csv",
                "columns": {
                    "Lead Id": "lead_id",
                    "Company Id": "account_id",
                    "Created": "created_at",
                    "Domain": "email_domain",
                    "Title": "job_title",
                    "seniority": "seniority",
                    "department": "department",
                    "country": "country",
                    "Source": "lead_source",
                },
            }
        ],
        "events": [
            {
                "file": "Task",
                "columns": {"Who": "lead_id", "When": "ts", "Type": "event_type"},
                "values": {"event_type": {**{v: k for k, v in CRM_EVENT.items()}, "Call": None}},
            }
        ],
        "stage_history": [
            {
                "file": "History",
                "where": {"Field": ["Status"]},
                "columns": {"Lead": "lead_id", "New Value": "stage", "Date": "ts", "Why": "reason"},
                "values": {"stage": {v: k for k, v in CRM_STAGE.items()}},
            }
        ],
    },
}


def mapping(data: dict[str, Any]) -> MappingParams:
    return MappingParams.model_validate(data)


def test_mapping_mode_writes_the_same_interim_tables(tmp_path: Path) -> None:
    contract = make_params(tmp_path / "contract")
    write_tables(good_tables(), contract.data.raw_dir, "csv")
    run_validate(contract)

    crm = make_params(tmp_path / "crm").model_copy(update={"mapping": mapping(CRM_MAPPING)})
    crm_export(crm.data.raw_dir)
    run_validate(crm)
    for t in TABLES:
        expected = pd.read_parquet(contract.data.interim_dir / f"{t}.parquet")
        got = pd.read_parquet(crm.data.interim_dir / f"{t}.parquet")
        assert_frame_equal(got[list(expected.columns)], expected, check_dtype=True)
        assert set(got.columns) == set(expected.columns)
    assert json.loads((crm.data.reports_dir / "validation.json").read_text()) == json.loads(
        (contract.data.reports_dir / "validation.json").read_text()
    )
    report = json.loads((crm.data.reports_dir / "mapping.json").read_text())
    assert report["events"]["sources"][0]["left_out"] == {"mapped_to_null:event_type": 2}
    assert report["stage_history"]["sources"][0]["left_out"] == {"where:Field": 3}
    left_out = pd.read_parquet(crm.data.interim_dir / "quarantine" / "mapping.parquet")
    assert sorted(left_out["reason"]) == ["mapped_to_null:event_type"] * 2 + ["where:Field"] * 3
    assert set(left_out.loc[left_out["reason"] == "where:Field", "value"]) == {"Rating"}


def _write(raw: Path, **frames: pd.DataFrame) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    for name, df in frames.items():
        df.to_csv(raw / f"{name}.csv", index=False)
    return raw


def test_rows_source_renames_maps_values_constants_explode_and_numbers(tmp_path: Path) -> None:
    raw = _write(
        tmp_path,
        eng=pd.DataFrame(
            {
                "Contacts": ["1;2", "3", "", "4"],
                "Kind": ["Email opened", "NOTE", "Page view", "Fax"],
                "At": ["2024-03-01 10:00", "2024-03-02 09:30", "2024-03-03 00:00", "2024-07-01 12:00"],
            }
        ),
        comp=pd.DataFrame({"ID": ["c1", "c2"], "Size": ["1,200", "N/A"], "Rev": ["$5M", "12x"]}),
    )
    m = mapping(
        {
            "timezone": "America/New_York",
            "tables": {
                "events": [
                    {
                        "file": "eng",
                        "explode": {"Contacts": ";"},
                        "columns": {"Contacts": "lead_id", "At": "ts", "Kind": "event_type"},
                        "values": {
                            "event_type": {
                                "email opened": "email_open",
                                "Note": None,
                                "Page View": "page_view",
                            }
                        },
                    }
                ],
                "accounts": [
                    {
                        "file": "comp",
                        "columns": {"ID": "account_id", "Size": "employees", "Rev": "annual_revenue"},
                        "constants": {"industry": "software", "country": None},
                    }
                ],
            },
        }
    )
    result = map_tables(raw, m)
    events = result.tables["events"]
    expected = pd.DataFrame(
        {
            "lead_id": ["1", "2", "4"],
            "ts": ["2024-03-01T15:00:00Z", "2024-03-01T15:00:00Z", "2024-07-01T16:00:00Z"],  # EST, then EDT
            "event_type": [
                "email_open",
                "email_open",
                "Fax",
            ],  # unmapped: passed on for validate to quarantine
        },
        dtype=object,
    )
    assert_frame_equal(events.reset_index(drop=True), expected)
    acc = result.tables["accounts"]
    assert acc["employees"].tolist()[0] == "1200.0" and pd.isna(acc["employees"].iloc[1])  # N/A is missing
    assert acc["annual_revenue"].tolist() == ["5000000.0", "12x"]  # a bad number stays visible
    assert acc["industry"].tolist() == ["software"] * 2 and acc["country"].isna().all()
    src = result.report["events"]["sources"][0]
    assert src["unmapped_values"] == {"event_type": {"Fax": 1}}
    assert src["left_out"] == {"explode_empty:Contacts": 1, "mapped_to_null:event_type": 1}
    assert sorted(result.dropped["source_row"].tolist()) == [1, 2]
    assert result.tables["leads"].empty and set(result.tables["leads"].columns) >= {"lead_id", "created_at"}
    assert result.report["leads"]["note"].startswith("no source")


def test_lookup_links_rows_through_another_file(tmp_path: Path) -> None:
    raw = _write(
        tmp_path,
        Lead=pd.DataFrame({"Id": ["L1", "L2"], "ConvertedOpportunityId": ["O1", ""]}),
        OppHistory=pd.DataFrame(
            {
                "OpportunityId": ["O1", "O9"],
                "StageName": ["Closed Won", "Closed Won"],
                "CreatedDate": ["2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z"],
            }
        ),
    )
    m = mapping(
        {
            "tables": {
                "stage_history": [
                    {
                        "file": "OppHistory",
                        "lookup": {
                            "column": "OpportunityId",
                            "file": "Lead",
                            "key": "ConvertedOpportunityId",
                            "value": "Id",
                        },
                        "columns": {"OpportunityId": "lead_id", "StageName": "stage", "CreatedDate": "ts"},
                        "values": {"stage": {"Closed Won": "closed_won"}},
                    }
                ]
            }
        }
    )
    result = map_tables(raw, m)
    # an opportunity no lead converted into stays visible (validate quarantines it as unknown_lead)
    assert result.tables["stage_history"]["lead_id"].tolist() == ["L1", "unmatched: O9"]
    assert result.report["stage_history"]["sources"][0]["lookup_unmatched"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"columns": {"Lead Idd": "lead_id", "Created": "created_at"}},
            r"Lead.csv.*'Lead Idd'.*Did you mean 'Lead Id'\?.*Columns in Lead.csv: \['Lead Id'",
        ),
        (
            {"columns": {"Lead Id": "leadid", "Created": "created_at"}},
            r"'leadid', which is not a column of the contract table 'leads'. Did you mean 'lead_id'\?",
        ),
        ({"columns": {"Created": "created_at"}}, r"key column\(s\) \['lead_id'\]"),
        ({"file": "Leads"}, r"mapping names file 'Leads'.*Did you mean 'Lead'"),
        (
            {"date_format": "%d.%m.%Y"},
            r"Lead.csv: column 'Created' does not parse as a date: 3 of 3 values fail with format '%d.%m.%Y' "
            r"\(e.g. '03/01/2024 11:00:00' at data row 0\)",
        ),
    ],
)
def test_errors_name_the_file_the_column_and_an_example(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    crm_export(tmp_path)
    src = {"file": "Lead.csv", "columns": {"Lead Id": "lead_id", "Created": "created_at"}} | change
    m = mapping({"date_format": "%m/%d/%Y %H:%M:%S", "tables": {"leads": [src]}})
    with pytest.raises(MappingError, match=message):
        apply_mapping(tmp_path, m)


def test_a_few_bad_dates_are_passed_on_for_quarantine(tmp_path: Path) -> None:
    raw = _write(
        tmp_path,
        ev=pd.DataFrame(
            {"who": ["1"] * 30, "t": ["2024-03-01"] * 29 + ["31/31/2024"], "what": ["page_view"] * 30}
        ),
    )
    m = mapping(
        {
            "tables": {
                "events": [{"file": "ev", "columns": {"who": "lead_id", "t": "ts", "what": "event_type"}}]
            }
        }
    )
    ts = apply_mapping(raw, m, max_bad_share=0.05)["events"]["ts"]
    assert ts.iloc[-1] == "unparseable: 31/31/2024" and ts.iloc[0] == "2024-03-01T00:00:00Z"
    with pytest.raises(MappingError, match="1 of 30 values fail"):
        apply_mapping(raw, m, max_bad_share=0.0)


def test_value_mapping_outside_the_vocabulary_is_refused(tmp_path: Path) -> None:
    crm_export(tmp_path)
    m = mapping(
        {
            "tables": {
                "events": [
                    {
                        "file": "Task",
                        "columns": {"Who": "lead_id", "When": "ts", "Type": "event_type"},
                        "values": {"event_type": {"Call": "phone_call"}},
                    }
                ]
            }
        }
    )
    with pytest.raises(MappingError, match=r"\{'Call': 'phone_call'\}; use one of \['page_view'"):
        apply_mapping(tmp_path, m)


def test_unmapped_values_are_quarantined_by_validate_and_counted(tmp_path: Path) -> None:
    params = make_params(tmp_path)
    crm_export(params.data.raw_dir)
    data = json.loads(json.dumps(CRM_MAPPING))
    del data["tables"]["events"][0]["values"]["event_type"]["Pricing Page"]
    params = params.model_copy(
        update={
            "mapping": mapping(data),
            "validate_": params.validate_.model_copy(update={"max_reject_share": 0.5}),
        }
    )
    result = run_validate(params)
    assert result.reports["events"].reasons == {"unknown_event_type": 1}
    assert result.quarantine["events"]["event_type"].tolist() == ["Pricing Page"]
    report = json.loads((params.data.reports_dir / "mapping.json").read_text())
    assert report["events"]["sources"][0]["unmapped_values"] == {"event_type": {"Pricing Page": 1}}


def test_deals_file_never_feeds_leads_or_accounts(tmp_path: Path) -> None:
    m = mapping(
        {
            "tables": {
                "leads": [{"file": "deals.csv", "columns": {"lead": "lead_id", "created": "created_at"}}],
                "stage_history": [
                    {
                        "kind": "deals",
                        "file": "deals",
                        "lead_id_column": "lead",
                        "created_column": "created",
                        "closed_column": "closed",
                        "status_column": "status",
                        "won_values": ["won"],
                        "lost_values": ["lost"],
                    }
                ],
            }
        }
    )
    with pytest.raises(MappingError, match="deals source: deal attributes exist only once a deal exists"):
        map_tables(tmp_path, m)


def test_lifecycle_and_deals_sources_only_fill_stage_history() -> None:
    with pytest.raises(ValidationError, match="only fills stage_history"):
        mapping({"tables": {"leads": [{"kind": "lifecycle", "file": "c", "id_column": "id", "stages": {}}]}})


@pytest.mark.parametrize("name", ["salesforce", "hubspot"])
def test_example_mappings_are_valid_params(name: str) -> None:
    data = yaml.safe_load((MAPPINGS / f"{name}.yaml").read_text())
    m = MappingParams.model_validate(data["mapping"])
    assert set(m.tables) == set(TABLES)
