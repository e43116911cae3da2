"""Serving benchmark: the scoring endpoints against a hello-world route of the same app, in one run.

    .venv/bin/python benchmarks/serve_bench.py models            # the bundle to serve
    .venv/bin/python benchmarks/serve_bench.py /tmp/x/models --seconds 3 --rounds 3

Starts ``python -m leadscore.serve.main`` (one uvicorn worker, a random API key, a free loopback port)
and drives it from a load generator in another process: raw HTTP/1.1 over keep-alive sockets on asyncio
(uvloop when installed), so the client costs far less than the server and does not flatten the ratios.
Each scenario is bounded by a request count and a time budget; all scenarios run ``--rounds`` times
interleaved (background load on a shared machine then hits all of them alike) and the median round is
reported, latencies pooled over rounds.

Scenarios: ``GET /health`` (the hello-world route: a constant body through the same middleware), ``POST
/v1/score`` with and without reasons at concurrency 1 and 16, and ``POST /v1/score/batch`` with 1,000
leads with and without reasons. Payloads are demo leads (``leadscore.data.generate``, validated like
the pipeline's input) with their events and stage history before ``as_of``, sent the way a CRM would
(event ``properties`` included). One reference scenario without a target sends the same batch with the
events cut to ``ts`` and ``event_type``. Prints a markdown table and writes it to ``benchmarks/out/serve.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import Request, Response

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "serve.md"

# Single-lead scoring: at least this share of the hello route's req/s (same concurrency, same run).
SINGLE_TARGETS = {True: 0.25, False: 0.45}
# A batch of 1,000 leads: at most this many times the echo route's time for the same body.
BATCH_TARGETS = {True: 6.0, False: 2.0}
#: p99 latency of one lead at c=1 (ms)
P99_TARGET_MS = 5.0
ECHO_PATH = "/bench/echo"


# ---- payloads -------------------------------------------------------------------------------------------


def demo_payloads(n_leads: int, seed: int, n_single: int, batch_size: int) -> tuple[list[dict], list[dict]]:
    """(single-lead payloads, one batch of ``batch_size`` payloads) from freshly generated demo data.

    ``as_of`` is 75 % into the generated period; leads created before it (and within a year) are
    candidates; each gets its events and stage changes before ``as_of``.
    """
    import pandas as pd

    from leadscore.config import ValidateParams, load_params
    from leadscore.data.generate import generate
    from leadscore.data.payloads import payloads_from_tables
    from leadscore.data.validate import validate_tables

    params = load_params(ROOT / "params.yaml", overrides={"generate.n_leads": n_leads, "generate.seed": seed})
    raw = generate(params.generate, params.features)
    tables = validate_tables({k: v for k, v in raw.items() if k != "truth"}, ValidateParams()).tables
    leads = tables["leads"]
    start, end = leads["created_at"].min(), leads["created_at"].max()
    as_of = (start + (end - start) * 0.75).normalize()
    alive = leads[(leads["created_at"] < as_of) & (leads["created_at"] >= as_of - pd.Timedelta(days=365))]
    rng = np.random.default_rng(seed)
    pick = alive.iloc[rng.permutation(len(alive))[: max(n_single, batch_size)]]
    events = tables["events"][tables["events"]["ts"] < as_of]
    stages = tables["stage_history"][tables["stage_history"]["ts"] < as_of]
    payloads = payloads_from_tables(
        pick.reset_index(drop=True),
        tables["accounts"],
        events[events["lead_id"].isin(pick["lead_id"])],
        stages[stages["lead_id"].isin(pick["lead_id"])],
        as_of=[as_of] * len(pick),
    )
    if len(payloads) < batch_size:
        payloads = (payloads * (batch_size // max(1, len(payloads)) + 1))[:batch_size]
    return payloads[:n_single], payloads[:batch_size]


# ---- the load generator (runs in its own process) ------------------------------------------------------


def _request(method: str, path: str, key: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nX-API-Key: {key}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def _drive(
    port: int, requests: list[bytes], concurrency: int, max_requests: int, max_seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[int] = []
    issued = 0
    start = time.perf_counter()
    deadline = start + max_seconds

    async def worker(offset: int) -> None:
        nonlocal issued
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        try:
            while issued < max_requests and time.perf_counter() < deadline:
                data = requests[(issued + offset) % len(requests)]
                issued += 1
                t0 = time.perf_counter()
                writer.write(data)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                        break
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    errors.append(status)
        finally:
            writer.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {"n": len(latencies), "elapsed": elapsed, "latencies": latencies, "errors": errors}


def _client_process(
    conn: Any, port: int, requests: list[bytes], concurrency: int, max_requests: int, max_seconds: float
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    conn.send(asyncio.run(_drive(port, requests, concurrency, max_requests, max_seconds)))
    conn.close()


def run_load(
    port: int, requests: list[bytes], concurrency: int, max_requests: int, max_seconds: float
) -> dict[str, Any]:
    """Run the load generator in a fresh process and return its measurements."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_client_process, args=(child, port, requests, concurrency, max_requests, max_seconds)
    )
    proc.start()
    child.close()
    result = parent.recv()
    proc.join(timeout=30)
    return result


# ---- the server ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_with_echo() -> None:
    """The server as ``leadscore serve`` runs it, plus the echo route of the batch targets: it receives
    the body, parses the JSON and answers a small JSON (what any JSON endpoint costs at least)."""
    import leadscore.serve.app as app_module
    from leadscore.serve.main import run_server

    factory = app_module.create_app

    def create_app() -> Any:
        app = factory()

        async def echo(request: Request) -> Response:
            data = orjson.loads(await request.body())
            return Response(orjson.dumps({"n": len(data.get("leads", ()))}), media_type="application/json")

        app.add_api_route(ECHO_PATH, echo, methods=["POST"], include_in_schema=False)
        return app

    app_module.create_app = create_app  # what uvicorn's factory string resolves to (one worker)
    run_server()


def start_server(bundle: Path, port: int, key: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "LEADSCORE_BUNDLE_DIR": str(bundle),
        "LEADSCORE_API_KEY": key,
        "LEADSCORE_PORT": str(port),
        "LEADSCORE_HOST": "127.0.0.1",
        "LEADSCORE_WORKERS": "1",
        "LEADSCORE_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen([sys.executable, __file__, "--serve-with-echo"], env=env, cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("server did not become ready within 60 s")


def model_shape(bundle: Path) -> list[dict[str, Any]]:
    """Trees, leaves and depth per booster of the bundle (TreeSHAP cost ~ trees × leaves × depth²)."""
    from leadscore.models.bundle import load_bundle

    out = []
    for target, booster in load_bundle(bundle).boosters.items():
        trees = booster.dump_model()["tree_info"]

        def depth(node: dict[str, Any]) -> int:
            if "leaf_index" in node or "left_child" not in node:
                return 0
            return 1 + max(depth(node["left_child"]), depth(node["right_child"]))

        leaves = [t["num_leaves"] for t in trees]
        depths = [depth(t["tree_structure"]) for t in trees]
        out.append(
            {
                "target": target,
                "trees": len(trees),
                "mean_leaves": float(np.mean(leaves)) if leaves else 0.0,
                "max_depth": max(depths) if depths else 0,
                "mean_depth": float(np.mean(depths)) if depths else 0.0,
                "shap_cost": float(sum(n * d * d for n, d in zip(leaves, depths, strict=True))),
            }
        )
    return out


def stage_costs(
    bundle: Path, singles: list[dict], batch: list[dict], repeat: int = 5
) -> list[tuple[str, float, float]]:
    """In-process cost of each scoring stage (best of ``repeat``): µs per single lead (mean over the
    single payloads) and ms per batch of 1,000, with the server's default predict threads. Explains where
    the server's time goes; not part of the targets."""
    import time as _t

    from leadscore.serve.payload import PayloadPolicy, prepare
    from leadscore.serve.pipeline import PipelineModel, apply_chain
    from leadscore.serve.schemas import BATCH_ADAPTER, SCORE_ADAPTER
    from leadscore.serve.settings import ServeSettings

    model, policy = PipelineModel.load(bundle), PayloadPolicy()
    threads = ServeSettings.model_fields["predict_threads"].get_default(call_default_factory=True)

    def best(fn: Any, items: list[Any]) -> float:
        times = []
        for _ in range(repeat):
            t0 = _t.perf_counter()
            for it in items:
                fn(it)
            times.append((_t.perf_counter() - t0) / len(items))
        return min(times)

    single_bodies = [orjson.dumps(p) for p in singles[:200]]
    batch_body = [orjson.dumps({"leads": batch})]
    reqs = [SCORE_ADAPTER.validate_json(b) for b in single_bodies]
    breq = [BATCH_ADAPTER.validate_json(batch_body[0])["leads"]]
    arrays = [prepare([r], model.type_lookup, policy).arrays for r in reqs]
    barr = [prepare(breq[0], model.type_lookup, policy).arrays]

    def build(a: Any) -> Any:
        return model.builder.build(a.as_of, a.created_at, a.raw, a.events, a.stages, with_rule=False)

    cols, bcols = [build(a) for a in arrays], [build(barr[0])]
    mats, bmats = (
        [model.bundle.encoder.transform(c) for c in cols],
        [model.bundle.encoder.transform(bcols[0])],
    )
    contribs = [model.contributions(m) for m in mats]
    bcontribs = [model.contributions(bmats[0], threads)]
    k = 3
    stages = [
        (
            "parse + validate JSON (pydantic validate_json)",
            SCORE_ADAPTER.validate_json,
            single_bodies,
            BATCH_ADAPTER.validate_json,
            batch_body,
        ),
        (
            "checks → arrays (payload.prepare)",
            lambda r: prepare([r], model.type_lookup, policy).arrays,
            reqs,
            lambda ls: prepare(ls, model.type_lookup, policy).arrays,
            breq,
        ),
        ("feature build (OnlineFeatureBuilder.build)", build, arrays, build, barr),
        ("encode", model.bundle.encoder.transform, cols, model.bundle.encoder.transform, bcols),
        (
            "predict + calibrate (all targets)",
            model.predict,
            mats,
            lambda m: model.predict(m, threads),
            bmats,
        ),
        (
            "TreeSHAP (reasons target)",
            model.contributions,
            mats,
            lambda m: model.contributions(m, threads),
            bmats,
        ),
        (
            "reason sentences (models.reasons)",
            lambda i: model.reasons.top_reasons(contribs[i], cols[i], k),
            list(range(len(cols))),
            lambda i: model.reasons.top_reasons(bcontribs[0], bcols[0], k),
            [0],
        ),
        (
            "chain (pipeline.apply_chain)",
            lambda i: apply_chain(model.predict(mats[i]), cols[i]["stage_rank"], model.chain),
            list(range(len(cols))),
            lambda i: None,
            [0],
        ),
        (
            "validated → response dicts, without reasons",
            lambda r: model.score([r], False, policy=policy),
            reqs,
            lambda ls: model.score(ls, False, num_threads=threads, batch_rows=True, policy=policy),
            breq,
        ),
        (
            "validated → response dicts, with reasons",
            lambda r: model.score([r], True, policy=policy),
            reqs,
            lambda ls: model.score(ls, True, num_threads=threads, batch_rows=True, policy=policy),
            breq,
        ),
    ]
    return [(name, best(f1, i1) * 1e6, best(fb, ib) * 1e3) for name, f1, i1, fb, ib in stages]


# ---- the run ---------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    kind: str  # hello | echo | single | batch | lean
    concurrency: int
    requests: list[bytes]
    explain: bool | None = None
    leads_per_request: int = 1


def _summary(runs: list[dict[str, Any]], leads_per_request: int) -> dict[str, Any]:
    rates = [r["n"] / r["elapsed"] for r in runs if r["elapsed"] > 0]
    lat = np.asarray([x for r in runs for x in r["latencies"]]) * 1e3
    return {
        "rps": statistics.median(rates),
        "leads_per_s": statistics.median(rates) * leads_per_request,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "n": int(sum(r["n"] for r in runs)),
        "errors": int(sum(len(r["errors"]) for r in runs)),
    }


def main() -> None:
    if sys.argv[1:] == ["--serve-with-echo"]:
        serve_with_echo()
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, nargs="?", default=ROOT / "models")
    ap.add_argument("--seconds", type=float, default=3.0, help="time budget per scenario and round")
    ap.add_argument("--max-requests", type=int, default=30000, help="request budget per scenario and round")
    ap.add_argument("--batch-requests", type=int, default=30, help="batches per scenario and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--leads", type=int, default=4000, help="demo leads to generate for payloads")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--no-stage-costs", action="store_true", help="skip the in-process stage costs")
    args = ap.parse_args()

    print("building demo payloads ...", file=sys.stderr)
    singles, batch = demo_payloads(args.leads, args.seed, n_single=500, batch_size=1000)
    n_events = [len(p["events"]) for p in singles]
    key = secrets.token_urlsafe(24)
    port = free_port()
    hello = [_request("GET", "/health", key)]
    score = {
        e: [_request("POST", f"/v1/score?explain={str(e).lower()}", key, orjson.dumps(p)) for p in singles]
        for e in (True, False)
    }
    batch_body = orjson.dumps({"leads": batch})
    batches = {
        e: [_request("POST", f"/v1/score/batch?explain={str(e).lower()}", key, batch_body)]
        for e in (True, False)
    }
    scenarios = []
    for c in (1, 16):
        scenarios.append(Scenario(f"GET /health (hello world), c={c}", "hello", c, hello))
        for e in (True, False):
            scenarios.append(
                Scenario(
                    f"POST /v1/score {'with' if e else 'without'} reasons, c={c}", "single", c, score[e], e
                )
            )
    scenarios.append(
        Scenario(
            f"POST {ECHO_PATH} (parse the batch body, answer small JSON), c=1",
            "echo",
            1,
            [_request("POST", ECHO_PATH, key, batch_body)],
            None,
            1000,
        )
    )
    for e in (True, False):
        scenarios.append(
            Scenario(
                f"POST /v1/score/batch (1,000 leads) {'with' if e else 'without'} reasons, c=1",
                "batch",
                1,
                batches[e],
                e,
                1000,
            )
        )
    # For reference only (no target): the same batch with events and stage rows cut to the fields the
    # model reads (no event_id, no properties), to show how much of a batch's cost is the CRM's extras.
    lean = orjson.dumps(
        {
            "leads": [
                {
                    **p,
                    "events": [{"ts": e["ts"], "event_type": e["event_type"]} for e in p["events"]],
                    "stage_history": [{"stage": h["stage"], "ts": h["ts"]} for h in p["stage_history"]],
                }
                for p in batch
            ]
        }
    )
    scenarios.append(
        Scenario(
            f"(reference) the batch without event extras ({len(lean) / 1e6:.2f} MB), no reasons, c=1",
            "lean",
            1,
            [_request("POST", "/v1/score/batch?explain=false", key, lean)],
            False,
            1000,
        )
    )

    print(f"starting server on 127.0.0.1:{port} with {args.bundle} ...", file=sys.stderr)
    server = start_server(args.bundle, port, key)
    results: dict[str, list[dict[str, Any]]] = {s.name: [] for s in scenarios}
    try:
        for s in scenarios:  # warm-up: imports, caches, LightGBM buffers
            run_load(port, s.requests, s.concurrency, 300 if s.kind in ("hello", "single") else 3, 1.0)
        for r in range(args.rounds):
            for s in scenarios:
                many = s.kind in ("batch", "lean", "echo")
                budget = args.batch_requests if many else args.max_requests
                seconds = args.seconds * (3 if many else 1)
                res = run_load(port, s.requests, s.concurrency, budget, seconds)
                results[s.name].append(res)
                print(
                    f"round {r + 1}/{args.rounds}  {s.name:<58} {res['n'] / res['elapsed']:9.1f} req/s"
                    f"  errors={len(res['errors'])}",
                    file=sys.stderr,
                )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    summary = {s.name: _summary(results[s.name], s.leads_per_request) for s in scenarios}
    hello_rps = {c: summary[f"GET /health (hello world), c={c}"]["rps"] for c in (1, 16)}
    echo_rps = next(summary[s.name]["rps"] for s in scenarios if s.kind == "echo")
    lines = [
        "| scenario | req/s | leads/s | p50 ms | p99 ms | ratio | target | met |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    verdicts = []
    for s in scenarios:
        m = summary[s.name]
        ratio, target, met = "", "", ""
        if s.kind == "single":
            r = m["rps"] / hello_rps[s.concurrency]
            ratio = f"{r:.0%} of hello"
            if s.concurrency == 16:
                target = f"≥ {SINGLE_TARGETS[bool(s.explain)]:.0%} of hello"
                met = "yes" if r >= SINGLE_TARGETS[bool(s.explain)] else "**no**"
            else:
                target = f"p99 ≤ {P99_TARGET_MS:g} ms"
                met = "yes" if m["p99_ms"] <= P99_TARGET_MS else "**no**"
        elif s.kind == "batch":
            r = echo_rps / m["rps"]  # time per batch / time per echo
            ratio = f"{r:.2f}× echo time"
            target = f"≤ {BATCH_TARGETS[bool(s.explain)]:g}× echo time"
            met = "yes" if r <= BATCH_TARGETS[bool(s.explain)] else "**no**"
        if m["errors"]:
            met += f" ({m['errors']} errors)"
        if met:
            verdicts.append((s.name, met))
        lines.append(
            f"| {s.name} | {m['rps']:,.1f} | {m['leads_per_s']:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} "
            f"| {ratio} | {target} | {met} |"
        )
    costs = [] if args.no_stage_costs else stage_costs(args.bundle, singles, batch)
    cost_lines = [
        "| stage | one lead (µs) | batch of 1,000 (ms) |",
        "|---|---:|---:|",
        *(f"| {name} | {one:,.0f} | {many:,.1f} |" for name, one, many in costs),
    ]
    shape = model_shape(args.bundle)
    shape_lines = [
        "| model | trees | mean leaves | max depth | mean depth | Σ leaves·depth² |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {m['target']} | {m['trees']} | {m['mean_leaves']:.1f} | {m['max_depth']} "
            f"| {m['mean_depth']:.1f} "
            f"| {m['shap_cost']:,.0f} |"
            for m in shape
        ),
    ]
    load = os.getloadavg()
    text = "\n".join(
        [
            "# Serving benchmark",
            "",
            f"Bundle `{args.bundle}`; one uvicorn worker; load generator in another process (raw HTTP/1.1,"
            f" keep-alive); {args.rounds} rounds × ≤ {args.seconds:g} s per scenario (batches ≤ "
            f"{args.batch_requests} × 1,000 leads, ≤ {args.seconds * 3:g} s), median round;"
            " latencies pooled.",
            f"Single-lead payloads: {len(singles)} demo leads, {np.mean(n_events):.1f} events each on"
            f" average (median {np.median(n_events):.0f}, max {max(n_events)}); batch body"
            f" {len(batch_body) / 1e6:.2f} MB.",
            f"Machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
            " at the end (shared with other work).",
            "",
            *lines,
            "",
            "Where the time goes (in the benchmark process, best of 5, same payloads and bundle):",
            "",
            *cost_lines,
            "",
            "Model shape (exact TreeSHAP cost grows with trees × leaves × depth²):",
            "",
            *shape_lines,
            "",
        ]
    )
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    (args.out.with_suffix(".json")).write_text(
        json.dumps({"summary": summary, "model_shape": shape}, indent=2)
    )


if __name__ == "__main__":
    main()
