"""Open the HTML report in headless Chromium and write a full-page PNG; report what the browser saw.

    .venv/bin/python scripts/screenshot_report.py [reports/explain.html] [-o reports/explain.png]

Drives Chromium through the DevTools protocol (a websocket; no Selenium/Playwright needed): it loads the
page from disk, collects console errors, uncaught exceptions, log errors and every request that is not
``data:``/``file:`` (the page must need no network), checks that every ``<img>`` decoded
(``naturalWidth > 0``), then captures the whole page. ``tests/integration/test_report_browser.py`` uses
``inspect_page`` for its assertions. Exit status 1 when the page has errors or a broken image.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


@dataclass
class PageReport:
    """What the browser saw when it loaded the page."""

    title: str = ""
    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    headings: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    script_results: list[Any] = field(default_factory=list)

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        return [i for i in self.images if not i["complete"] or i["naturalWidth"] <= 0]

    @property
    def ok(self) -> bool:
        return not self.console_errors and not self.external_requests and not self.broken_images


class _DevTools:
    """A minimal synchronous DevTools protocol client over one websocket (flattened sessions)."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(ws_url, max_size=None, open_timeout=30))
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, session: str | None = None, timeout: float = 60, **params: Any) -> dict:
        msg_id = next(self.ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            event = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if event.get("method") == method:
                return event
            self.events.append(event)

    def drain(self, seconds: float) -> None:
        """Collect events for a little while (late console messages)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.events.append(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                break

    def close(self) -> None:
        self._stack.close()


def _launch(user_dir: Path, chromium: str) -> tuple[subprocess.Popen, str]:
    """Start Chromium with a DevTools port chosen by the OS; return the process and the browser ws URL."""
    proc = subprocess.Popen(
        [chromium, *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={user_dir}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = user_dir / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with status {proc.returncode} before DevTools was up")
        if port_file.exists():
            lines = port_file.read_text().split()
            if len(lines) >= 2:
                return proc, f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("chromium did not open its DevTools port within 60 s")


def _event_errors(events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    errors, external = [], []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            )
        elif method == "Runtime.exceptionThrown":
            errors.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:500])
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            if not url.startswith(("data:", "file:", "about:")):
                external.append(url)
        elif method == "Network.loadingFailed":
            errors.append(f"failed to load: {p.get('errorText')}")
    return errors, external


def inspect_page(
    html: Path,
    width: int = 1280,
    screenshot: bool = True,
    chromium: str = CHROMIUM,
    scripts: tuple[str, ...] = (),
) -> PageReport:
    """Load ``html`` in headless Chromium and return what it saw (and a full-page PNG). ``scripts``: JS
    expressions run in order after load (e.g. moving a slider); their values land in ``script_results``."""
    if not Path(chromium).exists() and shutil.which(chromium) is None:
        raise FileNotFoundError(f"{chromium} not found (apt-get install chromium)")
    url = Path(html).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="leadscore-chromium-") as tmp:
        proc, ws_url = _launch(Path(tmp), chromium)
        client = None
        try:
            client = _DevTools(ws_url)
            target = client.call("Target.createTarget", url="about:blank")["targetId"]
            session = client.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                client.call(f"{domain}.enable", session)
            client.call(
                "Emulation.setDeviceMetricsOverride",
                session,
                width=width,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            client.call("Page.navigate", session, url=url)
            client.wait_for("Page.loadEventFired")
            client.drain(0.5)
            probe = (
                "JSON.stringify({title: document.title,"
                " images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,"
                " naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight})),"
                " headings: Array.from(document.querySelectorAll('h2')).map(h => h.textContent.trim())})"
            )
            result = client.call("Runtime.evaluate", session, expression=probe, returnByValue=True)
            seen = json.loads(result["result"]["value"])
            report = PageReport(title=seen["title"], images=seen["images"], headings=seen["headings"])
            for expression in scripts:
                done = client.call("Runtime.evaluate", session, expression=expression, returnByValue=True)
                report.script_results.append(done.get("result", {}).get("value"))
            if screenshot:
                size = client.call("Page.getLayoutMetrics", session)["cssContentSize"]
                height = int(min(size["height"], 30000))
                client.call(
                    "Emulation.setDeviceMetricsOverride",
                    session,
                    width=width,
                    height=height,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                shot = client.call(
                    "Page.captureScreenshot", session, format="png", captureBeyondViewport=True
                )
                report.screenshot = base64.b64decode(shot["data"])
            client.drain(0.2)
            report.console_errors, report.external_requests = _event_errors(client.events)
            return report
        finally:
            if client is not None:
                with contextlib.suppress(Exception):  # the browser may already be gone
                    client.call("Browser.close", timeout=10)
                client.close()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("html", nargs="?", default="reports/explain.html", type=Path)
    ap.add_argument("-o", "--output", type=Path, default=None, help="PNG path (default: next to the HTML)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--chromium", default=CHROMIUM)
    args = ap.parse_args(argv)
    if not args.html.exists():
        print(f"{args.html} not found: run `dvc repro` (or `leadscore explain`) first", file=sys.stderr)
        return 2
    report = inspect_page(args.html, width=args.width, chromium=args.chromium)
    out = args.output or args.html.with_suffix(".png")
    out.write_bytes(report.screenshot)
    print(
        json.dumps(
            {
                "screenshot": str(out),
                "title": report.title,
                "sections": report.headings,
                "images": len(report.images),
                "broken_images": report.broken_images,
                "console_errors": report.console_errors,
                "external_requests": report.external_requests,
            },
            indent=2,
        )
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
