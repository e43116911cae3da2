"""CompiledForest equals LightGBM's Booster.predict bit for bit (real LightGBM, small synthetic data)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from leadscore.serve.forest import (
    F_CAT,
    F_CAT_WIDE,
    CompiledForest,
    UnsupportedModel,
    _flatten,
    _tree_blocks,
    probe_rows,
)

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
CATEGORICAL = [4, 5]
MISSING_NAMES = {0: "None", 1: "Zero", 2: "NaN"}

#: Values put into numerical columns of test rows: missing, signed zeros, values LightGBM's C API
#: drops as zero (|x| <= 1e-35f), infinities.
NUMERIC_SPECIALS = [np.nan, 0.0, -0.0, 1e-40, -1e-40, 1e-36, np.inf, -np.inf, 1e300]
#: Values put into categorical columns: unseen codes (also past 32 and 64, the bitset word edges),
#: negative, fractional (truncated), NaN, out of int range (INT_MIN on x86), 2^32 + 3.
CATEGORICAL_SPECIALS = [
    np.nan,
    -1.0,
    -0.5,
    -3.0,
    2.7,
    31.0,
    32.0,
    63.0,
    64.0,
    150.0,
    1e10,
    -1e10,
    2147483647.0,
    2147483648.0,
    4294967299.0,
    np.inf,
]


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features: 0 normal with NaN; 1 exponential with exact zeros; 2 small integers; 3 uniform with
    zeros and NaN; 4 categorical 0..9; 5 categorical 0..99 with NaN (bitsets past one word)."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, 6))
    x[:, 0] = rng.normal(size=n)
    x[rng.random(n) < 0.15, 0] = np.nan
    x[:, 1] = np.where(rng.random(n) < 0.3, 0.0, rng.exponential(size=n))
    x[:, 2] = rng.integers(0, 5, n)
    x[:, 3] = np.where(rng.random(n) < 0.2, 0.0, rng.uniform(-1, 1, n))
    x[rng.random(n) < 0.1, 3] = np.nan
    x[:, 4] = rng.integers(0, 10, n)
    x[:, 5] = rng.integers(0, 100, n).astype(float)
    x[rng.random(n) < 0.1, 5] = np.nan
    logit = (
        x[:, 1]
        - np.nan_to_num(x[:, 0], nan=1.5)
        + 1.5 * np.isin(x[:, 4], [1, 3, 7])
        + 1.2 * np.isin(x[:, 5], np.arange(0, 100, 3))
        - 0.8 * (x[:, 1] == 0)
        + np.nan_to_num(x[:, 3], nan=-1.0)
        + 0.3 * x[:, 2]
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return x, y


def _train(params: dict, rounds: int = 30, n: int = 4000, seed: int = 0, **kwargs: object) -> lgb.Booster:
    x, y = _data(n, seed)
    base = {"objective": "binary", "verbose": -1, "min_data_per_group": 5, "cat_smooth": 1.0, "seed": 1}
    dataset = lgb.Dataset(x, y, categorical_feature=CATEGORICAL)
    return lgb.train({**base, **params}, dataset, num_boost_round=rounds, **kwargs)  # type: ignore[arg-type]


def _test_rows(n: int, seed: int) -> np.ndarray:
    """Fresh rows of the training distribution with a quarter of the cells replaced by special values."""
    rng = np.random.default_rng(seed)
    x, _ = _data(n, seed + 100)
    numeric = [j for j in range(x.shape[1]) if j not in CATEGORICAL]
    for cols, specials in ((numeric, NUMERIC_SPECIALS), (CATEGORICAL, CATEGORICAL_SPECIALS)):
        block = x[:, cols]
        hit = rng.random(block.shape) < 0.25
        block[hit] = rng.choice(np.asarray(specials), size=int(hit.sum()))
        x[:, cols] = block
    return x


def _split_kinds(booster: lgb.Booster) -> set[str]:
    """Split kinds in the model text: missing types of numerical splits, and "categorical"."""
    kinds = set()
    for line in booster.model_to_string().splitlines():
        if line.startswith("decision_type="):
            for d in map(int, line.removeprefix("decision_type=").split()):
                kinds.add("categorical" if d & 1 else MISSING_NAMES[(d >> 2) & 3])
    return kinds


def _assert_exact(
    booster: lgb.Booster, forest: CompiledForest, rows: np.ndarray, **predict_kw: object
) -> None:
    """Raw scores and probabilities equal ``booster.predict`` exactly, on 1, 2 and 3 threads and
    row by row."""
    raw = booster.predict(rows, raw_score=True, num_threads=1, **predict_kw)
    prob = booster.predict(rows, num_threads=1, **predict_kw)
    np.testing.assert_array_equal(forest.raw(rows), raw)
    np.testing.assert_array_equal(forest.predict(rows), prob)
    np.testing.assert_array_equal(forest.predict(rows, num_threads=2), prob)
    np.testing.assert_array_equal(forest.raw(rows, num_threads=3), raw)
    head = rows[:150]
    np.testing.assert_array_equal(np.array([forest.predict_one(r) for r in head]), prob[:150])
    np.testing.assert_array_equal(np.array([forest.raw_one(r) for r in head]), raw[:150])


# -- exactness on trained models ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "kinds"),
    [
        ({}, {"None", "NaN"}),
        ({"zero_as_missing": True}, {"Zero"}),
        ({"use_missing": False}, {"None"}),
    ],
    ids=["use_missing", "zero_as_missing", "no_missing"],
)
@pytest.mark.parametrize("num_leaves", [4, 31])
def test_missing_types_and_categoricals_are_exact(params: dict, kinds: set[str], num_leaves: int) -> None:
    booster = _train({**params, "num_leaves": num_leaves})
    found = _split_kinds(booster)
    assert kinds | {"categorical"} <= found
    if params.get("use_missing") is False:
        assert found == {"None", "categorical"}
    forest = CompiledForest.from_booster(booster)
    assert forest.num_trees == booster.num_trees() == 30
    rows = np.vstack([_test_rows(1200, seed=7), probe_rows(forest, 300, seed=3)])
    _assert_exact(booster, forest, rows)


def test_bitsets_past_64_categories_and_trees_past_64_leaves_are_exact() -> None:
    """Wide categorical bitsets (codes >= 64, read from ``cat_bits``) and trees walked row by row."""
    booster = _train({"num_leaves": 100, "min_data_in_leaf": 3, "max_cat_threshold": 64}, rounds=15)
    forest = CompiledForest.from_booster(booster)
    flags = forest.flat.nodes[:, 1]
    assert np.any(((flags & F_CAT) != 0) & ((flags & F_CAT_WIDE) != 0)), "no wide bitset in the model"
    assert forest.flat.trees[:, 4].any(), "no tree with more than 64 leaves"
    rows = np.vstack([_test_rows(800, seed=8), probe_rows(forest, 200, seed=4)])
    _assert_exact(booster, forest, rows)


def test_other_sigmoid_is_exact() -> None:
    booster = _train({"sigmoid": 0.7, "num_leaves": 4}, rounds=10)
    assert "sigmoid:0.7" in booster.model_to_string()
    _assert_exact(booster, CompiledForest.from_booster(booster), _test_rows(500, seed=9))


def test_best_iteration_and_explicit_num_iteration() -> None:
    x_valid, y_valid = _data(1500, seed=5)
    valid = lgb.Dataset(x_valid, y_valid, categorical_feature=CATEGORICAL)
    booster = _train(
        {"num_leaves": 31, "learning_rate": 0.3},
        rounds=300,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(5, verbose=False)],
        keep_training_booster=True,  # else lgb.train keeps only the trees up to best_iteration
    )
    total = booster.num_trees()
    assert 0 < booster.best_iteration < total
    rows = _test_rows(800, seed=10)

    default = CompiledForest.from_booster(booster)  # what Booster.predict uses by default
    assert default.num_trees == booster.best_iteration
    _assert_exact(booster, default, rows)

    three = CompiledForest.from_booster(booster, num_iteration=3)
    assert three.num_trees == 3
    _assert_exact(booster, three, rows, num_iteration=3)

    for all_trees in (-1, 0, total + 10):
        forest = CompiledForest.from_booster(booster, num_iteration=all_trees)
        assert forest.num_trees == total
        _assert_exact(booster, forest, rows, num_iteration=-1)


def test_single_leaf_model_is_exact() -> None:
    """A tree that cannot split (min_data_in_leaf above the row count) is one constant leaf."""
    booster = _train({"min_data_in_leaf": 100_000}, rounds=3)
    forest = CompiledForest.from_booster(booster)
    assert forest.num_trees == 1 and forest.flat.nodes.shape[0] == 0
    _assert_exact(booster, forest, _test_rows(300, seed=11))


# -- hand-built trees: default_left, bitsets and one-leaf trees, with expected values by hand ----

_HAND_MODEL = """tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=binary sigmoid:1
feature_names=x c
feature_infos=[0:1] 1:3:33

Tree=0
num_leaves=2
num_cat=0
split_feature=0
split_gain=1
threshold=0.5
decision_type=10
left_child=-1
right_child=-2
leaf_value=1 2
leaf_weight=1 1
leaf_count=1 1
internal_value=0
internal_weight=0
internal_count=2
is_linear=0
shrinkage=1


Tree=1
num_leaves=1
num_cat=0
split_feature=
split_gain=
threshold=
decision_type=
left_child=
right_child=
leaf_value=100
leaf_weight=
leaf_count=1
internal_value=
internal_weight=
internal_count=
is_linear=0
shrinkage=1


Tree=2
num_leaves=2
num_cat=1
split_feature=1
split_gain=1
threshold=0
decision_type=1
left_child=-1
right_child=-2
leaf_value=10 20
leaf_weight=1 1
leaf_count=1 1
internal_value=0
internal_weight=0
internal_count=2
cat_boundaries=0 2
cat_threshold=10 2
is_linear=0
shrinkage=1


end of trees
"""
# Tree 0: x <= 0.5 left (1) else right (2); missing type NaN (decision_type 8) with default_left (2):
# NaN goes LEFT although NaN <= 0.5 is false. Tree 1: constant 100. Tree 2: categorical c, bitset
# words [0b1010, 0b10] = categories {1, 3, 33} go left (10), everything else right (20).
_HAND_ROWS = [
    # (x, c, expected raw)
    (np.nan, 3.0, 1 + 100 + 10),  # NaN default-left; category 3 in the bitset
    (0.7, 33.0, 2 + 100 + 10),  # category 33: second bitset word
    (0.2, 2.0, 1 + 100 + 20),  # category 2 not in the bitset
    (0.2, 64.0, 1 + 100 + 20),  # past the bitset
    (0.2, -1.0, 1 + 100 + 20),  # negative: right
    (0.2, 3.9, 1 + 100 + 10),  # truncates to 3
    (0.5, 1.0, 1 + 100 + 10),  # x == threshold goes left
    (np.nan, np.nan, 1 + 100 + 20),  # categorical NaN: right
    (0.6, 35.0, 2 + 100 + 20),  # bit 35 = word 1 bit 3: not set
]


def test_hand_built_trees_follow_default_left_and_bitsets() -> None:
    booster = lgb.Booster(model_str=_HAND_MODEL)
    rows = np.array([[x, c] for x, c, _ in _HAND_ROWS])
    expected = np.array([e for _, _, e in _HAND_ROWS], dtype=np.float64)
    np.testing.assert_array_equal(booster.predict(rows, raw_score=True), expected)  # LightGBM agrees
    forest = CompiledForest.from_booster(booster)
    np.testing.assert_array_equal(forest.raw(rows), expected)
    np.testing.assert_array_equal(forest.predict(rows), 1 / (1 + np.exp(-expected)))
    assert [forest.raw_one(r) for r in rows] == expected.tolist()


def _mutated_forest(booster: lgb.Booster, field: str, mutate: object) -> CompiledForest:
    """A forest of ``booster``'s text with every value of one tree field mapped by ``mutate``."""
    text = booster.model_to_string()

    def edit(match: re.Match[str]) -> str:
        return f"{field}=" + " ".join(str(mutate(int(v))) for v in match.group(1).split())  # type: ignore[operator]

    mutated = re.sub(rf"^{field}=(.*)$", edit, text, flags=re.MULTILINE)
    assert mutated != text
    forest = CompiledForest.from_booster(booster, check=False)
    return CompiledForest(_flatten(_tree_blocks(mutated), forest.n_features), forest.n_features, 1.0)


@pytest.mark.parametrize(
    ("field", "mutate"),
    [
        ("decision_type", lambda d: d & ~2),  # default_left ignored: missing values go right
        ("decision_type", lambda d: d | 2),  # ... or always left
        ("cat_threshold", lambda w: 0),  # bitsets ignored: every category goes right
        ("cat_threshold", lambda w: w ^ 0b110),  # two categories moved to the other side
    ],
    ids=["default_right", "default_left", "empty_bitsets", "flipped_bits"],
)
def test_test_rows_catch_ignored_default_left_and_bitsets(field: str, mutate: object) -> None:
    """Mutation check: an evaluator that mishandles default_left or the bitsets fails on the rows the
    exactness tests use, so those tests would catch it."""
    booster = _train({"num_leaves": 31})
    mutant = _mutated_forest(booster, field, mutate)
    rows = _test_rows(1200, seed=7)
    assert not np.array_equal(mutant.raw(rows), booster.predict(rows, raw_score=True))


# -- refused models, the load-time check, inputs ---------------------------------------------------


def test_multiclass_is_unsupported() -> None:
    x, y = _data(600, seed=1)
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1},
        lgb.Dataset(x, (y + (x[:, 2] > 2)).astype(int)),
        num_boost_round=3,
    )
    with pytest.raises(UnsupportedModel, match="num_class"):
        CompiledForest.from_booster(booster)


@pytest.mark.parametrize(
    ("params", "match"),
    [({"objective": "regression"}, "objective"), ({"linear_tree": True, "num_leaves": 4}, "linear")],
)
def test_other_objectives_and_linear_trees_are_unsupported(params: dict, match: str) -> None:
    x, y = _data(600, seed=2)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, **params}, lgb.Dataset(x, y), num_boost_round=3
    )
    with pytest.raises(UnsupportedModel, match=match):
        CompiledForest.from_booster(booster)


def test_load_check_refuses_a_booster_whose_objective_differs_from_its_text() -> None:
    """A kept training booster predicts with sigmoid 0.123456789, its text says 0.123457: the probe
    check notices and refuses, instead of serving slightly different probabilities."""
    booster = _train({"sigmoid": 0.123456789, "num_leaves": 4}, rounds=5, keep_training_booster=True)
    assert "sigmoid:0.123457" in booster.model_to_string()
    with pytest.raises(UnsupportedModel, match="probabilities differ"):
        CompiledForest.from_booster(booster)
    reloaded = lgb.Booster(model_str=booster.model_to_string())  # text and objective agree again
    _assert_exact(reloaded, CompiledForest.from_booster(reloaded), _test_rows(300, seed=12))


def test_input_layouts_dtypes_and_shapes() -> None:
    booster = _train({"num_leaves": 4}, rounds=10)
    forest = CompiledForest.from_booster(booster)
    rows = _test_rows(600, seed=13)
    expected = booster.predict(rows)
    readonly = rows.copy()
    readonly.flags.writeable = False
    wide = np.zeros((rows.shape[0], 2 * rows.shape[1]))
    wide[:, ::2] = rows
    for variant in (np.asfortranarray(rows), wide[:, ::2], readonly, rows[::-1][::-1]):
        np.testing.assert_array_equal(forest.predict(variant), expected)
    with np.errstate(over="ignore"):  # 1e300 becomes inf in float32, for both
        single = rows.astype(np.float32)
    np.testing.assert_array_equal(forest.predict(single), booster.predict(single))
    assert forest.predict(rows[:0]).shape == (0,)
    assert forest.predict_one(readonly[0]) == expected[0]
    with pytest.raises(ValueError, match="matrix"):
        forest.predict(rows[:, :5])
    with pytest.raises(ValueError, match="matrix"):
        forest.predict(rows[0])
    with pytest.raises(ValueError, match="row"):
        forest.predict_one(rows[0, :5])


def test_concurrent_calls_from_several_threads() -> None:
    booster = _train({"num_leaves": 31}, rounds=20)
    forest = CompiledForest.from_booster(booster)
    batches = [_test_rows(700, seed=20 + k) for k in range(4)]
    expected = [booster.predict(b) for b in batches]
    results: dict[int, list[np.ndarray]] = {k: [] for k in range(4)}

    def work(k: int) -> None:
        for _ in range(5):
            results[k].append(forest.predict(batches[k], num_threads=2))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k in range(4):
        assert len(results[k]) == 5
        for got in results[k]:
            np.testing.assert_array_equal(got, expected[k])


# -- the real bundle models -----------------------------------------------------------------------


def _rows_from_feature_infos(booster: lgb.Booster, n: int, seed: int) -> np.ndarray:
    """Random rows over the model's ``feature_infos`` (numerical ``[lo:hi]`` ranges, half of them
    rounded to integers, a margin beyond both ends; categorical value lists plus unseen, negative
    and fractional codes), with 10 % NaN."""
    rng = np.random.default_rng(seed)
    infos = next(
        line.removeprefix("feature_infos=").split()
        for line in booster.model_to_string().splitlines()
        if line.startswith("feature_infos=")
    )
    out = np.empty((n, len(infos)))
    for j, info in enumerate(infos):
        if info.startswith("["):
            lo, hi = (float(v) for v in info[1:-1].split(":"))
            pad = 0.1 * (hi - lo) + 1.0
            col = rng.uniform(lo - pad, hi + pad, n)
            out[:, j] = np.where(rng.random(n) < 0.5, np.round(col), col)
        elif info == "none":
            out[:, j] = rng.choice([0.0, 1.0, np.nan], n)
        else:
            cats = [float(v) for v in info.split(":")]
            out[:, j] = rng.choice(np.array([*cats, max(cats) + 1, 40.0, -1.0, 2.5]), n)
    out[rng.random(out.shape) < 0.1] = np.nan
    return out


@pytest.mark.parametrize("target", ["sql", "closed_won"])
def test_bundle_models_are_exact(target: str) -> None:
    path = MODELS_DIR / f"model_{target}.txt"
    if not path.exists():
        pytest.skip(f"{path} is absent (the bundle is built by `dvc repro`)")
    booster = lgb.Booster(model_file=str(path))
    forest = CompiledForest.from_booster(booster)
    assert forest.num_trees == booster.num_trees()
    rows = np.vstack([_rows_from_feature_infos(booster, 2000, seed=1), probe_rows(forest, 500, seed=2)])
    _assert_exact(booster, forest, rows)
