"""Benchmark: time and peak memory of every pipeline stage, generate -> bundle, at growing lead counts.

    .venv/bin/python benchmarks/scale_bench.py --leads 100000 300000 1000000
    .venv/bin/python benchmarks/scale_bench.py --leads 100000 --spark      # + snapshots/features on Spark
    .venv/bin/python benchmarks/scale_bench.py --leads 100000 --busy 2     # + train beside 2 spinning processes

Each size gets its own folder (benchmarks/out/scale/<leads>/) and params file (the repo's params with
every data path moved there and ``generate.n_leads`` set; the demo has about 25 events per lead). Each
stage runs as the real CLI (``leadscore <stage> -p ...``) in its own process; its peak memory is the
peak of the summed RSS of the stage's process tree (sampled every 0.1 s, so the Spark JVM counts too).
The machine's load average is printed beside every row: on a shared machine, times are noisy.
Prints a markdown table and appends it to benchmarks/out/scale.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("generate", "validate", "snapshots", "features", "train", "evaluate", "thresholds", "bundle")
SPARK_STAGES = ("snapshots", "features")
CLI = str(Path(sys.executable).with_name("leadscore"))


def params_file(out: Path, leads: int, processed: str = "processed", sample_rate: float | None = None) -> Path:
    """The repo's params with every data path under ``out`` and ``n_leads`` set (with a sample rate:
    build and reports go to their own folders, so the full run's outputs stay)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"] = {
        # the generator writes demo_dir and the stages read source: both under ``out``, never the repo's
        "raw_dir": str(out / "raw"),
        "demo_dir": str(out / "demo"),
        "source": str(out / "demo"),
        "interim_dir": str(out / "interim"),
        "processed_dir": str(out / processed),
        "build_dir": str(out / "build"),
        "models_dir": str(out / "models"),
        "reports_dir": str(out / "reports"),
    }
    raw["generate"]["n_leads"] = leads
    suffix = processed
    if sample_rate is not None:
        raw["train"]["negative_sample_rate"] = sample_rate
        raw["data"]["build_dir"] = str(out / f"build-sampled-{sample_rate}")
        raw["data"]["reports_dir"] = str(out / f"reports-sampled-{sample_rate}")
        suffix = f"sampled-{sample_rate}"
    path = out / f"params-{suffix}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak summed RSS of its process tree in GB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, err = proc.communicate()
    stop.set()
    thread.join()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return time.perf_counter() - start, peak / 1e9


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def metrics(reports: Path) -> dict:
    m = json.loads((reports / "metrics.json").read_text())
    return {t: {k: m[t]["model"][k] for k in ("roc_auc", "brier", "ece")} for t in m if "model" in m[t]}


def _spin() -> None:
    while True:
        pass


def busy_train(params: Path, leads: int, spinners: int) -> dict:
    """The train stage again, with ``spinners`` busy-looping processes beside it (a shared machine)."""
    procs = [mp.Process(target=_spin, daemon=True) for _ in range(spinners)]
    for p in procs:
        p.start()
    try:
        seconds, gb = measure([CLI, "train", "--params", str(params)])
    finally:
        for p in procs:
            p.terminate()
    return {"leads": leads, "engine": f"duckdb, +{spinners} spinning processes", "stage": "train", "s": seconds, "gb": gb, "load": load()}


def run_size(leads: int, spark: bool, keep: bool, sample_rate: float | None, busy: int = 0) -> list[dict]:
    out = ROOT / "benchmarks" / "out" / "scale" / str(leads)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    params = params_file(out, leads)
    rows = []
    for stage in STAGES:
        seconds, gb = measure([CLI, stage, "--params", str(params)])
        rows.append({"leads": leads, "engine": "duckdb", "stage": stage, "s": seconds, "gb": gb, "load": load()})
        print(json.dumps(rows[-1]), flush=True)
    if spark:
        spark_params = params_file(out, leads, processed="processed-spark")
        env = {**os.environ, "LEADSCORE_ENGINE": "pyspark"}
        for stage in SPARK_STAGES:
            seconds, gb = measure([CLI, stage, "--params", str(spark_params)], env=env)
            rows.append({"leads": leads, "engine": "pyspark local[*]", "stage": stage, "s": seconds, "gb": gb, "load": load()})
            print(json.dumps(rows[-1]), flush=True)
    rows[STAGES.index("evaluate")]["metrics"] = metrics(out / "reports")
    if busy:
        rows.append(busy_train(params, leads, busy))
        print(json.dumps(rows[-1]), flush=True)
    if sample_rate is not None:
        sampled = params_file(out, leads, sample_rate=sample_rate)
        shutil.copytree(out / "reports", out / f"reports-sampled-{sample_rate}")  # snapshots/validation reports
        for stage in ("train", "evaluate"):
            seconds, gb = measure([CLI, stage, "--params", str(sampled)])
            rows.append({"leads": leads, "engine": f"duckdb, negatives x{sample_rate}", "stage": stage, "s": seconds, "gb": gb, "load": load()})
            print(json.dumps(rows[-1]), flush=True)
        rows[-1]["metrics"] = metrics(out / f"reports-sampled-{sample_rate}")
    summary = json.loads((out / "reports" / "snapshots.json").read_text())
    examples = sum(summary[t][s]["n"] for t in summary if t != "export_end" for s in ("train", "calibration", "test"))
    events = json.loads((out / "reports" / "validation.json").read_text())["events"]["read"]
    for r in rows:
        r.update(examples=examples, events=events)
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| leads | events | examples | engine | stage | time (s) | µs per lead | peak RSS (GB) | load 1/5/15 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['leads']:,} | {r['events']:,} | {r['examples']:,} | {r['engine']} | {r['stage']} | {r['s']:.1f} "
            f"| {r['s'] / r['leads'] * 1e6:.0f} | {r['gb']:.2f} | {r['load']} |"
        )
    by_size: dict[int, list[dict]] = {}
    for r in rows:
        if r["engine"] == "duckdb" and r["stage"] in STAGES:
            by_size.setdefault(r["leads"], []).append(r)
    for r in rows:
        if "metrics" in r:
            ms = ", ".join(f"{t}: AUC {v['roc_auc']:.4f} Brier {v['brier']:.5f} ECE {v['ece']:.4f}" for t, v in r["metrics"].items())
            lines.append(f"| {r['leads']:,} | | | {r['engine']} | test metrics | {ms} | | | |")
    for leads, rs in by_size.items():
        total = sum(r["s"] for r in rs)
        lines.append(
            f"| {leads:,} | | | duckdb | **generate -> bundle** | **{total:.1f}** | {total / leads * 1e6:.0f} "
            f"| {max(r['gb'] for r in rs):.2f} | |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--spark", action="store_true", help="also run snapshots + features on Spark (smallest size)")
    ap.add_argument("--keep", action="store_true", help="keep the generated data and outputs")
    ap.add_argument("--sample-rate", type=float, default=None, help="also train + evaluate with this negative_sample_rate")
    ap.add_argument("--busy", type=int, default=0, help="also train with this many spinning processes beside it")
    args = ap.parse_args()
    rows = []
    for i, leads in enumerate(args.leads):
        rows += run_size(leads, spark=args.spark and i == 0, keep=args.keep, sample_rate=args.sample_rate, busy=args.busy)
    text = table(rows)
    print(text)
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "scale.md").open("a") as fh:
        fh.write(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {psutil.cpu_count()} CPUs\n\n{text}\n")


if __name__ == "__main__":
    main()
