"""The per-element error bound, derived from dtype, shape and compute mode (docs/numerics.md).

    |got - ref| <= c_out*u_out*|ref|
                 + s*[2*u_in + phi(K_eff)*(u_acc + u_ref) + [B_red > 1]*B_red*u_out]*S
                 + K_eff*eta

Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1-3.5 (|fl(AB) - AB| <=
gamma_K |A||B|), with the probabilistic sqrt(K) refinement of Higham & Mary (SIAM J. Sci.
Comput. 41(5), 2019), valid for the independent zero-mean rounding errors our zero-mean
inputs produce. `S` is the magnitude product from `reference.Reference.scale`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.cases import Geometry
from harness.dtypes import COMPUTE_U_IN, DType

C_OUT = 3.0
S_FACTOR = 2.0
U_REF = 2.0**-53


def phi(k: int, *, complex_: bool, zero_mean: bool = True) -> float:
    """Growth of the accumulated rounding error with the sum length `k`."""
    if complex_:
        return math.sqrt(2.0) * phi(2 * k + 1, complex_=False, zero_mean=zero_mean)
    if not zero_mean:
        return float(k)
    return min(float(k), 4.0 * math.sqrt(k))


@dataclass(frozen=True)
class BoundParams:
    """Everything the bound of one quantity depends on besides the arrays."""

    k_eff: int  # length of each element's sum
    b_red: int  # broadcast batches summed by a framework that rounds per-batch partials
    # Devices the sum is split across (harness.mesh): each partial has ceil(k_eff/parts)
    # terms, so the accumulation term grows with that length; b_red carries the rounding
    # of the partials and their reduction (docs/sharded.md).
    parts: int = 1


def params(quantity: str, geo: Geometry, *, rounded_partials: bool) -> BoundParams:
    """`K_eff` and `B_red` of a quantity for a case's geometry.

    Y, dX, dW as in docs/numerics.md; the JVP `dY = tX·W + X·tW` is two length-K products, each
    rounded to the dtype before they are added (B_red = 2); the second-order `d2W = Vᴴ·G`
    has dW's geometry, and double-backward graphs build it from elementwise products
    stored in the dtype (torch float16 mat_vec: 8x the plain bound), so B_red >= 2.
    """
    if quantity == "Y":
        return BoundParams(k_eff=geo.k, b_red=1)
    if quantity == "dY":
        return BoundParams(k_eff=geo.k, b_red=2)
    mult = geo.x_multiplicity if quantity == "dX" else geo.w_multiplicity
    inner = geo.n if quantity == "dX" else geo.m
    b_red = mult if rounded_partials else 1
    return BoundParams(k_eff=inner * mult, b_red=max(b_red, 2) if quantity == "d2W" else b_red)


def bound(
    ref: np.ndarray,
    scale: np.ndarray,
    dtype: DType,
    p: BoundParams,
    compute: str = "ieee",
) -> np.ndarray:
    """Allowed |got - ref| per element."""
    u_in = COMPUTE_U_IN[compute] if dtype.name in ("float32", "complex64") else 0.0
    growth = (
        2.0 * u_in
        + phi(-(-p.k_eff // max(p.parts, 1)), complex_=dtype.is_complex) * (dtype.u_acc + U_REF)
        + (p.b_red * dtype.u_out if p.b_red > 1 else 0.0)
    )
    out: np.ndarray = (
        C_OUT * dtype.u_out * np.abs(ref) + S_FACTOR * growth * scale + p.k_eff * dtype.eta
    )
    return out
