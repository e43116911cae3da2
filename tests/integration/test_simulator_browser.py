"""The threshold simulator in headless Chromium: moving a slider changes the figures, and at every grid
point the page shows exactly the precomputed grid (``models.simulator``); the params.yaml lines follow.
Fast: a synthetic calibration slice and the simulator partial alone (the full report includes the same
partial; ``test_report_browser`` loads that one)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.models.report import outcome_words, render_simulator_page
from leadscore.models.simulator import simulator_grid
from tests.integration.test_report_browser import CHROMIUM, _script

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium; scripts/setup.sh)"
    ),
]


def calibration_slice(seed: int = 3, leads: int = 600, weeks: int = 10) -> pd.DataFrame:
    """Weekly snapshots of leads whose interest drifts; label / won label drawn from p."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2025-03-03")
    for lead in range(leads):
        first = int(rng.integers(0, weeks))
        base = rng.normal(-3.0, 1.2)
        points = int(rng.integers(0, 12)) * 10
        for k in range(first, weeks):
            base += rng.normal(0.1, 0.3)
            p = float(1 / (1 + np.exp(-base)))
            y = bool(rng.random() < p)
            rows.append(
                {
                    "lead_id": f"L{lead:04d}",
                    "snapshot_ts": start + pd.Timedelta(days=7 * k),
                    "p": p,
                    "label": float(y),
                    "p_won": p * 0.3,
                    "label_won": float(y and rng.random() < 0.3),
                    "rule_score": float(points + (10 if y and rng.random() < 0.3 else 0)),
                }
            )
    return pd.DataFrame(rows)


SLIDE = """(() => {{
  const s = document.getElementById('sim-slider-{stage}');
  s.value = {index}; s.dispatchEvent(new Event('input', {{bubbles: true}}));
  const cells = {{}};
  const q = sel => document.querySelectorAll('[data-stage="{stage}"]' + sel);
  q('[data-col]').forEach(td => cells[td.dataset.col] = td.textContent);
  const rule = {{}};
  q('[data-rule-col]').forEach(td => rule[td.dataset.ruleCol] = td.textContent);
  return JSON.stringify({{cells, rule, number: document.getElementById('sim-number-{stage}').value,
                         yaml: document.getElementById('sim-yaml').textContent}});
}})()"""


def _fmt(v: float | None, kind: str, lo: float | None = None, hi: float | None = None) -> str:
    if v is None:
        return "–"
    if kind == "rate":
        return f"{_fmt(v, 'pct')} ({_fmt(lo, 'pct')}–{_fmt(hi, 'pct')})"
    return f"{v * 100:.1f}\u00a0%" if kind == "pct" else f"{v:.1f}"


def test_slider_moves_figures_that_match_the_grid(tmp_path: Path) -> None:
    frame = calibration_slice()
    stages = [{"name": "sales_ready", "probability": 0.2}, {"name": "mql", "probability": 0.05}]
    sim = simulator_grid(frame, 7, stages, rule_points=60, grid_points=40)
    page = tmp_path / "sim.html"
    page.write_text(render_simulator_page(sim, outcome_words("sql"), 90), encoding="utf-8")
    n = len(sim["model"]["threshold"])
    indexes = [0, n // 4, n // 2, (3 * n) // 4, n - 2]
    scripts = tuple(SLIDE.format(stage=1, index=i) for i in indexes)
    report = _script().inspect_page(page, screenshot=False, scripts=scripts)
    assert report.console_errors == [] and report.external_requests == []
    seen = [json.loads(r) for r in report.script_results]
    kinds = {key: kind for key, _, kind in sim["rows"]}
    for i, s in zip(indexes, seen, strict=True):
        for key, kind in kinds.items():
            lo, hi = (sim["model"].get(f"{key}_{b}", [None] * (i + 1))[i] for b in ("lo", "hi"))
            assert s["cells"][key] == _fmt(sim["model"][key][i], kind, lo, hi), (i, key)
        assert s["rule"]["points"] == str(round(sim["rule"]["points"][i]))
        assert s["rule"]["leads_per_week"] == _fmt(sim["rule"]["leads_per_week"][i], "num")
        tau = sim["model"]["threshold"][i]
        assert abs(float(s["number"]) - tau) <= 1e-3 * max(tau, 1e-9) + 1e-12
        assert "- name: mql\n      probability: " in s["yaml"]
    # moving the slider changes what the page shows, and volume falls as the threshold rises
    assert len({s["cells"]["leads_per_week"] for s in seen}) == len(seen)
    volumes = [float(s["cells"]["leads_per_week"].replace(",", "")) for s in seen]
    assert volumes == sorted(volumes, reverse=True)


def test_grid_is_the_threshold_table_per_week() -> None:
    # the grid's figures are threshold_metrics' (the trade-off table), turned per week
    from leadscore.models.thresholds import handover_window, threshold_metrics

    frame = calibration_slice(seed=5, leads=300, weeks=8)
    sim = simulator_grid(frame, 7, [{"name": "mql", "probability": 0.1}], rule_points=50, grid_points=30)
    taus = np.array(sim["model"]["threshold"])
    m = threshold_metrics(frame, taus, 7)
    weeks = handover_window(frame["snapshot_ts"], 7)[1]
    np.testing.assert_allclose(sim["model"]["leads_per_week"], m["leads_per_week"], rtol=1e-5)
    np.testing.assert_allclose(sim["model"]["actual_sql_per_week"], m["actual_sql"] / weeks, rtol=1e-5)
    assert 0.1 in sim["model"]["threshold"]
    won = threshold_metrics(frame.assign(label=frame["label_won"]), taus, 7)["actual_sql"] / weeks
    np.testing.assert_allclose(sim["model"]["actual_won_per_week"], won, rtol=1e-5)
    # the rule at the same volume is the rule cut with the closest weekly volume
    gaps = np.abs(np.array(sim["rule"]["leads_per_week"]) - np.array(sim["model"]["leads_per_week"]))
    assert np.median(gaps / np.maximum(np.array(sim["model"]["leads_per_week"]), 1)) < 0.5
