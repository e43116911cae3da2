"""Point-in-time examples, labels and time-ordered splits."""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest

from leadscore.config import SnapshotParams, TargetParams, load_params
from leadscore.features.attributes import lead_attributes
from leadscore.features.batch import build_features
from leadscore.features.snapshots import (
    SPLITS,
    build_examples,
    first_stage_times,
    snapshot_calendar,
    split_bounds,
)
from leadscore.features.spec import FeatureSpec
from tests.model.synthetic import tmp_params

PARAMS = load_params("params.yaml")
SQL = TargetParams(stage="sql", horizon_days=90, past_stages=("sql", "opportunity", "closed_won"))


def _snap_params(**split: object) -> SnapshotParams:
    base = PARAMS.snapshots.model_dump()
    base["split"].update(split)
    return SnapshotParams.model_validate(base)


def _random_world(seed: int, n_leads: int = 300, days: int = 900) -> dict[str, pd.DataFrame]:
    """A small random world: leads over ``days``, events, and some leads reaching sql."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01")
    created = start + pd.to_timedelta(rng.integers(0, days - 200, n_leads), unit="D")
    leads = pd.DataFrame(
        {
            "lead_id": [f"L{i:04d}" for i in range(n_leads)],
            "account_id": None,
            "created_at": created.astype("datetime64[us]"),
            "email_domain": rng.choice(["acme.com", "gmail.com"], n_leads),
            "job_title": rng.choice(["VP Sales", "Engineer", "Student"], n_leads),
            "seniority": None,
            "department": None,
            "country": "US",
            "lead_source": rng.choice(["webinar", "referral"], n_leads),
        }
    )
    n_ev = n_leads * 20
    owner = rng.integers(0, n_leads, n_ev)
    ev_ts = created[owner] + pd.to_timedelta(rng.integers(0, 200 * 86400, n_ev), unit="s")
    events = pd.DataFrame(
        {
            "lead_id": leads.lead_id.to_numpy()[owner],
            "ts": ev_ts.astype("datetime64[us]"),
            "event_type": rng.choice(list(PARAMS.features.event_types), n_ev),
        }
    )
    conv = rng.random(n_leads) < 0.3
    stage_history = pd.DataFrame(
        {
            "lead_id": leads.lead_id[conv].to_numpy(),
            "stage": "sql",
            "ts": (created[conv] + pd.to_timedelta(rng.integers(1, 300, conv.sum()), unit="D")).astype(
                "datetime64[us]"
            ),
            "reason": None,
        }
    )
    accounts = pd.DataFrame(
        {
            "account_id": pd.Series([], dtype=object),
            "industry": [],
            "employees": [],
            "annual_revenue": [],
            "country": [],
        }
    )
    return {"leads": leads, "events": events, "stage_history": stage_history, "accounts": accounts}


def _reference_examples(
    leads: pd.DataFrame,
    stage_history: pd.DataFrame,
    end: pd.Timestamp,
    params: SnapshotParams,
    target: TargetParams,
) -> pd.DataFrame:
    """The rules of the module docstring written out in pandas, row by row of the calendar (the
    implementation before the labels moved into the engine): the engine's expression must agree."""
    horizon = pd.Timedelta(days=target.horizon_days)
    calendar = snapshot_calendar(leads["created_at"].min(), end, params)
    calendar = calendar[calendar + horizon <= end]
    bounds = split_bounds(calendar[0], calendar[-1], target.horizon_days, params)
    age = np.timedelta64(params.max_lead_age_days, "D")
    created = leads["created_at"].to_numpy()
    pieces = []
    for t in calendar.to_numpy():
        alive = (created < t) & (t - created <= age)
        pieces.append(pd.DataFrame({"lead_id": leads["lead_id"].to_numpy()[alive], "snapshot_ts": t}))
    ex = pd.concat(pieces, ignore_index=True)
    past = first_stage_times(stage_history, target.past_stages)
    ex = ex[~(ex["lead_id"].map(past) <= ex["snapshot_ts"])].copy()
    reached = first_stage_times(stage_history, [target.stage])
    ex["label_ts"] = ex["lead_id"].map(reached).astype("datetime64[us]")
    window = (ex["label_ts"] > ex["snapshot_ts"]) & (ex["label_ts"] <= ex["snapshot_ts"] + horizon)
    ex["label"] = window.astype(np.int8)
    ex["split"] = bounds.label(ex["snapshot_ts"])
    ex = ex[ex["split"].notna()].sort_values(["snapshot_ts", "lead_id"], kind="stable")
    ex = ex[ex["split"] == ex.groupby("lead_id")["split"].transform("first")].reset_index(drop=True)
    return ex[["lead_id", "snapshot_ts", "label", "label_ts", "split"]]


@pytest.mark.parametrize(
    ("seed", "overrides"),
    [(4, {}), (5, {"max_lead_age_days": 120}), (6, {"warmup_days": 0, "every_days": 7})],
)
def test_engine_examples_match_the_rules_written_in_pandas(seed: int, overrides: dict) -> None:
    world = _random_world(seed)
    # stage rows of every kind, some leads with several, some before creation: the past/target rules
    extra = world["stage_history"].sample(frac=0.5, random_state=seed).assign(stage="closed_lost")
    stages = pd.concat([world["stage_history"], extra], ignore_index=True)
    params = SnapshotParams.model_validate({**PARAMS.snapshots.model_dump(), **overrides})
    end = world["events"].ts.max()
    for target in (SQL, TargetParams(stage="closed_lost", horizon_days=60, past_stages=("closed_lost",))):
        got, _ = build_examples(world["leads"], stages, end, params, target)
        expected = _reference_examples(world["leads"], stages, end, params, target)
        assert len(got) > 100
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=True)


def test_stage_streams_the_same_examples_and_counts(tmp_path, monkeypatch) -> None:
    """The stage (engine scratch table, streamed in small batches and row groups) writes what
    ``build_examples`` returns, and its split counts are those of the written rows."""
    import leadscore.data.parquet as parquet
    import leadscore.features.stage as stage
    from leadscore.data.parquet import write_parquet

    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 1500)
    monkeypatch.setattr(stage, "ROW_GROUP_ROWS", 1500)
    world = _random_world(7, n_leads=700)
    params = tmp_params(tmp_path, **{"engine.batch_rows": 1000})
    params.data.interim_dir.mkdir(parents=True)
    for name in ("leads", "events", "stage_history"):
        write_parquet(world[name], params.data.interim_dir / f"{name}.parquet")
    summary = stage.run_snapshots(params)
    end = max(world["events"].ts.max(), world["stage_history"].ts.max(), world["leads"].created_at.max())
    assert summary["export_end"] == str(end)
    for name, target in params.snapshots.targets.items():
        written = pd.read_parquet(stage.snapshots_path(params, name))
        sh = world["stage_history"]
        expected, bounds = build_examples(world["leads"], sh, end, params.snapshots, target)
        assert len(written) > 1500  # more than one row group
        pd.testing.assert_frame_equal(written, expected, check_exact=True)
        assert summary[name]["bounds"]["test"] == [str(bounds.test[0]), str(bounds.test[1])]
        for split in SPLITS:
            rows = written[written.split == split]
            assert summary[name][split] == {
                "n": len(rows), "leads": rows.lead_id.nunique(), "base_rate": float(rows.label.mean())
            }


def test_labels_window_and_exclusions() -> None:
    t0 = pd.Timestamp("2024-01-01")
    leads = pd.DataFrame(
        {"lead_id": ["a", "b", "c", "d"], "created_at": [t0] * 4},
    )
    sh = pd.DataFrame(
        {
            "lead_id": ["a", "b", "c"],
            "stage": ["sql", "sql", "mql"],
            "ts": [t0 + pd.Timedelta(days=200), t0 + pd.Timedelta(days=400), t0 + pd.Timedelta(days=10)],
        }
    )
    end = t0 + pd.Timedelta(days=900)
    params = _snap_params(purge_horizon=False)
    params = SnapshotParams.model_validate(
        {**params.model_dump(), "warmup_days": 0, "max_lead_age_days": 2000}
    )
    ex, _ = build_examples(leads, sh, end, params, SQL)
    # Lead a reaches sql at day 200: labels 1 exactly for snapshots in [day 110, day 200).
    a = ex[ex.lead_id == "a"]
    days = (a.snapshot_ts - t0).dt.days
    assert (a.label.to_numpy() == ((days >= 110) & (days < 200)).to_numpy()).all()
    # After reaching the target, the lead is no longer an example.
    assert (days < 200).all()
    # A lead that never converts is a negative until censoring.
    d = ex[ex.lead_id == "d"]
    assert d.label.sum() == 0
    # Right-censored: no snapshot whose window passes the export end.
    assert (ex.snapshot_ts + pd.Timedelta(days=90) <= end).all()


def test_splits_time_ordered_purged_and_lead_disjoint() -> None:
    world = _random_world(1)
    end = world["events"].ts.max()
    ex, bounds = build_examples(world["leads"], world["stage_history"], end, PARAMS.snapshots, SQL)
    by = {s: ex[ex.split == s] for s in ("train", "calibration", "test")}
    assert all(len(v) for v in by.values())
    assert by["train"].snapshot_ts.max() < by["calibration"].snapshot_ts.min()
    assert by["calibration"].snapshot_ts.max() < by["test"].snapshot_ts.min()
    # Purge: every label window of an earlier slice closes before the next slice's first snapshot.
    horizon = pd.Timedelta(days=SQL.horizon_days)
    assert by["train"].snapshot_ts.max() + horizon <= by["calibration"].snapshot_ts.min()
    assert by["calibration"].snapshot_ts.max() + horizon <= by["test"].snapshot_ts.min()
    leads = [set(v.lead_id) for v in by.values()]
    assert not (leads[0] & leads[1]) and not (leads[0] & leads[2]) and not (leads[1] & leads[2])
    assert bounds.train[1] < bounds.calibration[0] < bounds.test[0]


def test_too_short_history_fails_clearly() -> None:
    with pytest.raises(ValueError, match="too short"):
        split_bounds(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-06-01"), 90, PARAMS.snapshots)


def test_future_data_never_changes_past_features_or_labels() -> None:
    """Point-in-time: append events and stage changes after a cut; examples before it are unchanged."""
    world = _random_world(2)
    spec = FeatureSpec(PARAMS.features)
    end = world["events"].ts.max()
    cut = pd.Timestamp("2025-06-01")

    def features(w: dict[str, pd.DataFrame], examples: pd.DataFrame) -> pd.DataFrame:
        con = ibis.duckdb.connect()
        ev = con.create_table("events", w["events"])
        st = con.create_table("stages", w["stage_history"][["lead_id", "stage", "ts"]])
        attrs = lead_attributes(w["leads"], w["accounts"], spec.params)
        return build_features(con, ev, st, examples, attrs, spec, PARAMS.baseline)

    ex_before, _ = build_examples(world["leads"], world["stage_history"], end, PARAMS.snapshots, SQL)
    rng = np.random.default_rng(3)
    ids = world["leads"].lead_id.to_numpy()
    late = pd.DataFrame(
        {
            "lead_id": rng.choice(ids, 3000),
            "ts": (cut + pd.to_timedelta(rng.integers(0, 200 * 86400, 3000), unit="s")).astype(
                "datetime64[us]"
            ),
            "event_type": rng.choice(list(spec.event_types), 3000),
        }
    )
    late_stages = pd.DataFrame(
        {
            "lead_id": rng.choice(ids, 100),
            "stage": "sql",
            "ts": (cut + pd.to_timedelta(rng.integers(0, 100, 100), unit="D")).astype("datetime64[us]"),
            "reason": None,
        }
    )
    world2 = {
        **world,
        "events": pd.concat([world["events"], late], ignore_index=True),
        "stage_history": pd.concat([world["stage_history"], late_stages], ignore_index=True),
    }
    ex_after, _ = build_examples(world2["leads"], world2["stage_history"], end, PARAMS.snapshots, SQL)

    keys = ["lead_id", "snapshot_ts"]
    early = ex_before[ex_before.snapshot_ts <= cut]
    assert len(early) > 100
    # Labels whose window closed before the cut cannot change.
    closed = early[early.snapshot_ts + pd.Timedelta(days=SQL.horizon_days) < cut]
    merged = closed.merge(ex_after, on=keys, suffixes=("", "_after"))
    assert len(merged) == len(closed)
    assert (merged.label == merged.label_after).all()
    # Features at snapshots up to the cut are identical with and without the later data.
    f1 = features(world, early[keys]).sort_values(keys).reset_index(drop=True)
    f2 = features(world2, early[keys]).sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(f1, f2)
