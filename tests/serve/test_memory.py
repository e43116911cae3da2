"""``serve.memory``: the allocator tuning the server applies at startup (glibc only)."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

import pytest

from leadscore.serve.memory import keep_freed_memory


def _is_glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _is_glibc(), reason="mallopt thresholds are a glibc feature")
def test_keep_freed_memory_is_accepted_by_glibc() -> None:
    assert keep_freed_memory() is True
    # Idempotent: the server may call it again after a reload of the app.
    assert keep_freed_memory() is True
    # A buffer above the default 128 KB mmap threshold is still usable (served from the heap now).
    buf = ctypes.create_string_buffer(4 << 20)
    buf[0], buf[len(buf) - 1] = b"a", b"z"
    assert buf.raw[:1] == b"a" and buf.raw[-1:] == b"z"


@pytest.mark.skipif(_is_glibc(), reason="on glibc the thresholds are set")
def test_elsewhere_nothing_changes() -> None:
    assert keep_freed_memory() is False
