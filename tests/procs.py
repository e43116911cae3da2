"""Stopping the real server processes the integration tests start."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group of a server started with ``start_new_session`` (its workers too), then
    SIGKILL if it has not exited within 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
