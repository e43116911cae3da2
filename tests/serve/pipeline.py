"""Build a real, small bundle once per test session (shared by pytest-xdist workers through a file lock).

demo data -> validate -> snapshots -> features -> train -> evaluate -> thresholds -> bundle, all with
small params in a temporary folder, using the model pipeline's own stage functions.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from leadscore.config import Params, load_params
from leadscore.data.payloads import payloads_from_tables
from leadscore.models.bundle import MANIFEST, write_bundle
from tests.paths import data_dirs

ROOT = Path(__file__).resolve().parents[2]
N_LEADS = 3000


def pipeline_params(root: Path) -> Params:
    """Small params with every data folder under ``root``; stage thresholds fixed (3,000 demo leads are
    too few for the default capacity goal)."""
    return load_params(
        ROOT / "params.yaml",
        overrides={
            "generate.n_leads": N_LEADS,
            **data_dirs(root),
            "thresholds.stages": [
                {"name": "sales_ready", "probability": 0.10},
                {"name": "mql", "probability": 0.03},
                {"name": "nurture", "probability": 0.0},
            ],
        },
    )


def build_pipeline(params: Params) -> None:
    """Run every stage from the demo generator to the bundle."""
    from leadscore.data.generate import generate, write_tables
    from leadscore.data.validate import run_validate
    from leadscore.features.stage import run_features, run_snapshots
    from leadscore.models.bundle import run_bundle
    from leadscore.models.evaluate import run_evaluate
    from leadscore.models.thresholds import run_thresholds
    from leadscore.models.train import run_train

    write_tables(generate(params.generate, params.features), params.data.raw_dir)
    for stage in (
        run_validate,
        run_snapshots,
        run_features,
        run_train,
        run_evaluate,
        run_thresholds,
        run_bundle,
    ):
        stage(params)


def shared_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Params:
    """Params of a finished small pipeline run, built once for the whole session (all xdist workers)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "serve_pipeline"
    params = pipeline_params(root)
    with open(shared / "serve_pipeline.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (root / "DONE").exists():
                shutil.rmtree(root, ignore_errors=True)
                build_pipeline(params)
                (root / "DONE").write_text("ok\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return params


def read_interim(params: Params) -> dict[str, pd.DataFrame]:
    """The validated tables the pipeline trained on."""
    return {
        t: pd.read_parquet(params.data.interim_dir / f"{t}.parquet")
        for t in ("leads", "accounts", "events", "stage_history")
    }


def payloads_at(interim: dict[str, pd.DataFrame], lead_ids: list[str], as_of: pd.Timestamp) -> list[dict]:
    """API payloads for ``lead_ids`` as the CRM knew them at ``as_of`` (events/stages before it)."""
    leads = interim["leads"].set_index("lead_id").loc[lead_ids].reset_index()
    ev, st = interim["events"], interim["stage_history"]
    return payloads_from_tables(
        leads,
        interim["accounts"],
        ev[ev["lead_id"].isin(lead_ids) & (ev["ts"] < as_of)],
        st[st["lead_id"].isin(lead_ids) & (st["ts"] < as_of)],
        as_of=[as_of] * len(leads),
    )


def rewrite_bundle(src: Path, dst: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """Copy bundle ``src`` to ``dst`` with ``edit`` applied to its files, re-checksummed (a valid bundle)."""
    files = {p.name: p.read_bytes() for p in Path(src).iterdir() if p.is_file() and p.name != MANIFEST}
    edit(files)
    write_bundle(dst, files)
    return dst


def shifted_calibrator(files: dict[str, bytes], shift: float = 1.0, version: str = "retrained-test") -> None:
    """A 'retrained' bundle: the SQL calibrator moved, so every probability changes."""
    cal = json.loads(files["calibrator_sql.json"])
    if cal["method"] == "sigmoid":
        cal["b"] = cal["b"] + shift
    else:
        cal["y"] = [min(1.0, y * (1 + shift / 2) + 0.01) for y in cal["y"]]
    files["calibrator_sql.json"] = json.dumps(cal).encode()
    meta = json.loads(files["metadata.json"])
    meta["model_version"] = version
    files["metadata.json"] = json.dumps(meta).encode()
