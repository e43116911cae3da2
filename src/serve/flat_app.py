"""The API for a *flat* bundle (``leadscore train-table``): one row of export columns in, a probability out.

A flat export has no events or stage history, so there are no point-in-time features, stages or
reasons; the request is the row as the export had it (its own column names, JSON scalars). The same
safety rules as the main API apply: API key, bounded body size, verified checksums, field-level 422s.
``create_app`` hands over to this app when the bundle's ``metadata.json`` says ``"kind": "flat"``.

No ``from __future__ import annotations`` here: FastAPI must see the route annotations (``Annotated``
aliases defined inside ``create_flat_app``) as objects, not strings.
"""

import contextlib
import hmac
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from leadscore.models.bundle import BundleError
from leadscore.models.flat import KIND, FlatScorer
from leadscore.serve.metrics import make_metrics
from leadscore.serve.settings import ServeSettings

Scalar = str | int | float | bool | None


def is_flat_bundle(bundle_dir: Path) -> bool:
    """True when ``bundle_dir/metadata.json`` declares a flat bundle (checksums are verified on load)."""
    try:
        return json.loads((Path(bundle_dir) / "metadata.json").read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


class FlatRow(BaseModel):
    """One lead as a row of the export: column name → value."""

    model_config = ConfigDict(extra="forbid")
    lead_id: str | None = Field(None, max_length=200, description="Echoed back; never a feature.")
    attributes: dict[str, Scalar] = Field(
        ..., max_length=2000, examples=[{"Company Size": "51-200", "Lead Source": "Webinar", "Visits": 12}]
    )

    @field_validator("attributes")
    @classmethod
    def _finite(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        for key, v in value.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"attribute {key!r} is not a finite number")
        return value


class FlatBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    leads: list[FlatRow] = Field(..., min_length=1)


def create_flat_app(settings: ServeSettings) -> FastAPI:
    """A small app around ``FlatScorer``; the bundle is verified at startup and on reload."""
    holder: dict[str, FlatScorer | str | None] = {"scorer": None, "error": None}
    metrics = make_metrics()

    def load() -> None:
        try:
            holder["scorer"], holder["error"] = FlatScorer.load(settings.bundle_dir), None
        except BundleError as exc:  # keep serving the old bundle, say why
            holder["error"] = str(exc)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(load)
        yield

    def authorised(request: Request) -> None:
        if settings.key_bytes is None:
            return
        given = request.headers.get(settings.api_key_header)
        if given is None or not hmac.compare_digest(given.encode(), settings.key_bytes):
            raise HTTPException(401, f"missing or invalid API key (header {settings.api_key_header})")

    def scorer() -> FlatScorer:
        current = holder["scorer"]
        if not isinstance(current, FlatScorer):
            raise HTTPException(503, f"no verified bundle is loaded: {holder['error']}")
        return current

    Auth = Annotated[None, Depends(authorised)]
    Current = Annotated[FlatScorer, Depends(scorer)]
    app = FastAPI(title="leadscore (flat bundle)", version="1", lifespan=lifespan)

    from leadscore.serve.app import LimitAndMeasure  # the same body limit as the main API

    app.add_middleware(LimitAndMeasure, metrics=metrics, max_body_bytes=settings.max_body_bytes)

    def result(model: FlatScorer, row: FlatRow, scored: dict[str, Any]) -> dict[str, Any]:
        return {
            "lead_id": row.lead_id,
            "probabilities": {scored["target"]: scored["probability"]},
            "model_version": model.version,
            "bundle_checksum": model.checksum,
        }

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        ok = isinstance(holder["scorer"], FlatScorer)
        return JSONResponse({"ready": ok, "error": holder["error"]}, status_code=200 if ok else 503)

    @app.get("/v1/model")
    async def model_info(_: Auth, model: Current) -> dict[str, Any]:
        return {"kind": KIND, "version": model.version, "checksum": model.checksum, **model.metadata}

    @app.post("/v1/score")
    async def score(row: FlatRow, _: Auth, model: Current) -> dict[str, Any]:
        scored = await anyio.to_thread.run_sync(model.score, [row.attributes])
        return result(model, row, scored[0])

    @app.post("/v1/score/batch")
    async def score_batch(batch: FlatBatch, _: Auth, model: Current) -> dict[str, Any]:
        if len(batch.leads) > settings.max_batch:
            raise HTTPException(413, f"at most {settings.max_batch} leads per batch")
        scored = await anyio.to_thread.run_sync(model.score, [r.attributes for r in batch.leads])
        return {"results": [result(model, r, s) for r, s in zip(batch.leads, scored, strict=True)]}

    @app.post("/v1/admin/reload")
    async def reload(_: Auth) -> JSONResponse:
        await anyio.to_thread.run_sync(load)
        ok = holder["error"] is None
        return JSONResponse({"reloaded": ok, "error": holder["error"]}, status_code=200 if ok else 409)

    return app
