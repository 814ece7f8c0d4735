"""What the harness's timed call costs over a bare framework loop, measured in one process.

    python -m benchmarks.overhead [--threads N] [--rounds R] [--framework NAME]...
    python benchmarks/overhead.py ...

For each framework, at 512x512x512 and 8x8x8 float32 on the CPU (forward pass), three ways
of timing the same product on the same arrays, interleaved round by round so machine noise
hits them alike:

- `bare`: a plain loop of the framework's own call (`np.matmul`, `torch.matmul`,
  `jnp.matmul(...).block_until_ready()`, `tnp.matmul`), timed as one block;
- `call`: a plain loop of the benchmark's timed call (adapter method + device sync);
- `asv`: `matmul.Square.time_matmul` driven by asv_runner's own TimeBenchmark, setup between
  calls and all (what `asv run` records).

It prints medians per call and the paired overhead of `asv` over `bare` (median over rounds
of the per-round ratio and difference). Targets: at most 2% at 512x512x512 and at most 5 us
per call at 8x8x8. Not an asv benchmark: asv imports this module but finds nothing to run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common, matmul
from harness import suite

SHAPES = ("512x512x512", "8x8x8")
SAMPLES = 5  # per way and round


def bare_call(framework: str, a: Any, x: Any, w: Any) -> Callable[[], Any]:
    """The framework's own product on the same arrays, with the wait it needs (JAX)."""
    if framework == "numpy":
        import numpy as np

        return lambda: np.matmul(x, w)
    if framework == "torch":
        return lambda: a.torch.matmul(x, w)
    if framework == "jax":
        jnp = a.jnp
        return lambda: jnp.matmul(x, w).block_until_ready()
    if framework == "tensorflow":
        tnp_matmul = a.tf.experimental.numpy.matmul
        return lambda: tnp_matmul(x, w)
    raise ValueError(f"no bare loop for {framework!r}")


def block(fn: Callable[[], Any], number: int) -> float:
    """Median seconds per call over SAMPLES blocks of `number` calls, GC off as in asv."""
    out = []
    gc.disable()
    try:
        for _ in range(SAMPLES):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            out.append((time.perf_counter() - start) / number)
    finally:
        gc.enable()
    return statistics.median(out)


def asv_benchmark(framework: str, shape: str) -> Any:
    """asv_runner's TimeBenchmark over matmul.Square for one cell (any shape id)."""
    from asv_runner.benchmarks.time import TimeBenchmark

    inst = matmul.Square()
    inst.params = [[framework], ["cpu"], ["float32"], [shape], ["forward"]]
    func = inst.time_matmul
    b = TimeBenchmark("matmul.Square.time_matmul", func, [func, inst, matmul])
    b.set_param_idx(0)
    if b.do_setup():
        raise RuntimeError(f"{framework} {shape}: skipped by setup (n/a)")
    return b


def measure(framework: str, shape: str, rounds: int) -> dict[str, float]:
    b = asv_benchmark(framework, shape)
    c = common.cell("time", framework, "cpu", "float32", shape, "forward")
    bare = bare_call(framework, c.adapter, c.x, c.w)
    for _ in range(3):
        bare()
    ways: dict[str, list[float]] = {"bare": [], "call": [], "asv": []}
    for _ in range(rounds):
        ways["bare"].append(block(bare, c.number))
        ways["call"].append(block(c.call, c.number))
        with contextlib.redirect_stderr(io.StringIO()):  # asv_runner's per-run notice
            ways["asv"].append(statistics.median(b.do_run()["samples"]))
    b.do_teardown()
    ratios = [s / r for s, r in zip(ways["asv"], ways["bare"], strict=True)]
    diffs = [s - r for s, r in zip(ways["asv"], ways["bare"], strict=True)]
    out = {k: statistics.median(v) for k, v in ways.items()}
    out.update(ratio=statistics.median(ratios), diff=statistics.median(diffs),
               number=float(c.number))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for every framework (default: 1, the least noisy)")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default: 15)")
    p.add_argument("--framework", action="append", choices=suite.frameworks(),
                   help="only this framework (repeatable; default: all installed)")
    args = p.parse_args(argv)
    os.environ[suite.SELECTION_ENV] = "all"  # 8x8x8 is outside the suite's grid
    os.environ[suite.THREADS_ENV] = str(args.threads)
    from harness.adapters import load

    # torch before tensorflow: the reverse order can crash (Keras' conftest notes it)
    names = [f for f in args.framework or suite.frameworks() if load(f).installed()]
    print(f"float32 forward on the CPU, {args.threads} thread(s), {args.rounds} interleaved "
          f"rounds of {SAMPLES} samples; medians per call")
    print(f"{'framework':11} {'shape':12} {'calls':>6} {'bare':>10} {'call':>10} {'asv':>10} "
          f"{'asv/bare':>9} {'asv-bare':>10}")
    for fw in names:
        for shape in SHAPES:
            r = measure(fw, shape, args.rounds)
            print(f"{fw:11} {shape:12} {int(r['number']):6d} {_us(r['bare'])} {_us(r['call'])} "
                  f"{_us(r['asv'])} {100 * (r['ratio'] - 1):+8.2f}% {_us(r['diff'])}",
                  flush=True)
    return 0


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:7.2f} us"


if __name__ == "__main__":
    sys.exit(main())
