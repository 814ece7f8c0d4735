"""MLX: gradients from `mx.vjp`, `mx.jvp` and `mx.grad` (CPU build; GPU where mlx has one).

Importing this module imports no mlx: the harness imports adapter modules to read their
capabilities, and mlx is imported in `__init__`, inside the worker that runs the cells.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import ml_dtypes
import numpy as np

from harness.adapters import Adapter, Capabilities


class MLXAdapter(Adapter):
    name = "mlx"
    module = "mlx"
    install_hint = "pip install -e examples/harness-mlx (brings mlx[cpu])"
    capabilities = Capabilities(
        devices=("cpu", "gpu"),
        dtypes=("float16", "bfloat16", "float32", "float64", "complex64"),
        forward_mode=True,
        second_order=True,
        # A broadcast operand's gradient is the per-batch products, each rounded to the
        # dtype, then summed (as in torch and TensorFlow): float16/bfloat16 dX of
        # broadcast_x went 6.8x past the plain bound without this allowance.
        rounded_broadcast_partials=True,
        # mx.array turns complex128 into complex64 without a word (mlx 0.32): a silent
        # downcast would be checked against the complex128 bound and fail for mlx's sake.
        unsupported=(("complex128", "mlx has no complex128 (mx.array stores it as complex64)"),),
    )
    repro_snippet: ClassVar[str] = '''
import mlx.core as mx

def run(x, w, g, dtype, device):
    mx.set_default_device(mx.gpu if device == "gpu" else mx.cpu)
    dt = getattr(mx, dtype)
    X, W, G = (mx.array(a).astype(dt) for a in (x, w, g))
    (Y,), (dX, dW) = mx.vjp(mx.matmul, [X, W], [G])
    mx.eval(Y, dX, dW)
    wide = mx.complex64 if dtype == "complex64" else mx.float32 if dtype != "float64" else dt
    return tuple(np.array(t.astype(wide)) for t in (Y, dX, dW))
'''

    @classmethod
    def unsupported_reason(cls, device: str, dtype: str) -> str | None:
        if device == "gpu" and dtype == "float64":
            return "mlx computes float64 on the CPU only"
        return super().unsupported_reason(device, dtype)

    def __init__(self, *, pin_precision: bool = True, threads: int | None = None) -> None:
        import mlx.core as mx

        self.mx = mx
        # mlx's CPU matmul runs on one thread (its Linux build links reference BLAS), so
        # `threads` cannot be honoured above 1: `threads()` says so and bench reports it.
        self._dtypes = {"float16": mx.float16, "bfloat16": mx.bfloat16, "float32": mx.float32,
                        "float64": mx.float64, "complex64": mx.complex64}

    def version(self) -> str:
        return str(self.mx.__version__)

    def threads(self) -> int:
        return 1

    def device_reason(self, device: str) -> str | None:
        if device == "cpu" or self.mx.is_available(self.mx.gpu):
            return None
        return "no GPU backend in this mlx build"

    def precision(self, device: str, dtype: str) -> str:
        return "ieee"

    def to_device(self, a: np.ndarray, device: str) -> Any:
        mx = self.mx
        mx.set_default_device(mx.gpu if device == "gpu" else mx.cpu)
        if a.dtype == ml_dtypes.bfloat16:  # exact: every bfloat16 is a float32
            return mx.array(a.astype(np.float32)).astype(mx.bfloat16)
        # mx.array would store float64 as float32 unless told
        return mx.array(a, dtype=self._dtypes[a.dtype.name])

    def to_numpy(self, t: Any) -> np.ndarray:
        if t.dtype == self.mx.bfloat16:  # numpy's buffer protocol knows no bfloat16
            return np.array(t.astype(self.mx.float32)).astype(ml_dtypes.bfloat16)
        return np.array(t)

    def forward(self, x: Any, w: Any) -> Any:
        return self.mx.matmul(x, w)

    def pullback(self, x: Any, w: Any) -> tuple[Any, Callable[[Any], tuple[Any, Any]]]:
        mx = self.mx
        y = mx.matmul(x, w)

        def backward(g: Any) -> tuple[Any, Any]:
            # mlx is lazy: only the gradients' graph is evaluated, the forward is not redone
            _, (dx, dw) = mx.vjp(mx.matmul, [x, w], [g])
            return dx, dw

        return y, backward

    def vjp(self, x: Any, w: Any, g: Any) -> tuple[Any, Any, Any]:
        (y,), (dx, dw) = self.mx.vjp(self.mx.matmul, [x, w], [g])
        return y, dx, dw

    def jvp(self, x: Any, w: Any, tx: Any, tw: Any) -> tuple[Any, Any]:
        (y,), (dy,) = self.mx.jvp(self.mx.matmul, [x, w], [tx, tw])
        return y, dy

    def second_order(self, x: Any, w: Any, g: Any, v: Any) -> Any:
        mx = self.mx

        def h(w_: Any) -> Any:
            _, (dx, _) = mx.vjp(mx.matmul, [x, w_], [g])
            return mx.sum(mx.real(mx.conj(v) * dx)) if v.dtype == mx.complex64 \
                else mx.sum(v * dx)

        return mx.grad(h)(w)

    def sync(self, outputs: tuple[Any, ...]) -> None:
        self.mx.eval(*outputs)
