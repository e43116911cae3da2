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
from typing import Any, Final, Literal

import numpy as np

from leadscore.data.contract import EVENT_TYPES, STAGES
from leadscore.features.online import RAW_ATTRIBUTE_COLUMNS, EventArrays, StageArrays
from leadscore.serve.schemas import ScoreRequest

_EPOCH_UTC: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE: Final = datetime(1970, 1, 1)
_SECOND: Final = timedelta(seconds=1)
#: At most this many errors are reported per lead (a CRM that sends 5,000 bad events gets the idea).
MAX_ERRORS_PER_LEAD: Final = 20
UNKNOWN_TYPE: Final = -2
_STAGE_SET: Final = frozenset(STAGES)


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
    return the flat lists of the good ones.

    ``as_of`` of a lead: its own, else ``default_as_of``, else ``now`` (UTC, whole seconds); only in the
    last case timestamps up to ``clock_skew_seconds`` later are tolerated (they do not count: features
    use events strictly before ``as_of``). ``indices``: the request position of each element (default
    0..n-1), used in ``positions``/``errors`` and, after ``loc_prefix`` (a batch passes ``("leads",)``),
    in error locations; without ``loc_prefix`` locations start at the lead's own fields.
    """
    now_s = int(time.time() if now is None else now)
    default_s = epoch_seconds(default_as_of) if default_as_of is not None else None
    reject_unknown = policy.unknown_event_types == "reject"
    lookup_get = type_lookup.get

    ids: list[str] = []
    as_of: list[int] = []
    created: list[int] = []
    positions: list[int] = []
    errors: dict[int, list[dict[str, Any]]] = {}
    unknown: dict[str, int] = {}
    cols: dict[str, list[Any]] = {c: [] for c in RAW_ATTRIBUTE_COLUMNS}
    ev_counts: list[int] = []
    ev_ts: list[int] = []
    ev_code: list[int] = []
    st_counts: list[int] = []
    st_ts: list[int] = []
    st_stage: list[str] = []

    for k, req in enumerate(requests):
        pos = indices[k] if indices is not None else k
        prefix: tuple[Any, ...] = () if loc_prefix is None else (*loc_prefix, pos)
        errs: list[dict[str, Any]] = []

        def add(loc: tuple[Any, ...], msg: str, kind: str, errs: list = errs, prefix: tuple = prefix) -> None:
            errs.append({"loc": ["body", *prefix, *loc], "msg": msg, "type": kind})

        lead = req["lead"]
        own_as_of = req.get("as_of")
        if own_as_of is not None:
            t_as_of = limit = epoch_seconds(own_as_of)
        elif default_s is not None:
            t_as_of = limit = default_s
        else:
            t_as_of, limit = now_s, now_s + policy.clock_skew_seconds
        t_created = epoch_seconds(lead["created_at"])
        if t_created > limit:
            add(("lead", "created_at"), f"created_at is after as_of ({iso_utc(t_as_of)})", "after_as_of")

        events = req.get("events") or ()
        if len(events) > policy.max_events_per_lead:
            add(
                ("events",),
                f"at most {policy.max_events_per_lead} events per lead, got {len(events)}",
                "too_many_events",
            )
            e_ts: list[int] = []
            e_code: list[int] = []
        else:
            # epoch_seconds inlined: this line runs once per event of the request
            e_ts = [
                (e["ts"] - (_EPOCH_NAIVE if e["ts"].tzinfo is None else _EPOCH_UTC)) // _SECOND
                for e in events
            ]
            e_code = [lookup_get(e["event_type"], UNKNOWN_TYPE) for e in events]
            if UNKNOWN_TYPE in e_code:  # not an exact name: try the normalised one (as the loader does)
                e_code = [
                    c if c != UNKNOWN_TYPE else lookup_get(e["event_type"].strip().lower(), UNKNOWN_TYPE)
                    for c, e in zip(e_code, events, strict=True)
                ]
            if e_ts and max(e_ts) > limit:
                late = [j for j, s in enumerate(e_ts) if s > limit]
                for j in late[:MAX_ERRORS_PER_LEAD]:
                    add(("events", j, "ts"), f"timestamp is after as_of ({iso_utc(t_as_of)})", "after_as_of")
            bad = [j for j, c in enumerate(e_code) if c == UNKNOWN_TYPE] if UNKNOWN_TYPE in e_code else []
            if bad:
                for j in bad:
                    name = events[j]["event_type"].strip().lower()
                    unknown[name] = unknown.get(name, 0) + 1
                if reject_unknown:
                    for j in bad[:MAX_ERRORS_PER_LEAD]:
                        add(
                            ("events", j, "event_type"),
                            f"unknown event type {events[j]['event_type']!r}; known: "
                            + ", ".join(EVENT_TYPES),
                            "unknown_event_type",
                        )
                else:
                    # Ignored types never reach the builder (counted in the metrics by the caller).
                    keep = [j for j, c in enumerate(e_code) if c != UNKNOWN_TYPE]
                    e_ts = [e_ts[j] for j in keep]
                    e_code = [e_code[j] for j in keep]

        stages = req.get("stage_history") or ()
        if len(stages) > policy.max_stage_rows_per_lead:
            add(
                ("stage_history",),
                f"at most {policy.max_stage_rows_per_lead} stage changes per lead, got {len(stages)}",
                "too_many_stage_changes",
            )
            s_ts: list[int] = []
            s_stage: list[str] = []
        else:
            s_ts = [epoch_seconds(s["ts"]) for s in stages]
            s_stage = [s["stage"].strip().lower() for s in stages]
            for j, (t, name) in enumerate(zip(s_ts, s_stage, strict=True)):
                if len(errs) >= MAX_ERRORS_PER_LEAD:
                    break
                if name not in _STAGE_SET:
                    add(
                        ("stage_history", j, "stage"),
                        f"unknown stage {stages[j]['stage']!r}; known: {', '.join(STAGES)}",
                        "unknown_stage",
                    )
                if t > limit:
                    add(
                        ("stage_history", j, "ts"),
                        f"timestamp is after as_of ({iso_utc(t_as_of)})",
                        "after_as_of",
                    )

        if errs:
            errors[pos] = errs[:MAX_ERRORS_PER_LEAD]
            continue
        positions.append(pos)
        ids.append(lead["lead_id"])
        as_of.append(t_as_of)
        created.append(t_created)
        get = lead.get
        cols["job_title"].append(_text(get("job_title")))
        cols["seniority"].append(_text(get("seniority")))
        cols["department"].append(_text(get("department")))
        cols["country"].append(_text(get("country")))
        cols["lead_source"].append(_text(get("lead_source")))
        cols["email_domain"].append(_domain(get("email"), get("email_domain")))
        acc = req.get("account")
        if acc is None:
            for c in ("_industry", "employees", "annual_revenue", "tech_stack"):
                cols[c].append(None)
        else:
            cols["_industry"].append(_text(acc.get("industry")))
            cols["employees"].append(acc.get("employees"))
            cols["annual_revenue"].append(acc.get("annual_revenue"))
            cols["tech_stack"].append(_tech_stack(acc.get("tech_stack")))
        ev_counts.append(len(e_ts))
        ev_ts.extend(e_ts)
        ev_code.extend(e_code)
        st_counts.append(len(s_ts))
        st_ts.extend(s_ts)
        st_stage.extend(s_stage)

    rows = np.arange(len(ids), dtype=np.int64)
    arrays = LeadArrays(
        lead_ids=ids,
        as_of=np.asarray(as_of, dtype=np.int64),
        as_of_text=_iso_texts(as_of),
        created_at=np.asarray(created, dtype=np.int64),
        raw={c: _object_array(v) for c, v in cols.items()},
        events=EventArrays(
            lead=np.repeat(rows, ev_counts),
            ts=np.asarray(ev_ts, dtype=np.int64),
            type_code=np.asarray(ev_code, dtype=np.int64),
        ),
        stages=StageArrays(
            lead=np.repeat(rows, st_counts),
            ts=np.asarray(st_ts, dtype=np.int64),
            stage=_object_array(st_stage),
        ),
    )
    return Prepared(positions, errors, unknown, arrays)


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
