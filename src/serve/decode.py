"""The fast path of request parsing: msgspec Structs mirroring ``leadscore.serve.schemas``.

The API first tries ``decode_score`` / ``decode_batch`` (msgspec, ~4x faster than pydantic on a batch of
1,000 leads); on ``None`` it runs the pydantic adapters, which either accept the body (their output is
then turned into the same Structs by ``to_score_req`` / ``to_batch_req``) or produce the field-level 422
errors. Pydantic stays the authority, so the contract here is one-sided: whatever these decoders accept,
pydantic accepts with the same values (msgspec may be stricter, never looser). The property test in
``tests/serve/test_decode.py`` checks it.

Where msgspec alone would be looser or differ, the body is pre-checked and handed to pydantic:

* fractional seconds with more than 6 digits: msgspec rounds to microseconds, pydantic truncates
  (``.9999995`` would land in the next second, and payload floors timestamps to whole seconds);
* invalid UTF-8 inside ignored fields (msgspec skips them unchecked, pydantic rejects the body);
* nesting deeper than ``MAX_DEPTH`` (only possible in ignored event/stage fields; pydantic's JSON parser
  rejects bodies nested deeper than ~200 levels, msgspec's skipper allows ~1,000).

Other differences are on the strict side: msgspec rejects ``NaN``/``Infinity`` tokens anywhere,
``employees`` that are not exactly whole (pydantic tolerates ``3.0000000000000004``), timestamps in
the forms ``2025-05-02T14:03Z``, ``...00,5Z`` and epoch strings (``"1714658580"``, which pydantic's
strict datetime accepts), and every occurrence of a duplicated key (pydantic checks the last only).
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
import numpy as np

#: Bodies nested deeper than this go to pydantic (its JSON parser stops at ~200 levels).
MAX_DEPTH: Final = 128
_MAX_FLOAT: Final = sys.float_info.max

Text = Annotated[str, msgspec.Meta(max_length=512)] | None
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
#: Finite by ``le``: a JSON number that overflows to inf is out of range (pydantic: allow_inf_nan=False).
Count = Annotated[float, msgspec.Meta(ge=0, le=_MAX_FLOAT, multiple_of=1)] | None
Amount = Annotated[float, msgspec.Meta(ge=0, le=_MAX_FLOAT)] | None
TechStack = (
    list[Annotated[str, msgspec.Meta(max_length=128)]] | Annotated[str, msgspec.Meta(max_length=4096)] | None
)


class Lead(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """``schemas.LeadIn``."""

    lead_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    created_at: datetime
    account_id: Text = None
    email: Text = None
    email_domain: Text = None
    job_title: Text = None
    seniority: Text = None
    department: Text = None
    country: Text = None
    lead_source: Text = None
    first_name: Text = None
    last_name: Text = None


class Account(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """``schemas.AccountIn``."""

    account_id: Text = None
    name: Text = None
    domain: Text = None
    industry: Text = None
    employees: Count = None
    annual_revenue: Amount = None
    country: Text = None
    tech_stack: TechStack = None


class Event(msgspec.Struct, gc=False):
    """``schemas.EventIn``; other fields (``event_id``, ``properties``, ...) are ignored."""

    ts: datetime
    event_type: Name


class StageChange(msgspec.Struct, gc=False):
    """``schemas.StageChangeIn``; other fields (``owner``, ...) are ignored."""

    stage: Name
    ts: datetime
    reason: Text = None


class ScoreReq(msgspec.Struct, forbid_unknown_fields=True):
    """``schemas.ScoreRequest``; absent ``events`` / ``stage_history`` are empty lists."""

    lead: Lead
    account: Account | None = None
    events: list[Event] = msgspec.field(default_factory=list)
    stage_history: list[StageChange] = msgspec.field(default_factory=list)
    as_of: datetime | None = None


class BatchReq(msgspec.Struct, forbid_unknown_fields=True):
    """``schemas.BatchRequest``."""

    leads: Annotated[list[ScoreReq], msgspec.Meta(min_length=1)]
    as_of: datetime | None = None


_SCORE_DECODER: Final = msgspec.json.Decoder(ScoreReq)
_BATCH_DECODER: Final = msgspec.json.Decoder(BatchReq)

#: A fraction of a second with more than 6 digits (also matches such floats: they only cost a fallback).
_LONG_FRACTION: Final = re.compile(rb"\.[0-9]{7}")
#: A digit or a '.' written as a \u escape would hide a long fraction from ``_LONG_FRACTION``.
_ESCAPED_DIGIT: Final = re.compile(rb"\\u00(?:3[0-9]|2[eE])")
_NOT_STRUCTURE: Final = bytes(sorted(set(range(256)) - set(b'"[]{}')))
_STEP: Final = np.zeros(256, np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def _nesting_ok(body: bytes) -> bool:
    """Whether no array/object of ``body`` (valid JSON) is nested deeper than ``MAX_DEPTH``."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return True
    if b"\\" in body:
        # Escaped backslashes first, then escaped quotes: what is left of '"' delimits strings.
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = np.frombuffer(body.translate(None, _NOT_STRUCTURE), np.uint8)
    # Brackets after an odd number of quotes are inside strings (uint8 wraps, parity survives).
    in_string = (np.cumsum(marks == ord('"'), dtype=np.uint8) & 1).view(bool)
    step = _STEP[marks]
    step[in_string] = 0
    return int(np.cumsum(step, dtype=np.int32).max(initial=0)) <= MAX_DEPTH


def _safe(body: bytes) -> bool:
    """Whether msgspec's reading of ``body`` can be trusted to agree with pydantic's (see module doc);
    cheap scans of the raw bytes, run before decoding."""
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return False
    if _LONG_FRACTION.search(body) is not None:
        return False
    if b"\\" in body and _ESCAPED_DIGIT.search(body) is not None:
        return False
    return True


def decode_score(body: bytes) -> ScoreReq | None:
    """The single-lead request in ``body`` (raw JSON), or None when the fast path does not accept it (the
    caller then runs ``schemas.SCORE_ADAPTER`` for the verdict and the errors)."""
    if not _safe(body):
        return None
    try:
        req = _SCORE_DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    return req if _nesting_ok(body) else None


def decode_batch(body: bytes) -> BatchReq | None:
    """The batch request in ``body`` (raw JSON), or None when the fast path does not accept it (the
    caller then runs ``schemas.BATCH_ADAPTER``)."""
    if not _safe(body):
        return None
    try:
        req = _BATCH_DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    return req if _nesting_ok(body) else None


# ---- the fallback: pydantic's validated dicts -> Structs ---------------------------------------------
# Built field by field, not with msgspec.convert: the input is already validated by the authority, and
# msgspec's stricter checks would refuse some of what pydantic accepted (e.g. employees=3.0000000000000004).


def _account(acc: dict[str, Any] | None) -> Account | None:
    return None if acc is None else Account(**acc)


def to_score_req(validated: dict[str, Any]) -> ScoreReq:
    """``ScoreReq`` from the output of ``SCORE_ADAPTER.validate_json`` (a plain dict, datetimes)."""
    return ScoreReq(
        lead=Lead(**validated["lead"]),
        account=_account(validated.get("account")),
        events=[Event(e["ts"], e["event_type"]) for e in validated.get("events", ())],
        stage_history=[
            StageChange(s["stage"], s["ts"], s.get("reason")) for s in validated.get("stage_history", ())
        ],
        as_of=validated.get("as_of"),
    )


def to_batch_req(validated: dict[str, Any]) -> BatchReq:
    """``BatchReq`` from the output of ``BATCH_ADAPTER.validate_json``."""
    return BatchReq(leads=[to_score_req(r) for r in validated["leads"]], as_of=validated.get("as_of"))
