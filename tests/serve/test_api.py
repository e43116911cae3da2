"""Contract tests of the HTTP API (TestClient on a real bundle): every endpoint and every error."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from leadscore.models.bundle import load_bundle
from leadscore.serve.schemas import EXAMPLE_REQUEST, SCORE_ADAPTER, BatchResponse, ScoreResult
from tests.serve.api_helpers import metric
from tests.serve.conftest import API_KEY
from tests.serve.pipeline import rewrite_bundle

pytestmark = pytest.mark.slow  # needs the session's trained bundle


# ---- scoring -----------------------------------------------------------------------------------------------


def test_score_one_lead(client: TestClient, payload: dict, bundle_dir: Path) -> None:
    r = client.post("/v1/score", json=payload)
    assert r.status_code == 200, r.text
    body = r.json()
    ScoreResult.model_validate(body)  # the documented response model
    bundle = load_bundle(bundle_dir)
    assert body["lead_id"] == payload["lead"]["lead_id"]
    assert body["as_of"] == payload["as_of"].replace("T00:00:00", "T00:00:00Z")[:20]
    assert set(body["probabilities"]) == set(bundle.targets)
    assert all(0.0 <= p <= 1.0 for p in body["probabilities"].values())
    assert body["stage"] in [s["name"] for s in bundle.thresholds["stages"]]
    assert 1 <= body["score"] <= 99
    assert (body["model_version"], body["bundle_checksum"]) == (bundle.version, bundle.checksum)
    reasons = body["reasons"]
    assert reasons["positive"] or reasons["negative"]
    assert all(x["contribution"] > 0 and x["text"] and x["feature"] for x in reasons["positive"])
    assert all(x["contribution"] < 0 for x in reasons["negative"])
    assert len(reasons["positive"]) <= 3 and len(reasons["negative"]) <= 3


def test_explain_false_skips_reasons_only(client: TestClient, payload: dict) -> None:
    full = client.post("/v1/score", json=payload).json()
    lean = client.post("/v1/score?explain=false", json=payload).json()
    assert "reasons" not in lean
    assert lean == {k: v for k, v in full.items() if k != "reasons"}
    bad = client.post("/v1/score?explain=maybe", json=payload)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "explain"]


def test_the_documented_example_scores(client: TestClient) -> None:
    r = client.post("/v1/score", json=EXAMPLE_REQUEST)
    assert r.status_code == 200, r.text
    assert r.json()["lead_id"] == EXAMPLE_REQUEST["lead"]["lead_id"]


def test_unknown_categories_are_scored(client: TestClient, payload: dict, bundle_dir: Path) -> None:
    vocab = load_bundle(bundle_dir).encoder.categories_
    payload["account"] = {**payload.get("account", {}), "industry": "asteroid_mining"}
    payload["lead"].update(country="XQ", lead_source="carrier_pigeon")
    assert "asteroid_mining" not in vocab["industry"] and "xq" not in vocab["country"]
    r = client.post("/v1/score", json=payload)
    assert r.status_code == 200, r.text
    assert all(math.isfinite(p) for p in r.json()["probabilities"].values())


def test_naive_timestamps_are_utc_and_offsets_converted(client: TestClient, payload: dict) -> None:
    as_utc = client.post("/v1/score", json=payload).json()
    shifted = json.loads(json.dumps(payload))
    for e in shifted["events"]:  # same instants written with a +02:00 offset
        e["ts"] = e["ts"].replace("Z", "")
        hour = int(e["ts"][11:13])
        if hour <= 21:
            e["ts"] = f"{e['ts'][:11]}{hour + 2:02d}{e['ts'][13:19]}+02:00"
    assert client.post("/v1/score", json=shifted).json()["probabilities"] == as_utc["probabilities"]


def test_timestamps_after_as_of_are_422(client: TestClient, payload: dict) -> None:
    payload["events"].append({"ts": "2099-01-01T00:00:00Z", "event_type": "page_view"})
    r = client.post("/v1/score", json=payload)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "events", len(payload["events"]) - 1, "ts"] and err["type"] == "after_as_of"


@pytest.mark.parametrize(
    ("mutate", "loc", "kind"),
    [
        (lambda p: p["lead"].pop("created_at"), ["body", "lead", "created_at"], "missing"),
        (lambda p: p["lead"].update(lead_id=17), ["body", "lead", "lead_id"], "string_type"),
        (lambda p: p.update(account={"employees": "lots"}), ["body", "account", "employees"], "float_type"),
        (lambda p: p.update(as_of="next tuesday"), ["body", "as_of"], "datetime_format"),
        (
            lambda p: p.update(events=[{"ts": "2025-01-01T00:00:00Z"}]),
            ["body", "events", 0, "event_type"],
            "missing",
        ),
        (
            lambda p: p.update(stage_history=[{"stage": "hot", "ts": "2024-01-01T00:00:00Z"}]),
            ["body", "stage_history", 0, "stage"],
            "unknown_stage",
        ),
        (lambda p: p.update(surprise=True), ["body", "surprise"], "extra_forbidden"),
    ],
)
def test_field_level_422(
    client: TestClient, payload: dict, mutate: Callable[[dict], object], loc: list, kind: str
) -> None:
    mutate(payload)
    r = client.post("/v1/score", json=payload)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert {"loc": loc, "type": kind} in [{"loc": d["loc"], "type": d["type"]} for d in detail], detail
    assert all(set(d) == {"loc", "msg", "type"} and d["msg"] for d in detail)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_422(client: TestClient, payload: dict, literal: str) -> None:
    payload["account"] = {"annual_revenue": 0}
    body = json.dumps(payload).replace('"annual_revenue": 0', f'"annual_revenue": {literal}')
    r = client.post("/v1/score", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "account", "annual_revenue"]


def test_invalid_json_is_422(client: TestClient) -> None:
    r = client.post("/v1/score", content=b'{"lead": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"


def test_unknown_event_types_ignored_and_counted(client: TestClient, payload: dict) -> None:
    before = client.post("/v1/score", json=payload).json()
    payload["events"] += [{"ts": payload["events"][0]["ts"], "event_type": "tiktok_like"}] * 2
    r = client.post("/v1/score", json=payload)
    assert r.status_code == 200
    assert r.json()["probabilities"] == before["probabilities"]  # dropped before the features
    assert metric(client, "leadscore_unknown_event_types_total", action="ignored") == 2


def test_unknown_event_types_rejected_and_counted(
    make_client: Callable[..., TestClient], payload: dict
) -> None:
    client = make_client(unknown_event_types="reject")
    payload["events"].append({"ts": payload["events"][0]["ts"], "event_type": "tiktok_like"})
    r = client.post("/v1/score", json=payload)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "events", len(payload["events"]) - 1, "event_type"]
    assert metric(client, "leadscore_unknown_event_types_total", action="rejected") == 1


# ---- auth and limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong-key-0123456789"}, {"X-Api-Token": API_KEY}])
def test_key_required(client: TestClient, payload: dict, headers: dict) -> None:
    for method, path, kw in (
        ("post", "/v1/score", {"json": payload}),
        ("post", "/v1/score/batch", {"json": {"leads": [payload]}}),
        ("get", "/v1/model", {}),
        ("post", "/v1/admin/reload", {}),
    ):
        client.headers.pop("X-API-Key", None)
        r = getattr(client, method)(path, headers=headers, **kw)
        assert r.status_code == 401, (path, r.text)
    for path in ("/health", "/ready", "/metrics"):  # probes and scraping need no key
        assert client.get(path, headers=headers).status_code == 200


def test_custom_key_header(make_client: Callable[..., TestClient], payload: dict) -> None:
    client = make_client(api_key_header="Authorization-Key")
    assert client.post("/v1/score", json=payload).status_code == 401
    ok = client.post("/v1/score", json=payload, headers={"Authorization-Key": API_KEY})
    assert ok.status_code == 200


def test_auth_disabled(make_client: Callable[..., TestClient], payload: dict) -> None:
    client = make_client(api_key=None, auth_disabled=True)
    client.headers.pop("X-API-Key")
    assert client.post("/v1/score", json=payload).status_code == 200


def test_body_limit_declared_413(make_client: Callable[..., TestClient], payload: dict) -> None:
    client = make_client(max_body_bytes=2048)
    big = {**payload, "events": payload["events"] * 40}
    r = client.post("/v1/score", json=big)
    assert r.status_code == 413 and "LEADSCORE_MAX_BODY_BYTES" in r.json()["detail"]
    assert metric(client, "leadscore_request_body_too_large_total") == 1


def test_body_limit_streamed_413(make_client: Callable[..., TestClient], payload: dict) -> None:
    client = make_client(max_body_bytes=2048)
    data = json.dumps({**payload, "events": payload["events"] * 40}).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for i in range(0, len(data), 512):
            yield data[i : i + 512]

    r = client.post("/v1/score", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert metric(client, "leadscore_request_body_too_large_total") == 1
    small = client.post("/v1/score", json={"lead": {"lead_id": "s", "created_at": "2024-01-01T00:00:00Z"}})
    assert small.status_code == 200


# ---- batch -------------------------------------------------------------------------------------------------


def test_batch_scores_each_lead_and_isolates_bad_ones(
    client: TestClient, sample_payloads: list[dict]
) -> None:
    good = sample_payloads[:3]
    missing = {"lead": {"lead_id": "no-created-at"}}
    late = json.loads(json.dumps(sample_payloads[3]))
    late["events"].append({"ts": "2099-01-01T00:00:00Z", "event_type": "page_view"})
    leads = [good[0], missing, good[1], late, good[2]]
    r = client.post("/v1/score/batch", json={"leads": leads})
    assert r.status_code == 200, r.text
    body = r.json()
    BatchResponse.model_validate(body)
    assert (body["n_ok"], body["n_failed"]) == (3, 2)
    assert [x["status"] for x in body["results"]] == ["ok", "error", "ok", "error", "ok"]
    assert [x["index"] for x in body["results"]] == list(range(5))
    err1, err3 = body["results"][1], body["results"][3]
    assert err1["lead_id"] == "no-created-at"
    assert err1["errors"][0]["loc"] == ["body", "leads", 1, "lead", "created_at"]
    assert err3["lead_id"] == late["lead"]["lead_id"] and err3["errors"][0]["type"] == "after_as_of"
    for item, lead in zip([body["results"][i] for i in (0, 2, 4)], good, strict=True):
        single = client.post("/v1/score", json=lead).json()
        assert {k: v for k, v in item.items() if k not in ("index", "status")} == single


def test_batch_default_as_of(client: TestClient, payload: dict) -> None:
    own = client.post("/v1/score?explain=false", json=payload).json()
    as_of = payload.pop("as_of")
    r = client.post("/v1/score/batch?explain=false", json={"leads": [payload], "as_of": as_of}).json()
    assert r["results"][0]["probabilities"] == own["probabilities"]


def test_batch_of_many_runs_off_the_event_loop(
    make_client: Callable[..., TestClient], sample_payloads: list[dict]
) -> None:
    client = make_client(offload_min_bytes=0)
    r = client.post("/v1/score/batch", json={"leads": sample_payloads})
    assert r.status_code == 200 and r.json()["n_ok"] == len(sample_payloads)


def test_batch_limits_and_whole_request_errors(make_client: Callable[..., TestClient], payload: dict) -> None:
    client = make_client(max_batch=2)
    too_many = client.post("/v1/score/batch", json={"leads": [payload] * 3})
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["type"] == "too_many_leads"
    assert client.post("/v1/score/batch", json={"leads": []}).status_code == 422
    wrong_as_of = client.post("/v1/score/batch", json={"leads": [payload], "as_of": "soon"})
    assert wrong_as_of.status_code == 422 and wrong_as_of.json()["detail"][0]["loc"] == ["body", "as_of"]
    nan = client.post(
        "/v1/score/batch",
        content=b'{"leads": ['
        + json.dumps(payload).encode()
        + b', {"lead": {"lead_id": "n", "created_at": "2024-01-01T00:00:00Z"}, '
        b'"account": {"employees": NaN}}]}',
        headers={"Content-Type": "application/json"},
    )
    assert nan.status_code == 200
    assert [x["status"] for x in nan.json()["results"]] == ["ok", "error"]


# ---- model, health, readiness, metrics, docs ---------------------------------------------------------------


def test_model_endpoint(client: TestClient, bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    info = client.get("/v1/model").json()
    assert info["model_version"] == bundle.version and info["bundle_checksum"] == bundle.checksum
    assert set(info["targets"]) == set(bundle.targets)
    assert info["thresholds"]["stages"] == bundle.thresholds["stages"]
    assert [f["name"] for f in info["features"]] == list(bundle.spec.model_features)
    assert all(f["label"] for f in info["features"])
    assert info["metrics"] == bundle.metrics and info["trained_at"]


def test_health_ready_metrics(client: TestClient, payload: dict) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["ready"] is True
    client.post("/v1/score", json=payload)
    assert (
        metric(client, "leadscore_http_requests_total", route="/v1/score", method="POST", status="200") >= 1
    )
    assert metric(client, "leadscore_leads_scored_total", endpoint="score", outcome="ok") >= 1
    assert "leadscore_http_request_duration_seconds_bucket" in client.get("/metrics").text


def test_not_ready_without_a_valid_bundle(
    make_client: Callable[..., TestClient], tmp_path: Path, payload: dict
) -> None:
    client = make_client(bundle_dir=tmp_path / "nothing-here")
    assert client.get("/health").status_code == 200
    r = client.get("/ready")
    assert r.status_code == 503 and r.json()["ready"] is False
    assert "nothing-here" not in r.text and "/" not in r.json()["reason"]  # no paths for anyone to read
    assert client.post("/v1/score", json=payload).status_code == 503


def test_openapi_documents_the_request_with_an_example(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/ScoreRequest"}
    SCORE_ADAPTER.validate_json(json.dumps(body["example"]))  # the example is a valid request
    schemas = spec["components"]["schemas"]
    assert {"ScoreRequest", "BatchRequest", "LeadIn", "EventIn", "ScoreResult"} <= set(schemas)
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert any(p["name"] == "explain" for p in spec["paths"]["/v1/score"]["post"]["parameters"])
    assert client.get("/docs").status_code == 200


def test_score_is_the_percentile_band_of_the_calibration_slice(
    make_client: Callable[..., TestClient], bundle_dir: Path, tmp_path: Path, payload: dict
) -> None:
    """The thresholds stage writes 98 cut points (calibration-slice quantiles); the 1–99 score is the
    lead's band among them."""
    cuts_written = load_bundle(bundle_dir).thresholds["score_quantiles"]
    assert len(cuts_written) == 98 and cuts_written == sorted(cuts_written)
    plain = make_client().post("/v1/score?explain=false", json=payload).json()
    p = plain["probabilities"]["sql"]
    assert plain["score"] == min(99, 1 + sum(c <= p for c in cuts_written))
    cuts = [p * (0.5 + i / 98) for i in range(98)]  # p sits past 49 of the 98 cut points

    def set_quantiles(files: dict[str, bytes]) -> None:
        th = json.loads(files["thresholds.json"])
        th["score_quantiles"] = cuts
        files["thresholds.json"] = json.dumps(th).encode()

    rewrite_bundle(bundle_dir, tmp_path / "models", set_quantiles)
    banded = make_client(bundle_dir=tmp_path / "models").post("/v1/score?explain=false", json=payload).json()
    assert banded["probabilities"] == plain["probabilities"]
    assert banded["score"] == 1 + sum(c <= p for c in cuts)


def test_scores_spread_over_the_range(client: TestClient, sample_payloads: list[dict]) -> None:
    """Percentile scores spread: no score holds most leads, and the stages order the scores."""
    r = client.post("/v1/score/batch?explain=false", json={"leads": sample_payloads})
    rows = [x for x in r.json()["results"] if x["status"] == "ok"]
    scores = [x["score"] for x in rows]
    assert max(scores.count(v) for v in set(scores)) <= len(scores) / 2, scores
    assert len(set(scores)) >= 8 and max(scores) - min(scores) >= 40, scores
    by_p = sorted(rows, key=lambda x: x["probabilities"]["sql"])
    assert [x["score"] for x in by_p] == sorted(x["score"] for x in by_p)  # monotone in p


def test_docs_are_served_offline(client: TestClient) -> None:
    """Swagger UI and ReDoc come from files installed with the package: no CDN, no third-party script."""
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "https://" not in html and "http://" not in html, page
        for ref in re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html):
            if ref.startswith("/"):
                assert client.get(ref).status_code == 200, ref


def test_text_and_form_bodies_are_415(client: TestClient, payload: dict) -> None:
    for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        r = client.post("/v1/score", content=json.dumps(payload), headers={"Content-Type": media})
        assert r.status_code == 415, media
    charset = client.post(
        "/v1/score", content=json.dumps(payload), headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert charset.status_code == 200
