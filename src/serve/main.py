"""``leadscore serve``: check the settings, then run uvicorn on the app factory.

Settings are validated here first, so a missing API key or an unsafe host stops the command with a
readable message (exit code 2) before uvicorn starts. ``python -m leadscore.serve.main`` does the same.
"""

from __future__ import annotations

import copy
import os
import signal
import sys
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from leadscore.serve.settings import SettingsError, load_settings

APP_FACTORY = "leadscore.serve.app:create_app"


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the ``leadscore`` logger (bundle loads, refusals) on its handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["leadscore"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


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
    # uvicorn shuts down gracefully on SIGTERM (in-flight requests finish), then re-raises the signal with
    # the handler that was installed before it; with this one the process then exits 0 instead of -15.
    signal.signal(signal.SIGTERM, _exit_zero)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        access_log=settings.access_log,
        # uvicorn's own default: let in-flight requests finish on SIGTERM, but not forever
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        server_header=False,
    )


if __name__ == "__main__":
    run_server()
