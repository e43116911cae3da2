"""The endpoints: scoring (one lead, a batch), the model, health/readiness, metrics, reload.

Bodies are read as bytes and validated by the bundle kind's pydantic request contract
(``validate_json``; the request models are in the OpenAPI docs through ``openapi_extra``), responses
are orjson bytes. Single leads are scored on the event loop (concurrent ones together, see
``batching``), large batches on a worker thread so one batch does not stall health checks. No request
body can cause a 5xx: every body is either scored or answered with field-level errors.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import TypeAdapter, ValidationError

from leadscore.serve.middleware import DRAINING
from leadscore.serve.payload import MAX_ERRORS_PER_LEAD
from leadscore.serve.schemas import (
    EXAMPLE_BATCH,
    EXAMPLE_REQUEST,
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    ReloadResponse,
    ScoreRequest,
    ScoreResult,
    Timestamp,
    error_list,
)
from leadscore.serve.scorer import ScoreOutcome, ScoringModel
from leadscore.serve.security import (
    Authorized,
    CurrentModel,
    Scoring,
    ScoringContext,
    ServeState,
    serve_state,
)

JSON = "application/json"
#: At most this many errors in a 422 body (a body with 10,000 bad values gets the idea).
MAX_ERRORS = 100
_TIMESTAMP: TypeAdapter[Any] = TypeAdapter(Timestamp)

ERRORS = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
    408: {"model": ErrorResponse, "description": "Body not received within LEADSCORE_READ_TIMEOUT_SECONDS."},
    413: {"model": ErrorResponse, "description": "Body larger than LEADSCORE_MAX_BODY_BYTES."},
    415: {"model": ErrorResponse, "description": "Body is not application/json."},
    422: {"model": ErrorResponse, "description": "Invalid input; `loc` says where, `msg` what."},
    503: {"model": ErrorResponse, "description": "No verified bundle loaded yet."},
}
SECURED = {"security": [{"APIKeyHeader": []}]}
_EXPLAIN = {
    "name": "explain",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": True},
    "description": "false: skip the reasons (faster; for callers that only need the probability).",
}


def _scoring_openapi(model: type, example: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra``: a JSON body of ``model`` (its schema is added in ``app.openapi_schema``)."""
    body = {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}, "example": example}
    return {"requestBody": {"required": True, "content": {JSON: body}}, "parameters": [_EXPLAIN], **SECURED}


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type=JSON)


def _detail(detail: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"detail": detail[:MAX_ERRORS]})


async def json_body(request: Request) -> bytes:
    """The body of a JSON request; 415 for any other media type (a form or text body is not a lead)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != JSON and not (media.startswith("application/") and media.endswith("+json")):
        raise HTTPException(415, "send the body as application/json")
    return await request.body()


def count_outcome(state: ServeState, outcome: ScoreOutcome, endpoint: str) -> None:
    metrics = state.metrics
    if outcome.results:
        metrics.leads.labels(endpoint, "ok").inc(len(outcome.results))
    if outcome.errors:
        metrics.leads.labels(endpoint, "invalid").inc(len(outcome.errors))
    if outcome.unknown_event_types:
        action = "rejected" if state.policy.unknown_event_types == "reject" else "ignored"
        metrics.unknown_event_types.labels(action).inc(sum(outcome.unknown_event_types.values()))


router = APIRouter()


@router.get("/health", tags=["ops"], summary="Alive (no bundle needed).")
async def health() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@router.get(
    "/ready",
    tags=["ops"],
    summary="200 once a verified bundle is loaded; 503 before and while shutting down.",
)
async def ready(request: Request) -> Response:
    model = serve_state(request).scorer.model
    if DRAINING.is_set():
        return _json({"ready": False, "reason": "shutting down"}, 503)
    if model is None:
        return _json({"ready": False, "reason": "no verified bundle is loaded (see the server log)"}, 503)
    body = {
        "ready": True,
        "kind": model.kind,
        "model_version": model.version,
        "bundle_checksum": model.checksum,
    }
    return _json(body)


@router.get("/metrics", tags=["ops"], summary="Prometheus metrics.")
async def prometheus(request: Request) -> Response:
    return Response(generate_latest(serve_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/model",
    tags=["model"],
    summary="The model being served: kind, version, targets, metrics, thresholds, features.",
    openapi_extra=SECURED,
    responses={401: ERRORS[401], 503: ERRORS[503]},
)
async def model_info(_: Authorized, model: CurrentModel) -> Response:
    return Response(model.info_json, media_type=JSON)


@router.post(
    "/v1/score",
    tags=["scoring"],
    summary="Score one lead.",
    openapi_extra=_scoring_openapi(ScoreRequest, EXAMPLE_REQUEST),
    responses={200: {"model": ScoreResult}, **ERRORS},
)
async def score_one(request: Request, ctx: Scoring) -> Response:
    body = await json_body(request)
    state, model = ctx.state, ctx.model
    try:
        lead = model.lead_adapter.validate_json(body)
    except ValidationError as exc:
        state.metrics.leads.labels("score", "invalid").inc()
        return Response(_detail(error_list(exc)), status_code=422, media_type=JSON)
    if state.batcher is not None:
        one = await state.batcher.score(model, lead, ctx.explain)
        result, errors = one.result, one.errors
    else:
        outcome = model.score([lead], ctx.explain, state.settings.reasons_per_lead, policy=state.policy)
        count_outcome(state, outcome, "score")
        result, errors = outcome.results.get(0), outcome.errors.get(0)
    if errors:
        return Response(_detail(errors), status_code=422, media_type=JSON)
    return Response(orjson.dumps(result), media_type=JSON)


@router.post(
    "/v1/score/batch",
    tags=["scoring"],
    summary="Score up to LEADSCORE_MAX_BATCH leads; a bad lead gets its own errors, the others are scored.",
    openapi_extra=_scoring_openapi(BatchRequest, EXAMPLE_BATCH),
    responses={200: {"model": BatchResponse}, **ERRORS},
)
async def score_batch(request: Request, ctx: Scoring) -> Response:
    body = await json_body(request)
    if len(body) >= ctx.state.settings.offload_min_bytes:
        # From validation to the response bytes on a worker thread: one large batch holds up health
        # checks and single leads only for the GIL's switch interval, not for the whole request.
        status, content = await anyio.to_thread.run_sync(score_batch_body, ctx, body)
    else:
        status, content = score_batch_body(ctx, body)
    return Response(content, status_code=status, media_type=JSON)


def score_batch_body(ctx: ScoringContext, body: bytes) -> tuple[int, bytes]:
    """(status, JSON body) of ``POST /v1/score/batch`` for a request body."""
    state, model, settings = ctx.state, ctx.model, ctx.state.settings
    try:
        batch = model.batch_adapter.validate_json(body)
        leads, positions, lead_errors, lead_ids = batch["leads"], None, {}, {}
        default_as_of, n_total = batch.get("as_of"), len(batch["leads"])
    except ValidationError as exc:
        split = split_batch_errors(model, exc, body)
        if isinstance(split, list):
            return 422, _detail(split)
        leads, positions, default_as_of, lead_errors, lead_ids, n_total = split
    if n_total > settings.max_batch:
        error = {
            "loc": ["body", "leads"],
            "msg": f"at most {settings.max_batch} leads per request, got {n_total}",
            "type": "too_many_leads",
        }
        return 422, _detail([error])
    outcome = model.score(
        leads,
        ctx.explain,
        settings.reasons_per_lead,
        default_as_of=default_as_of,
        positions=positions,
        loc_prefix=("leads",),
        num_threads=settings.predict_threads,
        batch_rows=True,
        policy=state.policy,
    )
    count_outcome(state, outcome, "batch")
    if lead_errors:
        state.metrics.leads.labels("batch", "invalid").inc(len(lead_errors))
    lead_errors.update(outcome.errors)
    for pos, lead in zip(positions if positions is not None else range(len(leads)), leads, strict=True):
        if pos in outcome.errors:
            lead_ids[pos] = lead["lead"]["lead_id"] if "lead" in lead else lead.get("lead_id")
    results = [
        outcome.results.get(i)
        or {"index": i, "status": "error", "lead_id": lead_ids.get(i), "errors": lead_errors[i]}
        for i in range(n_total)
    ]
    n_ok = len(outcome.results)
    response = {
        "results": results,
        "n_ok": n_ok,
        "n_failed": n_total - n_ok,
        "model_version": model.version,
        "bundle_checksum": model.checksum,
    }
    return 200, orjson.dumps(response)


def _lead_id(item: Any) -> str | None:
    """The lead id of a raw (invalid) batch item, if it has a readable one (either bundle kind)."""
    if not isinstance(item, dict):
        return None
    lead = item.get("lead")
    value = lead.get("lead_id") if isinstance(lead, dict) else item.get("lead_id")
    return value if isinstance(value, str) else None


def split_batch_errors(
    model: ScoringModel, exc: ValidationError, body: bytes
) -> (
    list[dict[str, Any]]
    | tuple[list[Any], list[int], Any, dict[int, list[dict[str, Any]]], dict[int, str | None], int]
):
    """A batch that failed validation: when every error is inside a lead, validate the other leads on
    their own and return them with per-lead errors (at most ``MAX_ERRORS_PER_LEAD`` each); otherwise the
    errors of the whole request (a 422)."""
    per_lead: dict[int, list[dict[str, Any]]] = {}
    whole: list[dict[str, Any]] = []
    for e in error_list(exc):
        loc = e["loc"]
        if len(loc) >= 3 and loc[1] == "leads" and isinstance(loc[2], int):
            per_lead.setdefault(loc[2], []).append(e)
        else:
            whole.append(e)
    everything = whole + [x for errs in per_lead.values() for x in errs]
    if whole or not per_lead:
        return everything
    try:
        # Errors with lead locations mean the body is JSON with a `leads` list. The stdlib parser also
        # reads NaN/Infinity, which a bad lead may contain; each good lead is validated again alone.
        raw = json.loads(body)
        items = raw["leads"]
        good = [i for i in range(len(items)) if i not in per_lead]
        leads = [model.lead_adapter.validate_json(json.dumps(items[i])) for i in good]
        as_of = raw.get("as_of")
        default_as_of = None if as_of is None else _TIMESTAMP.validate_json(json.dumps(as_of))
    except (ValueError, TypeError, KeyError, RecursionError):  # ValidationError is a ValueError
        return everything
    lead_ids = {i: _lead_id(items[i]) for i in per_lead}
    errors = {i: errs[:MAX_ERRORS_PER_LEAD] for i, errs in per_lead.items()}
    return leads, good, default_as_of, errors, lead_ids, len(items)


@router.post(
    "/v1/admin/reload",
    tags=["ops"],
    summary="Load and verify the bundle again (after retraining) and swap it in; a bad one is refused.",
    openapi_extra=SECURED,
    responses={200: {"model": ReloadResponse}, 409: {"model": ReloadResponse}, 401: ERRORS[401]},
)
async def admin_reload(request: Request, _: Authorized) -> Response:
    result = await serve_state(request).reload("admin")
    model = result.model
    body = {
        "reloaded": result.reloaded,
        "model_version": model.version if model else None,
        "bundle_checksum": model.checksum if model else None,
        "previous_checksum": result.previous_checksum,
        "error": result.error,
        "seconds": round(result.seconds, 3),
    }
    return _json(body, 200 if result.reloaded else 409)
