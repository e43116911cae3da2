"""Our Parquet writers: a stream of frames gives the bytes of one write of their concatenation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import leadscore.data.parquet as parquet
from leadscore.data.parquet import write_frames, write_parquet


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in rng.integers(0, 500, n)],
            "ts": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
            "label": rng.integers(0, 2, n).astype(np.int8),
            "split": pd.Series(rng.choice(["train", "test"], n), dtype="string"),
            "p": rng.random(n),
        }
    )


@pytest.mark.parametrize("sizes", [[700, 1, 2300, 999], [3000], [1000, 1000]])
def test_streamed_frames_write_the_bytes_of_one_write(tmp_path, monkeypatch, sizes) -> None:
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 1000)  # several row groups from small frames
    frames = [_frame(n, seed) for seed, n in enumerate(sizes)]
    whole = pd.concat(frames, ignore_index=True)
    write_parquet(whole, tmp_path / "one.parquet")
    rows = write_frames(iter(frames), tmp_path / "stream.parquet", empty=whole.iloc[:0])
    assert rows == len(whole)
    assert (tmp_path / "stream.parquet").read_bytes() == (tmp_path / "one.parquet").read_bytes()


def test_no_frames_still_write_the_columns(tmp_path) -> None:
    empty = _frame(0, 0)
    assert write_frames(iter([]), tmp_path / "e.parquet", empty=empty) == 0
    back = pd.read_parquet(tmp_path / "e.parquet")
    assert list(back.columns) == list(empty.columns) and len(back) == 0
