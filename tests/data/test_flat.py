"""Flat export cleaning: names, placeholders, numbers and dates as text, outcomes, ids, quarantine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.config import FlatParams
from leadscore.data.flat import (
    ColumnSpec,
    FlatDataError,
    FlatSpec,
    fit_vocabulary,
    normalise_names,
    parse_dates,
    parse_number,
    parse_outcome,
    prepare,
    snake_case,
    transform,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Lead Source", "lead_source"),
        ("LeadSource", "lead_source"),
        ("# of Employees", "of_employees"),
        ("Annual Revenue ($)", "annual_revenue"),
        ("HTTPStatus", "http_status"),
        ("2FA", "c_2fa"),
        ("  Became a Customer Date ", "became_a_customer_date"),
    ],
)
def test_snake_case(name: str, expected: str) -> None:
    assert snake_case(name) == expected


def test_normalised_names_are_unique_and_keep_the_map() -> None:
    assert normalise_names(["Lead Source", "lead_source", "Lead-Source", "?"]) == {
        "Lead Source": "lead_source",
        "lead_source": "lead_source_2",
        "Lead-Source": "lead_source_3",
        "?": "column_3",
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1,200", 1200.0),
        ("1.200.000", 1.2e6),
        ("$5k", 5000.0),
        ("USD 2.5M", 2.5e6),
        ("15%", 0.15),
        ("(300)", -300.0),
        ("−4", -4.0),
        ("3,5", 3.5),
        ("€1,234.56", 1234.56),
        ("12 500", 12500.0),
        ("abc", None),
        ("1-2", None),
        ("1,2,3", None),
        ("", None),
    ],
)
def test_parse_number(text: str, value: float | None) -> None:
    assert parse_number(text) == value


def test_parse_dates_per_value_with_zones_and_epochs() -> None:
    s = pd.Series(
        [
            "2024-03-05",
            "03/05/2024",
            "5 Mar 2024 14:00",
            "2024-03-05T10:00:00Z",
            "2024-03-05 10:00:00+02:00",
            "1709251200",
            "1709251200000",
            "soon",
            None,
            "2024-13-45",
        ]
    )
    got, bad = parse_dates(s, tz="Europe/Berlin")
    expected = pd.to_datetime(
        [
            "2024-03-04 23:00",
            "2024-03-04 23:00",
            "2024-03-05 13:00",
            "2024-03-05 10:00",
            "2024-03-05 08:00",
            "2024-03-01 00:00",
            "2024-03-01 00:00",
            None,
            None,
            None,
        ]
    )
    assert got.tolist() == expected.tolist()
    assert bad.tolist() == [False] * 7 + [True, False, True]
    dayfirst, _ = parse_dates(pd.Series(["03/05/2024"]), dayfirst=True)
    assert dayfirst.iloc[0] == pd.Timestamp("2024-05-03")


def test_parse_outcome_auto_status_open_values_and_unexpected_values() -> None:
    y = parse_outcome(pd.Series(["Yes", "no", "TRUE", "0", None, " 1 "]), (), (), "f.csv", "Won?").y
    assert y.tolist()[:4] == [1.0, 0.0, 1.0, 0.0] and np.isnan(y.iloc[4]) and y.iloc[5] == 1.0
    status = pd.Series(["Closed Won", "Closed Lost", "Open", "closed won"])
    only_pos = parse_outcome(status, ("Closed Won",), (), "f.csv", "Stage")
    assert only_pos.y.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert only_pos.negatives == {"Closed Lost": 1, "Open": 1}  # said out loud, never silent
    both = parse_outcome(status, ("Closed Won",), ("Closed Lost",), "f.csv", "Stage")
    assert both.y.tolist()[:2] == [1.0, 0.0] and np.isnan(both.y.iloc[2]) and both.y.iloc[3] == 1.0
    assert both.open.tolist() == [False, False, True, False] and both.opens == {"Open": 1}
    with pytest.raises(FlatDataError, match=r"'Maybe' ×2.*first at data row 1.*--positive"):
        parse_outcome(pd.Series(["yes", "Maybe", "Maybe"]), (), (), "f.csv", "Won?")
    with pytest.raises(FlatDataError, match=r"f.csv: no row of outcome column 'Stage' has a --positive"):
        parse_outcome(status, ("Won",), (), "f.csv", "Stage")


def messy(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    return pd.DataFrame(
        {
            "Lead ID": [f"L{i}" for i in range(n)],
            "Record Number": [str(1000 + i) for i in range(n)],  # unique consecutive numbers: an id
            "E-Mail": [f"p{i}@x.com" for i in range(n)],
            "Industry": rng.choice(["Software", " software", "Retail", "Select", "N/A"], n),
            "Employees": [f"{v:,}" for v in rng.integers(1, 5000, n)],
            "Budget": np.where(rng.random(n) < 0.05, "call me", [f"${v}k" for v in rng.integers(1, 99, n)]),
            "Newsletter": rng.choice(["Yes", "No", ""], n),
            "Comment": [f"spoke to them about {rng.integers(1e6)}" for _ in range(n)],
            "Region": "EMEA",
            "Signed Up": [
                d.strftime(rng.choice(["%Y-%m-%d", "%d %b %Y"]))
                for d in pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
            ],
            "Converted": np.where(y, "yes", "no"),
        }
    )


def test_prepare_cleans_and_decides_columns() -> None:
    raw = messy()
    raw = pd.concat([raw, raw.iloc[:3]], ignore_index=True)  # exact duplicates
    raw.loc[5, "Converted"] = "N/A"  # a placeholder outcome: quarantined
    p = prepare(raw, "Converted", FlatParams(date_column="Signed Up"), "leads.csv")
    assert p.report["rows_read"] == 203 and p.report["rows_kept"] == 199
    assert p.report["quarantined"] == {"missing_outcome:converted": 1, "duplicate_row": 3}
    assert p.quarantine["source_row"].tolist() == [5, 200, 201, 202]
    assert p.quarantine.loc[0, "Converted"] == "N/A"
    assert p.kinds == {
        "industry": "category",
        "employees": "numeric",
        "budget": "numeric",
        "newsletter": "boolean",
    }
    cols = p.report["columns"]
    assert cols["lead_id"]["reason"] == "id column (unique per row)"
    assert cols["record_number"]["reason"] == "id column (unique whole numbers in row order)"
    assert cols["e_mail"]["reason"].startswith("identity column")
    assert cols["comment"]["reason"].startswith("free text")
    assert cols["region"]["reason"] == "constant ('EMEA')"
    assert cols["budget"]["unparseable"] > 0 and cols["budget"]["example"] == "call me"
    assert cols["industry"]["placeholders"] > 0
    assert cols["signed_up"]["role"].startswith("split date")
    assert p.dates is not None and p.dates.notna().all()
    assert not p.warnings


def test_prepare_errors_name_file_column_and_example() -> None:
    raw = messy()
    with pytest.raises(
        FlatDataError, match=r"leads.csv: --target names column 'Convertd'.*Did you mean 'Converted'"
    ):
        prepare(raw, "Convertd", FlatParams(), "leads.csv")
    bad = raw.assign(**{"Signed Up": ["someday"] * 150 + ["2024-01-01"] * 50})
    with pytest.raises(
        FlatDataError, match=r"date column 'Signed Up' does not parse: 150 of 200 values \(e.g. 'someday'"
    ):
        prepare(bad, "Converted", FlatParams(date_column="Signed Up"), "leads.csv")
    with pytest.raises(FlatDataError, match="empty after cleaning"):
        prepare(raw.assign(Converted="-"), "Converted", FlatParams(), "leads.csv")
    with pytest.raises(FlatDataError, match="single class"):
        prepare(raw.assign(Converted="no"), "Converted", FlatParams(), "leads.csv")
    dup = pd.concat([raw] * 2, ignore_index=True)
    with pytest.raises(FlatDataError, match=r"200 of 400 rows quarantined.*duplicate_row"):
        prepare(dup, "Converted", FlatParams(), "leads.csv")


def test_without_date_column_a_warning_says_the_estimate_is_optimistic() -> None:
    p = prepare(messy(), "Converted", FlatParams(), "leads.csv")
    assert p.dates is None
    assert p.warnings[0].startswith("WARNING") and "OPTIMISTIC" in p.warnings[0]
    assert "signed_up" in p.kinds and "flat.date_column: 'Signed Up'" in p.warnings[1]


def test_vocabulary_and_transform_apply_the_training_cleaning() -> None:
    params = FlatParams(max_categories=2, min_category_rows=2)
    train = pd.Series(
        ["Software", "software ", "SOFTWARE", "Retail", "Retail", "Finance", "Finance", "Rare", None]
    )
    vocab = fit_vocabulary(train, params)
    assert vocab == ("finance", "software", "other")  # top 2 by count (ties by name), then other
    spec = FlatSpec(
        target="converted",
        columns=(
            ColumnSpec("industry", "Industry", "category", vocab),
            ColumnSpec("employees", "Employees", "numeric"),
            ColumnSpec("newsletter", "Newsletter", "boolean"),
            ColumnSpec("signed_up", "Signed Up", "date"),
        ),
        names={
            "Industry": "industry",
            "Employees": "employees",
            "Newsletter": "newsletter",
            "Signed Up": "signed_up",
            "Created": "created",
        },
        placeholders=("n/a", "select", ""),
        date_column="created",
    )
    rows = pd.DataFrame(
        {
            "Industry": ["Software", "Mining", "N/A"],
            "Employees": ["1,200", "15%", None],
            "newsletter": ["yes", "No", "maybe"],
            "Signed Up": ["2024-01-01", "01/11/2024", ""],
            "Created": ["2024-01-11", "2024-01-11", "2024-01-11"],
        }
    )
    x = transform(rows, spec)
    expected = np.array([[1.0, 1200.0, 1.0, -10.0], [2.0, 0.15, 0.0, 0.0], [np.nan, np.nan, np.nan, np.nan]])
    np.testing.assert_array_equal(x, expected)
    assert transform(pd.DataFrame({"unrelated": [1]}), spec).shape == (1, 4)
