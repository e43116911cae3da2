"""Lifecycle-date columns and leads + deals -> stage history (hand-built expected frames)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from leadscore.config import DealsSource, LifecycleSource, ValidateParams
from leadscore.data.lifecycle import DateOptions, MappingError, deals_to_stages, lifecycle_to_stages
from leadscore.data.validate import stage_out_of_order, validate_tables

from .conftest import EXPORT_TIME


def _stages(rows: list[tuple[object, object, object, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["lead_id", "stage", "ts", "reason"], dtype=object)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["lead_id", "ts", "stage"], kind="stable", na_position="last").reset_index(
        drop=True
    )


LIFECYCLE = LifecycleSource(
    kind="lifecycle",
    file="contacts",
    id_column="Record ID",
    stages={
        "Became a Marketing Qualified Lead Date": "mql",
        "Became a Sales Qualified Lead Date": "sql",
        "Became a Customer Date": "closed_won",
        "Became Other Date": "disqualified",
    },
    reason_column="Lost Reason",
)


def test_lifecycle_dates_become_one_stage_row_per_filled_date() -> None:
    contacts = pd.DataFrame(
        {
            "Record ID": ["101", "102", "103"],
            "Became a Marketing Qualified Lead Date": ["2024-03-01 10:00", "2024-03-02 08:00", ""],
            "Became a Sales Qualified Lead Date": ["2024-03-10 09:00", "", ""],
            "Became a Customer Date": ["2024-04-01 00:00", "", ""],
            "Became Other Date": ["", "2024-05-01 12:00", ""],
            "Lost Reason": ["", "no_budget", ""],
            "Lead Status": ["Customer", "Lost", "Open"],  # not mapped: never read
        }
    )
    got = lifecycle_to_stages(contacts, LIFECYCLE, DateOptions(tz="Europe/Berlin"), "contacts", 0.05)
    expected = _stages(
        [
            ("101", "mql", "2024-03-01T09:00:00Z", np.nan),
            ("101", "sql", "2024-03-10T08:00:00Z", np.nan),
            ("101", "closed_won", "2024-03-31T22:00:00Z", np.nan),  # CEST from 31 March
            ("102", "mql", "2024-03-02T07:00:00Z", np.nan),
            ("102", "disqualified", "2024-05-01T10:00:00Z", "no_budget"),
        ]
    )
    assert_frame_equal(_sorted(got), _sorted(expected))


def test_lifecycle_bad_dates_are_kept_for_quarantine_or_stop_the_run() -> None:
    contacts = pd.DataFrame(
        {
            "Record ID": [str(i) for i in range(40)],
            "Became a Marketing Qualified Lead Date": ["2024-03-01"] * 39 + ["yesterday-ish"],
            "Became a Sales Qualified Lead Date": [""] * 40,
            "Became a Customer Date": [""] * 40,
            "Became Other Date": [""] * 40,
            "Lost Reason": [""] * 40,
        }
    )
    got = lifecycle_to_stages(contacts, LIFECYCLE, DateOptions(), "contacts", 0.05)
    assert got["ts"].iloc[-1] == "unparseable: yesterday-ish"
    contacts["Became a Sales Qualified Lead Date"] = ["03/31/2024"] * 20 + ["end of Q1"] * 20
    with pytest.raises(
        MappingError, match=r"contacts: column 'Became a Sales Qualified Lead Date'.*'end of Q1'"
    ):
        lifecycle_to_stages(contacts, LIFECYCLE, DateOptions(), "contacts", 0.05)


def test_lifecycle_missing_column_is_named_with_a_suggestion() -> None:
    contacts = pd.DataFrame({"Record ID": ["1"], "Became a Marketing Qualified Lead date": ["2024-01-01"]})
    with pytest.raises(
        MappingError,
        match=r"'Became a Marketing Qualified Lead Date'.*Did you mean "
        r"'Became a Marketing Qualified Lead date'",
    ):
        lifecycle_to_stages(contacts, LIFECYCLE, DateOptions(), "contacts", 0.05)


DEALS = DealsSource(
    kind="deals",
    file="deals",
    lead_id_column="lead",
    created_column="created",
    closed_column="closed",
    status_column="status",
    won_values=("Won",),
    lost_values=("Lost",),
    open_values=("Open",),
)


def _deals(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["lead", "created", "closed", "status"])
    frame["amount"] = "99999"  # a deal attribute: must never be read
    return frame


def test_deals_become_opportunity_and_outcome_rows_in_cycles() -> None:
    deals = _deals(
        [
            ("A", "2024-01-10 09:00", "2024-02-01", "Won"),  # won
            ("B", "2024-01-05 10:00", "2024-01-20", "Lost"),  # lost, then a new deal that is won
            ("B", "2024-03-01 10:00", "2024-03-20", "won"),
            ("C", "2024-02-01 10:00", "2024-02-15", "Lost"),  # two overlapping deals: one cycle
            ("C", "2024-02-05 10:00", "2024-02-25", "Lost"),
            ("D", "2024-04-01 10:00", "", "Open"),  # open: opportunity only
            ("E", "2024-04-02 10:00", "2024-04-02", "Won"),  # closed the day it was created (date only)
        ]
    )
    got, counts = deals_to_stages(deals, DEALS, DateOptions(), "deals", 0.05)
    expected = _stages(
        [
            ("A", "opportunity", "2024-01-10T09:00:00Z", np.nan),
            ("A", "closed_won", "2024-02-01T00:00:00Z", np.nan),
            ("B", "opportunity", "2024-01-05T10:00:00Z", np.nan),
            ("B", "closed_lost", "2024-01-20T00:00:00Z", np.nan),
            ("B", "recycled", "2024-03-01T10:00:00Z", np.nan),
            ("B", "opportunity", "2024-03-01T10:00:00Z", np.nan),
            ("B", "closed_won", "2024-03-20T00:00:00Z", np.nan),
            ("C", "opportunity", "2024-02-01T10:00:00Z", np.nan),
            ("C", "closed_lost", "2024-02-25T00:00:00Z", np.nan),
            ("D", "opportunity", "2024-04-01T10:00:00Z", np.nan),
            ("E", "opportunity", "2024-04-02T10:00:00Z", np.nan),
            ("E", "closed_won", "2024-04-02T10:00:00Z", np.nan),  # clamped to its creation
        ]
    )
    assert_frame_equal(_sorted(got), _sorted(expected))
    assert counts == {
        "deals": 7,
        "won": 3,
        "lost": 3,
        "open": 1,
        "unmapped_status": 0,
        "unusable": 0,
        "cycles": 6,
    }
    # the history is in funnel order: validate's check finds nothing to quarantine
    ordered = got.assign(ts=pd.to_datetime(got["ts"]))
    assert not stage_out_of_order(ordered).any()


def test_deal_problems_stay_visible_for_validate() -> None:
    deals = _deals(
        [
            ("A", "2024-01-10 09:00", "2024-02-01", "Pending Legal"),  # unknown status
            ("B", "", "2024-02-01", "Won"),  # no created date
            ("C", "2024-01-10 09:00", "", "Won"),  # won without a close date
        ]
    )
    got, counts = deals_to_stages(deals, DEALS, DateOptions(), "deals", 0.5)
    assert counts["unmapped_status"] == 1 and counts["unusable"] == 1
    expected = _stages(
        [
            ("A", "Pending Legal", "2024-01-10T09:00:00Z", np.nan),
            ("B", "opportunity", np.nan, np.nan),
            ("C", "opportunity", "2024-01-10T09:00:00Z", np.nan),
            ("C", "closed_won", np.nan, np.nan),
        ]
    )
    assert_frame_equal(_sorted(got), _sorted(expected))
    leads = pd.DataFrame(
        {
            "lead_id": list("ABC"),
            "account_id": None,
            "created_at": "2024-01-01T00:00:00",
            "email_domain": "x.com",
            "job_title": "CTO",
            "seniority": None,
            "department": None,
            "country": "DE",
            "lead_source": "webinar",
        }
    )
    raw = {
        "accounts": pd.DataFrame(
            columns=["account_id", "industry", "employees", "annual_revenue", "country"]
        ),
        "leads": leads,
        "events": pd.DataFrame(columns=["lead_id", "ts", "event_type"]),
        "stage_history": got,
    }
    result = validate_tables(raw, ValidateParams(export_time=EXPORT_TIME))
    assert result.reports["stage_history"].reasons == {"missing_value:ts": 2, "unknown_stage": 1}
    assert result.reports["stage_history"].accepted == 1


def test_deal_attributes_are_never_read() -> None:
    deals = _deals([("A", "2024-01-10 09:00", "2024-02-01", "Won")])
    got, _ = deals_to_stages(deals, DEALS, DateOptions(), "deals", 0.05)
    assert list(got.columns) == ["lead_id", "stage", "ts", "reason"]
    assert "99999" not in got.astype(str).to_numpy()
    # the same rows whatever the attribute says
    other, _ = deals_to_stages(deals.assign(amount="1"), DEALS, DateOptions(), "deals", 0.05)
    assert_frame_equal(got, other)
