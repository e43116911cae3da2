"""Bundle reload: a good bundle is swapped in atomically, a bad one is refused and the old one serves on."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from leadscore.models.bundle import load_bundle
from leadscore.serve.decode import parse_score
from leadscore.serve.payload import PayloadPolicy
from leadscore.serve.scorer import Scorer, score_requests
from tests.serve.api_helpers import metric
from tests.serve.pipeline import rewrite_bundle, shifted_calibrator

pytestmark = pytest.mark.slow


@pytest.fixture
def live_dir(bundle_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session bundle that a test may replace or break."""
    dst = tmp_path / "models"
    shutil.copytree(bundle_dir, dst)
    return dst


def test_reload_swaps_in_a_new_bundle(
    make_client: Callable[..., TestClient], live_dir: Path, payload: dict
) -> None:
    client = make_client(bundle_dir=live_dir)
    before = client.post("/v1/score?explain=false", json=payload).json()
    old = load_bundle(live_dir).checksum
    rewrite_bundle(live_dir, live_dir, shifted_calibrator)  # "retrained", written in place atomically
    # Still the old model until told to reload.
    assert client.post("/v1/score?explain=false", json=payload).json() == before
    r = client.post("/v1/admin/reload")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reloaded"] is True and body["previous_checksum"] == old
    assert body["bundle_checksum"] == load_bundle(live_dir).checksum != old
    after = client.post("/v1/score?explain=false", json=payload).json()
    assert after["bundle_checksum"] == body["bundle_checksum"] and after["model_version"] == "retrained-test"
    assert after["probabilities"]["sql"] != before["probabilities"]["sql"]
    assert client.get("/ready").json()["bundle_checksum"] == body["bundle_checksum"]
    assert metric(client, "leadscore_bundle_reloads_total", result="ok", trigger="admin") == 1
    assert (
        metric(
            client,
            "leadscore_model_info",
            model_version="retrained-test",
            bundle_checksum=body["bundle_checksum"],
        )
        == 1
    )


@pytest.mark.parametrize("damage", ["tamper", "extra_file", "missing_file", "gone"])
def test_a_bad_bundle_is_refused_and_the_old_one_serves(
    make_client: Callable[..., TestClient], live_dir: Path, payload: dict, damage: str
) -> None:
    client = make_client(bundle_dir=live_dir)
    before = client.post("/v1/score?explain=false", json=payload).json()
    if damage == "tamper":
        path = live_dir / "thresholds.json"
        path.write_text(path.read_text() + "\n")  # one byte changed after the manifest was written
        why = "checksum mismatch for thresholds.json"
    elif damage == "extra_file":
        (live_dir / "model_evil.pkl").write_bytes(b"\x80\x04")
        why = "files not listed in the manifest"
    elif damage == "missing_file":
        (live_dir / "model_sql.txt").unlink()
        why = "bundle file missing: model_sql.txt"
    else:
        shutil.rmtree(live_dir)
        why = "no manifest.json"
    r = client.post("/v1/admin/reload")
    assert r.status_code == 409
    body = r.json()
    assert body["reloaded"] is False and why in body["error"]
    assert body["bundle_checksum"] == before["bundle_checksum"]  # still serving the old one
    assert client.post("/v1/score?explain=false", json=payload).json() == before
    assert client.get("/ready").status_code == 200
    assert metric(client, "leadscore_bundle_reloads_total", result="refused", trigger="admin") == 1


def test_in_flight_requests_finish_on_the_model_they_took(live_dir: Path, payload: dict) -> None:
    scorer = Scorer(live_dir)
    assert scorer.reload().reloaded
    taken = scorer.model  # what a request holds while it runs
    rewrite_bundle(live_dir, live_dir, shifted_calibrator)
    assert scorer.reload().reloaded and scorer.model is not taken
    req = parse_score(orjson.dumps(payload))
    old = score_requests(taken, [req], PayloadPolicy(), explain=True).results[0]
    new = score_requests(scorer.model, [req], PayloadPolicy(), explain=True).results[0]
    assert old["bundle_checksum"] == taken.checksum != new["bundle_checksum"]
    assert old["probabilities"] != new["probabilities"]
