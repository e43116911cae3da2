"""The leakage guard: columns filled in after the outcome are flagged with evidence and excluded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.config import LeakageParams, load_table_params
from leadscore.models.flat import FlatResult, implausible_auc_warning, train_flat
from leadscore.models.leakage import (
    guard,
    name_match,
    single_column_auc,
    target_rate_oof,
    to_markdown,
)
from tests.exports import SHAPES, Export, make

PARAMS = LeakageParams()

# The flag each kind of planted leak must raise (besides any other evidence it also shows).
EXPECTED_FLAG = {
    "grade": "follow_up_name",
    "last_activity": "follow_up_name",
    "follow_up_values": "follow_up_values",
    "missing": "missing_for_one_class",
    "one_sided": "one_sided_values",
    "duration": "beats_the_rest",  # innocent name ("Engaged Seconds"): only the statistics catch it
}


@pytest.fixture(scope="module", params=SHAPES)
def trained(request: pytest.FixtureRequest) -> tuple[Export, FlatResult]:
    export = make(request.param, n=4000, seed=1)
    params = load_table_params(
        None,
        {
            "positive_values": list(export.positive),
            "negative_values": list(export.negative),
            "date_column": export.date_column,
        },
    )
    return export, train_flat(export.frame, export.target, params, f"{request.param}.csv")


def test_every_planted_leak_is_excluded_with_its_evidence(trained: tuple[Export, FlatResult]) -> None:
    export, result = trained
    names = result.prepared.names
    ev = {e.column: e for e in result.guard.evidence}
    for header, kind in export.leaks.items():
        col = names[header]
        assert col in result.guard.excluded, (header, ev[col])
        assert EXPECTED_FLAG[kind] in ev[col].flags, (header, ev[col].flags)
    # excluded columns rank above every kept one
    ranks = sorted(result.guard.evidence, key=lambda e: e.rank)
    n_out = len(result.guard.excluded)
    assert {e.column for e in ranks[:n_out]} == set(result.guard.excluded)


def test_honest_strong_columns_are_kept(trained: tuple[Export, FlatResult]) -> None:
    export, result = trained
    names = result.prepared.names
    kept = set(result.guard.kept)
    honest = {names[h] for h in export.honest}
    assert honest <= kept, honest - kept
    # the strong honest ones by name: lead source, country, company size, a form's answers, opt-out
    strong = ("Lead Source", "Country", "Company Size", "What is your current occupation", "Do Not Email")
    for header in strong:
        assert names[header] in result.spec.feature_names
    auc = result.metrics[result.spec.target]["model"]["roc_auc"]
    assert 0.6 < auc < 0.9  # honest lead scoring, not a leak's promise
    assert not result.notes


def test_beats_the_rest_catches_an_innocent_named_leak_and_spares_honest_columns() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    a, b, c = rng.normal(size=(3, n))
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.6 * a + 0.6 * b + 0.6 * c - 1)))).astype(int)
    df = pd.DataFrame(
        {
            "a": a + rng.normal(0, 0.5, n),
            "b": b + rng.normal(0, 0.5, n),
            "c": c + rng.normal(0, 0.5, n),
            "engagement_minutes": rng.gamma(2.0, 1.0, n) * np.where(y == 1, 3.0, 1.0),
            "second_leak": rng.gamma(2.0, 1.0, n) * np.where(y == 1, 2.8, 1.0),
        }
    )
    result = guard(df, {}, y, PARAMS, check_names=False)
    ev = {e.column: e for e in result.evidence}
    # two leaks of about the same strength cannot vouch for each other; honest ones of equal strength
    # (a, b, c) are each weaker than the other two together
    assert set(result.excluded) == {"engagement_minutes", "second_leak"}
    assert ev["engagement_minutes"].flags == ("beats_the_rest",)
    assert ev["engagement_minutes"].auc > ev["engagement_minutes"].auc_rest
    assert ev["engagement_minutes"].auc < PARAMS.auc_threshold  # not caught by the old absolute bar


def test_missing_ratio_and_one_sided_values_on_innocent_names() -> None:
    rng = np.random.default_rng(4)
    n = 4000
    y = (rng.random(n) < 0.25).astype(int)
    df = pd.DataFrame(
        {
            # filled for 12 % of won leads, never for lost ones: missing 100 % vs 88 %
            "vat_number_region": np.where((y == 1) & (rng.random(n) < 0.12), "EU", None),
            # a form answer filled more often by converters, but far from one class only: honest
            "budget_answer": np.where(rng.random(n) < np.where(y == 1, 0.7, 0.5), "10-50k", None),
            "tier": np.where((y == 1) & (rng.random(n) < 0.2), "Named", rng.choice(["S", "M", "L"], n)),
            "rare_city": np.where(rng.random(n) < 0.004, "Smalltown", rng.choice(["X", "Y"], n)),
        }
    )
    kinds = dict.fromkeys(df.columns, "category")
    result = guard(df, kinds, y, PARAMS)
    ev = {e.column: e for e in result.evidence}
    assert "missing_for_one_class" in ev["vat_number_region"].flags
    assert ev["vat_number_region"].missing_ratio >= PARAMS.missing_ratio
    assert "one_sided_values" in ev["tier"].flags and "Named" in ev["tier"].one_sided_values
    assert not ev["budget_answer"].flags and not ev["rare_city"].flags


def test_allowed_columns_are_kept_and_reported(trained: tuple[Export, FlatResult]) -> None:
    export, result = trained
    names = result.prepared.names
    leak = names[next(iter(export.leaks))]
    data = result.guard.to_json()
    assert [c["rank"] for c in data["columns"]] == sorted(c["rank"] for c in data["columns"])
    col = next(c for c in data["columns"] if c["column"] == leak)
    assert col["excluded"] and col["flags"] and col["score"] > 0
    md = to_markdown(result.guard)
    excluded = md.split("## Excluded")[1].split("## All columns")[0]
    assert f"`{leak}`" in excluded


def test_allow_brings_a_flagged_column_back_and_a_high_auc_warns() -> None:
    export = make("web_form", n=3000, seed=2)
    params = load_table_params(None, {"date_column": "Created", "allow_columns": ["Tags"]})
    result = train_flat(export.frame, export.target, params, "web_form.csv")
    assert "tags" in result.spec.feature_names and result.guard.allowed_flagged == ["tags"]
    assert "## Flagged but allowed" in to_markdown(result.guard)
    auc = result.metrics["converted"]["model"]["roc_auc"]
    if auc > 0.95:  # the allowed leak makes the model implausibly good: said plainly, naming it
        assert result.notes and "'tags'" in result.notes[0] and "implausibly high" in result.notes[0]
        assert "warning" in result.metrics["converted"]


def test_implausible_auc_warning_names_the_strongest_columns() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.3).astype(int)
    df = pd.DataFrame({"x": y + rng.normal(0, 0.1, 500), "w": rng.normal(size=500)})
    g = guard(df, {}, y, PARAMS, allow=["x"], check_names=False)
    note = implausible_auc_warning(0.97, g)
    assert note is not None and note.startswith("WARNING") and "'x' (AUC alone 1.00)" in note
    assert implausible_auc_warning(0.85, g) is None


def test_too_few_rows_of_a_class_skip_the_statistics() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "web_visits": rng.normal(size=200),
            "lost_reason": rng.choice(["budget", "timing", None], 200),
            "pipeline": np.where(rng.random(200) < 0.5, "Closed Won", "Marketing"),
        }
    )
    kinds = {"lost_reason": "category", "pipeline": "category"}
    y = np.zeros(200, dtype=int)
    y[:5] = 1
    result = guard(df, kinds, y, PARAMS)
    assert all(e.auc is None for e in result.evidence)
    assert set(result.excluded) == {"lost_reason", "pipeline"}  # names and values still count


def test_target_rate_encoding_is_out_of_fold() -> None:
    keys = np.array([f"k{i}" for i in range(100)])  # every key unique: in-sample encoding would be perfect
    y = np.tile([0, 1], 50)
    enc = target_rate_oof(keys, y, seed=0)
    assert np.allclose(enc, enc[0], atol=0.05)  # every row gets (about) the prior of the other folds
    assert single_column_auc(pd.Series(keys), "category", y) < 0.65


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("close_date", "close"),
        ("closed_won", "closed"),
        ("deal_amount", "deal"),
        ("lead_status", "status"),
        ("sales_owner", "owner"),
        ("meeting_held", "meeting_held"),
        ("annual_revenue", None),
        ("industry", None),
        ("opportunity_stage", "opportunity"),
        ("company_size", None),
        ("disclosed", None),
        ("lead_quality", "quality"),
        ("rating", "rating"),
        ("lead_grade", "grade"),
        ("tags", "tags"),
        ("last_notable_activity", "last_notable_activit"),
        ("call_duration", "call_duration"),
        ("duration", "duration"),
        ("lead_source", None),
        ("do_not_email", None),
        ("landing_page_id", None),
        ("what_is_your_current_occupation", None),
        ("country", None),
    ],
)
def test_name_patterns(name: str, match: str | None) -> None:
    assert name_match(name, PARAMS.name_patterns) == match
