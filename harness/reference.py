"""The only place the matmul derivative formulas live.

For `Y = X @ W` and upstream gradient `G = dL/dY` (numpy `matmul` semantics):
    dX = G · Wᴴ   summed back to X's shape over the batch dims X was broadcast along
    dW = Xᴴ · G   summed back to W's shape likewise
A 1-D `X (K,)` is promoted to `(1, K)` and a 1-D `W (K,)` to `(K, 1)`; the added dims are
removed from `Y`, `G`, `dX` and `dW` again. For real dtypes ᴴ is the plain transpose; for
complex ones this is the PyTorch/TensorFlow convention (∂L/∂Re + i·∂L/∂Im of a real loss).

`matmul_vjp` works in whatever dtype it is given: the numpy adapter calls it in the dtype
under test (numpy has no autodiff: its backward *is* this formula, which makes it the
baseline).

Every quantity the harness checks is a sum of products `A·B` (`terms`), broadcast-reduced
to its operand's shape: Y = X·W, dX = G·Wᴴ, dW = Xᴴ·G, dY = tX·W + X·tW, d2W = Vᴴ·G. The
reference evaluates exactly those products (one per term, no more), in float64/complex128
from the rounded inputs, and the same products on magnitudes `|A|·|B|` for the bound's `S`.
For the sampled check (harness/sampled.py) it evaluates selected rows and columns of them
and their projections `Q·r = A·(B·r)`, which cost O(size), not a product.
docs/checking-at-scale.md derives what each costs and how exact it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from harness.cases import Inputs, Tangents
from harness.dtypes import widen
from harness.runfiles import QUANTITIES as ALL_QUANTITIES

QUANTITIES: tuple[str, ...] = ALL_QUANTITIES[:3]  # the forward product and its gradients
# Forward mode `dY = tX·W + X·tW`; the adjoint identity ⟨G, J·v⟩ = ⟨Jᴴ·G, v⟩ between a
# framework's own JVP and VJP; the second-order `d/dW Re⟨dX, V⟩ = Vᴴ·G`.
EXTRA_QUANTITIES: tuple[str, ...] = ALL_QUANTITIES[3:]


def _mH(a: np.ndarray) -> np.ndarray:
    """Conjugate transpose of the last two dims (a view for real dtypes: no copy)."""
    t = np.swapaxes(a, -1, -2)
    return t.conj() if np.iscomplexobj(t) else t


def sum_to_shape(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `a` over the leading dims `shape` lacks and the dims where `shape` has size 1."""
    lead = a.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and a.shape[lead + i] != 1
    )
    out = a.sum(axis=axes, keepdims=True) if axes else a
    return out.reshape(shape)


def matmul_vjp(
    x: np.ndarray, w: np.ndarray, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(Y, dX, dW)` of `Y = X @ W` for upstream gradient `g`, in the inputs' dtype."""
    return (np.matmul(x, w), *matmul_grads(x, w, g))


def matmul_grads(x: np.ndarray, w: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(dX, dW)` alone: the backward pass, with no forward product."""
    x2 = x[None, :] if x.ndim == 1 else x
    w2 = w[:, None] if w.ndim == 1 else w
    g2 = g
    if x.ndim == 1:
        g2 = np.expand_dims(g2, -2 if w.ndim > 1 else 0)
    if w.ndim == 1:
        g2 = np.expand_dims(g2, -1)
    dx = sum_to_shape(np.matmul(g2, _mH(w2)), x2.shape)
    dw = sum_to_shape(np.matmul(_mH(x2), g2), w2.shape)
    return dx.reshape(x.shape), dw.reshape(w.shape)


Term = tuple[np.ndarray, np.ndarray]  # (A, B): one product A·B of a quantity


@dataclass(frozen=True)
class Terms:
    """A quantity as a sum of products, before the broadcast reduction.

    `terms` hold promoted (at least 2-D) operands, `shape` is the promoted shape the sum is
    reduced to, `final` the quantity's own shape (1-D operands' added dims removed) and
    `k_sum` the length of each element's sum (inner dim × the batches summed into it).
    """

    terms: tuple[Term, ...]
    shape: tuple[int, ...]
    final: tuple[int, ...]

    @property
    def k_sum(self) -> int:
        a = self.terms[0][0]
        batch = math.prod(np.broadcast_shapes(*(t[0].shape[:-2] for t in self.terms),
                                              *(t[1].shape[:-2] for t in self.terms)))
        kept = math.prod(self.shape[:-2])
        return int(a.shape[-1]) * (batch // kept if kept else 0)


def _promote(inputs: Inputs, tangents: Tangents | None) -> dict[str, np.ndarray]:
    """X, W, G (and tX, tW, V) with numpy's 1-D promotion: X (K,) -> (1, K), W (K,) -> (K, 1)."""
    x, w, g = inputs.x, inputs.w, inputs.g
    out = {"x": x[None, :] if x.ndim == 1 else x, "w": w[:, None] if w.ndim == 1 else w}
    if x.ndim == 1:
        g = np.expand_dims(g, -2 if w.ndim > 1 else 0)
    if w.ndim == 1:
        g = np.expand_dims(g, -1)
    out["g"] = g
    if tangents is not None:
        tx, tw, v = tangents.tx, tangents.tw, tangents.v
        out["tx"] = tx[None, :] if tx.ndim == 1 else tx
        out["tw"] = tw[:, None] if tw.ndim == 1 else tw
        out["v"] = v[None, :] if v.ndim == 1 else v
    return out


def terms(quantity: str, inputs: Inputs, tangents: Tangents | None = None) -> Terms:
    """The products whose broadcast-reduced sum is `quantity` (Y, dX, dW, dY or d2W).

    The formulas of every quantity are here and nowhere else. d2W is dW's formula with V in
    place of X: h(W) = Re⟨G·Wᴴ, V⟩ is linear in conj(W), and its gradient
    (∂/∂Re W + i·∂/∂Im W) is Vᴴ·G, broadcast-reduced to W.
    """
    p = _promote(inputs, tangents if quantity in ("dY", "d2W") else None)
    x, w, g = p["x"], p["w"], p["g"]
    y2 = g.shape
    if quantity == "Y":
        return Terms(((x, w),), y2, np.shape(inputs.g))
    if quantity == "dX":
        return Terms(((g, _mH(w)),), x.shape, inputs.x.shape)
    if quantity == "dW":
        return Terms(((_mH(x), g),), w.shape, inputs.w.shape)
    if tangents is None:
        raise ValueError(f"{quantity} needs the tangents; received none")
    if quantity == "dY":
        return Terms(((p["tx"], w), (x, p["tw"])), y2, np.shape(inputs.g))
    if quantity == "d2W":
        return Terms(((_mH(p["v"]), g),), w.shape, inputs.w.shape)
    raise ValueError(f"unknown quantity {quantity!r}; allowed: {', '.join(PRODUCTS)}")


PRODUCTS: tuple[str, ...] = ("Y", "dX", "dW", "dY", "d2W")  # the quantities with a formula


_hi = widen  # `a` in float64 or complex128 (no copy when it already is)


def _reduce(parts: Iterable[np.ndarray], shape: Sequence[int]) -> np.ndarray:
    total: np.ndarray | None = None
    for part in parts:
        r = sum_to_shape(part, tuple(shape))
        total = r if total is None else total + r
    assert total is not None
    return total


# Magnitude products run in float32 where that is exact enough: all terms are >= 0, so
# the float32 sum is within gamma_n = n·u/(1 - n·u) (u = 2⁻²⁴, n terms and roundings) of the
# exact one, and multiplying by 1 + gamma_n makes it an upper bound again. Outside these
# magnitudes (overflow or underflow in float32) the product runs in float64.
_F32_RANGE = (2.0**-60, 2.0**60)


def _f32_ok(arrays: Sequence[np.ndarray]) -> bool:
    lo, hi = _F32_RANGE
    for a in arrays:
        if a.size == 0:
            continue
        big = float(np.max(a))
        small = float(np.min(a, where=a > 0, initial=np.inf))
        if not math.isfinite(big) or big > hi or small < lo:
            return False
    return True


def magnitudes(t: Terms) -> np.ndarray:
    """`S = Σ |A|·|B|`, broadcast-reduced: an upper bound of each element's Σ|a·b| (float64)."""
    pairs = [(np.abs(a), np.abs(b)) for a, b in t.terms]
    n = t.k_sum + 3  # the sum's terms, and the rounding of |a| and |b| to float32
    u = 2.0**-24
    if n * u < 0.5 and _f32_ok([m for pair in pairs for m in pair]):
        parts = (np.matmul(a.astype(np.float32), b.astype(np.float32)) for a, b in pairs)
        s = _reduce(parts, t.shape).astype(np.float64)
        s *= 1.0 + n * u / (1.0 - n * u)
        return s
    return _reduce((np.matmul(_hi(a), _hi(b)) for a, b in pairs), t.shape)


def values(t: Terms) -> np.ndarray:
    """`Σ A·B` broadcast-reduced, in float64/complex128."""
    return _reduce((np.matmul(_hi(a), _hi(b)) for a, b in t.terms), t.shape)


# The sampled products stream the operands through float64 in blocks of about this many
# bytes, so an 8192 x 8192 float32 operand is never held whole in float64.
BLOCK_BYTES = 32 * 2**20


def blocks(a: np.ndarray) -> Iterable[slice]:
    """Slices of `a`'s second-to-last axis whose float64 copies take about BLOCK_BYTES."""
    n = a.shape[-2]
    per = max(1, a.size // max(n, 1)) * 16
    step = max(1, BLOCK_BYTES // per)
    return (slice(i, min(i + step, n)) for i in range(0, n, step))


@dataclass(frozen=True)
class Sampled:
    """Rows, columns and projections of one quantity, exact in float64 (see `sampled`).

    `right` is `Q·R` (..., P, p) and `right_mag` `S·1` (..., P, 1); `norms` per term the
    2-norms of A's rows and of B's columns (Cauchy-Schwarz: `(|A|·|B|)_ij <= ‖A_i,:‖·‖B_:,j‖`).
    """

    rows: np.ndarray
    rows_mag: np.ndarray
    cols: np.ndarray
    cols_mag: np.ndarray
    right: np.ndarray
    right_mag: np.ndarray
    norms: tuple[tuple[np.ndarray, np.ndarray], ...]


def sampled(t: Terms, rows: np.ndarray, cols: np.ndarray, right: np.ndarray) -> Sampled:
    """Quantity `t`'s `rows` and `cols` (values and magnitudes S) and its projections on
    the columns of `right` (Q, p), with `S·1`.

    Each term's B, then A, is streamed once, a block of rows at a time in float64: O(size)
    work and memory besides the row and column products.
    """
    if any(a.size == 0 or b.size == 0 for a, b in t.terms):  # degenerate: from the whole
        full, mag = _hi(values(t)), magnitudes(t)
        return Sampled(
            rows=np.take(full, rows, -2), rows_mag=np.take(mag, rows, -2),
            cols=np.take(full, cols, -1), cols_mag=np.take(mag, cols, -1),
            right=np.matmul(full, right), right_mag=np.sum(mag, axis=-1, keepdims=True),
            norms=tuple((np.zeros(a.shape[:-1]), np.zeros((*b.shape[:-2], b.shape[-1])))
                        for a, b in t.terms))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in Sampled.__dataclass_fields__
                                          if k != "norms"}
    norm_pairs = []
    for a, b in t.terms:
        # fancy indexing, not np.take: take copies a transposed operand (Wᴴ) whole first
        a_rows = _hi(a[..., rows, :])
        a_rows_mag = np.abs(a_rows)
        b_cols = _hi(b[..., :, cols])
        b_cols_mag = np.abs(b_cols)
        acc: dict[str, np.ndarray] = {}
        br, bm = [], []
        for s in blocks(b):  # the pass over B
            blk = _hi(b[..., s, :])
            mag = np.abs(blk)
            br.append(np.matmul(blk, right))
            bm.append(mag.sum(axis=-1, keepdims=True))
            _add(acc, "rows", np.matmul(a_rows[..., :, s], blk))
            _add(acc, "rows_mag", np.matmul(a_rows_mag[..., :, s], mag))
            _add(acc, "b_sq", np.sum(mag * mag, axis=-2))
        b_r, b_m = np.concatenate(br, axis=-2), np.concatenate(bm, axis=-2)
        c_val, c_mag, q_val, q_mag, a_sq = [], [], [], [], []
        for s in blocks(a):  # the pass over A
            blk = _hi(a[..., s, :])
            mag = np.abs(blk)
            c_val.append(np.matmul(blk, b_cols))
            c_mag.append(np.matmul(mag, b_cols_mag))
            q_val.append(np.matmul(blk, b_r))
            q_mag.append(np.matmul(mag, b_m))
            a_sq.append(np.sum(mag * mag, axis=-1))
        parts["rows"].append(acc["rows"])
        parts["rows_mag"].append(acc["rows_mag"])
        parts["cols"].append(np.concatenate(c_val, axis=-2))
        parts["cols_mag"].append(np.concatenate(c_mag, axis=-2))
        parts["right"].append(np.concatenate(q_val, axis=-2))
        parts["right_mag"].append(np.concatenate(q_mag, axis=-2))
        norm_pairs.append((np.sqrt(np.concatenate(a_sq, axis=-1)), np.sqrt(acc["b_sq"])))
    p, q = t.shape[-2], t.shape[-1]
    batch, k = t.shape[:-2], right.shape[1]
    shapes = {"rows": (*batch, len(rows), q), "rows_mag": (*batch, len(rows), q),
              "cols": (*batch, p, len(cols)), "cols_mag": (*batch, p, len(cols)),
              "right": (*batch, p, k), "right_mag": (*batch, p, 1)}
    out = {name: _reduce(ps, shapes[name]) for name, ps in parts.items()}
    return Sampled(**out, norms=tuple(norm_pairs))


def _add(acc: dict[str, np.ndarray], name: str, part: np.ndarray) -> None:
    acc[name] = acc[name] + part if name in acc else part


def matvec(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """`a @ v` in float64/complex128, `a` converted a block of rows at a time."""
    out = [np.matmul(_hi(a[..., s, :]), v) for s in blocks(a)]
    return np.concatenate(out, axis=-2) if out else np.matmul(_hi(a), v)


def vecmat(v: np.ndarray, a: np.ndarray) -> np.ndarray:
    """`v @ a` in float64/complex128, `a` converted a block of rows at a time."""
    total: np.ndarray | None = None
    for s in blocks(a):
        part = np.matmul(v[..., :, s], _hi(a[..., s, :]))
        total = part if total is None else total + part
    return total if total is not None else np.matmul(v, _hi(a))


@dataclass(frozen=True)
class Reference:
    """Exact-ish results (float64/complex128) and the magnitude sums the bound scales with.

    `scale[q]` is `|X|·|W|` for Y, `|G|·|W|ᵀ` for dX and `|X|ᵀ·|G|` for dW (and likewise
    for dY and d2W), with the same broadcast reductions: the `S` of the Higham bound
    (docs/numerics.md).
    """

    values: dict[str, np.ndarray]
    scale: dict[str, np.ndarray]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for d in (self.values, self.scale) for a in d.values())


def reference(inputs: Inputs, tangents: Tangents | None = None,
              quantities: Iterable[str] | None = None) -> Reference:
    """The float64/complex128 reference computed from the same rounded inputs.

    `quantities` (default Y, dX and dW, plus dY and d2W when `tangents` are given): each
    costs one float64 product per term for its value and one (float32 where exact enough)
    for its magnitudes; nothing else is computed.
    """
    wanted = tuple(quantities) if quantities is not None else (
        QUANTITIES + (("dY", "d2W") if tangents is not None else ()))
    vals: dict[str, np.ndarray] = {}
    scale: dict[str, np.ndarray] = {}
    for q in wanted:
        t = terms(q, inputs, tangents)
        vals[q] = values(t).reshape(t.final)
        scale[q] = magnitudes(t).reshape(t.final)
    return Reference(values=vals, scale=scale)
