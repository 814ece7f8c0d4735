"""The dtypes under test: names, numpy types, and the unit roundoffs the tolerance needs.

Values are those of docs/numerics.md: `u_out` is the storage dtype's unit roundoff,
`u_acc` the accumulator's (float16/bfloat16 GEMMs accumulate in float32), `eta` the
underflow term (smallest subnormal of the accumulator, or of bfloat16 for its sums).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class DType:
    name: str
    numpy: np.dtype[np.generic]
    u_out: float
    u_acc: float
    eta: float

    @property
    def is_complex(self) -> bool:
        return self.numpy.kind == "c"

    @property
    def nominal_bits(self) -> int:
        """Significand bits, the implicit one included: 24 for float32 (u = 2⁻²⁴)."""
        return round(-math.log2(self.u_out))


DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        DType("float16", np.dtype(np.float16), 2.0**-11, 2.0**-24, 2.0**-24),
        DType("bfloat16", np.dtype(ml_dtypes.bfloat16), 2.0**-8, 2.0**-24, 2.0**-133),
        DType("float32", np.dtype(np.float32), 2.0**-24, 2.0**-24, 2.0**-149),
        DType("float64", np.dtype(np.float64), 2.0**-53, 2.0**-53, 2.0**-1074),
        DType("complex64", np.dtype(np.complex64), 2.0**-24, 2.0**-24, 2.0**-149),
        DType("complex128", np.dtype(np.complex128), 2.0**-53, 2.0**-53, 2.0**-1074),
    )
}

# Effective unit roundoff of the *inputs* of a float32 product in each compute mode
# (docs/numerics.md): "ieee" is full float32; TF32 keeps 10 mantissa bits (truncating hardware);
# one bfloat16 pass keeps 8; three bfloat16 passes ("bf16x3") about 16.
COMPUTE_U_IN: dict[str, float] = {
    "ieee": 0.0,
    "tf32": 2.0**-10,
    "bf16": 2.0**-8,
    "bf16x3": 2.0**-16,
}

DEVICES: tuple[str, ...] = ("cpu", "gpu")


def widen(a: np.ndarray) -> np.ndarray:
    """`a` in float64 or complex128, the reference's precision (no copy when it already is).

    By the array's kind, not a `DType`: the reference, the judge and the selftest widen
    arrays whatever dtype produced them (a framework may return another than it was given).
    """
    return np.asarray(a, dtype=np.complex128 if a.dtype.kind == "c" else np.float64)


def get(name: str) -> DType:
    """The DType called `name`; KeyError names the allowed ones."""
    try:
        return DTYPES[name]
    except KeyError:
        raise KeyError(f"unknown dtype {name!r}; allowed: {', '.join(DTYPES)}") from None
