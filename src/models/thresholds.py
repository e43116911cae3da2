"""Stage thresholds from business goals, and the threshold table marketing reads.

The ``thresholds`` stage reads only the trained model's predictions (never the training data), so
changing ``params.thresholds`` reruns this stage and what depends on it, never training.

Definitions (also written into ``build/thresholds.json`` and the report):

* **flagged at threshold τ**: a snapshot row with calibrated probability ``p >= τ``. Stages are cumulative
  for goals: a stage's goal is about every lead that reaches *this stage or a higher one* (p >= its
  threshold), which is how revenue teams count MQLs (a sales-ready lead is also an MQL).
* **leads per week** (capacity): a lead appears in one snapshot every ``snapshots.every_days`` days, so
  counting rows would count the same lead again every month. A lead is counted **once, at its handover**:
  the first snapshot where it is flagged. A slice holds only leads new to it (a lead belongs to the slice
  of its first example), and its first snapshot date also holds every lead created in the purge gap
  before it: a backlog that production would have handed over during the gap. So the first date is a
  *burn-in*: it tells which leads were already flagged, and handovers are counted from the second date
  on. Leads per week = handovers at dates 2..n / ((n - 1) x ``every_days`` / 7). (A slice with one
  date counts that date.) On demo data the first date holds ~5x the leads of later dates; without the
  burn-in the weekly figure would be ~1.6x the steady-state rate.
  Leads older than the slice (created before it) are not in it; their late handovers are missing, a
  small effect since interest fades with age.
* **MQL→SQL rate implied**: among leads handed over at τ, the share that reached SQL within the horizon
  after their handover snapshot (observed), and the mean calibrated probability at handover (expected).
* **expected SQLs**: the sum of calibrated ``p`` at handover; **actual SQLs**: the labels at handover.
* **precision / recall**: per snapshot row, as in the evaluation (share of flagged rows that convert;
  share of converting rows that are flagged).
* **expected closed-won**: the closed-won model's (chain-capped) probability of the same (lead, snapshot)
  row when the closed-won predictions hold it; for rows they do not hold (the closed-won target has its
  own horizon, calendar and slice bounds) ``p_sql x r``, where r = sum(p_won) / sum(p_sql) over the
  pre-SQL rows of the closed-won predictions. The share of matched rows is reported.

Goals resolve on the calibration slice only, in the order of ``params.thresholds.stages``:
``capacity_per_week`` picks the threshold whose handovers per week are closest to the capacity;
``min_precision`` / ``target_conversion`` pick the lowest threshold at which the observed metric, and
the metric at every higher threshold with enough support, meets the goal (most volume that still meets
it). Thresholds must not increase down the list; a goal that cannot be met fails with the reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import Params, StageRule
from leadscore.data.contract import STAGE_RANK

#: A precision / conversion goal only counts at thresholds with at least this many flagged rows / leads
#: (below it the observed rate is noise).
MIN_SUPPORT = 50

#: Capacity: the chosen threshold must hand over this close to the capacity (relative), else the
#: stage fails (happens only when calibrated probabilities have a plateau around the cut).
CAPACITY_TOLERANCE = 0.10

DEFINITION = " ".join(
    [
        "Leads per week = leads handed over per week: a lead counts once, at the first snapshot where its",
        "calibrated probability reaches the threshold (its handover). The slice's first snapshot date is a",
        "burn-in (it also holds the backlog of leads created before the slice), so handovers are counted",
        "on dates 2..n and divided by (n - 1) x every_days / 7 weeks.",
        "Goals apply to every lead at this stage or a higher one (p >= threshold).",
        "MQL->SQL rate = share of handed-over leads that reached SQL within the horizon after handover.",
        "Precision and recall are per snapshot row. Expected SQLs = sum of calibrated p at handover.",
        "Expected closed-won = the closed-won model's probability of the same rows (or p_sql x the",
        "slice's won/SQL ratio where it has no row).",
    ]
)


class GoalError(ValueError):
    """A stage goal that the calibration slice cannot meet, or stages out of order."""


# --------------------------------------------------------------------------------------------------
# slice geometry


def slice_weeks(snapshot_ts: pd.Series | np.ndarray, every_days: int) -> float:
    """Length of a slice in weeks: distinct snapshot dates x ``every_days`` / 7."""
    n_dates = len(pd.unique(np.asarray(snapshot_ts)))
    return max(n_dates, 1) * every_days / 7.0


def handover_window(snapshot_ts: pd.Series | np.ndarray, every_days: int) -> tuple[pd.Timestamp, float]:
    """(first counted snapshot date, weeks counted): dates 2..n after a one-date burn-in, or the only
    date when the slice has one."""
    dates = np.sort(pd.unique(np.asarray(snapshot_ts)))
    if len(dates) == 0:
        raise ValueError("no snapshot dates in the slice")
    if len(dates) == 1:
        return pd.Timestamp(dates[0]), every_days / 7.0
    return pd.Timestamp(dates[1]), (len(dates) - 1) * every_days / 7.0


@dataclass(frozen=True)
class Handovers:
    """Per lead, the rows where its running maximum of p rises (sorted by time), in the window.

    A lead is handed over at threshold τ at the record row with ``lo < τ <= hi``: ``hi`` is p there and
    ``lo`` the highest p the lead had before (burn-in rows included). The intervals of one lead partition
    (-inf, max p], so at every τ each lead is counted at most once, at its first flagged snapshot; records
    before the window are dropped (those leads were flagged before it: no new handover).
    """

    lo: np.ndarray
    hi: np.ndarray
    label: np.ndarray
    p: np.ndarray
    p_won: np.ndarray
    weeks: float
    new_leads: int  # leads whose first snapshot is in the window (= handovers at τ = 0)


def handovers(frame: pd.DataFrame, every_days: int) -> Handovers:
    """Handover records from rows with lead_id, snapshot_ts, p, label (and optional p_won)."""
    start, weeks = handover_window(frame["snapshot_ts"], every_days)
    f = frame.sort_values(["lead_id", "snapshot_ts"], kind="stable")
    p = f["p"].to_numpy(dtype=np.float64)
    running = f.groupby("lead_id", sort=False)["p"].cummax().to_numpy(dtype=np.float64)
    lead = f["lead_id"].to_numpy()
    same_lead = np.r_[False, lead[1:] == lead[:-1]]
    prev = np.where(same_lead, np.r_[-np.inf, running[:-1]], -np.inf)
    in_window = (f["snapshot_ts"] >= start).to_numpy()
    record = (p > prev) & in_window  # the running maximum rises here (always on a lead's first row)
    won = f["p_won"].to_numpy(dtype=np.float64) if "p_won" in f else np.full(len(f), np.nan)
    return Handovers(
        lo=prev[record],
        hi=running[record],
        label=f["label"].to_numpy(dtype=np.float64)[record],
        p=p[record],
        p_won=won[record],
        weeks=weeks,
        new_leads=int(np.sum(~same_lead & in_window)),
    )


def _sum_ge(keys: np.ndarray, weights: np.ndarray | None, taus: np.ndarray) -> np.ndarray:
    """For each τ: sum of ``weights`` (or count) over entries with key >= τ."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    w = np.ones(len(k)) if weights is None else np.nan_to_num(weights[order])
    tail = np.concatenate([np.cumsum(w[::-1])[::-1], [0.0]])
    return tail[np.searchsorted(k, taus, side="left")]


def _interval_sum(h: Handovers, weights: np.ndarray | None, taus: np.ndarray) -> np.ndarray:
    """Sum over handover records with lo < τ <= hi (one per flagged lead) for each τ."""
    return _sum_ge(h.hi, weights, taus) - _sum_ge(h.lo, weights, taus)


# --------------------------------------------------------------------------------------------------
# the table


def threshold_metrics(frame: pd.DataFrame, taus: np.ndarray, every_days: int) -> pd.DataFrame:
    """Metrics of flagging p >= τ for each τ on one slice.

    ``frame``: prediction rows of one slice (lead_id, snapshot_ts, label, p, optional p_won).
    Returns one row per τ: leads handed over (total and per week, see ``handover_window``), expected /
    actual SQLs and expected closed-won of those handovers, the MQL→SQL rate implied (observed and
    expected), and per snapshot row (all dates) precision, recall, rows flagged.
    """
    taus = np.asarray(taus, dtype=np.float64)
    p = frame["p"].to_numpy(dtype=np.float64)
    y = frame["label"].to_numpy(dtype=np.float64)
    rows = _sum_ge(p, None, taus)
    tp = _sum_ge(p, y, taus)
    h = handovers(frame, every_days)
    weeks = h.weeks
    leads = _interval_sum(h, None, taus)
    exp_sql = _interval_sum(h, h.p, taus)
    act_sql = _interval_sum(h, h.label, taus)
    exp_won = _interval_sum(h, h.p_won, taus) if np.isfinite(h.p_won).any() else np.full(len(taus), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = pd.DataFrame(
            {
                "threshold": taus,
                "leads_per_week": leads / weeks,
                "leads_flagged": leads.astype(np.int64),
                # handovers relative to new leads (those first seen in the window): 1 at τ = 0; can pass
                # 1 slightly at tiny τ (burn-in leads handed over later also count)
                "share_of_new_leads": leads / max(h.new_leads, 1),
                "expected_sql": exp_sql,
                "actual_sql": act_sql,
                "expected_won": exp_won,
                "mql_to_sql_rate": np.where(leads > 0, act_sql / leads, np.nan),
                "mql_to_sql_expected": np.where(leads > 0, exp_sql / leads, np.nan),
                "precision": np.where(rows > 0, tp / rows, np.nan),
                "recall": tp / y.sum() if y.sum() > 0 else np.full(len(taus), np.nan),
                "rows_flagged": rows.astype(np.int64),
            }
        )
    out["expected_sql_per_week"] = out["expected_sql"] / weeks
    out["expected_won_per_week"] = out["expected_won"] / weeks
    return out


def threshold_grid(p: np.ndarray, grid_points: int) -> np.ndarray:
    """Candidate thresholds: ``grid_points`` quantiles of p (distinct values, ascending)."""
    return np.unique(np.quantile(np.asarray(p, dtype=np.float64), np.linspace(0.0, 1.0, grid_points)))


# --------------------------------------------------------------------------------------------------
# closed-won


def attach_p_won(frame: pd.DataFrame, won: pd.DataFrame | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Add ``p_won`` to SQL-target rows from the closed-won predictions (see the module docstring).

    ``won``: closed-won prediction rows (lead_id, snapshot_ts, p, p_sql, stage_rank) or None.
    Returns the frame with p_won and how it was obtained.
    """
    if won is None or won.empty:
        return frame, {"source": "none"}
    keyed = won[["lead_id", "snapshot_ts", "p"]].rename(columns={"p": "p_won"})
    keyed = keyed.drop_duplicates(["lead_id", "snapshot_ts"])
    out = frame.merge(keyed, on=["lead_id", "snapshot_ts"], how="left", validate="many_to_one")
    pre = won[won["stage_rank"] < STAGE_RANK["sql"]] if "stage_rank" in won else won
    ratio = (
        float(pre["p"].sum() / pre["p_sql"].sum()) if "p_sql" in pre and pre["p_sql"].sum() > 0 else math.nan
    )
    matched = out["p_won"].notna()
    if not math.isnan(ratio):
        out["p_won"] = out["p_won"].fillna(out["p"] * ratio)
    return out, {
        "source": "closed_won predictions of the same rows; p_sql x ratio elsewhere",
        "matched_share": float(matched.mean()) if len(out) else math.nan,
        "won_per_sql_ratio": ratio,
    }


# --------------------------------------------------------------------------------------------------
# goals


@dataclass(frozen=True)
class ResolvedStage:
    """A stage rule resolved to a probability, with what it achieves on the calibration slice."""

    name: str
    probability: float
    goal: dict[str, float] | None
    achieved: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "probability": self.probability,
            "goal": self.goal,
            "achieved": self.achieved,
        }


def _goal_text(rule: StageRule) -> str:
    goal = {k: v for k, v in (rule.goal.model_dump() if rule.goal else {}).items() if v is not None}
    return f"stage {rule.name!r} ({', '.join(f'{k}={v}' for k, v in goal.items()) or 'fixed'})"


def _capacity_threshold(
    candidates: np.ndarray,
    per_week: np.ndarray,
    new_per_week: float,
    weeks: float,
    capacity: float,
    rule: StageRule,
) -> float:
    """The candidate threshold whose handovers per week are closest to ``capacity`` (highest on ties)."""
    if capacity >= new_per_week:
        raise GoalError(
            f"{_goal_text(rule)} cannot be met: the calibration slice has only {new_per_week:.1f} new leads "
            f"per week, fewer than the capacity; every lead would be flagged. Lower the capacity or give "
            f"the stage a fixed `probability`."
        )
    if capacity * weeks < 1:
        raise GoalError(
            f"{_goal_text(rule)}: the capacity is less than one lead over the calibration slice's "
            f"{weeks:.1f} counted weeks; raise it."
        )
    gap = np.abs(per_week - capacity)
    best = np.flatnonzero(gap <= gap.min() + 1e-12)
    return float(candidates[best].max())


def _rate_threshold(
    candidates: np.ndarray, metric: np.ndarray, support: np.ndarray, goal: float, what: str, rule: StageRule
) -> float:
    """Lowest candidate where ``metric >= goal`` there and at every higher supported candidate."""
    order = np.argsort(-candidates)
    c, m, s = candidates[order], metric[order], support[order]
    ok_support = s >= MIN_SUPPORT
    if not ok_support.any():
        raise GoalError(f"{_goal_text(rule)}: fewer than {MIN_SUPPORT} flagged at any threshold")
    c, m = c[ok_support], m[ok_support]
    fails = np.flatnonzero(~(m >= goal))
    last_ok = (fails[0] if len(fails) else len(c)) - 1
    if last_ok < 0:
        best = np.nanmax(m)
        raise GoalError(
            f"{_goal_text(rule)} cannot be met on the calibration slice: the best {what} with at least "
            f"{MIN_SUPPORT} flagged is {best:.3f} (goal {goal:.3f}). Lower the goal or use a fixed "
            f"`probability`."
        )
    return float(c[last_ok])


def resolve_stages(frame: pd.DataFrame, rules: tuple[StageRule, ...], every_days: int) -> list[ResolvedStage]:
    """Resolve ordered stage rules into probabilities on the calibration rows ``frame``.

    Raises ``GoalError`` when a goal cannot be met or a threshold would exceed the previous stage's.
    """
    candidates = np.unique(frame["p"].to_numpy(dtype=np.float64))
    cand_metrics = threshold_metrics(frame, candidates, every_days)
    h = handovers(frame, every_days)
    resolved: list[ResolvedStage] = []
    previous: tuple[str, float] | None = None
    for rule in rules:
        goal = None
        if rule.probability is not None:
            tau = float(rule.probability)
        else:
            assert rule.goal is not None
            goal = {k: v for k, v in rule.goal.model_dump().items() if v is not None}
            if rule.goal.capacity_per_week is not None:
                tau = _capacity_threshold(
                    candidates,
                    cand_metrics["leads_per_week"].to_numpy(),
                    h.new_leads / h.weeks,
                    h.weeks,
                    rule.goal.capacity_per_week,
                    rule,
                )
            elif rule.goal.min_precision is not None:
                tau = _rate_threshold(
                    candidates,
                    cand_metrics["precision"].to_numpy(),
                    cand_metrics["rows_flagged"].to_numpy(),
                    rule.goal.min_precision,
                    "precision",
                    rule,
                )
            else:
                tau = _rate_threshold(
                    candidates,
                    cand_metrics["mql_to_sql_rate"].to_numpy(),
                    cand_metrics["leads_flagged"].to_numpy(),
                    float(rule.goal.target_conversion),  # type: ignore[arg-type]
                    "MQL→SQL rate",
                    rule,
                )
        if previous is not None and tau > previous[1]:
            raise GoalError(
                f"{_goal_text(rule)} resolves to probability {tau:.4f}, above the previous stage "
                f"{previous[0]!r} ({previous[1]:.4f}); stages are ordered from the highest threshold down, "
                f"so this stage would be empty. Loosen its goal, tighten the previous one, or reorder."
            )
        resolved.append(ResolvedStage(rule.name, tau, goal))
        previous = (rule.name, tau)
    return [_with_achieved(frame, resolved, i, every_days) for i in range(len(resolved))]


def _with_achieved(
    frame: pd.DataFrame, stages: list[ResolvedStage], i: int, every_days: int
) -> ResolvedStage:
    """Attach what the stage achieves on the slice (every lead at this stage or a higher one)."""
    s = stages[i]
    row = threshold_metrics(frame, np.array([s.probability]), every_days).iloc[0]
    achieved: dict[str, Any] = {
        "leads_per_week": float(row["leads_per_week"]),
        "precision": _f(row["precision"]),
        "recall": _f(row["recall"]),
        "mql_to_sql_rate": _f(row["mql_to_sql_rate"]),
        "mql_to_sql_expected": _f(row["mql_to_sql_expected"]),
        "expected_sql_per_week": float(row["expected_sql_per_week"]),
        "expected_won_per_week": _f(row["expected_won_per_week"]),
    }
    cap = (s.goal or {}).get("capacity_per_week")
    if cap is not None and abs(achieved["leads_per_week"] - cap) > CAPACITY_TOLERANCE * cap:
        # calibrated probabilities are tied on a plateau (isotonic) around the cut: no threshold
        # separates them, so the closest achievable volume is used and the gap is reported
        achieved["warning"] = (
            f"closest achievable volume is {achieved['leads_per_week']:.1f} leads/week (capacity {cap:g}): "
            "many leads share the same calibrated probability around the cut"
        )
    return ResolvedStage(s.name, s.probability, s.goal, achieved)


def _f(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def assign_stages(p: np.ndarray, stages: list[ResolvedStage] | list[dict[str, Any]]) -> np.ndarray:
    """Stage name per probability: the first rule (in order) whose probability p reaches; '' if none.

    Accepts resolved stages or their JSON (``build/thresholds.json`` / the bundle's ``thresholds.json``).
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full(len(p), "", dtype=object)
    todo = np.ones(len(p), dtype=bool)
    for s in stages:
        name, tau = (s["name"], s["probability"]) if isinstance(s, dict) else (s.name, s.probability)
        hit = todo & (p >= tau)
        out[hit] = name
        todo &= ~hit
    return out


# --------------------------------------------------------------------------------------------------
# the test-slice check


def check_on_test_slice(
    calibration: pd.DataFrame, test: pd.DataFrame, stages: list[ResolvedStage], every_days: int
) -> list[dict[str, Any]]:
    """Per chosen threshold: calibration figures next to a direct count on the test slice.

    Sampling error: handovers are counts (Poisson, se = sqrt(n) / weeks); precision and MQL→SQL rate are
    proportions (se = sqrt(r (1 - r) / n)). ``agrees`` when the difference is within 2 combined se.
    A real difference (seasonality, drift) shows as a disagreement, which is the point of the check.
    """
    taus = np.array([s.probability for s in stages])
    cal = threshold_metrics(calibration, taus, every_days)
    tst = threshold_metrics(test, taus, every_days)
    w_cal = handover_window(calibration["snapshot_ts"], every_days)[1]
    w_tst = handover_window(test["snapshot_ts"], every_days)[1]
    out = []
    for i, s in enumerate(stages):
        c, t = cal.iloc[i], tst.iloc[i]
        se_lpw = math.sqrt(c["leads_flagged"] / w_cal**2 + t["leads_flagged"] / w_tst**2)
        entry: dict[str, Any] = {
            "stage": s.name,
            "probability": s.probability,
            "calibration": {
                "leads_per_week": float(c["leads_per_week"]),
                "precision": _f(c["precision"]),
                "mql_to_sql_rate": _f(c["mql_to_sql_rate"]),
            },
            "test": {
                "leads_per_week": float(t["leads_per_week"]),
                "precision": _f(t["precision"]),
                "mql_to_sql_rate": _f(t["mql_to_sql_rate"]),
                "expected_sql": float(t["expected_sql"]),
                "actual_sql": float(t["actual_sql"]),
                "weeks": w_tst,
            },
            "agrees": {"leads_per_week": bool(abs(c["leads_per_week"] - t["leads_per_week"]) <= 2 * se_lpw)},
        }
        for key, n_col in (("precision", "rows_flagged"), ("mql_to_sql_rate", "leads_flagged")):
            rc, rt, nc, nt = c[key], t[key], c[n_col], t[n_col]
            if nc > 0 and nt > 0 and np.isfinite(rc) and np.isfinite(rt):
                se = math.sqrt(rc * (1 - rc) / nc + rt * (1 - rt) / nt)
                entry["agrees"][key] = bool(abs(rc - rt) <= 2 * max(se, 1e-12))
        out.append(entry)
    return out


# --------------------------------------------------------------------------------------------------
# the stage


def predictions_path(params: Params, target: str) -> Path:
    return params.data.build_dir / "train" / f"predictions_{target}.parquet"


def load_predictions(params: Params) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The thresholds target's prediction rows (calibration + test) with ``p_won`` where available."""
    target = params.thresholds.target
    path = predictions_path(params, target)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `leadscore train` (or `dvc repro train`) first")
    frame = pd.read_parquet(path)
    won_path = predictions_path(params, "closed_won")
    won = pd.read_parquet(won_path) if target != "closed_won" and won_path.exists() else None
    if target == "closed_won":
        frame = frame.assign(p_won=frame["p"])
        return frame, {"source": "the target itself"}
    return attach_p_won(frame, won)


def build_table(
    frame: pd.DataFrame, stages: list[ResolvedStage], grid_points: int, every_days: int
) -> pd.DataFrame:
    """The threshold table on ``frame`` (calibration rows): the grid plus the chosen thresholds,
    with ``stage`` naming the stage a threshold is chosen for ('' for grid rows)."""
    grid = threshold_grid(frame["p"].to_numpy(), grid_points)
    chosen = {s.probability: s.name for s in stages}
    taus = np.unique(np.concatenate([grid, np.array(list(chosen))]))
    table = threshold_metrics(frame, taus, every_days)
    table.insert(1, "stage", [chosen.get(t, "") for t in taus])
    table.insert(2, "stage_at_threshold", assign_stages(taus, stages))
    return table.sort_values("threshold", ascending=False, kind="stable").reset_index(drop=True)


def score_quantiles(p: np.ndarray) -> list[float]:
    """The 98 cut points of the API's 1–99 score: the 1/99 … 98/99 quantiles of the calibrated
    probability on the calibration slice, so that a lead's score is its percentile band there
    (``serve.scorer.score_from_probability``) and calibration leads spread evenly over 1..99."""
    p = np.asarray(p, dtype=np.float64)
    p = p[np.isfinite(p)]
    if len(p) == 0:
        return []
    return np.quantile(p, np.arange(1, 99) / 99.0).tolist()


def run_thresholds(params: Params) -> dict[str, Any]:
    """Resolve ``params.thresholds.stages`` on the calibration slice; write the bundle's thresholds and
    the threshold table (``reports/thresholds.csv`` + ``.json``). Returns the bundle document."""
    tp = params.thresholds
    every = params.snapshots.every_days
    frame, won_info = load_predictions(params)
    cal = frame[frame["split"] == "calibration"].reset_index(drop=True)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    if cal.empty:
        raise ValueError(f"no calibration rows in {predictions_path(params, tp.target)}")
    stages = resolve_stages(cal, tp.stages, every)
    for s in stages:
        if "warning" in s.achieved:
            from leadscore.progress import say

            say(f"[yellow]thresholds: stage {s.name!r}: {s.achieved['warning']}[/yellow]")
    doc = {
        "target": tp.target,
        "stages": [s.to_json() for s in stages],
        "definition": DEFINITION,
        "calibration_slice": {
            "rows": len(cal),
            "leads": int(cal["lead_id"].nunique()),
            "snapshot_dates": int(cal["snapshot_ts"].nunique()),
            "weeks": slice_weeks(cal["snapshot_ts"], every),
            "weeks_counted": handover_window(cal["snapshot_ts"], every)[1],
            "from": str(cal["snapshot_ts"].min()),
            "to": str(cal["snapshot_ts"].max()),
        },
        "closed_won": won_info,
        "score_quantiles": score_quantiles(cal["p"].to_numpy()),
    }
    out = params.data.build_dir / "thresholds.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=json_default) + "\n")

    table = build_table(cal, stages, tp.grid_points, every)
    reports = params.data.reports_dir
    reports.mkdir(parents=True, exist_ok=True)
    table.to_csv(reports / "thresholds.csv", index=False, float_format="%.6g")
    check = check_on_test_slice(cal, test, stages, every) if not test.empty else []
    report = {
        **doc,
        "edit": {
            s.name: f"thresholds.stages[{i}]." + (f"goal.{next(iter(s.goal))}" if s.goal else "probability")
            for i, s in enumerate(stages)
        },
        "test_check": check,
        "table": json.loads(table.to_json(orient="records")),
    }
    (reports / "thresholds.json").write_text(json.dumps(report, indent=2, default=json_default) + "\n")
    return doc


def json_default(value: object) -> object:
    """``json.dumps`` default for report files: NumPy scalars as Python numbers, anything else as text."""
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
