"""Validated requests -> the online feature builder's arrays, with the checks that need ``as_of``.

Shared by the API and ``leadscore score``, so both feed the builder exactly the same arrays. One call
handles all leads of a request: every lead is checked on its own (a bad lead in a batch gets its own
errors, the others are scored), and the good ones are concatenated into one set of flat arrays (events
of all leads with a lead index), so a batch costs one feature build and one predict.

Normalisation mirrors ``leadscore.data.validate`` (the batch pipeline's entry), which is what makes the
API, the offline scorer and the pipeline's predictions agree: timestamps become whole UTC seconds
(floored; naive values are UTC), event types and stages are lower-cased, text is stripped with empty
text as missing, and the e-mail domain comes from ``email`` only when ``email_domain`` is absent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any, Final, Literal

import numpy as np

from leadscore.data.contract import EVENT_TYPES, STAGES
from leadscore.features.online import EventArrays, StageArrays
from leadscore.serve.schemas import ScoreRequest

_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE: Final = datetime(1970, 1, 1)
_SECOND: Final = timedelta(seconds=1)
#: At most this many errors are reported per lead (a CRM that sends 5,000 bad events gets the idea).
MAX_ERRORS_PER_LEAD: Final = 20
UNKNOWN_TYPE: Final = -2
_STAGE_SET: Final = frozenset(STAGES)
#: Lead fields read as text as they are.
_LEAD_TEXT: Final = ("job_title", "seniority", "department", "country", "lead_source")


def epoch_seconds(dt: datetime) -> int:
    """Whole seconds since the epoch (floored), naive datetimes taken as UTC."""
    return (dt - (_EPOCH_NAIVE if dt.tzinfo is None else _EPOCH_UTC)) // _SECOND


def iso_utc(seconds: int) -> str:
    """``2025-06-01T00:00:00Z`` for epoch seconds; the year always has four digits (``0999-...``), as
    ISO-8601 asks (``strftime("%Y")`` does not pad years below 1000)."""
    t = time.gmtime(seconds)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}Z"


@dataclass(frozen=True)
class PayloadPolicy:
    """The server settings that decide what a request may contain."""

    unknown_event_types: Literal["reject", "ignore"] = "ignore"
    max_events_per_lead: int = 5000
    max_stage_rows_per_lead: int = 500
    clock_skew_seconds: int = 300


def event_type_lookup(spec_event_types: Sequence[str]) -> dict[str, int]:
    """Event type name -> code for ``EventArrays.type_code``: the spec's index, -1 for contract types the
    spec does not use (known, not counted), absent for unknown types."""
    lookup = {t: -1 for t in EVENT_TYPES}
    lookup.update({t: i for i, t in enumerate(spec_event_types)})
    return lookup


@dataclass
class LeadArrays:
    """The builder's inputs for the leads that passed their checks (row i = ``positions[i]`` of the
    request). ``as_of`` / ``created_at`` are epoch seconds."""

    lead_ids: list[str]
    as_of: np.ndarray
    as_of_text: list[str]
    created_at: np.ndarray
    raw: dict[str, np.ndarray]
    events: EventArrays
    stages: StageArrays

    def __len__(self) -> int:
        return len(self.lead_ids)


@dataclass
class Prepared:
    """``arrays`` of the good leads (request positions ``positions``), ``errors`` by request position
    for the others, and the unknown event types met (name -> count; dropped when the policy is
    ``ignore``)."""

    positions: list[int]
    errors: dict[int, list[dict[str, Any]]]
    unknown_event_types: dict[str, int]
    arrays: LeadArrays


def _text(value: str | None) -> str | None:
    """Stripped text, empty as missing (as the pipeline's loader normalises text)."""
    if not value:
        return None
    return value.strip() or None


def _domain(email: str | None, email_domain: str | None) -> str | None:
    """The e-mail domain, lower-cased: ``email_domain`` when given, else the part after the last '@'."""
    domain = _text(email_domain)
    if domain is not None:
        return domain.lower()
    email = _text(email)
    if email is not None and "@" in email:
        return email.rsplit("@", 1)[1].strip().lower() or None
    return None


def _tech_stack(value: list[str] | str | None) -> str | None:
    """The contract's text form ("a;b;c") of a tech stack given as a list or a string."""
    if value is None or isinstance(value, str):
        return _text(value)
    return ";".join(value)


def epoch_array(values: Sequence[datetime]) -> np.ndarray:
    """``epoch_seconds`` of many datetimes as one int64 array (a timedelta is normalised to days, seconds
    in 0..86399 and microseconds, so days·86400 + seconds is the floor, also before 1970)."""
    deltas = [v - (_EPOCH_NAIVE if v.tzinfo is None else _EPOCH_UTC) for v in values]
    return np.array([d.days * 86400 + d.seconds for d in deltas], dtype=np.int64)


def _flat(rows: list[Sequence[Any]], keep: list[bool]) -> tuple[list[Any], np.ndarray]:
    """The rows of the leads where ``keep`` (all lists concatenated) and their lead index."""
    kept = [r if k else () for r, k in zip(rows, keep, strict=True)]
    counts = [len(r) for r in kept]
    return [x for r in kept for x in r], np.repeat(np.arange(len(rows), dtype=np.int64), counts)


def prepare(
    requests: Sequence[ScoreRequest],
    type_lookup: Mapping[str, int],
    policy: PayloadPolicy,
    default_as_of: datetime | None = None,
    now: float | None = None,
    loc_prefix: tuple[Any, ...] | None = None,
    indices: Sequence[int] | None = None,
) -> Prepared:
    """Check every validated request (``schemas.ScoreRequest``) against its ``as_of`` and the policy;
    return the flat arrays of the good ones.

    ``as_of`` of a lead: its own, else ``default_as_of``, else ``now`` (UTC, whole seconds); only in the
    last case timestamps up to ``clock_skew_seconds`` later are tolerated (they do not count: features
    use events strictly before ``as_of``). ``indices``: the request position of each element (default
    0..n-1), used in ``positions``/``errors`` and, after ``loc_prefix`` (a batch passes ``("leads",)``),
    in error locations; without ``loc_prefix`` locations start at the lead's own fields.

    The checks run on the events and stage rows of all leads at once (NumPy over flat arrays); Python
    loops only over the values themselves and over the leads that fail a check.
    """
    n = len(requests)
    now_s = int(time.time() if now is None else now)
    leads = [r["lead"] for r in requests]
    own = [r.get("as_of") for r in requests]
    if default_as_of is not None:
        fallback, slack = epoch_seconds(default_as_of), 0
    else:
        fallback, slack = now_s, policy.clock_skew_seconds
    as_of = np.array([fallback if o is None else epoch_seconds(o) for o in own], dtype=np.int64)
    limit = as_of + np.array([0 if o is not None else slack for o in own], dtype=np.int64)
    created = epoch_array([lead["created_at"] for lead in leads])

    events = [r.get("events") or () for r in requests]
    n_events = [len(e) for e in events]
    ev_ok = [c <= policy.max_events_per_lead for c in n_events]
    ev, ev_lead = _flat(events, ev_ok)
    ev_ts = epoch_array([e["ts"] for e in ev])
    names = [e["event_type"] for e in ev]
    lookup_get = type_lookup.get
    ev_code = np.fromiter(map(lookup_get, names, repeat(UNKNOWN_TYPE)), np.int64, len(names))
    unknown: dict[str, int] = {}
    ev_unknown = ev_code == UNKNOWN_TYPE
    any_unknown = bool(ev_unknown.any())
    if any_unknown:  # not an exact name: try the normalised one (as the loader does)
        for j in np.flatnonzero(ev_unknown).tolist():
            name = names[j].strip().lower()
            ev_code[j] = lookup_get(name, UNKNOWN_TYPE)
            if ev_code[j] == UNKNOWN_TYPE:
                unknown[name] = unknown.get(name, 0) + 1
        ev_unknown = ev_code == UNKNOWN_TYPE
    ev_late = ev_ts > limit[ev_lead]

    stages = [r.get("stage_history") or () for r in requests]
    n_stages = [len(s) for s in stages]
    st_ok = [c <= policy.max_stage_rows_per_lead for c in n_stages]
    st, st_lead = _flat(stages, st_ok)
    st_ts = epoch_array([s["ts"] for s in st])
    st_name = [s["stage"].strip().lower() for s in st]
    st_unknown = np.array([name not in _STAGE_SET for name in st_name], dtype=bool)
    st_late = st_ts > limit[st_lead]

    reject_unknown = policy.unknown_event_types == "reject"
    bad = created > limit
    if not all(ev_ok) or not all(st_ok):
        bad |= ~np.array(ev_ok, dtype=bool) | ~np.array(st_ok, dtype=bool)
    bad[ev_lead[ev_late | ev_unknown if reject_unknown else ev_late]] = True
    bad[st_lead[st_late | st_unknown]] = True
    pos = list(indices) if indices is not None else list(range(n))
    errors: dict[int, list[dict[str, Any]]] = {}
    any_bad = bool(bad.any())
    if any_bad:
        ev_start = np.concatenate([[0], np.cumsum(np.where(ev_ok, n_events, 0))])
        st_start = np.concatenate([[0], np.cumsum(np.where(st_ok, n_stages, 0))])
        for i in np.flatnonzero(bad).tolist():
            prefix = () if loc_prefix is None else (*loc_prefix, pos[i])
            ev_rows = range(ev_start[i], ev_start[i + 1])
            st_rows = range(st_start[i], st_start[i + 1])
            errs = _lead_errors(
                requests[i],
                int(as_of[i]),
                int(created[i]),
                int(limit[i]),
                policy,
                ev_rows,
                ev_ts,
                ev_unknown,
                st_rows,
                st_ts,
                st_name,
            )
            errors[pos[i]] = [
                {"loc": ["body", *prefix, *loc], "msg": msg, "type": kind}
                for loc, msg, kind in errs[:MAX_ERRORS_PER_LEAD]
            ]

    good = ~bad
    kept = np.flatnonzero(good).tolist() if any_bad else list(range(n))
    if any_bad or any_unknown:
        # Ignored (unknown) types never reach the builder; they are counted in the metrics by the caller.
        ev_keep = good[ev_lead] & ~ev_unknown
        st_keep = good[st_lead]
        rows = np.cumsum(good) - 1  # lead index -> row of the good leads
        ev_lead, ev_ts, ev_code = rows[ev_lead[ev_keep]], ev_ts[ev_keep], ev_code[ev_keep]
        st_lead, st_ts = rows[st_lead[st_keep]], st_ts[st_keep]
        st_name = [name for name, k in zip(st_name, st_keep.tolist(), strict=True) if k]
        as_of, created = as_of[good], created[good]
    g_leads = [leads[i] for i in kept]
    accounts = [requests[i].get("account") or {} for i in kept]
    raw = {c: _object_array([_text(lead.get(c)) for lead in g_leads]) for c in _LEAD_TEXT}
    raw["email_domain"] = _object_array([_domain(x.get("email"), x.get("email_domain")) for x in g_leads])
    raw["_industry"] = _object_array([_text(a.get("industry")) for a in accounts])
    raw["employees"] = _object_array([a.get("employees") for a in accounts])
    raw["annual_revenue"] = _object_array([a.get("annual_revenue") for a in accounts])
    raw["tech_stack"] = _object_array([_tech_stack(a.get("tech_stack")) for a in accounts])
    arrays = LeadArrays(
        lead_ids=[lead["lead_id"] for lead in g_leads],
        as_of=as_of,
        as_of_text=_iso_texts(as_of.tolist()),
        created_at=created,
        raw=raw,
        events=EventArrays(lead=ev_lead, ts=ev_ts, type_code=ev_code),
        stages=StageArrays(lead=st_lead, ts=st_ts, stage=_object_array(st_name)),
    )
    return Prepared([pos[i] for i in kept], errors, unknown, arrays)


def _lead_errors(
    req: ScoreRequest,
    t_as_of: int,
    t_created: int,
    limit: int,
    policy: PayloadPolicy,
    ev_rows: range,
    ev_ts: np.ndarray,
    ev_unknown: np.ndarray,
    st_rows: range,
    st_ts: np.ndarray,
    st_name: list[str],
) -> list[tuple[tuple[Any, ...], str, str]]:
    """(location, message, type) of each problem of one lead that failed a check, in field order."""
    after = f"timestamp is after as_of ({iso_utc(t_as_of)})"
    errs: list[tuple[tuple[Any, ...], str, str]] = []
    if t_created > limit:
        errs.append(
            (("lead", "created_at"), f"created_at is after as_of ({iso_utc(t_as_of)})", "after_as_of")
        )
    events = req.get("events") or ()
    if len(events) > policy.max_events_per_lead:
        msg = f"at most {policy.max_events_per_lead} events per lead, got {len(events)}"
        errs.append((("events",), msg, "too_many_events"))
    else:
        late = [j for j, r in enumerate(ev_rows) if ev_ts[r] > limit]
        errs += [(("events", j, "ts"), after, "after_as_of") for j in late[:MAX_ERRORS_PER_LEAD]]
        if policy.unknown_event_types == "reject":
            bad = [j for j, r in enumerate(ev_rows) if ev_unknown[r]][:MAX_ERRORS_PER_LEAD]
            known = ", ".join(EVENT_TYPES)
            errs += [
                (
                    ("events", j, "event_type"),
                    f"unknown event type {events[j]['event_type']!r}; known: {known}",
                    "unknown_event_type",
                )
                for j in bad
            ]
    stages = req.get("stage_history") or ()
    if len(stages) > policy.max_stage_rows_per_lead:
        msg = f"at most {policy.max_stage_rows_per_lead} stage changes per lead, got {len(stages)}"
        errs.append((("stage_history",), msg, "too_many_stage_changes"))
        return errs
    for j, r in enumerate(st_rows):
        if len(errs) >= MAX_ERRORS_PER_LEAD:
            break
        if st_name[r] not in _STAGE_SET:
            msg = f"unknown stage {stages[j]['stage']!r}; known: {', '.join(STAGES)}"
            errs.append((("stage_history", j, "stage"), msg, "unknown_stage"))
        if st_ts[r] > limit:
            errs.append((("stage_history", j, "ts"), after, "after_as_of"))
    return errs


def _iso_texts(seconds: list[int]) -> list[str]:
    """``iso_utc`` of each value, formatted once per distinct value (a batch shares its as_of)."""
    cache: dict[int, str] = {}
    out = []
    for t in seconds:
        text = cache.get(t)
        if text is None:
            text = cache[t] = iso_utc(t)
        out.append(text)
    return out


def _object_array(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
