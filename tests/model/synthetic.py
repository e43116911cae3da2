"""Small synthetic feature tables in the shape ``leadscore features`` writes (for fast train/bundle tests).

Every model feature of the real spec is present; the label depends on a few of them through a known
logistic function, which is also written as ``oracle_p``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.config import Params
from leadscore.features.spec import FeatureSpec

SPLIT_DATES = {
    "train": pd.date_range("2024-03-01", periods=8, freq="30D", unit="us"),
    "calibration": pd.date_range("2025-01-01", periods=3, freq="30D", unit="us"),
    "test": pd.date_range("2025-06-01", periods=3, freq="30D", unit="us"),
}
CATEGORIES = {
    "industry": ["software", "fintech", "retail", "education", "unknown"],
    "country": ["us", "de", "fr", "gb"],
    "lead_source": ["webinar", "organic_search", "paid_social", "referral"],
    "seniority": ["individual", "manager", "director", "vp", "student"],
    "department": ["it", "sales", "marketing", "other"],
    "email_type": ["business", "personal", "competitor"],
    "size_band": ["0-9", "10-49", "50-199", "200-499", "500+"],
}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def synthetic_split(
    spec: FeatureSpec, split: str, n_leads: int, seed: int, target: str = "sql", id_offset: int = 0
) -> pd.DataFrame:
    """One split's feature table: ``n_leads`` leads, each seen at one to three snapshot dates."""
    rng = np.random.default_rng(seed)
    dates = SPLIT_DATES[split]
    lead = np.repeat(np.arange(n_leads), rng.integers(1, 4, n_leads))
    n = len(lead)
    first = rng.integers(0, len(dates), n_leads)
    pos = np.minimum(first[lead] + (np.arange(n) - np.searchsorted(lead, lead)), len(dates) - 1)
    frame = pd.DataFrame({"lead_id": [f"L{id_offset + i:06d}" for i in lead], "snapshot_ts": dates[pos]})
    for name in spec.numeric:
        frame[name] = rng.poisson(0.7, n).astype(float)
    frame.loc[rng.random(n) < 0.3, "days_since_last_pricing_view"] = np.nan
    frame["stage_rank"] = rng.choice([0.0, 1.0, 2.0, 3.0], n, p=[0.5, 0.3, 0.1, 0.1])
    for name in spec.categorical:
        frame[name] = rng.choice(CATEGORIES.get(name, ["a", "b"]), n)
    z = (
        -2.2
        + 0.8 * frame["cnt_pricing_view_30d"]
        + 0.6 * frame["cnt_demo_request_90d"]
        + 0.7 * (frame["seniority"] == "vp")
        - 1.0 * (frame["email_type"] == "personal")
        + 0.4 * (frame["industry"] == "software")
    )
    if target != "sql":
        z = z - 1.0
    p = _sigmoid(z.to_numpy())
    frame["oracle_p"] = p
    frame["label"] = (rng.random(n) < p).astype(np.int8)
    frame["label_ts"] = frame["snapshot_ts"] + pd.Timedelta(days=10)
    frame.loc[frame["label"] == 0, "label_ts"] = pd.NaT
    frame["split"] = split
    frame["rule_score"] = 20.0 * (frame["cnt_pricing_view_30d"] > 0) - 10.0 * (
        frame["email_type"] == "personal"
    )
    return frame.sort_values(["snapshot_ts", "lead_id"], kind="stable").reset_index(drop=True)


def synthetic_frames(
    params: Params, n_leads: int = 1500, seed: int = 0
) -> dict[str, dict[str, pd.DataFrame]]:
    """Feature tables per target and split (lead-disjoint splits)."""
    spec = FeatureSpec(params.features)
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for ti, target in enumerate(params.snapshots.targets):
        out[target] = {
            split: synthetic_split(spec, split, n_leads, seed + 10 * ti + si, target, id_offset=si * n_leads)
            for si, split in enumerate(SPLIT_DATES)
        }
    return out


def write_processed(frames: dict[str, dict[str, pd.DataFrame]], processed_dir: Path) -> None:
    """Write frames where ``run_train`` reads them."""
    for target, splits in frames.items():
        for split, frame in splits.items():
            path = Path(processed_dir) / target / f"{split}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(path, index=False)


def tmp_params(root: Path, **overrides: object) -> Params:
    """Repo params with every data path under ``root`` (plus dotted-key overrides)."""
    from leadscore.config import load_params

    repo = Path(__file__).resolve().parents[2]
    paths = {
        f"data.{k}": str(root / v)
        for k, v in {
            "raw_dir": "data/raw",
            "source": "data/raw",
            "demo_dir": "data/demo",
            "interim_dir": "data/interim",
            "processed_dir": "data/processed",
            "build_dir": "build",
            "models_dir": "models",
            "reports_dir": "reports",
        }.items()
    }
    return load_params(repo / "params.yaml", overrides={**paths, **overrides})
