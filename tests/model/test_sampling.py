"""Negative sampling for example tables larger than memory: every positive, a stable share of negatives
in every snapshot period, decided row by row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from leadscore.models.train import sample_negatives


def _batch(n_dates: int = 6, per_date: int = 4000) -> pa.RecordBatch:
    rng = np.random.default_rng(0)
    dates = np.repeat(pd.date_range("2024-01-01", periods=n_dates, freq="30D").to_numpy(), per_date)
    frame = pd.DataFrame(
        {
            "lead_id": [f"L{i:07d}" for i in range(len(dates))],
            "snapshot_ts": dates.astype("datetime64[us]"),
            "label": (rng.random(len(dates)) < 0.02).astype(np.int8),
            "x": rng.random(len(dates)),
        }
    )
    return pa.RecordBatch.from_pandas(frame, preserve_index=False)


def test_keeps_every_positive_and_the_rate_of_negatives_in_every_period() -> None:
    batch = _batch()
    kept = sample_negatives(batch, 0.25, seed=7).to_pandas()
    full = batch.to_pandas()
    assert kept["label"].sum() == full["label"].sum()
    for _, rows in kept[kept.label == 0].groupby("snapshot_ts"):
        share = len(rows) / ((full.label == 0) & (full.snapshot_ts == rows.snapshot_ts.iloc[0])).sum()
        assert 0.22 < share < 0.28


def test_is_deterministic_and_independent_of_batching() -> None:
    batch = _batch()
    whole = sample_negatives(batch, 0.3, seed=7).to_pandas()
    halves = pd.concat(
        [sample_negatives(batch.slice(0, 10_000), 0.3, 7).to_pandas(),
         sample_negatives(batch.slice(10_000), 0.3, 7).to_pandas()],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(whole, halves)
    other_seed = sample_negatives(batch, 0.3, seed=8).to_pandas()
    assert set(other_seed.lead_id) != set(whole.lead_id)


def test_max_negatives_lowers_the_rate_to_the_cap(tmp_path) -> None:
    from leadscore.config import TrainParams
    from leadscore.data.parquet import write_parquet
    from leadscore.models.train import negative_rate

    frame = _batch().to_pandas()
    path = tmp_path / "train.parquet"
    write_parquet(frame, path)
    negatives = int((frame.label == 0).sum())
    assert negative_rate(path, TrainParams()) == 1.0  # no cap: every row
    assert negative_rate(path, TrainParams(max_negatives=negatives)) == 1.0
    capped = negative_rate(path, TrainParams(max_negatives=negatives // 4))
    assert capped == (negatives // 4) / negatives
    kept = sample_negatives(_batch(), capped, seed=7).to_pandas()
    assert abs((kept.label == 0).sum() - negatives // 4) < 0.05 * negatives / 4
    # a chosen rate below the cap's wins
    assert negative_rate(path, TrainParams(max_negatives=negatives // 4, negative_sample_rate=0.1)) == 0.1
