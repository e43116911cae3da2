"""What this process may use of the machine: the CPUs it is allowed to run on."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """The number of CPUs this process may run on (its affinity mask, e.g. a container's cpuset or
    ``taskset``), not the machine's total: threads beyond it only contend with each other."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity mask
        return max(1, os.cpu_count() or 1)


def threads_or_default(threads: int | None) -> int:
    """``threads`` from params, or every CPU this process may use when it is null."""
    return threads if threads is not None else available_cpus()
