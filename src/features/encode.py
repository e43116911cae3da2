"""Turn feature columns into the model's numeric matrix.

Categorical values become integer codes from a vocabulary fitted on the training slice (stored in the
bundle as JSON); a value never seen in training (a new industry, a new country) becomes NaN, which
LightGBM routes like a missing value, so new categories are scored, never rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat

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
        never = {n for n, _ in spec.recency_features} | {"days_since_last_event"}
        self.never_rows_ = [j for j, name in enumerate(self.feature_names_) if name in never]
        self.n_numeric_ = len(self.feature_names_) - len(spec.categorical)
        if self.categorical_indices_ != list(
            range(len(self.feature_names_) - len(spec.categorical), len(self.feature_names_))
        ):
            raise ValueError("the feature spec must list numeric features before categorical ones")

    def transform(
        self, cols: Mapping[str, np.ndarray] | pd.DataFrame, dtype: type[np.floating] = np.float64
    ) -> np.ndarray:
        """(n, n_features) matrix in ``spec.model_features`` order (numeric columns first).

        ``dtype``: float64 for scoring; training passes float32 to halve the matrix it bins.

        Built column-major in one pass per block: this runs on the API's hot path for every request.
        """
        names = self.feature_names_
        n_num = len(names) - len(self.categorical_indices_)
        n = len(cols[names[0]])
        out = np.empty((len(names), n), dtype=dtype)
        for j, name in enumerate(names[:n_num]):
            out[j] = np.asarray(cols[name], dtype=np.float64)
        for j in self.never_rows_:
            # "Never happened" is the far end of recency, not missing: as a large number the monotone
            # constraint (staleness never raises P) covers it too.
            row = out[j]
            row[np.isnan(row)] = NEVER_DAYS
        for j in self.categorical_indices_:
            get = self.lookup_[names[j]].get
            values = cols[names[j]]
            vals = values.tolist() if hasattr(values, "tolist") else values
            out[j] = list(map(get, vals, repeat(np.nan, len(vals))))
        return out.T
