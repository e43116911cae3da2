"""The scoring bundle: plain files with SHA-256 checksums in a manifest. No pickle anywhere.

Layout of ``models/`` (``params.data.models_dir``)::

    manifest.json            format, per-file sha256, bundle_checksum (files only), created_at when known
    metadata.json            targets (stage, horizon), model_version, data cutoff, library versions
    feature_spec.json        FeatureParams + BaselineParams + model feature order + category vocabularies
    thresholds.json          ordered stage rules resolved to probabilities (+ the goals they came from)
    input_schema.json        JSON schema of one lead's scoring payload
    metrics.json             the evaluation summary (same shape as reports/metrics.json)
    model_<target>.txt       LightGBM native text model
    calibrator_<target>.json calibrator as plain numbers

``bundle_checksum`` hashes the sorted (path, sha256) list, so it is identical whenever the files are,
whatever ``created_at`` says. ``created_at`` is written only when given (or from ``SOURCE_DATE_EPOCH``, the
reproducible-builds convention), so rerunning the pipeline gives a byte-identical ``models/`` folder and
DVC sees no change; the wall-clock time of a training run is in its MLflow run.
``load_bundle`` verifies every checksum before it builds
anything, and refuses files not in the manifest, so a half-copied or tampered bundle never serves.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from leadscore.config import BaselineParams, FeatureParams, Params
from leadscore.data.contract import STAGE_RANK
from leadscore.features.encode import MatrixEncoder
from leadscore.features.spec import FeatureSpec
from leadscore.models.calibrate import Calibrator
from leadscore.models.chain import SQL_RANK

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
        manifest: dict[str, Any] = {"format": FORMAT, "files": sums, "bundle_checksum": checksum}
        if created_at is None and os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
            stamp = datetime.fromtimestamp(int(os.environ["SOURCE_DATE_EPOCH"]), UTC)
            created_at = stamp.isoformat(timespec="seconds")
        if created_at is not None:
            manifest["created_at"] = created_at
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


def _plain_name(name: object) -> bool:
    """A manifest entry must be a plain file name inside the bundle folder: no folders, no ``..``, no
    absolute paths, no hidden or control characters."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 255
        and name not in (".", "..", MANIFEST)
        and not name.startswith(".")
        and not any(c in name for c in "/\\:\0")
        and name.isprintable()
    )


def _inside(bundle_dir: Path, name: str) -> Path:
    """``bundle_dir / name`` when it is a regular file (not a symlink) resolving inside the folder."""
    path = bundle_dir / name
    if path.is_symlink():
        raise BundleError(f"bundle file {name} is a symbolic link; refusing the bundle")
    if not path.is_file():
        raise BundleError(f"bundle file missing: {name}")
    if path.resolve().parent != bundle_dir.resolve():
        raise BundleError(f"bundle file {name} resolves outside the bundle folder; refusing the bundle")
    return path


def verify_bundle(bundle_dir: Path) -> dict[str, Any]:
    """Check the manifest and every file's SHA-256; return the manifest or raise ``BundleError``.

    The manifest must be UTF-8 JSON of the bundle format whose ``files`` map plain file names (inside the
    folder: no paths, no symlinks) to SHA-256 digests; no other file may sit in the folder.
    """
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / MANIFEST
    if manifest_path.is_symlink():
        raise BundleError(f"{MANIFEST} is a symbolic link; refusing the bundle")
    if not manifest_path.is_file():
        raise BundleError(f"no {MANIFEST} in {bundle_dir}: not a leadscore bundle (run `dvc repro`)")
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BundleError(f"{MANIFEST} is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{MANIFEST} must be a JSON object")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"unknown bundle format {str(manifest.get('format'))[:40]!r} (expected {FORMAT})")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{MANIFEST} `files` must map file names to SHA-256 digests")
    for name, digest in files.items():
        if not _plain_name(name):
            raise BundleError(f"manifest entry {str(name)[:80]!r} is not a plain file name in the bundle")
        if not (
            isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
        ):
            raise BundleError(f"manifest checksum of {name} is not a SHA-256 hex digest")
    for name, expected in files.items():
        actual = sha256_file(_inside(bundle_dir, name))
        if actual != expected:
            raise BundleError(f"checksum mismatch for {name}: manifest {expected[:12]}…, file {actual[:12]}…")
    present = {p.name for p in bundle_dir.iterdir()} - {MANIFEST}
    extra = sorted(present - set(files))
    if extra:
        raise BundleError(f"files not listed in the manifest: {extra[:10]}; refusing the bundle")
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
    #: per target: feature -> +1/-1, the direction in which its missing value may be a reason (measured
    #: on the training slice); None for bundles built before it existed (missing values then count as any)
    informative_missing: dict[str, dict[str, int]] | None = None

    @property
    def targets(self) -> list[str]:
        return list(self.boosters)

    @property
    def version(self) -> str:
        return str(self.metadata.get("model_version", self.checksum[:12]))

    def missing_map(self, target: str) -> dict[str, int] | None:
        """``informative_missing`` of one target (None: a bundle from before the map existed)."""
        return None if self.informative_missing is None else self.informative_missing.get(target, {})

    def predict(self, matrix: np.ndarray, num_threads: int = 1) -> dict[str, np.ndarray]:
        """Calibrated probability per target for an encoded feature matrix (one thread by default:
        LightGBM's thread pool stalls on one-row predictions when the cores are busy)."""
        return {
            t: self.calibrators[t].transform(b.predict(matrix, num_threads=num_threads))
            for t, b in self.boosters.items()
        }


def read_json(bundle_dir: Path, name: str, kind: type = dict) -> Any:
    """A verified bundle file's JSON, which must be a ``kind`` (an object by default)."""
    try:
        data = json.loads((bundle_dir / name).read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise BundleError(f"cannot read {name}: {exc}") from exc
    if not isinstance(data, kind):
        raise BundleError(f"{name} must be a JSON {'object' if kind is dict else kind.__name__}")
    return data


def load_bundle(bundle_dir: Path) -> Bundle:
    """Verify checksums, then build the models; raises ``BundleError`` and loads nothing on failure."""
    bundle_dir = Path(bundle_dir)
    manifest = verify_bundle(bundle_dir)
    try:
        metadata = read_json(bundle_dir, "metadata.json")
        spec_json = read_json(bundle_dir, "feature_spec.json")
        spec = FeatureSpec(FeatureParams.model_validate(spec_json["features"]))
        baseline = BaselineParams.model_validate(spec_json["baseline"])
        if list(spec.model_features) != spec_json["model_features"]:
            raise BundleError("feature order in feature_spec.json differs from this leadscore version's spec")
        encoder = MatrixEncoder(spec, spec_json["categories"])
        boosters, calibrators = {}, {}
        for target in metadata["targets"]:
            if not isinstance(target, str) or not _plain_name(f"model_{target}.txt"):
                raise BundleError(f"metadata.json target {str(target)[:40]!r} is not a plain name")
            boosters[target] = lgb.Booster(model_str=(bundle_dir / f"model_{target}.txt").read_text("utf-8"))
            calibrators[target] = Calibrator.from_json(read_json(bundle_dir, f"calibrator_{target}.json"))
            if boosters[target].num_feature() != len(spec.model_features):
                raise BundleError(f"model_{target}.txt expects {boosters[target].num_feature()} features")
        telling = metadata.get("informative_missing")
        if telling is not None and not (
            isinstance(telling, dict)
            and all(isinstance(m, dict) and all(v in (1, -1) for v in m.values()) for m in telling.values())
        ):
            raise BundleError("metadata.json `informative_missing` must map targets to {feature: 1 or -1}")
    except BundleError:
        raise
    except (OSError, KeyError, ValueError, TypeError, AttributeError, lgb.basic.LightGBMError) as exc:
        raise BundleError(f"bundle content is invalid: {type(exc).__name__}: {exc}") from exc
    return Bundle(
        path=bundle_dir,
        checksum=manifest["bundle_checksum"],
        metadata=metadata,
        spec=spec,
        baseline=baseline,
        encoder=encoder,
        boosters=boosters,
        calibrators=calibrators,
        thresholds=read_json(bundle_dir, "thresholds.json"),
        metrics=read_json(bundle_dir, "metrics.json"),
        input_schema=read_json(bundle_dir, "input_schema.json"),
        manifest=manifest,
        informative_missing=telling,
    )


# --- assembling the bundle from the pipeline's outputs (DVC stage ``bundle``) --------------------------


def input_schema() -> dict[str, Any]:
    """JSON schema of one lead's scoring payload, derived from the data contract (``data.contract``).

    A lead, its account, its events and its stage history, with the contract's column names. The
    serving layer may replace this function's result with its request model's schema; the bundle only
    needs a JSON document here.
    """
    from leadscore.data.contract import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, STAGES

    number = {"type": ["number", "null"]}
    when = {"type": "string", "format": "date-time"}

    def text(nullable: bool = True) -> dict[str, Any]:
        return {"type": ["string", "null"] if nullable else "string"}

    def columns(table: str, drop: tuple[str, ...], special: dict[str, dict[str, Any]]) -> dict[str, Any]:
        names = [c for c in (*REQUIRED_COLUMNS[table], *OPTIONAL_COLUMNS[table]) if c not in drop]
        return {c: special.get(c, text()) for c in names}

    lead_props = columns("leads", (), {"lead_id": text(False), "created_at": when})
    account_props = columns(
        "accounts", (), {"employees": number, "annual_revenue": number, "tech_stack": text()}
    )
    event_props = columns("events", ("lead_id",), {"ts": when, "event_type": text(False)})
    stage_props = columns("stage_history", ("lead_id",), {"ts": when, "stage": {"enum": list(STAGES)}})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "LeadPayload",
        "description": "One lead to score: the lead, its account, its events and stage history so far.",
        "type": "object",
        "properties": {
            "as_of": {**when, "description": "score as of this time (default: now, UTC)"},
            "lead": {
                "type": "object",
                "properties": lead_props,
                "required": ["lead_id", "created_at"],
            },
            "account": {"type": ["object", "null"], "properties": account_props},
            "events": {
                "type": "array",
                "items": {"type": "object", "properties": event_props, "required": ["ts", "event_type"]},
            },
            "stage_history": {
                "type": "array",
                "items": {"type": "object", "properties": stage_props, "required": ["stage", "ts"]},
            },
        },
        "required": ["lead"],
    }


def resolve_fixed_thresholds(params: Params) -> dict[str, Any]:
    """Threshold table straight from ``params.thresholds`` when every rule has a fixed ``probability``
    (used when the ``thresholds`` stage has not written ``build/thresholds.json``)."""
    goals = [rule.name for rule in params.thresholds.stages if rule.probability is None]
    if goals:
        raise ValueError(
            f"stage rules {goals} are set by a goal, which needs the thresholds stage: run "
            "`leadscore thresholds` (or `dvc repro`) to write build/thresholds.json first"
        )
    return {
        "target": params.thresholds.target,
        "stages": [{"name": r.name, "probability": r.probability} for r in params.thresholds.stages],
        "source": "params",
    }


def _require(path: Path, stage: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `leadscore {stage}` (or `dvc repro`) first")
    return path


def model_version(files: dict[str, str | bytes]) -> str:
    """First 12 hex digits of a SHA-256 over the model and calibrator files (name and content)."""
    h = hashlib.sha256()
    for name in sorted(files):
        if name.startswith(("model_", "calibrator_")):
            content = files[name]
            h.update(name.encode() + b"\0")
            h.update(content.encode() if isinstance(content, str) else content)
            h.update(b"\0")
    return h.hexdigest()[:12]


def library_versions() -> dict[str, str]:
    """Versions of the libraries a bundle's numbers depend on."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("leadscore")
    except PackageNotFoundError:
        own = "unknown"
    return {
        "leadscore": own,
        "lightgbm": lgb.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def bundle_files(params: Params) -> dict[str, str | bytes]:
    """Every bundle file's content, read from build/train, build/thresholds.json and the reports.

    Pure apart from reading those inputs: no wall-clock time, so equal inputs give equal checksums.
    """
    from leadscore.models.train import chain_upper, train_dir

    src = train_dir(params)
    targets = list(params.snapshots.targets)
    files: dict[str, str | bytes] = {}
    for t in targets:
        files[f"model_{t}.txt"] = _require(src / f"model_{t}.txt", "train").read_bytes()
        files[f"calibrator_{t}.json"] = _require(src / f"calibrator_{t}.json", "train").read_bytes()
    categories = json.loads(_require(src / "categories.json", "train").read_text())
    summary = json.loads(_require(src / "train_summary.json", "train").read_text())
    spec = FeatureSpec(params.features)
    files["feature_spec.json"] = dumps(
        {
            "features": params.features.model_dump(mode="json"),
            "baseline": params.baseline.model_dump(mode="json"),
            "model_features": list(spec.model_features),
            "categorical": list(spec.categorical),
            "categories": categories,
        }
    )
    thresholds = params.data.build_dir / "thresholds.json"
    files["thresholds.json"] = (
        thresholds.read_bytes() if thresholds.is_file() else dumps(resolve_fixed_thresholds(params))
    )
    files["input_schema.json"] = dumps(input_schema())
    files["metrics.json"] = _require(params.data.reports_dir / "metrics.json", "evaluate").read_bytes()
    upper = chain_upper(params.snapshots.targets)
    capped = [
        t
        for t, tp in params.snapshots.targets.items()
        if upper is not None and t != upper and STAGE_RANK.get(tp.stage, 0) > SQL_RANK
    ]
    files["metadata.json"] = dumps(
        {
            "targets": targets,
            "target_info": {
                t: {"stage": tp.stage, "horizon_days": tp.horizon_days}
                for t, tp in params.snapshots.targets.items()
            },
            # P(lower) is capped at P(upper) for leads before SQL (see leadscore.models.chain)
            "chain": {"upper": upper, "capped": capped},
            "model_version": model_version(files),
            "data_cutoff": summary["data_cutoff"],
            "versions": library_versions(),
            "rows": {
                t: {s: summary["targets"][t][s]["rows"] for s in ("train", "calibration", "test")}
                for t in targets
            },
            # per target: features whose missing value may be a reason, and in which direction
            "informative_missing": {t: summary["targets"][t].get("informative_missing", {}) for t in targets},
        }
    )
    return files


def run_bundle(params: Params) -> dict[str, Any]:
    """DVC stage ``bundle``: write the checksummed bundle to ``params.data.models_dir`` and load it back
    once (so a bundle that cannot serve fails here, not in production)."""
    files = bundle_files(params)
    checksum = write_bundle(params.data.models_dir, files)
    bundle = load_bundle(params.data.models_dir)
    return {"bundle_checksum": checksum, "model_version": bundle.version, "files": sorted(files)}
