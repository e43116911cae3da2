"""`dvc plots show` works offline: .dvc/config points plots.html_template at the vendored page with
Vega inlined, so the page asks for nothing over the network and draws its chart in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_report_browser import CHROMIUM, _script

ROOT = Path(__file__).resolve().parents[2]
DVC = Path(sys.executable).with_name("dvc")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium; scripts/setup.sh)"
    ),
]


def test_vendored_template_has_no_cdn() -> None:
    page = (ROOT / ".dvc" / "plots_offline.html").read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page
    assert "cdn.jsdelivr" not in page and "<script src=" not in page
    assert "html_template = plots_offline.html" in (ROOT / ".dvc" / "config").read_text()


def test_dvc_plots_show_draws_offline(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(a, cwd=repo, check=True, capture_output=True, text=True)  # noqa: E731
    run("git", "init", "-q")
    run(str(DVC), "init", "-q")
    shutil.copy(ROOT / ".dvc" / "plots_offline.html", repo / ".dvc" / "plots_offline.html")
    with (repo / ".dvc" / "config").open("a") as f:
        f.write("[plots]\n    html_template = plots_offline.html\n")
    (repo / "gains.csv").write_text("share,found\n0,0\n0.1,0.35\n0.5,0.8\n1,1\n")
    (repo / "dvc.yaml").write_text("plots:\n  - gains.csv:\n      x: share\n      y: found\n")
    run(str(DVC), "plots", "show", "-o", "out")
    index = repo / "out" / "index.html"
    probe = "document.querySelectorAll('.vega-embed .marks').length"  # the drawn chart
    report = _script().inspect_page(index, screenshot=False, scripts=(probe,))
    assert report.external_requests == []
    assert report.console_errors == []
    assert report.script_results == [1]
