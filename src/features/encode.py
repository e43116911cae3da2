"""Turn feature columns into the model's numeric matrix.

Categorical values become integer codes from a vocabulary fitted on the training slice (stored in the
bundle as JSON); a value never seen in training (a new industry, a new country) becomes NaN, which
LightGBM routes like a missing value, so new categories are scored, never rejected.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from leadscore.features.spec import FeatureSpec


def fit_categories(frame: pd.DataFrame, spec: FeatureSpec) -> dict[str, list[str]]:
    """Vocabulary per categorical column, sorted for determinism (fitted on the training slice only)."""
    return {c: sorted(str(v) for v in frame[c].dropna().unique()) for c in spec.categorical}


#: Days-since value that stands for "never" in recency features (longer than any history).
NEVER_DAYS = 10000.0


class MatrixEncoder:
    """fit/transform-style encoder; ``categories_`` is what the bundle stores."""

    def __init__(self, spec: FeatureSpec, categories: Mapping[str, list[str]]) -> None:
        self.spec = spec
        self.categories_ = {c: list(v) for c, v in categories.items()}
        self.lookup_ = {c: {v: float(i) for i, v in enumerate(vals)} for c, vals in self.categories_.items()}
        self.feature_names_ = list(spec.model_features)
        self.categorical_indices_ = [self.feature_names_.index(c) for c in spec.categorical]
        self.never_columns_ = {n for n, _ in spec.recency_features} | {"days_since_last_event"}

    def transform(self, cols: Mapping[str, np.ndarray] | pd.DataFrame) -> np.ndarray:
        """(n, n_features) float64 matrix in ``spec.model_features`` order."""
        n = len(cols[self.feature_names_[0]])
        out = np.empty((n, len(self.feature_names_)), dtype=np.float64)
        for j, name in enumerate(self.feature_names_):
            values = cols[name]
            if name in self.lookup_:
                get = self.lookup_[name].get
                out[:, j] = [
                    get(v, np.nan) for v in (values.tolist() if hasattr(values, "tolist") else values)
                ]
            else:
                out[:, j] = np.asarray(values, dtype=np.float64)
                if name in self.never_columns_:
                    # "Never happened" is the far end of recency, not missing: as a large number the
                    # monotone constraint (staleness never raises P) covers it too.
                    col = out[:, j]
                    col[np.isnan(col)] = NEVER_DAYS
        return out
