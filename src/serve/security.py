"""Who may call and with which model: the server's state, the API key check, the scoring dependency.

Dependencies are ``async`` (a sync dependency costs a thread hop per request) and the scoring routes take
exactly one (``Scoring``): each FastAPI dependency or declared parameter costs tens of microseconds per
request on the hot path.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError

from leadscore.serve.batching import MicroBatcher
from leadscore.serve.metrics import ServeMetrics
from leadscore.serve.payload import PayloadPolicy
from leadscore.serve.scorer import ReloadResult, Scorer, ScoringModel
from leadscore.serve.settings import ServeSettings

log = logging.getLogger("leadscore.serve")


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
        """Load + verify the bundle on a worker thread, swap it in (or refuse it), record the outcome.
        Never raises (``Scorer.reload`` turns every failure into a refusal)."""
        result = await anyio.to_thread.run_sync(self.scorer.reload)
        self.metrics.reloads.labels("ok" if result.reloaded else "refused", trigger).inc()
        if result.reloaded and result.model is not None:
            self.metrics.model_info.clear()
            self.metrics.model_info.labels(result.model.version, result.model.checksum).set(1)
        return result

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` in the background (a SIGHUP reload); its failure is logged, never lost."""
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed: %s", type(task.exception()).__name__)


@dataclass(frozen=True)
class ScoringContext:
    """The scoring routes' one dependency: the caller is authorised, this model serves the request."""

    state: ServeState
    model: ScoringModel
    explain: bool


def serve_state(request: Request) -> ServeState:
    return request.app.state.serve


def check_key(state: ServeState, given: str | None) -> None:
    """401 unless ``given`` (the key header's value) matches the configured key (constant-time)."""
    if state.key is None:
        return
    if given is None or not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), state.key):
        raise HTTPException(
            401,
            f"missing or invalid API key (header {state.key_header})",
            headers={"WWW-Authenticate": "ApiKey"},
        )


def model_of(state: ServeState) -> ScoringModel:
    """The model serving now (503 before a verified bundle is loaded; no reason given: it may name
    paths, and the log has it). Take it once per request."""
    model = state.scorer.model
    if model is None:
        raise HTTPException(503, "no verified bundle is loaded yet")
    return model


async def require_api_key(request: Request) -> None:
    """401 unless the key header matches ``LEADSCORE_API_KEY``; no-op when auth is off."""
    state = serve_state(request)
    check_key(state, request.headers.get(state.key_header))


async def current_model(request: Request) -> ScoringModel:
    return model_of(serve_state(request))


_BOOL = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


async def scoring_context(request: Request) -> ScoringContext:
    """API key (401), a verified model (503), the ``explain`` query flag (422), in that order."""
    state = serve_state(request)
    check_key(state, request.headers.get(state.key_header))
    model = model_of(state)
    raw = request.query_params.get("explain")
    explain = True if raw is None else _BOOL.get(raw.lower())
    if explain is None:
        raise RequestValidationError(
            [{"loc": ("query", "explain"), "msg": "Input should be a valid boolean", "type": "bool_parsing"}]
        )
    return ScoringContext(state, model, explain)


Authorized = Annotated[None, Depends(require_api_key)]
CurrentModel = Annotated[ScoringModel, Depends(current_model)]
Scoring = Annotated[ScoringContext, Depends(scoring_context)]
