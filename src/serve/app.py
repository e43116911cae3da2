"""The FastAPI app: versioned scoring endpoints, health/readiness, Prometheus metrics, bundle reload.

Hot path choices (see benchmarks/serve_bench.py and docs/api.md "Performance"): the scoring routes are
answered by a plain ASGI dispatcher (``ScoringFastPath``; the FastAPI routes stay for the docs and run
the same handler bodies), bodies are read as bytes and decoded by msgspec with pydantic as the authority
(``decode``; the request models are in the OpenAPI docs through ``openapi_extra``), responses are orjson
bytes, dependencies are ``async`` (a sync dependency costs a thread hop per request), single leads are
scored on the event loop (concurrent ones together, see ``batching``) and large batches on a worker
thread so one batch does not stall health checks.
"""

import asyncio
import contextlib
import gc
import hmac
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import parse_qsl

import anyio
import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadscore.serve import isotime
from leadscore.serve.batching import MicroBatcher
from leadscore.serve.columnar import prepare_batch_text
from leadscore.serve.decode import ScoreReq, decode_batch_text, parse_batch, parse_score, to_score_req
from leadscore.serve.memory import keep_freed_memory
from leadscore.serve.metrics import ServeMetrics, make_metrics
from leadscore.serve.payload import PayloadPolicy
from leadscore.serve.schemas import (
    EXAMPLE_BATCH,
    EXAMPLE_REQUEST,
    SCORE_ADAPTER,
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    ReloadResponse,
    ScoreRequest,
    ScoreResult,
    Timestamp,
)
from leadscore.serve.scorer import (
    LoadedModel,
    ReloadResult,
    ScoreOutcome,
    Scorer,
    score_prepared,
    score_requests,
)
from leadscore.serve.settings import ServeSettings, load_settings
from leadscore.serve.source import RegistrySource, bundle_source, poll_alias

log = logging.getLogger("leadscore.serve")

JSON = "application/json"
MAX_ERRORS = 100
_TIMESTAMP = TypeAdapter(Timestamp)


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes (LEADSCORE_MAX_BODY_BYTES)")


class LimitAndMeasure:
    """Pure ASGI middleware: refuse bodies over the limit (declared or streamed) with 413, and record
    request count and latency per route template."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes
        self._too_large = orjson.dumps({"detail": BodyTooLarge(max_body_bytes).detail})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        limit = self.max_body
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = limit + 1
                if declared > limit:
                    self.metrics.body_too_large.inc()
                    await self._refuse(send)
                    self._record(scope, 413, start)
                    return
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    self.metrics.body_too_large.inc()
                    raise BodyTooLarge(limit)  # a 413 through the app's HTTPException handler
            return message

        started = False

        async def send_status(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, send_status)
        except BodyTooLarge:
            status = 413
            if not started:
                await self._refuse(send)
        finally:
            self._record(scope, status, start)

    async def _refuse(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", JSON.encode()), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": self._too_large})

    def _record(self, scope: Scope, status: int, start: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "other"
        self.metrics.requests.labels(path, scope["method"], str(status)).inc()
        self.metrics.latency.labels(path).observe(time.perf_counter() - start)


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type=JSON)


def _errors(exc: ValidationError, prefix: tuple[Any, ...] = ("body",)) -> list[dict[str, Any]]:
    """pydantic errors as ``{loc, msg, type}`` (inputs are not echoed back: they may be large or personal)."""
    return [
        {"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False, include_context=False)[:MAX_ERRORS]
    ]


def _detail(detail: list[dict[str, Any]]) -> bytes:
    """A 422 body: ``{"detail": [{loc, msg, type}, ...]}`` (at most ``MAX_ERRORS``)."""
    return orjson.dumps({"detail": detail[:MAX_ERRORS]})


def _request_error_body(exc: RequestValidationError) -> bytes:
    """The 422 body for a request-level error (e.g. the ``explain`` query flag), as FastAPI would say it."""
    return _detail([{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()])


def _request_body(model: type, example: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON body of ``model`` (schema added to components in ``_openapi``)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                JSON: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}, "example": example}
            },
        }
    }


_ERRORS = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
    413: {"model": ErrorResponse, "description": "Body larger than LEADSCORE_MAX_BODY_BYTES."},
    422: {"model": ErrorResponse, "description": "Invalid input; `loc` says where, `msg` what."},
    503: {"model": ErrorResponse, "description": "No verified bundle loaded yet."},
}


@dataclass
class ServeState:
    """What the dependencies and handlers need, built once per app (``app.state.serve``)."""

    settings: ServeSettings
    scorer: Scorer
    metrics: ServeMetrics
    policy: PayloadPolicy
    key: bytes | None
    key_header: str
    batcher: MicroBatcher | None = None
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    async def reload(self, trigger: str) -> ReloadResult:
        """Load + verify the bundle on a worker thread, swap it in (or refuse it), record the outcome."""
        result = await anyio.to_thread.run_sync(self.scorer.reload)
        self.metrics.reloads.labels("ok" if result.reloaded else "refused", trigger).inc()
        if result.reloaded and result.model is not None:
            self.metrics.model_info.clear()
            self.metrics.model_info.labels(result.model.version, result.model.checksum).set(1)
        return result

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


@dataclass(frozen=True)
class ScoringContext:
    """The hot path's one dependency: the caller is authorised, this model serves the request."""

    state: ServeState
    model: LoadedModel
    explain: bool


# ---- dependencies (module level, so FastAPI resolves them once per route) ------------------------------


def _serve(request: Request) -> ServeState:
    return request.app.state.serve


def _check_key(state: ServeState, given: str | None) -> None:
    """401 unless ``given`` (the key header's value) matches the configured key (constant-time)."""
    if state.key is None:
        return
    if given is None or not hmac.compare_digest(given.encode(), state.key):
        raise HTTPException(
            401,
            f"missing or invalid API key (header {state.key_header})",
            headers={"WWW-Authenticate": "ApiKey"},
        )


def _model(state: ServeState) -> LoadedModel:
    model = state.scorer.model
    if model is None:
        why = f": {state.scorer.last_error}" if state.scorer.last_error else ""
        raise HTTPException(503, f"no verified bundle is loaded{why}")
    return model


async def require_api_key(request: Request) -> None:
    """401 unless the key header matches ``LEADSCORE_API_KEY`` (constant-time); no-op when auth is off."""
    state = _serve(request)
    _check_key(state, request.headers.get(state.key_header))


async def current_model(request: Request) -> LoadedModel:
    """The model serving now (503 before a verified bundle is loaded). Take it once per request."""
    return _model(_serve(request))


_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def authorise_scoring(state: ServeState, key: str | None, explain_raw: str | None) -> ScoringContext:
    """The scoring endpoints' checks in order: API key (401), a verified model (503), the ``explain``
    query flag (422). Shared by the FastAPI dependency and ``ScoringFastPath``."""
    _check_key(state, key)
    model = _model(state)
    explain = True
    if explain_raw is not None:
        explain = _BOOL.get(explain_raw.lower())  # type: ignore[assignment]
        if explain is None:
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", "explain"),
                        "msg": "Input should be a valid boolean",
                        "type": "bool_parsing",
                    }
                ]
            )
    return ScoringContext(state, model, explain)


async def scoring_context(request: Request) -> ScoringContext:
    """Auth + current model + the ``explain`` query flag in one dependency (each FastAPI dependency or
    declared query parameter costs tens of microseconds per request on the hot path)."""
    state = _serve(request)
    return authorise_scoring(
        state, request.headers.get(state.key_header), request.query_params.get("explain")
    )


Authorized = Annotated[None, Depends(require_api_key)]
CurrentModel = Annotated[LoadedModel, Depends(current_model)]
Scoring = Annotated[ScoringContext, Depends(scoring_context)]

_SECURED = {"security": [{"APIKeyHeader": []}]}
_EXPLAIN_PARAM = {
    "name": "explain",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": True},
    "description": "false: skip the reasons (faster; for callers that only need the probability).",
}


def _scoring_openapi(model: type, example: dict[str, Any]) -> dict[str, Any]:
    return {**_request_body(model, example), "parameters": [_EXPLAIN_PARAM], **_SECURED}


def _count(state: ServeState, outcome: ScoreOutcome, endpoint: str) -> None:
    metrics = state.metrics
    if outcome.results:
        metrics.leads.labels(endpoint, "ok").inc(len(outcome.results))
    if outcome.errors:
        metrics.leads.labels(endpoint, "invalid").inc(len(outcome.errors))
    if outcome.unknown_event_types:
        action = "rejected" if state.policy.unknown_event_types == "reject" else "ignored"
        metrics.unknown_event_types.labels(action).inc(sum(outcome.unknown_event_types.values()))


# ---- endpoints -------------------------------------------------------------------------------------------

router = APIRouter()


@router.get("/health", tags=["ops"], summary="Alive (no bundle needed).")
async def health() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@router.get("/ready", tags=["ops"], summary="200 once a verified bundle is loaded, else 503.")
async def ready(request: Request) -> Response:
    state = _serve(request)
    model = state.scorer.model
    if model is None:
        return _json({"ready": False, "error": state.scorer.last_error}, 503)
    return _json({"ready": True, "model_version": model.version, "bundle_checksum": model.checksum})


@router.get("/metrics", tags=["ops"], summary="Prometheus metrics.")
async def prometheus(request: Request) -> Response:
    return Response(generate_latest(_serve(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/model",
    tags=["model"],
    summary="The model being served: version, targets, metrics, thresholds, features.",
    openapi_extra=_SECURED,
    responses={401: _ERRORS[401], 503: _ERRORS[503]},
)
async def model_info(_: Authorized, model: CurrentModel) -> Response:
    return Response(model.info_json, media_type=JSON)


async def score_one_body(ctx: ScoringContext, body: bytes) -> tuple[int, bytes]:
    """``POST /v1/score`` after its checks: (status, JSON body) for a request body."""
    state = ctx.state
    try:
        req = parse_score(body)
    except ValidationError as exc:
        state.metrics.leads.labels("score", "invalid").inc()
        return 422, _detail(_errors(exc))
    if state.batcher is not None:
        lead = await state.batcher.score(ctx.model, req, ctx.explain)
        result, errors = lead.result, lead.errors
    else:
        outcome = score_requests(
            ctx.model, [req], state.policy, ctx.explain, state.settings.reasons_per_lead, 1
        )
        _count(state, outcome, "score")
        result, errors = outcome.results.get(0), outcome.errors.get(0)
    if errors:
        return 422, _detail(errors)
    return 200, orjson.dumps(result)


async def score_batch_body(ctx: ScoringContext, body: bytes) -> tuple[int, bytes]:
    """``POST /v1/score/batch`` after its checks: (status, JSON body) for a request body.

    Bodies of at least ``offload_min_bytes`` are handled on a worker thread, from decoding (~4 ms for
    1,000 leads) to the response bytes, so one large batch holds up health checks and single leads only
    for the GIL's switch interval, not for the whole request.
    """
    settings = ctx.state.settings
    if len(body) >= settings.offload_min_bytes:
        return await anyio.to_thread.run_sync(_score_batch_sync, ctx, body)
    return _score_batch_sync(ctx, body)


def _score_batch_sync(ctx: ScoringContext, body: bytes) -> tuple[int, bytes]:
    """``score_batch_body``'s work: the columnar path, else the pydantic path (errors, odd bodies)."""
    state, model, settings = ctx.state, ctx.model, ctx.state.settings
    text_batch = decode_batch_text(body)
    if text_batch is not None:
        # The columnar path: every timestamp converted at once, checks as array operations.
        n = len(text_batch.leads)
        if n > settings.max_batch:
            return _too_many(n, settings.max_batch)
        prepared = prepare_batch_text(text_batch, model.type_lookup, state.policy, memo=model.builder.memo_)
        if prepared is not None:  # else a timestamp pydantic refuses: its errors come from the path below
            outcome = score_prepared(
                model,
                prepared,
                ctx.explain,
                settings.reasons_per_lead,
                settings.predict_threads,
                batch_rows=True,
            )
            return 200, _batch_response(state, model, outcome, n, text_batch.leads, None, {}, {})
    item_errors: dict[int, list[dict[str, Any]]] = {}
    lead_ids: dict[int, str | None] = {}
    try:
        batch = parse_batch(body)
        requests, indices, default_as_of = batch.leads, None, batch.as_of
        n_total = len(requests)
    except ValidationError as exc:
        parsed = _split_batch_errors(exc, body)
        if isinstance(parsed, list):
            return 422, _detail(parsed)
        requests, indices, default_as_of, item_errors, lead_ids, n_total = parsed
    if n_total > settings.max_batch:
        return _too_many(n_total, settings.max_batch)

    outcome = score_requests(
        model,
        requests,
        state.policy,
        ctx.explain,
        settings.reasons_per_lead,
        settings.predict_threads,
        default_as_of=default_as_of,
        loc_prefix=("leads",),
        indices=indices,
        batch_rows=True,
    )
    return 200, _batch_response(state, model, outcome, n_total, requests, indices, item_errors, lead_ids)


def _too_many(n: int, limit: int) -> tuple[int, bytes]:
    return 422, _detail(
        [
            {
                "loc": ["body", "leads"],
                "msg": f"at most {limit} leads per request, got {n}",
                "type": "too_many_leads",
            }
        ]
    )


def _batch_response(
    state: ServeState,
    model: LoadedModel,
    outcome: ScoreOutcome,
    n_total: int,
    requests: Sequence[Any],
    indices: Sequence[int] | None,
    item_errors: dict[int, list[dict[str, Any]]],
    lead_ids: dict[int, str | None],
) -> bytes:
    """The batch response body: every request position in order, scored or with its errors (those found
    while parsing, ``item_errors`` / ``lead_ids``, and those of the checks, ``outcome.errors``)."""
    _count(state, outcome, "batch")
    if item_errors:
        state.metrics.leads.labels("batch", "invalid").inc(len(item_errors))
    item_errors.update(outcome.errors)
    if outcome.errors:
        for pos, req in zip(indices or range(len(requests)), requests, strict=True):
            if pos in outcome.errors:
                lead_ids[pos] = req.lead.lead_id
    # outcome.results are rows of this response already (``batch_rows=True``): add the failed ones.
    results: list[dict[str, Any]] = [
        outcome.results.get(i)
        or {"index": i, "status": "error", "lead_id": lead_ids.get(i), "errors": item_errors[i]}
        for i in range(n_total)
    ]
    n_ok = len(outcome.results)
    return orjson.dumps(
        {
            "results": results,
            "n_ok": n_ok,
            "n_failed": n_total - n_ok,
            "model_version": model.version,
            "bundle_checksum": model.checksum,
        }
    )


@router.post(
    "/v1/score",
    tags=["scoring"],
    summary="Score one lead.",
    openapi_extra=_scoring_openapi(ScoreRequest, EXAMPLE_REQUEST),
    responses={200: {"model": ScoreResult}, **_ERRORS},
)
async def score_one(request: Request, ctx: Scoring) -> Response:
    status, content = await score_one_body(ctx, await request.body())
    return Response(content, status_code=status, media_type=JSON)


@router.post(
    "/v1/score/batch",
    tags=["scoring"],
    summary="Score up to LEADSCORE_MAX_BATCH leads; a bad lead gets its own errors, the others are scored.",
    openapi_extra=_scoring_openapi(BatchRequest, EXAMPLE_BATCH),
    responses={200: {"model": BatchResponse}, **_ERRORS},
)
async def score_batch(request: Request, ctx: Scoring) -> Response:
    status, content = await score_batch_body(ctx, await request.body())
    return Response(content, status_code=status, media_type=JSON)


@router.post(
    "/v1/admin/reload",
    tags=["ops"],
    summary="Load and verify the bundle again (after retraining) and swap it in; a bad one is refused.",
    openapi_extra=_SECURED,
    responses={200: {"model": ReloadResponse}, 409: {"model": ReloadResponse}, 401: _ERRORS[401]},
)
async def admin_reload(request: Request, _: Authorized) -> Response:
    result = await _serve(request).reload("admin")
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


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    return Response(_request_error_body(exc), status_code=422, media_type=JSON)


class ScoringFastPath:
    """Pure ASGI: ``POST /v1/score`` and ``/v1/score/batch`` straight to their handler bodies.

    FastAPI's route matching (a scan of every route) and dependency resolution cost about 200 µs per
    request, as much as scoring one lead (benchmarks/serve_bench.py). This dispatcher runs the same checks
    (``authorise_scoring``: key, model, ``explain``) and the same handler bodies as the FastAPI routes,
    which stay for the OpenAPI docs and answer everything else (other methods, other paths). It sits
    inside ``LimitAndMeasure``, so the body limit and the metrics apply unchanged; tests send every
    request both ways and compare the responses.
    """

    def __init__(self, app: ASGIApp, state: ServeState, routes: dict[str, tuple[Any, Any]]) -> None:
        self.app = app
        self.state = state
        self.routes = routes  # path -> (FastAPI route, for the metrics label; handler body)
        self.key_header = state.key_header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = None
        if scope["type"] == "http" and scope["method"] == "POST":
            path, root = scope["path"], scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            entry = self.routes.get(path)
        if entry is None:
            await self.app(scope, receive, send)
            return
        route, handler = entry
        scope["route"] = route  # the metrics label, as when FastAPI routes the request
        key = None
        for name, value in scope["headers"]:
            if name == self.key_header:
                key = value.decode("latin-1")
                break
        explain_raw = None
        query = scope.get("query_string", b"")
        if query:
            text = query.decode("latin-1")
            # Without escapes the pairs are plain text; parse_qsl (what Starlette uses) only when needed.
            pairs = (
                parse_qsl(text, keep_blank_values=True)
                if "%" in text or "+" in text
                else (p.partition("=")[::2] for p in text.split("&") if p)
            )
            for k, v in pairs:
                if k == "explain":
                    explain_raw = v  # the last one wins, as in Starlette's QueryParams
        headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
        try:
            ctx = authorise_scoring(self.state, key, explain_raw)
        except HTTPException as exc:
            status, content = exc.status_code, orjson.dumps({"detail": exc.detail})
            headers += [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (exc.headers or {}).items()
            ]
        except RequestValidationError as exc:
            status, content = 422, _request_error_body(exc)
        else:
            chunks = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client is gone: nothing to answer
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            status, content = await handler(ctx, b"".join(chunks))
        headers.append((b"content-length", str(len(content)).encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def create_app(settings: ServeSettings | None = None, scorer: Scorer | None = None) -> FastAPI:
    """The app. ``settings`` default to the environment (``LEADSCORE_*``); the bundle is loaded and
    verified at startup (lifespan; ``/ready`` is 503 until it is, and stays 503 if it is refused), SIGHUP
    reloads it when the server runs in the main thread."""
    settings = settings or load_settings()
    if scorer is None:
        from leadscore.serve.flat_app import create_flat_app, is_flat_bundle

        if is_flat_bundle(settings.bundle_dir):  # a `leadscore train-table` bundle: rows in, probability out
            return create_flat_app(settings)
    state = ServeState(
        settings=settings,
        scorer=scorer or Scorer(settings.bundle_dir, source=bundle_source(settings)),
        metrics=make_metrics(),
        policy=PayloadPolicy(
            unknown_event_types=settings.unknown_event_types,
            max_events_per_lead=settings.max_events_per_lead,
            max_stage_rows_per_lead=settings.max_stage_rows_per_lead,
            clock_skew_seconds=settings.clock_skew_seconds,
        ),
        key=settings.key_bytes,
        key_header=settings.api_key_header,
    )
    if settings.micro_batching:

        def on_flush(outcome: ScoreOutcome) -> None:
            state.metrics.micro_batch.observe(len(outcome.results) + len(outcome.errors))
            _count(state, outcome, "score")

        state.batcher = MicroBatcher(state.policy, settings.reasons_per_lead, on_flush)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The batch path's compiled timestamp loop: loaded (or compiled) now, not on the first batch.
        isotime.warm_up()
        if state.settings.keep_freed_memory:
            keep_freed_memory()
        model = state.scorer.model
        if model is None:
            await state.reload("startup")
        else:
            state.metrics.model_info.labels(model.version, model.checksum).set(1)
        # Everything loaded so far (libraries, the bundle) lives as long as the process: collect what is
        # garbage now, then keep the rest out of the cyclic GC's generations so that collections during
        # large requests stay short.
        gc.collect()
        gc.freeze()
        loop = asyncio.get_running_loop()
        hup = getattr(signal, "SIGHUP", None)
        installed = False
        if hup is not None:
            try:
                loop.add_signal_handler(hup, lambda: state.spawn(state.reload("sighup")))
                installed = True
            except (ValueError, RuntimeError, NotImplementedError):
                log.info("SIGHUP reload not available here (not the main thread); use POST /v1/admin/reload")
        source, poll = state.scorer.source, None
        if isinstance(source, RegistrySource) and state.settings.model_poll_seconds > 0:
            poll = asyncio.ensure_future(
                poll_alias(source, state.settings.model_poll_seconds, lambda: state.reload("poll"))
            )
        try:
            yield
        finally:
            if poll is not None:
                poll.cancel()
            if installed:
                loop.remove_signal_handler(hup)
            gc.unfreeze()  # collectable again (and finalised at exit)

    app = FastAPI(
        title="leadscore",
        version="1",
        summary="Calibrated lead propensity scores, funnel stage and reasons for the CRM.",
        description=(
            "Send a lead with its account, engagement events and stage history; get back calibrated "
            "probabilities per target, the stage, a 1–99 score and the top reasons in business words. "
            f"Authenticate with the `{settings.api_key_header}` header. Details: docs/api.md."
        ),
        lifespan=lifespan,
    )
    app.state.serve = state
    app.include_router(router)
    if settings.fast_routes:
        paths = {"/v1/score": score_one_body, "/v1/score/batch": score_batch_body}
        fast = {
            r.path: (r, paths[r.path])
            for r in router.routes
            if isinstance(r, APIRoute) and r.path in paths and "POST" in r.methods
        }
        app.add_middleware(ScoringFastPath, state=state, routes=fast)
    app.add_middleware(LimitAndMeasure, metrics=state.metrics, max_body_bytes=settings.max_body_bytes)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.openapi = lambda: _openapi(app, settings.api_key_header)  # type: ignore[method-assign]
    return app


def _split_batch_errors(
    exc: ValidationError, body: bytes
) -> (
    list[dict[str, Any]]
    | tuple[list[ScoreReq], list[int], Any, dict[int, list[dict[str, Any]]], dict[int, str | None], int]
):
    """A batch that failed validation: when every error is inside one lead, validate the other leads on
    their own and return them with per-lead errors; otherwise the errors of the whole request (a 422)."""
    per_lead: dict[int, list[dict[str, Any]]] = {}
    whole: list[dict[str, Any]] = []
    for e in _errors(exc, prefix=()):
        loc = e["loc"]
        if len(loc) >= 2 and loc[0] == "leads" and isinstance(loc[1], int):
            per_lead.setdefault(loc[1], []).append({**e, "loc": ["body", *loc]})
        else:
            whole.append({**e, "loc": ["body", *loc]})
    if whole or not per_lead:
        return whole + [x for errs in per_lead.values() for x in errs]
    # Only reached for syntactically valid JSON (else the error has no lead location). The stdlib
    # parser also reads NaN/Infinity, which a bad lead may contain.
    raw = json.loads(body)
    leads = raw["leads"]
    lead_ids: dict[int, str | None] = {}
    for i in per_lead:
        item = leads[i]
        lead = item.get("lead") if isinstance(item, dict) else None
        lead_id = lead.get("lead_id") if isinstance(lead, dict) else None
        lead_ids[i] = lead_id if isinstance(lead_id, str) else None
    good = [i for i in range(len(leads)) if i not in per_lead]
    requests = [to_score_req(SCORE_ADAPTER.validate_json(json.dumps(leads[i]))) for i in good]
    as_of = raw.get("as_of")
    default_as_of = _TIMESTAMP.validate_json(json.dumps(as_of)) if as_of is not None else None
    return requests, good, default_as_of, per_lead, lead_ids, len(leads)


def _openapi(app: FastAPI, key_header: str) -> dict[str, Any]:
    """FastAPI's schema plus the request models the raw-body endpoints declare via ``openapi_extra``."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    comps = schema.setdefault("components", {})
    comps["securitySchemes"] = {
        "APIKeyHeader": {
            "type": "apiKey",
            "in": "header",
            "name": key_header,
            "description": "The API key (LEADSCORE_API_KEY on the server).",
        }
    }
    components = comps.setdefault("schemas", {})
    for model in (ScoreRequest, BatchRequest):
        js = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}", mode="validation")
        for name, sub in js.pop("$defs", {}).items():
            components.setdefault(name, sub)
        components[model.__name__] = js
    app.openapi_schema = schema
    return schema
