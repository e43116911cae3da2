"""Reasons in business words: every feature has a template, sentences read well, selection is right."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.config import load_params
from leadscore.features.spec import FeatureSpec
from leadscore.models.reasons import Reason, ReasonBuilder, templates_for


@pytest.fixture(scope="module")
def params():
    return load_params("params.yaml")


@pytest.fixture(scope="module")
def spec(params) -> FeatureSpec:
    return FeatureSpec(params.features)


@pytest.fixture(scope="module")
def builder(spec, params) -> ReasonBuilder:
    return ReasonBuilder(spec, params.baseline)


def test_every_model_feature_has_a_template(spec: FeatureSpec) -> None:
    templates = templates_for(spec)
    assert set(templates) == set(spec.model_features)


def test_other_windows_and_event_types_are_covered(params) -> None:
    # A spec with windows and an event type this module has no words for is still fully covered.
    fp = params.features.model_copy(
        update={
            "event_types": (*params.features.event_types, "chat_started"),
            "count_types": ("pricing_view", "chat_started"),
            "recency_types": ("chat_started",),
            "windows_days": (3, 14, 60, 180),
            "active_day_windows": (3, 21),
        }
    )
    spec = FeatureSpec(fp)
    builder = ReasonBuilder(spec)
    assert set(builder.templates_) == set(spec.model_features)
    assert builder.sentence("cnt_chat_started_14d", 2) == "2 'chat started' events in the last 14 days"
    assert builder.sentence("cnt_pricing_view_3d", 1) == "Visited the pricing page once in the last 3 days"
    assert (
        builder.sentence("web_active_days_21d", 4) == "On the website on 4 different days in the last 21 days"
    )
    assert builder.sentence("days_since_last_chat_started", np.nan) == "No 'chat started' event ever"
    # The return-visit flag names the shortest active-day window of this spec.
    assert builder.sentence("return_visit_7d", 1.0).endswith("in the last 3 days")


@pytest.mark.parametrize(
    ("feature", "value", "expected"),
    [
        ("cnt_pricing_view_7d", 3.0, "Visited the pricing page 3 times in the last 7 days"),
        ("cnt_pricing_view_7d", 1.0, "Visited the pricing page once in the last 7 days"),
        ("cnt_pricing_view_30d", 0.0, "Did not visit the pricing page in the last 30 days"),
        ("cnt_page_view_90d", 1250.0, "Viewed 1,250 website pages in the last 90 days"),
        ("cnt_demo_request_30d", 1.0, "Requested a demo in the last 30 days"),
        ("days_since_last_pricing_view", 3.4, "Last visited the pricing page 3 days ago"),
        ("days_since_last_pricing_view", 0.2, "Last visited the pricing page today"),
        ("days_since_last_pricing_view", 45.0, "Last visited the pricing page 6 weeks ago"),
        ("days_since_last_pricing_view", np.nan, "Never visited the pricing page"),
        ("days_since_last_event", None, "No recorded activity yet"),
        ("email_type", "personal", "Personal e-mail address"),
        ("email_type", "competitor", "E-mail address at a competitor"),
        ("email_type", None, "No e-mail domain"),
        ("employees", 120.0, "Company size 120 employees (in the 50–500 sweet spot)"),
        ("employees", 8000.0, "Company size 8,000 employees (outside the 50–500 sweet spot)"),
        ("employees", np.nan, "Company size unknown"),
        ("annual_revenue", 12_500_000.0, "Company revenue $12.5M a year"),
        ("seniority", "c_level", "C-level title"),
        ("seniority", "unknown", "Seniority unknown"),
        ("industry", "it_services", "Industry: IT services"),
        ("lead_source", "paid_search", "Came in through paid search ads"),
        ("lead_source", "trade_fair", "Came in through trade fair"),
        ("size_band", "50-199", "Company size band 50–199 employees"),
        ("is_student", 1.0, "Student or intern"),
        ("stage_rank", 1.0, "Already an MQL"),
        ("stage_rank", 0.0, "Not in the sales funnel yet"),
        ("times_recycled", 2.0, "Recycled back to marketing 2 times"),
        ("email_click_rate", 0.25, "Clicks 25% of opened marketing e-mails (last 90 days)"),
        ("email_click_rate", np.nan, "Opened no marketing e-mail in the last 90 days"),
        ("unsubscribed", 1.0, "Unsubscribed from marketing e-mails"),
        ("in_sweet_spot", 0.0, "Company size outside the 50–500 employee sweet spot"),
    ],
)
def test_sentences_read_well(builder: ReasonBuilder, feature: str, value: object, expected: str) -> None:
    assert builder.sentence(feature, value) == expected


@pytest.mark.parametrize("value", [0.0, 1.0, 7.0, np.nan, None, pd.NA, "unknown"])
def test_every_template_renders_typical_zero_and_missing(builder: ReasonBuilder, spec, value) -> None:
    for feature in spec.model_features:
        text = builder.sentence(feature, value)
        assert text and (text[0].isupper() or text[0].isdigit()), (feature, value, text)
        assert "nan" not in text.lower().split() and "{" not in text and "None" not in text, (feature, text)


def test_labels_are_business_words(builder: ReasonBuilder, spec) -> None:
    labels = [builder.label(f) for f in spec.model_features]
    assert len(set(labels)) == len(labels)  # two features never share a label
    assert builder.label("cnt_pricing_view_7d") == "Pricing page visits (last 7 days)"
    assert all("_" not in label for label in labels)


def test_top_reasons_selects_by_sign_and_magnitude(builder: ReasonBuilder, spec) -> None:
    names = list(spec.model_features)
    nf = len(names)
    contrib = np.zeros((3, nf + 1))
    i_pricing, i_email, i_emp, i_sen = (
        names.index("cnt_pricing_view_7d"),
        names.index("email_type"),
        names.index("employees"),
        names.index("seniority"),
    )
    contrib[0, [i_pricing, i_emp, i_sen, i_email]] = [0.9, 0.2, 0.5, -0.7]
    contrib[0, -1] = -3.0  # bias: never a reason, however large
    contrib[1, i_email] = 0.1  # one positive, no negative
    # row 2: all zero -> no reasons
    values = pd.DataFrame({f: [0.0, 0.0, 0.0] for f in names})
    values["cnt_pricing_view_7d"] = [3.0, 0.0, 0.0]
    values["employees"] = [120.0, 10.0, np.nan]
    values["seniority"] = ["director", "individual", "unknown"]
    values["email_type"] = ["personal", "business", "unknown"]
    out = builder.top_reasons(contrib, values, k=2)
    assert len(out) == 3
    pos, neg = out[0]
    assert pos == [
        Reason("cnt_pricing_view_7d", "Visited the pricing page 3 times in the last 7 days", 0.9),
        Reason("seniority", "Director-level title", 0.5),
    ]
    assert neg == [Reason("email_type", "Personal e-mail address", -0.7)]
    assert out[1] == ([Reason("email_type", "Business e-mail address", 0.1)], [])
    assert out[2] == ([], [])


def test_top_reasons_matches_a_full_sort_on_random_rows(builder: ReasonBuilder, spec) -> None:
    rng = np.random.default_rng(3)
    names = list(spec.model_features)
    n, nf, k = 200, len(names), 3
    contrib = rng.normal(size=(n, nf + 1)) * (rng.random((n, nf + 1)) < 0.3)
    values = {f: rng.integers(0, 4, n).astype(float) for f in names}
    for c in spec.categorical:
        values[c] = np.array(["unknown"] * n, dtype=object)
    out = builder.top_reasons(contrib, values, k=k)
    for i in range(n):
        row = contrib[i, :nf]
        exp_pos = [names[j] for j in np.argsort(-row, kind="stable") if row[j] > 0][:k]
        exp_neg = [names[j] for j in np.argsort(row, kind="stable") if row[j] < 0][:k]
        assert [r.feature for r in out[i][0]] == exp_pos
        assert [r.feature for r in out[i][1]] == exp_neg


def test_top_reasons_accepts_dict_of_arrays_and_rejects_bad_shapes(builder: ReasonBuilder, spec) -> None:
    nf = len(spec.model_features)
    values = {f: np.array([1.0]) for f in spec.model_features}
    values["email_type"] = np.array(["personal"], dtype=object)
    contrib = np.zeros((1, nf + 1))
    contrib[0, list(spec.model_features).index("email_type")] = -0.4
    assert builder.top_reasons(contrib, values, k=3)[0][1][0].text == "Personal e-mail address"
    with pytest.raises(ValueError, match="contributions must be"):
        builder.top_reasons(np.zeros((1, nf - 2)), values)
    assert builder.top_reasons(np.zeros((0, nf + 1)), values) == []


def _messy(spec, n: int = 400, seed: int = 11) -> tuple[np.ndarray, pd.DataFrame]:
    """Random contributions and values with a quarter of every column missing (NaN / 'unknown' / '')."""
    rng = np.random.default_rng(seed)
    names = list(spec.model_features)
    contrib = np.round(rng.normal(0, 0.5, (n, len(names) + 1)), 3)
    values = pd.DataFrame({f: rng.integers(0, 5, n).astype(float) for f in names})
    for f in spec.categorical:
        if f in values:
            values[f] = rng.choice(["director", "paid_social", "it_services"], n).astype(object)
    for f in names:
        gone = rng.random(n) < 0.25
        if f in spec.categorical:
            values.loc[gone, f] = rng.choice(["unknown", "", None], int(gone.sum()))
        else:
            values.loc[gone, f] = np.nan
    return contrib, values


def test_no_reason_twice_for_one_lead(builder: ReasonBuilder, spec) -> None:
    names = list(spec.model_features)
    contrib = np.zeros((1, len(names) + 1))
    contrib[0, names.index("employees")] = 0.4
    contrib[0, names.index("size_band")] = 0.3
    values = pd.DataFrame({f: [0.0] for f in names})
    values["employees"], values["size_band"] = [np.nan], ["unknown"]
    pos, neg = builder.top_reasons(contrib, values, k=3)[0]
    texts = [r.text for r in pos + neg]
    assert texts.count("Company size unknown") == 1
    assert pos[0] == Reason("employees", "Company size unknown", 0.4)
    # on messy rows: never a sentence twice, with or without the missingness rule
    contrib, values = _messy(spec)
    for rule in (None, {}):
        for pos, neg in builder.top_reasons(contrib, values, k=4, informative_missing=rule):
            texts = [r.text for r in pos + neg]
            assert len(texts) == len(set(texts))


def test_missing_values_are_reasons_only_where_missingness_is_informative(
    builder: ReasonBuilder, spec
) -> None:
    from leadscore.models.missing import missing_mask

    contrib, values = _messy(spec)
    gone = {f: missing_mask(values[f]) for f in spec.model_features}
    out = builder.top_reasons(contrib, values, k=4, informative_missing={})
    for i, (pos, neg) in enumerate(out):
        assert not any(gone[r.feature][i] for r in pos + neg)
        assert not any("unknown" in r.text.lower() for r in pos)
    # a feature whose missing rows convert less: its missing value may lower a score, never raise it
    telling = {"employees": -1}
    out = builder.top_reasons(contrib, values, k=4, informative_missing=telling)
    missing_used = [
        (r, side)
        for pos, neg in out
        for side, rs in (("+", pos), ("-", neg))
        for r in rs
        if r.text == "Company size unknown"
    ]
    assert missing_used and all(side == "-" and r.feature == "employees" for r, side in missing_used)
    # without the rule (serving without a measured set) missing values still read as before
    assert any(
        r.text == "Company size unknown" for pos, _ in builder.top_reasons(contrib, values, k=4) for r in pos
    )


def test_informative_missing_measures_the_gap() -> None:
    from leadscore.models.missing import informative_missing

    rng = np.random.default_rng(5)
    n = 4000
    gone_a = rng.random(n) < 0.3
    y = np.where(gone_a, rng.random(n) < 0.02, rng.random(n) < 0.10).astype(float)
    frame = pd.DataFrame(
        {
            "a": np.where(gone_a, np.nan, 1.0),  # missing rows convert 5x less: informative, -1
            "b": np.where(rng.random(n) < 0.3, np.nan, 2.0),  # missing at random: not informative
            "c": np.where(rng.random(n) < 0.3, "unknown", "x"),  # texts too
            "label": y,
        }
    )
    assert informative_missing(frame, ["a", "b", "c"]) == {"a": -1}
    flipped = frame.assign(a=np.where(gone_a, 1.0, np.nan), label=y)
    assert informative_missing(flipped, ["a"]) == {"a": 1}
