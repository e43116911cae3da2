"""Benchmark: ``CompiledForest`` (numba) against LightGBM's own prediction, in one run.

    .venv/bin/python benchmarks/forest_bench.py                  # models/, 1,000 rows, best of 30
    .venv/bin/python benchmarks/forest_bench.py --models /tmp/x/models --rows 5000 --repeat 50

Rows: 1,000 real leads when the bundle's feature table is there (``data/processed/sql/test.parquet``
encoded by the bundle's ``MatrixEncoder``, as the API does), else random rows over each model's
``feature_infos`` (with 10 % NaN). Times, best of ``--repeat`` with all variants interleaved per round
(background load on a shared machine then hits all of them alike):

- batch: ``Booster.predict`` on 1 and 2 threads vs ``CompiledForest.predict`` on 1 and 2 threads, for
  the C-ordered matrix (``CompiledForest`` transposes it: one copy) and the Fortran-ordered matrix that
  ``MatrixEncoder.transform`` returns (no copy);
- single row: ``SingleRowPredictor.value`` (LightGBM's fast single-row C API, ``PREDICT_NORMAL``) vs
  ``CompiledForest.predict_one``, per row averaged over all rows (different rows, as in production).

Also prints the numba load time (``from_booster``'s warm-up; a compile on a cold cache) and checks that
every output equals LightGBM's bit for bit. Writes ``benchmarks/out/forest.md``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np

from leadscore.serve.forest import CompiledForest
from leadscore.serve.predict import PREDICT_NORMAL, SingleRowPredictor

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "forest.md"
TARGETS = ("sql", "closed_won")


def real_rows(models: Path, n: int, seed: int) -> np.ndarray | None:
    """``n`` encoded rows of the processed test table (Fortran order, as the encoder returns them), or
    None when the table or the bundle cannot be read."""
    table = ROOT / "data" / "processed" / "sql" / "test.parquet"
    if not table.exists():
        return None
    try:
        import pandas as pd

        from leadscore.models.bundle import load_bundle

        encoder = load_bundle(models).encoder
        frame = pd.read_parquet(table, columns=encoder.feature_names_)
    except Exception as exc:  # any failure falls back to synthetic rows
        print(f"(real rows unavailable: {exc}; using random rows)")
        return None
    frame = frame.sample(n=min(n, len(frame)), random_state=seed)
    return encoder.transform(frame)


def random_rows(booster: lgb.Booster, n: int, seed: int) -> np.ndarray:
    """Random rows over the model's ``feature_infos``: numerical ``[lo:hi]`` (half rounded to integers),
    categorical value lists; 10 % NaN."""
    rng = np.random.default_rng(seed)
    infos = next(
        line.removeprefix("feature_infos=").split()
        for line in booster.model_to_string().splitlines()
        if line.startswith("feature_infos=")
    )
    out = np.empty((n, len(infos)))
    for j, info in enumerate(infos):
        if info.startswith("["):
            lo, hi = (float(v) for v in info[1:-1].split(":"))
            col = rng.uniform(lo, hi, n)
            out[:, j] = np.where(rng.random(n) < 0.5, np.round(col), col)
        elif info == "none":
            out[:, j] = 0.0
        else:
            out[:, j] = rng.choice([float(v) for v in info.split(":")], n)
    out[rng.random(out.shape) < 0.1] = np.nan
    return np.asfortranarray(out)


def best_times(variants: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best wall time (seconds) of each variant over ``repeat`` interleaved rounds."""
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeat):
        for name, fn in variants.items():
            started = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    boosters = {t: lgb.Booster(model_file=str(args.models / f"model_{t}.txt")) for t in TARGETS}
    forests, loads = {}, {}
    for t, booster in boosters.items():
        started = time.perf_counter()
        forests[t] = CompiledForest.from_booster(booster)
        loads[t] = (time.perf_counter() - started, forests[t].warm_up_seconds)
    matrix = real_rows(args.models, args.rows, args.seed)
    source = "real leads (processed test table, encoded)"
    if matrix is None:
        matrix = random_rows(boosters["sql"], args.rows, args.seed)
        source = "random rows over feature_infos"
    c_matrix = np.ascontiguousarray(matrix)
    f_matrix = np.asfortranarray(matrix)
    rows = [np.ascontiguousarray(r) for r in c_matrix]
    singles = {t: SingleRowPredictor(b, PREDICT_NORMAL, c_matrix.shape[1]) for t, b in boosters.items()}

    # Exactness first: every variant must equal LightGBM bit for bit.
    for t, booster in boosters.items():
        expected = booster.predict(c_matrix, num_threads=1)
        for m in (c_matrix, f_matrix):
            for threads in (1, 2):
                assert np.array_equal(forests[t].predict(m, num_threads=threads), expected), t
        assert np.array_equal(np.array([forests[t].predict_one(r) for r in rows]), expected), t

    def both(fn: Callable[[str], object]) -> Callable[[], None]:
        def run() -> None:
            for t in TARGETS:
                fn(t)

        return run

    variants: dict[str, Callable[[], object]] = {
        "lgb_1": both(lambda t: boosters[t].predict(c_matrix, num_threads=1)),
        "lgb_2": both(lambda t: boosters[t].predict(c_matrix, num_threads=2)),
        "cf_1_C": both(lambda t: forests[t].predict(c_matrix, num_threads=1)),
        "cf_2_C": both(lambda t: forests[t].predict(c_matrix, num_threads=2)),
        "cf_1_F": both(lambda t: forests[t].predict(f_matrix, num_threads=1)),
        "cf_2_F": both(lambda t: forests[t].predict(f_matrix, num_threads=2)),
    }
    for t in TARGETS:
        variants[f"lgb_1:{t}"] = lambda t=t: boosters[t].predict(c_matrix, num_threads=1)
        variants[f"cf_1_F:{t}"] = lambda t=t: forests[t].predict(f_matrix, num_threads=1)
    batch = best_times(variants, args.repeat)

    one_variants: dict[str, Callable[[], object]] = {}
    for t in TARGETS:
        value, predict_one = singles[t].value, forests[t].predict_one
        one_variants[f"lgb_one:{t}"] = lambda value=value: [value(r) for r in rows]
        one_variants[f"cf_one:{t}"] = lambda predict_one=predict_one: [predict_one(r) for r in rows]
    one = {k: v / len(rows) for k, v in best_times(one_variants, max(3, args.repeat // 6)).items()}

    n_trees = {t: forests[t].num_trees for t in TARGETS}
    lines = [
        "# CompiledForest vs LightGBM",
        "",
        f"{len(rows)} rows ({source}); trees: "
        + ", ".join(f"{t} {n_trees[t]}" for t in TARGETS)
        + f"; best of {args.repeat} interleaved rounds. All outputs equal LightGBM's bit for bit.",
        "",
        "Numba load (from_booster incl. parse + check; warm-up = cache load or compile): "
        + ", ".join(
            f"{t} {1e3 * total:.0f} ms (warm-up {1e3 * warm:.0f} ms)" for t, (total, warm) in loads.items()
        ),
        "",
        "| batch, both models | ms | vs Booster.predict 1 thread |",
        "|---|---:|---:|",
    ]
    base = batch["lgb_1"]
    labels = {
        "lgb_1": "Booster.predict, 1 thread",
        "lgb_2": "Booster.predict, 2 threads",
        "cf_1_C": "CompiledForest.predict, 1 thread, C-order input",
        "cf_2_C": "CompiledForest.predict, 2 threads, C-order input",
        "cf_1_F": "CompiledForest.predict, 1 thread, F-order input (encoder output)",
        "cf_2_F": "CompiledForest.predict, 2 threads, F-order input",
    }
    for key, label in labels.items():
        lines.append(f"| {label} | {1e3 * batch[key]:.2f} | {base / batch[key]:.1f}× |")
    lines += [
        "",
        "| per model, 1 thread | Booster.predict ms | CompiledForest ms | ratio | ns per tree-row |",
    ]
    lines.append("|---|---:|---:|---:|---:|")
    for t in TARGETS:
        lgb_s, cf_s = batch[f"lgb_1:{t}"], batch[f"cf_1_F:{t}"]
        per = 1e9 * cf_s / (n_trees[t] * len(rows))
        lines.append(f"| {t} | {1e3 * lgb_s:.2f} | {1e3 * cf_s:.3f} | {lgb_s / cf_s:.1f}× | {per:.2f} |")
    lines += ["", "| single row | SingleRowPredictor µs | predict_one µs | ratio |", "|---|---:|---:|---:|"]
    for t in TARGETS:
        a, b = one[f"lgb_one:{t}"], one[f"cf_one:{t}"]
        lines.append(f"| {t} | {1e6 * a:.2f} | {1e6 * b:.2f} | {a / b:.1f}× |")
    a = sum(one[f"lgb_one:{t}"] for t in TARGETS)
    b = sum(one[f"cf_one:{t}"] for t in TARGETS)
    lines.append(f"| both | {1e6 * a:.2f} | {1e6 * b:.2f} | {a / b:.1f}× |")
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)


if __name__ == "__main__":
    main()
