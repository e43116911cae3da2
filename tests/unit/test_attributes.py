"""Lead attributes: title parsing, e-mail type, size band."""

from __future__ import annotations

import numpy as np
import pytest

from leadscore.config import load_params
from leadscore.features.attributes import attributes_from_columns, email_type, parse_title, size_band

FEATURES = load_params("params.yaml").features


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("VP of Marketing", ("vp", "marketing")),
        ("Vice President, Sales", ("vp", "sales")),
        ("Sr. Software Engineer", ("individual", "engineering")),
        ("Head of RevOps", ("director", "operations")),
        ("Student", ("student", "education")),
        ("CEO & Founder", ("owner", "executive")),
        ("IT Manager", ("manager", "it")),
        ("Account Manager", ("individual", "sales")),
        ("sales mnaager", ("manager", "sales")),  # one-letter typo
        ("DIRECTOR OF FINANCE", ("director", "finance")),
        ("n/a", ("unknown", "unknown")),
        (None, ("unknown", "unknown")),
        ("Consultant", ("individual", "other")),
    ],
)
def test_parse_title(title: str | None, expected: tuple[str, str]) -> None:
    assert parse_title(title) == expected


def test_email_type_and_size_band() -> None:
    assert email_type("Gmail.com", FEATURES) == "personal"
    assert email_type("rivalcrm.io", FEATURES) == "competitor"
    assert email_type("acme.com", FEATURES) == "business"
    assert email_type(None, FEATURES) == "unknown"
    bands = (0, 10, 50, 200)
    assert size_band(120, bands) == "50-199"
    assert size_band(5000, bands) == "200+"
    assert size_band(float("nan"), bands) == "unknown"


def test_crm_fields_win_over_parsed_title_and_many_rows_equal_one_by_one() -> None:
    raw = {
        "job_title": np.array(["VP Sales", "Engineer", None, "Student"] * 10, dtype=object),
        "seniority": np.array(["manager", None, "director", "bogus"] * 10, dtype=object),
        "department": np.array([None, "it", None, None] * 10, dtype=object),
        "country": np.array(["US", "de", None, "FR"] * 10, dtype=object),
        "lead_source": np.array(["webinar"] * 40, dtype=object),
        "email_domain": np.array(["gmail.com", "acme.com", None, "rivalcrm.io"] * 10, dtype=object),
        "_industry": np.array(["Software", None, "retail", "fintech"] * 10, dtype=object),
        "employees": np.array([120, "75", None, "lots"] * 10, dtype=object),
        "annual_revenue": np.array([1e6, None, 2e6, 3e6] * 10, dtype=object),
        "tech_stack": np.array(["aws; hubspot", None, "", "x"] * 10, dtype=object),
    }
    many = attributes_from_columns(raw, FEATURES)
    assert many["seniority"][:4].tolist() == ["manager", "individual", "director", "student"]
    assert many["department"][:4].tolist() == ["sales", "it", "unknown", "education"]
    assert many["country"][:4].tolist() == ["us", "de", "unknown", "fr"]
    np.testing.assert_array_equal(many["employees"][:4], [120, 75, np.nan, np.nan])
    np.testing.assert_array_equal(many["tech_stack_size"][:4], [2, np.nan, 0, 1])
    # The batch path factorizes large inputs; the online path loops: both must agree.
    for i in range(4):
        one = attributes_from_columns({k: v[i : i + 1] for k, v in raw.items()}, FEATURES)
        for key, values in one.items():
            assert values.tolist() == many[key][i : i + 1].tolist() or (
                np.isnan(values).all() and np.isnan(many[key][i : i + 1]).all()
            ), key


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and (
        a.tolist() == b.tolist() or np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    )


def test_the_memo_and_the_float_fast_path_change_nothing() -> None:
    """The online builder's memo (text -> value, kept across requests) and the float columns read in one
    NumPy call give exactly the plain results: on a first call (memo empty), on a second one (memo full),
    with mixed types that must bypass the memo (numbers in a text column), and after the memo was cut."""
    rng = np.random.default_rng(3)
    titles = ["VP Sales", " vp sales ", "Engineer", None, "", "Student", "n/a", "Head of IT"]
    pick = lambda pool, n=60: np.array([pool[i] for i in rng.integers(0, len(pool), n)], dtype=object)  # noqa: E731
    raw = {
        "job_title": pick(titles),
        "seniority": pick(["manager", None, " Director ", "bogus", ""]),
        "department": pick([None, "it", "IT "]),
        "country": pick(["US", "de", None, " fr", ""]),
        "lead_source": pick(["webinar", None]),
        "email_domain": pick(["gmail.com", "Acme.com ", None, "rivalcrm.io", ""]),
        "_industry": pick(["Software", None, "retail", " FinTech "]),
        "employees": pick([120.0, None, 9.0, 1e9, float("inf"), float("nan"), 10.0, 49.999]),
        "annual_revenue": pick([1e6, None, 2e6]),
        "tech_stack": pick(["aws; hubspot", None, "", "x"]),
    }
    plain = attributes_from_columns(raw, FEATURES)
    memo: dict = {}
    for _ in range(2):
        cached = attributes_from_columns(raw, FEATURES, memo)
        assert all(_same(cached[k], plain[k]) for k in plain), [
            k for k in plain if not _same(cached[k], plain[k])
        ]
    assert memo["job_title"] and memo["country"]
    mixed = dict(raw, country=np.array([1, 1.0, True, "1"] * 15, dtype=object))  # equal keys, other texts
    assert attributes_from_columns(mixed, FEATURES, memo)["country"].tolist() == (
        attributes_from_columns(mixed, FEATURES)["country"].tolist()
    )
    numbers_as_text = dict(raw, employees=np.array(["75", 75, None, "lots"] * 15, dtype=object))
    assert _same(
        attributes_from_columns(numbers_as_text, FEATURES, memo)["employees"],
        attributes_from_columns(numbers_as_text, FEATURES)["employees"],
    )
    for m in memo.values():
        m.clear()
    assert all(_same(attributes_from_columns(raw, FEATURES, memo)[k], plain[k]) for k in plain)
    bands = FEATURES.size_bands
    assert plain["size_band"].tolist() == [size_band(e, bands) for e in plain["employees"]]
