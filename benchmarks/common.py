"""What the benchmark classes share: the cell guard, the adapter, the inputs, the timed call.

asv starts a fresh process per parameter combination and (asv_runner >= 0.3) calls `setup`
before *every* timed call, so what a cell needs is built once per process and cached here:
the adapter (framework imported, CPU threads capped, float32 precision pinned), the inputs
on the device, and the pass as a closure that ends with the adapter's sync, warmed up (JIT
compilation, allocator, thread pools) and with a call count sized for a ~20 ms sample.

A timed body makes that many calls back to back (asv's `number` stays 1) and asv reads the
cell's `timer`, which divides the clock by the count: asv records seconds per call, and its
own per-call work (re-running `setup` between calls, two clock reads, each timed call on
its own) is paid once per sample instead of once per call.

Nothing here imports a framework or touches a device at import time: asv imports this
module to discover the suite.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness import bench, shapes, suite
from harness.worker import GPU_MEMORY_ENV

SAMPLE_S = 0.02  # target duration of one asv sample (`number` calls)
MAX_NUMBER = 100_000

_adapters: dict[str, Any] = {}
_cells: dict[tuple[str, ...], Cell] = {}
_outcomes: dict[tuple[str, ...], dict[str, tuple[float, float]]] = {}


@dataclass
class Cell:
    """One framework x device x dtype x shape x pass, ready to time."""

    adapter: Any
    x: Any
    w: Any
    g: Any
    call: Callable[[], None]  # runs the pass once and waits for its results
    number: int  # calls per asv sample
    clock: Callable[[], float] = time.perf_counter

    def timer(self) -> float:
        """asv's clock for a timed body that makes `number` calls: seconds / number, so the
        samples asv records are seconds per call."""
        return self.clock() / self.number


def clock(device: str) -> Callable[[], float]:
    """Wall time; the process's CPU time for CPU cells when MATMUL_BENCH_CLOCK=cpu.

    On a shared machine other processes take the CPU away mid-sample: wall time then
    varies by 2x between runs, the CPU time the computation used far less (measured on
    the project's 2-core VM at load 12: 256x256x256 float32, one thread, medians 0.42 to
    0.58 ms of CPU against 1.4 to 2.0 ms of wall time). A GPU cell's CPU time says
    nothing of the GPU: it keeps the wall clock."""
    if os.environ.get(bench.CLOCK_ENV) == "cpu" and device == "cpu":
        return time.process_time
    return time.perf_counter


def adapter(kind: str, framework: str, device: str, dtype: str, shape: str,
            pass_: str | None = None) -> Any:
    """The process's adapter for a cell; NotImplementedError (asv: n/a) says why there is none.

    The cheap checks come first, so a cell outside the selection, or a GPU cell on a machine
    without a GPU, never imports its framework.
    """
    from harness.adapters import load

    selection = suite.active_selection()
    if selection is not None and not selection.includes(kind, framework, device, dtype, shape,
                                                        pass_):
        raise NotImplementedError(f"not in the {selection.source} selection "
                                  f"(set {suite.SELECTION_ENV}=all to run every cell)")
    cls = load(framework)
    if not cls.installed():
        raise NotImplementedError(f"{framework} is not installed ({cls.install_hint})")
    reason = cls.unsupported_reason(device, dtype)
    if reason:
        raise NotImplementedError(reason)
    if device == "gpu" and not suite.gpu_present():
        raise NotImplementedError("no GPU found (nvidia-smi lists none)")
    threads = suite.bench_threads(selection)
    if framework not in _adapters:
        # As the correctness workers do: JAX would take 75% of GPU memory, TF all of it.
        # (Not the workers' OMP_WAIT_POLICY: timings keep the frameworks' own threading.)
        for key, value in GPU_MEMORY_ENV.items():
            os.environ.setdefault(key, value)
        _adapters[framework] = cls(pin_precision=True, threads=threads)
    a = _adapters[framework]
    reason = a.device_reason(device)
    if reason:
        raise NotImplementedError(reason)
    if a.threads() != threads:
        raise RuntimeError(f"{framework} runs {a.threads()} CPU threads; expected {threads} "
                           f"(the same for every framework, from {suite.THREADS_ENV})")
    compute = a.precision(device, dtype)
    if compute != "ieee":
        raise RuntimeError(f"{framework} computes float32 matmul in {compute!r} on {device}; "
                           "expected 'ieee' (pinned full precision)")
    return a


def case(shape: str) -> Any:
    """The `harness.cases.Case` of a shape id: X is M x K, W is K x N; "bB:MxKxN" is a
    batch of B products sharing one W (X is B x M x K): dW sums over B*M terms."""
    from harness.cases import Case

    batch, _, dims = shape.rpartition(":")
    m, k, n = shapes.parse_shape(dims)
    if batch:
        if not (batch.startswith("b") and batch[1:].isdigit() and int(batch[1:]) > 0):
            raise ValueError(f"shape id {shape!r}: the batch prefix must be bN: (e.g. "
                             "'b256:64x64x64')")
        return Case(shape, (int(batch[1:]), m, k), (k, n))
    return Case(shape, (m, k), (k, n))


def inputs(shape: str, dtype: str) -> Any:
    """`harness.cases.Inputs` of the product `shape` in `dtype`, as the correctness side."""
    from harness.cases import make_inputs
    from harness.dtypes import get

    return make_inputs(case(shape), get(dtype), suite.SEED)


def cell(kind: str, framework: str, device: str, dtype: str, shape: str, pass_: str,
         calibrate: bool = True) -> Cell:
    """The cached, warmed-up cell (built on the first `setup` of the process)."""
    key = (kind, framework, device, dtype, shape, pass_)
    if key in _cells:
        return _cells[key]
    a = adapter(kind, framework, device, dtype, shape, pass_ if kind == "time" else None)
    data = inputs(shape, dtype)
    x, w, g = (a.to_device(v, device) for v in (data.x, data.w, data.g))
    call = _pass(a, pass_, x, w, g)
    call()  # warm-up: JIT compilation, first-touch allocations, thread pools
    number = _calibrate(call) if calibrate else 1
    _cells[key] = Cell(a, x, w, g, call, number, clock(device))
    return _cells[key]


def _pass(a: Any, pass_: str, x: Any, w: Any, g: Any) -> Callable[[], None]:
    if pass_ == "forward":
        def forward() -> None:
            a.sync((a.forward(x, w),))

        return forward
    if pass_ == "backward":
        # The backward pass alone, given a saved forward: the pullback is called repeatedly.
        y, f = a.pullback(x, w)
        a.sync((y,))

        def backward() -> None:
            a.sync(f(g))

        return backward
    if pass_ == "forward_backward":
        def forward_backward() -> None:
            a.sync(a.vjp(x, w, g))

        return forward_backward
    raise ValueError(f"unknown pass {pass_!r}; allowed: {', '.join(shapes.PASSES)}")


def _calibrate(call: Callable[[], None]) -> int:
    """Calls per sample so that a sample lasts about SAMPLE_S (one call at least)."""
    n, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(n):
            call()
        elapsed = time.perf_counter() - start
        if elapsed >= SAMPLE_S / 4 or n >= MAX_NUMBER:
            break
        n *= 4
    return max(1, min(MAX_NUMBER, round(SAMPLE_S * n / elapsed)))


def error_ratios(framework: str, device: str, dtype: str, shape: str) -> dict[str, float]:
    """max |got - ref| / bound of dX and dW, judged exactly as `verify` judges them."""
    out = outcomes("accuracy", framework, device, dtype, shape)
    return {q: out[q][0] for q in ("dX", "dW")}


def outcomes(kind: str, framework: str, device: str, dtype: str,
             shape: str) -> dict[str, tuple[float, float]]:
    """(error ratio, effective bits) of Y, dX and dW, judged exactly as `verify` judges
    them: the ratio is max |got - ref| / bound (<= 1 passes), the bits -log2 of the
    relative RMS error (harness.checks.statistics)."""
    key = (kind, framework, device, dtype, shape)
    if key in _outcomes:
        return _outcomes[key]
    from harness.checks import check
    from harness.dtypes import get
    from harness.reference import reference
    from harness.tolerance import params

    a = adapter(kind, framework, device, dtype, shape)
    data = inputs(shape, dtype)
    got = a.run(data, device)
    ref = reference(data)
    geo = case(shape).geometry
    rounded = type(a).capabilities.rounded_broadcast_partials
    out: dict[str, tuple[float, float]] = {}
    for q in ("Y", "dX", "dW"):
        p = params(q, geo, rounded_partials=rounded)
        o = check(q, got[q], ref.values[q], ref.scale[q], get(dtype), p,
                  a.precision(device, dtype))
        if o.ratio != o.ratio:  # NaN: wrong shape, dtype or NaN/Inf pattern, not a number
            raise RuntimeError(f"{framework} {device} {dtype} {shape} {q}: {o.reason}")
        out[q] = (o.ratio, o.effective_bits)
    _outcomes[key] = out
    return out


def device_peak_bytes(framework: str, c: Cell) -> int:
    """Peak GPU memory in use while running the cell's pass once, inputs included."""
    c.adapter.reset_peak_memory("gpu")
    c.call()
    return c.adapter.peak_memory("gpu")
