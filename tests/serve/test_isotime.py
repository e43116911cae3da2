"""``isotime.epoch_seconds_many`` never accepts what pydantic (the authority) rejects, and agrees with
``payload.epoch_seconds`` of pydantic's reading wherever it accepts."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from leadscore.serve import isotime
from leadscore.serve.isotime import epoch_seconds_many
from leadscore.serve.payload import epoch_seconds
from leadscore.serve.schemas import Timestamp

_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)
_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_MAX_OFFSET_MINUTES = 23 * 60 + 59  # pydantic: |offset| < 24 h


def pydantic_seconds(value: str) -> int | None:
    """Epoch seconds of pydantic's reading of ``value``, None if pydantic rejects it."""
    try:
        return epoch_seconds(_TIMESTAMP.validate_python(value))
    except ValidationError:
        return None


def one(value: str) -> tuple[int, bool]:
    seconds, ok = epoch_seconds_many([value])
    return int(seconds[0]), bool(ok[0])


def check_one_sided(values: list[str]) -> None:
    """Wherever ok is True pydantic accepts with the same seconds; seconds is 0 wherever ok is False."""
    seconds, ok = epoch_seconds_many(values)
    assert seconds.dtype == np.int64 and ok.dtype == np.bool_ and len(seconds) == len(ok) == len(values)
    for value, sec, good in zip(values, seconds.tolist(), ok.tolist(), strict=True):
        if good:
            assert pydantic_seconds(value) == sec, value
        else:
            assert sec == 0, value


def setup_module() -> None:
    isotime.warm_up()  # numba: compile (or load) once, outside hypothesis' timing


# --- hand-computed table --------------------------------------------------------------------------

TABLE = [
    ("1970-01-01T00:00:00", 0),
    ("1970-01-01T00:00:00Z", 0),
    ("1970-01-01T00:00:00-00:00", 0),
    ("1970-01-01T00:00:00.999999Z", 0),
    ("1969-12-31T23:59:59Z", -1),
    ("1969-12-31T23:59:59.999999", -1),  # floored, not truncated towards 0
    ("1969-12-31T23:59:59.5+00:00", -1),
    ("1900-01-01T00:00:00Z", -2_208_988_800),
    ("0001-01-01T00:00:00", -62_135_596_800),
    ("9999-12-31T23:59:59Z", 253_402_300_799),
    ("9999-12-31T23:59:59.999999", 253_402_300_799),
    ("2000-02-29T12:00:00Z", 951_825_600),
    ("2000-03-01T00:00:00Z", 951_868_800),
    ("2038-01-19T03:14:08Z", 2_147_483_648),  # past int32
    ("2016-12-31T23:59:59Z", 1_483_228_799),
    ("2024-11-19T17:34:44", 1_732_037_684),
    ("2024-11-19T17:34:44Z", 1_732_037_684),
    ("2024-11-19T17:34:44.123+02:00", 1_732_037_684 - 7_200),
    ("2024-11-19T17:34:44.1-05:30", 1_732_037_684 + 19_800),
    ("1970-01-01T00:00:00+23:59", -86_340),
    ("1970-01-01T00:00:00-23:59", 86_340),
    # UTC leaves years 1..9999: pydantic accepts, epoch_seconds counts on.
    ("0001-01-01T00:00:00+01:00", -62_135_596_800 - 3_600),
    ("9999-12-31T23:59:59.999999-23:59", 253_402_300_799 + 86_340),
]


@pytest.mark.parametrize(("value", "expected"), TABLE)
def test_table(value: str, expected: int) -> None:
    assert one(value) == (expected, True)
    assert pydantic_seconds(value) == expected


def test_table_in_one_call() -> None:
    seconds, ok = epoch_seconds_many([value for value, _ in TABLE])
    assert seconds.tolist() == [expected for _, expected in TABLE]
    assert ok.all()


def test_leap_years() -> None:
    assert one("2000-02-29T00:00:00") == (951_782_400, True)
    assert one("2024-02-29T00:00:00Z")[1]
    assert one("1600-02-29T00:00:00Z")[1]
    for value in [
        "1900-02-29T00:00:00",
        "2100-02-29T00:00:00Z",
        "2023-02-29T00:00:00",
        "2024-02-30T00:00:00",
    ]:
        assert one(value) == (0, False)
        assert pydantic_seconds(value) is None


def test_empty_input() -> None:
    seconds, ok = epoch_seconds_many([])
    assert seconds.shape == ok.shape == (0,)
    assert seconds.dtype == np.int64 and ok.dtype == np.bool_


def test_any_sequence() -> None:
    seconds, ok = epoch_seconds_many(("1970-01-01T00:00:01Z", "x"))
    assert seconds.tolist() == [1, 0] and ok.tolist() == [True, False]


def test_not_a_string_raises() -> None:
    with pytest.raises(TypeError):
        epoch_seconds_many(["1970-01-01T00:00:00Z", 0])  # type: ignore[list-item]


# --- known refusals -------------------------------------------------------------------------------

#: Valid for pydantic, left to it (ok=False): the fast grammar is stricter.
LEFT_TO_PYDANTIC = [
    "2024-11-19t17:34:44",
    "2024-11-19T17:34:44z",
    "2024-11-19 17:34:44",
    "2024-11-19_17:34:44",
    "2024-11-19T17:34:44,5Z",
    "2024-11-19T17:34:44.1234567",  # 7 digits: pydantic truncates
    "2024-11-19T17:34:44.9999999Z",
    "2024-11-19T17:34:44+0200",
    "2024-11-19T17:34Z",
    "2024-11-19T17:34",
    "2024-11-19T17:34:44−02:00",  # U+2212 minus sign
]

#: Invalid for pydantic too.
INVALID = [
    "",
    "x",
    "2024-11-19",
    "2024-11-19T17:34:44.",
    "2024-11-19T17:34:60",
    "2024-12-31T23:59:60Z",
    "2024-11-19T24:00:00",
    "2024-11-19T23:60:00",
    "2024-13-01T00:00:00",
    "2024-00-01T00:00:00",
    "2024-01-00T00:00:00",
    "2024-04-31T00:00:00",
    "0000-01-01T00:00:00",
    "2024-11-19T17:34:44+24:00",
    "2024-11-19T17:34:44-24:00",
    "2024-11-19T17:34:44+00:60",
    "2024-11-19T17:34:44+02",
    "2024-11-19T17:34:44+02:00:30",
    "2024-11-19T17:34:44+02:00Z",
    "2024-11-19T17:34:44Z+02:00",
    "2024-11-19T17:34:44UTC",
    "2024-11-19T17:34:44 ",
    " 2024-11-19T17:34:44",
    "2024-11-19T17:34:44Z ",
    "+2024-11-19T17:34:44",
    "12024-11-19T17:34:44",
    "2024-1-19T17:34:44",
    "20-0-01-01T00:00:00",  # a non-digit pair in the year's last two places (found by hypothesis)
    "2x00-01-01T00:00:00",
    "٢٠٢٤-11-19T17:34:44",  # Arabic-Indic digits
    "202４-11-19T17:34:44",  # fullwidth digit
    "2024-11-19T17:34:44.١",
    "2024-11-19T17:34:44.-1",
    "2024-11-19T17:34:44＋02:00",
    "2024-11-19T17:34:44\n",
    "2024-11-19T17:34:44\x00",
    "2024-11-19T17:34:44\ud800",  # lone surrogate
]


@pytest.mark.parametrize("value", LEFT_TO_PYDANTIC)
def test_left_to_pydantic(value: str) -> None:
    assert one(value) == (0, False)
    assert pydantic_seconds(value) is not None


@pytest.mark.parametrize("value", INVALID)
def test_invalid(value: str) -> None:
    assert one(value) == (0, False)
    assert pydantic_seconds(value) is None


def test_known_refusals_in_one_call_between_valid_ones() -> None:
    """Each refusal between two valid strings: a bad string never shifts its neighbours' values."""
    values = ["1970-01-01T00:00:01Z"]
    for value in LEFT_TO_PYDANTIC + INVALID:
        values += [value, "1970-01-01T00:00:01Z"]
    seconds, ok = epoch_seconds_many(values)
    assert ok.tolist() == [i % 2 == 0 for i in range(len(values))]
    assert seconds.tolist() == [1 if i % 2 == 0 else 0 for i in range(len(values))]


def test_separator_inside_a_string_across_chunks() -> None:
    """Strings holding the join separator (``\\n``) are refused and their chunk is parsed again; more
    than one chunk of strings."""
    n = 2 * isotime._CHUNK + 5
    values = [f"1970-01-01T00:00:{i % 60:02d}Z" for i in range(n)]
    for i in (3, isotime._CHUNK + 1, n - 1):
        values[i] = "1970-01-01T00:00:00Z\n1970-01-01T00:00:00Z"
    values[7] = "1970-01-01T00:00:61Z"
    seconds, ok = epoch_seconds_many(values)
    bad = {3, 7, isotime._CHUNK + 1, n - 1}
    assert ok.tolist() == [i not in bad for i in range(n)]
    assert seconds.tolist() == [0 if i in bad else i % 60 for i in range(n)]


# --- properties -----------------------------------------------------------------------------------

_naive = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999))
_zone = st.one_of(
    st.just(""),
    st.just("Z"),
    st.integers(-_MAX_OFFSET_MINUTES, _MAX_OFFSET_MINUTES).map(
        lambda m: f"{'-' if m < 0 else '+'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"
    ),
)


@st.composite
def grammar_strings(draw: st.DrawFn) -> str:
    """A string of the fast grammar: any datetime of years 1..9999, 0-6 fraction digits, any zone."""
    dt = draw(_naive)
    digits = draw(st.integers(0, 6))
    fraction = f".{dt.microsecond:06d}"[: digits + 1] if digits else ""
    base = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    return base + fraction + draw(_zone)


@_SETTINGS
@given(st.lists(grammar_strings(), min_size=1, max_size=30))
def test_grammar_strings_are_read_as_pydantic_does(values: list[str]) -> None:
    seconds, ok = epoch_seconds_many(values)
    assert ok.all(), [v for v, good in zip(values, ok, strict=True) if not good]
    assert seconds.tolist() == [pydantic_seconds(value) for value in values]


@_SETTINGS
@given(grammar_strings())
def test_grammar_string_against_datetime(value: str) -> None:
    """An oracle besides pydantic: Python's ``datetime.fromisoformat``, floored by hand."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    # In timedeltas: UTC may leave years 1..9999 (local 0001-01-01 with a positive offset).
    since_epoch = parsed.replace(tzinfo=None) - datetime(1970, 1, 1) - (parsed.utcoffset() or timedelta(0))
    expected = since_epoch // timedelta(seconds=1)
    assert one(value) == (expected, True)


_CHARS = [*"0123456789-:.T Z+tz,_\n\x00", "١", "０", "−", "＋", "é", "\ud800"]


@st.composite
def near_misses(draw: st.DrawFn) -> str:
    """A grammar string with one or two edits: a character replaced, inserted or deleted, a field
    replaced by an out-of-range one, the string cut or doubled."""
    value = draw(grammar_strings())
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["replace", "insert", "delete", "field", "cut", "double"]))
        at = draw(st.integers(0, max(len(value) - 1, 0)))
        if kind == "replace" and value:
            value = value[:at] + draw(st.sampled_from(_CHARS)) + value[at + 1 :]
        elif kind == "insert":
            value = value[:at] + draw(st.sampled_from(_CHARS)) + value[at:]
        elif kind == "delete":
            value = value[:at] + value[at + 1 :]
        elif kind == "cut":
            value = value[:at]
        elif kind == "double":
            value = value + value[at:]
        elif kind == "field" and len(value) >= 19 and value[4] == "-":
            field = draw(
                st.sampled_from(
                    [
                        (5, "13"),
                        (5, "00"),
                        (8, "00"),
                        (8, "32"),
                        (8, "31"),
                        (8, "30"),
                        (8, "29"),
                        (11, "24"),
                        (14, "60"),
                        (17, "60"),
                        (0, "0000"),
                        (0, "1900"),
                        (0, "2100"),
                        (19, ".1234567"),
                        (19, "+24:00"),
                        (19, "-23:60"),
                    ]
                )
            )
            start, text = field
            value = value[:start] + text + value[start + len(text) :]
    return value


@_SETTINGS
@given(st.lists(near_misses(), min_size=1, max_size=30))
def test_near_misses_are_one_sided(values: list[str]) -> None:
    check_one_sided(values)


@_SETTINGS
@given(st.lists(st.one_of(near_misses(), grammar_strings(), st.text(max_size=40)), max_size=30))
def test_mixed_input_is_one_sided(values: list[str]) -> None:
    check_one_sided(values)
