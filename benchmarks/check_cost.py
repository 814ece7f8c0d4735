"""What checking costs next to the computation it checks, at large float32 shapes.

    python benchmarks/check_cost.py                      # the whole table
    python benchmarks/check_cost.py --sizes 2048 --repeat 3

For each square size N (`N×N @ N×N`, float32, CPU, pinned precision) and each check (`auto`,
the default, and `full`; sizes given with `--sampled-sizes` only `sampled`), it runs
`matmul-harness verify` in a fresh interpreter, once with one framework and once with four,
and reports:

- compute: the framework's own work for the cell (its `run_all`: VJP, JVP, second order),
  timed in a separate fresh interpreter with the worker's environment, first call (as in a
  verify worker); for four frameworks, the sum of the four;
- checking: the orchestrator's time inside `judge` (what the run waits for: the reference
  where it is not ready yet, and the checks), summed over the run's cells; and
  `build`: the time spent building references, in `judge` or ahead of it in the
  background while a worker starts up or computes (`References.prefetch`);
- ratio: checking / compute (goal at 2048³, one framework, default settings: <= 1.0);
- verify wall time, and four frameworks' wall / one's (goal at 2048³: <= 1.5);
- the orchestrator's peak RSS (goal at 8192³ sampled: <= 2048 MB, checking <= 10 s);
- the verdicts (every row should pass);
- the orchestrator's CPU seconds (user + system, its workers not counted): on a busy
  machine, where wall times stretch, the checking's cost in CPU time.

Figures are medians over `--repeat` runs. Four frameworks at sizes above `--four-max` are
left out by default (each worker holds several GB at 8192³); raise it on a big machine.
Not a test: timings belong in benchmarks, never in unit tests (docs/checking-at-scale.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

VERIFY_CHILD = """
import json, resource, sys, time
import harness.orchestrator as orch
spent = [0.0]
judge = orch.judge
def timed(*args, **kwargs):
    start = time.perf_counter()
    try:
        return judge(*args, **kwargs)
    finally:
        spent[0] += time.perf_counter() - start
orch.judge = timed
built = []
try:  # absent before issue 15: run on an older checkout, it measures that one
    import harness.refcache as rc
    fill = rc.References._fill
    def timed_fill(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fill(*args, **kwargs)
        finally:
            built.append(time.perf_counter() - start)
    rc.References._fill = timed_fill
except ImportError:
    pass
from harness.cli import main
start = time.perf_counter()
code = main(sys.argv[1:])
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"code": code, "wall_s": time.perf_counter() - start, "check_s": spent[0],
                  "build_s": sum(built), "cpu_s": usage.ru_utime + usage.ru_stime,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

COMPUTE_CHILD = """
import json, os, sys, time
from harness.worker import ENV_DEFAULTS
for k, v in ENV_DEFAULTS.items():
    os.environ.setdefault(k, v)
from harness.adapters import load
from harness.cases import Case, make_inputs, make_tangents
from harness.dtypes import get
name, n = sys.argv[1], int(sys.argv[2])
adapter = load(name)(pin_precision=True)
case, dtype = Case(f"square_{n}", (n, n), (n, n)), get("float32")
inputs, tangents = make_inputs(case, dtype, 0), make_tangents(case, dtype, 0)
start = time.perf_counter()
adapter.run_all(inputs, tangents, "cpu")
print(json.dumps({"compute_s": time.perf_counter() - start}))
"""


STANDIN_OUTPUTS = """
import sys, time, json
import numpy as np
from harness.cases import Case, make_inputs, make_tangents
from harness.dtypes import get
from harness.reference import PRODUCTS, terms, sum_to_shape
n, folder, how = int(sys.argv[1]), sys.argv[2], sys.argv[3]
case, dtype = Case(f"square_{n}", (n, n), (n, n)), get("float32")
inputs, tangents = make_inputs(case, dtype, 0), make_tangents(case, dtype, 0)
start = time.perf_counter()
for q in PRODUCTS:  # each quantity's products in float32, as a framework computes them
    t = terms(q, inputs, tangents)
    if how == "random":  # the same checking work, not the same verdict: every row fails
        out = np.random.default_rng(1).standard_normal(t.final, dtype=np.float32)
    else:
        out = sum(sum_to_shape(np.matmul(a, b), t.shape) for a, b in t.terms).reshape(t.final)
    np.save(f"{folder}/{q}.npy", out.astype(np.float32))
    del out
print(json.dumps({"compute_s": time.perf_counter() - start}))
"""

STANDIN_CHECK = """
import json, resource, sys, time
from harness.adapters import load
from harness.cases import Case
from harness.dtypes import get
from harness.judge import judge, needed
from harness.plan import Cell
from harness.refcache import References
from harness.spill import Spilled, unspill
from threadpoolctl import threadpool_limits
threadpool_limits(1, "blas")  # as the orchestrator runs
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
n, folder, threads = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
case, adapter = Case(f"square_{n}", (n, n), (n, n)), load("torch")
refs = References(0, spill_dir=None)
refs.threads = threads  # the cores the orchestrator has once the worker is done
refs.expect([(case, "float32", "sampled")])
cpu0, start = cpu(), time.perf_counter()
refs.get(case, get("float32"), "sampled", needed(adapter))  # what prefetch builds early
built, cpu1 = time.perf_counter(), cpu()
outputs = unspill({q: Spilled(f"{folder}/{q}.npy") for q in ("Y", "dX", "dW", "dY", "d2W")})
rows = judge(Cell("torch", "pinned", "cpu", "float32", case), outputs, {}, adapter,
             "ieee", "stand-in", 0, refs, "sampled")
end = time.perf_counter()
print(json.dumps({"check_s": end - start, "build_s": built - start, "judge_s": end - built,
                  "cpu_s": cpu() - cpu0, "judge_cpu_s": cpu() - cpu1,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "verdict": " ".join(f"{r.quantity}={r.status}" for r in rows)}))
"""


def stand_in(n: int, how: str, threads: int) -> tuple[float, dict[str, float], str]:
    """(compute, check measurements, verdicts) without a framework: the five results are
    computed in float32 by numpy from reference.terms, saved as the worker saves large
    results, and judged by the orchestrator's own code (References, unspill, judge) in a
    fresh interpreter whose peak RSS is read."""
    with tempfile.TemporaryDirectory() as tmp:
        made = subprocess.run([sys.executable, "-c", STANDIN_OUTPUTS, str(n), tmp, how],
                              capture_output=True, text=True, check=False)
        compute = _last_json(made, f"stand-in results at {n}")["compute_s"]
        judged = subprocess.run([sys.executable, "-c", STANDIN_CHECK, str(n), tmp,
                                 str(threads)],
                                capture_output=True, text=True, check=False)
        data: dict[str, object] = json.loads(judged.stdout.strip().splitlines()[-1]) if (
            judged.stdout.strip()) else {}
        if not data:
            raise RuntimeError(f"stand-in check at {n} failed: {judged.stderr[-2000:]}")
    verdict = str(data.pop("verdict"))
    return compute, {k: float(v) for k, v in data.items()}, verdict  # type: ignore[arg-type]


def _last_json(proc: subprocess.CompletedProcess[str], what: str) -> dict[str, float]:
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            data: dict[str, float] = json.loads(line)
            return data
    raise RuntimeError(f"{what} printed no result; stderr: {proc.stderr[-2000:]}")


def compute_time(framework: str, n: int) -> float:
    proc = subprocess.run([sys.executable, "-c", COMPUTE_CHILD, framework, str(n)],
                          capture_output=True, text=True, check=False)
    return _last_json(proc, f"{framework} at {n}")["compute_s"]


def verify_run(frameworks: list[str], n: int, check: str) -> tuple[dict[str, float], str]:
    """(measurements, verdicts) of one verify run in a fresh interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        cfg: dict[str, object] = {
            "frameworks": frameworks, "devices": ["cpu"], "dtypes": ["float32"],
            "precision": ["pinned"],
            "cases": [{"name": f"square_{n}", "x": [n, n], "w": [n, n]}],
        }
        if check != "auto":  # the default, and older checkouts know no `check` key
            cfg["check"] = check
        config.write_text(json.dumps(cfg))
        out = Path(tmp) / "out"
        proc = subprocess.run(
            [sys.executable, "-c", VERIFY_CHILD, "verify", "--config", str(config), "--out",
             str(out), "--jobs", str(min(4, os.cpu_count() or 1)), "--cell-timeout", "7200"],
            capture_output=True, text=True, check=False, env={**os.environ, "CI": "1"})
        data = _last_json(proc, f"verify {frameworks} at {n}")
        import csv

        with (out / "verify.csv").open() as f:
            rows = list(csv.DictReader(f))
    statuses = Counter(r["status"] for r in rows)
    checks = sorted({r.get("check") or "full" for r in rows if r["status"] == "pass"})
    verdict = "/".join(checks) + " " + " ".join(f"{k}={v}" for k, v in sorted(statuses.items()))
    return data, verdict


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[1024, 2048, 4096])
    p.add_argument("--sampled-sizes", type=int, nargs="*", default=[8192])
    p.add_argument("--checks", nargs="*", default=["auto", "full"])
    p.add_argument("--one", default="torch", help="the single framework (default: torch)")
    p.add_argument("--four", nargs="*", default=["numpy", "torch", "jax", "tensorflow"])
    p.add_argument("--four-max", type=int, default=4096,
                   help="largest size run with four frameworks (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--stand-in", choices=["products", "random"],
                   help="sampled sizes without a framework: numpy computes the five results "
                        "in float32 (products), or draws them at random (random: the same "
                        "checking work and memory, every row fails), and the orchestrator's "
                        "code checks them; for a machine too busy or too small to run a "
                        "framework at 8192³")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                   help="the stand-in's reference threads (default: %(default)s)")
    args = p.parse_args()
    plan = [(n, c) for n in args.sizes for c in args.checks] + [
        (n, "sampled") for n in args.sampled_sizes]
    header = ("size", "check", "frameworks", "compute s", "checking s", "ratio", "build s",
              "wall s", "RSS MB", "verdicts", "orchestrator CPU s")
    print(" | ".join(header), flush=True)
    compute: dict[tuple[str, int], float] = {}
    walls: dict[tuple[int, str, int], float] = {}
    for n, check in plan:
        if check == "sampled" and args.stand_in:
            cpu, med, verdict = stand_in(n, args.stand_in, args.threads)
            print(f"{n}³ | sampled | stand-in ({args.stand_in}) | {cpu:.2f} | "
                  f"{med['check_s']:.2f} | {med['check_s'] / cpu:.2f} | "
                  f"{med['build_s']:.2f} | - | {med['rss_mb']:.0f} | {verdict}", flush=True)
            print(f"  (stand-in: references built in {med['build_s']:.2f} s, judged in "
                  f"{med['judge_s']:.2f} s after ({med['judge_cpu_s']:.2f} CPU s), "
                  f"{med['cpu_s']:.2f} CPU seconds in all, on "
                  f"{args.threads} threads)", flush=True)
            continue
        for fws in ([args.one], args.four):
            if len(fws) > 1 and n > args.four_max:
                continue
            runs, verdict = [], ""
            for _ in range(args.repeat):
                for fw in fws:
                    if (fw, n) not in compute:
                        compute[(fw, n)] = compute_time(fw, n)
                data, verdict = verify_run(list(fws), n, check)
                runs.append(data)
            med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
            cpu = sum(compute[(fw, n)] for fw in fws)
            walls[(n, check, len(fws))] = med["wall_s"]
            print(f"{n}³ | {check} | {len(fws)} | {cpu:.2f} | {med['check_s']:.2f} | "
                  f"{med['check_s'] / cpu:.2f} | {med['build_s']:.2f} | {med['wall_s']:.1f} | "
                  f"{med['rss_mb']:.0f} | "
                  f"{verdict} | {med.get('cpu_s', float('nan')):.1f}", flush=True)
    for (n, check, k), wall in sorted(walls.items()):
        one = walls.get((n, check, 1))
        if k > 1 and one:
            print(f"{n}³ {check}: {k} frameworks take {wall / one:.2f}x the wall time of one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
