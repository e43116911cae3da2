"""The app factory: one FastAPI app for both bundle kinds (pipeline and flat), same auth, limits, errors.

The bundle is loaded and verified at startup (lifespan; ``/ready`` is 503 until it is, and stays 503 if
it is refused) and again on ``POST /v1/admin/reload`` or SIGHUP. The API docs (``/docs``, ``/redoc``)
are served from the Swagger UI and ReDoc files installed with ``fastapi-offline``: nothing is loaded
from a CDN, so the pages work offline and no third-party script sees a key typed into "Authorize".
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from pydantic import TypeAdapter

from leadscore.serve.batching import MicroBatcher
from leadscore.serve.metrics import make_metrics
from leadscore.serve.middleware import Guard
from leadscore.serve.payload import PayloadPolicy
from leadscore.serve.routes import MAX_ERRORS, count_outcome, router
from leadscore.serve.schemas import BatchRequest, FlatBatch, FlatRow, ScoreRequest
from leadscore.serve.scorer import ScoreOutcome, Scorer
from leadscore.serve.security import ServeState
from leadscore.serve.settings import ServeSettings, load_settings
from leadscore.serve.source import RegistrySource, bundle_source, poll_alias

log = logging.getLogger("leadscore.serve")


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    """A request-level 422 (e.g. the ``explain`` flag) in the same shape as body errors, no inputs."""
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()[:MAX_ERRORS]]
    return Response(orjson.dumps({"detail": detail}), status_code=422, media_type="application/json")


def _state(settings: ServeSettings, scorer: Scorer | None) -> ServeState:
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
            count_outcome(state, outcome, "score")

        state.batcher = MicroBatcher(state.policy, settings.reasons_per_lead, on_flush)
    return state


def create_app(settings: ServeSettings | None = None, scorer: Scorer | None = None) -> FastAPI:
    """The app. ``settings`` default to the environment (``LEADSCORE_*``); ``scorer`` to one for
    ``settings.bundle_dir`` (a test may pass one with a model already loaded)."""
    settings = settings or load_settings()
    state = _state(settings, scorer)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = state.scorer.model
        if model is None:
            await state.reload("startup")
        else:
            state.metrics.model_info.labels(model.version, model.checksum).set(1)
        # What is loaded now (libraries, the bundle) lives as long as the process: keep it out of the
        # cyclic GC's generations so that collections during large requests stay short.
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
            gc.unfreeze()

    app = FastAPIOffline(
        title="leadscore",
        version="1",
        summary="Calibrated lead propensity scores, funnel stage and reasons for the CRM.",
        description=(
            "Send a lead (with its account, engagement events and stage history for a pipeline bundle, or "
            "a row of the export for a flat bundle); get back calibrated probabilities, the stage, a 1–99 "
            f"score and the top reasons in business words. Authenticate with the `{settings.api_key_header}`"
            " header. Details: docs/api.md."
        ),
        lifespan=lifespan,
    )
    app.state.serve = state
    app.include_router(router)
    app.add_middleware(
        Guard,
        metrics=state.metrics,
        max_body_bytes=settings.max_body_bytes,
        read_timeout=settings.read_timeout_seconds,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.openapi = lambda: _openapi(app, state)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI, state: ServeState) -> dict[str, Any]:
    """FastAPI's schema plus the request models the scoring routes declare via ``openapi_extra``: those
    of the bundle kind being served (a pipeline bundle's until one is loaded)."""
    flat = state.scorer.model is not None and state.scorer.model.kind == "flat"
    cached = app.openapi_schema
    if cached and cached.get("x-bundle-kind") == ("flat" if flat else "pipeline"):
        return cached
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    schema["x-bundle-kind"] = "flat" if flat else "pipeline"
    comps = schema.setdefault("components", {})
    comps["securitySchemes"] = {
        "APIKeyHeader": {
            "type": "apiKey",
            "in": "header",
            "name": state.key_header,
            "description": "The API key (LEADSCORE_API_KEY on the server).",
        }
    }
    components = comps.setdefault("schemas", {})
    pairs = ((ScoreRequest, FlatRow), (BatchRequest, FlatBatch))
    for documented, served in pairs:
        model = served if flat else documented
        js = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}", mode="validation")
        for name, sub in js.pop("$defs", {}).items():
            components.setdefault(name, sub)
        # the routes' openapi_extra refers to the pipeline names; a flat bundle's models stand in for them
        components[documented.__name__] = js
    app.openapi_schema = schema
    return schema
