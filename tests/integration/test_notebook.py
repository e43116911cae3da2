"""notebooks/threshold-tuning.ipynb runs top to bottom (nbclient, a real kernel) so it cannot rot:
against a small pipeline built here, and against the repository's own outputs when they exist."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.model.test_explain import quick_pipeline

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "threshold-tuning.ipynb"

pytestmark = pytest.mark.slow


def _run(params_yaml: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    old = os.environ.get("LEADSCORE_PARAMS")
    os.environ["LEADSCORE_PARAMS"] = str(params_yaml)  # the kernel inherits the environment
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
        ).execute()
    finally:
        if old is None:
            os.environ.pop("LEADSCORE_PARAMS", None)
        else:
            os.environ["LEADSCORE_PARAMS"] = old
    return nb


def _errors(nb: nbformat.NotebookNode) -> list[str]:
    return [
        o.get("ename", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]


def test_notebook_runs_on_a_small_pipeline(tmp_path_factory: pytest.TempPathFactory) -> None:
    params = quick_pipeline(tmp_path_factory)
    nb = _run(params.data.models_dir.parent / "params.yaml")
    assert _errors(nb) == []
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code)
    text = "\n".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "") for c in code for o in c.outputs
    )
    assert "leads_per_week" in text and "today's rule (MQL points)" in text
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs)


def test_notebook_runs_on_the_repository_outputs() -> None:
    needed = [ROOT / "models" / "manifest.json", ROOT / "build" / "train" / "predictions_sql.parquet"]
    if not all(p.exists() for p in needed):
        pytest.skip("no pipeline outputs in the repository yet (run `dvc repro`)")
    assert _errors(_run(ROOT / "params.yaml")) == []


def test_the_readme_command_runs_the_notebook(tmp_path_factory: pytest.TempPathFactory) -> None:
    # the command README gives, with what scripts/setup.sh installs (nbclient's `jupyter execute`)
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    assert "jupyter execute notebooks/threshold-tuning.ipynb" in readme
    params = quick_pipeline(tmp_path_factory)
    env = {**os.environ, "LEADSCORE_PARAMS": str(params.data.models_dir.parent / "params.yaml")}
    jupyter = Path(sys.executable).with_name("jupyter")
    done = subprocess.run(
        [str(jupyter), "execute", "notebooks/threshold-tuning.ipynb"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
