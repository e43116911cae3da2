"""Flat bundles are first class (issue 11 item 6/7): stages and a 1-99 score from the calibration slice,
reasons in the export's words, ``leadscore score`` scores them, an HTML report, CRM field names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.config import FlatParams
from leadscore.models.flat import FlatScorer, flat_thresholds
from leadscore.serve.flat import FlatModel
from leadscore.serve.scorer import StageTable
from tests.exports import make

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    work = tmp_path_factory.mktemp("flat")
    export = make("salesforce", n=3000, seed=11).frame
    export.to_csv(work / "sf.csv", index=False)
    res = runner.invoke(
        app,
        ["train-table", str(work / "sf.csv"), "--target", "Status", "--positive", "Closed Won",
         "--negative", "Closed Lost", "--date-column", "Created Date", "--out", str(work / "out")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return work, export


def test_thresholds_come_from_the_calibration_slice_and_stay_ordered() -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(2, 6, 2000)
    y = (rng.random(2000) < p).astype(int)
    thr = flat_thresholds(p, y, FlatParams().stages, "won")
    probs = [s["probability"] for s in thr["stages"]]
    assert probs == sorted(probs, reverse=True) and probs[-1] == 0.0
    assert thr["stages"][0]["achieved"]["share"] == pytest.approx(0.1, abs=0.01)
    assert len(thr["score_quantiles"]) == 98 and np.all(np.diff(thr["score_quantiles"]) >= 0)
    table = StageTable.from_thresholds(thr, ["won"])  # what the served flat bundle reads
    scores = np.asarray(table.scores(p))
    assert scores.min() == 1 and scores.max() == 99
    assert np.mean(scores >= 90) == pytest.approx(0.1, abs=0.02)  # a percentile band, as the pipeline's
    assert table.stages(np.array([1.0, 0.0])) == ["sales_ready", "nurture"]


def test_the_bundle_answers_like_a_pipeline_bundle(trained: tuple[Path, pd.DataFrame]) -> None:
    work, export = trained
    scorer = FlatScorer.load(work / "out" / "bundle")
    model = FlatModel.load(work / "out" / "bundle")  # the served scorer of flat bundles
    thr = json.loads((work / "out" / "bundle" / "thresholds.json").read_text())
    assert [s["name"] for s in thr["stages"]] == ["sales_ready", "mql", "nurture"]
    rows = export.drop(columns=["Status"]).head(50)
    records = rows.astype(object).where(rows.notna(), None).to_dict("records")
    requests = [{"lead_id": str(i), "attributes": r} for i, r in enumerate(records)]
    results = list(model.score(requests, True, 3).results.values())
    assert len(results) == 50
    for r in results:
        assert set(r) == {
            "lead_id", "as_of", "probabilities", "stage", "score", "reasons", "model_version",
            "bundle_checksum",
        }  # fmt: skip
        assert 0 < r["probabilities"]["status"] < 1 and 1 <= r["score"] <= 99
        assert r["stage"] in {"sales_ready", "mql", "nurture"}
        texts = [x["text"] for x in r["reasons"]["positive"] + r["reasons"]["negative"]]
        assert texts and all(": " in t for t in texts)
        # reasons name the export's columns, never a column the guard left out
        assert not any(t.startswith(("Rating", "Last Activity", "Onboarding Contact")) for t in texts)
    # the probabilities are the scorer's predictions
    assert [r["probabilities"]["status"] for r in results] == pytest.approx(scorer.predict(rows).tolist())


def test_leadscore_score_scores_a_flat_bundle_and_writes_crm_fields(
    trained: tuple[Path, pd.DataFrame],
) -> None:
    work, export = trained
    new = export.drop(columns=["Status"]).head(30)
    new.to_csv(work / "new.csv", index=False)
    res = runner.invoke(app, ["score", str(work / "new.csv"), "-o", str(work / "scored.csv"),
                              "--bundle", str(work / "out" / "bundle")])  # fmt: skip
    assert res.exit_code == 0, res.output
    scored = pd.read_csv(work / "scored.csv", dtype=str, keep_default_na=False)
    assert scored["record_id"].tolist() == new["Lead ID"].tolist()  # the id column the cleaning found
    assert {"p_status", "stage", "score", "reasons_positive", "model_version", "error"} <= set(scored.columns)
    assert (scored["error"] == "").all()

    hub = new.rename(columns={"Lead ID": "Record ID"})
    hub.to_csv(work / "hub.csv", index=False)
    res = runner.invoke(app, ["score", str(work / "hub.csv"), "-o", str(work / "hub_out.csv"),
                              "--bundle", str(work / "out" / "bundle"),
                              "--crm", str(ROOT / "src" / "data" / "mappings" / "hubspot.yaml")])  # fmt: skip
    assert res.exit_code == 0, res.output
    crm = pd.read_csv(work / "hub_out.csv", dtype=str, keep_default_na=False)
    assert list(crm.columns) == [
        "Record ID", "leadscore_score", "leadscore_probability", "leadscore_stage", "leadscore_reasons",
        "leadscore_model_version",
    ]  # fmt: skip
    assert crm["Record ID"].tolist() == hub["Record ID"].tolist()
    assert crm["leadscore_reasons"].str.startswith("+ ").all()
    assert (crm["leadscore_score"] == scored["score"]).all()


def test_train_table_writes_an_html_report_for_marketers(trained: tuple[Path, pd.DataFrame]) -> None:
    work, _ = trained
    html = (work / "out" / "report.html").read_text()
    for part in ("Top drivers", "Stages", "Calibration", "Left out", "sales_ready", "Lead Source", "Rating"):
        assert part in html, part
    assert "http://" not in html and "https://" not in html and "<script" not in html  # self-contained
