"""The funnel-chain cap: binds exactly for pre-SQL leads whose lower probability is above the upper one."""

from __future__ import annotations

import itertools

import numpy as np

from leadscore.models.chain import SQL_RANK, chain_consistent


def test_cap_binds_for_pre_sql_leads_only() -> None:
    ranks = [0.0, SQL_RANK - 1.0, float(SQL_RANK), SQL_RANK + 2.0]
    ps = [0.0, 0.01, 0.2, 0.2000001, 1.0]
    cases = list(itertools.product(ranks, ps, ps))
    rank = np.array([r for r, _, _ in cases])
    upper = np.array([u for _, u, _ in cases])
    lower = np.array([lo for _, _, lo in cases])
    out, capped = chain_consistent({"sql": upper, "closed_won": lower}, rank)
    assert out["closed_won"].tolist() == [u if r < SQL_RANK and lo > u else lo for r, u, lo in cases]
    # the cap binds exactly for pre-SQL leads whose lower probability is above the upper one
    assert capped.tolist() == [r < SQL_RANK and lo > u for r, u, lo in cases]
    assert capped.any() and not capped.all()
