"""Micro-batching: concurrent single-lead requests are scored together and get exactly the results each
would get alone; errors stay with their own request; a lone request is scored at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from leadscore.serve.app import create_app
from leadscore.serve.settings import load_settings
from tests.serve.conftest import API_KEY

pytestmark = pytest.mark.slow


async def _post_all(bundle_dir: Path, bodies: list[dict], micro: bool, concurrent: bool) -> tuple[list, str]:
    app = create_app(load_settings(bundle_dir=bundle_dir, api_key=API_KEY, micro_batching=micro))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers={"X-API-Key": API_KEY}
        ) as c:
            if concurrent:
                rs = await asyncio.gather(*(c.post("/v1/score", json=b) for b in bodies))
            else:
                rs = [await c.post("/v1/score", json=b) for b in bodies]
            metrics = (await c.get("/metrics")).text
    return [(r.status_code, r.json()) for r in rs], metrics


def _flushes(metrics: str) -> tuple[float, float]:
    """(number of flushes, leads in them) from the micro-batch histogram."""
    values = {}
    for line in metrics.splitlines():
        if line.startswith(("leadscore_micro_batch_leads_count", "leadscore_micro_batch_leads_sum")):
            name, value = line.split()
            values[name] = float(value)
    return values.get("leadscore_micro_batch_leads_count", 0.0), values.get(
        "leadscore_micro_batch_leads_sum", 0.0
    )


def test_concurrent_requests_are_scored_together_with_identical_results(
    bundle_dir: Path, sample_payloads: list[dict]
) -> None:
    bodies = [json.loads(json.dumps(p)) for p in sample_payloads[:12]]
    bad = json.loads(json.dumps(bodies[5]))
    bad["events"].append({"ts": "2099-01-01T00:00:00Z", "event_type": "page_view"})
    bodies.insert(6, bad)
    together, metrics = asyncio.run(_post_all(bundle_dir, bodies, micro=True, concurrent=True))
    alone, _ = asyncio.run(_post_all(bundle_dir, bodies, micro=False, concurrent=False))
    assert together == alone
    assert together[6][0] == 422 and together[6][1]["detail"][0]["loc"] == [
        "body",
        "events",
        len(bad["events"]) - 1,
        "ts",
    ]
    assert [s for s, _ in together].count(200) == len(bodies) - 1
    flushes, leads = _flushes(metrics)
    assert leads == len(bodies) and flushes < len(bodies)  # some requests shared a feature build


def test_sequential_requests_are_scored_one_by_one(bundle_dir: Path, sample_payloads: list[dict]) -> None:
    results, metrics = asyncio.run(_post_all(bundle_dir, sample_payloads[:3], micro=True, concurrent=False))
    assert all(s == 200 for s, _ in results)
    assert _flushes(metrics) == (3.0, 3.0)
