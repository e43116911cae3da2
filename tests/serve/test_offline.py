"""``leadscore score``: files in, scores out, through the API's code path (CSV/Parquet, nested format)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from leadscore.cli import app as cli

pytestmark = pytest.mark.slow


def _run(*args: str) -> dict:
    res = CliRunner().invoke(cli, ["score", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_nested_csv_with_inline_account(
    tmp_path: Path, bundle_dir: Path, payload: dict, client: TestClient
) -> None:
    """One row per lead with inline account columns and events/stages as JSON text; one bad lead."""
    lead, acc = payload["lead"], payload.get("account", {})
    good = {
        **lead,
        "industry": acc.get("industry"),
        "employees": acc.get("employees"),
        "annual_revenue": acc.get("annual_revenue"),
        "tech_stack": acc.get("tech_stack"),
        "events": json.dumps(payload["events"]),
        "stage_history": json.dumps(payload["stage_history"]),
        "as_of": payload["as_of"],
    }
    bad = {
        **good,
        "lead_id": "late",
        "events": json.dumps([{"ts": "2099-01-01T00:00:00Z", "event_type": "page_view"}]),
    }
    pd.DataFrame([good, bad]).to_csv(tmp_path / "leads.csv", index=False)
    out = tmp_path / "scored.csv"
    summary = _run(str(tmp_path / "leads.csv"), "-o", str(out), "--bundle", str(bundle_dir))
    assert summary == {**summary, "leads": 2, "scored": 1, "failed": 1}
    scored = pd.read_csv(out, keep_default_na=False)
    api = client.post("/v1/score", json=payload).json()
    row = scored.iloc[0]
    assert row["lead_id"] == lead["lead_id"] and row["error"] == ""
    assert float(row["p_sql"]) == pytest.approx(api["probabilities"]["sql"], abs=1e-12)
    assert row["stage"] == api["stage"] and int(row["score"]) == api["score"]
    assert [r["text"] for r in json.loads(row["reasons_positive"])] == [
        r["text"] for r in api["reasons"]["positive"]
    ]
    err = json.loads(scored.iloc[1]["error"])
    assert err[0]["loc"] == ["body", "events", 0, "ts"] and err[0]["type"] == "after_as_of"


def test_parquet_in_and_out_default_as_of(tmp_path: Path, bundle_dir: Path, interim: dict) -> None:
    leads = interim["leads"].head(20)
    leads.to_parquet(tmp_path / "leads.parquet")
    ev = interim["events"]
    ev[ev["lead_id"].isin(leads["lead_id"])].to_parquet(tmp_path / "events.parquet")
    out = tmp_path / "scored.parquet"
    # as of the export's end: every event is before it
    end = str(ev["ts"].max() + pd.Timedelta(seconds=1))
    summary = _run(
        str(tmp_path / "leads.parquet"),
        "-o",
        str(out),
        "--bundle",
        str(bundle_dir),
        "--events",
        str(tmp_path / "events.parquet"),
        "--as-of",
        end,
        "--no-explain",
    )
    assert summary["scored"] == 20
    scored = pd.read_parquet(out)
    assert "reasons_positive" not in scored.columns
    assert scored["score"].between(1, 99).all() and scored["p_sql"].between(0, 1).all()
    assert set(scored["as_of"]) == {pd.Timestamp(end).strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_unusable_inputs_fail_cleanly(tmp_path: Path, bundle_dir: Path) -> None:
    res = CliRunner().invoke(
        cli,
        ["score", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "o.csv"), "--bundle", str(bundle_dir)],
    )
    assert res.exit_code == 1 and "not found" in res.output
    pd.DataFrame({"lead_id": ["a"]}).to_csv(tmp_path / "l.csv", index=False)
    res = CliRunner().invoke(
        cli, ["score", str(tmp_path / "l.csv"), "-o", str(tmp_path / "o.csv"), "--bundle", str(tmp_path)]
    )
    assert res.exit_code == 1 and "manifest.json" in res.output


def test_crm_writeback_uses_the_mapping_files_field_names(
    tmp_path: Path, bundle_dir: Path, payload: dict, client: TestClient
) -> None:
    """``--crm`` with the Salesforce example: Id + the custom fields, ready for an update import; a lead
    that failed validation is counted, not written."""
    root = Path(__file__).resolve().parents[2]
    lead = payload["lead"]
    good = {
        **lead,
        "events": json.dumps(payload["events"]),
        "stage_history": json.dumps(payload["stage_history"]),
        "as_of": payload["as_of"],
    }
    late = [{"ts": "2099-01-01T00:00:00Z", "event_type": "page_view"}]
    bad = {**good, "lead_id": "late", "events": json.dumps(late)}
    pd.DataFrame([good, bad]).to_csv(tmp_path / "leads.csv", index=False)
    out = tmp_path / "crm.csv"
    summary = _run(
        str(tmp_path / "leads.csv"), "-o", str(out), "--bundle", str(bundle_dir),
        "--crm", str(root / "src" / "data" / "mappings" / "salesforce.yaml"),
    )  # fmt: skip
    assert summary["scored"] == 1 and summary["failed"] == 1
    crm = pd.read_csv(out, keep_default_na=False, dtype=str)
    assert list(crm.columns) == [
        "Id",
        "Lead_Score__c",
        "Lead_Score_Probability__c",
        "Lead_Score_Stage__c",
        "Lead_Score_Reasons__c",
        "Lead_Score_Model__c",
    ]
    assert crm["Id"].tolist() == [lead["lead_id"]]
    api = client.post("/v1/score", json={**payload, "lead": {**lead}}).json()
    row = crm.iloc[0]
    assert int(row["Lead_Score__c"]) == api["score"] and row["Lead_Score_Stage__c"] == api["stage"]
    assert float(row["Lead_Score_Probability__c"]) == pytest.approx(api["probabilities"]["sql"], abs=1e-12)
    assert row["Lead_Score_Reasons__c"].startswith(f"+ {api['reasons']['positive'][0]['text']}")
    assert row["Lead_Score_Model__c"] == api["model_version"]
