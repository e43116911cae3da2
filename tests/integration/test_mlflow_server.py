"""Publishing to MLflow: a real ``mlflow server`` process on 127.0.0.1, and the local SQLite default.

The bundle is built from small synthetic feature tables through the real train/evaluate/bundle stages.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadscore.config import Params
from leadscore.models.bundle import load_bundle, run_bundle, verify_bundle
from leadscore.models.evaluate import run_evaluate
from leadscore.models.registry import flatten_metrics, flatten_params, run_publish
from leadscore.models.train import run_train
from tests.model.synthetic import synthetic_frames, tmp_params, write_processed
from tests.procs import free_port, stop_group

pytestmark = pytest.mark.slow

MODEL = "lead-propensity"
RAW_MD5 = "0123456789abcdef0123456789abcdef.dir"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Params:
    """A small pipeline run (train, evaluate, bundle) in a temp folder, with a dvc.lock beside it."""
    root = tmp_path_factory.mktemp("publish")
    params = tmp_params(
        root,
        **{"train.n_estimators": 40, "thresholds.stages": [{"name": "all", "probability": 0.0}]},
    )
    write_processed(synthetic_frames(params, n_leads=600), params.data.processed_dir)
    run_train(params)
    run_evaluate(params)
    run_bundle(params)
    # what `dvc repro` records for the raw data: the data version tag must come from here
    lock = {
        "schema": "2.0",
        "stages": {"validate": {"cmd": "leadscore validate", "deps": [{"path": "data/raw", "md5": RAW_MD5}]}},
    }
    (root / "dvc.lock").write_text(json.dumps(lock))
    return params


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server (SQLite backend, proxied artifacts) on a free loopback port."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [str(mlflow_cli), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "art")],
        stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"mlflow server exited with {proc.returncode}:\n{(root / 'server.log').read_text()}"
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server did not answer within 120 s:\n{(root / 'server.log').read_text()}"
                )
            time.sleep(0.5)
        yield url
    finally:
        # the server runs workers in its own process group (start_new_session): stop that group only
        stop_group(proc)
        log.close()


def _publish(params: Params, uri: str | None, monkeypatch: pytest.MonkeyPatch) -> dict:
    root = params.data.build_dir.parent
    monkeypatch.chdir(root)  # dvc.lock and the default ./mlflow.db, ./mlruns live here
    if uri is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    info = run_publish(params)
    assert json.loads((params.data.reports_dir / "mlflow_run.json").read_text()) == info
    return info


def test_publish_to_a_real_server(
    built: Params, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    first = _publish(built, server, monkeypatch)
    assert first["tracking_uri"] == server
    assert first["model_version"] == "1"
    client = MlflowClient(tracking_uri=server, registry_uri=server)

    run = client.get_run(first["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == first["experiment_id"]
    assert client.get_experiment(first["experiment_id"]).name == built.publish.experiment
    # params: every flattened key of params.yaml
    expected_params = flatten_params(built.model_dump(mode="json", by_alias=True))
    assert run.data.params == expected_params
    assert run.data.params["train.learning_rate"] == json.dumps(built.train.learning_rate)
    # metrics per target, the same numbers as reports/metrics.json
    metrics = json.loads((built.data.reports_dir / "metrics.json").read_text())
    assert run.data.metrics["sql.model.roc_auc"] == pytest.approx(metrics["sql"]["model"]["roc_auc"])
    assert run.data.metrics["closed_won.rule_baseline.brier"] == pytest.approx(
        metrics["closed_won"]["rule_baseline"]["brier"]
    )
    summary = json.loads((built.data.build_dir / "train" / "train_summary.json").read_text())
    assert set(run.data.metrics) == set(flatten_metrics(metrics, summary))
    assert run.data.metrics["sql.best_iteration"] == summary["targets"]["sql"]["best_iteration"]
    # tags
    manifest = verify_bundle(built.data.models_dir)
    assert run.data.tags["bundle_checksum"] == manifest["bundle_checksum"]
    assert run.data.tags["data_version"] == f"dvc:{RAW_MD5}"
    assert run.data.tags["git_commit"]  # a commit hash, or "unknown" outside a repository
    # artifacts: the bundle (verifiable as downloaded), plots, figures, reports
    top = {a.path for a in client.list_artifacts(first["run_id"])}
    assert {"bundle", "plots", "figures", "reports"} <= top
    figures = {a.path for a in client.list_artifacts(first["run_id"], "figures")}
    assert "figures/sql_roc.png" in figures
    roc_csv = {a.path for a in client.list_artifacts(first["run_id"], "plots/sql/roc")}
    assert {"plots/sql/roc/model.csv", "plots/sql/roc/rule_baseline.csv"} <= roc_csv
    got = download_artifacts(
        run_id=first["run_id"], artifact_path="bundle", dst_path=str(tmp_path / "a"), tracking_uri=server
    )
    got = Path(got)
    assert load_bundle(got).checksum == manifest["bundle_checksum"]

    # registry: the first version is challenger and champion
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == "1"
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert client.get_model_version(MODEL, "1").run_id == first["run_id"]

    # a second publish of the same bundle: a new run, but no new model version (same models, same files)
    second = _publish(built, server, monkeypatch)
    assert second["run_id"] != first["run_id"]
    assert second["model_version"] == "1" and second["registry_action"] == "unchanged"
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 1
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    champion = Path(download_artifacts(f"models:/{MODEL}@champion", dst_path=str(tmp_path / "champion")))
    assert verify_bundle(champion)["bundle_checksum"] == manifest["bundle_checksum"]


def test_publish_defaults_to_local_sqlite(
    built: Params, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    root = built.data.build_dir.parent
    shutil.rmtree(root / "mlruns", ignore_errors=True)
    (root / "mlflow.db").unlink(missing_ok=True)
    info = _publish(built, None, monkeypatch)
    assert info["tracking_uri"] == "sqlite:///mlflow.db"
    assert (root / "mlflow.db").is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    assert client.get_run(info["run_id"]).data.tags["data_version"] == f"dvc:{RAW_MD5}"
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"


def test_data_version_without_dvc_lock_hashes_the_interim_tables(built: Params, tmp_path: Path) -> None:
    from leadscore.models.registry import data_version

    params = tmp_params(tmp_path)
    assert data_version(params, tmp_path / "no.lock") == "unknown"
    params.data.interim_dir.mkdir(parents=True)
    (params.data.interim_dir / "leads.parquet").write_bytes(b"abc")
    first = data_version(params, tmp_path / "no.lock")
    assert first.startswith("sha256:")
    (params.data.interim_dir / "leads.parquet").write_bytes(b"abd")
    assert data_version(params, tmp_path / "no.lock") != first
