"""The full sharded-matmul matrix: every layout, float32/float64/bfloat16, JAX and torch.

    python benchmarks/mesh_matrix.py [--trials 10] [--config configs/mesh.yaml]

Runs `matmul-harness verify-mesh` on the config (default: the embedded configs/mesh.yaml,
4 host CPU devices, 4 gloo ranks for torch) and `matmul-harness selftest-mesh`, each in a
fresh interpreter, and prints their summaries and wall times. Not a test: the suite runs
the small profile (tests/test_mesh.py); this is the whole matrix (minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time


def step(args: list[str]) -> tuple[int, float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, check=False)
    return proc.returncode, time.perf_counter() - start, proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--config", default=None)
    a = ap.parse_args()
    worst = 0
    with tempfile.TemporaryDirectory() as out:
        verify = ["verify-mesh", "--out", f"{out}/verify"]
        for name, args in (("verify-mesh", verify + (["--config", a.config] if a.config else [])),
                           ("selftest-mesh", ["selftest-mesh", "--trials", str(a.trials),
                                              "--out", f"{out}/selftest"])):
            code, wall, text = step(args)
            print(text.rstrip())
            print(f"{name}: exit {code}, {wall:.1f} s wall\n")
            worst = max(worst, code)
    return worst


if __name__ == "__main__":
    sys.exit(main())
