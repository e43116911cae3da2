"""LightGBM's single-row fast path (``LGBM_BoosterPredictForMatSingleRowFast``) for one-lead requests.

``Booster.predict`` on one NumPy row spends most of its time in Python (argument checks, a predictor
object and a parameter string per call); the C API's "fast" single-row predictor is set up once per
booster (at bundle load) and then costs a few microseconds plus the trees. It evaluates the same trees
in the same double precision, so results equal ``Booster.predict``'s; ``SingleRowPredictor.check``
proves it on probe rows at load and the scorer falls back to ``Booster.predict`` if it ever does not.
"""

from __future__ import annotations

import ctypes
import threading

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _c_str, _safe_call

C_API_DTYPE_FLOAT64 = 1
PREDICT_NORMAL = 0
PREDICT_CONTRIB = 3


class SingleRowPredictor:
    """Predict one float64 row of ``ncol`` features with one thread (``normal`` or ``contrib`` output)."""

    def __init__(self, booster: lgb.Booster, predict_type: int, ncol: int) -> None:
        self._booster = booster  # keeps the booster (and its C handle) alive as long as this predictor
        self.ncol = ncol
        self.out_len = ncol + 1 if predict_type == PREDICT_CONTRIB else 1
        # The same iterations Booster.predict uses by default (best_iteration, -1 for all).
        num_iteration = booster.best_iteration
        self._config = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(predict_type),
                ctypes.c_int(0),
                ctypes.c_int(num_iteration),
                ctypes.c_int(C_API_DTYPE_FLOAT64),
                ctypes.c_int32(ncol),
                _c_str("num_threads=1"),
                ctypes.byref(self._config),
            )
        )
        # Fixed input/output buffers and their C pointers, made once: a call copies the row in, predicts,
        # and copies the result out. The lock guards the buffers (the event loop and a worker thread).
        self._row = np.zeros(ncol, dtype=np.float64)
        self._out = np.zeros(self.out_len, dtype=np.float64)
        self._row_ptr = self._row.ctypes.data_as(ctypes.c_void_p)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._n_out = ctypes.c_int64(0)
        self._n_out_ref = ctypes.byref(self._n_out)
        self._lock = threading.Lock()
        self._predict = _LIB.LGBM_BoosterPredictForMatSingleRowFast

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """Output for one row: shape (1,) for normal, (ncol + 1,) for contributions (bias last)."""
        if row.shape != self._row.shape:
            raise ValueError(f"expected {self.ncol} features, got shape {row.shape}")
        with self._lock:
            self._row[:] = row
            _safe_call(self._predict(self._config, self._row_ptr, self._n_out_ref, self._out_ptr))
            return self._out.copy()

    def __del__(self) -> None:
        config = getattr(self, "_config", None)
        if config is not None and config.value:
            _LIB.LGBM_FastConfigFree(config)
            self._config = None  # type: ignore[assignment]


def check_row_predictor(
    predictor: SingleRowPredictor, booster: lgb.Booster, probes: np.ndarray, contrib: bool
) -> bool:
    """True when the fast path equals ``Booster.predict`` on every probe row (to 1e-12)."""
    for row in probes:
        fast = predictor(row)
        slow = booster.predict(row.reshape(1, -1), pred_contrib=contrib, num_threads=1).reshape(-1)
        if fast.shape != slow.shape or not np.allclose(fast, slow, rtol=1e-12, atol=1e-12):
            return False
    return True
