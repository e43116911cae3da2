"""The msgspec fast path never accepts what pydantic (the authority) rejects, and agrees on the values."""

from __future__ import annotations

import copy
import json
import math
import sys
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.serve.decode import (
    Account,
    BatchReq,
    Event,
    Lead,
    ScoreReq,
    StageChange,
    decode_batch,
    decode_score,
    to_batch_req,
    to_score_req,
)
from leadscore.serve.schemas import BATCH_ADAPTER, EXAMPLE_BATCH, EXAMPLE_REQUEST, SCORE_ADAPTER


class Raw:
    """JSON text put into a body as is (numbers like 1e400 that Python cannot hold)."""

    def __init__(self, text: str) -> None:
        self.text = text


def dumps(obj: Any, ascii_only: bool = False) -> bytes:
    """JSON of ``obj`` with ``Raw`` fragments; NaN/Infinity are written as the (invalid) JSON tokens."""
    if isinstance(obj, Raw):
        return obj.text.encode()
    if isinstance(obj, dict):
        items = (
            json.dumps(k, ensure_ascii=ascii_only).encode() + b":" + dumps(v, ascii_only)
            for k, v in obj.items()
        )
        return b"{" + b",".join(items) + b"}"
    if isinstance(obj, list):
        return b"[" + b",".join(dumps(v, ascii_only) for v in obj) + b"]"
    return json.dumps(obj, ensure_ascii=ascii_only).encode()


def same(fast: Any, slow: Any, where: str) -> None:
    """One field: equal values of the same kind; datetimes equal as instants and both naive or aware."""
    if isinstance(fast, datetime) or isinstance(slow, datetime):
        assert isinstance(fast, datetime) and isinstance(slow, datetime), where
        assert (fast.tzinfo is None) == (slow.tzinfo is None), where
        assert fast == slow, where
        if fast.tzinfo is not None:
            assert fast.utcoffset() == slow.utcoffset(), where
        return
    assert type(fast) is type(slow), (where, fast, slow)
    assert fast == slow, (where, fast, slow)


def same_request(fast: ScoreReq, slow: dict[str, Any], where: str = "") -> None:
    for f in Lead.__struct_fields__:
        same(getattr(fast.lead, f), slow["lead"].get(f), f"{where}lead.{f}")
    acc = slow.get("account")
    if fast.account is None:
        assert acc is None, where
    else:
        for f in Account.__struct_fields__:
            same(getattr(fast.account, f), acc.get(f), f"{where}account.{f}")
    events = slow.get("events", [])
    assert len(fast.events) == len(events), where
    for j, (e, p) in enumerate(zip(fast.events, events, strict=True)):
        same(e.ts, p["ts"], f"{where}events.{j}.ts")
        same(e.event_type, p["event_type"], f"{where}events.{j}.event_type")
    stages = slow.get("stage_history", [])
    assert len(fast.stage_history) == len(stages), where
    for j, (s, p) in enumerate(zip(fast.stage_history, stages, strict=True)):
        same(s.stage, p["stage"], f"{where}stage_history.{j}.stage")
        same(s.ts, p["ts"], f"{where}stage_history.{j}.ts")
        same(s.reason, p.get("reason"), f"{where}stage_history.{j}.reason")
    same(fast.as_of, slow.get("as_of"), f"{where}as_of")


def check_score(body: bytes) -> ScoreReq | None:
    """decode_score accepts -> pydantic accepts, same values, and the fallback conversion is equal."""
    fast = decode_score(body)
    if fast is not None:
        slow = SCORE_ADAPTER.validate_json(body)  # raises (fails the test) when pydantic rejects
        same_request(fast, slow)
        assert to_score_req(slow) == fast
    return fast


def check_batch(body: bytes) -> BatchReq | None:
    fast = decode_batch(body)
    if fast is not None:
        slow = BATCH_ADAPTER.validate_json(body)
        assert len(fast.leads) == len(slow["leads"])
        for i, (f, s) in enumerate(zip(fast.leads, slow["leads"], strict=True)):
            same_request(f, s, f"leads.{i}.")
        same(fast.as_of, slow.get("as_of"), "as_of")
        assert to_batch_req(slow) == fast
    return fast


# ---- (a) the documented examples --------------------------------------------------------------------


def test_examples_decode_like_pydantic() -> None:
    assert check_score(json.dumps(EXAMPLE_REQUEST).encode()) is not None
    batch = check_batch(json.dumps(EXAMPLE_BATCH).encode())
    assert batch is not None and len(batch.leads) == 1
    req = batch.leads[0]
    assert (
        req.account is not None
        and req.account.employees == 240.0
        and req.account.tech_stack
        == [
            "hubspot",
            "aws",
            "snowflake",
        ]
    )
    assert req.events[2].ts.utcoffset().total_seconds() == 7200  # the +02:00 event keeps its offset
    assert req.lead.seniority is None and req.lead.email_domain is None


def test_defaults_match_payload_reads() -> None:
    """Absent events/stage_history are empty lists (payload reads ``events or ()``), optional fields None."""
    req = check_score(b'{"lead":{"lead_id":"a","created_at":"2025-01-01T00:00:00"}}')
    assert req is not None
    assert req.events == [] and req.stage_history == [] and req.account is None and req.as_of is None
    assert req.lead.created_at.tzinfo is None  # naive stays naive (payload takes it as UTC)


# ---- (d) unknown fields ------------------------------------------------------------------------------


def test_unknown_fields_ignored_in_rows_rejected_elsewhere() -> None:
    base = copy.deepcopy(EXAMPLE_REQUEST)
    base["events"][0].update(event_id="e1", properties={"a": [1, {"b": None}]}, owner="x")
    base["stage_history"][0].update(owner="me", extra=[1, 2])
    req = check_score(json.dumps(base).encode())
    assert req is not None and req.events[0] == Event(req.events[0].ts, "webinar_register")
    assert req.stage_history[0] == StageChange("mql", req.stage_history[0].ts, None)
    for where in ("lead", "account"):
        bad = copy.deepcopy(EXAMPLE_REQUEST)
        bad[where]["employes"] = 3
        assert decode_score(json.dumps(bad).encode()) is None
    assert decode_score(json.dumps({**EXAMPLE_REQUEST, "extra": 1}).encode()) is None
    assert decode_batch(json.dumps({**EXAMPLE_BATCH, "extra": 1}).encode()) is None


# ---- targeted cases where plain msgspec would differ from pydantic -----------------------------------


def _with_event_extra(text: bytes) -> bytes:
    return (
        b'{"lead":{"lead_id":"a","created_at":"2025-01-01T00:00:00Z"},"events":[{"ts":"2025-01-01T00:00:00Z","event_type":"x","p":%s}]}'
        % text
    )


@pytest.mark.parametrize(
    "number", ["1e400", "-1e400", "1" + "0" * 400, "1.7976931348623159e308", "NaN", "Infinity"]
)
def test_overflowing_numbers_rejected(number: str) -> None:
    body = dumps(
        {
            "lead": {"lead_id": "a", "created_at": "2025-01-01T00:00:00Z"},
            "account": {"annual_revenue": Raw(number)},
        }
    )
    assert decode_score(body) is None
    with pytest.raises(ValueError):
        SCORE_ADAPTER.validate_json(body)


def test_largest_finite_number_accepted() -> None:
    """``le`` is the largest float, not less (written as an integer: 1.79...e308 has a long fraction)."""
    biggest = Raw(str(int(sys.float_info.max)))
    lead = {"lead_id": "a", "created_at": "2025-01-01T00:00:00Z"}
    req = check_score(dumps({"lead": lead, "account": {"employees": biggest, "annual_revenue": biggest}}))
    assert req is not None and req.account.annual_revenue == sys.float_info.max


@pytest.mark.parametrize(
    "ts",
    ["2025-05-02T14:03:00.9999995Z", "2025-05-02T14:03:00.1234567+05:30", "2025-05-02T14:03:00.123456789"],
)
def test_long_fractions_go_to_pydantic(ts: str) -> None:
    """msgspec rounds to microseconds, pydantic truncates: such bodies take the pydantic path."""
    body = json.dumps({"lead": {"lead_id": "a", "created_at": ts}}).encode()
    assert decode_score(body) is None
    assert SCORE_ADAPTER.validate_json(body)["lead"]["created_at"].microsecond == int(ts[20:26])
    escaped = body.replace(b"00.", b"00\\u002e")  # the '.' written as an escape
    assert decode_score(escaped) is None


def test_invalid_utf8_in_ignored_field_goes_to_pydantic() -> None:
    for raw in (b'"\xff"', b'"\xed\xa0\x80"', b'"\xc0\xaf"'):
        assert decode_score(_with_event_extra(raw)) is None


@pytest.mark.parametrize("shape", ["[%s]", '{"k":%s}', '[1,{"k":%s}]'])
def test_deep_nesting_in_ignored_field(shape: str) -> None:
    """The one chosen difference (module doc): nesting in an ignored field is ignored by the fast path,
    even past pydantic's parser limit; absurd depths are refused by msgspec too."""
    per_step = shape.count("[") + shape.count("{")

    def nest(depth: int) -> bytes:
        text = "0"
        for _ in range(depth // per_step):
            text = shape % text
        return text.encode()

    assert check_score(_with_event_extra(nest(50))) is not None
    deep = _with_event_extra(nest(400))
    with pytest.raises(ValueError):
        SCORE_ADAPTER.validate_json(deep)
    assert decode_score(deep) is not None
    assert decode_score(_with_event_extra(nest(20000))) is None


def test_fallback_conversion_takes_what_pydantic_accepts() -> None:
    """Pydantic tolerates float noise in employees (msgspec does not): the fallback still converts it."""
    body = dumps(
        {
            "lead": {"lead_id": "a", "created_at": "2025-01-01T00:00:00Z"},
            "account": {"employees": Raw("3.0000000000000004")},
        }
    )
    assert decode_score(body) is None
    req = to_score_req(SCORE_ADAPTER.validate_json(body))
    assert req.account == Account(employees=3.0000000000000004)


def test_duplicate_keys_are_never_looser() -> None:
    body = b'{"lead":{"lead_id":"a","created_at":"2025-01-01T00:00:00Z","country":"%s","country":"DE"}}'
    assert decode_score(body % (b"x" * 600)) is None  # pydantic keeps the last only
    assert check_score(body % b"FR").lead.country == "DE"


# ---- (b, c) property test ----------------------------------------------------------------------------

_DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=9)


@st.composite
def valid_timestamps(draw: st.DrawFn) -> str:
    """Well-formed RFC 3339 / ISO timestamps in all the spellings both sides may accept."""
    day = draw(st.sampled_from(["2025-05-02", "2024-02-29", "1970-01-01", "2025-12-31"]))
    sep = draw(st.sampled_from(["T", "t", " "]))
    # 7-9 digits rarely: any of them sends the whole body to pydantic (see decode._safe)
    n_digits = draw(st.integers(7, 9)) if draw(st.integers(0, 19)) == 19 else draw(st.integers(0, 6))
    frac = draw(st.text(alphabet="0123456789", min_size=n_digits, max_size=n_digits))
    offset = draw(
        st.sampled_from(["", "Z", "z", "+00:00", "-00:00", "+05:30", "-05:30", "+0530", "+23:59", "-23:59"])
    )
    hms = f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}:{draw(st.integers(0, 59)):02d}"
    return f"{day}{sep}{hms}{'.' + frac if frac else ''}{offset}"


@st.composite
def odd_timestamps(draw: st.DrawFn) -> Any:
    """Odd timestamps: date only, bad separators, hour 24, leap second 60, odd offsets, epochs, junk."""
    kind = draw(st.sampled_from(["iso"] * 6 + ["date", "epoch_str", "epoch_num", "garbage"]))
    if kind == "date":
        return draw(st.sampled_from(["2025-05-02", "2025-5-2", "20250502"]))
    if kind == "epoch_str":
        return str(draw(st.integers(0, 2_000_000_000_000)))
    if kind == "epoch_num":
        return draw(st.integers(0, 2_000_000_000) | st.floats(0, 2e9))
    if kind == "garbage":
        return draw(st.text(max_size=30))
    year = draw(st.sampled_from(["2025", "0001", "9999", "0000", "10000"]))
    month = draw(st.sampled_from(["01", "02", "12", "13", "00", "1"]))
    day = draw(st.sampled_from(["01", "29", "30", "31", "32"]))
    sep = draw(st.sampled_from(["T", "t", " ", "_", ""]))
    hour = draw(st.sampled_from(["00", "23", "24", "9"]))
    minute = draw(st.sampled_from(["00", "59", "60"]))
    second = draw(st.sampled_from([":00", ":59", ":60", ":61", ""]))
    frac = draw(st.sampled_from(["", "", ".", ","]))
    if frac:
        frac += draw(_DIGITS | st.just(""))
    offset = draw(
        st.sampled_from(
            [
                "",
                "Z",
                "z",
                "+00:00",
                "-00:00",
                "+05:30",
                "+0530",
                "+05",
                "+24:00",
                "+23:59",
                "-23:59",
                "+00:60",
                " Z",
                "+05:30:15",
                "UTC",
                "+5:30",
            ]
        )
    )
    return f"{year}-{month}-{day}{sep}{hour}:{minute}{second}{frac}{offset}"


@st.composite
def timestamps(draw: st.DrawFn) -> Any:
    """Mostly well-formed (so that the fast path accepts often enough to compare values), else odd."""
    return draw(odd_timestamps()) if draw(st.integers(0, 9)) >= 8 else draw(valid_timestamps())


_TEXT = (
    st.text(max_size=6)
    | st.text(min_size=500, max_size=520)
    | st.sampled_from(["", " ", "é" * 512, "😀" * 513])
)


def _short(x: float) -> float:
    """Most floats with 2 decimals (a 7-digit fraction sends any body to pydantic, see decode._safe)."""
    return round(x, 2) if math.isfinite(x) and abs(x) < 1e12 else x


_NUMBERS = (
    st.integers(-5, 10**6)
    | st.floats(allow_nan=True, allow_infinity=True).map(_short)
    | st.sampled_from(
        [
            Raw("1e400"),
            Raw("-0"),
            Raw("-0.0"),
            Raw("2.5"),
            Raw("1e16"),
            Raw("3.0000000000000004"),
            Raw("18446744073709551617"),
            Raw("1E2"),
            Raw("1.7976931348623157e308"),
            Raw("1e-400"),
        ]
    )
)
_ANY = st.none() | st.booleans() | _NUMBERS | _TEXT | st.lists(st.integers(), max_size=2) | st.just({"x": 1})


def _maybe(draw: st.DrawFn, valid: st.SearchStrategy[Any], p_odd: float = 0.03) -> Any:
    """Mostly a value of ``valid``, sometimes any JSON value (a wrong type)."""
    return draw(_ANY) if draw(st.integers(0, 999)) >= 1000 * (1 - p_odd) else draw(valid)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    text = st.none() | _TEXT
    lead: dict[str, Any] = {
        "lead_id": _maybe(
            draw, st.text(min_size=1, max_size=4) | st.sampled_from(["x" * 256, "x" * 257, ""])
        ),
        "created_at": _maybe(draw, timestamps()),
    }
    for f in draw(st.sets(st.sampled_from(Lead.__struct_fields__[2:]), max_size=4)):
        lead[f] = _maybe(draw, text)
    if draw(st.integers(0, 20)) == 20:
        lead["employes"] = 3
    if draw(st.integers(0, 20)) == 20:
        del lead[draw(st.sampled_from(["lead_id", "created_at"]))]
    req: dict[str, Any] = {"lead": lead}
    if draw(st.booleans()):
        acc: dict[str, Any] = {}
        for f in draw(st.sets(st.sampled_from(Account.__struct_fields__), max_size=5)):
            if f in ("employees", "annual_revenue"):
                acc[f] = _maybe(draw, st.none() | _NUMBERS, 0.05)
            elif f == "tech_stack":
                acc[f] = _maybe(
                    draw,
                    st.none()
                    | st.lists(st.text(max_size=5) | st.text(min_size=126, max_size=130), max_size=3)
                    | st.text(max_size=5)
                    | st.text(min_size=4090, max_size=4100),
                )
            else:
                acc[f] = _maybe(draw, text)
        if draw(st.integers(0, 20)) == 20:
            acc["revenue"] = 1
        req["account"] = draw(st.just(acc) | st.none())
    if draw(st.booleans()):
        rows = []
        for _ in range(draw(st.integers(0, 3))):
            row = {
                "ts": _maybe(draw, timestamps()),
                "event_type": _maybe(draw, st.text(max_size=3) | st.text(min_size=63, max_size=66)),
            }
            if draw(st.booleans()):
                row["properties"] = draw(st.just({"path": "/p", "n": [1, {"a": None}]}) | _ANY)
            if draw(st.integers(0, 10)) == 10:
                del row[draw(st.sampled_from(["ts", "event_type"]))]
            rows.append(row)
        req["events"] = _maybe(draw, st.just(rows), 0.05)
    if draw(st.booleans()):
        rows = []
        for _ in range(draw(st.integers(0, 2))):
            row = {"stage": _maybe(draw, st.text(max_size=3)), "ts": _maybe(draw, timestamps())}
            if draw(st.booleans()):
                row["reason"] = _maybe(draw, text)
            if draw(st.booleans()):
                row["owner"] = "x"
            rows.append(row)
        req["stage_history"] = _maybe(draw, st.just(rows), 0.05)
    if draw(st.booleans()):
        req["as_of"] = draw(st.none() | timestamps())
    if draw(st.integers(0, 30)) == 30:
        req["extra"] = 1
    return req


_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(requests(), st.booleans())
def test_score_fast_path_never_looser(req: dict[str, Any], ascii_only: bool) -> None:
    check_score(dumps(req, ascii_only))


@_SETTINGS
@given(st.lists(requests(), min_size=0, max_size=3), st.none() | timestamps(), st.booleans())
def test_batch_fast_path_never_looser(leads: list[dict[str, Any]], as_of: Any, ascii_only: bool) -> None:
    body: dict[str, Any] = {"leads": leads}
    if as_of is not None:
        body["as_of"] = as_of
    check_batch(dumps(body, ascii_only))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["2025-05-02", "2024-02-29", "0001-01-01", "9999-12-31"]),
    st.sampled_from(["T", "t", " "]),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.text(alphabet="0123456789", max_size=9),
    st.sampled_from(["", "Z", "z", "+05:30", "-00:00", "+0530", "-23:59", "+23:59", "+01:00"]),
)
def test_valid_timestamps_agree(day: str, sep: str, h: int, m: int, s: int, frac: str, offset: str) -> None:
    """Well-formed timestamps (where the values matter most): accepted by the fast path unless the
    fraction is longer than 6 digits, and equal to pydantic's."""
    ts = f"{day}{sep}{h:02d}:{m:02d}:{s:02d}{'.' + frac if frac else ''}{offset}"
    body = json.dumps({"lead": {"lead_id": "a", "created_at": ts}, "as_of": ts}).encode()
    fast = check_score(body)
    edge = day in ("0001-01-01", "9999-12-31")  # offsets can push the instant out of range
    if len(frac) <= 6 and not edge:
        assert fast is not None, ts
