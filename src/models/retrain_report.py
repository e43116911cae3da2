"""The report's "Retraining" section: comparison, backtest and drift, read from their stage outputs.

Kept apart from ``report`` (one include in the template, one key in the context) so the explanation
report and this section change independently. Every part is optional: a report built before ``compare``
or ``monitor`` ran simply has no such part.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def retrain_context(reports: Path) -> dict[str, Any] | None:
    """``compare``, ``drift`` and ``backtest`` (rows of the ``all`` stage plus per stage) or None."""
    compare = _json(reports / "compare.json")
    drift = _json(reports / "drift.json")
    backtest = None
    if (reports / "backtest.csv").is_file():
        table = pd.read_csv(reports / "backtest.csv")
        backtest = table.where(table.notna(), None).to_dict(orient="records")
    if compare is None and drift is None and backtest is None:
        return None
    metrics = []
    if compare is not None:
        target = compare["target"]
        ch = compare["challenger"]["metrics"][target]
        champ = (compare.get("champion") or {}).get("metrics", {}).get(target, {})
        diff = (compare.get("difference") or {}).get(target, {})
        for name in ch:
            metrics.append(
                {
                    "name": name,
                    "challenger": ch[name],
                    "champion": champ.get(name),
                    "difference": diff.get(name),
                }
            )
    return {"compare": compare, "compare_metrics": metrics, "drift": drift, "backtest": backtest}
