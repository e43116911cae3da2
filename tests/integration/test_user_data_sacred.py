"""The user's export in data/raw/ is never written, replaced or deleted: a real `dvc repro` in a tmp copy.

Issue 11: data/raw used to be the `generate` stage's output, so `dvc repro` put the cached demo tables
back over a user's export. Now the demo lives in data/demo/ and `data.source` picks what the pipeline
reads. The user's files (CSV tables in the data contract, plus an unrelated file of theirs) must stay
byte-identical after `dvc repro` twice on their data, after switching to the demo and back.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.integration.test_thresholds_dvc import ROOT, _dvc

pytestmark = pytest.mark.slow


def _digest(folder: Path) -> dict[str, str]:
    """sha256 and mtime of every file under ``folder`` (relative path -> "hash:mtime")."""
    return {
        str(p.relative_to(folder)): f"{hashlib.sha256(p.read_bytes()).hexdigest()}:{p.stat().st_mtime_ns}"
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _set_source(work: Path, source: str) -> None:
    path = work / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["data"]["source"] = source
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _user_export(work: Path, params: dict) -> int:
    """A user's export in the data contract (CSV, another seed than the demo); returns its lead count."""
    from leadscore.config import Params
    from leadscore.data.contract import TABLES
    from leadscore.data.generate import generate

    p = Params.model_validate(params | {"generate": params["generate"] | {"seed": 1234, "n_leads": 2500}})
    tables = generate(p.generate, p.features)
    raw = work / "data" / "raw"
    raw.mkdir(parents=True)
    for name in TABLES:
        tables[name].to_csv(raw / f"{name}.csv", index=False)
    (raw / "README-from-sales-ops.txt").write_text("exported 2026-11-30 from our CRM, do not edit\n")
    return len(tables["leads"])


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, int]:
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", work / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["generate"]["n_leads"] = 3000
    params["thresholds"]["stages"] = [
        {"name": "sales_ready", "probability": 0.2},
        {"name": "nurture", "probability": 0.0},
    ]
    params["explain"]["max_rows"] = 1000
    params["data"]["source"] = "data/raw"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    n_user = _user_export(work, params)
    _dvc(work, "init", "--no-scm", "-q")
    return work, n_user


def test_user_export_is_byte_identical_after_repro_twice_and_switching_sources(
    project: tuple[Path, int],
) -> None:
    work, n_user = project
    raw = work / "data" / "raw"
    before = _digest(raw)

    _dvc(work, "repro", "explain")
    assert _digest(raw) == before
    assert len(pd.read_parquet(work / "data" / "interim" / "leads.parquet")) == n_user  # read the user's
    _dvc(work, "repro", "explain")
    assert _digest(raw) == before

    _set_source(work, "data/demo")  # the demo: generated into data/demo, never into data/raw
    _dvc(work, "repro", "explain")
    assert _digest(raw) == before
    assert (work / "data" / "demo" / "leads.parquet").is_file()
    assert len(pd.read_parquet(work / "data" / "interim" / "leads.parquet")) == 3000

    _set_source(work, "data/raw")  # and back: the user's tables again, their files untouched
    _dvc(work, "repro", "explain")
    assert _digest(raw) == before
    assert len(pd.read_parquet(work / "data" / "interim" / "leads.parquet")) == n_user
    lock = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
    outs = [o["path"] for stage in lock.values() for o in stage.get("outs", [])]
    assert not any(Path(o).parts[:2] == ("data", "raw") for o in outs), outs
    assert json.loads((work / "reports" / "metrics.json").read_text())


def test_demo_dir_inside_raw_dir_is_refused() -> None:
    from leadscore.config import DataParams

    with pytest.raises(ValueError, match=r"must be outside data\.raw_dir"):
        DataParams(raw_dir=Path("data/raw"), demo_dir=Path("data/raw"))
    with pytest.raises(ValueError, match=r"must be outside data\.raw_dir"):
        DataParams(raw_dir=Path("data/raw"), demo_dir=Path("data/raw/demo"))
