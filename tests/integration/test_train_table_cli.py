"""`leadscore train-table` as a new user runs it: from any folder, no params.yaml, flags for everything.

Issue 11 item 4: outcome values (--positive / --negative; other values are open: set aside, counted, in
a quarantine file that exists), --date-column or --rows-in-time-order, --drop, --allow, --out,
optional --params; errors of one or two lines naming file, column and an example value.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from tests.exports import make

runner = CliRunner()


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder that is not the project: no params.yaml anywhere near it."""
    work = tmp_path / "somewhere" / "else"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert not (work / "params.yaml").exists()
    return work


def _run(*args: str):
    return runner.invoke(app, ["train-table", *args])


def _error_lines(output: str) -> list[str]:
    return [line for line in output.strip().splitlines() if line.strip()]


def test_salesforce_status_with_open_deals_from_any_folder(elsewhere: Path) -> None:
    export = make("salesforce", n=3000, seed=5)
    export.frame.to_csv(elsewhere / "leads report.csv", index=False)
    n_open = int(export.frame["Status"].isin(["Open", "Negotiation"]).sum())
    res = _run(
        "leads report.csv",
        "--target", "Status",
        "--positive", "Closed Won",
        "--negative", "Closed Lost",
        "--date-column", "Created Date",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    out = elsewhere / "flat"
    q = pd.read_csv(out / "quarantine.csv")
    assert (q["reason"] == "open_outcome:status").sum() == n_open > 0  # set aside, never negatives
    assert set(q.loc[q["reason"] == "open_outcome:status", "Status"]) == {"Open", "Negotiation"}
    cleaning = json.loads((out / "cleaning.json").read_text())
    assert cleaning["open_outcome_values"] == {
        k: int(v) for k, v in export.frame["Status"].value_counts()[["Open", "Negotiation"]].items()
    }
    assert cleaning["rows_kept"] == len(export.frame) - n_open
    metrics = json.loads((out / "metrics.json").read_text())["status"]
    assert metrics["split"] == "time" and not metrics["optimistic"]
    leakage = json.loads((out / "leakage.json").read_text())
    assert {"rating", "last_activity", "onboarding_contact"} <= set(leakage["excluded"])
    assert (out / "leakage.md").is_file() and (out / "bundle" / "manifest.json").is_file()
    assert "open_outcome" in res.output or "status" in res.output


def test_only_positive_values_says_which_values_became_negatives(elsewhere: Path) -> None:
    make("hubspot", n=2500, seed=6).frame.to_csv(elsewhere / "contacts.csv", index=False)
    res = _run("contacts.csv", "--target", "Lifecycle Stage", "--positive", "customer",
               "--date-column", "Create Date", "--out", "hs")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "read as NEGATIVE" in res.output and "'marketingqualifiedlead'" in res.output
    cleaning = json.loads((elsewhere / "hs" / "cleaning.json").read_text())
    assert set(cleaning["negative_outcome_values"]) == {"lead", "marketingqualifiedlead", "other"}


def test_rows_in_time_order_drop_and_allow(elsewhere: Path) -> None:
    export = make("web_form", n=2500, seed=7).frame.drop(columns=["Created"])
    export.to_csv(elsewhere / "web.csv", index=False)
    res = _run("web.csv", "--target", "Converted", "--rows-in-time-order", "--drop", "Country",
               "--allow", "Lead Number", "--out", "run1")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "OPTIMISTIC" not in res.output  # row order is a time order: no random-split warning
    out = elsewhere / "run1"
    metrics = json.loads((out / "metrics.json").read_text())["converted"]
    assert metrics["split"] == "row order" and not metrics["optimistic"]
    cols = json.loads((out / "cleaning.json").read_text())["columns"]
    assert cols["country"]["reason"].startswith("dropped (--drop")
    assert cols["lead_number"]["role"] == "candidate" and cols["lead_number"]["allowed"]  # an id, allowed
    assert cols["prospect_id"]["reason"] == "id column (UUID- or hash-like values)"
    assert cols["column_0"]["reason"].startswith("id column (unique")  # the "#" row number
    assert cols["do_not_email"]["role"] == "candidate"  # an opt-out flag is not identity
    assert cols["landing_page_id"]["role"] == "candidate"  # a real categorical despite its name
    assert cols["email"]["reason"] == "identity column (e-mail addresses)"
    train = json.loads((out / "cleaning.json").read_text())["train"]
    assert train["bounds"]["train"][0] == "row 0"


def test_allow_never_brings_back_the_outcome_and_errors_are_short(elsewhere: Path) -> None:
    export = make("web_form", n=1500, seed=8).frame
    export.to_csv(elsewhere / "web.csv", index=False)
    res = _run("web.csv", "--target", "Converted", "--allow", "Converted")
    assert res.exit_code == 1 and "web.csv" in res.output and "outcome" in res.output
    assert len(_error_lines(res.output)) <= 2

    res = _run("web.csv", "--target", "Lead Source")  # not yes/no: asks for --positive, shows values
    assert res.exit_code == 1 and "'Lead Source'" in res.output and "--positive" in res.output
    assert len(_error_lines(res.output)) <= 2

    res = _run("web.csv", "--target", "Converted", "--date-column", "Lead Source")
    assert res.exit_code == 1 and "'Lead Source'" in res.output and "e.g." in res.output
    assert len(_error_lines(res.output)) <= 2

    res = _run("web.csv", "--target", "Converted", "--date-column", "Created", "--rows-in-time-order")
    assert res.exit_code == 2


def test_too_many_bad_rows_points_to_a_quarantine_file_that_exists(elsewhere: Path) -> None:
    export = make("salesforce", n=1500, seed=9).frame
    rng = np.random.default_rng(0)
    export.loc[rng.random(len(export)) < 0.3, "Status"] = ""  # no outcome: bad rows, past the bound
    export.to_csv(elsewhere / "sf.csv", index=False)
    res = _run("sf.csv", "--target", "Status", "--positive", "Closed Won", "--negative", "Closed Lost",
               "--out", "sf_out")  # fmt: skip
    assert res.exit_code == 1
    assert "sf.csv" in res.output and "max_reject_share" in res.output
    path = elsewhere / "sf_out" / "quarantine.csv"
    assert "sf_out/quarantine.csv" in res.output and "value empty" in res.output
    q = pd.read_csv(path)
    assert (q["reason"] == "missing_outcome:status").sum() > 0.25 * len(export)
    assert (q["reason"] == "open_outcome:status").sum() > 0


def test_params_file_is_optional_and_only_its_table_sections_count(elsewhere: Path) -> None:
    make("telemarketing", n=1500, seed=10).frame.to_csv(elsewhere / "calls.csv", index=False)
    (elsewhere / "mine.yaml").write_text(
        "flat:\n  drop_columns: [Age]\ntrain:\n  n_estimators: 60\nsnapshots: {not: checked}\n"
    )
    res = _run("calls.csv", "--target", "Subscribed", "--params", "mine.yaml", "--drop", "Balance",
               "--out", "o")  # fmt: skip
    assert res.exit_code == 0, res.output
    cols = json.loads((elsewhere / "o" / "cleaning.json").read_text())["columns"]
    assert cols["age"]["role"] == cols["balance"]["role"] == "dropped"  # file and flag add up
    leakage = json.loads((elsewhere / "o" / "leakage.json").read_text())
    assert "engaged_seconds" in leakage["excluded"]  # the innocent-named call duration
    res = _run("calls.csv", "--target", "Subscribed", "--params", "missing.yaml")
    assert res.exit_code == 2 and "missing.yaml" in res.output
