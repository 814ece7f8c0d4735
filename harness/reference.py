"""The only place the matmul derivative formulas live.

For `Y = X @ W` and upstream gradient `G = dL/dY` (numpy `matmul` semantics):
    dX = G · Wᴴ   summed back to X's shape over the batch dims X was broadcast along
    dW = Xᴴ · G   summed back to W's shape likewise
A 1-D `X (K,)` is promoted to `(1, K)` and a 1-D `W (K,)` to `(K, 1)`; the added dims are
removed from `Y`, `G`, `dX` and `dW` again. For real dtypes ᴴ is the plain transpose; for
complex ones this is the PyTorch/TensorFlow convention (∂L/∂Re + i·∂L/∂Im of a real loss).

`matmul_vjp` works in whatever dtype it is given: the reference calls it in
float64/complex128 on the rounded inputs, and the numpy adapter calls it in the dtype under
test (numpy has no autodiff: its backward *is* this formula, which makes it the baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.cases import Inputs, Tangents

QUANTITIES: tuple[str, ...] = ("Y", "dX", "dW")  # the forward product and its gradients
# Forward mode `dY = tX·W + X·tW`; the adjoint identity ⟨G, J·v⟩ = ⟨Jᴴ·G, v⟩ between a
# framework's own JVP and VJP; the second-order `d/dW Re⟨dX, V⟩ = Vᴴ·G`.
EXTRA_QUANTITIES: tuple[str, ...] = ("dY", "adjoint", "d2W")


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


@dataclass(frozen=True)
class Reference:
    """Exact-ish results (float64/complex128) and the magnitude sums the bound scales with.

    `scale[q]` is `|X|·|W|` for Y, `|G|·|W|ᵀ` for dX and `|X|ᵀ·|G|` for dW, with the same
    broadcast reductions: the `S` of the Higham bound in docs/numerics.md.
    """

    values: dict[str, np.ndarray]
    scale: dict[str, np.ndarray]


def _hi(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.complex128 if a.dtype.kind == "c" else np.float64)


def reference(inputs: Inputs, tangents: Tangents | None = None) -> Reference:
    """The float64/complex128 reference computed from the same rounded inputs.

    With `tangents`, also `dY` (forward mode) and `d2W` (second order). The second-order
    closed form is dW's formula with V in place of X: h(W) = Re⟨G·Wᴴ, V⟩ is linear in
    conj(W), and its gradient (∂/∂Re W + i·∂/∂Im W) is Vᴴ·G, broadcast-reduced to W.
    """
    x, w, g = (_hi(a) for a in (inputs.x, inputs.w, inputs.g))
    ax, aw, ag = np.abs(x), np.abs(w), np.abs(g)
    values = dict(zip(QUANTITIES, matmul_vjp(x, w, g), strict=True))
    scale = dict(zip(QUANTITIES, matmul_vjp(ax, aw, ag), strict=True))
    if tangents is not None:
        tx, tw, v = (_hi(a) for a in (tangents.tx, tangents.tw, tangents.v))
        values["dY"] = np.matmul(tx, w) + np.matmul(x, tw)
        scale["dY"] = np.matmul(np.abs(tx), aw) + np.matmul(ax, np.abs(tw))
        values["d2W"] = matmul_vjp(v, w, g)[2]
        scale["d2W"] = matmul_vjp(np.abs(v), aw, ag)[2]
    return Reference(values=values, scale=scale)
