"""Serving test fixtures: a real, small bundle (see ``tests/serve/pipeline.py``), clients, payloads."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from leadscore.config import Params
from leadscore.serve.app import create_app
from leadscore.serve.settings import load_settings
from tests.serve.pipeline import payloads_at, read_interim, shared_pipeline

API_KEY = "serve-test-key-0123456789"


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Params:
    """Params of a finished small pipeline run (bundle in ``params.data.models_dir``)."""
    return shared_pipeline(tmp_path_factory)


@pytest.fixture(scope="session")
def bundle_dir(pipeline: Params) -> Path:
    return pipeline.data.models_dir


@pytest.fixture(scope="session")
def interim(pipeline: Params) -> dict[str, pd.DataFrame]:
    """The validated tables the pipeline trained on."""
    return read_interim(pipeline)


@pytest.fixture(scope="session")
def test_rows(pipeline: Params) -> pd.DataFrame:
    """The pipeline's test-slice predictions for the thresholds target (lead_id, snapshot_ts, p, ...)."""
    pred = pd.read_parquet(pipeline.data.build_dir / "train" / "predictions_sql.parquet")
    return pred[pred["split"] == "test"].reset_index(drop=True)


@pytest.fixture(scope="session")
def sample_payloads(interim: dict[str, pd.DataFrame], test_rows: pd.DataFrame) -> list[dict]:
    """40 realistic payloads (test-slice leads at their first test snapshot), most with events."""
    ts = test_rows["snapshot_ts"].min()
    ids = test_rows.loc[test_rows["snapshot_ts"] == ts, "lead_id"].head(40).tolist()
    return payloads_at(interim, ids, ts)


@pytest.fixture
def payload(sample_payloads: list[dict]) -> dict:
    """One payload with events and stage history (deep-copied: tests may edit it)."""
    best = max(sample_payloads, key=lambda p: (len(p["stage_history"]) > 0, len(p["events"])))
    return json.loads(json.dumps(best))


@pytest.fixture
def make_client(bundle_dir: Path) -> Iterator[Callable[..., Any]]:
    """``make_client(**settings)`` -> a started TestClient (lifespan run) with the test key by default."""
    stack: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        values: dict[str, Any] = {"bundle_dir": bundle_dir, "api_key": API_KEY}
        values.update(overrides)
        client = TestClient(create_app(load_settings(**values)), headers={"X-API-Key": API_KEY})
        client.__enter__()
        stack.append(client)
        return client

    yield make
    for client in reversed(stack):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
