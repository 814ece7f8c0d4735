"""Does `matmul-harness compare` catch a real 10% slowdown, and only that, on this machine?

    python benchmarks/planted_regression.py [--rounds 400] [--budget 300] [--repeats N]
                                            [--clock cpu|wall] [--only no-op|10|5]

In a temporary clone of this repository (HEAD), commits on top of HEAD:

- a no-op: a comment added to the numpy adapter;
- planted slowdowns: numpy's forward computes its product a second time on every tenth
  call (+10% work on average) or every twentieth (+5%); the product it returns is
  unchanged. A real slowdown of the adapter's code path, timed like any other.

Then `matmul-harness compare --rounds N` (two workers timing the two trees alternately,
paired verdicts) of HEAD against each, on numpy float32 256x256x256 forward, one thread,
threshold 1.05. Expected: the no-op is never a regression (exit 0); +10% is a resolved
regression (exit 1). +5% sits at the threshold: either answer is right, for information.
Prints, per run, the exit code, the rounds used, the wall time, the verdict line and the
load average before and after. Not a test: it takes minutes and measures the machine.
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


def slow(every: int) -> str:
    """numpy's forward, computing its product once more every `every`-th call."""
    return ("    def forward(self, x: Any, w: Any) -> Any:\n"
            "        self._calls = getattr(self, '_calls', 0) + 1\n"
            f"        if self._calls % {every} == 0:  # planted: the product again\n"
            "            np.matmul(x, w)\n"
            "        return np.matmul(x, w)\n")


PLANTS = {"10": 10, "5": 20}  # percent slower -> every how many calls the product again
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
           "--clock", args.clock, "--threshold", "1.05"]
    env = {**os.environ, "PYTHONPATH": str(clone)}
    out = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True)
    return out.returncode, out.stdout + out.stderr


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=400)
    p.add_argument("--budget", type=float, default=300.0)
    p.add_argument("--repeats", type=int, default=1, help="run every comparison this often")
    p.add_argument("--only", choices=("no-op", *PLANTS), action="append",
                   help="run these comparisons only (repeatable)")
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
        runs = [("no-op", commit(clone, "no-op"), 0)]
        for pct, every in PLANTS.items():
            git(clone, "checkout", "-q", base)
            path.write_text(text.replace(FORWARD, slow(every)), encoding="utf-8")
            runs.append((pct, commit(clone, f"planted {pct}% slowdown"), 1))
        for i in range(args.repeats):
            for name, new, want in runs:
                if args.only and name not in args.only:
                    continue
                load0 = os.getloadavg()[0]
                start = time.monotonic()
                code, out = compare(clone, base, new, args)
                used = [ln for ln in out.splitlines() if "rounds measured" in ln]
                lines = [ln for ln in out.splitlines()
                         if ln.startswith(("Square", "compare: 1 cells", "matmul-harness"))]
                label = "no-op" if name == "no-op" else f"planted +{name}%"
                print(f"[{i + 1}] {label}: exit {code} (expected {want}"
                      f"{'' if name != '5' else ', at the threshold: either'}), "
                      f"{used[-1].split(':')[1].strip() if used else 'no round'}, "
                      f"{time.monotonic() - start:.0f} s, load {load0:.1f} -> "
                      f"{os.getloadavg()[0]:.1f}")
                for ln in lines:
                    print(f"    {ln}")
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
