"""Missing values: which feature values count as missing, and where missingness itself says something.

``informative_missing`` is a statistic of the training slice (``models.train`` stores it per target and
the bundle carries it); the reasons (``models.reasons``) use it so that "Company size unknown" is a
reason only where leads without a company size really convert differently, in that direction.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def is_missing(value: object) -> bool:
    """None, NaN, NA, or a text that says nothing ("", "unknown", "nan", "none", any case)."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in ("", "unknown", "nan", "none")
    try:
        return bool(np.isnan(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return value is pd.NA


def missing_mask(column: object) -> np.ndarray:
    """True where a feature value is missing (NaN, None, NA or an empty / 'unknown' text)."""
    arr = column.to_numpy() if hasattr(column, "to_numpy") else np.asarray(column)
    if arr.dtype.kind in "fc":
        return np.isnan(arr)
    if arr.dtype.kind in "iub":
        return np.zeros(len(arr), dtype=bool)
    # text: decide once per distinct value (few per column), then index; None/NaN get code -1 (missing)
    codes, uniques = pd.factorize(arr, use_na_sentinel=True)
    return np.append([is_missing(v) for v in uniques], True).astype(bool)[codes]


def informative_missing(
    frame: pd.DataFrame, features: list[str], label: str = "label", z: float = 3.0, ratio: float = 1.25
) -> dict[str, int]:
    """Features whose missingness says something about conversion, on labelled rows: +1 when rows
    missing the feature convert more than rows that have it, -1 when less. Informative means both
    clear (two-proportion z-test, |z| >= ``z``) and large enough to matter (rate ratio >= ``ratio``)."""
    y = frame[label].to_numpy(dtype=np.float64)
    out: dict[str, int] = {}
    for f in features:
        gone = missing_mask(frame[f])
        n1, n0 = int(gone.sum()), int((~gone).sum())
        if n1 == 0 or n0 == 0:
            continue
        r1, r0 = float(y[gone].mean()), float(y[~gone].mean())
        pooled = float(y.mean())
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
        if se == 0:
            continue
        big = max(r1, r0) >= ratio * max(min(r1, r0), 1e-12)
        if abs(r1 - r0) / se >= z and big:
            out[f] = 1 if r1 > r0 else -1
    return out
