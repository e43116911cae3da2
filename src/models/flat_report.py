"""The HTML report of a flat bundle (``train-table``): the same kind of page as the pipeline's, sized to
what a one-row-per-lead export has (drivers, stages, calibration, what was left out and why).

Reads a :class:`leadscore.models.flat.FlatResult`; writes one self-contained HTML file (no CDN, no
script). The formatting filters are the pipeline report's (one concept, one place).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadscore.models.leakage import _why
from leadscore.models.report import template_env

if TYPE_CHECKING:
    from leadscore.models.flat import FlatResult


def flat_version(model_text: str) -> str:
    """The flat bundle's model version (as in its metadata.json)."""
    import hashlib

    return f"flat-{hashlib.sha256(model_text.encode()).hexdigest()[:12]}"


def flat_context(result: FlatResult) -> dict[str, Any]:
    """Everything the flat template shows, as plain values."""
    target = result.spec.target
    entry = result.metrics[target]
    original = {v: k for k, v in result.spec.names.items()}
    evidence = [e for e in sorted(result.guard.evidence, key=lambda e: e.rank) if e.excluded]
    columns = result.prepared.report["columns"]
    dropped = [
        {"column": info.get("source", name), "reason": info.get("reason", "")}
        for name, info in columns.items()
        if info.get("role") == "dropped"
    ]
    return {
        "title": f"Lead scoring report: {result.source}",
        "model_version": flat_version(result.model_text),
        "source": result.source,
        "target_column": original.get(target, target),
        "positive": "a conversion",
        "rows": result.train_summary["rows"],
        "split": result.split.mode,
        "m": entry["model"],
        "base_rate": entry["base_rate"],
        "warnings": result.warnings,
        "drivers": result.report.get("drivers", []),
        "deciles": result.report.get("deciles", []),
        "stages": result.thresholds.get("stages", []),
        "excluded": [
            {"column": original.get(e.column, e.column), "why": _why(e, result.guard.params)}
            for e in evidence
        ],
        "dropped": dropped,
    }


def render_flat_report(context: dict[str, Any]) -> str:
    """The flat run's HTML page for a context from ``flat_context``."""
    return template_env().get_template("flat_report.html").render(**context)


def write_flat_report(result: FlatResult, path: Path) -> None:
    """Write ``report.html`` for a flat run."""
    Path(path).write_text(render_flat_report(flat_context(result)))
