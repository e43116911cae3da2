"""Keep the funnel chain consistent: a lead cannot close before it is sales-qualified.

For a lead not yet at SQL (``stage_rank`` below SQL's rank), winning within the closed-won horizon
requires reaching SQL first, so P(closed_won) is capped at P(SQL). The two models have different horizons
(SQL within 90 days, won within 180), so the cap is conservative: P(SQL within 90d) <= P(SQL within 180d).
For leads already at SQL or beyond, P(SQL) is 1 by definition and no cap applies. Evaluation reports how
often the cap binds, so its effect on calibration is visible.
"""

from __future__ import annotations

import numpy as np

from leadscore.data.contract import STAGE_RANK

SQL_RANK = STAGE_RANK["sql"]


def chain_consistent(
    probs: dict[str, np.ndarray], stage_rank: np.ndarray, upper: str = "sql", lower: str = "closed_won"
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return probabilities with ``lower`` capped at ``upper`` for pre-SQL leads, and the mask where the
    cap changed a value. Targets missing from ``probs`` are passed through."""
    out = dict(probs)
    if upper not in probs or lower not in probs:
        return out, np.zeros(len(stage_rank), dtype=bool)
    pre_sql = np.asarray(stage_rank) < SQL_RANK
    capped = pre_sql & (probs[lower] > probs[upper])
    out[lower] = np.where(capped, probs[upper], probs[lower])
    return out, capped
