"""The one interval the report puts on a promised rate: Wilson's score interval for a proportion.

Written here (a few lines) because scipy's ``binomtest(...).proportion_ci(method="wilson")`` takes one
proportion at a time and the threshold grid needs hundreds at once; a test checks both agree.
"""

from __future__ import annotations

import numpy as np

Z95 = 1.959963984540054


def wilson(
    successes: np.ndarray | float, trials: np.ndarray | float, z: float = Z95
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the 95 % Wilson interval for ``successes`` out of ``trials`` (NaN where trials is 0)."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
        ok = n > 0
        return np.where(ok, np.clip(centre - half, 0, 1), np.nan), np.where(
            ok, np.clip(centre + half, 0, 1), np.nan
        )
