"""Publish a pipeline run to MLflow and register its bundle as a model version.

One MLflow run per ``leadscore publish`` (DVC stage ``publish``) in experiment ``params.publish.experiment``:

* params: every key of ``params.yaml`` (validated, with defaults), flattened to dotted names
  (``train.learning_rate``); lists and rule tables as JSON text;
* metrics: ``<target>.<series>.<metric>`` for series model / rule_baseline / oracle
  (``sql.model.roc_auc``), plus ``<target>.n_test``, ``<target>.base_rate``,
  ``<target>.chain_capped_share`` and ``<target>.best_iteration``;
* artifacts: ``bundle/`` (the scoring bundle exactly as in ``models/``, manifest included, so a
  downloaded copy verifies with ``load_bundle``), ``plots/`` (CSVs), ``figures/`` (PNGs), ``reports/``
  (metrics.json, train_summary.json, explain.html and explain/ when present);
* tags: ``git_commit``, ``data_version`` (the raw data's md5 from ``dvc.lock``, else a SHA-256 over the
  interim tables), ``bundle_checksum``, ``bundle_version``.

Registry: a new version of ``params.publish.registered_model`` whose source is the run's ``bundle``
artifact (``runs:/<run_id>/bundle``). MLflow 3's ``mlflow.register_model`` insists on an MLmodel file or a
logged model under that path, and the bundle is deliberately a plain, pickle-free folder, so the version
is created with ``MlflowClient.create_model_version`` instead. The new version gets alias ``challenger``;
it also becomes ``champion`` when the registered model has no champion yet (the first version).
A bundle whose models equal an existing version's (a thresholds-only change) is not a new version: the
existing version's bundle pointer moves to the new run and the change is recorded (``_register``).
When ``reports/compare.json`` judged this bundle, its gate result is stored on the version. Promotion
and rollback (``leadscore promote`` / ``rollback`` / ``models``) live in ``leadscore.models.promotion``.

Tracking store: ``MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db`` (in the working directory).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from leadscore.config import Params

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
METRIC_SERIES = ("model", "rule_baseline", "oracle")
TARGET_SCALARS = ("n_test", "base_rate", "chain_capped_share")


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` or the local SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def redact_uri(uri: str) -> str:
    """The URI without user:password (what may be written to reports)."""
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def flatten_params(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params as ``{"section.key": "value"}``; lists and None as JSON text, dicts recursed."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, f"{name}."))
        elif isinstance(value, str):
            out[name] = value
        else:
            out[name] = json.dumps(value, sort_keys=True)
    return out


def flatten_metrics(metrics: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> dict[str, float]:
    """``reports/metrics.json`` (+ the train summary) as ``{"sql.model.roc_auc": 0.8, ...}``.

    Segment figures stay in the metrics.json artifact (their values, e.g. ``5000+``, are not valid MLflow
    metric names). Missing values (None / NaN) are left out.
    """
    out: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)

    for target, entry in metrics.items():
        for series in METRIC_SERIES:
            for key, value in (entry.get(series) or {}).items():
                put(f"{target}.{series}.{key}", value)
        for key in TARGET_SCALARS:
            put(f"{target}.{key}", entry.get(key))
    for target, entry in ((summary or {}).get("targets") or {}).items():
        put(f"{target}.best_iteration", entry.get("best_iteration"))
    return out


def git_commit(cwd: Path | None = None) -> str:
    """``git rev-parse HEAD`` of the working directory, or ``"unknown"`` outside a repository."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else "unknown"


def _lock_md5(lock: Mapping[str, Any], raw_dir: Path, lock_dir: Path) -> str | None:
    """The md5 DVC recorded for the raw data folder (validate's dep, or generate's out); lock paths are
    relative to the folder of dvc.lock."""
    stages = lock.get("stages") or {}
    raw = raw_dir.resolve()
    for stage, section in (("validate", "deps"), ("generate", "outs")):
        for entry in (stages.get(stage) or {}).get(section) or []:
            if entry.get("md5") and (lock_dir / str(entry.get("path", ""))).resolve() == raw:
                return str(entry["md5"])
    return None


def data_version(params: Params, lock_path: Path = Path("dvc.lock")) -> str:
    """Which data the run learned from: ``dvc:<md5>`` of data/raw from ``dvc.lock`` when DVC ran the
    pipeline, else ``sha256:<hash>`` over the interim tables' bytes, else ``"unknown"``."""
    if lock_path.is_file():
        try:
            lock = yaml.safe_load(lock_path.read_text()) or {}
        except yaml.YAMLError:
            lock = {}
        md5 = _lock_md5(lock, params.data.source, lock_path.resolve().parent)
        if md5:
            return f"dvc:{md5}"
    interim = params.data.interim_dir
    files = sorted(p for p in interim.glob("*.parquet") if p.is_file()) if interim.is_dir() else []
    if not files:
        return "unknown"
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _register(
    client: Any,
    name: str,
    run_id: str,
    bundle_version: str,
    checksum: str,
    thresholds: Mapping[str, Any] | None = None,
) -> tuple[str, list[str], str]:
    """Register the run's bundle under ``name``; returns (version, aliases, action).

    action ``registered``: a new model version (alias ``challenger``; also ``champion`` when there is none
    yet). A bundle whose model files equal an existing version's (same ``bundle_version``, the hash of the
    models and calibrators) is *not* a new model: a changed bundle (thresholds only) updates that version's
    bundle pointer (tags ``bundle_run_id`` / ``bundle_checksum``) and is recorded in its
    ``thresholds_history`` (action ``thresholds_updated``); an identical one changes nothing
    (``unchanged``).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    from leadscore.models import promotion

    try:
        client.create_registered_model(
            name, description="Lead propensity scoring bundle (leadscore): LightGBM + calibrators."
        )
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    same = [
        mv
        for mv in client.search_model_versions(f"name='{name}'")
        if (mv.tags or {}).get("bundle_version") == bundle_version
    ]
    if same:
        mv = max(same, key=lambda v: int(v.version))
        aliases = sorted(
            a
            for a, v in (client.get_registered_model(name).aliases or {}).items()
            if str(v) == str(mv.version)
        )
        if (mv.tags or {}).get("bundle_checksum") == checksum:
            return str(mv.version), aliases, "unchanged"
        promotion.record_thresholds_update(client, name, str(mv.version), run_id, checksum, thresholds)
        return str(mv.version), aliases, "thresholds_updated"
    version = client.create_model_version(
        name,
        source=f"runs:/{run_id}/bundle",
        run_id=run_id,
        tags={
            "bundle_version": bundle_version,
            "bundle_checksum": checksum,
            "bundle_run_id": run_id,
            "bundle_path": "bundle",
        },
    )
    aliases = ["challenger"]
    client.set_registered_model_alias(name, "challenger", version.version)
    if "champion" not in (client.get_registered_model(name).aliases or {}):
        promotion.move_champion(
            client, name, str(version.version), by="publish", reason="first version: no champion yet"
        )
        aliases.append("champion")
    return str(version.version), aliases, "registered"


def _gate_of(path: Path, checksum: str) -> dict[str, Any] | None:
    """``reports/compare.json`` when it judged this very bundle (else None: a stale comparison)."""
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if (result.get("challenger") or {}).get("bundle_checksum") != checksum:
        return None
    return result


def publish(params: Params, uri: str, lock_path: Path = Path("dvc.lock")) -> dict[str, Any]:
    """Log one run (params, metrics, artifacts, tags) to the store at ``uri`` and register the bundle."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from leadscore.models.bundle import verify_bundle
    from leadscore.models.train import train_dir

    manifest = verify_bundle(params.data.models_dir)  # never publish a bundle that would not load
    metadata = json.loads((params.data.models_dir / "metadata.json").read_text())
    reports = params.data.reports_dir
    metrics_path = reports / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path} not found: run `leadscore evaluate` (or `dvc repro`) first")
    metrics = json.loads(metrics_path.read_text())
    summary_path = train_dir(params) / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(params.publish.experiment)
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment(params.publish.experiment)
    )
    bundle_version = str(metadata.get("model_version", manifest["bundle_checksum"][:12]))
    tags = {
        "git_commit": git_commit(),
        "data_version": data_version(params, lock_path),
        "bundle_checksum": manifest["bundle_checksum"],
        "bundle_version": bundle_version,
        "targets": ",".join(metadata.get("targets", [])),
    }
    run = client.create_run(experiment_id, tags=tags, run_name=f"leadscore-{bundle_version}")
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        flat = flatten_params(params.model_dump(mode="json", by_alias=True))
        for chunk in _chunks([Param(k, v) for k, v in sorted(flat.items())], 100):
            client.log_batch(run_id, params=chunk)
        values = flatten_metrics(metrics, summary)
        for chunk in _chunks([Metric(k, v, now, 0) for k, v in sorted(values.items())], 1000):
            client.log_batch(run_id, metrics=chunk)
        client.log_artifacts(run_id, str(params.data.models_dir), "bundle")
        for folder, artifact_path in (
            ("plots", "plots"),
            ("figures", "figures"),
            ("explain", "reports/explain"),
        ):
            if (reports / folder).is_dir():
                client.log_artifacts(run_id, str(reports / folder), artifact_path)
        for path in (metrics_path, summary_path, reports / "explain.html"):
            if path.is_file():
                client.log_artifact(run_id, str(path), "reports")
        thresholds = json.loads((params.data.models_dir / "thresholds.json").read_text())
        version, aliases, action = _register(
            client, params.publish.registered_model, run_id, bundle_version, manifest["bundle_checksum"],
            thresholds,
        )  # fmt: skip
        client.log_batch(run_id, tags=[RunTag("registered_model_version", version)])
        gate = _gate_of(reports / "compare.json", manifest["bundle_checksum"])
        if gate is not None and action == "registered":  # a thresholds update keeps its model's gate
            client.log_artifact(run_id, str(reports / "compare.json"), "reports")
            from leadscore.models.promotion import record_gate

            record_gate(client, params.publish.registered_model, version, gate)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return {
        "run_id": run_id,
        "experiment_id": str(experiment_id),
        "model_version": version,
        "registered_model": params.publish.registered_model,
        "aliases": aliases,
        "registry_action": action,
        "bundle_checksum": manifest["bundle_checksum"],
        "tracking_uri": redact_uri(uri),
    }


def run_publish(params: Params) -> dict[str, Any]:
    """DVC stage ``publish``: log to MLflow (``MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``), register
    the bundle, write ``reports/mlflow_run.json``."""
    info = publish(params, tracking_uri())
    params.data.reports_dir.mkdir(parents=True, exist_ok=True)
    (params.data.reports_dir / "mlflow_run.json").write_text(
        json.dumps(info, indent=2, sort_keys=True) + "\n"
    )
    return info
