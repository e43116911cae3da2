"""Which bundle the server loads: the local folder (``LEADSCORE_BUNDLE_DIR``) or a registry version.

With ``LEADSCORE_MODEL=models:/lead-propensity@champion`` (or ``leadscore serve --model ...``) every load
asks the MLflow registry (``MLFLOW_TRACKING_URI``) which version the alias points to, downloads that
version's bundle into ``LEADSCORE_MODEL_CACHE_DIR`` and verifies every checksum (``models.source``); the
scorer then loads it as any bundle. So a reload (SIGHUP, ``POST /v1/admin/reload``, or the poll below)
picks up an alias move; a failed download or a checksum mismatch is refused and the current model keeps
serving. ``LEADSCORE_MODEL_POLL_SECONDS`` > 0 checks the alias that often and reloads when it moved.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from leadscore.models.bundle import BundleError
from leadscore.models.source import fetch_bundle, registry_version

log = logging.getLogger("leadscore.serve")


class RegistrySource:
    """Callable that resolves a ``models:/name@alias`` reference to a verified local bundle folder."""

    def __init__(self, ref: str, cache_dir: Path, tracking_uri: str | None = None) -> None:
        self.ref = ref
        self.cache_dir = Path(cache_dir)
        self.tracking_uri = tracking_uri
        #: registry version of the last bundle handed out (what is serving after a successful load)
        self.version: str | None = None

    def __call__(self) -> Path:
        resolved = fetch_bundle(self.ref, self.cache_dir, self.tracking_uri)
        self.version = resolved.version
        log.info("%s is version %s (bundle %s)", self.ref, resolved.version, resolved.checksum[:12])
        return resolved.path

    def current_version(self) -> str | None:
        """The version the alias points to now (None if it does not resolve); raises BundleError when the
        registry cannot be asked."""
        from mlflow.tracking import MlflowClient

        from leadscore.models.registry import tracking_uri

        uri = self.tracking_uri or tracking_uri()
        mv = registry_version(MlflowClient(tracking_uri=uri, registry_uri=uri), self.ref)
        return None if mv is None else str(mv.version)


def bundle_source(settings: Any) -> RegistrySource | None:
    """The registry source the settings ask for (``model``), or None to serve ``bundle_dir``."""
    ref = getattr(settings, "model", None)
    if not ref:
        return None
    return RegistrySource(ref, settings.model_cache_dir)


async def poll_alias(source: RegistrySource, seconds: float, reload: Callable[[], Awaitable[Any]]) -> None:
    """Every ``seconds``: if the alias points to another version than the one serving, ``reload()``."""
    while True:
        await asyncio.sleep(seconds)
        try:
            current = await anyio.to_thread.run_sync(source.current_version)
        except Exception as exc:  # registry unreachable: keep serving, try again next time
            log.warning("alias poll of %s failed: %s", source.ref, exc)
            continue
        if current is not None and current != source.version:
            log.info("%s moved from version %s to %s: reloading", source.ref, source.version, current)
            await reload()


__all__ = ["BundleError", "RegistrySource", "bundle_source", "poll_alias"]
