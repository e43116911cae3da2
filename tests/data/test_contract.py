"""The data contract: every bad input is quarantined with its reason or fails with a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.config import ValidateParams
from leadscore.data.contract import TABLES
from leadscore.data.load import read_table
from leadscore.data.schemas import SCHEMAS, STR, TIMESTAMP
from leadscore.data.validate import (
    NOTE_REASONS,
    ContractError,
    ValidationResult,
    run_validate,
    stage_out_of_order,
    validate_tables,
)

from .conftest import EXPORT_TIME, add_rows, good_tables, make_params, write_tables

LEAD = {
    "job_title": "CTO",
    "seniority": "vp",
    "department": "it",
    "country": "DE",
    "lead_source": "content",
    "email_domain": "acme.com",
}


def validate(raw: dict[str, pd.DataFrame], **kw: object) -> ValidationResult:
    """Validate with the fixed export time, check the counts add up, and return the result."""
    result = validate_tables(raw, ValidateParams(export_time=EXPORT_TIME, **kw))  # type: ignore[arg-type]
    for t in TABLES:
        rep = result.reports[t]
        assert rep.read == len(raw[t]) == rep.accepted + rep.quarantined
        assert len(result.tables[t]) == rep.accepted and len(result.quarantine[t]) == rep.quarantined
        assert sum(n for r, n in rep.reasons.items() if r not in NOTE_REASONS) == rep.quarantined
        assert set(result.quarantine[t]["reason"]) == {r for r in rep.reasons if r not in NOTE_REASONS}
    return result


@pytest.fixture(scope="module")
def expected() -> ValidationResult:
    """The result on the good tables alone: what good rows must look like whatever else is added."""
    return validate(good_tables())


def reasons_of(result: ValidationResult, table: str) -> dict[int, str]:
    """source_row -> reason of the quarantined rows of ``table``."""
    return result.quarantine[table]["reason"].to_dict()


def assert_good_unchanged(result: ValidationResult, expected: ValidationResult, *tables: str) -> None:
    for t in tables or TABLES:
        pd.testing.assert_frame_equal(result.tables[t], expected.tables[t])


# --- good data --------------------------------------------------------------------------------------


def test_good_tables_are_accepted_and_normalised(expected: ValidationResult) -> None:
    assert all(r.quarantined == 0 and r.reasons == {} for r in expected.reports.values())
    accounts, leads = expected.tables["accounts"], expected.tables["leads"]
    assert accounts["employees"].dtype == "float64" and np.isnan(accounts.loc[1, "employees"])
    assert accounts.loc[1, "country"] == "NA"  # not read as missing
    assert list(leads["lead_id"]) == ["L1", "L2", "007"]  # ids stay strings, leading zeros kept
    assert leads["created_at"].dtype == TIMESTAMP and leads["lead_id"].dtype == STR
    assert expected.export_time == pd.Timestamp(EXPORT_TIME)
    for t in TABLES:  # the published schemas accept what validation produces
        SCHEMAS[t].validate(expected.tables[t])


def test_timestamps_become_naive_utc_whole_seconds(raw: dict[str, pd.DataFrame]) -> None:
    raw["leads"].loc[0, "created_at"] = "2024-03-01T10:00:00+02:00"
    raw["leads"].loc[1, "created_at"] = " 2024-03-02T00:00:00.750Z "
    raw["leads"].loc[2, "created_at"] = "2024-03-03"
    leads = validate(raw).tables["leads"]
    assert leads["created_at"].dtype == TIMESTAMP
    assert list(leads["created_at"]) == [
        pd.Timestamp("2024-03-01 08:00:00"),
        pd.Timestamp("2024-03-02 00:00:00"),
        pd.Timestamp("2024-03-03"),
    ]


def test_tz_aware_parquet_timestamps_are_converted(raw: dict[str, pd.DataFrame]) -> None:
    raw["leads"]["created_at"] = pd.to_datetime(raw["leads"]["created_at"]).dt.tz_localize("Europe/Berlin")
    leads = validate(raw).tables["leads"]
    assert leads.loc[0, "created_at"] == pd.Timestamp("2024-03-01 09:00:00")  # CET = UTC+1 in March


def test_text_is_stripped_vocabularies_lower_cased_domain_derived(raw: dict[str, pd.DataFrame]) -> None:
    raw["events"].loc[0, "event_type"] = " Page_View "
    raw["stage_history"].loc[0, "stage"] = "MQL"
    raw["leads"]["email"] = ["ann@Acme.COM", "bob@x.io", None]
    raw["leads"]["email_domain"] = [None, " Other.COM ", None]
    raw["leads"].loc[0, "job_title"] = "  CTO "
    result = validate(raw)
    assert result.tables["events"].loc[0, "event_type"] == "page_view"
    assert result.tables["stage_history"].loc[0, "stage"] == "mql"
    leads = result.tables["leads"]
    assert list(leads["email_domain"].fillna("-")) == ["acme.com", "other.com", "-"]
    assert leads.loc[0, "job_title"] == "CTO"


def test_email_domain_column_may_be_replaced_by_email(raw: dict[str, pd.DataFrame]) -> None:
    raw["leads"] = raw["leads"].drop(columns="email_domain").assign(email=["a@b.com", "c@d.com", "e@f.com"])
    assert list(validate(raw).tables["leads"]["email_domain"]) == ["b.com", "d.com", "f.com"]


def test_typed_parquet_columns_are_normalised(
    raw: dict[str, pd.DataFrame], expected: ValidationResult
) -> None:
    raw["accounts"]["employees"] = pd.array([120, None], dtype="Int64")
    raw["accounts"]["annual_revenue"] = [5e6, 0.0]
    raw["leads"]["created_at"] = pd.to_datetime(raw["leads"]["created_at"]).astype("datetime64[ns]")
    raw["stage_history"]["ts"] = pd.to_datetime(raw["stage_history"]["ts"]).dt.tz_localize("UTC")
    raw["events"]["properties"] = [{"page": "/pricing"}, None, None, None, None]  # a Parquet struct: kept
    raw["events"]["campaign"] = "spring"  # outside the contract: passed through
    result = validate(raw)
    assert_good_unchanged(result, expected, "accounts", "leads", "stage_history")
    assert result.tables["events"].loc[0, "properties"] == {"page": "/pricing"}
    assert list(result.tables["events"].columns[-2:]) == ["properties", "campaign"]


def test_numeric_ids_become_strings(raw: dict[str, pd.DataFrame]) -> None:
    raw["accounts"]["account_id"] = [1.0, 2.0]  # how Parquet writers store nullable integer ids
    raw["leads"]["account_id"] = pd.array([1, None, 2], dtype="Int64")
    result = validate(raw)
    assert list(result.tables["accounts"]["account_id"]) == ["1", "2"]
    assert list(result.tables["leads"]["account_id"].fillna("-")) == ["1", "-", "2"]


# --- table-level problems ---------------------------------------------------------------------------


def test_missing_required_column_names_table_column_and_found(raw: dict[str, pd.DataFrame]) -> None:
    raw["events"] = raw["events"].drop(columns="ts")
    with pytest.raises(ContractError, match=r"'events'.*\['ts'\].*found columns \['lead_id', 'event_type'\]"):
        validate_tables(raw, ValidateParams(export_time=EXPORT_TIME))


def test_missing_table(raw: dict[str, pd.DataFrame]) -> None:
    del raw["accounts"]
    with pytest.raises(ContractError, match="accounts"):
        validate_tables(raw, ValidateParams(export_time=EXPORT_TIME))


# --- row-level problems -----------------------------------------------------------------------------


def test_wrong_types_are_quarantined(raw: dict[str, pd.DataFrame], expected: ValidationResult) -> None:
    add_rows(
        raw,
        "accounts",
        {"account_id": "A8", "industry": "saas", "employees": "lots", "annual_revenue": "1", "country": "DE"},
        {"account_id": "A9", "industry": "saas", "employees": "3", "annual_revenue": "abc", "country": "DE"},
        {"account_id": "A10", "industry": "saas", "employees": "2.5", "annual_revenue": "1", "country": "DE"},
    )
    result = validate(raw)
    assert reasons_of(result, "accounts") == {
        2: "bad_type:employees",
        3: "bad_type:annual_revenue",
        4: "bad_type:employees",
    }
    assert result.quarantine["accounts"].loc[2, "employees"] == "lots"  # the raw value, as a string
    assert_good_unchanged(result, expected)


def test_unparseable_timestamp(raw: dict[str, pd.DataFrame], expected: ValidationResult) -> None:
    add_rows(
        raw,
        "events",
        {"lead_id": "L1", "ts": "yesterday", "event_type": "page_view"},
        {"lead_id": "L1", "ts": "1709290000", "event_type": "page_view"},
    )  # epoch: ambiguous unit
    result = validate(raw)
    assert reasons_of(result, "events") == {5: "bad_timestamp:ts", 6: "bad_timestamp:ts"}
    assert_good_unchanged(result, expected)


def test_future_timestamp_beyond_tolerance(raw: dict[str, pd.DataFrame], expected: ValidationResult) -> None:
    add_rows(
        raw,
        "events",
        {"lead_id": "L1", "ts": "2024-06-01T23:00:00", "event_type": "page_view"},  # +23 h
        {"lead_id": "L1", "ts": "2024-06-02T01:00:00", "event_type": "page_view"},  # +25 h
    )
    result = validate(raw, future_tolerance_hours=24)
    assert reasons_of(result, "events") == {6: "future_timestamp:ts"}
    assert result.reports["events"].accepted == 6


def test_null_export_time_means_now(raw: dict[str, pd.DataFrame]) -> None:
    result = validate_tables(raw, ValidateParams(export_time=None))
    assert abs(result.export_time - pd.Timestamp.now(tz="UTC").tz_localize(None)) < pd.Timedelta(minutes=1)


def test_unknown_event_type_and_stage(raw: dict[str, pd.DataFrame], expected: ValidationResult) -> None:
    add_rows(raw, "events", {"lead_id": "L1", "ts": "2024-03-03T00:00:00", "event_type": "tweet"})
    add_rows(raw, "stage_history", {"lead_id": "L2", "stage": "won", "ts": "2024-03-09T00:00:00"})
    result = validate(raw)
    assert reasons_of(result, "events") == {5: "unknown_event_type"}
    assert reasons_of(result, "stage_history") == {5: "unknown_stage"}
    assert_good_unchanged(result, expected)


def test_negative_values(raw: dict[str, pd.DataFrame], expected: ValidationResult) -> None:
    add_rows(
        raw,
        "accounts",
        {"account_id": "A8", "industry": "saas", "employees": "-3", "annual_revenue": "1", "country": "DE"},
        {"account_id": "A9", "industry": "saas", "employees": "3", "annual_revenue": "-1", "country": "DE"},
    )
    result = validate(raw)
    assert reasons_of(result, "accounts") == {
        2: "negative_value:employees",
        3: "negative_value:annual_revenue",
    }
    assert_good_unchanged(result, expected)


def test_missing_key_value(raw: dict[str, pd.DataFrame], expected: ValidationResult) -> None:
    add_rows(raw, "leads", {"lead_id": " ", "account_id": "A1", "created_at": "2024-03-01", **LEAD})
    result = validate(raw)
    assert reasons_of(result, "leads") == {3: "missing_value:lead_id"}
    assert_good_unchanged(result, expected)


def test_duplicate_keys_keep_the_first(raw: dict[str, pd.DataFrame], expected: ValidationResult) -> None:
    add_rows(raw, "leads", {"lead_id": "L1", "account_id": "A2", "created_at": "2024-01-01", **LEAD})
    # same key after normalisation (padding, case, offset) as event 0
    add_rows(raw, "events", {"lead_id": " L1", "ts": "2024-03-01T12:00:00+01:00", "event_type": "Page_View"})
    result = validate(raw)
    assert reasons_of(result, "leads") == {3: "duplicate_key"}
    assert reasons_of(result, "events") == {5: "duplicate_key"}
    assert_good_unchanged(result, expected)


def test_rows_of_unknown_or_quarantined_leads(
    raw: dict[str, pd.DataFrame], expected: ValidationResult
) -> None:
    add_rows(raw, "leads", {"lead_id": "L4", "account_id": "A1", "created_at": "not a date", **LEAD})
    add_rows(
        raw,
        "events",
        {"lead_id": "L9", "ts": "2024-03-03T00:00:00", "event_type": "page_view"},
        {"lead_id": "L4", "ts": "2024-03-03T00:00:00", "event_type": "page_view"},
    )
    add_rows(raw, "stage_history", {"lead_id": "L9", "stage": "mql", "ts": "2024-03-09T00:00:00"})
    result = validate(raw)
    assert reasons_of(result, "leads") == {3: "bad_timestamp:created_at"}
    assert reasons_of(result, "events") == {5: "unknown_lead", 6: "unknown_lead"}
    assert reasons_of(result, "stage_history") == {5: "unknown_lead"}
    assert_good_unchanged(result, expected)


def test_unknown_account_is_nulled_not_quarantined(raw: dict[str, pd.DataFrame]) -> None:
    raw["leads"].loc[1, "account_id"] = "A404"
    result = validate(raw)
    rep = result.reports["leads"]
    assert (rep.accepted, rep.quarantined, rep.reasons) == (3, 0, {"unknown_account_nulled": 1})
    assert pd.isna(result.tables["leads"].loc[1, "account_id"])
    assert result.tables["leads"].loc[0, "account_id"] == "A1"


def test_event_before_lead_created(raw: dict[str, pd.DataFrame], expected: ValidationResult) -> None:
    add_rows(
        raw,
        "events",
        {"lead_id": "L1", "ts": "2024-02-29T11:00:00", "event_type": "page_view"},  # -23 h
        {"lead_id": "L1", "ts": "2024-02-29T09:00:00", "event_type": "page_view"},  # -25 h
    )
    result = validate(raw)
    assert reasons_of(result, "events") == {6: "event_before_lead_created"}
    assert result.reports["events"].accepted == 6


def test_stage_out_of_order(raw: dict[str, pd.DataFrame], expected: ValidationResult) -> None:
    add_rows(raw, "stage_history", {"lead_id": "L1", "stage": "sal", "ts": "2024-03-06T00:00:00"})
    result = validate(raw)
    assert reasons_of(result, "stage_history") == {5: "stage_out_of_order"}
    assert_good_unchanged(result, expected)


def test_stage_order_rules() -> None:
    rows = [  # lead, stage, day, expected out of order
        ("a", "mql", 1, False),
        ("a", "sql", 2, False),
        ("a", "mql", 3, True),  # backwards
        ("a", "disqualified", 4, False),  # may follow anything
        ("a", "recycled", 5, False),
        ("a", "mql", 6, False),
        ("a", "sal", 7, False),  # new cycle
        ("a", "closed_won", 8, False),
        ("a", "closed_lost", 9, False),  # same rank
        ("b", "opportunity", 1, False),
        ("b", "sql", 1, False),
        ("b", "mql", 2, True),  # ties never conflict
        ("c", "sql", 3, False),
        ("c", "mql", 1, False),  # order is by time
    ]
    df = pd.DataFrame(
        {
            "lead_id": [r[0] for r in rows],
            "stage": [r[1] for r in rows],
            "ts": [pd.Timestamp("2024-01-01") + pd.Timedelta(days=r[2]) for r in rows],
        },
        index=pd.RangeIndex(100, 100 + len(rows)),
    )
    out = stage_out_of_order(df)
    assert list(out.index) == list(df.index)
    assert list(out) == [r[3] for r in rows]


def test_first_failing_check_wins(raw: dict[str, pd.DataFrame]) -> None:
    # a bad type is reported before the negative value and the duplicate key on the same row
    add_rows(
        raw,
        "accounts",
        {"account_id": "A1", "industry": "saas", "employees": "-1", "annual_revenue": "x", "country": "DE"},
    )
    assert reasons_of(validate(raw), "accounts") == {2: "bad_type:annual_revenue"}


# --- I/O edge ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_run_validate_writes_tables_quarantine_and_report(
    tmp_path: Path, raw: dict[str, pd.DataFrame], expected: ValidationResult, fmt: str
) -> None:
    add_rows(
        raw,
        "accounts",
        {"account_id": "A9", "industry": "saas", "employees": "lots", "annual_revenue": "1", "country": "DE"},
    )
    params = make_params(tmp_path, max_reject_share=0.5)
    write_tables(raw, params.data.raw_dir, fmt)
    (params.data.raw_dir / "_truth").mkdir()  # the demo oracle: not a table, left alone
    (params.data.raw_dir / "_truth" / "probabilities.csv").write_text("lead_id,p\nL1,0.5\n")

    result = run_validate(params)

    for t in TABLES:
        pd.testing.assert_frame_equal(
            pd.read_parquet(params.data.interim_dir / f"{t}.parquet"), expected.tables[t]
        )
    q = pd.read_parquet(params.data.interim_dir / "quarantine" / "accounts.parquet")
    assert q.index.name == "source_row" and list(q.index) == [2]
    assert q.loc[2, "reason"] == "bad_type:employees" and q.loc[2, "employees"] == "lots"
    assert q.loc[2, "account_id"] == "A9"
    report = json.loads((params.data.reports_dir / "validation.json").read_text())
    assert report["accounts"] == {
        "read": 3,
        "accepted": 2,
        "quarantined": 1,
        "reasons": {"bad_type:employees": 1},
    }
    assert report["events"]["quarantined"] == 0
    assert result.reports["accounts"].quarantined == 1
    assert (params.data.raw_dir / "_truth" / "probabilities.csv").exists()


def test_too_many_rejects_fail_with_a_helpful_message(tmp_path: Path, raw: dict[str, pd.DataFrame]) -> None:
    add_rows(
        raw,
        "events",
        *[{"lead_id": "L1", "ts": f"2024-03-0{d}T00:00:00", "event_type": "tweet"} for d in range(2, 5)],
    )
    params = make_params(tmp_path, max_reject_share=0.2)
    write_tables(raw, params.data.raw_dir, "csv")
    with pytest.raises(ContractError) as err:
        run_validate(params)
    msg = str(err.value)
    assert "'events'" in msg and "3 of 8" in msg and "37.50%" in msg and "20.00%" in msg
    assert "unknown_event_type × 3" in msg and "event_type='tweet'" in msg
    assert str(params.data.interim_dir / "quarantine" / "events.parquet") in msg
    # the evidence is written before failing
    assert len(pd.read_parquet(params.data.interim_dir / "quarantine" / "events.parquet")) == 3


def test_read_table_folder_of_parts_and_clear_errors(tmp_path: Path) -> None:
    df = good_tables()["events"]
    (tmp_path / "events").mkdir()
    df.iloc[:2].to_parquet(tmp_path / "events" / "part-0.parquet", index=False)
    df.iloc[2:].to_csv(tmp_path / "events" / "part-1.csv", index=False)
    (tmp_path / "events" / "_SUCCESS").write_text("")
    pd.testing.assert_frame_equal(read_table(tmp_path, "events"), df)

    with pytest.raises(FileNotFoundError, match=r"'leads'.*leads\.parquet.*leads\.csv.*leads/"):
        read_table(tmp_path, "leads")
    df.to_csv(tmp_path / "events.csv", index=False)
    with pytest.raises(ValueError, match="more than once"):
        read_table(tmp_path, "events")


def test_csv_reads_strings_only(tmp_path: Path) -> None:
    (tmp_path / "accounts.csv").write_text(
        "account_id , industry,employees,annual_revenue,country\n007,,12,1e3,NA\n"
    )
    df = read_table(tmp_path, "accounts")
    assert list(df.columns) == ["account_id", "industry", "employees", "annual_revenue", "country"]
    row = df.iloc[0]
    assert (row["account_id"], row["employees"], row["annual_revenue"], row["country"]) == (
        "007",
        "12",
        "1e3",
        "NA",
    )
    assert pd.isna(row["industry"])  # only an empty field is missing
    assert all(dt == STR for dt in df.dtypes)
