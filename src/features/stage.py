"""DVC stage entries for ``snapshots`` and ``features``: the I/O edge around the pure builders."""

from __future__ import annotations

import json
from pathlib import Path

import ibis
import pandas as pd

from leadscore.config import Params
from leadscore.data.parquet import write_parquet
from leadscore.features.attributes import lead_attributes
from leadscore.features.batch import build_features
from leadscore.features.snapshots import SPLITS, build_examples, data_end
from leadscore.features.spec import FeatureSpec
from leadscore.progress import progress

TRUTH_FILE = Path("_truth") / "lead_truth.parquet"


def read_interim(params: Params, tables: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Validated tables written by the ``validate`` stage."""
    out = {}
    for name in tables:
        path = params.data.interim_dir / f"{name}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `leadscore validate` (or `dvc repro`) first")
        out[name] = pd.read_parquet(path)
    return out


def snapshots_path(params: Params, target: str) -> Path:
    return params.data.interim_dir / "snapshots" / f"{target}.parquet"


def features_path(params: Params, target: str, split: str) -> Path:
    return params.data.processed_dir / target / f"{split}.parquet"


def run_snapshots(params: Params) -> dict[str, dict]:
    """Write labelled, split examples per target (+ the oracle's probability on demo data)."""
    tables = read_interim(params, ("leads", "events", "stage_history"))
    end = pd.Timestamp(params.validate_.export_time) if params.validate_.export_time else data_end(tables)
    truth_path = params.data.raw_dir / TRUTH_FILE
    truth = pd.read_parquet(truth_path) if truth_path.exists() else None
    summary: dict[str, dict] = {"export_end": str(end)}
    with progress() as bar:
        task = bar.add_task("snapshots", total=len(params.snapshots.targets))
        for name, target in params.snapshots.targets.items():
            examples, bounds = build_examples(
                tables["leads"], tables["stage_history"], end, params.snapshots, target
            )
            if truth is not None:
                # Demo data only: the generator's exact probability, so reports can show the ceiling.
                from leadscore.data.generate import true_probability

                examples["oracle_p"] = true_probability(
                    truth, tables["stage_history"], examples, target.stage, target.horizon_days
                )
            path = snapshots_path(params, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_parquet(examples, path)
            summary[name] = {
                "horizon_days": target.horizon_days,
                "bounds": {s: [str(a), str(b)] for s, (a, b) in vars(bounds).items()},
                **{
                    s: {
                        "n": int((examples.split == s).sum()),
                        "leads": int(examples.loc[examples.split == s, "lead_id"].nunique()),
                        "base_rate": float(examples.loc[examples.split == s, "label"].mean()),
                    }
                    for s in SPLITS
                },
            }
            bar.advance(task)
    params.data.reports_dir.mkdir(parents=True, exist_ok=True)
    (params.data.reports_dir / "snapshots.json").write_text(json.dumps(summary, indent=2))
    return summary


def run_features(params: Params) -> dict[str, int]:
    """Build the feature table once for every distinct (lead, t), then write it per target and split."""
    spec = FeatureSpec(params.features)
    tables = read_interim(params, ("accounts", "leads"))
    examples = {name: pd.read_parquet(snapshots_path(params, name)) for name in params.snapshots.targets}
    keys = pd.concat([e[["lead_id", "snapshot_ts"]] for e in examples.values()]).drop_duplicates()
    con = ibis.duckdb.connect()
    events = con.read_parquet(params.data.interim_dir / "events.parquet")
    stages = con.read_parquet(params.data.interim_dir / "stage_history.parquet")
    with progress() as bar:
        task = bar.add_task("features", total=1 + len(examples))
        attrs = lead_attributes(tables["leads"], tables["accounts"], spec.params)
        feats = build_features(con, events, stages, keys, attrs, spec, params.baseline)
        bar.advance(task)
        counts: dict[str, int] = {}
        for name, ex in examples.items():
            table = ex.merge(feats, on=["lead_id", "snapshot_ts"], how="left", validate="one_to_one")
            for split in SPLITS:
                path = features_path(params, name, split)
                path.parent.mkdir(parents=True, exist_ok=True)
                part = table[table["split"] == split].reset_index(drop=True)
                write_parquet(part, path)
                counts[f"{name}/{split}"] = len(part)
            bar.advance(task)
    return counts
