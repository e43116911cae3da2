"""Benchmark: LightGBM training speed by thread count and histogram layout, quiet vs a busy machine.

    .venv/bin/python benchmarks/train_threads_bench.py                 # data/processed/sql/train.parquet
    .venv/bin/python benchmarks/train_threads_bench.py --rounds 300 --spinners 2

Fits the sql model's training slice (the pipeline's own encoder and LightGBM settings) for a fixed
number of rounds, once per (OpenMP wait policy, threads, layout), first on the machine as it is and then
with ``--spinners`` busy-looping processes beside it (what other jobs on a shared 2-core box do). Each
fit runs in its own subprocess so OpenMP starts fresh with the policy under test (ACTIVE: OpenMP's
default spin-waiting; PASSIVE: what ``import leadscore`` sets). Prints ms per round and the busy/quiet
ratio, with the load average before each pass.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time


def _spin() -> None:
    while True:
        pass


def fit(threads: int, layout: str, rounds: int, path: str) -> float:
    """Seconds per round of a fixed-round fit (Dataset construction excluded)."""
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from leadscore.config import load_params
    from leadscore.features.encode import MatrixEncoder
    from leadscore.features.spec import FeatureSpec
    from leadscore.models.train import fit_vocabulary, lgb_params

    params = load_params()
    spec = FeatureSpec(params.features)
    frame = pd.read_parquet(path)
    encoder = MatrixEncoder(spec, fit_vocabulary({"t": frame}, spec))
    x = encoder.transform(frame).astype(np.float32)
    y = frame["label"].to_numpy(dtype=np.float64)
    p = lgb_params(params.train)
    p.pop("force_col_wise", None)
    p.pop("force_row_wise", None)
    p.update({"num_threads": threads, f"force_{layout}_wise": True})
    data = lgb.Dataset(x, label=y, categorical_feature=encoder.categorical_indices_, params=p).construct()
    start = time.perf_counter()
    lgb.train(p, data, num_boost_round=rounds)
    return (time.perf_counter() - start) / rounds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/processed/sql/train.parquet")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--spinners", type=int, default=2)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(fit(int(args.child[0]), args.child[1], args.rounds, args.data)))
        return
    cpus = len(os.sched_getaffinity(0))
    configs = [(policy, t, layout) for policy in ("ACTIVE", "PASSIVE") for t in sorted({1, cpus}) for layout in ("col", "row")]

    def run_all() -> dict[tuple[str, int, str], float]:
        out = {}
        for policy, t, layout in configs:
            cmd = [sys.executable, __file__, "--data", args.data, "--rounds", str(args.rounds)]
            env = {**os.environ, "OMP_WAIT_POLICY": policy}
            res = subprocess.run([*cmd, "--child", str(t), layout], capture_output=True, text=True, check=True, env=env)
            out[(policy, t, layout)] = json.loads(res.stdout.strip().splitlines()[-1])
        return out

    load_quiet = os.getloadavg()
    quiet = run_all()
    spinners = [mp.Process(target=_spin, daemon=True) for _ in range(args.spinners)]
    for s in spinners:
        s.start()
    try:
        time.sleep(2)
        load_busy = os.getloadavg()
        busy = run_all()
    finally:
        for s in spinners:
            s.terminate()
    print(f"rows: {args.data}, {args.rounds} rounds; load (1/5/15 min) before quiet run {load_quiet}, "
          f"busy run {load_busy} (+{args.spinners} spinning processes)")
    print("| OMP_WAIT_POLICY | threads | layout | quiet ms/round | busy ms/round | busy / quiet |")
    print("|---|---|---|---|---|---|")
    for key in configs:
        q, b = quiet[key] * 1000, busy[key] * 1000
        print(f"| {key[0]} | {key[1]} | {key[2]}_wise | {q:.1f} | {b:.1f} | {b / q:.1f}x |")


if __name__ == "__main__":
    main()
