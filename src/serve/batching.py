"""Micro-batching of concurrent single-lead requests (``POST /v1/score``).

Most of a one-lead score is fixed cost per call (a feature build of ~30 vectorised NumPy calls, the
predict calls), not per lead. When several single-lead requests are waiting on the event loop at the
same moment (a CRM firing webhooks in parallel), they are scored together: each handler queues its
validated request and awaits a future; the first one schedules a flush with ``loop.call_soon``, which
runs after every handler that is ready in the same loop turn has queued its lead. A lone request is
scored alone, with no wait. Results are per lead and equal to scoring each alone (the builder and the
predictors are row-wise; ``tests/serve/test_batching.py`` compares them); requests for different
models (a reload in between) or different ``explain`` flags are never mixed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from leadscore.serve.payload import PayloadPolicy
from leadscore.serve.scorer import ScoreOutcome, ScoringModel

Pending = tuple[ScoringModel, Any, bool, "asyncio.Future[LeadOutcome]"]


@dataclass(frozen=True)
class LeadOutcome:
    """One request's share of a flush: its result, or its errors (locations start at the request body)."""

    result: dict[str, Any] | None
    errors: list[dict[str, Any]] | None


class MicroBatcher:
    """Coalesces single-lead requests that are ready in the same event-loop turn (at most ``max_leads``
    per scoring call)."""

    def __init__(
        self,
        policy: PayloadPolicy,
        reasons_per_lead: int,
        on_outcome: Callable[[ScoreOutcome], None],
        max_leads: int = 64,
    ) -> None:
        self.policy = policy
        self.reasons_per_lead = reasons_per_lead
        self.on_outcome = on_outcome
        self.max_leads = max_leads
        self._pending: list[Pending] = []
        self._scheduled = False

    async def score(self, model: ScoringModel, request: Any, explain: bool) -> LeadOutcome:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[LeadOutcome] = loop.create_future()
        self._pending.append((model, request, explain, future))
        if not self._scheduled:
            self._scheduled = True
            # Two loop turns: the handlers whose requests arrive in the next turn's I/O join this flush
            # too (one feature build for more leads); a lone request waits one empty turn, microseconds.
            loop.call_soon(loop.call_soon, self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        groups: dict[tuple[int, bool], list[Pending]] = {}
        for item in pending:
            if not item[3].done():  # a cancelled request (client gone) is not scored
                groups.setdefault((id(item[0]), item[2]), []).append(item)
        for (_, explain), items in groups.items():
            for start in range(0, len(items), self.max_leads):
                self._score(items[start : start + self.max_leads], explain)

    def _score(self, items: list[Pending], explain: bool) -> None:
        try:
            outcome = items[0][0].score(
                [it[1] for it in items], explain, self.reasons_per_lead, policy=self.policy
            )
        except Exception as exc:
            for *_, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        self.on_outcome(outcome)
        for i, (*_, future) in enumerate(items):
            if not future.done():
                future.set_result(LeadOutcome(outcome.results.get(i), outcome.errors.get(i)))
