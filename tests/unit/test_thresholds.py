"""Thresholds from goals: handover counting, goal resolution, stage order, the stage's files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from leadscore.config import StageRule, load_params
from leadscore.models.thresholds import (
    GoalError,
    assign_stages,
    attach_p_won,
    check_on_test_slice,
    handover_window,
    handovers,
    resolve_stages,
    run_thresholds,
    slice_weeks,
    threshold_metrics,
)
from leadscore.serve.scorer import score_from_probability

EVERY = 30


def _synthetic(n_leads: int, n_dates: int, seed: int, split: str = "calibration") -> pd.DataFrame:
    """Prediction rows: each lead appears at consecutive monthly snapshots; labels ~ Bernoulli(p)."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2025-01-01", periods=n_dates, freq=f"{EVERY}D")
    rows = []
    for lead in range(n_leads):
        first = rng.integers(0, n_dates)
        last = rng.integers(first, n_dates)
        base = rng.beta(0.6, 8.0)
        for d in range(first, last + 1):
            rows.append((f"L{seed}-{lead}", dates[d], float(np.clip(base * rng.lognormal(0, 0.4), 0, 1))))
    f = pd.DataFrame(rows, columns=["lead_id", "snapshot_ts", "p"])
    f["label"] = (rng.random(len(f)) < f["p"]).astype(int)
    f["split"] = split
    f["stage_rank"] = 0
    return f


def _rule(**kw) -> StageRule:
    return StageRule.model_validate(kw)


def test_slice_weeks_counts_snapshot_dates_times_period() -> None:
    ts = pd.Series(pd.to_datetime(["2025-01-01", "2025-01-01", "2025-01-31", "2025-03-02"]))
    assert slice_weeks(ts, 30) == pytest.approx(3 * 30 / 7)


def test_handover_window_skips_the_burn_in_date() -> None:
    ts = pd.Series(pd.to_datetime(["2025-01-01", "2025-01-31", "2025-03-02", "2025-01-31"]))
    start, weeks = handover_window(ts, 30)
    assert start == pd.Timestamp("2025-01-31")
    assert weeks == pytest.approx(2 * 30 / 7)
    assert handover_window(ts[:1], 30) == (pd.Timestamp("2025-01-01"), pytest.approx(30 / 7))


def test_handover_counts_each_lead_once_at_its_first_flag_after_burn_in() -> None:
    d = pd.to_datetime(["2025-01-01", "2025-01-31", "2025-03-02"])
    frame = pd.DataFrame(
        {
            # A rises 0.1 -> 0.5 -> 0.3; B flat 0.2 from the burn-in date; C only the last date at 0.9;
            # D arrives on date 2 at 0.05 and rises to 0.4
            "lead_id": ["A", "A", "A", "B", "B", "C", "D", "D"],
            "snapshot_ts": [d[0], d[1], d[2], d[0], d[1], d[2], d[1], d[2]],
            "p": [0.1, 0.5, 0.3, 0.2, 0.2, 0.9, 0.05, 0.4],
            "label": [0, 1, 0, 0, 0, 1, 0, 1],
        }
    )
    h = handovers(frame, EVERY)
    assert h.new_leads == 2  # C and D arrive after the burn-in date
    taus = np.array([0.0, 0.15, 0.25, 0.45, 0.6, 0.95])
    m = threshold_metrics(frame, taus, EVERY)
    weeks = 2 * EVERY / 7
    # tau 0: C, D at arrival (A and B were flagged on the burn-in date already: not new)
    # tau .15: A at date 2 (label 1), C, D at date 3 (0.4, label 1); B never passes .15 after burn-in
    #          ... B is at 0.2 on the burn-in date: already flagged
    # tau .25: A, C, D ; tau .45: A, C ; tau .6: C ; tau .95: nobody
    assert m["leads_flagged"].tolist() == [2, 3, 3, 2, 1, 0]
    assert m["leads_per_week"].tolist() == pytest.approx(
        [2 / weeks, 3 / weeks, 3 / weeks, 2 / weeks, 1 / weeks, 0]
    )
    assert m["actual_sql"].tolist() == [1, 3, 3, 2, 1, 0]
    assert m["expected_sql"].tolist() == pytest.approx([0.9 + 0.05, 0.5 + 0.9 + 0.4, 1.8, 1.4, 0.9, 0.0])
    assert m["mql_to_sql_rate"].iloc[0] == pytest.approx(0.5)
    assert m["share_of_new_leads"].iloc[0] == pytest.approx(1.0)
    # precision / recall per snapshot row, all dates: at tau .25 the rows flagged are A(.5), A(.3),
    # C(.9), D(.4): 3 of 4 positive, all 3 positives found
    assert m["rows_flagged"].iloc[2] == 4
    assert m["precision"].iloc[2] == pytest.approx(3 / 4)
    assert m["recall"].iloc[2] == pytest.approx(1.0)
    assert np.isnan(m["precision"].iloc[5])


def _direct(frame: pd.DataFrame, tau: float) -> pd.DataFrame:
    """Handover rows counted directly: each lead's first flagged row, if after the burn-in date."""
    start = np.sort(frame["snapshot_ts"].unique())[1]
    srt = frame.sort_values(["lead_id", "snapshot_ts"])
    first = srt[srt["p"] >= tau].groupby("lead_id").head(1)
    return first[first["snapshot_ts"] >= start]


def test_threshold_metrics_match_a_brute_force_count() -> None:
    frame = _synthetic(400, 6, seed=1)
    taus = np.quantile(frame["p"], [0.0, 0.3, 0.7, 0.9, 0.99])
    m = threshold_metrics(frame, taus, EVERY)
    for i, tau in enumerate(taus):
        first = _direct(frame, tau)
        assert m["leads_flagged"].iloc[i] == len(first)
        assert m["actual_sql"].iloc[i] == first["label"].sum()
        assert m["expected_sql"].iloc[i] == pytest.approx(first["p"].sum())
        flagged = frame[frame["p"] >= tau]
        assert m["precision"].iloc[i] == pytest.approx(flagged["label"].mean())


@pytest.mark.parametrize("capacity", [5.0, 20.0, 60.0])
def test_capacity_goal_flags_capacity_within_ten_percent(capacity: float) -> None:
    frame = _synthetic(3000, 8, seed=2)
    stages = resolve_stages(frame, (_rule(name="sales_ready", goal={"capacity_per_week": capacity}),), EVERY)
    tau = stages[0].probability
    weeks = (frame["snapshot_ts"].nunique() - 1) * EVERY / 7
    direct = len(_direct(frame, tau)) / weeks  # a direct count, not the table
    assert direct == pytest.approx(capacity, rel=0.10)
    assert stages[0].achieved["leads_per_week"] == pytest.approx(direct)


def test_precision_and_conversion_goals_are_met_with_most_volume() -> None:
    frame = _synthetic(3000, 8, seed=3)
    rules = (
        _rule(name="hot", goal={"min_precision": 0.3}),
        _rule(name="warm", goal={"target_conversion": 0.15}),
    )
    hot, warm = resolve_stages(frame, rules, EVERY)
    flagged = frame[frame["p"] >= hot.probability]
    assert flagged["label"].mean() >= 0.3
    # one notch lower would break the goal (or lack support): the threshold is the lowest that meets it
    lower = np.sort(frame["p"].unique())
    below = lower[lower < hot.probability].max()
    assert frame.loc[frame["p"] >= below, "label"].mean() < 0.3
    assert warm.achieved["mql_to_sql_rate"] >= 0.15
    assert warm.probability <= hot.probability


def test_stage_order_is_respected_and_violations_fail() -> None:
    frame = _synthetic(2000, 6, seed=4)
    rules = (
        _rule(name="sales_ready", goal={"capacity_per_week": 10}),
        _rule(name="mql", goal={"capacity_per_week": 40}),
        _rule(name="nurture", probability=0.0),
    )
    stages = resolve_stages(frame, rules, EVERY)
    probs = [s.probability for s in stages]
    assert probs == sorted(probs, reverse=True)
    assert [s.name for s in stages] == ["sales_ready", "mql", "nurture"]
    with pytest.raises(GoalError, match="above the previous stage 'sales_ready'"):
        resolve_stages(
            frame,
            (_rule(name="sales_ready", goal={"capacity_per_week": 40}), _rule(name="mql", probability=0.99)),
            EVERY,
        )


@pytest.mark.parametrize(
    ("goal", "message"),
    [
        ({"min_precision": 0.99}, "cannot be met on the calibration slice: the best precision"),
        ({"target_conversion": 0.99}, "cannot be met on the calibration slice: the best MQL→SQL rate"),
        ({"capacity_per_week": 1e6}, "fewer than the capacity"),
        ({"capacity_per_week": 1e-4}, "less than one lead"),
    ],
)
def test_goals_that_cannot_be_met_fail_clearly(goal: dict, message: str) -> None:
    frame = _synthetic(500, 4, seed=5)
    with pytest.raises(GoalError, match=message):
        resolve_stages(frame, (_rule(name="sales_ready", goal=goal),), EVERY)


def test_assign_stages_takes_the_first_rule_reached() -> None:
    stages = [{"name": "sales_ready", "probability": 0.4}, {"name": "mql", "probability": 0.1}]
    out = assign_stages(np.array([0.5, 0.4, 0.2, 0.05]), stages)
    assert out.tolist() == ["sales_ready", "sales_ready", "mql", ""]


def test_attach_p_won_uses_same_rows_and_a_ratio_elsewhere() -> None:
    t = pd.Timestamp("2025-01-01")
    sql = pd.DataFrame({"lead_id": ["A", "B"], "snapshot_ts": [t, t], "p": [0.5, 0.2], "label": [1, 0]})
    won = pd.DataFrame(
        {
            "lead_id": ["A", "C"],
            "snapshot_ts": [t, t],
            "p": [0.1, 0.05],
            "p_sql": [0.5, 0.25],
            "stage_rank": [0, 1],
        }
    )
    out, info = attach_p_won(sql, won)
    ratio = (0.1 + 0.05) / (0.5 + 0.25)
    assert out["p_won"].tolist() == pytest.approx([0.1, 0.2 * ratio])
    assert info["matched_share"] == 0.5
    assert attach_p_won(sql, None)[1] == {"source": "none"}


def test_test_slice_check_agrees_within_sampling_error_on_the_same_population() -> None:
    cal = _synthetic(1500, 6, seed=6)
    stages = resolve_stages(cal, (_rule(name="sales_ready", goal={"capacity_per_week": 15}),), EVERY)
    # fresh test slices from the same process: the 2-standard-error band holds about 95 % of the time
    agree = [
        check_on_test_slice(cal, _synthetic(1500, 6, seed=s, split="test"), stages, EVERY)[0]["agrees"]
        for s in range(100, 120)
    ]
    for key in ("leads_per_week", "precision", "mql_to_sql_rate"):
        assert np.mean([a[key] for a in agree]) >= 0.8, key
    # a test slice with twice the leads cannot agree on volume
    test = _synthetic(1500, 6, seed=7, split="test")
    double = pd.concat([test, test.assign(lead_id=test["lead_id"] + "x")])
    check = check_on_test_slice(cal, double, stages, EVERY)[0]
    assert not check["agrees"]["leads_per_week"]
    assert check["test"]["leads_per_week"] == pytest.approx(
        2 * check_on_test_slice(cal, test, stages, EVERY)[0]["test"]["leads_per_week"]
    )


def test_run_thresholds_writes_bundle_json_and_table(tmp_path) -> None:
    params = load_params(
        "params.yaml",
        overrides={
            "data.build_dir": str(tmp_path / "build"),
            "data.reports_dir": str(tmp_path / "reports"),
            "thresholds.stages": [
                {"name": "sales_ready", "goal": {"capacity_per_week": 25}},
                {"name": "mql", "goal": {"min_precision": 0.12}},
                {"name": "nurture", "probability": 0.0},
            ],
            "thresholds.grid_points": 50,
        },
    )
    preds = pd.concat([_synthetic(3000, 6, seed=8), _synthetic(3000, 6, seed=9, split="test")])
    (tmp_path / "build" / "train").mkdir(parents=True)
    preds.to_parquet(tmp_path / "build" / "train" / "predictions_sql.parquet")
    doc = run_thresholds(params)
    written = json.loads((tmp_path / "build" / "thresholds.json").read_text())
    assert written == json.loads(json.dumps(doc))
    assert written["target"] == "sql"
    assert [s["name"] for s in written["stages"]] == ["sales_ready", "mql", "nurture"]
    assert written["stages"][0]["goal"] == {"capacity_per_week": 25}
    assert written["stages"][0]["achieved"]["leads_per_week"] == pytest.approx(25, rel=0.1)
    assert "warning" not in written["stages"][0]["achieved"]
    assert "once" in written["definition"]
    # the 1–99 score's cut points: calibration-slice percentiles, so calibration leads spread evenly
    cuts = np.asarray(written["score_quantiles"])
    cal_p = preds.loc[preds["split"] == "calibration", "p"].to_numpy()
    assert len(cuts) == 98 and np.all(np.diff(cuts) >= 0)
    scores = score_from_probability(cal_p, cuts)
    assert scores.min() == 1 and scores.max() == 99
    assert np.bincount(scores, minlength=100)[1:].max() <= 3 * len(cal_p) / 99
    table = pd.read_csv(tmp_path / "reports" / "thresholds.csv")
    assert set(table["stage"].dropna()) == {"sales_ready", "mql", "nurture"}
    assert table["threshold"].is_monotonic_decreasing
    assert table["leads_per_week"].is_monotonic_increasing  # lower threshold, more leads
    report = json.loads((tmp_path / "reports" / "thresholds.json").read_text())
    assert report["edit"]["sales_ready"] == "thresholds.stages[0].goal.capacity_per_week"
    assert report["edit"]["nurture"] == "thresholds.stages[2].probability"
    assert [c["stage"] for c in report["test_check"]] == ["sales_ready", "mql", "nurture"]
    assert len(report["table"]) == len(table)
