"""The Ray executor against the local one on the same config: verdicts and wall time.

    python benchmarks/ray_overhead.py [--config FILE] [--repeat N] [-- extra verify args]

Each repeat runs `matmul-harness verify` twice in fresh interpreters, local then Ray
(alternating which goes first from one repeat to the next, so a drift in the machine's
load is shared), and reports:
- whether the verdict columns (framework, device, dtype, case, quantity, status) are
  identical between the two executors, row for row, in every repeat; and how many rows
  differ in their measured values (ratio, max_abs_err) or reason: a Ray task declares
  one CPU, and Ray runs it with OMP_NUM_THREADS=1, so a BLAS sums in another order than
  a local worker using every core (values change within the bound, verdicts must not),
  and a framework's error text may name another operand first;
- each wall time (the Ray one includes starting the local Ray cluster and shutting it
  down: what a user waits for), their medians and ratio;
- the 1-minute load average before and after, since the machine may be shared.
Without --config: the embedded default config. Not a test: timings belong here.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VERDICT = ("framework", "device", "dtype", "case", "quantity", "status")
VALUES = ("ratio", "max_abs_err", "reason")
Rows = list[dict[str, str]]


def run_once(executor: str, extra: list[str]) -> tuple[float, int, Rows, str]:
    """Wall seconds, exit code, rows and printed problems of one `verify` in a fresh
    interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "o"
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "harness", "verify", "--out", str(out),
             "--executor", executor, *extra],
            capture_output=True, text=True, check=False,
        )
        wall = time.perf_counter() - start
        if proc.returncode not in (0, 1):
            sys.exit(f"verify --executor {executor} exited {proc.returncode}: "
                     f"{proc.stderr.strip()[-2000:]}")
        with (out / "verify.csv").open() as f:
            rows = list(csv.DictReader(f))
    problems = "\n".join(ln for ln in proc.stdout.splitlines()
                         if ln.startswith(("FAIL", "ERROR", "fail", "error")))
    return wall, proc.returncode, rows, problems


def _columns(rows: Rows, names: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [tuple(r[k] for k in names) for r in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML config (default: the embedded default)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("extra", nargs=argparse.REMAINDER, help="-- extra verify arguments")
    args = p.parse_args()
    extra = [a for a in args.extra if a != "--"]
    if args.config:
        extra = ["--config", args.config, *extra]
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    runs: dict[str, list[Rows]] = {"local": [], "ray": []}
    load_before = os.getloadavg()[0]
    for i in range(args.repeat):
        order = ("local", "ray") if i % 2 == 0 else ("ray", "local")
        for executor in order:
            wall, code, rows, problems = run_once(executor, extra)
            walls[executor].append(wall)
            runs[executor].append(rows)
            print(f"repeat {i + 1} {executor:5s}: {wall:7.1f} s, exit {code}, "
                  f"{len(rows)} rows", flush=True)
            if problems:
                print(problems, flush=True)
    load_after = os.getloadavg()[0]
    base = _columns(runs["local"][0], VERDICT)
    same = all(_columns(r, VERDICT) == base for rs in runs.values() for r in rs)
    print(f"verdict columns {', '.join(VERDICT)} identical in all {2 * args.repeat} runs: "
          f"{same} ({len(base)} rows)")
    for col in VALUES:
        local_first = runs["local"][0]
        for name, rs in runs.items():
            for k, rows in enumerate(rs):
                differ = sum(a[col] != b[col] for a, b in zip(local_first, rows, strict=False))
                if differ and (name, k) != ("local", 0):
                    print(f"  {col}: {differ} rows differ between local run 1 and {name} "
                          f"run {k + 1}")
    local, ray = statistics.median(walls["local"]), statistics.median(walls["ray"])
    print(f"median wall: local {local:.1f} s, ray {ray:.1f} s (Ray start-up included), "
          f"ray/local {ray / local:.2f}x, ray-local {ray - local:+.1f} s")
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after, "
          f"{os.cpu_count()} cores")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
