"""JAX: gradients from `jax.vjp`.

Conjugation: for complex inputs `jax.vjp` returns `G·Wᵀ`, `Xᵀ·G` (the transpose of the
linear map, no conjugation), while PyTorch/TensorFlow and the reference return the gradient
of a real loss, `G·Wᴴ`, `Xᴴ·G`. The two are related by `conj(vjp(conj(G)))`, which is what
this adapter returns (https://jax.readthedocs.io/en/latest/notebooks/autodiff_cookbook.html,
"Complex numbers and differentiation").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.adapters.base import Adapter, Capabilities

ALL_DTYPES = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128")


class JaxAdapter(Adapter):
    name = "jax"
    module = "jax"
    install_hint = "pip install 'matmul-harness[jax]'"
    capabilities = Capabilities(devices=("cpu", "gpu"), dtypes=ALL_DTYPES, forward_mode=True)

    def __init__(self, *, pin_precision: bool = True, threads: int | None = None) -> None:
        if threads:
            # XLA:CPU ignores its thread flags (jax 0.10, ASV.md); pinning this process to
            # `threads` cores before the first array is what works. It is why adapters run
            # in worker processes of their own.
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
        import jax
        import jax.numpy as jnp

        # Without x64, float64 inputs silently become float32.
        jax.config.update("jax_enable_x64", True)
        if pin_precision:
            # JAX computes float32 GEMMs in TF32 on Ampere+ GPUs by default (jax#12008).
            jax.config.update("jax_default_matmul_precision", "highest")
        self.jax, self.jnp = jax, jnp
        # One XLA compilation per shape and dtype instead of one per primitive op dispatched
        # eagerly (about 4x faster to a first result here); the numbers are XLA's either way.
        self._vjp = jax.jit(self._vjp_eager)
        self._jvp = jax.jit(lambda x, w, tx, tw: jax.jvp(jnp.matmul, (x, w), (tx, tw)))
        # jax.vjp's pullback is a pytree (jax.tree_util.Partial): it can enter a jit
        self._backward = jax.jit(self._conjugated)

    def version(self) -> str:
        return str(self.jax.__version__)

    def threads(self) -> int:
        return len(os.sched_getaffinity(0))

    def _device(self, device: str) -> Any:
        return self.jax.devices("cpu" if device == "cpu" else "gpu")[0]

    def device_reason(self, device: str) -> str | None:
        try:
            self._device(device)
        except RuntimeError:
            platforms = sorted({d.platform for d in self.jax.devices()})
            return f"no GPU visible to jax (platforms present: {', '.join(platforms)})"
        return None

    def precision(self, device: str, dtype: str) -> str:
        if device == "cpu":
            return "ieee"  # XLA:CPU has no reduced-precision float32 GEMM
        mode = str(self.jax.config.jax_default_matmul_precision or "default").lower()
        return {"highest": "ieee", "float32": "ieee", "high": "bf16x3"}.get(mode, "tf32")

    def to_device(self, a: np.ndarray, device: str) -> Any:
        return self.jax.device_put(a, self._device(device))

    def to_numpy(self, t: Any) -> np.ndarray:
        return np.asarray(t)

    def forward(self, x: Any, w: Any) -> Any:
        return self.jnp.matmul(x, w)

    def pullback(self, x: Any, w: Any) -> tuple[Any, Callable[[Any], tuple[Any, Any]]]:
        y, f = self.jax.vjp(self.jnp.matmul, x, w)

        def backward(g: Any) -> tuple[Any, Any]:
            return self._backward(f, g)  # type: ignore[no-any-return]

        return y, backward

    def vjp(self, x: Any, w: Any, g: Any) -> tuple[Any, Any, Any]:
        return self._vjp(x, w, g)  # type: ignore[no-any-return]

    def _vjp_eager(self, x: Any, w: Any, g: Any) -> tuple[Any, Any, Any]:
        y, f = self.jax.vjp(self.jnp.matmul, x, w)
        dx, dw = self._conjugated(f, g)
        return y, dx, dw

    def _conjugated(self, f: Callable[[Any], Any], g: Any) -> tuple[Any, Any]:
        """The gradient of a real loss, `conj(vjp(conj(G)))` (see the module docstring)."""
        jnp = self.jnp
        if not jnp.iscomplexobj(g):
            dx, dw = f(g)
            return dx, dw
        dx, dw = f(jnp.conj(g))
        return jnp.conj(dx), jnp.conj(dw)

    def jvp(self, x: Any, w: Any, tx: Any, tw: Any) -> tuple[Any, Any]:
        return self._jvp(x, w, tx, tw)  # type: ignore[no-any-return]

    def sync(self, outputs: tuple[Any, ...]) -> None:
        self.jax.block_until_ready(outputs)
