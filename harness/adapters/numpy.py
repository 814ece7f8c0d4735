"""numpy: the baseline. numpy has no autodiff, so its backward *is* the formula of
`harness.reference`, evaluated in the dtype under test (not in float64): it shows what a
plain, correct implementation in that dtype achieves, not an independent check."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.adapters.base import Adapter, Capabilities
from harness.reference import matmul_vjp


class NumpyAdapter(Adapter):
    name = "numpy"
    module = "numpy"
    install_hint = "pip install numpy"
    capabilities = Capabilities(
        devices=("cpu",),
        # matmul_vjp rounds each broadcast batch's product to the dtype, then sums
        rounded_broadcast_partials=True,
        dtypes=("float16", "float32", "float64", "complex64", "complex128"),
        unsupported=(
            (
                "bfloat16",
                "numpy has no native bfloat16 (ml_dtypes' bfloat16 matmul returns float32)",
            ),
        ),
    )

    def version(self) -> str:
        return np.__version__

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

    def vjp(self, x: Any, w: Any, g: Any) -> tuple[Any, Any, Any]:
        return matmul_vjp(x, w, g)

    def sync(self, outputs: tuple[Any, ...]) -> None:
        return None
