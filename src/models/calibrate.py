"""Probability calibration fitted on the calibration slice only, stored as plain numbers (JSON).

Sigmoid (Platt scaling on the raw score's logit) for small slices, isotonic (pool-adjacent-violators)
when the slice is large enough to support a step function. Applying a calibrator needs only NumPy, so the
server never unpickles anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize
from sklearn.isotonic import IsotonicRegression

from leadscore.config import CalibrateParams

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibrator:
    """A fitted calibrator. ``sigmoid``: p = 1/(1+exp(-(a*logit(raw)+b))); ``isotonic``: linear
    interpolation through (x_, y_), flat outside."""

    method: Literal["sigmoid", "isotonic"]
    a_: float = 1.0
    b_: float = 0.0
    x_: tuple[float, ...] = ()
    y_: tuple[float, ...] = ()
    # The knots as arrays, made once: np.interp would convert the tuples on every call (the API's hot path).
    _xy: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        xy = (np.asarray(self.x_, dtype=np.float64), np.asarray(self.y_, dtype=np.float64))
        object.__setattr__(self, "_xy", xy)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw model probabilities."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "sigmoid":
            return 1.0 / (1.0 + np.exp(-(self.a_ * _logit(raw) + self.b_)))
        return np.interp(raw, *self._xy)

    def to_json(self) -> dict[str, Any]:
        if self.method == "sigmoid":
            return {"method": "sigmoid", "a": self.a_, "b": self.b_}
        return {"method": "isotonic", "x": list(self.x_), "y": list(self.y_)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibrator:
        method = data.get("method")
        if method == "sigmoid":
            return cls("sigmoid", a_=float(data["a"]), b_=float(data["b"]))
        if method == "isotonic":
            x, y = [float(v) for v in data["x"]], [float(v) for v in data["y"]]
            if len(x) != len(y) or len(x) < 2 or any(b < a for a, b in pairwise(x)):
                raise ValueError("isotonic calibrator needs two or more increasing x with matching y")
            return cls("isotonic", x_=tuple(x), y_=tuple(y))
        raise ValueError(f"unknown calibrator method {method!r}")


def choose_method(n_rows: int, n_positive: int, params: CalibrateParams) -> Literal["sigmoid", "isotonic"]:
    """Isotonic only when the slice is large (rows and positives), else sigmoid."""
    if params.method != "auto":
        return params.method
    big = n_rows >= params.isotonic_min_rows and n_positive >= params.isotonic_min_positives
    return "isotonic" if big else "sigmoid"


def fit_sigmoid(raw: np.ndarray, y: np.ndarray) -> Calibrator:
    """Platt scaling on logit(raw) by maximum likelihood (deterministic L-BFGS)."""
    z, y = _logit(np.asarray(raw, dtype=np.float64)), np.asarray(y, dtype=np.float64)

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        s = theta[0] * z + theta[1]
        p = 1.0 / (1.0 + np.exp(-s))
        loss = np.sum(np.logaddexp(0.0, s) - y * s)
        grad = np.array([np.sum((p - y) * z), np.sum(p - y)])
        return float(loss), grad

    res = minimize(nll, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return Calibrator("sigmoid", a_=float(res.x[0]), b_=float(res.x[1]))


def fit_isotonic(raw: np.ndarray, y: np.ndarray) -> Calibrator:
    """Isotonic regression; stored as its (deduplicated) breakpoints."""
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    x, yv = np.asarray(iso.X_thresholds_, float), np.asarray(iso.y_thresholds_, float)
    return Calibrator("isotonic", x_=tuple(x.tolist()), y_=tuple(yv.tolist()))


def fit_calibrator(raw: np.ndarray, y: np.ndarray, params: CalibrateParams) -> Calibrator:
    """Fit the calibrator ``params`` asks for on (raw probability, label) of the calibration slice."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        raise ValueError("the calibration slice has a single class; cannot calibrate")
    method = choose_method(len(y), int(y.sum()), params)
    return fit_isotonic(raw, y) if method == "isotonic" else fit_sigmoid(raw, y)
