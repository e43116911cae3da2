"""The scoring bundle: assembled from a (small, synthetic) training run, verified on load, refused when
tampered with, and predicting exactly what training predicted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.config import Params
from leadscore.data.contract import REQUIRED_COLUMNS, STAGE_RANK
from leadscore.models.bundle import (
    MANIFEST,
    BundleError,
    bundle_files,
    input_schema,
    load_bundle,
    model_version,
    resolve_fixed_thresholds,
    run_bundle,
    verify_bundle,
    write_bundle,
)
from leadscore.models.evaluate import run_evaluate
from leadscore.models.train import run_train
from tests.model.synthetic import synthetic_frames, tmp_params, write_processed

FIXED_STAGES = [
    {"name": "sales_ready", "probability": 0.5},
    {"name": "mql", "probability": 0.2},
    {"name": "nurture", "probability": 0.0},
]


def _params(root: Path) -> Params:
    return tmp_params(root, **{"train.n_estimators": 60, "thresholds.stages": FIXED_STAGES})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Params:
    """Synthetic feature tables -> train -> evaluate -> bundle, in a temp folder."""
    params = _params(tmp_path_factory.mktemp("bundle"))
    write_processed(synthetic_frames(params, n_leads=800), params.data.processed_dir)
    run_train(params)
    run_evaluate(params)
    run_bundle(params)
    return params


@pytest.fixture
def copy(built: Params, tmp_path: Path) -> Path:
    """A private copy of the built bundle to damage."""
    target = tmp_path / "models"
    shutil.copytree(built.data.models_dir, target)
    return target


def _rows(params: Params, target: str) -> pd.DataFrame:
    """The calibration + test feature rows in the order train wrote their predictions."""
    parts = [
        pd.read_parquet(params.data.processed_dir / target / f"{s}.parquet") for s in ("calibration", "test")
    ]
    return pd.concat(parts, ignore_index=True)


def test_bundle_has_exactly_the_documented_files(built: Params) -> None:
    names = {p.name for p in built.data.models_dir.iterdir()}
    targets = list(built.snapshots.targets)
    expected = {
        MANIFEST,
        "metadata.json",
        "feature_spec.json",
        "thresholds.json",
        "input_schema.json",
        "metrics.json",
        *(f"model_{t}.txt" for t in targets),
        *(f"calibrator_{t}.json" for t in targets),
    }
    assert names == expected
    # no pickle: every file is text (JSON or LightGBM's text format)
    for name in names:
        text = (built.data.models_dir / name).read_bytes().decode("utf-8")
        if name.endswith(".json"):
            json.loads(text)
        else:
            assert text.startswith("tree\n")


def test_bundle_predict_equals_training_predictions(built: Params) -> None:
    bundle = load_bundle(built.data.models_dir)
    train_dir = built.data.build_dir / "train"
    for target in built.snapshots.targets:
        pred = pd.read_parquet(train_dir / f"predictions_{target}.parquet")
        rows = _rows(built, target)
        assert rows["lead_id"].tolist() == pred["lead_id"].tolist()
        probs = bundle.predict(bundle.encoder.transform(rows))
        np.testing.assert_allclose(probs[target], pred["p_uncapped"], rtol=0, atol=1e-12)
        if target == "sql":
            np.testing.assert_array_equal(pred["p"], pred["p_uncapped"])
            assert not pred["chain_capped"].any()
        else:
            # the chain: p_sql is the SQL model on the same rows, p = min(p, p_sql) before SQL
            np.testing.assert_allclose(probs["sql"], pred["p_sql"], rtol=0, atol=1e-12)
            pre_sql = pred["stage_rank"] < STAGE_RANK["sql"]
            expected = np.where(pre_sql, np.minimum(pred["p_uncapped"], pred["p_sql"]), pred["p_uncapped"])
            np.testing.assert_array_equal(pred["p"], expected)
            assert pred["chain_capped"].tolist() == (pre_sql & (pred["p_uncapped"] > pred["p_sql"])).tolist()


def test_metadata_and_feature_spec(built: Params) -> None:
    bundle = load_bundle(built.data.models_dir)
    meta = bundle.metadata
    assert meta["targets"] == list(built.snapshots.targets)
    assert meta["target_info"]["sql"] == {"stage": "sql", "horizon_days": 90}
    assert meta["chain"] == {"upper": "sql", "capped": ["closed_won"]}
    assert set(meta["versions"]) == {"leadscore", "lightgbm", "python", "numpy"}
    summary = json.loads((built.data.build_dir / "train" / "train_summary.json").read_text())
    assert meta["data_cutoff"] == summary["data_cutoff"]
    assert meta["rows"]["sql"]["test"] == summary["targets"]["sql"]["test"]["rows"]
    spec = json.loads((built.data.models_dir / "feature_spec.json").read_text())
    assert spec["categories"] == json.loads((built.data.build_dir / "train" / "categories.json").read_text())
    assert bundle.thresholds == {**resolve_fixed_thresholds(built), "stages": FIXED_STAGES}
    assert bundle.metrics == json.loads((built.data.reports_dir / "metrics.json").read_text())


def test_rebuild_gives_identical_checksum(built: Params, tmp_path: Path) -> None:
    """Same inputs, another folder and another time: identical files and bundle checksum."""
    first = verify_bundle(built.data.models_dir)
    again = write_bundle(tmp_path / "models", bundle_files(built), created_at="2000-01-01T00:00:00+00:00")
    assert again == first["bundle_checksum"]
    assert verify_bundle(tmp_path / "models")["files"] == first["files"]


def test_retraining_is_byte_identical(built: Params, tmp_path: Path) -> None:
    """Deterministic training: a second run on the same tables writes the same model and predictions."""
    params = _params(tmp_path)
    shutil.copytree(built.data.processed_dir, params.data.processed_dir)
    run_train(params)
    for name in sorted(p.name for p in (built.data.build_dir / "train").iterdir()):
        a = (built.data.build_dir / "train" / name).read_bytes()
        b = (params.data.build_dir / "train" / name).read_bytes()
        assert a == b, name


def test_tampered_file_is_refused(copy: Path) -> None:
    path = copy / "model_sql.txt"
    path.write_text(path.read_text().replace("learning_rate", "learning_rat3", 1))
    with pytest.raises(BundleError, match=r"checksum mismatch for model_sql\.txt"):
        load_bundle(copy)


def test_tampered_threshold_is_refused(copy: Path) -> None:
    path = copy / "thresholds.json"
    path.write_text(path.read_text().replace("0.5", "0.05"))
    with pytest.raises(BundleError, match=r"checksum mismatch for thresholds\.json"):
        load_bundle(copy)


def test_extra_file_is_refused(copy: Path) -> None:
    (copy / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(BundleError, match=r"not listed in the manifest: \['model.pkl'\]"):
        load_bundle(copy)


def test_missing_file_is_refused(copy: Path) -> None:
    (copy / "calibrator_closed_won.json").unlink()
    with pytest.raises(BundleError, match=r"missing: calibrator_closed_won\.json"):
        load_bundle(copy)


def test_missing_manifest_and_unknown_format_are_refused(copy: Path) -> None:
    manifest = json.loads((copy / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps({**manifest, "format": "leadscore-bundle/0"}))
    with pytest.raises(BundleError, match="unknown bundle format"):
        load_bundle(copy)
    (copy / MANIFEST).unlink()
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        load_bundle(copy)


def test_edited_manifest_checksum_is_refused(copy: Path) -> None:
    """Re-hashing a tampered file into the manifest still breaks the bundle checksum."""
    manifest = json.loads((copy / MANIFEST).read_text())
    (copy / "metrics.json").write_text("{}\n")
    from leadscore.models.bundle import sha256_file

    manifest["files"]["metrics.json"] = sha256_file(copy / "metrics.json")
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="bundle_checksum does not match"):
        load_bundle(copy)


def test_failed_write_keeps_the_previous_bundle(copy: Path) -> None:
    before = verify_bundle(copy)
    with pytest.raises(BundleError, match="invalid bundle file name"):
        write_bundle(copy, {"model_sql.txt": "x", "../escape.txt": "y"})
    assert verify_bundle(copy) == before
    assert not [p for p in copy.parent.iterdir() if p.name.startswith(".models-")]


def test_model_version_depends_on_models_only() -> None:
    files = {"model_sql.txt": "tree\n1", "calibrator_sql.json": "{}", "metrics.json": "{}"}
    v = model_version(files)
    assert len(v) == 12
    assert model_version({**files, "metrics.json": '{"x": 1}'}) == v
    assert model_version({**files, "model_sql.txt": "tree\n2"}) != v


def test_goal_thresholds_need_the_thresholds_stage(tmp_path: Path) -> None:
    params = tmp_params(tmp_path)  # params.yaml: sales_ready and mql are set by goals
    with pytest.raises(ValueError, match="leadscore thresholds"):
        resolve_fixed_thresholds(params)


def test_thresholds_file_is_copied_verbatim(built: Params, tmp_path: Path) -> None:
    params = tmp_params(tmp_path)
    shutil.copytree(built.data.build_dir, params.data.build_dir)
    shutil.copytree(built.data.reports_dir, params.data.reports_dir)
    table = b'{"target": "sql", "stages": [{"name": "sales_ready", "probability": 0.31}]}\n'
    (params.data.build_dir / "thresholds.json").write_bytes(table)
    run_bundle(params)
    assert (params.data.models_dir / "thresholds.json").read_bytes() == table


def test_input_schema_is_a_valid_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = input_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(REQUIRED_COLUMNS["leads"]) <= set(schema["properties"]["lead"]["properties"])
    payload = {
        "lead": {"lead_id": "L1", "created_at": "2025-01-01T00:00:00Z", "email_domain": "acme.com"},
        "account": {"account_id": "A1", "employees": 120, "industry": "software"},
        "events": [{"ts": "2025-02-01T10:00:00Z", "event_type": "pricing_view"}],
        "stage_history": [{"stage": "mql", "ts": "2025-02-02T00:00:00Z"}],
    }
    jsonschema.validate(payload, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"lead": {"lead_id": "L1"}}, schema)
