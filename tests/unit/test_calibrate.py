"""Calibrators: recover known maps, stay monotone, round-trip through JSON, pick the method by size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leadscore.config import CalibrateParams
from leadscore.models.calibrate import (
    Calibrator,
    choose_method,
    fit_calibrator,
    fit_isotonic,
    fit_sigmoid,
)


def _raw_and_labels(n: int, a: float, b: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores whose true probability is sigmoid(a * logit(raw) + b)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    raw = 1 / (1 + np.exp(-z))
    y = (rng.random(n) < 1 / (1 + np.exp(-(a * z + b)))).astype(int)
    return raw, y


def test_sigmoid_recovers_known_map() -> None:
    raw, y = _raw_and_labels(40000, a=0.6, b=-1.2)
    cal = fit_sigmoid(raw, y)
    assert cal.method == "sigmoid"
    assert cal.a_ == pytest.approx(0.6, abs=0.04)
    assert cal.b_ == pytest.approx(-1.2, abs=0.05)


def test_identity_sigmoid_is_identity() -> None:
    p = np.array([0.01, 0.2, 0.5, 0.9])
    assert Calibrator("sigmoid", a_=1.0, b_=0.0).transform(p) == pytest.approx(p)


def test_isotonic_is_monotone_bounded_and_calibrates() -> None:
    raw, y = _raw_and_labels(30000, a=0.5, b=-1.0, seed=1)
    cal = fit_isotonic(raw, y)
    grid = np.linspace(-0.5, 1.5, 400)  # also outside the fitted range: flat, not extrapolated
    out = cal.transform(grid)
    assert np.all(np.diff(out) >= 0)
    assert out.min() >= 0 and out.max() <= 1
    p = cal.transform(raw)
    # in-sample, isotonic regression matches the overall rate exactly
    assert p.mean() == pytest.approx(y.mean(), abs=1e-9)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_json_round_trip(method: str) -> None:
    raw, y = _raw_and_labels(5000, a=0.8, b=-0.5, seed=2)
    cal = fit_sigmoid(raw, y) if method == "sigmoid" else fit_isotonic(raw, y)
    again = Calibrator.from_json(json.loads(json.dumps(cal.to_json())))
    assert again == cal
    np.testing.assert_array_equal(again.transform(raw), cal.transform(raw))


def test_from_json_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown calibrator"):
        Calibrator.from_json({"method": "pickle"})
    with pytest.raises(ValueError, match="increasing"):
        Calibrator.from_json({"method": "isotonic", "x": [0.5, 0.2], "y": [0.1, 0.3]})
    with pytest.raises(ValueError, match="increasing"):
        Calibrator.from_json({"method": "isotonic", "x": [0.5], "y": [0.1]})


def test_choose_method_by_slice_size() -> None:
    auto = CalibrateParams(method="auto", isotonic_min_rows=1000, isotonic_min_positives=100)
    assert choose_method(999, 500, auto) == "sigmoid"
    assert choose_method(5000, 99, auto) == "sigmoid"
    assert choose_method(1000, 100, auto) == "isotonic"
    assert choose_method(10, 1, CalibrateParams(method="isotonic")) == "isotonic"
    assert choose_method(10**6, 10**5, CalibrateParams(method="sigmoid")) == "sigmoid"


def test_fit_calibrator_follows_params_and_refuses_one_class() -> None:
    raw, y = _raw_and_labels(3000, a=1.0, b=0.0, seed=3)
    small = CalibrateParams(method="auto", isotonic_min_rows=10**6)
    assert fit_calibrator(raw, y, small).method == "sigmoid"
    assert fit_calibrator(raw, y, CalibrateParams(method="isotonic")).method == "isotonic"
    with pytest.raises(ValueError, match="single class"):
        fit_calibrator(raw, np.zeros_like(y), small)
