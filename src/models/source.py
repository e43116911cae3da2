"""Where a bundle comes from: a local folder, or a registered model version in MLflow.

``fetch_bundle("models:/lead-propensity@champion", cache)`` asks the registry which version the alias
points to, downloads that version's bundle artifact into ``cache/<name>/v<version>-<checksum>/`` (once;
later calls reuse a copy that still verifies), checks every file's SHA-256 against the bundle's manifest
*and* the manifest's ``bundle_checksum`` against the one the registry recorded at publish time, and
returns the verified local folder. A local path is verified in place. Nothing here builds models: the
caller loads the folder with ``load_bundle`` (or ``serve``'s loader), which verifies again.

A version's bundle is the artifact named by its tags ``bundle_run_id`` / ``bundle_path`` (set by
``publish``; a thresholds-only update points them at the run that logged the new thresholds), else the
version's own run and ``bundle``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadscore.models.bundle import BundleError, verify_bundle

_REF = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>[0-9]+))$")


@dataclass(frozen=True)
class ResolvedBundle:
    """A verified local bundle folder and, for a registry reference, which version it is."""

    path: Path
    checksum: str
    ref: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None


def parse_ref(ref: str) -> tuple[str, str | None, str | None] | None:
    """``models:/name@alias`` → (name, alias, None); ``models:/name/3`` → (name, None, "3"); else None."""
    m = _REF.match(ref.strip())
    if m is None:
        if ref.startswith("models:/"):
            raise BundleError(
                f"cannot read model reference {ref!r}: use models:/<name>@<alias> or models:/<name>/<n>"
            )
        return None
    return m["name"], m["alias"], m["version"]


def is_registry_ref(ref: str | Path) -> bool:
    return str(ref).startswith("models:/")


def registry_version(client: Any, ref: str) -> Any | None:
    """The ModelVersion a registry reference points to, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    parsed = parse_ref(ref)
    if parsed is None:
        raise BundleError(f"{ref!r} is not a registry reference (models:/<name>@<alias>)")
    name, alias, version = parsed
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, version)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "INVALID_PARAMETER_VALUE" in str(
            exc.error_code
        ):
            return None
        raise BundleError(f"registry lookup of {ref} failed: {exc}") from exc


def bundle_location(mv: Any) -> tuple[str, str, str | None]:
    """(run id, artifact path, expected bundle checksum) of a model version's current bundle."""
    tags = dict(mv.tags or {})
    return (
        tags.get("bundle_run_id") or mv.run_id,
        tags.get("bundle_path") or "bundle",
        tags.get("bundle_checksum"),
    )


def _verified(path: Path, expected: str | None) -> dict[str, Any]:
    manifest = verify_bundle(path)
    if expected and manifest["bundle_checksum"] != expected:
        raise BundleError(
            f"bundle at {path} has checksum {manifest['bundle_checksum'][:12]}…, the registry recorded "
            f"{expected[:12]}…: refusing it"
        )
    return manifest


def fetch_bundle(ref: str | Path, cache_dir: Path, tracking_uri: str | None = None) -> ResolvedBundle:
    """A verified local bundle for ``ref`` (a folder, or ``models:/name@alias`` / ``models:/name/<n>``).

    Raises ``BundleError`` when the reference does not resolve, the download fails or a checksum differs.
    """
    ref_s = str(ref)
    if not is_registry_ref(ref_s):
        path = Path(ref_s)
        manifest = _verified(path, None)
        return ResolvedBundle(path=path, checksum=manifest["bundle_checksum"], ref=ref_s)

    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    from leadscore.models.registry import tracking_uri as default_uri

    uri = tracking_uri or default_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = registry_version(client, ref_s)
    if mv is None:
        raise BundleError(f"{ref_s} does not exist in the registry at {uri.split('@')[-1]}")
    name, alias, _ = parse_ref(ref_s)  # type: ignore[misc]
    run_id, artifact_path, expected = bundle_location(mv)
    folder = f"v{mv.version}-{(expected or run_id)[:16]}"
    target = Path(cache_dir) / re.sub(r"[^A-Za-z0-9_.-]", "_", name) / folder
    if target.is_dir():
        try:
            manifest = _verified(target, expected)
            return ResolvedBundle(target, manifest["bundle_checksum"], ref_s, name, str(mv.version), alias)
        except BundleError:
            shutil.rmtree(target)  # our own cache copy, never user data: fetch it again
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        try:
            local = Path(
                download_artifacts(
                    run_id=run_id, artifact_path=artifact_path, dst_path=str(tmp), tracking_uri=uri
                )
            )
        except Exception as exc:  # MLflow raises many types (HTTP, store, IO): all mean "not fetched"
            raise BundleError(f"cannot download the bundle of {ref_s} (version {mv.version}): {exc}") from exc
        manifest = _verified(local, expected)
        try:
            local.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            # another process (a second worker) fetched the same version meanwhile: use its copy
            manifest = _verified(target, expected)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ResolvedBundle(target, manifest["bundle_checksum"], ref_s, name, str(mv.version), alias)
