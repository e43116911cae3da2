"""Many ISO-8601 timestamp strings -> whole epoch seconds in one call (the batch path's fast timestamps).

The contract type ``leadscore.serve.schemas.Timestamp`` (pydantic) stays the authority. This module
accepts a strict subset of what it accepts, and where it accepts a string its seconds equal
``payload.epoch_seconds(TypeAdapter(Timestamp).validate_python(value))`` (floored, naive = UTC). Every
other string gets ``ok=False`` and the caller asks pydantic, which may still accept it or give the
error. The subset (the "fast grammar"), ASCII only::

    YYYY-MM-DDTHH:MM:SS[.f{1,6}][Z|+HH:MM|-HH:MM]

year 0001-9999, a day that exists in that month (Gregorian leap years), hour 00-23, minute and second
00-59, offset hour 00-23 and minute 00-59 (pydantic allows offsets under 24 h; ``-00:00`` is UTC). The
fraction is read and dropped: with at most 6 digits pydantic keeps it exactly as microseconds, and it
cannot move the floored second (offsets are whole minutes). Local time minus the offset may leave years
1-9999 (``0001-01-01T00:00:00+01:00``, ``9999-12-31T23:59:59-05:00``): pydantic accepts those and
``epoch_seconds`` counts them linearly, as this does. Pydantic also accepts forms left to it here:
lower-case ``t``/``z``, a space or ``_`` as separator, ``,`` before the fraction, more than 6 fraction
digits (truncated, not rounded), ``+0200``, a missing ``:SS``, and U+2212 as the offset minus.

The strings are joined into one buffer per chunk of ``_CHUNK`` (one ``join`` + ``encode``) and parsed
by one numba loop. ``warm_up()`` loads the compiled loop (or compiles it, ~1 s, on the first run after
an install or a change of this file): a server calls it at startup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Final

import numpy as np
from numba import njit

#: Joins the strings; no string in the grammar contains it. A string that does is found by the count
#: of pieces, and that chunk is parsed again without it (see ``_parse_chunk``).
_SEP: Final = "\n"
_SEP_BYTE: Final = ord(_SEP)
#: Strings per joined buffer. Two buffers of ~16k strings (the str and its bytes) are large enough for
#: glibc to mmap them fresh each call: ~200 page faults, +250 us. Chunks of 2,048 (~60 KB) reuse heap.
_CHUNK: Final = 2048
#: Days from 0001-01-01 to 1970-01-01 (proleptic Gregorian).
_DAYS_TO_1970: Final = date(1970, 1, 1).toordinal() - 1

_ZERO: Final = 48  # ord("0")
_DASH: Final = 45  # ord("-")
_PLUS: Final = 43  # ord("+")
_COLON: Final = 58  # ord(":")
_DOT: Final = 46  # ord(".")
_T: Final = 84  # ord("T")
_Z: Final = 90  # ord("Z")
#: What ``_pair`` returns for two bytes that are not both ASCII digits: above every two-digit range
#: checked (so each pair is checked before pairs are combined, as in the year).
_NOT_DIGITS: Final = 100
_MONTH_DAYS: Final = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
#: Days from 1 January to the 1st of each month in a common year.
_MONTH_START: Final = np.array([0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], dtype=np.int64)
#: Indexes arrays in the loop: numba adds a negative-index check to every signed index, 25 % of the time.
_u = np.uint64


@njit(cache=True, nogil=True)
def _pair(tens: int, ones: int) -> int:
    """The number written by two bytes, or ``_NOT_DIGITS`` unless both are ASCII digits. Takes bytes, not
    the buffer: a function taking an array costs an atomic incref/decref per call, per string here."""
    t = np.int64(tens) - _ZERO
    o = np.int64(ones) - _ZERO
    if _u(t) > 9 or _u(o) > 9:  # unsigned: one test covers both < "0" and > "9"
        return _NOT_DIGITS
    return t * 10 + o


@njit(cache=True, nogil=True)
def _parse_joined(buf: np.ndarray, n: int, sep: int, seconds: np.ndarray, ok: np.ndarray) -> bool:
    """Fills ``seconds``/``ok`` for the ``n`` strings of ``buf`` joined by ``sep``; False when ``buf``
    holds more than ``n`` pieces (a string contained ``sep``), and then the outputs are meaningless.

    Parsing finds where a string in the grammar ends, so valid strings are read once; only a string
    that is not in the grammar is scanned again for the separator that ends it."""
    size = buf.size
    pos = 0
    for i in range(n):
        if pos > size:
            return False
        k = pos
        good = (
            k + 19 <= size
            and buf[_u(k + 4)] == _DASH
            and buf[_u(k + 7)] == _DASH
            and buf[_u(k + 10)] == _T
            and buf[_u(k + 13)] == _COLON
            and buf[_u(k + 16)] == _COLON
        )
        year = month = day = hour = minute = second = offset = leap = 0
        if good:
            century = _pair(buf[_u(k)], buf[_u(k + 1)])
            year = _pair(buf[_u(k + 2)], buf[_u(k + 3)])
            good = century <= 99 and year <= 99  # each: else "20-0" would be read as 20 * 100 + 100
            year += century * 100
            month = _pair(buf[_u(k + 5)], buf[_u(k + 6)])
            day = _pair(buf[_u(k + 8)], buf[_u(k + 9)])
            hour = _pair(buf[_u(k + 11)], buf[_u(k + 12)])
            minute = _pair(buf[_u(k + 14)], buf[_u(k + 15)])
            second = _pair(buf[_u(k + 17)], buf[_u(k + 18)])
            good = good and year >= 1 and 1 <= month <= 12 and day >= 1 and hour <= 23 and minute <= 59
            good = good and second <= 59  # no leap second: pydantic refuses :60
        if good:
            leap = 1 if (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 else 0
            good = day <= _MONTH_DAYS[_u(month)] + (leap if month == 2 else 0)
            k += 19
        if good and k < size and buf[_u(k)] == _DOT:  # fraction: 1-6 digits, dropped (we floor)
            k += 1
            first = k
            while k < size and k - first <= 6 and _ZERO <= buf[_u(k)] <= _ZERO + 9:
                k += 1
            good = first < k <= first + 6
        if good and k < size and buf[_u(k)] != sep:
            zone = buf[_u(k)]
            if zone == _Z:
                k += 1
            elif zone in (_PLUS, _DASH) and k + 6 <= size and buf[_u(k + 3)] == _COLON:
                off_hour = _pair(buf[_u(k + 1)], buf[_u(k + 2)])
                off_minute = _pair(buf[_u(k + 4)], buf[_u(k + 5)])
                good = off_hour <= 23 and off_minute <= 59  # pydantic: |offset| < 24 h
                offset = off_hour * 3600 + off_minute * 60
                if zone == _DASH:
                    offset = -offset
                k += 6
            else:
                good = False
        if good and k < size and buf[_u(k)] != sep:
            good = False
        if good:
            # Proleptic Gregorian days since 1970-01-01; year >= 1, so the quotients are of positives.
            y = year - 1
            days = y * 365 + y // 4 - y // 100 + y // 400 - _DAYS_TO_1970
            days += _MONTH_START[_u(month)] + (leap if month > 2 else 0) + day - 1
            seconds[i] = days * 86400 + hour * 3600 + minute * 60 + second - offset
            ok[i] = True
        else:  # not in the grammar: it ends at the next separator
            k = pos
            while k < size and buf[_u(k)] != sep:
                k += 1
            seconds[i] = 0
            ok[i] = False
        pos = k + 1
    return pos == size + 1


def _buffer(values: Sequence[str]) -> np.ndarray:
    """The strings joined by ``_SEP`` as UTF-8 bytes: anything non-ASCII (lone surrogates too) becomes
    bytes >= 0x80, which the grammar refuses."""
    return np.frombuffer(_SEP.join(values).encode("utf-8", "surrogatepass"), dtype=np.uint8)


def _parse_chunk(values: Sequence[str], seconds: np.ndarray, ok: np.ndarray) -> None:
    """Fills ``seconds``/``ok`` (views of the result) for ``values``."""
    n = len(values)
    if _parse_joined(_buffer(values), n, _SEP_BYTE, seconds, ok):
        return
    # Some string holds the separator, so it is not in the grammar: parse the others with the same loop.
    keep = [i for i, value in enumerate(values) if _SEP not in value]
    kept_seconds = np.zeros(len(keep), dtype=np.int64)
    kept_ok = np.zeros(len(keep), dtype=np.bool_)
    if keep:
        _parse_joined(_buffer([values[i] for i in keep]), len(keep), _SEP_BYTE, kept_seconds, kept_ok)
    seconds[:] = 0
    ok[:] = False
    seconds[keep] = kept_seconds
    ok[keep] = kept_ok


def epoch_seconds_many(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(seconds int64, ok bool) per value. Where ok is True the value is in the fast grammar and seconds
    equals ``payload.epoch_seconds(TypeAdapter(schemas.Timestamp).validate_python(value))`` — and
    pydantic accepts it. Where ok is False the caller asks pydantic (the value may still be valid, or be
    an error); seconds there is 0. ``values`` must all be ``str`` (``TypeError`` otherwise)."""
    n = len(values)
    seconds = np.empty(n, dtype=np.int64)
    ok = np.empty(n, dtype=np.bool_)
    if n <= _CHUNK:
        if n:
            _parse_chunk(values, seconds, ok)
        return seconds, ok
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        _parse_chunk(values[start:stop], seconds[start:stop], ok[start:stop])
    return seconds, ok


def warm_up() -> None:
    """Loads the compiled parser from numba's cache (compiling it on the first run after an install or a
    change of this file, ~1 s), so the first request does not pay for it."""
    epoch_seconds_many(["1970-01-01T00:00:00Z"])
