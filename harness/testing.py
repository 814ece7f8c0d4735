"""The checker as a library: `assert_matmul_grads` runs a user's matmul through the cases
and dtypes of `verify` and judges it exactly as `verify` does (harness.judge: the
reference, the derived tolerance, the bias and precision forensics), in this process.

What it checks (`impl`):

- an `Adapter` subclass or instance: every quantity its capabilities declare (Y, dX, dW;
  forward-mode dY and the adjoint identity; second-order d2W);
- `NumpyImpl(forward, backward)`: numpy in, numpy out. `forward(x, w) -> Y` and
  `backward(x, w, g) -> (dX, dW)`; arrays arrive in the dtype under test (bfloat16 as
  `ml_dtypes.bfloat16`) and must come back in it. Checks Y, dX, dW;
- `TorchFunction(fn)`: torch tensors in, out. `fn(x, w) -> Y`, for example a
  `torch.autograd.Function`'s `apply`; dX and dW come from `torch.autograd.grad` through
  it, so its own `backward` is what is checked. Checks Y, dX, dW.

It returns the rows (`harness.results.Row`, as in verify.csv) or raises `AssertionError`
whose message lists every failing cell's verdict: the quantity, the worst element, its
error as a multiple of the allowed bound, what was computed and what was expected.

    from harness.testing import TorchFunction, assert_matmul_grads, matrix_cases
    assert_matmul_grads(TorchFunction(MyMatmul.apply), dtypes=["float32"],
                        cases=matrix_cases())

No framework is imported here; `TorchFunction` imports torch when it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.adapters import BUILTIN
from harness.adapters.base import Adapter, AdapterUnavailable, Capabilities
from harness.adapters.numpy import NumpyAdapter
from harness.cases import Case, make_inputs, make_tangents
from harness.config import load as load_config
from harness.dtypes import DTYPES, get
from harness.errors import describe
from harness.judge import judge, uniform_rows
from harness.plan import Cell
from harness.results import Row

__all__ = [
    "NumpyImpl",
    "TorchFunction",
    "assert_matmul_grads",
    "default_cases",
    "matrix_cases",
]

CaseSpec = Case | str | tuple[str, Sequence[int], Sequence[int]]


@dataclass(frozen=True)
class NumpyImpl:
    """A matmul as numpy callables: `forward(x, w) -> Y`, `backward(x, w, g) -> (dX, dW)`."""

    forward: Callable[[np.ndarray, np.ndarray], np.ndarray]
    backward: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    name: str = "numpy-impl"


@dataclass(frozen=True)
class TorchFunction:
    """A matmul on torch tensors, `fn(x, w) -> Y`, differentiated by torch.autograd."""

    fn: Callable[[Any, Any], Any]
    name: str = "torch-function"


def default_cases() -> tuple[Case, ...]:
    """The embedded default config's 18 cases: 1-D forms, batches, broadcasting, empty
    dims, K = 65536."""
    return load_config(None, tuple(BUILTIN)).cases


def matrix_cases() -> tuple[Case, ...]:
    """The default cases whose X and W are both plain matrices (for 2-D-only kernels)."""
    return tuple(c for c in default_cases() if len(c.x) == 2 and len(c.w) == 2)


def assert_matmul_grads(
    impl: type[Adapter] | Adapter | NumpyImpl | TorchFunction,
    *,
    dtypes: Iterable[str] = ("float32", "float64"),
    cases: Iterable[CaseSpec] | None = None,
    device: str = "cpu",
    seed: int = 0,
    rounded_broadcast_partials: bool = False,
) -> list[Row]:
    """Check `impl` on every case x dtype; the rows, or AssertionError with the verdicts.

    `cases`: `Case`s, names of the default cases, or `(name, x_shape, w_shape)`; default:
    all of `default_cases()`. `rounded_broadcast_partials`: the implementation sums a
    broadcast operand's gradient from per-batch products rounded to the dtype (torch and
    TensorFlow do), which widens the float16/bfloat16 bound; ignored for an Adapter, whose
    capabilities say it. A skipped quantity (a dtype or device the adapter lacks) is
    returned as a row, never an assertion.
    """
    __tracebackhide__ = True  # pytest shows the verdict, not this frame
    names = list(dtypes)
    for name in names:
        get(name)  # KeyError naming the allowed dtypes
    chosen = _cases(cases)
    cls, adapter = _adapter(impl, rounded_broadcast_partials)
    version = _version(adapter)
    rows: list[Row] = []
    for dtype in names:
        for case in chosen:
            cell = Cell(cls.name, "pinned", device, dtype, case)
            rows.extend(_run_cell(cell, cls, adapter, version, seed))
    bad = [r for r in rows if r.status in ("fail", "error")]
    if bad:
        lines = [f"{r.framework} {r.device} {r.dtype} {r.case} ({r.x_shape} @ {r.w_shape}) "
                 f"{r.status}: {r.reason}" for r in bad]
        raise AssertionError(f"{len(bad)} of {len(rows)} checks failed:\n" + "\n".join(lines))
    return rows


def _run_cell(cell: Cell, cls: type[Adapter], adapter: Adapter, version: str,
              seed: int) -> list[Row]:
    reason = cls.unsupported_reason(cell.device, cell.dtype) or adapter.device_reason(
        cell.device)
    if reason:
        return uniform_rows(cell, "skip", reason, version, cls)
    compute = adapter.precision(cell.device, cell.dtype)
    dtype = get(cell.dtype)
    try:
        outputs, errors = adapter.run_all(make_inputs(cell.case, dtype, seed),
                                          make_tangents(cell.case, dtype, seed), cell.device)
    except AdapterUnavailable as exc:
        return uniform_rows(cell, "skip", str(exc), version, cls, compute)
    except Exception as exc:
        return uniform_rows(cell, "error", describe(exc), version, cls, compute)
    return judge(cell, outputs, errors, cls, compute, version, seed)


def _version(adapter: Adapter) -> str:
    try:
        return adapter.version()
    except NotImplementedError:
        return ""


def _cases(cases: Iterable[CaseSpec] | None) -> tuple[Case, ...]:
    if cases is None:
        return default_cases()
    known = {c.name: c for c in default_cases()}
    out: list[Case] = []
    for spec in cases:
        if isinstance(spec, Case):
            out.append(spec)
        elif isinstance(spec, str):
            if spec not in known:
                raise KeyError(f"unknown case {spec!r}; default cases: {', '.join(known)}")
            out.append(known[spec])
        else:
            name, x, w = spec
            out.append(Case(name, tuple(x), tuple(w)))
    for c in out:
        c.geometry  # noqa: B018  (ShapeError now, not inside a cell)
    return tuple(out)


def _adapter(impl: Any, rounded: bool) -> tuple[type[Adapter], Adapter]:
    if isinstance(impl, Adapter):
        return type(impl), impl
    if isinstance(impl, type) and issubclass(impl, Adapter):
        return impl, impl()
    caps = Capabilities(devices=("cpu", "gpu"), dtypes=tuple(DTYPES),
                        rounded_broadcast_partials=rounded)
    if isinstance(impl, NumpyImpl):
        np_cls: type[Adapter] = type(f"NumpyImpl_{impl.name}", (_NumpyImplAdapter,),
                                     {"name": impl.name, "capabilities": caps, "impl": impl})
        return np_cls, np_cls()
    if isinstance(impl, TorchFunction):
        from harness.adapters.torch import TorchAdapter

        t_cls: type[Adapter] = type(f"TorchFunction_{impl.name}", (_TorchFunctionMixin,
                                                                    TorchAdapter),
                                    {"name": impl.name, "capabilities": caps, "impl": impl})
        return t_cls, t_cls()
    raise TypeError(f"impl must be an Adapter subclass or instance, a NumpyImpl or a "
                    f"TorchFunction; received {type(impl).__name__}")


class _NumpyImplAdapter(NumpyAdapter):
    """A NumpyImpl as an adapter: numpy's, with the user's forward and backward."""

    impl: NumpyImpl
    vjp = Adapter.vjp  # through `pullback`, not numpy's own formula

    def version(self) -> str:
        return ""

    def forward(self, x: Any, w: Any) -> Any:
        return self.impl.forward(x, w)

    def pullback(self, x: Any, w: Any) -> tuple[Any, Callable[[Any], tuple[Any, Any]]]:
        return self.impl.forward(x, w), lambda g: self.impl.backward(x, w, g)


class _TorchFunctionMixin:
    """TorchAdapter with the user's function as the product (forward, pullback)."""

    impl: TorchFunction

    def product(self, x: Any, w: Any) -> Any:
        return self.impl.fn(x, w)
