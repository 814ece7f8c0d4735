"""Measures the default `matmul-harness verify` run: wall time and orchestrator peak RSS.

    python benchmarks/verify_run.py [--repeat 3] [-- extra verify args]

Each repeat runs the whole default config in a fresh interpreter (as a user would) and
reads that process's own peak RSS (`ru_maxrss` of RUSAGE_SELF: the orchestrator alone, not
its framework workers). The first run starts with an empty XLA compilation cache (a fresh
machine: JAX compiles every program), the others reuse it (every later run). Targets
(issue 3): wall <= 30 s and RSS <= 200 MB on the project's 2-core machine. Not a test:
timings belong in benchmarks, never in unit tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = """
import json, resource, sys
from harness.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_once(extra: list[str], cache: str) -> tuple[float, float, int]:
    env = {**os.environ, "MATMUL_HARNESS_XLA_CACHE": cache}
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, "verify", "--out", out, *extra],
            capture_output=True, text=True, check=False, env=env,
        )
        wall = time.perf_counter() - start
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    return wall, float(last["rss_mb"]), int(last["code"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("extra", nargs="*", help="extra verify arguments (after --)")
    args = p.parse_args()
    walls, rsss = [], []
    with tempfile.TemporaryDirectory() as cache:
        for i in range(args.repeat):
            wall, rss, code = run_once(args.extra, cache)
            walls.append(wall)
            rsss.append(rss)
            state = "cold XLA cache" if i == 0 else "warm XLA cache"
            print(f"run {i + 1} ({state}): wall {wall:.1f} s, orchestrator peak RSS "
                  f"{rss:.0f} MB, exit {code}")
    warm = walls[1:] or walls
    print(f"cold wall {walls[0]:.1f} s; warm median wall {statistics.median(warm):.1f} s "
          f"(target <= 30 s); max orchestrator peak RSS {max(rsss):.0f} MB (target <= 200 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
