"""One label table for codes (models.labels), and the simulator's won labels from the stage history."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from leadscore.models.labels import label, words
from leadscore.models.simulator import won_labels


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("c_level", "C-level"),
        ("paid_social", "Paid social"),
        ("it_services", "IT services"),
        ("individual", "Individual contributor"),
        ("saas_platform", "SaaS platform"),  # not listed: underscores and known abbreviations
        ("", "Unknown"),
        (None, "Unknown"),
    ],
)
def test_label(code: object, expected: str) -> None:
    assert label(code) == expected


def test_words_keep_case_inside_sentences() -> None:
    assert f"Came in through {words('paid_social')}" == "Came in through paid social"


def test_won_labels_count_only_wins_after_the_snapshot_within_the_horizon(tmp_path: Path) -> None:
    history = pd.DataFrame(
        {
            "lead_id": ["a", "b", "c", "c"],
            "stage": ["closed_won", "closed_won", "sql", "closed_won"],
            "ts": pd.to_datetime(["2025-02-01", "2024-12-01", "2025-01-05", "2026-01-01"]),
        }
    )
    history.to_parquet(tmp_path / "stage_history.parquet")
    params = SimpleNamespace(
        snapshots=SimpleNamespace(
            targets={"closed_won": SimpleNamespace(stage="closed_won", horizon_days=180)}
        ),
        data=SimpleNamespace(interim_dir=tmp_path),
    )
    rows = pd.DataFrame(
        {
            "lead_id": ["a", "a", "b", "c", "d"],
            "snapshot_ts": pd.to_datetime(["2025-01-01", "2025-03-01"] + ["2025-01-01"] * 3),
        }
    )
    # a: won a month later (1), but not after it was already won (0); b: won before; c: too late; d: never
    assert won_labels(params, rows).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
