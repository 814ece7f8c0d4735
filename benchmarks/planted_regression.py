"""Does `matmul-harness compare` catch a real 10% slowdown, and only that, on this machine?

    python benchmarks/planted_regression.py [--rounds 20] [--budget 900] [--repeats 1]
                                            [--clock cpu|wall]

In a temporary clone of this repository (HEAD), two commits on top of HEAD:

- a no-op: a comment added to the numpy adapter;
- a planted slowdown: numpy's forward computes its product a second time on every tenth
  call (10% more work on average; the product it returns is unchanged).

Then `matmul-harness compare --rounds N` (interleaved asv runs, paired verdicts) of
HEAD against each, on numpy float32 256x256x256 forward, one thread. Expected: the no-op is
"not resolved" (or resolved under the threshold) with exit 0, never a regression; the
slowdown is a resolved regression beyond 1.05 with exit 1. Prints each verdict, the exit
codes and the wall time. Not a test: it takes minutes and measures the machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADAPTER = "harness/adapters/numpy.py"
FORWARD = "    def forward(self, x: Any, w: Any) -> Any:\n        return np.matmul(x, w)\n"
SLOW = ("    def forward(self, x: Any, w: Any) -> Any:\n"
        "        self._calls = getattr(self, '_calls', 0) + 1\n"
        "        if self._calls % 10 == 0:  # planted: the product again every 10th call\n"
        "            np.matmul(x, w)\n"
        "        return np.matmul(x, w)\n")
CONFIG = ("frameworks: [numpy]\nkinds: [time]\npasses: [forward]\nthreads: 1\n"
          "cpu: {dtypes: [float32], shapes: [256x256x256]}\n")


def git(clone: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(clone), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(clone: Path, message: str) -> str:
    git(clone, "-c", "user.name=planted", "-c", "user.email=planted@example.invalid",
        "commit", "-qam", message)
    return git(clone, "rev-parse", "HEAD")


def compare(clone: Path, base: str, new: str, args: argparse.Namespace) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "harness", "compare", base, new, "--rounds", str(args.rounds),
           "--budget", str(args.budget), "--config", str(clone / "planted.yaml"),
           "--clock", args.clock]
    env = {**os.environ, "PYTHONPATH": str(clone)}
    out = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True)
    return out.returncode, out.stdout + out.stderr


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--budget", type=float, default=900.0)
    p.add_argument("--repeats", type=int, default=1, help="run both comparisons this often")
    p.add_argument("--only", choices=("no-op", "planted"), help="run one comparison only")
    p.add_argument("--clock", choices=("wall", "cpu"), default="cpu",
                   help="compare --clock (default: cpu, steadier on a shared machine)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="planted-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        git(clone, "checkout", "-q", git(Path(ROOT), "rev-parse", "HEAD"))
        (clone / "planted.yaml").write_text(CONFIG, encoding="utf-8")
        base = git(clone, "rev-parse", "HEAD")
        path = clone / ADAPTER
        text = path.read_text(encoding="utf-8")
        assert FORWARD in text, "the numpy adapter's forward changed; update this script"
        path.write_text(text + "# no-op: a comment only\n", encoding="utf-8")
        noop = commit(clone, "no-op")
        git(clone, "checkout", "-q", base)
        path.write_text(text.replace(FORWARD, SLOW), encoding="utf-8")
        slow = commit(clone, "planted 10% slowdown")
        for i in range(args.repeats):
            for name, new, want in (("no-op", noop, 0), ("planted +10%", slow, 1)):
                if args.only and not name.startswith(args.only):
                    continue
                start = time.monotonic()
                code, out = compare(clone, base, new, args)
                lines = [ln for ln in out.splitlines() if ln.startswith(("Square", "compare:"))]
                print(f"[{i + 1}] {name}: exit {code} (expected {want}), "
                      f"{time.monotonic() - start:.0f} s")
                for ln in lines[-3:]:
                    print(f"    {ln}")
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
