"""Changing only the threshold params never retrains: a real `dvc repro` in a tmp copy of the pipeline.

The copy holds the repository's dvc.yaml, src/ (the stages' code dependencies) and params.yaml with
small-data overrides. After a full `dvc repro explain`, a new capacity goal makes `dvc status` report
only `thresholds` and stages after it, and the second `dvc repro` runs exactly thresholds -> bundle ->
explain: the training stage is skipped and its model file is untouched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# compare and monitor read the MLflow registry, which DVC cannot see, so they always run (always_changed)
DOWNSTREAM = {"thresholds", "bundle", "compare", "monitor", "explain"}

pytestmark = pytest.mark.slow


def _dvc(work: Path, *args: str) -> str:
    env = {
        **os.environ,
        # the stages call the `leadscore` CLI of this interpreter's environment
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
    }
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _set_capacity(work: Path, capacity: float) -> None:
    path = work / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["thresholds"]["stages"][0]["goal"]["capacity_per_week"] = capacity
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    """A tmp copy of the pipeline with small params, reproduced once up to `explain`."""
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", work / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["generate"]["n_leads"] = 3000
    params["thresholds"]["stages"] = [
        {"name": "sales_ready", "goal": {"capacity_per_week": 5}},
        {"name": "nurture", "probability": 0.0},
    ]
    params["explain"]["max_rows"] = 2000
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _dvc(work, "init", "--no-scm", "-q")
    _dvc(work, "repro", "explain")
    return work


def test_threshold_params_rerun_only_thresholds_and_downstream(pipeline: Path) -> None:
    work = pipeline
    lock_before = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
    model = work / "build" / "train" / "model_sql.txt"
    model_stat = model.stat().st_mtime_ns
    before = json.loads((work / "build" / "thresholds.json").read_text())

    _set_capacity(work, 8)
    status = json.loads(_dvc(work, "status", "explain", "--with-deps", "--json").strip().splitlines()[-1])
    assert "thresholds" in status
    assert set(status) <= DOWNSTREAM, status
    for stage in ("generate", "validate", "snapshots", "features", "train", "evaluate"):
        assert stage not in status

    out = _dvc(work, "repro", "explain")
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert ran == DOWNSTREAM, out
    assert "Stage 'train' didn't change, skipping" in out
    lock_after = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
    for stage in ("generate", "validate", "snapshots", "features", "train", "evaluate"):
        assert lock_after[stage] == lock_before[stage], stage
    assert model.stat().st_mtime_ns == model_stat  # the model file was not rewritten

    after = json.loads((work / "build" / "thresholds.json").read_text())
    assert after["stages"][0]["goal"] == {"capacity_per_week": 8}
    assert after["stages"][0]["probability"] < before["stages"][0]["probability"]  # more leads: lower bar
    assert after["stages"][0]["achieved"]["leads_per_week"] == pytest.approx(8, rel=0.1)
    bundled = json.loads((work / "models" / "thresholds.json").read_text())
    assert bundled["stages"][0]["probability"] == after["stages"][0]["probability"]
    assert "capacity_per_week: 8" in (work / "reports" / "explain.html").read_text().replace("8.0", "8")

    # and nothing is left to do
    left = json.loads(_dvc(work, "status", "explain", "--with-deps", "--json").strip().splitlines()[-1])
    assert left == {"compare": ["always changed"], "monitor": ["always changed"]}, left
