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
from harness.cases import Inputs, Tangents
from harness.dtypes import DEVICES, DTYPES
from harness.runfiles import QUANTITIES

CACHE_ENV = "MATMUL_HARNESS_XLA_CACHE"


def cache_dir() -> str | None:
    """Where compiled XLA programs persist between runs; None when turned off.

    `MATMUL_HARNESS_XLA_CACHE` is a folder, or `off`; the default is the user cache
    folder (`$XDG_CACHE_HOME` or `~/.cache`) under `matmul-harness/xla`.
    """
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() in ("off", "0", "false", "no"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return value or os.path.join(base, "matmul-harness", "xla")


def _persistent_cache(jax: Any) -> None:
    """Keep compiled programs on disk: a verify run compiles one XLA program per shape and
    dtype (~0.1-1 s each on the CPU), which is most of JAX's time in a repeated run (default
    config: 33 s cold, 6 s warm, measured here). Results are the same programs' either way.
    A user's own jax_compilation_cache_dir wins."""
    path = cache_dir()
    if path is None or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


class JaxAdapter(Adapter):
    name = "jax"
    module = "jax"
    install_hint = "pip install 'matmul-harness[jax]'"
    capabilities = Capabilities(
        devices=DEVICES, dtypes=tuple(DTYPES), forward_mode=True, second_order=True
    )
    repro_snippet = '''
import jax

jax.config.update("jax_enable_x64", True)  # else float64 silently becomes float32
jax.config.update("jax_default_matmul_precision", "highest")  # no TF32 on GPUs
import jax.numpy as jnp


@jax.jit
def _grads(X, W, G):
    Y, f = jax.vjp(jnp.matmul, X, W)
    if jnp.iscomplexobj(G):  # jax returns G·Wᵀ, Xᵀ·G; torch/TF's G·Wᴴ, Xᴴ·G is conj(f(conj G))
        dX, dW = (jnp.conj(t) for t in f(jnp.conj(G)))
    else:
        dX, dW = f(G)
    return Y, dX, dW

def run(x, w, g, dtype, device):
    dev = jax.devices("gpu" if device == "gpu" else "cpu")[0]
    X, W, G = (jax.device_put(jnp.asarray(a, dtype=dtype), dev) for a in (x, w, g))
    wide = lambda t: t.astype(jnp.complex128 if jnp.iscomplexobj(t) else jnp.float64)
    return tuple(np.asarray(wide(t)) for t in _grads(X, W, G))
'''

    def __init__(self, *, pin_precision: bool = True, threads: int | None = None) -> None:
        if threads:
            # XLA:CPU ignores its thread flags (measured with jax 0.10); pinning this process to
            # `threads` cores before the first array is what works. It is why adapters run
            # in worker processes of their own.
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
        import jax
        import jax.numpy as jnp

        # Without x64, float64 inputs silently become float32.
        jax.config.update("jax_enable_x64", True)
        _persistent_cache(jax)
        if pin_precision:
            # JAX computes float32 GEMMs in TF32 on Ampere+ GPUs by default
            # (https://github.com/jax-ml/jax/issues/12008).
            jax.config.update("jax_default_matmul_precision", "highest")
        self.jax, self.jnp = jax, jnp
        # One XLA compilation per shape and dtype instead of one per primitive op dispatched
        # eagerly (about 4x faster to a first result here); the numbers are XLA's either way.
        self._vjp = jax.jit(self._vjp_eager)
        self._jvp = jax.jit(lambda x, w, tx, tw: jax.jvp(jnp.matmul, (x, w), (tx, tw)))
        # jax.vjp's pullback is a pytree (jax.tree_util.Partial): it can enter a jit
        self._backward = jax.jit(self._conjugated)
        self._second_order_jit = jax.jit(self._second_order_eager)
        self._fused_jit = jax.jit(self._fused_eager)

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

    def precision_flags(self) -> str:
        mode = self.jax.config.jax_default_matmul_precision or "default"
        return f"jax_default_matmul_precision={mode} jax_enable_x64=1"

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

    def run_all(
        self, inputs: Inputs, tangents: Tangents, device: str
    ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """All five results from one compiled program.

        XLA compiles once per shape and dtype, and compilation, not arithmetic, is what a
        verify run spends its time on (3 programs per cell took 47 s for the default
        config, 1 takes a third). If the fused program fails, the quantities are run one by
        one so that the failure is pinned on the right one.
        """
        arrays = (inputs.x, inputs.w, inputs.g, tangents.tx, tangents.tw, tangents.v)
        try:
            results = self._fused_jit(*(self.to_device(a, device) for a in arrays))
            self.sync(results)
        except Exception:
            return super().run_all(inputs, tangents, device)
        names = [q for q in QUANTITIES if q != "adjoint"]  # _fused_eager's results, in order
        return {n: self.to_numpy(r) for n, r in zip(names, results, strict=True)}, {}

    def _fused_eager(self, x: Any, w: Any, g: Any, tx: Any, tw: Any, v: Any) -> tuple[Any, ...]:
        y, dx, dw = self._vjp_eager(x, w, g)
        _, dy = self.jax.jvp(self.jnp.matmul, (x, w), (tx, tw))
        return y, dx, dw, dy, self._second_order_eager(x, w, g, v)

    def second_order(self, x: Any, w: Any, g: Any, v: Any) -> Any:
        return self._second_order_jit(x, w, g, v)

    def _second_order_eager(self, x: Any, w: Any, g: Any, v: Any) -> Any:
        jax, jnp = self.jax, self.jnp

        def h(w_: Any) -> Any:
            _, f = jax.vjp(jnp.matmul, x, w_)
            dx, _ = self._conjugated(f, g)
            return jnp.real(jnp.sum(jnp.conj(v) * dx))

        # jax.grad of a real function of a complex W returns conj(∂h/∂Re W + i·∂h/∂Im W)
        # (docs/numerics.md; the autodiff cookbook's complex section): undo the conjugation.
        d2w = jax.grad(h)(w)
        return jnp.conj(d2w) if jnp.iscomplexobj(d2w) else d2w

    def reset_peak_memory(self, device: str) -> None:
        # XLA keeps no resettable peak; `peak_memory` is the process's peak, which a
        # benchmark's warm-up of the same pass has already reached.
        if device != "gpu":
            super().reset_peak_memory(device)

    def peak_memory(self, device: str) -> int:
        if device != "gpu":
            return super().peak_memory(device)
        stats = self._device(device).memory_stats() or {}
        return int(stats["peak_bytes_in_use"])

    def sync(self, outputs: tuple[Any, ...]) -> None:
        self.jax.block_until_ready(outputs)
