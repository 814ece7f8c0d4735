"""The long false-failure campaign: random matmul shapes through every framework's autodiff.

    python benchmarks/campaign.py --checks 200000 --seed 0 [--frameworks numpy,torch,...]

Every framework's real autodiff (through its adapter) computes Y, dX, dW, dY, d2W and the
adjoint identity of random matmul-compatible shape pairs (K = 1, every 1-D form, zero-size
dims, broadcast batch dims up to 8-D with size-1 dims on either side, odd and tiny sizes,
long K) in every dtype it supports, and `harness.judge.judge` checks them exactly as
`verify` does. Frameworks are assumed correct, so every `fail` is a false failure of the
checker (or a framework bug worth a look): it is printed with its shapes, and belongs in
configs/regressions.yaml. Prints checks run, false failures and the worst ratio per
framework × dtype × quantity.

Each framework runs in its own subprocess (importing torch, TensorFlow and JAX into one
process is fragile), one example after another; a process that crashes (TensorFlow's
oneDNN heap corruption on some shapes) costs only its example, which is reported with its
last words, and a fresh process continues from the next one. The same seed draws the same
shapes, so a run is reproducible and can be split into chunks with --start.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Shape = tuple[int, ...]
Pick = Callable[[int, int], int]  # an integer in [lo, hi], both included

FRAMEWORKS = ("numpy", "torch", "jax", "tensorflow")
MAX_ELEMENTS = 20_000  # X, W and Y together: keeps one example to milliseconds
MAX_DIMS = 8


def _size(pick: Pick, *, long: bool = False) -> int:
    """A core dim: 0, 1, tiny, odd, medium or (for K) long."""
    kind = pick(0, 19)
    if kind == 0:
        return 0
    if kind <= 6:
        return 1
    if kind <= 12:
        return pick(2, 8)
    if kind <= 16:
        return 2 * pick(4, 20) + 1  # odd: 9 .. 41
    if kind <= 18 or not long:
        return pick(42, 130)
    return pick(500, 4100)


def shape_pair(pick: Pick) -> tuple[Shape, Shape]:
    """Two shapes numpy's matmul accepts, drawn with `pick` (hypothesis or a numpy RNG).

    Covers K = 1, the four 1-D forms, zero-size dims, broadcast batch dims (up to 8-D in
    all) with size-1 dims on either side and ranks that differ, tiny, odd and long sizes.
    """
    form = pick(0, 7)  # 0: X 1-D, 1: W 1-D, 2: both 1-D, else both at least 2-D
    core = [_size(pick), _size(pick, long=True), _size(pick)]  # m, k, n
    rank = pick(0, MAX_DIMS - 2)
    batch = [pick(0, 8) if pick(0, 29) == 0 else pick(1, 3) if pick(0, 1) else pick(1, 8)
             for _ in range(rank)]
    sides = [pick(0, 3) for _ in range(rank)]  # 0: both full, 1: X has 1, 2: W has 1, 3: both
    drop_x, drop_w = pick(0, rank), pick(0, rank)  # either side may lack leading dims

    def build() -> tuple[Shape, Shape]:
        m, k, n = core
        xb = [1 if s in (1, 3) else b for b, s in zip(batch, sides, strict=True)][drop_x:]
        wb = [1 if s in (2, 3) else b for b, s in zip(batch, sides, strict=True)][drop_w:]
        x: Shape = (k,) if form in (0, 2) else (*xb, m, k)
        w: Shape = (k,) if form in (1, 2) else (*wb, k, n)
        return x, w

    while _elements(*build()) > MAX_ELEMENTS:  # halve the largest size until small enough
        sizes = batch + core
        i = sizes.index(max(sizes))
        if i < len(batch):
            batch[i] //= 2
        else:
            core[i - len(batch)] //= 2
    return build()


def _elements(x: Shape, w: Shape) -> int:
    from harness.cases import geometry

    return math.prod(x) + math.prod(w) + math.prod(geometry(x, w).y_shape)


def rng_pick(rng: np.random.Generator) -> Pick:
    return lambda lo, hi: int(rng.integers(lo, hi + 1))


def example(seed: int, index: int, shapes: int = 0) -> tuple[Shape, Shape, int]:
    """The `index`-th (X shape, W shape, value seed) of a campaign with `seed`.

    With `shapes` > 0 the shapes cycle through a pool of that many, with new values on
    every pass: JAX compiles once per shape and dtype, which would otherwise be most of
    its time.
    """
    i = index % shapes if shapes else index
    x, w = shape_pair(rng_pick(np.random.default_rng([seed, i])))
    return x, w, seed + (index // shapes if shapes else 0)


def check_example(adapter: Any, adapter_cls: Any, x: Shape, w: Shape, dtype: str,
                  seed: int, name: str = "") -> list[Any]:
    """Rows of one framework × dtype × shape pair, judged as `verify` judges them."""
    from harness.cases import Case, make_inputs, make_tangents
    from harness.dtypes import get
    from harness.errors import describe
    from harness.judge import judge, uniform_rows
    from harness.plan import Cell

    case = Case(name or f"{'x'.join(map(str, x))}@{'x'.join(map(str, w))}", x, w)
    cell = Cell(adapter_cls.name, "pinned", "cpu", dtype, case)
    d = get(dtype)
    precision = adapter.precision("cpu", dtype)
    try:
        out, errors = adapter.run_all(make_inputs(case, d, seed), make_tangents(case, d, seed),
                                      "cpu")
    except Exception as exc:
        return uniform_rows(cell, "error", describe(exc), "", adapter_cls, precision)
    return judge(cell, out, errors, adapter_cls, precision, "", seed)


REGRESSIONS = Path(__file__).resolve().parent.parent / "configs" / "regressions.yaml"
REGRESSION_KEYS = {"name", "x", "w", "frameworks", "dtypes", "quantities", "seeds", "why",
                   "isolate"}


def load_regressions(path: Path = REGRESSIONS) -> list[dict[str, Any]]:
    """The named regression cases; ValueError names a malformed entry and what is allowed."""
    import yaml

    from harness.cases import geometry
    from harness.dtypes import DTYPES

    entries = yaml.safe_load(path.read_text()) or []
    for e in entries:
        extra = set(e) - REGRESSION_KEYS
        missing = REGRESSION_KEYS - {"isolate"} - set(e)
        if extra or missing:
            raise ValueError(f"{path}: entry {e.get('name')!r} has keys {sorted(e)}; "
                             f"expected {sorted(REGRESSION_KEYS)} (isolate optional)")
        geometry(tuple(e["x"]), tuple(e["w"]))  # ShapeError if matmul would refuse them
        bad = set(e["frameworks"]) - set(FRAMEWORKS) | set(e["dtypes"]) - set(DTYPES)
        if bad:
            raise ValueError(f"{path}: entry {e['name']!r} names unknown {sorted(bad)}")
    return list(entries)


@functools.cache
def in_process(framework: str) -> Any:
    """One adapter per framework for in-process use (tests), with the framework's own
    thread settings: TensorFlow refuses a thread cap once another user has started it."""
    from harness.adapters import load

    return load(framework)()


def run_regression(entry: dict[str, Any], framework: str) -> list[str]:
    """Every non-passing row of one regression case on one framework, as text."""
    adapter = in_process(framework)
    cls = type(adapter)
    bad = []
    for dtype in entry["dtypes"]:
        if cls.unsupported_reason("cpu", dtype):
            continue
        for seed in range(entry["seeds"]):
            for r in check_example(adapter, cls, tuple(entry["x"]), tuple(entry["w"]), dtype,
                                   seed, entry["name"]):
                if r.status in ("fail", "error"):
                    bad.append(f"{entry['name']} {framework} {dtype} seed {seed} "
                               f"{r.quantity}: {r.status}: {r.reason}")
    return bad


def _worker(framework: str, seed: int, start: int, stop: int, shapes: int) -> None:
    """Run examples start..stop-1 of one framework; one JSON line per example on stdout."""
    from harness.adapters import load

    cls = load(framework)
    adapter = cls(threads=1)
    dtypes = [d for d in cls.capabilities.dtypes if not cls.unsupported_reason("cpu", d)]
    for i in range(start, stop):
        x, w, values = example(seed, i, shapes)
        print(json.dumps({"start": i, "x": x, "w": w, "values": values}), flush=True)
        rows = []
        for dtype in dtypes:
            for r in check_example(adapter, cls, x, w, dtype, values):
                rows.append([dtype, r.quantity, r.status, r.ratio, r.reason, r.note])
        print(json.dumps({"done": i, "rows": rows}), flush=True)


class Tally:
    """Counts, worst ratios and every false failure of a campaign."""

    def __init__(self) -> None:
        self.status: Counter[tuple[str, str]] = Counter()  # (framework, status)
        self.checks: Counter[tuple[str, str, str]] = Counter()
        self.worst: dict[tuple[str, str, str], float] = defaultdict(float)
        self.failures: list[dict[str, Any]] = []
        self.errors: Counter[tuple[str, str]] = Counter()  # (framework, reason head)
        self.crashes: list[dict[str, Any]] = []
        self.flags: Counter[tuple[str, str]] = Counter()  # (framework, note kind)

    def add(self, framework: str, ex: dict[str, Any], rows: list[list[Any]]) -> None:
        for dtype, q, status, ratio, reason, note in rows:
            self.status[(framework, status)] += 1
            key = (framework, dtype, q)
            if status in ("pass", "fail"):
                self.checks[key] += 1
                if ratio == ratio:
                    self.worst[key] = max(self.worst[key], ratio)
            if status == "fail":
                self.failures.append({"framework": framework, "dtype": dtype, "quantity": q,
                                      "x": ex["x"], "w": ex["w"], "seed": ex["values"],
                                      "reason": reason})
            elif status == "error":
                self.errors[(framework, reason[:90])] += 1
            if note:
                self.flags[(framework, note.split(":")[0][:40])] += 1

    def total(self) -> int:
        return sum(self.checks.values())

    def report(self) -> str:
        lines = [f"checks run: {self.total()}  false failures: {len(self.failures)}  "
                 f"crashes: {len(self.crashes)}"]
        for fw in sorted({k[0] for k in self.status}):
            counts = ", ".join(f"{s} {n}" for (f, s), n in sorted(self.status.items())
                               if f == fw)
            lines.append(f"  {fw}: {counts}")
        lines.append("\nworst ratio (checks) per framework × dtype × quantity:")
        quantities = ("Y", "dX", "dW", "dY", "adjoint", "d2W")
        lines.append(f"{'framework':<11} {'dtype':<11}" + "".join(f"{q:>17}" for q in quantities))
        for fw, dtype in sorted({k[:2] for k in self.checks}):
            cells = []
            for q in quantities:
                n = self.checks.get((fw, dtype, q), 0)
                cells.append(f"{self.worst[(fw, dtype, q)]:.3g} ({n})" if n else "-")
            lines.append(f"{fw:<11} {dtype:<11}" + "".join(f"{c:>17}" for c in cells))
        for f in self.failures:
            lines.append(f"FALSE FAILURE {f['framework']} {f['dtype']} {f['quantity']} "
                         f"{tuple(f['x'])} @ {tuple(f['w'])} seed {f['seed']}: {f['reason']}")
        for c in self.crashes:
            lines.append(f"CRASH {c['framework']} {tuple(c['x'])} @ {tuple(c['w'])}: "
                         f"{c['reason']}")
        for (fw, why), n in sorted(self.errors.items()):
            lines.append(f"error ×{n} {fw}: {why}")
        for (fw, kind), n in sorted(self.flags.items()):
            lines.append(f"note ×{n} {fw}: {kind}")
        return "\n".join(lines)


def run_framework(framework: str, seed: int, start: int, stop: int, shapes: int,
                  tally: Tally) -> None:
    """Examples start..stop-1 of `framework` in subprocesses, restarted after a crash."""
    from harness.orchestrator import _tail

    i = start
    while i < stop:
        log = Path(f"/tmp/campaign-{framework}-{seed}-{i}.log")
        cmd = [sys.executable, __file__, "--worker", framework, "--seed", str(seed),
               "--start", str(i), "--stop", str(stop), "--shapes", str(shapes)]
        current: dict[str, Any] | None = None
        with log.open("w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                msg = json.loads(line)
                if "start" in msg:
                    current = msg
                else:
                    assert current is not None
                    tally.add(framework, current, msg["rows"])
                    i = msg["done"] + 1
                    current = None
            code = proc.wait()
        if code != 0 and current is not None:
            tally.crashes.append({"framework": framework, "x": current["x"],
                                  "w": current["w"], "values": current["values"],
                                  "reason": f"exit status {code}: {_tail(log)}"})
            i = current["start"] + 1
        elif code != 0:
            raise RuntimeError(f"{framework} worker failed before its first example: "
                               f"{_tail(log)}")
        log.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checks", type=int, default=20_000,
                    help="stop once about this many checks have run (default 20000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first example index (chunks)")
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    ap.add_argument("--batch", type=int, default=200,
                    help="examples per framework per round (and per worker process)")
    ap.add_argument("--shapes", type=int, default=0,
                    help="cycle through this many shapes, new values each pass (0: all new)")
    ap.add_argument("--json", type=Path, help="also write the failures and counts here")
    ap.add_argument("--regression", help="run the named case of configs/regressions.yaml "
                    "on --frameworks instead; exit 1 if any row fails")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--stop", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.seed, args.start, args.stop, args.shapes)
        return 0
    frameworks = [f for f in args.frameworks.split(",") if f]
    unknown = sorted(set(frameworks) - set(FRAMEWORKS))
    if unknown:
        print(f"--frameworks: unknown {', '.join(unknown)}; allowed: {', '.join(FRAMEWORKS)}",
              file=sys.stderr)
        return 2
    if args.regression:
        entry = next((e for e in load_regressions() if e["name"] == args.regression), None)
        if entry is None:
            print(f"--regression: no case {args.regression!r} in {REGRESSIONS}",
                  file=sys.stderr)
            return 2
        bad = [line for fw in frameworks if fw in entry["frameworks"]
               for line in run_regression(entry, fw)]
        print("\n".join(bad) or f"{args.regression}: every row passes")
        return 1 if bad else 0
    tally, began, i = Tally(), time.monotonic(), args.start
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `timeout`: report so far
    try:
        while tally.total() < args.checks:  # rounds: every framework gets the same shapes
            for fw in frameworks:
                run_framework(fw, args.seed, i, i + args.batch, args.shapes, tally)
            i += args.batch
            print(f"[{time.monotonic() - began:.0f} s] examples {args.start}..{i - 1}: "
                  f"{tally.total()} checks, {len(tally.failures)} false failures", flush=True)
    except KeyboardInterrupt:
        print("interrupted: the counts below cover the rounds that finished")
    print(tally.report())
    print(f"seed {args.seed}, examples {args.start}..{i - 1}, "
          f"wall {time.monotonic() - began:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "seed": args.seed, "start": args.start, "stop": i, "shapes": args.shapes,
            "checks": tally.total(),
            "failures": tally.failures, "crashes": tally.crashes,
            "worst": {"|".join(k): v for k, v in tally.worst.items()},
            "counts": {"|".join(k): v for k, v in tally.checks.items()},
        }, indent=1))
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
