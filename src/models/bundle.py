"""The scoring bundle: plain files with SHA-256 checksums in a manifest. No pickle anywhere.

Layout of ``models/`` (``params.data.models_dir``)::

    manifest.json            format, per-file sha256, bundle_checksum (files only), created_at
    metadata.json            targets (stage, horizon), model_version, data cutoff, library versions
    feature_spec.json        FeatureParams + BaselineParams + model feature order + category vocabularies
    thresholds.json          ordered stage rules resolved to probabilities (+ the goals they came from)
    input_schema.json        JSON schema of one lead's scoring payload
    metrics.json             the evaluation summary (same shape as reports/metrics.json)
    model_<target>.txt       LightGBM native text model
    calibrator_<target>.json calibrator as plain numbers

``bundle_checksum`` hashes the sorted (path, sha256) list, so it is identical whenever the files are,
whatever the wall-clock ``created_at`` says. ``load_bundle`` verifies every checksum before it builds
anything, and refuses files not in the manifest, so a half-copied or tampered bundle never serves.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from leadscore.config import BaselineParams, FeatureParams
from leadscore.features.encode import MatrixEncoder
from leadscore.features.spec import FeatureSpec
from leadscore.models.calibrate import Calibrator

FORMAT = "leadscore-bundle/1"
MANIFEST = "manifest.json"


class BundleError(RuntimeError):
    """The bundle is missing, incomplete, tampered with or of an unknown format."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bundle_checksum(files: dict[str, str]) -> str:
    """One checksum over the sorted per-file checksums (independent of created_at)."""
    text = "\n".join(f"{name}:{files[name]}" for name in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def dumps(data: Any) -> str:
    """Canonical JSON (sorted keys, fixed indentation) so equal content gives equal checksums."""
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def write_bundle(out_dir: Path, files: dict[str, str | bytes], created_at: str | None = None) -> str:
    """Write ``files`` (name -> text/bytes) plus a manifest atomically into ``out_dir``.

    The bundle is written to a sibling temp folder and swapped in, so a reader never sees half a bundle.
    Returns the bundle checksum.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        sums: dict[str, str] = {}
        for name, content in files.items():
            if "/" in name or name == MANIFEST:
                raise BundleError(f"invalid bundle file name {name!r}")
            path = tmp / name
            path.write_bytes(content.encode() if isinstance(content, str) else content)
            sums[name] = sha256_file(path)
        checksum = bundle_checksum(sums)
        manifest = {
            "format": FORMAT,
            "files": sums,
            "bundle_checksum": checksum,
            "created_at": created_at or datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (tmp / MANIFEST).write_text(dumps(manifest))
        backup = out_dir.with_name(f".{out_dir.name}-old")
        if backup.exists():
            shutil.rmtree(backup)
        if out_dir.exists():
            out_dir.rename(backup)
        tmp.rename(out_dir)
        if backup.exists():
            shutil.rmtree(backup)
        return checksum
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def verify_bundle(bundle_dir: Path) -> dict[str, Any]:
    """Check the manifest and every file's SHA-256; return the manifest or raise ``BundleError``."""
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"no {MANIFEST} in {bundle_dir}: not a leadscore bundle (run `dvc repro`)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise BundleError(f"unknown bundle format {manifest.get('format')!r} (expected {FORMAT})")
    files: dict[str, str] = manifest.get("files") or {}
    present = {p.name for p in bundle_dir.iterdir() if p.is_file()} - {MANIFEST}
    extra = sorted(present - set(files))
    if extra:
        raise BundleError(f"files not listed in the manifest: {extra}; refusing the bundle")
    for name, expected in files.items():
        path = bundle_dir / name
        if not path.is_file():
            raise BundleError(f"bundle file missing: {name}")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(f"checksum mismatch for {name}: manifest {expected[:12]}…, file {actual[:12]}…")
    if bundle_checksum(files) != manifest.get("bundle_checksum"):
        raise BundleError("bundle_checksum does not match the file checksums")
    return manifest


@dataclass
class Bundle:
    """A verified, loaded bundle: everything the server and ``leadscore score`` need."""

    path: Path
    checksum: str
    metadata: dict[str, Any]
    spec: FeatureSpec
    baseline: BaselineParams
    encoder: MatrixEncoder
    boosters: dict[str, lgb.Booster]
    calibrators: dict[str, Calibrator]
    thresholds: dict[str, Any]
    metrics: dict[str, Any]
    input_schema: dict[str, Any]
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def targets(self) -> list[str]:
        return list(self.boosters)

    @property
    def version(self) -> str:
        return str(self.metadata.get("model_version", self.checksum[:12]))

    def predict(self, matrix: np.ndarray, num_threads: int = 1) -> dict[str, np.ndarray]:
        """Calibrated probability per target for an encoded feature matrix (one thread by default:
        LightGBM's thread pool stalls on one-row predictions when the cores are busy)."""
        return {
            t: self.calibrators[t].transform(b.predict(matrix, num_threads=num_threads))
            for t, b in self.boosters.items()
        }


def _read_json(bundle_dir: Path, name: str) -> Any:
    try:
        return json.loads((bundle_dir / name).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {name}: {exc}") from exc


def load_bundle(bundle_dir: Path) -> Bundle:
    """Verify checksums, then build the models; raises ``BundleError`` and loads nothing on failure."""
    bundle_dir = Path(bundle_dir)
    manifest = verify_bundle(bundle_dir)
    try:
        metadata = _read_json(bundle_dir, "metadata.json")
        spec_json = _read_json(bundle_dir, "feature_spec.json")
        spec = FeatureSpec(FeatureParams.model_validate(spec_json["features"]))
        baseline = BaselineParams.model_validate(spec_json["baseline"])
        if list(spec.model_features) != spec_json["model_features"]:
            raise BundleError("feature order in feature_spec.json differs from this leadscore version's spec")
        encoder = MatrixEncoder(spec, spec_json["categories"])
        boosters, calibrators = {}, {}
        for target in metadata["targets"]:
            boosters[target] = lgb.Booster(model_str=(bundle_dir / f"model_{target}.txt").read_text())
            calibrators[target] = Calibrator.from_json(_read_json(bundle_dir, f"calibrator_{target}.json"))
            if boosters[target].num_feature() != len(spec.model_features):
                raise BundleError(f"model_{target}.txt expects {boosters[target].num_feature()} features")
    except BundleError:
        raise
    except (KeyError, ValueError, lgb.basic.LightGBMError) as exc:
        raise BundleError(f"bundle content is invalid: {exc}") from exc
    return Bundle(
        path=bundle_dir,
        checksum=manifest["bundle_checksum"],
        metadata=metadata,
        spec=spec,
        baseline=baseline,
        encoder=encoder,
        boosters=boosters,
        calibrators=calibrators,
        thresholds=_read_json(bundle_dir, "thresholds.json"),
        metrics=_read_json(bundle_dir, "metrics.json"),
        input_schema=_read_json(bundle_dir, "input_schema.json"),
        manifest=manifest,
    )
