"""The benchmark shape catalogue: square GEMMs and DeepBench's training GEMMs.

A shape id is `"MxKxN"`: the batch-free product `Y (M x N) = X (M x K) @ W (K x N)`. Ids are
strings because asv reads a tuple parameter value as several parameters; the report
and the benchmarks map them back with `parse_shape`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

PASSES: tuple[str, ...] = ("forward", "backward", "forward_backward")

# FLOPs of each pass in units of the forward product's 2*M*K*N: the backward pass is two
# products of the same size (dX = G @ W^T, dW = X^T @ G).
PASS_PRODUCTS: dict[str, int] = {"forward": 1, "backward": 2, "forward_backward": 3}

SQUARE: tuple[str, ...] = tuple(f"{s}x{s}x{s}" for s in (64, 128, 256, 512, 1024, 2048))

ROLES: tuple[str, ...] = ("forward", "dX", "dW")


@dataclass(frozen=True)
class DeepBenchGemm:
    """One DeepBench training GEMM as the fully connected layer `Y = X @ W` it comes from.

    `batch`, `in_`, `out` are the layer's row-major sizes (X is batch x in, W is in x out);
    `role` says which of the layer's three products the GEMM is.
    """

    role: str  # "forward" (X @ W), "dX" (G @ W^T) or "dW" (X^T @ G)
    batch: int
    in_: int
    out: int

    @property
    def mkn(self) -> tuple[int, int, int]:
        """`(M, K, N)` of the product this GEMM computes."""
        if self.role == "forward":
            return self.batch, self.in_, self.out
        if self.role == "dX":
            return self.batch, self.out, self.in_
        return self.in_, self.batch, self.out

    @property
    def shape_id(self) -> str:
        return shape_id(*self.mkn)


# DeepBench's training GEMMs, all 160 in its order: `training_set` of
# https://github.com/baidu-research/DeepBench/blob/master/code/kernels/gemm_problems.h
# DeepBench lists cuBLAS column-major `(m, n, k, a_t, b_t)` for a layer computed as
# Y^T (out x batch) = W^T . X^T; read that way its transpose flags are the roles: NN is the
# forward pass (m=out, n=batch, k=in), TN the input gradient (m=in, n=batch, k=out), NT the
# weight gradient (m=out, n=in, k=batch). Stored here as (role, batch, in, out), row-major;
# in every case the row-major product is M=n, K=k, N=m, so the flags need not be kept.
_DEEPBENCH_TRAINING: tuple[tuple[str, int, int, int], ...] = (
    ("forward", 16, 1760, 1760), ("forward", 32, 1760, 1760), ("forward", 64, 1760, 1760),
    ("forward", 128, 1760, 1760), ("forward", 7000, 1760, 1760), ("forward", 16, 2048, 2048),
    ("forward", 32, 2048, 2048), ("forward", 64, 2048, 2048), ("forward", 128, 2048, 2048),
    ("forward", 7000, 2048, 2048), ("forward", 16, 2560, 2560), ("forward", 32, 2560, 2560),
    ("forward", 64, 2560, 2560), ("forward", 128, 2560, 2560), ("forward", 7000, 2560, 2560),
    ("forward", 16, 4096, 4096), ("forward", 32, 4096, 4096), ("forward", 64, 4096, 4096),
    ("forward", 128, 4096, 4096), ("forward", 7000, 4096, 4096), ("dX", 16, 1760, 1760),
    ("dX", 32, 1760, 1760), ("dX", 64, 1760, 1760), ("dX", 128, 1760, 1760),
    ("dX", 7000, 1760, 1760), ("dX", 16, 2048, 2048), ("dX", 32, 2048, 2048),
    ("dX", 64, 2048, 2048), ("dX", 128, 2048, 2048), ("dX", 7000, 2048, 2048),
    ("dX", 16, 2560, 2560), ("dX", 32, 2560, 2560), ("dX", 64, 2560, 2560),
    ("dX", 128, 2560, 2560), ("dX", 7000, 2560, 2560), ("dX", 16, 4096, 4096),
    ("dX", 32, 4096, 4096), ("dX", 64, 4096, 4096), ("dX", 128, 4096, 4096),
    ("dX", 7000, 4096, 4096), ("dW", 1760, 7133, 1760), ("dW", 2048, 7133, 2048),
    ("dW", 2560, 7133, 2560), ("dW", 4096, 7133, 4096), ("forward", 9124, 1760, 5124),
    ("forward", 8457, 1760, 35), ("forward", 9124, 2048, 5124), ("forward", 8457, 2048, 35),
    ("forward", 9124, 2560, 5124), ("forward", 8457, 2560, 35), ("forward", 9124, 4096, 5124),
    ("forward", 8457, 4096, 35), ("dX", 9124, 5124, 1760), ("dX", 8457, 35, 1760),
    ("dX", 9124, 5124, 2048), ("dX", 8457, 35, 2048), ("dX", 9124, 5124, 2560),
    ("dX", 8457, 35, 2560), ("dX", 9124, 5124, 4096), ("dX", 8457, 35, 4096),
    ("forward", 16, 2560, 7680), ("forward", 32, 2560, 7680), ("forward", 64, 2560, 7680),
    ("forward", 128, 2560, 7680), ("dX", 16, 7680, 2560), ("dX", 32, 7680, 2560),
    ("dX", 64, 7680, 2560), ("dX", 128, 7680, 2560), ("forward", 16, 1024, 3072),
    ("forward", 32, 1024, 3072), ("forward", 64, 1024, 3072), ("forward", 128, 1024, 3072),
    ("dX", 16, 3072, 1024), ("dX", 32, 3072, 1024), ("dX", 64, 3072, 1024),
    ("dX", 128, 3072, 1024), ("dW", 1024, 7435, 3072), ("dW", 2560, 5481, 7680),
    ("forward", 8, 500000, 512), ("forward", 8, 500000, 1024), ("forward", 16, 500000, 512),
    ("forward", 16, 500000, 1024), ("dX", 8, 512, 500000), ("dX", 8, 1024, 500000),
    ("dX", 16, 512, 500000), ("dX", 16, 1024, 500000), ("forward", 700, 512, 1024),
    ("dX", 700, 1024, 512), ("forward", 24000, 2560, 7680), ("forward", 24000, 2048, 6144),
    ("forward", 24000, 1536, 4608), ("forward", 24000, 2816, 8448), ("forward", 24000, 1024, 3072),
    ("forward", 48000, 2560, 7680), ("forward", 48000, 2048, 6144), ("forward", 48000, 1536, 4608),
    ("forward", 48000, 2816, 8448), ("forward", 48000, 1024, 3072), ("dX", 24000, 7680, 2560),
    ("dX", 24000, 6144, 2048), ("dX", 24000, 4608, 1536), ("dX", 24000, 8448, 2816),
    ("dX", 24000, 3072, 1024), ("dX", 48000, 7680, 2560), ("dX", 48000, 6144, 2048),
    ("dX", 48000, 4608, 1536), ("dX", 48000, 8448, 2816), ("dX", 48000, 3072, 1024),
    ("forward", 16, 2048, 6144), ("forward", 16, 1536, 4608), ("forward", 16, 2816, 8448),
    ("forward", 32, 2048, 6144), ("forward", 32, 1536, 4608), ("forward", 32, 2816, 8448),
    ("dX", 16, 6144, 2048), ("dX", 16, 4608, 1536), ("dX", 16, 8448, 2816), ("dX", 32, 6144, 2048),
    ("dX", 32, 4608, 1536), ("dX", 32, 8448, 2816), ("forward", 24000, 2816, 512),
    ("forward", 24000, 2048, 512), ("forward", 24000, 2560, 512), ("forward", 24000, 1536, 512),
    ("forward", 24000, 2816, 1024), ("forward", 24000, 2048, 1024), ("forward", 24000, 2560, 1024),
    ("forward", 24000, 1536, 1024), ("forward", 16, 512, 512), ("forward", 16, 512, 1024),
    ("dX", 24000, 512, 2816), ("dX", 24000, 512, 2048), ("dX", 24000, 512, 2560),
    ("dX", 24000, 512, 1536), ("dX", 24000, 1024, 2816), ("dX", 24000, 1024, 2048),
    ("dX", 24000, 1024, 2560), ("dX", 24000, 1024, 1536), ("dW", 512, 16, 512),
    ("dW", 512, 16, 1024), ("forward", 48000, 2816, 512), ("forward", 48000, 2048, 512),
    ("forward", 48000, 2560, 512), ("forward", 48000, 1536, 512), ("forward", 48000, 2816, 1024),
    ("forward", 48000, 2048, 1024), ("forward", 48000, 2560, 1024), ("forward", 48000, 1536, 1024),
    ("forward", 32, 512, 512), ("forward", 32, 512, 1024), ("dX", 48000, 512, 2816),
    ("dX", 48000, 512, 2048), ("dX", 48000, 512, 2560), ("dX", 48000, 512, 1536),
    ("dX", 48000, 1024, 2816), ("dX", 48000, 1024, 2048), ("dX", 48000, 1024, 2560),
    ("dX", 48000, 1024, 1536), ("dW", 512, 32, 512), ("dW", 512, 32, 1024),
)

DEEPBENCH: tuple[DeepBenchGemm, ...] = tuple(DeepBenchGemm(*e) for e in _DEEPBENCH_TRAINING)

# The DeepBench GEMMs the asv suite times: the whole list (83 distinct products) times four
# frameworks, two devices, two dtypes and three passes is ~4000 asv processes (asv starts one
# per parameter combination), so the suite keeps one GEMM per regime. Each is `DEEPBENCH`
# data, not an invention: a small-batch RNN step, a large-batch step, an input gradient, a
# weight gradient, a 500000-long reduction (vocabulary) and the largest language-model GEMM.
DEEPBENCH_SUITE: tuple[str, ...] = (
    "16x2560x2560",  # forward (and dX) of a 2560-wide layer at batch 16
    "7000x2560x2560",  # the same layer at batch 7000
    "64x2560x7680",  # dX of a 7680 -> 2560 layer at batch 64
    "5481x2560x7680",  # dW of a 5481 -> 7680 layer over a batch of 2560
    "16x500000x1024",  # forward of a 500000 -> 1024 layer at batch 16 (K = 500000)
    "24000x2816x8448",  # forward of the largest layer, 2816 -> 8448 at batch 24000
)

_SHAPE_RE = re.compile(r"([1-9][0-9]*)x([1-9][0-9]*)x([1-9][0-9]*)")
_DIMS_RE = re.compile(r"[1-9][0-9]*(x[1-9][0-9]*){2,3}")  # MxKxN, or BxMxKxN batched


class ShapeIdError(ValueError):
    """Not a shape id of the form MxKxN with positive integers."""


def shape_id(m: int, k: int, n: int) -> str:
    return f"{m}x{k}x{n}"


def parse_shape(shape: str) -> tuple[int, int, int]:
    """`(M, K, N)` of a shape id such as "1024x1024x1024"."""
    match = _SHAPE_RE.fullmatch(shape) if isinstance(shape, str) else None
    if match is None:
        raise ShapeIdError(
            f"shape id {shape!r} is not of the form MxKxN with positive integers "
            "(e.g. '1024x1024x1024')"
        )
    m, k, n = (int(g) for g in match.groups())
    return m, k, n


def shape_dims(shape: str) -> tuple[int, ...]:
    """`(M, K, N)`, or `(B, M, K, N)` for a batched id (asv results may carry one)."""
    if not isinstance(shape, str) or _DIMS_RE.fullmatch(shape) is None:
        raise ShapeIdError(f"shape id {shape!r} is not of the form MxKxN (or BxMxKxN) with "
                           "positive integers (e.g. '1024x1024x1024')")
    return tuple(int(v) for v in shape.split("x"))


def flops(shape: str, pass_: str, dtype: str = "float32") -> int:
    """Real floating-point operations of one pass: 2*M*K*N per product (times the batch).

    A complex multiply-add is 8 real operations (4 multiplications, 4 additions) where a
    real one is 2, so complex dtypes count 4x: GFLOP/s then compare across dtypes and
    against a real peak, the convention of vendor GEMM benchmarks (cuBLAS, MKL).
    """
    if pass_ not in PASS_PRODUCTS:
        raise ValueError(f"unknown pass {pass_!r}; allowed: {', '.join(PASSES)}")
    per_product = 2 * math.prod(shape_dims(shape))
    return PASS_PRODUCTS[pass_] * per_product * (4 if dtype.startswith("complex") else 1)

