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
from collections.abc import Callable, Iterable, Sequence
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


def matmul_grads(
    x: np.ndarray, w: np.ndarray, g: np.ndarray,
    each: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`(dX, dW)` alone: the backward pass, with no forward product. `each`, if given, is
    applied to every batch's product before the broadcast reduction: a model of a kernel
    that rounds its partial products to the dtype (benchmarks/bias_null.py)."""
    keep = each or (lambda a: a)
    x2 = x[None, :] if x.ndim == 1 else x
    w2 = w[:, None] if w.ndim == 1 else w
    g2 = g
    if x.ndim == 1:
        g2 = np.expand_dims(g2, -2 if w.ndim > 1 else 0)
    if w.ndim == 1:
        g2 = np.expand_dims(g2, -1)
    dx = sum_to_shape(keep(np.matmul(g2, _mH(w2))), x2.shape)
    dw = sum_to_shape(keep(np.matmul(_mH(x2), g2)), w2.shape)
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

    Each term's B, then A, is streamed once, a block of rows at a time: the values in
    float64, the magnitudes in float32 where that is exact enough (`_narrow`): O(size) work
    and memory besides the row and column products.
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
        got = _sampled_term(a, b, rows, cols, right, narrow=_narrow(a))
        if got is None:  # a float32 magnitude overflowed: the term again in float64
            got = _sampled_term(a, b, rows, cols, right, narrow=False)
        assert got is not None
        for name, part in parts.items():
            part.append(got[name])
        norm_pairs.append((got["a_norm"], got["b_norm"]))
    p, q = t.shape[-2], t.shape[-1]
    batch, k = t.shape[:-2], right.shape[1]
    shapes = {"rows": (*batch, len(rows), q), "rows_mag": (*batch, len(rows), q),
              "cols": (*batch, p, len(cols)), "cols_mag": (*batch, p, len(cols)),
              "right": (*batch, p, k), "right_mag": (*batch, p, 1)}
    out = {name: _reduce(ps, shapes[name]) for name, ps in parts.items()}
    return Sampled(**out, norms=tuple(norm_pairs))


# The smallest float32 subnormal: the absolute error a float32 product or sum can make
# where it underflows (the standard model with gradual underflow, Higham §2.1).
_ETA32 = 2.0**-149


def _narrow(a: np.ndarray) -> bool:
    """Whether `a`'s magnitudes are float32 values (or within one rounding of |z| for
    complex64), so that their sums may run in float32 (docs/checking-at-scale.md)."""
    return a.dtype == np.complex64 or (a.dtype.kind != "c" and a.dtype.itemsize <= 4)


def _mag32(a: np.ndarray) -> np.ndarray:
    """|a| in float32 (exact for real inputs of at most 32 bits; one rounding for complex64)."""
    return np.abs(a) if a.dtype in (np.float32, np.complex64) else np.abs(
        a.astype(np.float32))


class _Upper:
    """Sums of non-negative float32 terms made upper bounds of the exact sums again.

    A float32 sum of n products of non-negative values, each rounded at most n times by a
    factor >= 1 - u (u = 2⁻²⁴), with an absolute error of at most `_ETA32` per operation
    where it underflows, is >= (s - n·η)·(1 - u)ⁿ >= (s - n·η)/(1 + gamma_n) with
    gamma_n = n·u/(1 - n·u); so `(ŝ + n·η)·(1 + gamma_n)` >= s."""

    def __init__(self, n: int) -> None:
        u = 2.0**-24
        self.n, self.ok = n, n * u < 0.5
        self.factor = 1.0 + n * u / (1.0 - n * u) if self.ok else math.inf
        self.slack = n * _ETA32

    def __call__(self, s: np.ndarray) -> np.ndarray:
        out = s.astype(np.float64)
        out += self.slack
        out *= self.factor
        return out


def _sampled_term(a: np.ndarray, b: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  right: np.ndarray, narrow: bool) -> dict[str, np.ndarray] | None:
    """One term A·B of `sampled`: rows, columns, projections, magnitudes and norms (before
    the broadcast reduction). With `narrow`, the magnitude products run in float32 and are
    made upper bounds (`_Upper`); None if one of them overflowed."""
    k = a.shape[-1]
    b_blocks, a_blocks = list(blocks(b)), list(blocks(a))
    # every magnitude sum: K products, one rounding per block partial, |z| and |b·1| rounded
    up = _Upper(k + max(len(a_blocks), len(b_blocks)) + 8)
    narrow = narrow and up.ok
    mag_of = _mag32 if narrow else (lambda x: np.abs(_hi(x)))
    # fancy indexing, not np.take: take copies a transposed operand (Wᴴ) whole first
    a_rows = _hi(a[..., rows, :])
    a_rows_mag = mag_of(a[..., rows, :])
    b_cols = _hi(b[..., :, cols])
    b_cols_mag = mag_of(b[..., :, cols])
    rows_val = rows_mag = b_sq = None
    br, bm = [], []
    for s in b_blocks:  # the pass over B
        lo = b[..., s, :]
        blk = _hi(lo)
        mag = mag_of(lo) if narrow else np.abs(blk)
        br.append(np.matmul(blk, right))
        bm.append(np.sum(mag, axis=-1, keepdims=True, dtype=np.float64))
        rows_val = _plus(rows_val, np.matmul(a_rows[..., :, s], blk))
        rows_mag = _plus(rows_mag, np.matmul(a_rows_mag[..., :, s], mag).astype(np.float64))
        b_sq = _plus(b_sq, np.einsum("...kq,...kq->...q", mag, mag).astype(np.float64))
    b_r, b_m = np.concatenate(br, axis=-2), np.concatenate(bm, axis=-2)
    # the columns and the projection in one product each: [B[:, J] | B·r], [|B|[:, J] | |B|·1]
    rhs = np.concatenate([b_cols, np.broadcast_to(b_r, (*b_cols.shape[:-1], b_r.shape[-1]))],
                         axis=-1)
    rhs_mag = np.concatenate([b_cols_mag, np.broadcast_to(
        b_m, (*b_cols_mag.shape[:-1], 1)).astype(b_cols_mag.dtype)], axis=-1)
    val_parts, mag_parts, a_sq = [], [], []
    for s in a_blocks:  # the pass over A
        lo = a[..., s, :]
        blk = _hi(lo)
        mag = mag_of(lo) if narrow else np.abs(blk)
        val_parts.append(np.matmul(blk, rhs))
        mag_parts.append(np.matmul(mag, rhs_mag))
        a_sq.append(np.einsum("...pk,...pk->...p", mag, mag).astype(np.float64))
    vals, mags = np.concatenate(val_parts, axis=-2), np.concatenate(mag_parts, axis=-2)
    assert rows_val is not None and rows_mag is not None and b_sq is not None
    a_sq_all = np.concatenate(a_sq, axis=-1)
    if narrow:
        if not (np.isfinite(mags).all() and np.isfinite(rows_mag).all()
                and np.isfinite(a_sq_all).all() and np.isfinite(b_sq).all()):
            return None
        rows_mag, mags = up(rows_mag), up(mags)
        a_sq_all, b_sq = up(a_sq_all), up(b_sq)
    nc = len(cols)
    return {"rows": rows_val, "rows_mag": rows_mag,
            "cols": vals[..., :nc], "cols_mag": mags[..., :nc].astype(np.float64),
            "right": vals[..., nc:], "right_mag": mags[..., nc:].astype(np.float64),
            "a_norm": np.sqrt(a_sq_all), "b_norm": np.sqrt(b_sq)}


def _plus(total: np.ndarray | None, part: np.ndarray) -> np.ndarray:
    return part if total is None else total + part


def weighted_norms(weight: np.ndarray, norms: Sequence[tuple[np.ndarray, np.ndarray]]
                   ) -> tuple[float, float]:
    """`(Σ_terms Σ_ij a_i·|w_ij|·b_j, Σ|w|)` for `weight` (..., P, Q) and per term the row
    norms `a` (..., P) of A and column norms `b` (..., Q) of B (`Sampled.norms`), batch dims
    broadcast and summed: by Cauchy-Schwarz an upper bound of `Σ_ij |w_ij|·S_ij` that
    needs no product. `|w|` is taken in float64/complex128 a block of rows at a time (the
    weight may be a mapped file)."""
    total, w_sum = 0.0, 0.0
    wide = np.complex128 if weight.dtype.kind == "c" else np.float64
    for rows in blocks(weight):
        blk = np.abs(weight[..., rows, :].astype(wide))
        w_sum += float(blk.sum())
        for a, b in norms:
            total += float(np.sum(np.matmul(np.matmul(a[..., None, rows], blk),
                                            b[..., :, None])))
    return total, w_sum


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
