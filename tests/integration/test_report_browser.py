"""The HTML report in a real headless Chromium: it loads with no console errors, asks for nothing over the
network, every image decodes, and every section is there. Driven through the DevTools protocol by
``scripts/screenshot_report.py`` (the same code that writes the screenshot)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.model.test_explain import quick_pipeline

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "screenshot_report.py"
SECTIONS = (
    "In one minute",
    "Model vs today's point rule",
    "Top drivers, in business words",
    "Segments",
    "Thresholds: where to draw the line",
    "Try a threshold: what-if simulator",
    "Can you trust the probabilities?",
    "The funnel",
    "Example leads and their reasons",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium; scripts/setup.sh)"
    ),
]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("screenshot_report", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_report_renders_in_chromium(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    params = quick_pipeline(tmp_path_factory)
    html = params.data.reports_dir / "explain.html"
    report = _script().inspect_page(html)
    assert report.console_errors == []
    assert report.external_requests == []
    assert len(report.images) >= 10
    assert report.broken_images == []
    assert all(img["naturalWidth"] > 100 and img["naturalHeight"] > 100 for img in report.images)
    assert tuple(report.headings) == SECTIONS
    assert report.screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(report.screenshot) > 50_000


def test_the_checker_catches_a_broken_page(tmp_path: Path) -> None:
    # the test above cannot pass by accident: the same probe flags errors, requests and broken images
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>bad</title><link rel='icon' href='data:,'></head><body>"
        "<img src='data:image/png;base64,AAAA' alt='broken'><img src='missing.png' alt='missing'>"
        "<script>console.error('boom')</script></body></html>"
    )
    report = _script().inspect_page(page, screenshot=False)
    assert any("boom" in e for e in report.console_errors)
    assert any("missing.png" in e for e in report.console_errors)
    assert {i["alt"] for i in report.broken_images} == {"broken", "missing"}
    assert not report.ok


def test_screenshot_script_writes_a_png(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    params = quick_pipeline(tmp_path_factory)
    out = tmp_path / "report.png"
    assert _script().main([str(params.data.reports_dir / "explain.html"), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
