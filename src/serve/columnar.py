"""A whole batch -> ``Prepared`` in a few array operations (the API's batch path).

``payload.prepare`` checks lead by lead and event by event in Python, ~9 µs per lead of a demo batch.
Here the batch (decoded with its timestamps as text, ``decode.BatchReqT``) is handled column by column:

1. every timestamp of the batch is converted at once (``isotime.epoch_seconds_many``); strings outside
   its strict ISO form go to pydantic one by one, and one pydantic refuses sends the whole body back to
   the ``parse_batch`` path, where pydantic gives the field-level errors;
2. the checks of ``prepare`` run as array comparisons (a timestamp after ``as_of``, too many events or
   stage rows, an event type that is not an exact known name, an unknown stage);
3. leads that pass every check are collected column-wise; any other lead goes through ``prepare`` itself
   (with the converted seconds), so its errors, the unknown-type policy and the name normalisation are
   exactly ``prepare``'s. Tests compare both paths lead by lead, good and bad.
"""

from __future__ import annotations

import time
from itertools import chain, repeat
from operator import attrgetter
from typing import Any, Final

import numpy as np
import orjson
from pydantic import TypeAdapter, ValidationError

from leadscore.features.attributes import AttributeMemo, _per_unique
from leadscore.serve.decode import Account, BatchReqT
from leadscore.serve.isotime import epoch_seconds_many
from leadscore.serve.payload import (
    _STAGE_SET,
    UNKNOWN_TYPE,
    PayloadPolicy,
    Prepared,
    _domain,
    _tech_stack,
    _text,
    epoch_seconds,
    prepare,
)
from leadscore.serve.schemas import Timestamp

_TIMESTAMP: Final = TypeAdapter(Timestamp)
_LEAD_TEXT: Final = ("job_title", "seniority", "department", "country", "lead_source")
_get = attrgetter
_NO_ACCOUNT: Final = Account()


def _pydantic_seconds(text: str) -> int | None:
    """Epoch seconds of a timestamp outside the fast form as pydantic reads it in a JSON body, None if
    pydantic refuses it."""
    try:
        return epoch_seconds(_TIMESTAMP.validate_json(orjson.dumps(text)))
    except ValidationError:
        return None


def _domain_text(domain: str | None) -> str | None:
    return _domain(None, domain)


def _stage_name(stage: str) -> str:
    return stage.strip().lower()


def prepare_batch_text(
    batch: BatchReqT,
    type_lookup: dict[str, int],
    policy: PayloadPolicy,
    now: float | None = None,
    memo: AttributeMemo | None = None,
) -> Prepared | None:
    """``payload.prepare`` of every lead of ``batch`` (request positions 0..n-1, error locations under
    ``("leads", i)``), or None when a timestamp is invalid (the caller asks pydantic for the errors).

    ``memo``: text caches kept across requests (the model's builder keeps one); the normalised text of a
    value never changes, so the same titles and domains cost one dict lookup each.
    """
    m: AttributeMemo = {} if memo is None else memo
    leads = batch.leads
    n = len(leads)
    now_s = int(time.time() if now is None else now)

    # 1. Every timestamp of the batch at once.
    lead_objs = list(map(_get("lead"), leads))
    ev_lists = list(map(_get("events"), leads))
    st_lists = list(map(_get("stage_history"), leads))
    events = list(chain.from_iterable(ev_lists))
    stages = list(chain.from_iterable(st_lists))
    own_text = list(map(_get("as_of"), leads))
    own_given = [t for t in own_text if t is not None]
    texts: list[str] = list(map(_get("created_at"), lead_objs))
    texts += map(_get("ts"), events)
    texts += map(_get("ts"), stages)
    texts += own_given
    if batch.as_of is not None:
        texts.append(batch.as_of)
    secs, ok = epoch_seconds_many(texts)
    if not ok.all():
        for i in np.flatnonzero(~ok).tolist():
            value = _pydantic_seconds(texts[i])
            if value is None:
                return None
            secs[i] = value
    n_ev, n_st = len(events), len(stages)
    created = secs[:n]
    ev_ts = secs[n : n + n_ev]
    st_ts = secs[n + n_ev : n + n_ev + n_st]
    own = secs[n + n_ev + n_st : n + n_ev + n_st + len(own_given)]

    # ``as_of`` of each lead and the latest time its data may have (``prepare``'s ``limit``).
    if batch.as_of is not None:
        as_of = np.full(n, secs[-1], dtype=np.int64)
        limit = as_of.copy()
    else:
        as_of = np.full(n, now_s, dtype=np.int64)
        limit = np.full(n, now_s + policy.clock_skew_seconds, dtype=np.int64)
    if own_given:
        has_own = np.fromiter((t is not None for t in own_text), dtype=bool, count=n)
        as_of[has_own] = own
        limit[has_own] = own

    # 2. prepare's checks as array comparisons: a lead failing any of them goes through prepare itself.
    rows = np.arange(n, dtype=np.int64)
    ev_counts = np.fromiter(map(len, ev_lists), dtype=np.int64, count=n)
    st_counts = np.fromiter(map(len, st_lists), dtype=np.int64, count=n)
    ev_lead = np.repeat(rows, ev_counts)
    st_lead = np.repeat(rows, st_counts)
    try:  # every type an exact known name (the usual case): plain lookups
        codes = list(map(type_lookup.__getitem__, map(_get("event_type"), events)))
    except KeyError:
        codes = list(map(type_lookup.get, map(_get("event_type"), events), repeat(UNKNOWN_TYPE, n_ev)))
    ev_code = np.array(codes, dtype=np.int64)
    st_stage = _per_unique(list(map(_get("stage"), stages)), _stage_name, m.setdefault("_stage", {}))
    st_known = np.fromiter(map(_STAGE_SET.__contains__, st_stage), dtype=bool, count=n_st)
    bad = (
        (created > limit)
        | (ev_counts > policy.max_events_per_lead)
        | (st_counts > policy.max_stage_rows_per_lead)
    )
    bad[ev_lead[(ev_ts > limit[ev_lead]) | (ev_code == UNKNOWN_TYPE)]] = True
    bad[st_lead[(st_ts > limit[st_lead]) | ~st_known]] = True

    # 3. The good leads, column by column.
    if bad.any():
        good = ~bad
        good_pos = np.flatnonzero(good)
        pick = good_pos.tolist()
        lead_objs = [lead_objs[i] for i in pick]
        accounts = [leads[i].account for i in pick]
        ev_keep, st_keep = good[ev_lead], good[st_lead]
        ev_ts, ev_code, ev_counts = ev_ts[ev_keep], ev_code[ev_keep], ev_counts[good]
        st_ts, st_counts = st_ts[st_keep], st_counts[good]
        st_stage = [s for s, k in zip(st_stage, st_keep.tolist(), strict=True) if k]
        as_of, created = as_of[good], created[good]
    else:
        pick = list(range(n))
        accounts = list(map(_get("account"), leads))
    text_memo = m.setdefault("_text", {})
    raw: dict[str, list[Any]] = {
        c: _per_unique(list(map(_get(c), lead_objs)), _text, text_memo) for c in _LEAD_TEXT
    }
    domains = _per_unique(
        list(map(_get("email_domain"), lead_objs)), _domain_text, m.setdefault("_domain", {})
    )
    raw["email_domain"] = [
        d if d is not None or lead.email is None else _domain(lead.email, None)
        for d, lead in zip(domains, lead_objs, strict=True)
    ]
    # No account reads as an account without values (prepare gives None to all four columns).
    accounts = [_NO_ACCOUNT if a is None else a for a in accounts]
    raw["_industry"] = _per_unique(list(map(_get("industry"), accounts)), _text, text_memo)
    raw["employees"] = list(map(_get("employees"), accounts))
    raw["annual_revenue"] = list(map(_get("annual_revenue"), accounts))
    techs = list(map(_get("tech_stack"), accounts))
    text_only = all(t is None or type(t) is str for t in techs)  # lists cannot be memo keys
    raw["tech_stack"] = (
        _per_unique(techs, _tech_stack, m.setdefault("_tech_stack", {}))
        if text_only
        else [_tech_stack(t) for t in techs]
    )
    fast = Prepared(
        positions=pick,
        errors={},
        unknown_event_types={},
        lead_ids=list(map(_get("lead_id"), lead_objs)),
        as_of=as_of,
        created_at=created,
        raw=raw,
        ev_counts=ev_counts,
        ev_ts=ev_ts,
        ev_code=ev_code,
        st_counts=st_counts,
        st_ts=st_ts,
        st_stage=st_stage,
    )
    if not bad.any():
        return fast
    # The other leads through prepare itself, reading the seconds converted above.
    bad_pos = np.flatnonzero(bad).tolist()
    seconds = dict(zip(texts, secs.tolist(), strict=True))
    slow = prepare(
        [leads[i] for i in bad_pos],
        type_lookup,
        policy,
        default_as_of=int(secs[-1]) if batch.as_of is not None else None,
        now=now_s,
        loc_prefix=("leads",),
        indices=bad_pos,
        seconds=seconds.__getitem__,
    )
    return fast.merge(slow)
