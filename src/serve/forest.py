"""An exact numba evaluator of a LightGBM binary booster's trees (the batch path's fast predict).

``Booster.predict`` spends ~23 ns per tree and row, mostly LightGBM's per-tree overhead; our trees are
tiny (depth ≤ 2). ``CompiledForest`` reads the trees from ``booster.model_to_string()`` (every double
written with 17 significant digits, so parsing gives back the booster's own doubles) into a few flat
arrays and reproduces LightGBM 4.7's prediction bit for bit:

- input: the C API drops values with ``|x| <= kZeroThreshold`` from a dense row
  (``RowPairFunctionFromDenseMatric``), so they read as 0.0; NaN is kept;
- ``Tree::NumericalDecision``: NaN becomes 0.0 unless the node's missing type is NaN; missing type Zero
  sends ``IsZero(x)`` (NaN included, after that conversion) and missing type NaN sends NaN to the
  default side (``default_left``); everything else goes left iff ``x <= threshold``;
- ``Tree::CategoricalDecision``: NaN goes right; otherwise ``static_cast<int>(x)`` (truncation; out of
  int range is INT_MIN on x86, i.e. right); negative goes right; left iff the category's bit is set in
  the node's bitset (``Common::FindInBitset``: a code past the bitset is not in it);
- ``GBDT::PredictRaw``: tree outputs are added in tree order into a double starting at 0.0; the binary
  objective's ``ConvertOutput`` is ``1 / (1 + exp(-sigmoid * raw))`` (libm ``exp``, as ``math.exp``).

Each numerical node therefore reduces to ``(threshold, nan_left, zero_left)``: NaN → ``nan_left``,
``|x| <= kZeroThreshold`` → ``zero_left``, else ``x <= threshold`` (missing type None: both are
``0.0 <= threshold``; Zero: both ``default_left``; NaN: ``default_left`` and ``0.0 <= threshold``).

Batches are evaluated tree by tree over blocks of rows, QuickScorer-style: every internal node of a
tree is tested on all rows of the block (a tight loop per node, no data-dependent branches, so it
vectorizes), a node that sends a row right clears the bits of its left subtree's leaves in the row's
64-bit leaf mask, and the row's exit leaf is the lowest bit left (leaves numbered left to right). Trees
with more than 64 leaves are walked row by row instead. The matrix is read transposed (one feature's
values contiguous), which is free for Fortran-ordered input such as ``MatrixEncoder.transform``'s.

``from_booster`` proves equality with ``Booster.predict`` on probe rows built from the trees' own
thresholds and categories (raw scores and probabilities) and raises ``UnsupportedModel`` if it does
not hold, so a model this module does not understand is refused at load time, never scored wrong.

Kernels are ``@njit(cache=True, nogil=True)`` without ``parallel=True`` (numba's workqueue threading
layer aborts on concurrent calls from several threads); ``num_threads > 1`` splits the rows into
contiguous chunks run on a module-level thread pool. A row's result does not depend on its chunk.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import lightgbm as lgb
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: LightGBM's ``kZeroThreshold``: the C++ literal is ``1e-35f`` (a float32) stored in a double.
K_ZERO_THRESHOLD: Final = float(np.float32(1e-35))
#: ``static_cast<int>`` of a double at or past this is INT_MIN on x86 (negative: right).
_INT_LIMIT: Final = 2147483648.0

# Node flags (column _FLAGS of the node table).
F_CAT: Final = 1  # categorical split (threshold column holds the code limit)
F_NAN_LEFT: Final = 2  # numerical: NaN goes left
F_ZERO_LEFT: Final = 4  # numerical: |x| <= kZeroThreshold goes left
F_CAT_WIDE: Final = 8  # categorical with codes >= 64: bitset words in ``cat_bits``, else in _CAT_WORD

# Columns of the int64 node table (one row per internal node).
_FEATURE, _FLAGS, _LEFT, _RIGHT, _CAT_START, _CAT_WORD, _MASK = range(7)
# Columns of the int64 tree table.
_NODE_START, _NODE_END, _LEAF_START, _ROOT, _WALK = range(5)

#: Rows evaluated together (leaf masks stay in L1, the block's matrix slice in L2).
BLOCK_ROWS: Final = 1024
#: Fewest rows for which ``num_threads > 1`` is used, and fewest rows per thread.
MIN_PARALLEL_ROWS: Final = 256
MIN_ROWS_PER_THREAD: Final = 128
#: Trees with more leaves than bits in the leaf mask are walked row by row.
MAX_MASK_LEAVES: Final = 64

# LightGBM's decision_type bits (tree.h: kCategoricalMask, kDefaultLeftMask, missing type in bits 2-3).
_CATEGORICAL_MASK: Final = 1
_DEFAULT_LEFT_MASK: Final = 2
_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2

_ALL_BITS: Final = np.uint64(0xFFFFFFFFFFFFFFFF)


class UnsupportedModel(ValueError):
    """The booster uses something ``CompiledForest`` does not evaluate exactly (or it fails the probe
    check); the caller keeps using ``Booster.predict``."""


# -- numba kernels --------------------------------------------------------------------------------


@intrinsic
def _cttz(typingctx, x):  # type: ignore[no-untyped-def]
    """Count of trailing zero bits of a uint64 (``llvm.cttz``; 64 for 0, which never occurs here)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        fnty = ir.FunctionType(ir.IntType(64), [ir.IntType(64), ir.IntType(1)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.cttz.i64")
        return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), 0)])

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _num_left(v: float, threshold: float, nan_left: bool, zero_left: bool) -> bool:
    """LightGBM's numerical decision (input zero-dropping included) in its reduced form; written with
    bitwise operators so that it compiles without branches (zeros and NaN come at random)."""
    is_nan = v != v
    tiny = abs(v) <= K_ZERO_THRESHOLD  # False for NaN
    return (is_nan & nan_left) | (tiny & zero_left) | ((v <= threshold) & (not tiny))


@njit(cache=True, nogil=True, inline="always")
def _cat_bit(code: int, wide: bool, word: np.uint64, start: int, cat_bits: np.ndarray) -> bool:
    """Whether category ``code`` (0 <= code < the node's limit) is in the node's bitset."""
    if wide:  # loop-invariant in the block kernel
        return ((cat_bits[start + (code >> 5)] >> (code & 31)) & 1) == 1
    return ((word >> np.uint64(code)) & np.uint64(1)) == np.uint64(1)


@njit(cache=True, nogil=True, inline="always")
def _cat_left(v: float, limit: float, wide: bool, word: np.uint64, start: int, cat_bits: np.ndarray) -> bool:
    """LightGBM's categorical decision. ``limit`` = 32 × bitset words (capped at 2^31): codes past the
    bitset and out of int range go right; NaN fails both comparisons (right); (-1, 0) truncates to
    category 0. This form vectorizes in the block kernel's row loops."""
    ok = (v > -1.0) & (v < limit)
    code = np.int64(v if ok else 0.0)
    return ok & _cat_bit(code, wide, word, start, cat_bits)


@njit(cache=True, nogil=True, inline="always")
def _cat_left_row(
    v: float, limit: float, wide: bool, word: np.uint64, start: int, cat_bits: np.ndarray
) -> bool:
    """``_cat_left`` for the one-row paths: the code is clamped with ``min``/``max`` (numba lowers them
    to selects; ``max(0.0, nan)`` is 0.0), so no branch depends on the data; for ``ok`` values the
    clamp is the identity after truncation."""
    ok = (v > -1.0) & (v < limit)
    code = np.int64(min(limit - 1.0, max(0.0, v)))
    return ok & _cat_bit(code, wide, word, start, cat_bits)


@njit(cache=True, nogil=True, inline="always")
def _node_left(v: float, j: int, nodes: np.ndarray, thresholds: np.ndarray, cat_bits: np.ndarray) -> bool:
    """Whether internal node ``j`` sends value ``v`` left (scalar form for the row-wise paths)."""
    flags = nodes[j, _FLAGS]
    if flags & F_CAT:
        return _cat_left_row(
            v,
            thresholds[j],
            (flags & F_CAT_WIDE) != 0,
            np.uint64(nodes[j, _CAT_WORD]),
            nodes[j, _CAT_START],
            cat_bits,
        )
    return _num_left(v, thresholds[j], (flags & F_NAN_LEFT) != 0, (flags & F_ZERO_LEFT) != 0)


@njit(cache=True, nogil=True, inline="always")
def _walk(row: np.ndarray, root: int, nodes: np.ndarray, thresholds: np.ndarray, cat_bits: np.ndarray) -> int:
    """Global leaf index reached from ``root`` (a node, or ``~leaf``) by ``row`` (any 1-D view)."""
    node = root
    while node >= 0:
        if _node_left(row[nodes[node, _FEATURE]], node, nodes, thresholds, cat_bits):
            node = nodes[node, _LEFT]
        else:
            node = nodes[node, _RIGHT]
    return ~node


@njit(cache=True, nogil=True)
def _predict_block(
    xt: np.ndarray,
    start: int,
    stop: int,
    nodes: np.ndarray,
    thresholds: np.ndarray,
    trees: np.ndarray,
    leaf_values: np.ndarray,
    cat_bits: np.ndarray,
    sigmoid: float,
    out: np.ndarray,
) -> None:
    """Rows ``start:stop`` of the transposed matrix ``xt`` (n_features, n) → ``out[start:stop]``: the
    sum of tree outputs in tree order, then ``1 / (1 + exp(-sigmoid * raw))`` when ``sigmoid > 0``."""
    zero = np.uint64(0)
    state = np.empty(BLOCK_ROWS, dtype=np.uint64)
    for b0 in range(start, stop, BLOCK_ROWS):
        b1 = min(b0 + BLOCK_ROWS, stop)
        m = b1 - b0
        for i in range(b0, b1):
            out[i] = 0.0
        for t in range(trees.shape[0]):
            leaf_start = trees[t, _LEAF_START]
            if trees[t, _WALK]:
                root = trees[t, _ROOT]
                for i in range(b0, b1):
                    out[i] += leaf_values[_walk(xt[:, i], root, nodes, thresholds, cat_bits)]
                continue
            for k in range(m):
                state[k] = _ALL_BITS
            for j in range(trees[t, _NODE_START], trees[t, _NODE_END]):
                # Loop-invariant node constants first: each loop below is branch-free per row.
                f = nodes[j, _FEATURE]
                flags = nodes[j, _FLAGS]
                mask = np.uint64(nodes[j, _MASK])
                threshold = thresholds[j]
                if flags & F_CAT:
                    wide = (flags & F_CAT_WIDE) != 0
                    word = np.uint64(nodes[j, _CAT_WORD])
                    cat_start = nodes[j, _CAT_START]
                    for k in range(m):
                        left = _cat_left(xt[f, b0 + k], threshold, wide, word, cat_start, cat_bits)
                        state[k] &= mask | (zero - np.uint64(left))
                else:
                    nan_left = (flags & F_NAN_LEFT) != 0
                    zero_left = (flags & F_ZERO_LEFT) != 0
                    for k in range(m):
                        left = _num_left(xt[f, b0 + k], threshold, nan_left, zero_left)
                        state[k] &= mask | (zero - np.uint64(left))
            for k in range(m):
                out[b0 + k] += leaf_values[leaf_start + np.int64(_cttz(state[k]))]
        if sigmoid > 0.0:
            for i in range(b0, b1):
                out[i] = 1.0 / (1.0 + math.exp(-sigmoid * out[i]))


@njit(cache=True, nogil=True)
def _predict_one(
    row: np.ndarray,
    nodes: np.ndarray,
    thresholds: np.ndarray,
    trees: np.ndarray,
    leaf_values: np.ndarray,
    cat_bits: np.ndarray,
    sigmoid: float,
) -> float:
    """One 1-D row → raw score, or probability when ``sigmoid > 0`` (same arithmetic as the block)."""
    zero = np.uint64(0)
    total = 0.0
    for t in range(trees.shape[0]):
        if trees[t, _WALK]:
            total += leaf_values[_walk(row, trees[t, _ROOT], nodes, thresholds, cat_bits)]
            continue
        state = _ALL_BITS
        for j in range(trees[t, _NODE_START], trees[t, _NODE_END]):
            left = _node_left(row[nodes[j, _FEATURE]], j, nodes, thresholds, cat_bits)
            state &= np.uint64(nodes[j, _MASK]) | (zero - np.uint64(left))
        total += leaf_values[trees[t, _LEAF_START] + np.int64(_cttz(state))]
    if sigmoid > 0.0:
        total = 1.0 / (1.0 + math.exp(-sigmoid * total))
    return total


# -- thread pool ----------------------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _submit(calls: list[tuple]) -> list[Future]:
    """Run ``(fn, *args)`` calls on the module's pool, which is created on first use with as many
    threads as calls and replaced by a larger one when a request brings more calls (the old pool
    finishes its queued work, then its threads exit). Submitting under the lock keeps a replacement
    from shutting a pool down between choosing it and submitting to it."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < len(calls):
            old = _pool
            _pool = ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="leadscore-forest")
            _pool_size = len(calls)
            if old is not None:
                old.shutdown(wait=False)
        return [_pool.submit(*call) for call in calls]


# -- model text → flat arrays ---------------------------------------------------------------------


def _header(text: str) -> dict[str, str]:
    """``key=value`` lines of the model text before the first tree (flag lines map to "")."""
    out: dict[str, str] = {}
    for line in text.split("\nTree=", 1)[0].splitlines():
        key, _, value = line.partition("=")
        if key.strip():
            out[key.strip()] = value.strip()
    return out


def _tree_blocks(text: str) -> list[dict[str, str]]:
    """One ``key -> value`` dict per ``Tree=`` block, in tree order."""
    body = text.split("\nend of trees", 1)[0]
    trees = []
    for index, block in enumerate(body.split("\nTree=")[1:]):
        lines = block.splitlines()
        if int(lines[0]) != index:
            raise UnsupportedModel(f"tree blocks out of order: Tree={lines[0]} at position {index}")
        fields: dict[str, str] = {}
        for line in lines[1:]:
            key, sep, value = line.partition("=")
            if sep:
                fields[key] = value
        trees.append(fields)
    return trees


def _numbers(fields: dict[str, str], key: str, n: int, kind: type) -> list:
    """The ``n`` space-separated numbers of ``key`` (floats via Python's correctly rounded parser)."""
    raw = fields.get(key, "").split()
    if len(raw) != n:
        raise UnsupportedModel(f"tree field {key!r} has {len(raw)} values, expected {n}")
    return [kind(v) for v in raw]


def _sigmoid(objective: str) -> float:
    """The sigmoid of a ``binary`` objective line (``binary sigmoid:1``); other objectives refused."""
    tokens = objective.split()
    if not tokens or tokens[0] != "binary":
        raise UnsupportedModel(f"objective {objective!r} is not supported (binary only)")
    sigmoid = 1.0
    for token in tokens[1:]:
        key, _, value = token.partition(":")
        if key == "sigmoid":
            sigmoid = float(value)
    if not (sigmoid > 0.0 and math.isfinite(sigmoid)):
        raise UnsupportedModel(f"binary objective with sigmoid {sigmoid}")
    return sigmoid


@dataclass(frozen=True)
class FlatTrees:
    """All trees in flat arrays (see ``_flatten``)."""

    # (n_nodes, 7) int64: feature, flags, left child, right child, cat_start, cat_word (a narrow
    # categorical node's 64-bit bitset, a wide one's word count), mask (uint64 bits)
    nodes: np.ndarray
    thresholds: np.ndarray  # (n_nodes,) float64: threshold, or the code limit of a categorical node
    trees: np.ndarray  # (n_trees, 5) int64: node_start, node_end, leaf_start, root, walk
    leaf_values: np.ndarray  # (n_leaves,) float64, each tree's leaves left to right
    cat_bits: np.ndarray  # (>= 1,) int64: the uint32 bitset words of wide categorical nodes

    def args(self) -> tuple[np.ndarray, ...]:
        return (self.nodes, self.thresholds, self.trees, self.leaf_values, self.cat_bits)


def _as_int64(bits: int) -> int:
    """A uint64 bit pattern as the int64 with the same bits (the node table is int64)."""
    return bits - (1 << 64) if bits >= 1 << 63 else bits


def _leaf_order(left: list[int], right: list[int], t: int) -> tuple[list[int], list[tuple[int, int]]]:
    """A tree's LightGBM leaf indices left to right (in-order), and for each internal node the range
    ``[lo, hi)`` of positions of its left subtree's leaves (a subtree's leaves are contiguous).
    Iterative (a leaf-wise tree can be deeper than Python's recursion limit); raises on a cycle."""
    n_internal = len(left)
    order: list[int] = []
    start: dict[int, int] = {}
    span = [(0, 0)] * n_internal
    stack = [(0, False)]  # (child reference, left subtree done)
    while stack:
        node, left_done = stack.pop()
        if node < 0:
            order.append(~node)
        elif left_done:
            span[node] = (start[node], len(order))
            stack.append((right[node], False))
        else:
            if node >= n_internal or node in start:
                raise UnsupportedModel(f"tree {t}: node {node} out of range or reached twice")
            start[node] = len(order)
            stack += [(node, True), (left[node], False)]
    if len(start) != n_internal:
        raise UnsupportedModel(f"tree {t}: nodes unreachable from the root")
    return order, span


def _flatten(trees: list[dict[str, str]], n_features: int) -> FlatTrees:
    """Flatten parsed tree blocks. A tree's internal nodes are rows ``node_start:node_end`` of the node
    table; its leaves are numbered left to right from ``leaf_start``; a node's mask has the bits of its
    left subtree's leaves cleared; children are node rows (>= 0) or ``~leaf`` (global leaf index).
    Raises ``UnsupportedModel`` for linear trees, unknown decision bits or inconsistent fields."""
    node_rows: list[list[int]] = []
    thresholds: list[float] = []
    tree_rows: list[list[int]] = []
    leaf_values: list[float] = []
    cat_bits: list[int] = []
    for t, fields in enumerate(trees):
        if fields.get("is_linear", "0").strip() != "0":
            raise UnsupportedModel(f"tree {t} is a linear tree")
        num_leaves = int(fields["num_leaves"])
        values = _numbers(fields, "leaf_value", num_leaves, float)
        node_start, leaf_start = len(node_rows), len(leaf_values)
        if num_leaves == 1:
            leaf_values.append(values[0])
            tree_rows.append([node_start, node_start, leaf_start, ~leaf_start, 0])
            continue
        n_internal = num_leaves - 1
        num_cat = int(fields.get("num_cat", "0"))
        feature = _numbers(fields, "split_feature", n_internal, int)
        threshold = _numbers(fields, "threshold", n_internal, float)
        decision = _numbers(fields, "decision_type", n_internal, int)
        children = (
            _numbers(fields, "left_child", n_internal, int),
            _numbers(fields, "right_child", n_internal, int),
        )
        boundaries = _numbers(fields, "cat_boundaries", num_cat + 1, int) if num_cat else [0]
        words = _numbers(fields, "cat_threshold", boundaries[-1], int) if num_cat else []

        order, left_span = _leaf_order(children[0], children[1], t)
        if sorted(order) != list(range(num_leaves)):
            raise UnsupportedModel(f"tree {t}: nodes and leaves do not form one tree")
        position = {leaf: p for p, leaf in enumerate(order)}
        leaf_values.extend(values[leaf] for leaf in order)
        refs = [
            [node_start + c if c >= 0 else ~(leaf_start + position[~c]) for c in side] for side in children
        ]

        for j in range(n_internal):
            dt = decision[j]
            if not 0 <= feature[j] < n_features:
                raise UnsupportedModel(f"tree {t}: split feature {feature[j]} out of range")
            if dt & ~0b1111 or dt < 0:
                raise UnsupportedModel(f"tree {t}: unknown decision_type {dt}")
            flags, cat_start, cat_word = 0, 0, 0
            if dt & _CATEGORICAL_MASK:
                cat_idx = int(threshold[j])
                if cat_idx != threshold[j] or not 0 <= cat_idx < num_cat:
                    raise UnsupportedModel(f"tree {t}: categorical threshold {threshold[j]} is no bitset")
                node_words = words[boundaries[cat_idx] : boundaries[cat_idx + 1]]
                if any(not 0 <= w < 1 << 32 for w in node_words):
                    raise UnsupportedModel(f"tree {t}: categorical bitset word out of uint32 range")
                flags = F_CAT
                if len(node_words) <= 2:  # codes < 64: the bitset fits one uint64 kept in the node
                    cat_word = _as_int64(sum(w << (32 * i) for i, w in enumerate(node_words)))
                    # An empty bitset (sends everything right) gets limit 32 and no bits set.
                    node_threshold = 32.0 * max(len(node_words), 1)
                else:
                    flags |= F_CAT_WIDE
                    cat_start, cat_word = len(cat_bits), len(node_words)  # word column: word count
                    cat_bits.extend(node_words)
                    node_threshold = min(32.0 * len(node_words), _INT_LIMIT)
            else:
                missing = (dt >> 2) & 3
                default_left = bool(dt & _DEFAULT_LEFT_MASK)
                zero_side = threshold[j] >= 0.0  # where a NaN turned 0.0 (or a dropped ~0) goes
                if missing == _MISSING_NONE:
                    nan_left, zero_left = zero_side, zero_side
                elif missing == _MISSING_ZERO:
                    nan_left, zero_left = default_left, default_left
                elif missing == _MISSING_NAN:
                    nan_left, zero_left = default_left, zero_side
                else:
                    raise UnsupportedModel(f"tree {t}: unknown missing type {missing}")
                flags = (F_NAN_LEFT if nan_left else 0) | (F_ZERO_LEFT if zero_left else 0)
                node_threshold = threshold[j]
            mask = 0
            if num_leaves <= MAX_MASK_LEAVES:  # all bits but those of the left subtree's leaves
                lo, hi = left_span[j]
                mask = ((1 << 64) - 1) & ~(((1 << (hi - lo)) - 1) << lo)
            node_rows.append(
                [feature[j], flags, refs[0][j], refs[1][j], cat_start, cat_word, _as_int64(mask)]
            )
            thresholds.append(node_threshold)
        walk = 1 if num_leaves > MAX_MASK_LEAVES else 0
        tree_rows.append([node_start, len(node_rows), leaf_start, node_start, walk])
    return FlatTrees(
        nodes=np.asarray(node_rows, dtype=np.int64).reshape(-1, 7),
        thresholds=np.asarray(thresholds, dtype=np.float64),
        trees=np.asarray(tree_rows, dtype=np.int64).reshape(-1, 5),
        leaf_values=np.asarray(leaf_values, dtype=np.float64),
        cat_bits=np.asarray(cat_bits or [0], dtype=np.int64),
    )


# -- the evaluator --------------------------------------------------------------------------------


class CompiledForest:
    """The first ``num_trees`` trees of a binary LightGBM booster, evaluated by numba kernels.

    ``raw``/``predict``/``predict_one`` equal ``Booster.predict(m, raw_score=True)`` /
    ``Booster.predict(m)`` bit for bit (same ``num_iteration``). Immutable; safe from many threads.
    """

    def __init__(self, flat: FlatTrees, n_features: int, sigmoid: float) -> None:
        self.flat = flat
        self.n_features = n_features
        self.sigmoid = sigmoid
        self.num_trees = int(flat.trees.shape[0])
        self._args = flat.args()
        #: Seconds the last ``warm_up`` took (numba cache load, or compile on a cold cache).
        self.warm_up_seconds = 0.0

    @classmethod
    def from_booster(
        cls, booster: lgb.Booster, num_iteration: int | None = None, check: bool = True
    ) -> CompiledForest:
        """Compile ``booster``'s trees. ``num_iteration`` as in ``Booster.predict``: None → the
        booster's ``best_iteration`` if > 0, else all trees; <= 0 or more than the model has → all
        trees. Loads (or compiles) the kernels and, with ``check``, proves equality with
        ``Booster.predict`` on probe rows. Raises ``UnsupportedModel``."""
        text = booster.model_to_string(num_iteration=-1)  # every tree; cut to num_iteration below
        header = _header(text)
        if header.get("version") != "v4":
            raise UnsupportedModel(f"model text version {header.get('version')!r} (expected v4)")
        if header.get("num_class") != "1" or header.get("num_tree_per_iteration") != "1":
            raise UnsupportedModel("only single-output models (num_class=1) are supported")
        if "average_output" in header:
            raise UnsupportedModel("averaged output (random forest boosting) is not supported")
        if "objective" not in header:
            raise UnsupportedModel("the model has no objective (custom objective); not supported")
        sigmoid = _sigmoid(header["objective"])
        if num_iteration is None:
            num_iteration = booster.best_iteration
        try:
            n_features = int(header["max_feature_idx"]) + 1
            trees = _tree_blocks(text)
            if 0 < num_iteration < len(trees):
                trees = trees[:num_iteration]
            flat = _flatten(trees, n_features)
        except UnsupportedModel:
            raise
        except (KeyError, IndexError, ValueError) as exc:  # a model text this parser does not know
            raise UnsupportedModel(f"cannot read the model text: {exc!r}") from exc
        if not trees:
            raise UnsupportedModel("the model has no trees")
        forest = cls(flat, n_features, sigmoid)
        forest.warm_up()
        if check:
            forest.check(booster)
        return forest

    # -- predict ----------------------------------------------------------------------------------

    def raw(self, matrix: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """(n,) raw scores (sum of tree outputs) of an (n, n_features) matrix."""
        return self._run(matrix, 0.0, num_threads)

    def predict(self, matrix: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """(n,) probabilities ``1 / (1 + exp(-sigmoid * raw))`` of an (n, n_features) matrix."""
        return self._run(matrix, self.sigmoid, num_threads)

    def predict_one(self, row: np.ndarray) -> float:
        """The probability of one (n_features,) float64 row (single-lead requests)."""
        return _predict_one(self._row(row), *self._args, self.sigmoid)

    def raw_one(self, row: np.ndarray) -> float:
        """The raw score of one (n_features,) float64 row."""
        return _predict_one(self._row(row), *self._args, 0.0)

    def warm_up(self) -> float:
        """Load the kernels from numba's cache (or compile them: first run after an install or a
        change of this file) with the argument types real calls use; returns the seconds it took."""
        started = time.perf_counter()
        self.raw(np.zeros((2, self.n_features), dtype=np.float64))
        self.predict_one(np.zeros(self.n_features, dtype=np.float64))
        self.warm_up_seconds = time.perf_counter() - started
        return self.warm_up_seconds

    def check(self, booster: lgb.Booster, n_rows: int = 64) -> None:
        """Raise ``UnsupportedModel`` unless raw scores and probabilities equal ``booster.predict``'s
        (with this forest's number of trees) bit for bit on probe rows around every threshold and
        category of the trees, in batch and single-row form."""
        probes = probe_rows(self, n_rows=n_rows, seed=0)
        kwargs = {"num_iteration": self.num_trees, "num_threads": 1}
        raw = booster.predict(probes, raw_score=True, **kwargs)
        prob = booster.predict(probes, **kwargs)
        if not np.array_equal(raw, self.raw(probes)):
            raise UnsupportedModel("compiled raw scores differ from Booster.predict on probe rows")
        if not np.array_equal(prob, self.predict(probes)):
            raise UnsupportedModel("compiled probabilities differ from Booster.predict on probe rows")
        singles = np.array([self.predict_one(row) for row in probes[:8]])
        if not np.array_equal(prob[:8], singles):
            raise UnsupportedModel("compiled single-row probabilities differ from Booster.predict")

    # -- internals --------------------------------------------------------------------------------

    def _row(self, row: np.ndarray) -> np.ndarray:
        if row.shape != (self.n_features,):
            raise ValueError(f"expected a row of {self.n_features} features, got shape {row.shape}")
        if row.dtype != np.float64 or not row.flags.c_contiguous or not row.flags.writeable:
            row = np.array(row, dtype=np.float64)  # the kernel is compiled for exactly this type
        return row

    def _transposed(self, matrix: np.ndarray) -> np.ndarray:
        """The (n_features, n) C-contiguous writeable float64 transpose of an (n, n_features) matrix:
        a view for Fortran-ordered input, a copy otherwise (~35 µs per 1,000 rows)."""
        m = np.asarray(matrix)
        if m.ndim != 2 or m.shape[1] != self.n_features:
            raise ValueError(f"expected an (n, {self.n_features}) matrix, got shape {m.shape}")
        xt = m.T
        if xt.dtype != np.float64 or not xt.flags.c_contiguous or not xt.flags.writeable:
            xt = np.array(xt, dtype=np.float64, order="C")
        return xt

    def _run(self, matrix: np.ndarray, sigmoid: float, num_threads: int) -> np.ndarray:
        """The block kernel over all rows, on up to ``num_threads`` threads (contiguous chunks)."""
        xt = self._transposed(matrix)
        n = xt.shape[1]
        out = np.empty(n, dtype=np.float64)
        chunks = 1
        if num_threads > 1 and n >= MIN_PARALLEL_ROWS:
            chunks = max(1, min(num_threads, n // MIN_ROWS_PER_THREAD))
        if chunks == 1:
            _predict_block(xt, 0, n, *self._args, sigmoid, out)
            return out
        bounds = [n * k // chunks for k in range(chunks + 1)]
        # The calling thread does the first chunk itself, the pool the others (nogil kernels).
        futures = _submit(
            [
                (_predict_block, xt, bounds[k], bounds[k + 1], *self._args, sigmoid, out)
                for k in range(1, chunks)
            ]
        )
        _predict_block(xt, bounds[0], bounds[1], *self._args, sigmoid, out)
        for future in futures:
            future.result()
        return out


def probe_rows(forest: CompiledForest, n_rows: int, seed: int) -> np.ndarray:
    """(n_rows, n_features) rows whose values sit on and next to the trees' thresholds (numerical
    features) or are categories of their bitsets plus unseen, negative, fractional, NaN and huge codes
    (categorical features), mixed with NaN, ±0 and near-zero values: rows for every decision rule."""
    flat = forest.flat
    rng = np.random.default_rng(seed)
    special = [np.nan, 0.0, -0.0, 1e-300, -1e-300, 1.0, -1.0, np.inf, -np.inf]
    candidates: list[list[float]] = [list(special) for _ in range(forest.n_features)]
    for j in range(flat.nodes.shape[0]):
        feature, flags = int(flat.nodes[j, _FEATURE]), int(flat.nodes[j, _FLAGS])
        if flags & F_CAT:
            if flags & F_CAT_WIDE:
                n_words = int(flat.nodes[j, _CAT_WORD])
                start = int(flat.nodes[j, _CAT_START])
                bits = sum(int(flat.cat_bits[start + w]) << (32 * w) for w in range(n_words))
            else:
                bits = int(flat.nodes[j, _CAT_WORD]) & ((1 << 64) - 1)
            limit = float(flat.thresholds[j])
            candidates[feature].extend(float(c) for c in range(bits.bit_length()) if bits >> c & 1)
            candidates[feature].extend([limit, limit + 0.5, -0.5, 2.7, 1e10, -3.0, 4294967299.0])
        else:
            thr = float(flat.thresholds[j])
            candidates[feature].extend([thr, np.nextafter(thr, np.inf), np.nextafter(thr, -np.inf)])
    out = np.empty((n_rows, forest.n_features), dtype=np.float64)
    for j, values in enumerate(candidates):
        out[:, j] = rng.choice(np.asarray(values, dtype=np.float64), size=n_rows)
    return out
