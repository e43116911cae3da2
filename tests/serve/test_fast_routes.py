"""``ScoringFastPath`` (the plain ASGI dispatcher of the scoring endpoints) answers exactly as the FastAPI
routes it bypasses: same status, body and headers for valid requests and for every kind of error."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from leadscore.serve.app import ScoringFastPath
from tests.serve.api_helpers import metric
from tests.serve.conftest import API_KEY

pytestmark = pytest.mark.slow  # needs the session's trained bundle


def _cases(payload: dict) -> list[tuple[str, str, dict[str, str], bytes]]:
    """(path, query, headers, body) covering success and every error the scoring endpoints give."""
    good = json.dumps(payload).encode()
    bad_lead = json.loads(good)
    bad_lead["lead"]["created_at"] = 12345
    late = json.loads(good)
    late["as_of"] = "2000-01-01T00:00:00Z"
    batch = json.dumps({"leads": [payload, bad_lead, late]}).encode()
    key = {"X-API-Key": API_KEY}
    return [
        ("/v1/score", "", key, good),
        ("/v1/score", "explain=false", key, good),
        ("/v1/score", "explain=FALSE&explain=1", key, good),  # the last value wins
        ("/v1/score", "explain=maybe", key, good),  # 422 on the query
        ("/v1/score", "explain", key, good),  # a blank value is not a boolean either
        ("/v1/score", "a=1&&explain=fal%73e", key, good),  # escaped, empty pairs
        ("/v1/score", "expl%61in=0&x=+", key, good),  # an escaped name
        ("/v1/score", "", {}, good),  # 401: no key
        ("/v1/score", "", {"X-API-Key": "wrong"}, good),  # 401: wrong key
        ("/v1/score", "", {"x-api-key": API_KEY}, good),  # header names are case-insensitive
        ("/v1/score", "", key, json.dumps(bad_lead).encode()),  # 422 from validation
        ("/v1/score", "", key, json.dumps(late).encode()),  # 422 from the as_of checks
        ("/v1/score", "", key, b"{not json"),
        ("/v1/score", "", key, b""),
        ("/v1/score/batch", "", key, batch),  # per-lead errors
        ("/v1/score/batch", "explain=false", key, batch),
        ("/v1/score/batch", "", key, b'{"leads": []}'),
        ("/v1/score/batch", "", key, json.dumps({"leads": [payload] * 3}).encode()),  # over max_batch=2
    ]


def _send(client: TestClient, case: tuple[str, str, dict[str, str], bytes]) -> tuple[int, bytes, Any]:
    path, query, headers, body = case
    r = client.post(
        f"{path}?{query}" if query else path,
        content=body,
        headers={"Content-Type": "application/json", **headers},
    )
    return r.status_code, r.content, (r.headers.get("content-type"), r.headers.get("www-authenticate"))


def test_fast_path_is_in_use(make_client: Callable[..., TestClient]) -> None:
    """Both scoring routes are served by the dispatcher when ``fast_routes`` is on (the default)."""
    app = make_client().app
    stack = app.middleware_stack or app.build_middleware_stack()
    found = []
    layer: Any = stack
    while layer is not None:
        if isinstance(layer, ScoringFastPath):
            found = sorted(layer.routes)
        layer = getattr(layer, "app", None)
    assert found == ["/v1/score", "/v1/score/batch"]


def test_fast_path_answers_like_fastapi(make_client: Callable[..., TestClient], payload: dict) -> None:
    fast = make_client(max_batch=2, micro_batching=False)
    slow = make_client(max_batch=2, micro_batching=False, fast_routes=False)
    for client in (fast, slow):
        client.headers.pop("X-API-Key", None)
    statuses = set()
    for case in _cases(payload):
        got, want = _send(fast, case), _send(slow, case)
        assert got == want, (case[:3], got, want)
        statuses.add(got[0])
    assert statuses == {200, 401, 422}
    # the metrics label the dispatcher's requests by route template, as FastAPI's routing does
    for client in (fast, slow):
        ok = metric(client, "leadscore_http_requests_total", route="/v1/score", method="POST", status="200")
        refused = metric(
            client, "leadscore_http_requests_total", route="/v1/score", method="POST", status="401"
        )
        assert (ok, refused) == (6, 2)
