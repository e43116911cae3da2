"""The real server processes the integration tests start: a free loopback port, starting the API, stopping."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def start_api(
    bundle: Path, log: Path, key: str, timeout: float = 120, **env: object
) -> tuple[subprocess.Popen, int]:
    """``python -m leadscore.serve.main`` serving ``bundle`` on a free loopback port with API key ``key``
    (``LEADSCORE_<NAME>`` = value for each of ``env``), output to ``log``; returns (process, port) once
    ``/ready`` answers 200, or kills the process and fails with its log."""
    port = free_port()
    variables = {
        **os.environ,
        "LEADSCORE_BUNDLE_DIR": str(bundle),
        "LEADSCORE_API_KEY": key,
        "LEADSCORE_HOST": "127.0.0.1",
        "LEADSCORE_PORT": str(port),
        "LEADSCORE_LOG_LEVEL": "info",
        **{f"LEADSCORE_{k.upper()}": str(v) for k, v in env.items()},
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "leadscore.serve.main"], env=variables, cwd=ROOT, stdout=out, stderr=out
        )
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    return proc, port
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server not ready within {timeout:g} s"
            time.sleep(0.2)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
