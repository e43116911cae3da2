"""Server settings from the environment (``LEADSCORE_*``), checked once at startup.

Unsafe combinations fail fast with a message that says what to set, e.g. an API on a public interface
without a key. Nothing here reads the bundle: settings are valid or not on their own.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_KEY_LENGTH = 16
_LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a DNS name or 0.0.0.0: may be reachable from the network


class SettingsError(ValueError):
    """The environment describes an invalid or unsafe server; the message says what to change."""


class ServeSettings(BaseSettings):
    """Every knob of ``leadscore serve``; each field is read from ``LEADSCORE_<FIELD>`` (upper case)."""

    model_config = SettingsConfigDict(env_prefix="LEADSCORE_", extra="ignore", frozen=True)

    bundle_dir: Path = Path("models")
    #: Serve a registry version instead of ``bundle_dir``: ``models:/<name>@<alias>`` (or ``/<version>``);
    #: downloaded from MLflow (``MLFLOW_TRACKING_URI``) and verified on every load (``serve.source``).
    model: str | None = None
    model_cache_dir: Path = Path(".cache/leadscore/bundles")
    #: With ``model``: check the alias this often (seconds) and reload when it moved; 0: only on SIGHUP or
    #: POST /v1/admin/reload.
    model_poll_seconds: float = Field(0, ge=0)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)

    api_key: SecretStr | None = None
    api_key_header: str = "X-API-Key"
    auth_disabled: bool = False
    allow_insecure_public: bool = False

    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_batch: int = Field(1000, ge=1)
    max_events_per_lead: int = Field(5000, ge=1)
    max_stage_rows_per_lead: int = Field(500, ge=1)
    unknown_event_types: Literal["reject", "ignore"] = "ignore"
    #: When ``as_of`` is omitted it is "now"; timestamps up to this many seconds later are accepted (clock
    #: skew between the CRM and this server) but, being at or after ``as_of``, never counted.
    clock_skew_seconds: int = Field(300, ge=0)
    reasons_per_lead: int = Field(3, ge=0, le=20)
    #: Batch bodies of at least this many bytes are decoded and scored on a worker thread so one large
    #: batch does not hold up health checks and single-lead calls; smaller ones run on the event loop.
    offload_min_bytes: int = Field(65_536, ge=0)
    #: Score concurrent single-lead requests together (one feature build per event-loop turn); see
    #: ``leadscore.serve.batching``. Results are identical either way.
    micro_batching: bool = True
    #: Threads for one batch's trees (compiled or LightGBM) and SHAP; single rows always use one. Two
    #: nearly halve a batch's predict time on a 2-core machine (benchmarks/serve_bench.py); with several
    #: workers, lower it.
    predict_threads: int = Field(default_factory=lambda: min(2, os.cpu_count() or 1), ge=1, le=64)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    #: uvicorn's per-request access log (request counts and latency are in /metrics either way).
    access_log: bool = False
    #: On SIGTERM the server first drains for this long: ``/ready`` answers 503 (load balancers stop
    #: sending), requests are still served and every response closes its connection.
    drain_seconds: float = Field(3.0, ge=0, le=300)
    #: Then it stops accepting; requests already received get this long to finish.
    graceful_shutdown_seconds: int = Field(30, ge=0)
    #: A client must send its request head, and each part of its body, within this many seconds, or the
    #: connection is closed (head) / answered 408 (body): slow or half-sent requests cannot pile up.
    read_timeout_seconds: float = Field(10.0, gt=0, le=600)
    #: Open connections per worker; beyond it new requests get 503 at once (uvicorn's limit_concurrency).
    max_connections: int = Field(512, ge=1)
    #: An idle keep-alive connection is closed after this many seconds.
    keep_alive_seconds: float = Field(5.0, gt=0, le=600)

    @model_validator(mode="after")
    def _safe(self) -> ServeSettings:
        key = self.api_key.get_secret_value() if self.api_key is not None else ""
        if not self.auth_disabled:
            if not key:
                raise ValueError(
                    "LEADSCORE_API_KEY is not set: the scoring API requires a key (at least "
                    f"{MIN_KEY_LENGTH} characters, e.g. from "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)."
                    " For local use only you may set LEADSCORE_AUTH_DISABLED=true instead."
                )
            if len(key) < MIN_KEY_LENGTH:
                raise ValueError(
                    f"LEADSCORE_API_KEY is {len(key)} characters long; use at least {MIN_KEY_LENGTH}."
                )
        elif not is_loopback(self.host) and not self.allow_insecure_public:
            raise ValueError(
                f"authentication is disabled (LEADSCORE_AUTH_DISABLED=true) but the server would listen on "
                f"{self.host!r}, which other machines can reach. Bind to 127.0.0.1, set LEADSCORE_API_KEY, "
                "or, if you really mean it, LEADSCORE_ALLOW_INSECURE_PUBLIC=true."
            )
        if not self.api_key_header or any(c.isspace() for c in self.api_key_header):
            raise ValueError(f"LEADSCORE_API_KEY_HEADER {self.api_key_header!r} is not a header name")
        return self

    @property
    def key_bytes(self) -> bytes | None:
        """The API key as bytes for a constant-time comparison (None when auth is disabled)."""
        if self.auth_disabled or self.api_key is None:
            return None
        return self.api_key.get_secret_value().encode()


def load_settings(**overrides: object) -> ServeSettings:
    """Settings from the environment plus ``overrides``; raises ``SettingsError`` with a readable message."""
    try:
        return ServeSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"LEADSCORE_{field.upper()}: {msg}" if field else msg)
        raise SettingsError("invalid server settings:\n  " + "\n  ".join(lines)) from None
