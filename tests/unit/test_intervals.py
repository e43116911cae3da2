"""The Wilson interval agrees with scipy's, handles 0 and n successes, and no trials."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from leadscore.models.intervals import wilson


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (57, 412), (1, 2000)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson(k, n)
    assert float(lo) == pytest.approx(ci.low, abs=1e-9) and float(hi) == pytest.approx(ci.high, abs=1e-9)


def test_wilson_vectorised_and_empty() -> None:
    lo, hi = wilson(np.array([0, 5, 0]), np.array([20, 20, 0]))
    assert lo[0] == 0 and 0 < hi[0] < 0.2 and lo[1] < 0.25 < hi[1]
    assert np.isnan(lo[2]) and np.isnan(hi[2])
