"""``leadscore serve``: check the settings, then run uvicorn on the app factory with safe limits.

Settings are validated here first, so a missing API key or an unsafe host stops the command with a
readable message (exit code 2) before uvicorn starts. ``python -m leadscore.serve.main`` does the same.

Shutdown on SIGTERM, in order: ``/ready`` turns 503 and every response closes its connection for
``LEADSCORE_DRAIN_SECONDS`` (load balancers stop sending, clients reconnect elsewhere), then the server
stops accepting, answers every request it has received (up to ``LEADSCORE_GRACEFUL_SHUTDOWN_SECONDS``)
and exits 0. Limits: ``LEADSCORE_READ_TIMEOUT_SECONDS`` for a request head (and, in ``middleware``, for
each part of a body), ``LEADSCORE_MAX_CONNECTIONS`` per worker, ``LEADSCORE_KEEP_ALIVE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.supervisors import Multiprocess

from leadscore.serve.middleware import DRAINING
from leadscore.serve.settings import ServeSettings, SettingsError, load_settings

APP_FACTORY = "leadscore.serve.app:create_app"
log = logging.getLogger("leadscore.serve")


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the ``leadscore`` logger (bundle loads, refusals) on its handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["leadscore"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def head_timeout_protocol(base: type[asyncio.Protocol], seconds: float) -> type[asyncio.Protocol]:
    """``base`` (uvicorn's HTTP protocol) closing a connection whose request head does not arrive in
    ``seconds``: a new connection that sends nothing, a half-sent head, an idle keep-alive connection
    that starts a request and stalls. uvicorn itself only times out idle keep-alive connections."""

    class HeadTimeout(base):  # type: ignore[valid-type,misc]
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is None or self.cycle.response_complete:  # a head is (still) on its way
                if self._head_timer is None:
                    self._arm()
            elif self._head_timer is not None:  # the head is complete: the app has the request
                self._head_timer.cancel()
                self._head_timer = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._head_timer = asyncio.get_running_loop().call_later(seconds, self._expire)

        def _expire(self) -> None:
            self._head_timer = None
            if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
                self.transport.close()

    return HeadTimeout


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain period before its graceful shutdown (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, drain_seconds: float) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self.drain_seconds > 0 and not DRAINING.is_set():
            DRAINING.set()
            logging.getLogger("uvicorn.error").info("SIGTERM: draining for %g s", self.drain_seconds)
            timer = threading.Timer(self.drain_seconds, super().handle_exit, (sig, frame))
            timer.daemon = True
            timer.start()
            return
        super().handle_exit(sig, frame)


def uvicorn_config(settings: ServeSettings) -> uvicorn.Config:
    """The uvicorn configuration of ``settings`` (the app factory, limits, timeouts, logging)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # uvicorn without httptools
        from uvicorn.protocols.http.h11_impl import H11Protocol as base  # type: ignore[assignment]
    return uvicorn.Config(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http=head_timeout_protocol(base, settings.read_timeout_seconds),
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        access_log=settings.access_log,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=int(max(1, settings.keep_alive_seconds)),
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        server_header=False,
    )


def _exit_zero(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run_server(host: str | None = None, port: int | None = None) -> None:
    """Serve the API with settings from ``LEADSCORE_*`` (``host``/``port`` override them)."""
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"leadscore serve: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # Workers re-read the environment in their own process: pass the overrides on.
    for name, value in overrides.items():
        os.environ[f"LEADSCORE_{name.upper()}"] = str(value)
    # uvicorn re-raises the signal it stopped on with the handler installed before it; with this one the
    # process then exits 0 instead of -15.
    signal.signal(signal.SIGTERM, _exit_zero)
    config = uvicorn_config(settings)
    server = DrainingServer(config, settings.drain_seconds)
    if config.workers > 1:
        sock = config.bind_socket()
        Multiprocess(config, target=server.run, sockets=[sock]).run()
    else:
        server.run()


if __name__ == "__main__":
    run_server()
