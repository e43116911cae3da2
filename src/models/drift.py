"""Drift of the champion between its training window and the newest window, label-free.

* **PSI** (population stability index) per model feature and on the score:
  ``Σ (a − e) · ln(a / e)`` over bins, ``e`` the share of the reference window in a bin and ``a`` the
  newest window's. Numeric features: ``bins`` quantile bins of the reference (plus one bin for missing);
  categorical: one bin per category. Shares are floored at 1e-4 so an empty bin does not give infinity.
  Common reading: < 0.1 stable, 0.1–0.25 moderate, > 0.25 large.
* **Expected ROC-AUC** from calibrated probabilities alone: if ``p`` is calibrated, lead i converts with
  probability p_i, so the expected numbers of (positive, negative) pairs ranked right and wrong follow
  from the probabilities; no labels needed, which is what the 90–180-day label lag requires.
* **Expected conversions**: ``Σ p`` per stage over the leads open at the export's end.

Windows: the *reference* is the champion's training window (snapshots up to its ``data_cutoff``), the
*newest* is every lead open at the export's end, both scored by the champion with its own feature spec.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_FLOOR = 1e-4


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI between two vectors of bin shares (each summing to 1)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), _FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_psi(reference: pd.Series, newest: pd.Series, bins: int = 10) -> float:
    """PSI of one feature: quantile bins of the reference for numbers, categories for text."""
    if pd.api.types.is_numeric_dtype(reference) and pd.api.types.is_numeric_dtype(newest):
        ref = reference.to_numpy(dtype=np.float64)
        new = newest.to_numpy(dtype=np.float64)
        finite = ref[np.isfinite(ref)]
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])) if len(finite) else []

        def shares(x: np.ndarray) -> np.ndarray:
            missing = ~np.isfinite(x)
            idx = np.searchsorted(edges, x[~missing], side="right")
            counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
            return np.r_[counts, missing.sum()] / max(len(x), 1)

        return psi(shares(ref), shares(new))
    ref_s = reference.astype("object").fillna("<missing>")
    new_s = newest.astype("object").fillna("<missing>")
    cats = sorted(set(ref_s.unique()) | set(new_s.unique()), key=str)
    e = ref_s.value_counts(normalize=True).reindex(cats, fill_value=0.0).to_numpy()
    a = new_s.value_counts(normalize=True).reindex(cats, fill_value=0.0).to_numpy()
    return psi(e, a)


def expected_auc(p: np.ndarray) -> float:
    """ROC-AUC expected when each lead converts with its (calibrated) probability, independently.

    E[#pairs ranked right] / E[#positive-negative pairs], with i ≠ j and ties counted one half.
    """
    p = np.sort(np.asarray(p, dtype=np.float64))
    if len(p) < 2:
        return float("nan")
    q = 1.0 - p
    # for each i: Σ_{j: p_j < p_i} q_j and Σ_{j: p_j == p_i, j != i} q_j
    cum_q = np.r_[0.0, np.cumsum(q)]
    lo = np.searchsorted(p, p, side="left")
    hi = np.searchsorted(p, p, side="right")
    below = cum_q[lo]
    tied = cum_q[hi] - cum_q[lo] - q
    right = np.sum(p * (below + 0.5 * tied))
    pairs = p.sum() * q.sum() - np.sum(p * q)
    return float(right / pairs) if pairs > 0 else float("nan")


def drift_table(reference: pd.DataFrame, newest: pd.DataFrame, columns: list[str], bins: int) -> pd.DataFrame:
    """PSI per column, largest first."""
    rows = [(c, feature_psi(reference[c], newest[c], bins)) for c in columns]
    return pd.DataFrame(rows, columns=["feature", "psi"]).sort_values(
        "psi", ascending=False, ignore_index=True
    )
