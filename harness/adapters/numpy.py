"""numpy: the baseline. numpy has no autodiff, so its backward *is* the formula of
`harness.reference`, evaluated in the dtype under test (not in float64): it shows what a
plain, correct implementation in that dtype achieves, not an independent check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from harness.adapters.base import Adapter, Capabilities
from harness.dtypes import DTYPES
from harness.reference import matmul_grads, matmul_vjp


class NumpyAdapter(Adapter):
    name = "numpy"
    module = "numpy"
    install_hint = "pip install numpy"
    capabilities = Capabilities(
        devices=("cpu",),
        dtypes=tuple(d for d in DTYPES if d != "bfloat16"),  # see `unsupported`
        # matmul_vjp rounds each broadcast batch's product to the dtype, then sums
        rounded_broadcast_partials=True,
        unsupported=(
            (
                "bfloat16",
                "numpy has no native bfloat16 (ml_dtypes' bfloat16 matmul returns float32)",
            ),
        ),
    )
    # numpy has no autodiff: its reproducer evaluates harness.reference's formulas (which
    # every reproducer carries) in the dtype under test, as this adapter does.
    repro_snippet = '''
def run(x, w, g, dtype, device):
    return (np.matmul(x, w), *matmul_grads(x, w, g))
'''

    def __init__(self, *, pin_precision: bool = True, threads: int | None = None) -> None:
        from threadpoolctl import threadpool_limits

        # Keep the limiter alive: it caps the BLAS that numpy loaded (OpenBLAS, MKL...).
        self._limits = threadpool_limits(limits=threads) if threads else None

    def version(self) -> str:
        return np.__version__

    def threads(self) -> int:
        from threadpoolctl import threadpool_info

        blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        return int(blas[0]["num_threads"]) if blas else 1

    def device_reason(self, device: str) -> str | None:
        return None if device == "cpu" else "numpy runs on the CPU only"

    def precision(self, device: str, dtype: str) -> str:
        return "ieee"

    def to_device(self, a: np.ndarray, device: str) -> Any:
        return a

    def to_numpy(self, t: Any) -> np.ndarray:
        return np.asarray(t)

    def forward(self, x: Any, w: Any) -> Any:
        return np.matmul(x, w)

    def pullback(self, x: Any, w: Any) -> tuple[Any, Callable[[Any], tuple[Any, Any]]]:
        return np.matmul(x, w), lambda g: matmul_grads(x, w, g)

    def vjp(self, x: Any, w: Any, g: Any) -> tuple[Any, Any, Any]:
        return matmul_vjp(x, w, g)

    def sync(self, outputs: tuple[Any, ...]) -> None:
        return None
