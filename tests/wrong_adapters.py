"""Deliberately wrong adapters: real autodiff, with one classic bug planted in the result.

Each wraps a correct adapter (numpy or torch) and replaces one quantity by what a known
real-world bug produces (docs/numerics.md lists the upstream issues). The checker must report
each as `fail`. They are importable as `tests.wrong_adapters:<Class>`, so the same classes
also run through the real orchestrator as entry-point plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from harness.adapters import Adapter
from harness.adapters.numpy import NumpyAdapter
from harness.cases import Inputs


class Wrapped(Adapter):
    """Delegates everything to a correct adapter; subclasses plant a bug in `run`."""

    base: ClassVar[type[Adapter]] = NumpyAdapter
    name = "wrapped"
    module = "numpy"
    install_hint = "pip install numpy"
    capabilities = NumpyAdapter.capabilities
    bug: ClassVar[str] = ""  # which quantity the bug hits

    def __init__(self, *, pin_precision: bool = True, threads: int | None = None) -> None:
        self.inner = self.base(pin_precision=pin_precision, threads=threads)

    def version(self) -> str:
        return self.inner.version()

    def threads(self) -> int:
        return self.inner.threads()

    def device_reason(self, device: str) -> str | None:
        return self.inner.device_reason(device)

    def precision(self, device: str, dtype: str) -> str:
        return self.inner.precision(device, dtype)

    def to_device(self, a: np.ndarray, device: str) -> Any:
        return self.inner.to_device(a, device)

    def to_numpy(self, t: Any) -> np.ndarray:
        return self.inner.to_numpy(t)

    def forward(self, x: Any, w: Any) -> Any:
        return self.inner.forward(x, w)

    def pullback(self, x: Any, w: Any) -> tuple[Any, Callable[[Any], tuple[Any, Any]]]:
        return self.inner.pullback(x, w)

    def jvp(self, x: Any, w: Any, tx: Any, tw: Any) -> tuple[Any, Any]:
        return self.inner.jvp(x, w, tx, tw)

    def second_order(self, x: Any, w: Any, g: Any, v: Any) -> Any:
        return self.inner.second_order(x, w, g, v)

    def sync(self, outputs: tuple[Any, ...]) -> None:
        self.inner.sync(outputs)

    def run(self, inputs: Inputs, device: str) -> dict[str, np.ndarray]:
        out = self.inner.run(inputs, device)
        if self.bug:
            out[self.bug] = self.plant(inputs, device, out)
        return out

    def plant(self, inputs: Inputs, device: str, out: dict[str, np.ndarray]) -> np.ndarray:
        return out[self.bug]


class MissingTranspose(Wrapped):
    """dX = G·W instead of G·Wᵀ: invisible to a shape check when W is square."""

    bug = "dX"

    def plant(self, inputs: Inputs, device: str, out: dict[str, np.ndarray]) -> np.ndarray:
        swapped = Inputs(inputs.x, np.swapaxes(inputs.w, -1, -2).copy(), inputs.g)
        return self.inner.run(swapped, device)["dX"]


class BatchZeroOnly(Wrapped):
    """A broadcast W's gradient taken from batch 0 alone
    (https://github.com/NVIDIA/warp/issues/147)."""

    bug = "dW"

    def plant(self, inputs: Inputs, device: str, out: dict[str, np.ndarray]) -> np.ndarray:
        first = Inputs(inputs.x[:1].copy(), inputs.w, inputs.g[:1].copy())
        return self.inner.run(first, device)["dW"]


class Unreduced(Wrapped):
    """A broadcast W's gradient left per batch, not summed
    (https://github.com/tensorflow/tfjs/issues/8721)."""

    bug = "dW"

    def plant(self, inputs: Inputs, device: str, out: dict[str, np.ndarray]) -> np.ndarray:
        batch = inputs.x.shape[:-2]
        w_full = np.broadcast_to(inputs.w, (*batch, *inputs.w.shape)).copy()
        return self.inner.run(Inputs(inputs.x, w_full, inputs.g), device)["dW"]


class MissingConjugation(Wrapped):
    """dX = G·Wᵀ for complex inputs (https://github.com/tensorflow/tensorflow/issues/378,
    https://github.com/pytorch/pytorch/issues/55754)."""

    bug = "dX"

    def plant(self, inputs: Inputs, device: str, out: dict[str, np.ndarray]) -> np.ndarray:
        conj_w = Inputs(inputs.x, np.conj(inputs.w), inputs.g)
        return self.inner.run(conj_w, device)["dX"]


class Scaled(Wrapped):
    """dX off by a relative 1e-3, rounded back to the dtype."""

    bug = "dX"

    def plant(self, inputs: Inputs, device: str, out: dict[str, np.ndarray]) -> np.ndarray:
        dx = out["dX"]
        wide = np.complex128 if dx.dtype.kind == "c" else np.float64
        return (dx.astype(wide) * (1 + 1e-3)).astype(dx.dtype)


BUGS: tuple[type[Wrapped], ...] = (
    MissingTranspose, BatchZeroOnly, Unreduced, MissingConjugation, Scaled,
)


def on(base: type[Adapter], bug: type[Wrapped]) -> type[Wrapped]:
    """`bug` planted on top of the adapter class `base`."""
    return type(
        f"{bug.__name__}_{base.name}",
        (bug,),
        {"base": base, "name": f"{bug.__name__.lower()}-{base.name}", "module": base.module,
         "install_hint": base.install_hint, "capabilities": base.capabilities},
    )
