"""The one middleware: an unexpected error becomes a 500 that says nothing of the request, and the log
names the error's type and code location but none of its values; body limits; draining."""

from __future__ import annotations

import logging

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from leadscore.serve.metrics import make_metrics
from leadscore.serve.middleware import DRAINING, Guard


async def boom(request: Request) -> JSONResponse:
    body = await request.body()
    raise ValueError(f"cannot use {body.decode()}")  # a message quoting the request, as pydantic's do


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"n": len(await request.body())})


def client() -> TestClient:
    """A Starlette app with the middleware where the API has it (inside Starlette's error middleware)."""
    app = Starlette(
        routes=[Route("/boom", boom, methods=["POST"]), Route("/echo", echo, methods=["POST"])],
        middleware=[Middleware(Guard, metrics=make_metrics(), max_body_bytes=1024, read_timeout=5)],
    )
    return TestClient(app, raise_server_exceptions=True)


def test_an_unexpected_error_is_a_quiet_500(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="leadscore.serve"):
        r = client().post("/boom", content=b"jane.doe@example.com")
    assert r.status_code == 500 and r.json() == {"detail": "internal error"}
    assert "ValueError" in caplog.text and "boom" in caplog.text  # what and where
    assert "jane.doe" not in caplog.text and "jane.doe" not in r.text  # never the values


def test_body_limits_and_draining() -> None:
    c = client()
    assert c.post("/echo", content=b"x" * 1024).json() == {"n": 1024}
    assert c.post("/echo", content=b"x" * 1025).status_code == 413

    def chunks():  # streamed without a Content-Length
        yield b"x" * 1000
        yield b"x" * 1000

    assert c.post("/echo", content=chunks()).status_code == 413
    DRAINING.set()
    try:
        assert c.post("/echo", content=b"x").headers["connection"] == "close"
    finally:
        DRAINING.clear()
    assert "connection" not in c.post("/echo", content=b"x").headers
