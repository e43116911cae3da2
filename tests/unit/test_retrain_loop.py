"""Pure parts of the retraining loop: bootstrap, gate, drift statistics, backtest table, next export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.config import CompareParams, load_params
from leadscore.data.generate import export_at, generate
from leadscore.data.parquet import write_parquet
from leadscore.models.backtest import backtest_table
from leadscore.models.compare import gate_decision, lead_bootstrap_indices, metric_functions, paired_bootstrap
from leadscore.models.drift import expected_auc, feature_psi, psi
from leadscore.models.evaluate import roc_auc
from leadscore.models.source import BundleError, parse_ref


def test_bootstrap_resamples_whole_leads() -> None:
    groups = np.array(["a", "a", "b", "c", "c", "c"])
    for rows in lead_bootstrap_indices(groups, 50, seed=1):
        picked = pd.Series(groups[rows]).value_counts()
        sizes = pd.Series(groups).value_counts()
        # every lead appears with all of its rows, a whole number of times
        assert all(picked[g] % sizes[g] == 0 for g in picked.index)
        assert sum(picked[g] // sizes[g] for g in picked.index) == 3
    again = lead_bootstrap_indices(groups, 5, seed=1)
    assert all((a == b).all() for a, b in zip(again, lead_bootstrap_indices(groups, 5, seed=1), strict=True))


def _data(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    p_true = 1 / (1 + np.exp(-(x * 1.5 - 3)))
    y = (rng.random(n) < p_true).astype(float)
    noise = 1 / (1 + np.exp(-(x * 1.5 - 3 + rng.normal(0, 2.5, n))))  # a much worse ranking
    return y, p_true, noise, np.arange(n) // 3


def test_paired_bootstrap_interval_contains_point_and_detects_a_worse_model() -> None:
    y, good, bad, leads = _data()
    fns = metric_functions(0.1, 10)
    out = paired_bootstrap(y, good, bad, leads, fns, 200, 0.95, seed=3)
    d = out["difference"]["roc_auc"]
    assert d["value"] == pytest.approx(roc_auc(y, bad) - roc_auc(y, good))
    assert d["ci"][0] <= d["value"] <= d["ci"][1]
    assert d["ci"][1] < 0  # the noisy model is worse beyond the interval
    decision, reasons = gate_decision(out, CompareParams(), same_model=False)
    assert decision == "keep" and any("worse beyond the interval" in r for r in reasons)
    # the other way round: the good model is not worse, its log loss is lower, its ECE small
    out = paired_bootstrap(y, bad, good, leads, fns, 200, 0.95, seed=3)
    decision, reasons = gate_decision(out, CompareParams(), same_model=False)
    assert decision == "promote", reasons


def test_gate_without_champion_promotes_and_same_model_keeps() -> None:
    y, good, _, leads = _data()
    out = paired_bootstrap(y, None, good, leads, metric_functions(0.1, 10), 50, 0.9, seed=1)
    assert out["champion"] == {} and out["difference"] == {}
    decision, reasons = gate_decision(out, CompareParams(), same_model=False)
    assert decision == "promote" and reasons[0].startswith("no champion")
    both = paired_bootstrap(y, good, good, leads, metric_functions(0.1, 10), 50, 0.9, seed=1)
    assert gate_decision(both, CompareParams(), same_model=True)[0] == "keep"


def test_gate_keeps_a_badly_calibrated_challenger() -> None:
    y, good, _, leads = _data()
    out = paired_bootstrap(y, good, np.clip(good * 3, 0, 1), leads, metric_functions(0.1, 10), 50, 0.9, 1)
    decision, reasons = gate_decision(out, CompareParams(), same_model=False)
    assert decision == "keep" and any("ECE" in r and "above" in r for r in reasons)


def test_expected_auc_matches_the_realised_auc_of_calibrated_probabilities() -> None:
    rng = np.random.default_rng(5)
    p = rng.beta(0.5, 8, 40000)
    realised = [roc_auc((rng.random(len(p)) < p).astype(float), p) for _ in range(20)]
    assert expected_auc(p) == pytest.approx(np.mean(realised), abs=0.005)
    assert expected_auc(np.full(100, 0.2)) == pytest.approx(0.5)  # ties: no separation


def test_psi_zero_for_same_distribution_large_for_a_shift() -> None:
    rng = np.random.default_rng(2)
    a = pd.Series(rng.normal(size=20000))
    assert feature_psi(a, pd.Series(rng.normal(size=20000))) < 0.01
    assert feature_psi(a, pd.Series(rng.normal(1.0, 1, 20000))) > 0.25
    cats = pd.Series(["x"] * 900 + ["y"] * 100)
    assert feature_psi(cats, pd.Series(["x"] * 500 + ["y"] * 400 + [None] * 100)) > 0.25
    with_nan = pd.Series(np.r_[rng.normal(size=1000), [np.nan] * 500])
    assert feature_psi(with_nan, with_nan) == pytest.approx(0.0)
    assert psi(np.array([0.5, 0.5]), np.array([1.0, 0.0])) > 1  # empty bin: large, not infinite


def test_backtest_table_by_month_and_stage() -> None:
    scored = pd.DataFrame(
        {
            "snapshot_ts": pd.to_datetime(["2025-01-05", "2025-01-20", "2025-02-03", "2025-02-10"]),
            "label": [1, 0, 0, 1],
            "stage": ["hot", "cold", "hot", "cold"],
            "p_sql": [0.5, 0.1, 0.4, 0.2],
        }
    )
    table = backtest_table(scored, "sql", pd.Timestamp("2025-01-31"))
    jan = table[(table.month == "2025-01") & (table.stage == "all")].iloc[0]
    assert jan.n == 2 and jan.expected_conversions == pytest.approx(0.6) and jan.realized_conversions == 1
    assert jan.calibration_ratio == pytest.approx(1 / 0.6) and bool(jan.in_training_window)
    feb = table[(table.month == "2025-02") & (table.stage == "hot")].iloc[0]
    assert feb.n == 1 and feb.realized_rate == 0 and not bool(feb.in_training_window)


def test_next_export_is_the_same_world_later() -> None:
    base = {"generate.n_leads": 600, "generate.months": 12}
    earlier = load_params("params.yaml", {**base, "generate.export_months": 9})
    later = load_params("params.yaml", {**base, "generate.export_months": 12})
    a = generate(earlier.generate, earlier.features)
    b = generate(later.generate, later.features)
    cut = pd.Timestamp(earlier.generate.start) + pd.DateOffset(months=9)
    assert len(b["leads"]) > len(a["leads"]) and a["leads"]["created_at"].max() < cut
    for name, frame in export_at(b, cut).items():
        pd.testing.assert_frame_equal(frame, a[name])  # the past is identical in the later export
    with pytest.raises(ValueError, match="export_months"):
        load_params("params.yaml", {**base, "generate.export_months": 13})


def test_parquet_bytes_depend_on_data_only(tmp_path) -> None:
    frame = pd.DataFrame(
        {
            "s": ["a", None, "c"],
            "t": pd.to_datetime(["2025-01-01", None, "2025-01-03"]),
            "x": [1.0, 2.0, None],
        }
    )
    write_parquet(frame, tmp_path / "a.parquet")
    write_parquet(frame.copy(), tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(tmp_path / "a.parquet").metadata.metadata
    assert (
        b"pandas_version" not in meta[b"pandas"] and b'"creator"' not in meta[b"pandas"]
    )  # no version stamps
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), frame)
    indexed = frame.set_index(pd.Index([5, 7, 9], name="row"))
    write_parquet(indexed, tmp_path / "c.parquet", index=True)  # quarantine files keep their row numbers
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "c.parquet"), indexed)


def test_registry_references() -> None:
    assert parse_ref("models:/lead-propensity@champion") == ("lead-propensity", "champion", None)
    assert parse_ref("models:/lead-propensity/3") == ("lead-propensity", None, "3")
    assert parse_ref("models") is None
    with pytest.raises(BundleError, match="models:/<name>@<alias>"):
        parse_ref("models:/x@")


def test_serve_settings_choose_the_bundle_source(tmp_path, monkeypatch) -> None:
    from leadscore.serve.settings import load_settings
    from leadscore.serve.source import RegistrySource, bundle_source

    monkeypatch.delenv("LEADSCORE_MODEL", raising=False)
    local = load_settings(auth_disabled=True)
    assert local.model is None and bundle_source(local) is None  # models/ (the local build) serves
    monkeypatch.setenv("LEADSCORE_MODEL", "models:/lead-propensity@champion")
    monkeypatch.setenv("LEADSCORE_MODEL_CACHE_DIR", str(tmp_path))
    settings = load_settings(auth_disabled=True)
    source = bundle_source(settings)
    assert isinstance(source, RegistrySource)
    assert source.ref == "models:/lead-propensity@champion" and source.cache_dir == tmp_path
