"""What every adapter is: a small class over one framework's own matmul and autodiff.

Defining or importing an adapter class costs nothing: each imports its framework inside
`__init__` (the framework may be missing, slow to import, or broken, and the orchestrator
must never load one). Capabilities are data, so the orchestrator can plan and skip cells
without instantiating anything.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from harness.cases import Inputs, Tangents
from harness.errors import describe


@dataclass(frozen=True)
class Capabilities:
    devices: tuple[str, ...]  # devices the framework can target at all ("cpu", "gpu")
    dtypes: tuple[str, ...]  # dtype names it computes matmul gradients in
    forward_mode: bool = False  # has forward-mode autodiff (JVP)
    second_order: bool = False  # can differentiate its own gradient (nested autodiff)
    # Reduces a broadcast gradient from per-batch partial products rounded to the storage
    # dtype (TensorFlow), which the tolerance must allow for in float16/bfloat16.
    rounded_broadcast_partials: bool = False
    unsupported: tuple[tuple[str, str], ...] = ()  # (dtype, reason) for documented gaps


class AdapterUnavailable(RuntimeError):
    """The framework, device or dtype cannot run here: a skip with this message as reason."""


class Adapter:
    """Base class; subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    module: ClassVar[str]  # importable module whose absence makes every cell a skip
    install_hint: ClassVar[str]  # how to install it, shown in skip reasons
    capabilities: ClassVar[Capabilities]
    # Source of a standalone reproducer (`matmul-harness repro`, harness/repro.py): it defines
    # `run(x, w, g, dtype, device)` returning numpy (Y, dX, dW) from the framework's own
    # autodiff, may import only numpy (as `np`, already imported) and the framework. `x`,
    # `w`, `g` arrive in `dtype`, except bfloat16, which arrives as float32 holding bfloat16
    # values; results may be any wider dtype. None: this adapter writes no reproducer.
    repro_snippet: ClassVar[str | None] = None

    @classmethod
    def installed(cls) -> bool:
        """Whether the framework is importable, found without importing it."""
        return importlib.util.find_spec(cls.module) is not None

    @classmethod
    def unsupported_reason(cls, device: str, dtype: str) -> str | None:
        """Why (device, dtype) is outside the adapter's capabilities, or None."""
        caps = cls.capabilities
        if device not in caps.devices:
            return f"{cls.name} has no {device} backend"
        for name, why in caps.unsupported:
            if name == dtype:
                return why
        if dtype not in caps.dtypes:
            return f"{cls.name} does not support {dtype}"
        return None

    def __init__(self, *, pin_precision: bool = True, threads: int | None = None) -> None:
        """Import the framework; pin full float32 precision; cap CPU threads at `threads`.

        Thread caps must be set before the framework's first computation (TensorFlow
        refuses later changes), which is why they are constructor arguments.
        """
        raise NotImplementedError("The '__init__' method must be implemented.")

    def version(self) -> str:
        raise NotImplementedError("The 'version' method must be implemented.")

    def threads(self) -> int:
        """CPU threads the framework's matmul may use now."""
        raise NotImplementedError("The 'threads' method must be implemented.")

    def device_reason(self, device: str) -> str | None:
        """None when `device` is usable now, else why not (e.g. no GPU visible)."""
        raise NotImplementedError("The 'device_reason' method must be implemented.")

    def precision(self, device: str, dtype: str) -> str:
        """The float32 matmul mode in force: "ieee", "tf32", "bf16" or "bf16x3"."""
        raise NotImplementedError("The 'precision' method must be implemented.")

    def precision_flags(self) -> str:
        """The framework's own settings behind `precision`, as `name=value` pairs (TF32
        switches, matmul precision, reduced-precision reductions); "" where it has none."""
        return ""

    def to_device(self, a: np.ndarray, device: str) -> Any:
        raise NotImplementedError("The 'to_device' method must be implemented.")

    def to_numpy(self, t: Any) -> np.ndarray:
        """The one exit to numpy; keeps the dtype (bfloat16 as ml_dtypes.bfloat16)."""
        raise NotImplementedError("The 'to_numpy' method must be implemented.")

    def forward(self, x: Any, w: Any) -> Any:
        raise NotImplementedError("The 'forward' method must be implemented.")

    def pullback(self, x: Any, w: Any) -> tuple[Any, Callable[[Any], tuple[Any, Any]]]:
        """`(Y, f)` with `f(G) = (dX, dW)`: the framework's reverse mode, forward saved.

        `f` may be called repeatedly (benchmarks time the backward pass alone this way).
        Complex results follow the PyTorch/TensorFlow convention `G·Wᴴ`, `Xᴴ·G`.
        """
        raise NotImplementedError("The 'pullback' method must be implemented.")

    def vjp(self, x: Any, w: Any, g: Any) -> tuple[Any, Any, Any]:
        """`(Y, dX, dW)` from the framework's own reverse-mode autodiff."""
        y, f = self.pullback(x, w)
        dx, dw = f(g)
        return y, dx, dw

    def jvp(self, x: Any, w: Any, tx: Any, tw: Any) -> tuple[Any, Any]:
        """`(Y, dY)` from forward-mode autodiff, `dY = tX·W + X·tW`, where supported."""
        raise NotImplementedError(f"{self.name} has no forward-mode autodiff adapter")

    def second_order(self, x: Any, w: Any, g: Any, v: Any) -> Any:
        """The gradient with respect to W of `h = Re⟨dX, V⟩`, by nested autodiff.

        `dX` is the framework's own reverse-mode gradient for upstream `G`; the result
        follows the same convention as `dW` (∂h/∂Re W + i·∂h/∂Im W).
        """
        raise NotImplementedError(f"{self.name} has no second-order autodiff adapter")

    def reset_peak_memory(self, device: str) -> None:
        """Start a new peak of device memory in use (GPU benchmarks)."""
        raise NotImplementedError(f"{self.name} has no {device} memory counter")

    def peak_memory(self, device: str) -> int:
        """Bytes of device memory in use at the peak since `reset_peak_memory`."""
        raise NotImplementedError(f"{self.name} has no {device} memory counter")

    def sync(self, outputs: tuple[Any, ...]) -> None:
        """Block until `outputs` are computed (asynchronous GPU dispatch)."""
        raise NotImplementedError("The 'sync' method must be implemented.")

    def run(self, inputs: Inputs, device: str) -> dict[str, np.ndarray]:
        """Place the inputs, run forward and backward, and bring the results back."""
        x, w, g = (self.to_device(a, device) for a in (inputs.x, inputs.w, inputs.g))
        y, dx, dw = self.vjp(x, w, g)
        self.sync((y, dx, dw))
        return {"Y": self.to_numpy(y), "dX": self.to_numpy(dx), "dW": self.to_numpy(dw)}

    def run_all(
        self, inputs: Inputs, tangents: Tangents, device: str
    ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Every quantity the adapter has (Y, dX, dW; dY, d2W where supported).

        Returns the results and, per quantity, why it failed: an exception in the
        forward-mode or second-order run costs that quantity alone. An exception in the
        reverse-mode run propagates (the cell is an error). Adapters whose per-call
        overhead dominates (JAX compiles once per shape) override this with one fused call.
        """
        out = self.run(inputs, device)
        errors: dict[str, str] = {}
        caps = self.capabilities
        extra = {"dY": caps.forward_mode and self.run_jvp,
                 "d2W": caps.second_order and self.run_second_order}
        for quantity, run in extra.items():
            if run:
                try:
                    out[quantity] = run(inputs, tangents, device)
                except Exception as exc:
                    errors[quantity] = describe(exc)
        return out, errors

    def run_jvp(self, inputs: Inputs, tangents: Tangents, device: str) -> np.ndarray:
        """`dY` of the forward-mode check, brought back to numpy."""
        arrays = (inputs.x, inputs.w, tangents.tx, tangents.tw)
        y, dy = self.jvp(*(self.to_device(a, device) for a in arrays))
        self.sync((y, dy))
        return self.to_numpy(dy)

    def run_second_order(self, inputs: Inputs, tangents: Tangents, device: str) -> np.ndarray:
        """`d/dW Re⟨dX, V⟩` of the second-order check, brought back to numpy."""
        arrays = (inputs.x, inputs.w, inputs.g, tangents.v)
        d2w = self.second_order(*(self.to_device(a, device) for a in arrays))
        self.sync((d2w,))
        return self.to_numpy(d2w)
