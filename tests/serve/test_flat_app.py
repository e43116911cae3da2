"""`leadscore serve` on a flat bundle (`leadscore train-table`): the same app, auth, limits, errors and
response as a pipeline bundle: probability, stage from the bundle's thresholds, 1–99 score, reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from leadscore.config import load_params
from leadscore.models.flat import run_train_table
from leadscore.serve.app import create_app
from leadscore.serve.schemas import BatchResponse, ScoreResult
from leadscore.serve.settings import load_settings
from tests.integration.test_byod_end_to_end import flat_export

pytestmark = pytest.mark.slow
KEY = "flat-bundle-test-key-0123456789"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def flat_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("flat")
    export = tmp / "export.csv"
    flat_export().to_csv(export, index=False)
    params = load_params("params.yaml", overrides={"flat.date_column": "Created Date"})
    run_train_table(export, "Converted", params, tmp / "out")
    return tmp / "out" / "bundle"


@pytest.fixture
def client(flat_bundle: Path) -> TestClient:
    app = create_app(load_settings(bundle_dir=flat_bundle, api_key=KEY, max_body_bytes=20_000, max_batch=3))
    with TestClient(app) as c:
        yield c


ROW = {"lead_id": "x1", "attributes": {"Industry": "Software", "Web Visits": "9", "Lead Source": "Webinar"}}


def test_flat_bundle_writes_stages_and_score_cut_points(flat_bundle: Path) -> None:
    th = json.loads((flat_bundle / "thresholds.json").read_text())
    assert th["target"] == "converted" and th["stages"]
    floors = [s["probability"] for s in th["stages"]]
    assert floors == sorted(floors, reverse=True)
    q = th["score_quantiles"]
    assert len(q) == 98 and q == sorted(q)


def test_flat_bundle_gets_the_pipeline_response(client: TestClient, flat_bundle: Path) -> None:
    assert client.get("/ready").json()["kind"] == "flat"
    assert client.post("/v1/score", json=ROW).status_code == 401
    r = client.post("/v1/score", json=ROW, headers=AUTH)
    assert r.status_code == 200, r.text
    body = ScoreResult.model_validate(r.json())
    stages = [s["name"] for s in json.loads((flat_bundle / "thresholds.json").read_text())["stages"]]
    assert body.lead_id == "x1" and 0 < body.probabilities["converted"] < 1
    assert body.stage in stages and 1 <= body.score <= 99
    assert body.reasons is not None and (body.reasons.positive or body.reasons.negative)
    words = [x.text for x in body.reasons.positive + body.reasons.negative]
    assert all(":" in w for w in words)  # "<export header>: <the lead's value>"
    info = client.get("/v1/model", headers=AUTH).json()
    assert info["kind"] == "flat" and body.bundle_checksum == info["bundle_checksum"]
    lean = client.post("/v1/score?explain=false", json=ROW, headers=AUTH).json()
    assert "reasons" not in lean and lean["probabilities"] == r.json()["probabilities"]


def test_flat_batch_errors_and_limits_match_the_pipeline_app(client: TestClient) -> None:
    batch = client.post(
        "/v1/score/batch", json={"leads": [ROW, {"lead_id": "x2", "attributes": {}}]}, headers=AUTH
    )
    assert batch.status_code == 200, batch.text
    parsed = BatchResponse.model_validate(batch.json())
    assert (
        parsed.n_ok == 2
        and batch.json()["results"][0]["probabilities"]
        == client.post("/v1/score", json=ROW, headers=AUTH).json()["probabilities"]
    )
    mixed = {"leads": [ROW, {"lead_id": "x3", "attributes": {"Web Visits": [1, 2]}}]}
    r = client.post("/v1/score/batch", json=mixed, headers=AUTH)
    assert r.status_code == 200 and r.json()["n_failed"] == 1
    assert r.json()["results"][1]["errors"][0]["loc"][:4] == ["body", "leads", 1, "attributes"]
    bad = client.post("/v1/score", json={"lead_id": "x", "attributes": {"Web Visits": [1, 2]}}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:2] == ["body", "attributes"]
    too_many = client.post("/v1/score/batch", json={"leads": [ROW] * 4}, headers=AUTH)
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["type"] == "too_many_leads"
    big = {"lead_id": "x", "attributes": {f"c{i}": "x" * 50 for i in range(1000)}}
    assert client.post("/v1/score", json=big, headers=AUTH).status_code == 413
    text = client.post("/v1/score", content=b"lead_id=x", headers={**AUTH, "content-type": "text/plain"})
    assert text.status_code == 415
