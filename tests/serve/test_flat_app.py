"""`leadscore serve` on a flat bundle (`leadscore train-table`): rows in, probability out, same safety."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from leadscore.config import load_params
from leadscore.models.flat import run_train_table
from leadscore.serve.app import create_app
from leadscore.serve.settings import load_settings
from tests.integration.test_byod_end_to_end import flat_export

pytestmark = pytest.mark.slow
KEY = "flat-bundle-test-key-0123456789"


@pytest.fixture(scope="module")
def flat_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("flat")
    export = tmp / "export.csv"
    flat_export().to_csv(export, index=False)
    params = load_params("params.yaml", overrides={"flat.date_column": "Created Date"})
    run_train_table(export, "Converted", params, tmp / "out")
    return tmp / "out" / "bundle"


def test_flat_bundle_is_served_with_auth_limits_and_validation(flat_bundle: Path) -> None:
    app = create_app(load_settings(bundle_dir=flat_bundle, api_key=KEY, max_body_bytes=20_000))
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 200
        row = {
            "lead_id": "x1",
            "attributes": {"Industry": "Software", "Web Visits": "9", "Lead Source": "Webinar"},
        }
        assert client.post("/v1/score", json=row).status_code == 401
        auth = {"X-API-Key": KEY}
        r = client.post("/v1/score", json=row, headers=auth)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["lead_id"] == "x1" and 0 < body["probabilities"]["converted"] < 1
        assert body["bundle_checksum"] == client.get("/v1/model", headers=auth).json()["checksum"]
        batch = client.post("/v1/score/batch", json={"leads": [row, {"attributes": {}}]}, headers=auth)
        assert batch.status_code == 200 and len(batch.json()["results"]) == 2
        assert batch.json()["results"][0]["probabilities"] == body["probabilities"]
        bad = client.post("/v1/score", json={"attributes": {"Web Visits": [1, 2]}}, headers=auth)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:2] == ["body", "attributes"]
        big = {"attributes": {f"c{i}": "x" * 50 for i in range(1000)}}
        assert client.post("/v1/score", json=big, headers=auth).status_code == 413
