"""Explanations: SHAP statistics on a real LightGBM model, the explain stage's files, and (slow) the
acceptance check against the demo generator: its signals drive the model, an unused attribute does not.

``quick_pipeline`` (synthetic feature tables -> train -> evaluate -> thresholds -> bundle -> explain, in
seconds; built once per test session under pytest's base temp dir) is shared with tests/integration
(report in a browser, notebook). The acceptance check explains the session's demo model of
tests/model/conftest.py (the demo generator through every real stage function).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import yaml

from leadscore.config import Params
from leadscore.features.encode import MatrixEncoder, fit_categories
from leadscore.features.spec import FeatureSpec
from leadscore.models.explain import (
    category_effects,
    example_leads,
    feature_groups,
    global_importance,
    group_importance,
    sample_rows,
    segment_drivers,
    shap_values,
)
from leadscore.models.reasons import ReasonBuilder
from tests.model.synthetic import synthetic_frames, tmp_params, write_processed

QUICK_STAGES = [
    {"name": "sales_ready", "goal": {"capacity_per_week": 40}},
    {"name": "mql", "goal": {"min_precision": 0.3}},
    {"name": "nurture", "probability": 0.0},
]


# --------------------------------------------------------------------------------------------------
# fast: a real booster on synthetic features with known signals


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    params = tmp_params(tmp_path_factory.mktemp("explain-unit"))
    spec = FeatureSpec(params.features)
    frames = synthetic_frames(params, n_leads=1500)["sql"]
    train = frames["train"]
    encoder = MatrixEncoder(spec, fit_categories(train, spec))
    cat_idx = encoder.categorical_indices_
    booster = lgb.train(
        {
            "objective": "binary",
            "verbose": -1,
            "num_threads": 2,
            "seed": 1,
            "deterministic": True,
            "min_data_in_leaf": 50,
            "learning_rate": 0.1,
            "num_leaves": 7,
        },
        lgb.Dataset(encoder.transform(train), train["label"].to_numpy(), categorical_feature=cat_idx),
        num_boost_round=80,
    )
    test = frames["test"]
    matrix = encoder.transform(test)
    return {
        "params": params,
        "spec": spec,
        "booster": booster,
        "test": test,
        "matrix": matrix,
        "contrib": shap_values(booster, matrix),
        "p": booster.predict(matrix),
        "reasons": ReasonBuilder(spec, params.baseline),
    }


def test_shap_values_add_up_to_the_raw_log_odds(fitted: dict) -> None:
    raw = fitted["booster"].predict(fitted["matrix"], raw_score=True)
    assert fitted["contrib"].shape == (len(fitted["test"]), len(fitted["spec"].model_features) + 1)
    np.testing.assert_allclose(fitted["contrib"].sum(axis=1), raw, atol=1e-6)


def test_sample_rows_is_deterministic_and_bounded() -> None:
    a, b = sample_rows(10_000, 500), sample_rows(10_000, 500)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 500 and len(np.unique(a)) == 500 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(sample_rows(30, 500), np.arange(30))


def test_global_importance_finds_the_planted_signals(fitted: dict) -> None:
    imp = global_importance(fitted["contrib"], fitted["test"], fitted["spec"], fitted["reasons"])
    top = imp["feature"].head(5).tolist()
    # synthetic.py: label ~ pricing views (30d), demo requests (90d), VP seniority, personal e-mail, industry
    assert {"cnt_pricing_view_30d", "cnt_demo_request_90d", "email_type", "seniority"} <= set(top)
    assert "country" not in imp["feature"].head(8).tolist()
    assert imp["share"].sum() == pytest.approx(1.0)
    assert imp["mean_abs_shap"].is_monotonic_decreasing
    row = imp.set_index("feature").loc["cnt_pricing_view_30d"]
    assert row["label"] == "Pricing page visits (last 30 days)"
    assert row["direction"] == "higher values raise the probability"
    assert imp.set_index("feature").loc["email_type", "direction"].endswith("lowest for Personal")


def test_group_importance_is_additive(fitted: dict) -> None:
    spec, contrib = fitted["spec"], fitted["contrib"]
    groups = group_importance(contrib, spec)
    assert groups["group"].iloc[0] == "Pricing page visits"
    features = list(spec.model_features)
    members = [j for j, f in enumerate(features) if feature_groups(spec)[f] == "Pricing page visits"]
    expected = np.abs(contrib[:, members].sum(axis=1)).mean()
    assert groups.set_index("group").loc["Pricing page visits", "mean_abs_shap"] == pytest.approx(expected)
    assert set(feature_groups(spec)) == set(spec.model_features)


def test_category_effects_show_personal_email_as_a_negative(fitted: dict) -> None:
    cats = category_effects(fitted["contrib"], fitted["test"], fitted["spec"], fitted["reasons"])
    email = cats[cats["feature"] == "email_type"].set_index("value")
    assert email.loc["personal", "mean_shap"] < 0 < email.loc["business", "mean_shap"]
    assert email.loc["personal", "text"] == "Personal e-mail address"


def test_segment_drivers_and_examples(fitted: dict) -> None:
    seg = segment_drivers(
        fitted["contrib"],
        fitted["test"],
        fitted["p"],
        ["seniority", "industry", "no_such_column"],
        fitted["spec"],
        fitted["reasons"],
        min_rows=100,
    )
    assert set(seg["segment"]) == {"seniority", "industry"}
    assert (seg["rows"] >= 100).all()
    # the segment's own column is constant inside it: never one of its drivers
    assert not seg.loc[seg["segment"] == "seniority", "top_features"].str.contains("seniority").any()
    ex = example_leads(fitted["contrib"], fitted["test"], fitted["p"], fitted["reasons"], 3, 4, None)
    assert [e["p"] for e in ex] == sorted((e["p"] for e in ex), reverse=True)
    assert ex[0]["p"] == pytest.approx(fitted["p"].max())
    assert all(0 < len(e["positive"]) <= 3 for e in ex[:1])
    assert all(r["contribution"] > 0 for r in ex[0]["positive"])


# --------------------------------------------------------------------------------------------------
# shared pipeline builders (also imported by tests/integration)


def synthetic_stage_history(n_leads: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A stage history with MQLs, SQLs, opportunities, wins, recycles and disqualifications."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_leads):
        t0 = pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(rng.integers(0, 600)))
        lid = f"H{i}"
        rows.append((lid, "mql", t0, None))
        u = rng.random()
        if u < 0.2:
            t1 = t0 + pd.Timedelta(days=int(rng.integers(1, 60)))
            rows.append((lid, "sql", t1, None))
            if rng.random() < 0.75:
                rows.append((lid, "opportunity", t1 + pd.Timedelta(days=10), None))
                won = rng.random() < 0.35
                rows.append((lid, "closed_won" if won else "closed_lost", t1 + pd.Timedelta(days=60), None))
        elif u < 0.4:
            reason = rng.choice(["bad_timing", "no_budget", ""])
            rows.append((lid, "recycled", t0 + pd.Timedelta(days=30), reason or None))
        elif u < 0.5:
            reason = rng.choice(["student", "competitor", "not_a_fit"])
            rows.append((lid, "disqualified", t0 + pd.Timedelta(days=20), reason))
    return pd.DataFrame(rows, columns=["lead_id", "stage", "ts", "reason"])


def write_params_yaml(params: Params, root: Path) -> Path:
    """The params as a params.yaml in ``root`` (for the CLI, the notebook, DVC)."""
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True), sort_keys=False))
    return path


def _once(root: Path, build: Callable[[Path], Params]) -> Params:
    """Build into ``root`` unless an earlier test of this session did; returns the params."""
    done = root / "BUILT"
    if not done.exists():
        params = build(root)
        write_params_yaml(params, root)
        done.write_text("ok")
    from leadscore.config import load_params

    return load_params(root / "params.yaml")


def quick_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Params:
    """Synthetic feature tables -> train -> evaluate -> thresholds -> bundle -> explain (seconds)."""
    from leadscore.models.bundle import run_bundle
    from leadscore.models.evaluate import run_evaluate
    from leadscore.models.explain import run_explain
    from leadscore.models.thresholds import run_thresholds
    from leadscore.models.train import run_train

    def build(root: Path) -> Params:
        params = tmp_params(root, **{"thresholds.stages": QUICK_STAGES, "explain.max_rows": 2000})
        write_processed(synthetic_frames(params, n_leads=1500), params.data.processed_dir)
        params.data.interim_dir.mkdir(parents=True, exist_ok=True)
        synthetic_stage_history().to_parquet(params.data.interim_dir / "stage_history.parquet")
        for stage in (run_train, run_evaluate, run_thresholds, run_bundle, run_explain):
            stage(params)
        return params

    return _once(tmp_path_factory.getbasetemp() / "quick-pipeline", build)


# --------------------------------------------------------------------------------------------------
# the explain stage's files


@pytest.mark.slow
def test_run_explain_writes_every_artifact(tmp_path_factory: pytest.TempPathFactory) -> None:
    params = quick_pipeline(tmp_path_factory)
    out = params.data.reports_dir / "explain"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["targets"]) == {"sql", "closed_won"}
    for target in ("sql", "closed_won"):
        folder = out / target
        for name in (
            "importance.csv",
            "groups.csv",
            "categories.csv",
            "segments.csv",
            "examples.json",
            "beeswarm.png",
            "importance.png",
            "groups.png",
        ):
            assert (folder / name).stat().st_size > 0, (target, name)
        assert len(list(folder.glob("dependence_*.png"))) == 4
        assert (folder / "beeswarm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        top = pd.read_csv(folder / "importance.csv")["feature"].head(params.explain.top_features).tolist()
        assert summary["targets"][target]["top_features"] == top
    for name in (
        "summary.json",
        "mql_volume.csv",
        "cohorts.csv",
        "recycle_reasons.csv",
        "disqualify_reasons.csv",
        "threshold_funnel.csv",
    ):
        assert (out / "funnel" / name).exists(), name
    funnel = pd.read_csv(out / "funnel" / "threshold_funnel.csv")
    assert funnel["stage"].tolist() == ["sales_ready", "mql", "nurture", "today's rule (MQL points)"]
    html = (params.data.reports_dir / "explain.html").read_text()
    # the only scripts are inline (the threshold simulator); nothing is loaded from elsewhere
    assert 'src="http' not in html and "<script src" not in html and '<link rel="stylesheet' not in html
    assert 'id="sim-data"' in html and "Try a threshold" in html
    assert "log-odds" not in html and "c_level" not in html.split('id="sim-data"')[0]
    assert html.count('src="data:image/png;base64,') >= 10
    assert "thresholds.stages[0].goal.capacity_per_week" in html


# --------------------------------------------------------------------------------------------------
# acceptance: the demo generator's signals drive the model; an attribute it does not use does not


#: Model features the demo generator never uses for the outcome (read src/data/generate.py: country only
#: names the company and its domain, the tech stack is drawn independently of everything else).
UNUSED_BY_GENERATOR = ("country", "tech_stack_size")


@pytest.fixture(scope="module")
def demo_explained(demo: Any) -> Params:
    """The session demo model (tests/model/conftest.py) explained by the real ``run_explain``."""
    from leadscore.models.explain import run_explain

    run_explain(demo.params)
    return demo.params


@pytest.mark.slow
def test_demo_drivers_match_the_generator(demo_explained: Params) -> None:
    import leadscore.data.generate as gen

    # the premise: the generator's fit uses size, industry, seniority, department, source and e-mail type,
    # never country or tech stack (if this changes, UNUSED_BY_GENERATOR must change with it)
    fit_source = Path(gen.__file__).read_text().split("def _fit(")[1].split("\ndef ")[0]
    assert "country" not in fit_source and "tech" not in fit_source
    assert "personal" in fit_source and "seniority" in fit_source and "emp" in fit_source

    params = demo_explained
    spec = FeatureSpec(params.features)
    folder = params.data.reports_dir / "explain" / "sql"
    imp = pd.read_csv(folder / "importance.csv")
    groups = pd.read_csv(folder / "groups.csv")
    top_groups = groups["group"].head(params.explain.top_features).tolist()
    names = feature_groups(spec)
    intent_groups = {names[spec.count_name(t, spec.max_window)] for t in spec.high_intent_types}
    intent_groups |= {names["high_intent_30d"]}
    # high-intent pages / actions, seniority and company size are among the top drivers
    assert intent_groups & set(top_groups), (intent_groups, top_groups)
    assert names["seniority"] in top_groups, top_groups
    assert names["size_band"] in top_groups, top_groups
    # personal e-mail pushes the score down
    cats = pd.read_csv(folder / "categories.csv")
    personal = cats[(cats["feature"] == "email_type") & (cats["value"] == "personal")]
    assert personal["mean_shap"].iloc[0] < 0
    # attributes the generator does not use are not among the top five (features or groups)
    assert not set(UNUSED_BY_GENERATOR) & set(imp["feature"].head(5)), imp.head(5)
    assert not {names[f] for f in UNUSED_BY_GENERATOR} & set(groups["group"].head(5)), groups.head(5)
    assert (params.data.reports_dir / "explain.html").stat().st_size > 100_000


# --------------------------------------------------------------------------------------------------
# the report's tables


def test_decile_table_compares_predicted_and_actual() -> None:
    from leadscore.models.report import decile_table

    p = np.array([0.9, 0.8, 0.1, 0.2, 0.5, 0.4])
    y = np.array([1, 1, 0, 0, 1, 0])
    out = decile_table(y, p, bins=3)
    assert out["rows"].tolist() == [2, 2, 2]
    assert out["predicted"].tolist() == pytest.approx([0.85, 0.45, 0.15])
    assert out["actual"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert out["actual_positives"].tolist() == [2, 1, 0]


def test_pick_table_rows_keeps_the_chosen_thresholds() -> None:
    from leadscore.models.report import pick_table_rows

    table = pd.DataFrame(
        {
            "threshold": np.linspace(1, 0, 101),
            "share_of_new_leads": np.linspace(0, 1, 101),
            "stage": [""] * 37 + ["sales_ready"] + [""] * 63,
        }
    )
    rows = pick_table_rows(table, shares=(0.1, 0.5))
    assert rows["stage"].tolist().count("sales_ready") == 1
    assert rows["share_of_new_leads"].round(2).tolist() == [0.1, 0.37, 0.5]
    assert rows["threshold"].is_monotonic_decreasing


@pytest.mark.slow
def test_report_renders_without_optional_inputs(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """No threshold table, no evaluation plots, no predictions: the page still renders (sections say less)."""
    import shutil

    from leadscore.models.bundle import load_bundle
    from leadscore.models.explain import write_funnel
    from leadscore.models.report import build_context, render_report

    params = quick_pipeline(tmp_path_factory)
    reports = tmp_path / "reports"
    shutil.copy(params.data.reports_dir / "metrics.json", reports.mkdir() or reports / "metrics.json")
    bare = params.model_copy(
        update={
            "data": params.data.model_copy(update={"reports_dir": reports, "build_dir": tmp_path / "none"})
        }
    )
    bundle = load_bundle(params.data.models_dir)
    funnel = write_funnel(bare, bundle.thresholds, tmp_path / "funnel")
    html = render_report(build_context(bare, bundle, {}, funnel))
    assert "Thresholds: where to draw the line" in html
    assert "The trade-off table" not in html
    assert "thresholds.stages[0].goal.capacity_per_week" in html
