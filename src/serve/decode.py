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

One difference is on the loose side, by choice: pydantic's JSON parser refuses any body nested deeper than
~200 levels, msgspec's skipper allows ~1,000. Such nesting can only sit in the fields of events and
stage rows that the contract says are accepted and ignored, so the fast path is the one that keeps the
contract there; checking the depth of every body would cost 40 % of a batch's decode.

Other differences are on the strict side: msgspec rejects ``NaN``/``Infinity`` tokens anywhere,
``employees`` that are not exactly whole (pydantic tolerates ``3.0000000000000004``), timestamps in
the forms ``2025-05-02T14:03Z`` and ``...00,5Z``, and every occurrence of a duplicated key (pydantic
checks the last only). Epoch numbers and epoch strings are refused by both.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec

from leadscore.serve.schemas import BATCH_ADAPTER, SCORE_ADAPTER

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


def _valid_utf8(body: bytes) -> bool:
    """msgspec skips ignored fields unchecked; pydantic refuses a body with invalid UTF-8 anywhere."""
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _safe(body: bytes) -> bool:
    """Whether msgspec's reading of ``body`` can be trusted to agree with pydantic's (see module doc);
    cheap scans of the raw bytes, run before decoding."""
    if not _valid_utf8(body):
        return False
    if _LONG_FRACTION.search(body) is not None:
        return False
    return b"\\" not in body or _ESCAPED_DIGIT.search(body) is None


def decode_score(body: bytes) -> ScoreReq | None:
    """The single-lead request in ``body`` (raw JSON), or None when the fast path does not accept it (the
    caller then runs ``schemas.SCORE_ADAPTER`` for the verdict and the errors)."""
    if not _safe(body):
        return None
    try:
        return _SCORE_DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None


def decode_batch(body: bytes) -> BatchReq | None:
    """The batch request in ``body`` (raw JSON), or None when the fast path does not accept it (the
    caller then runs ``schemas.BATCH_ADAPTER``)."""
    if not _safe(body):
        return None
    try:
        return _BATCH_DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None


# ---- the batch path: the same Structs with timestamps kept as text ------------------------------------
# A batch carries ~16 events per lead; turning 16,000 timestamps into datetimes and then into epoch seconds
# one by one costs more than the rest of its parsing. These Structs keep every timestamp as its JSON text,
# and ``leadscore.serve.columnar`` converts them all at once (``isotime``), asking pydantic only about
# strings outside the common ISO form. Since no datetime is read here, msgspec's rounding of long
# fractions cannot differ from pydantic's and ``_safe``'s fraction scan is not needed.

TsText = Annotated[str, msgspec.Meta(max_length=64)]


class LeadT(Lead):
    """``Lead`` with ``created_at`` as text."""

    created_at: TsText  # type: ignore[assignment]


class EventT(Event):
    """``Event`` with ``ts`` as text."""

    ts: TsText  # type: ignore[assignment]


class StageChangeT(StageChange):
    """``StageChange`` with ``ts`` as text."""

    ts: TsText  # type: ignore[assignment]


class ScoreReqT(msgspec.Struct, forbid_unknown_fields=True):
    """``ScoreReq`` with its timestamps as text."""

    lead: LeadT
    account: Account | None = None
    events: list[EventT] = msgspec.field(default_factory=list)
    stage_history: list[StageChangeT] = msgspec.field(default_factory=list)
    as_of: TsText | None = None


class BatchReqT(msgspec.Struct, forbid_unknown_fields=True):
    """``BatchReq`` with its timestamps as text."""

    leads: Annotated[list[ScoreReqT], msgspec.Meta(min_length=1)]
    as_of: TsText | None = None


_BATCH_TEXT_DECODER: Final = msgspec.json.Decoder(BatchReqT)


def decode_batch_text(body: bytes) -> BatchReqT | None:
    """The batch in ``body`` with timestamps as text, or None when msgspec refuses it (the caller then takes
    the ``parse_batch`` path, whose pydantic fallback gives the verdict and the errors)."""
    if not _valid_utf8(body):
        return None
    try:
        return _BATCH_TEXT_DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None


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


# ---- what the API and the offline scorer call ----------------------------------------------------------


def parse_score(body: bytes) -> ScoreReq:
    """A single-lead request from raw JSON: the fast path, else pydantic (raises its ``ValidationError``
    with the field-level errors)."""
    req = decode_score(body)
    return req if req is not None else to_score_req(SCORE_ADAPTER.validate_json(body))


def parse_batch(body: bytes) -> BatchReq:
    """A batch request from raw JSON: the fast path, else pydantic (raises its ``ValidationError``)."""
    req = decode_batch(body)
    return req if req is not None else to_batch_req(BATCH_ADAPTER.validate_json(body))
