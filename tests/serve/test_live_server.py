"""A real uvicorn process on 127.0.0.1 (``python -m leadscore.serve.main``) as a client and an attacker
meet it: schemathesis-generated requests for every operation, a matrix of malformed payloads, half-sent
requests, too many connections, SIGHUP with a broken bundle, and SIGTERM under load.

Every bound here is a count (requests, examples, connections); waits for an expected event have a
generous limit so a busy machine cannot fail them, and no test asserts how fast anything is.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from leadscore.config import Params
from leadscore.models.bundle import MANIFEST
from tests.procs import start_api
from tests.serve.api_helpers import metric_text
from tests.serve.pipeline import payloads_at, read_interim, shared_pipeline

pytestmark = pytest.mark.slow

KEY = "live-server-test-key-0123456789"
AUTH = {"X-API-Key": KEY}
#: schemathesis examples per operation and generation mode (operations without inputs have one case;
#: the four operations with inputs x 2 modes x 130 give the >= 1,000 cases)
EXAMPLES = 130
MIN_CASES = 1000


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    port: int
    bundle: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Params:
    return shared_pipeline(tmp_path_factory)


@pytest.fixture(scope="module")
def payloads(pipeline: Params) -> list[dict]:
    pred = pd_read(pipeline)
    ts = pred["snapshot_ts"].max()
    ids = pred.loc[pred["snapshot_ts"] == ts, "lead_id"].head(20).tolist()
    return payloads_at(read_interim(pipeline), ids, ts)


def pd_read(pipeline: Params):
    import pandas as pd

    pred = pd.read_parquet(pipeline.data.build_dir / "train" / "predictions_sql.parquet")
    return pred[pred["split"] == "test"]


@pytest.fixture
def start(pipeline: Params, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``start(**env)`` -> a ready server on a copy of the session bundle (``LEADSCORE_<NAME>`` = value)."""
    started: list[Server] = []

    def run(**overrides: object) -> Server:
        live = tmp_path / f"models{len(started)}"
        shutil.copytree(pipeline.data.models_dir, live)
        log = tmp_path / f"server{len(started)}.log"
        proc, port = start_api(live, log, KEY, **overrides)
        server = Server(proc, f"http://127.0.0.1:{port}", port, live, log)
        started.append(server)
        return server

    yield run
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)


# ---- generated requests ------------------------------------------------------------------------------


def test_schemathesis_finds_no_5xx(start: Callable[..., Server]) -> None:
    """At least 1,000 schemathesis cases over every operation, valid and invalid by the schema, sent with
    the API key; the server answers every one with a status below 500."""
    server = start()
    raw = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(raw)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/score",
        "POST /v1/score/batch",
        "GET /v1/model",
        "POST /v1/admin/reload",
        "GET /ready",
    }
    sent: dict[str, int] = {}
    failures: list[str] = []
    session = requests.Session()

    def checker(op: schemathesis.APIOperation, mode: GenerationMode) -> Callable[[], None]:
        label = f"{op.method.upper()} {op.path} {mode.value}"

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy(generation_mode=mode))
        def check(case: schemathesis.Case) -> None:
            r = case.call(base_url=server.url, session=session, headers=AUTH, timeout=60)
            sent[label] = sent.get(label, 0) + 1
            if r.status_code >= 500:
                failures.append(f"{label}: {r.status_code} {r.text[:200]}")

        return check

    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                checker(op, mode)()
            except Unsatisfiable:  # nothing can be invalid about an operation without inputs
                assert mode is GenerationMode.NEGATIVE and not sent.get(
                    f"{op.method.upper()} {op.path} negative"
                )
    assert not failures, failures[:5]
    assert sum(sent.values()) >= MIN_CASES, sent
    print(f"schemathesis: {sum(sent.values())} cases", sent)
    assert server.proc.poll() is None


# ---- a matrix of malformed payloads --------------------------------------------------------------------


def _lead(**extra: object) -> dict:
    return {"lead": {"lead_id": "m1", "created_at": "2025-01-01T00:00:00Z", **extra}}


_JSON = {"content-type": "application/json"}
#: (name, path, body bytes, headers) -> expected status; each a way a CRM or an attacker breaks a request
MALFORMED: list[tuple[str, str, bytes, dict[str, str], int]] = [
    ("empty body", "/v1/score", b"", _JSON, 422),
    ("not JSON", "/v1/score", b"{lead: 1", _JSON, 422),
    ("invalid UTF-8", "/v1/score", b'{"lead": {"lead_id": "\xff\xfe"}}', _JSON, 422),
    ("JSON array", "/v1/score", b"[1, 2]", _JSON, 422),
    ("JSON null", "/v1/score", b"null", _JSON, 422),
    ("JSON string", "/v1/score", b'"lead"', _JSON, 422),
    (
        "NaN revenue",
        "/v1/score",
        b'{"lead": {"lead_id": "m", "created_at": "2025-01-01T00:00:00Z"}, "account": {"annual_revenue": NaN}}',  # noqa: E501
        _JSON,
        422,
    ),
    (
        "1e999 employees",
        "/v1/score",
        b'{"lead": {"lead_id": "m", "created_at": "2025-01-01T00:00:00Z"}, "account": {"employees": 1e999}}',
        _JSON,
        422,
    ),
    ("deep nesting", "/v1/score", b'{"lead": ' + b"[" * 5000 + b"]" * 5000 + b"}", _JSON, 422),
    (
        "deep nesting in event properties",
        "/v1/score",
        b'{"lead": {"lead_id": "m", "created_at": "2025-01-01T00:00:00Z"}, "events": [{"ts": "2024-12-01T00:00:00Z", "event_type": "page_view", "properties": '  # noqa: E501
        + b"[" * 3000
        + b"]" * 3000
        + b"}]}",
        _JSON,
        422,
    ),
    ("text/plain", "/v1/score", json.dumps(_lead()).encode(), {"content-type": "text/plain"}, 415),
    ("form", "/v1/score", b"lead=1", {"content-type": "application/x-www-form-urlencoded"}, 415),
    ("no content type", "/v1/score", json.dumps(_lead()).encode(), {}, 415),
    ("epoch number", "/v1/score", b'{"lead": {"lead_id": "m", "created_at": 1717200000}}', _JSON, 422),
    (
        "epoch string",
        "/v1/score",
        json.dumps({"lead": {"lead_id": "m", "created_at": "1717200000000"}}).encode(),
        _JSON,
        422,
    ),
    (
        "year 0",
        "/v1/score",
        json.dumps({"lead": {"lead_id": "m", "created_at": "0000-01-01T00:00:00Z"}}).encode(),
        _JSON,
        422,
    ),
    (
        "year 999",
        "/v1/score",
        json.dumps(
            {"lead": {"lead_id": "m", "created_at": "0999-01-01T00:00:00Z"}, "as_of": "0999-06-01T00:00:00Z"}
        ).encode(),
        _JSON,
        200,
    ),
    (
        "year 9999 offset",
        "/v1/score",
        json.dumps({"lead": {"lead_id": "m", "created_at": "9999-12-31T23:59:59-23:59"}}).encode(),
        _JSON,
        422,
    ),
    ("misspelt field", "/v1/score", json.dumps(_lead(employes=5)).encode(), _JSON, 422),
    (
        "NUL in id",
        "/v1/score",
        json.dumps({"lead": {"lead_id": "a\x00b", "created_at": "2025-01-01T00:00:00Z"}}).encode(),
        _JSON,
        200,
    ),
    ("huge string", "/v1/score", json.dumps(_lead(job_title="x" * 100_000)).encode(), _JSON, 422),
    (
        "duplicate keys",
        "/v1/score",
        b'{"lead": {"lead_id": "a", "lead_id": "b", "created_at": "2025-01-01T00:00:00Z"}}',
        _JSON,
        200,
    ),
    (
        "10,000 events",
        "/v1/score",
        json.dumps(
            {
                **_lead(),
                "events": [{"ts": "2024-01-01T00:00:00Z", "event_type": "page_view"}] * 10_000,
                "as_of": "2025-02-01T00:00:00Z",
            }
        ).encode(),
        _JSON,
        422,
    ),
    (
        "unknown stage",
        "/v1/score",
        json.dumps({**_lead(), "stage_history": [{"stage": "won?", "ts": "2024-01-01T00:00:00Z"}]}).encode(),
        _JSON,
        422,
    ),
    ("body too large", "/v1/score", b"{" + b" " * 6_000_000 + b"}", _JSON, 413),
    ("batch: empty list", "/v1/score/batch", b'{"leads": []}', _JSON, 422),
    ("batch: leads not a list", "/v1/score/batch", b'{"leads": {"a": 1}}', _JSON, 422),
    (
        "batch: bad default as_of",
        "/v1/score/batch",
        json.dumps({"leads": [_lead()], "as_of": "soon"}).encode(),
        _JSON,
        422,
    ),
    (
        "batch: NaN in one lead",
        "/v1/score/batch",
        b'{"leads": [{"lead": {"lead_id": "a", "created_at": "2025-01-01T00:00:00Z"}}, {"lead": {"lead_id": "b", "created_at": "2025-01-01T00:00:00Z"}, "account": {"employees": NaN}}]}',  # noqa: E501
        _JSON,
        200,
    ),
    (  # the case: one lead with 150 bad timestamps, another with a misspelt field
        "batch: more than 100 errors over two leads",
        "/v1/score/batch",
        json.dumps(
            {
                "leads": [
                    {**_lead(), "events": [{"ts": "bad", "event_type": "page_view"}] * 150},
                    _lead(job_titel="VP"),
                    _lead(),
                ]
            }
        ).encode(),
        _JSON,
        200,
    ),
    (
        "batch: too many leads",
        "/v1/score/batch",
        json.dumps({"leads": [_lead()] * 1001}).encode(),
        _JSON,
        422,
    ),
    (
        "batch: text/plain",
        "/v1/score/batch",
        json.dumps({"leads": [_lead()]}).encode(),
        {"content-type": "text/plain"},
        415,
    ),
    ("flag: explain=maybe", "/v1/score?explain=maybe", json.dumps(_lead()).encode(), _JSON, 422),
]


def test_malformed_payload_matrix(start: Callable[..., Server]) -> None:
    """Every malformed request gets its 4xx (or is scored when it is valid after all), never a 5xx, and
    the server log holds none of the values sent."""
    server = start()
    marker = "SECRET-VALUE-7f3a"
    with httpx.Client(timeout=60) as client:
        got = {}
        for name, path, body, headers, _ in MALFORMED:
            r = client.post(server.url + path, content=body, headers={**AUTH, **headers})
            got[name] = r.status_code
            if path.endswith("batch") and r.status_code == 200:
                assert all(x["status"] in ("ok", "error") for x in r.json()["results"])
        wanted = {name: status for name, _, _, _, status in MALFORMED}
        assert got == wanted
        two = client.post(server.url + "/v1/score/batch", content=MALFORMED[29][2], headers={**AUTH, **_JSON})
        rows = two.json()["results"]
        assert [x["status"] for x in rows] == ["error", "error", "ok"]
        assert len(rows[0]["errors"]) == 20 and rows[1]["errors"][0]["type"] == "extra_forbidden"
        client.post(
            server.url + "/v1/score",
            content=json.dumps(_lead(job_title=marker)).encode() + b"x",
            headers={**AUTH, **_JSON},
        )
    assert len(MALFORMED) >= 30
    assert marker not in server.log_text() and "Traceback" not in server.log_text()


# ---- limits: half-sent requests, too many connections ------------------------------------------------


def _closed_by_server(s: socket.socket) -> bool:
    """True when the server closes ``s`` without an answer (the wait for it is generous, not a bound)."""
    s.settimeout(60)
    try:
        return s.recv(1024) == b""
    except ConnectionResetError:
        return True
    finally:
        s.close()


def test_half_sent_requests_are_cut_and_connections_are_limited(start: Callable[..., Server]) -> None:
    server = start(read_timeout_seconds=2, max_connections=6, keep_alive_seconds=120)
    host = ("127.0.0.1", server.port)
    # at the connection limit a request is refused with 503 at once, and served again afterwards
    busy = []
    for _ in range(5):
        s = socket.create_connection(host)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(60)
        assert s.recv(1024).startswith(b"HTTP/1.1 200")  # now an idle keep-alive connection
        busy.append(s)
    assert httpx.get(f"{server.url}/health", timeout=30).status_code == 503
    for s in busy:
        s.close()
    deadline = time.monotonic() + 60
    while httpx.get(f"{server.url}/health", timeout=30).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # connections that send nothing, or half a request head, are closed (LEADSCORE_READ_TIMEOUT_SECONDS)
    stalled = []
    for i in range(12):
        s = socket.create_connection(host)
        if i % 2:
            s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\n")
        stalled.append(s)
    assert all(_closed_by_server(s) for s in stalled)
    # a body that stops arriving is answered 408
    s = socket.create_connection(host)
    head = f"POST /v1/score HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n"
    s.sendall(head.encode() + b"Content-Length: 100\r\n\r\n{")
    s.settimeout(60)
    assert s.recv(1024).startswith(b"HTTP/1.1 408")
    s.close()
    assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
    assert server.proc.poll() is None


# ---- SIGHUP with a broken bundle, SIGTERM under load ---------------------------------------------------


def test_sighup_refuses_a_malformed_bundle_like_reload(start: Callable[..., Server]) -> None:
    server = start()
    (server.bundle / MANIFEST).write_text("[]")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while (
        metric_text(
            httpx.get(f"{server.url}/metrics").text,
            "leadscore_bundle_reloads_total",
            result="refused",
            trigger="sighup",
        )
        < 1
    ):
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.2)
    assert httpx.get(f"{server.url}/ready").status_code == 200  # the old bundle serves on
    assert "Task exception was never retrieved" not in server.log_text()
    assert "bundle refused" in server.log_text()


def test_sigterm_drains_then_answers_everything_received(
    start: Callable[..., Server], payloads: list[dict]
) -> None:
    """SIGTERM under bounded load: /ready turns 503 while requests are still served, every request sent
    gets its answer, then the process exits 0. Clients stop sending once /ready says so (what a load
    balancer does)."""
    server = start(drain_seconds=2)
    stop = threading.Event()
    outcomes: list[int | str] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        with httpx.Client(timeout=60) as c:
            n = 0
            while not stop.is_set() and n < 200:
                body = {"leads": payloads} if i % 4 == 0 else payloads[n % len(payloads)]
                path = "/v1/score/batch" if i % 4 == 0 else "/v1/score"
                try:
                    r = c.post(server.url + path, json=body, headers=AUTH)
                    result: int | str = r.status_code
                except httpx.TransportError as exc:
                    result = type(exc).__name__
                with lock:
                    outcomes.append(result)
                n += 1

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client, i) for i in range(8)]
        while len(outcomes) < 40:
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while True:  # the readiness probe turns 503 while the server still answers
            r = httpx.get(f"{server.url}/ready", timeout=30)
            if r.status_code == 503:
                break
            assert time.monotonic() < deadline
        assert r.json()["reason"] == "shutting down"
        stop.set()
        for f in futures:
            f.result()
    assert server.proc.wait(90) == 0, server.log_text()
    assert outcomes and all(o == 200 for o in outcomes), [o for o in outcomes if o != 200][:5]
