"""A real uvicorn process on 127.0.0.1: score, swap bundles under concurrent load, refuse a bad one,
reload on SIGHUP, and shut down cleanly on SIGTERM.

The load is bounded in count (REQUESTS) and time (LOAD_SECONDS); every request must succeed, and each
response must be entirely from one bundle (its probabilities match the checksum it reports), which is
what an atomic swap means.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest

from leadscore.config import Params
from tests.procs import start_api
from tests.serve.pipeline import (
    payloads_at,
    read_interim,
    rewrite_bundle,
    shared_pipeline,
    shifted_calibrator,
)

pytestmark = pytest.mark.slow

KEY = "uvicorn-test-key-0123456789"
REQUESTS = 300
THREADS = 8
LOAD_SECONDS = 60.0


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Params:
    return shared_pipeline(tmp_path_factory)


@pytest.fixture(scope="module")
def payloads(pipeline: Params) -> list[dict]:
    pred = pd.read_parquet(pipeline.data.build_dir / "train" / "predictions_sql.parquet")
    test = pred[pred["split"] == "test"]
    ts = test["snapshot_ts"].max()
    ids = test.loc[test["snapshot_ts"] == ts, "lead_id"].head(20).tolist()
    return payloads_at(read_interim(pipeline), ids, ts)


@pytest.fixture
def server(pipeline: Params, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    live = tmp_path / "models"
    shutil.copytree(pipeline.data.models_dir, live)
    proc, port = start_api(live, tmp_path / "server.log", KEY, timeout=60, log_level="warning")
    url = f"http://127.0.0.1:{port}"
    try:
        yield proc, url, live
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _checksum(url: str) -> str:
    return httpx.get(f"{url}/ready", timeout=5).json()["bundle_checksum"]


def test_reload_under_load_and_clean_shutdown(
    server: tuple[subprocess.Popen, str, Path], payloads: list[dict], pipeline: Params
) -> None:
    proc, url, live = server
    headers = {"X-API-Key": KEY}
    first = httpx.post(f"{url}/v1/score", json=payloads[0], headers=headers, timeout=10)
    assert first.status_code == 200, first.text
    old_sum = first.json()["bundle_checksum"]

    results: list[tuple[int, str | None, float | None, int]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + LOAD_SECONDS
    counter = iter(range(REQUESTS))

    def worker() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while time.monotonic() < stop_at:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                lead = i % len(payloads)
                try:
                    r = client.post("/v1/score", json=payloads[lead])
                    body = r.json() if r.status_code == 200 else {}
                    row = (
                        r.status_code,
                        body.get("bundle_checksum"),
                        body.get("probabilities", {}).get("sql"),
                        lead,
                    )
                except httpx.HTTPError as exc:  # a dropped connection is a failed request too
                    row = (-1, repr(exc), None, lead)
                with lock:
                    results.append(row)

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(worker) for _ in range(THREADS)]
        # while the load runs: a retrained bundle via the admin endpoint ...
        while len(results) < REQUESTS // 4:
            time.sleep(0.01)
        rewrite_bundle(live, live, shifted_calibrator)
        r = httpx.post(f"{url}/v1/admin/reload", headers=headers, timeout=30)
        assert r.status_code == 200 and r.json()["reloaded"], r.text
        new_sum = r.json()["bundle_checksum"]
        # ... then a damaged one, which must be refused while the new one keeps serving ...
        while len(results) < REQUESTS // 2:
            time.sleep(0.01)
        (live / "model_sql.txt").write_text("tree\n")
        r = httpx.post(f"{url}/v1/admin/reload", headers=headers, timeout=30)
        assert r.status_code == 409 and "checksum mismatch" in r.json()["error"]
        # ... then another good one through SIGHUP
        while len(results) < 3 * REQUESTS // 4:
            time.sleep(0.01)
        shutil.rmtree(live)
        rewrite_bundle(pipeline.data.models_dir, live, lambda f: shifted_calibrator(f, 2.0, "hup-test"))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while _checksum(url) in (old_sum, new_sum):
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.05)
        hup_sum = _checksum(url)
        for f in futures:
            f.result()

    assert len(results) == REQUESTS, f"only {len(results)} requests within {LOAD_SECONDS} s"
    failed = [r for r in results if r[0] != 200]
    assert not failed, failed[:5]
    seen = {r[1] for r in results}
    assert old_sum in seen and new_sum in seen and seen <= {old_sum, new_sum, hup_sum}
    # atomic: for a given lead, every response from one bundle carries that bundle's number
    by_bundle_lead: dict[tuple[str, int], set[float]] = {}
    for _, checksum, p, lead in results:
        by_bundle_lead.setdefault((checksum, lead), set()).add(p)
    assert all(len(v) == 1 for v in by_bundle_lead.values())
    old_p = {lead: next(iter(v)) for (c, lead), v in by_bundle_lead.items() if c == old_sum}
    new_p = {lead: next(iter(v)) for (c, lead), v in by_bundle_lead.items() if c == new_sum}
    assert any(old_p[k] != new_p[k] for k in old_p.keys() & new_p.keys())

    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    assert 'leadscore_bundle_reloads_total{result="ok",trigger="admin"} 1.0' in metrics
    assert 'leadscore_bundle_reloads_total{result="refused",trigger="admin"} 1.0' in metrics
    assert 'leadscore_bundle_reloads_total{result="ok",trigger="sighup"} 1.0' in metrics

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
