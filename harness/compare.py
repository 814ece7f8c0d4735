"""`matmul-harness compare BASE NEW`: is NEW slower than BASE, resolved from samples?

Two ways, one verdict per timing cell (harness.verdict: faster, slower, not resolved,
smoke) and one exit code for CI: **1** when some cell is a resolved slowdown beyond
`--threshold` (NEW's median / BASE's > threshold), **0** otherwise, **2** on bad input.

- **Stored results** (default): BASE and NEW each name asv result files under the results
  folder: a result file's path, an asv environment name (`virtualenv-py3.11-jax0.6.2`,
  the `<env>` of `<commit8>-<env>.json`), or a commit (a hash prefix or any git revision
  of the project folder). Cells are matched on machine, benchmark and parameters, so two
  releases (environments) or two commits compare cell by cell; the samples of each side
  (`bench` records them) are compared with a Mann-Whitney U test.
- **Interleaved** (`--rounds N`): BASE and NEW are git revisions. Each is exported
  (`git archive`) and served by worker processes (`harness/compare_worker.py`) that time
  the tree's own benchmark call (`benchmarks.common.cell`, what asv times). A BASE and a
  NEW worker are asked in turn, A B B A ..., for a short block of samples each; a round
  pairs the two blocks' mean times per call, measured a fraction of a second apart, so
  machine drift cancels in their ratio. Every GENERATION rounds both workers are replaced
  by fresh ones: two processes of identical code can differ by a few percent for their
  whole life, which only new processes turn into noise. The generations' median ratios
  are judged at planned looks (`harness.verdict.sequential`: sign-test bounds, Bonferroni
  over looks and cells); a cell stops once decided (a regression, or an upper bound under
  the threshold), the run when every cell has, or after N rounds or `--budget` seconds,
  and says which. `--clock cpu` times CPU cells in the process's CPU time, which other
  processes on a shared machine disturb far less than the wall clock. docs/tracking.md
  derives the rule.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import verdict as vd
from harness.bench import git_head
from harness.suite import (
    GRIDS,
    QUICK,
    SELECTION_ENV,
    THREADS_ENV,
    BenchError,
    Selection,
    bench_threads,
    gpu_present,
    load_selection,
)

CELL_KEY = ("machine", "benchmark", "framework", "device", "dtype", "case", "quantity")


class CompareError(BenchError):
    """BASE or NEW cannot be resolved, or nothing to compare: exit 2 with this line."""


@dataclass(frozen=True)
class Row:
    """One cell's comparison."""

    cell: tuple[str, ...]  # CELL_KEY values
    base: float  # median seconds per call
    new: float
    verdict: vd.Verdict


# --- stored results ----------------------------------------------------------------------


def _result_files(results: Path) -> list[Path]:
    if not results.is_dir():
        raise CompareError(f"{results}: no such folder; expected asv's results folder "
                           "(matmul-harness bench writes it; --results-dir to name another)")
    return sorted(f for d in results.iterdir() if (d / "machine.json").is_file()
                  for f in d.glob("*.json") if f.name != "machine.json")


def _head(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CompareError(f"{path}: not an asv result file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise CompareError(f"{path}: not an asv result file; expected \"results\" and "
                           "\"result_columns\"")
    return data


def resolve(spec: str, results: Path, root: Path | None) -> list[Path]:
    """The result files `spec` names: a file, an environment name, or a commit."""
    path = Path(spec)
    if path.is_file():
        _head(path)
        return [path]
    files = _result_files(results)
    heads = {f: _head(f) for f in files}
    by_env = [f for f, d in heads.items() if d.get("env_name") == spec]
    if by_env:
        return by_env
    commits = {str(d.get("commit_hash", "")) for d in heads.values()}
    full = spec
    if root is not None and not re.fullmatch(r"[0-9a-f]{4,40}", spec):
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "-q",
                              f"{spec}^{{commit}}"], capture_output=True, text=True)
        full = out.stdout.strip() if out.returncode == 0 else spec
    by_commit = [f for f, d in heads.items()
                 if len(full) >= 4 and str(d.get("commit_hash", "")).startswith(full)]
    if by_commit:
        return by_commit
    envs = sorted({str(d.get("env_name")) for d in heads.values()})
    raise CompareError(
        f"{spec!r}: no asv result file, environment or commit of that name under {results}; "
        f"expected a result file, one of the environments ({', '.join(envs) or 'none'}) "
        f"or one of the commits ({', '.join(sorted(c[:8] for c in commits)) or 'none'})")


def _rows(files: Sequence[Path]) -> Any:
    """The timing rows of these files, the newest measurement per cell."""
    import pandas as pd

    from harness.report import analysis as an
    from harness.report.load_asv import read_asv
    from harness.report.schema import Machine

    machines: dict[str, Machine] = {}
    notes: list[str] = []
    frames = [read_asv(f, machines, notes) for f in files]
    table = pd.concat(frames, ignore_index=True)
    for c in ("value", "q25", "q75", "ci_lo", "ci_hi", "flops", "stamp"):
        table[c] = pd.to_numeric(table[c], errors="coerce").astype(float)
    t = an.timings(table)
    t = t[t["status"] == "pass"]
    return t.sort_values("stamp", kind="stable").drop_duplicates(
        ["machine", "benchmark", "framework", "device", "dtype", "shape", "pass_"], keep="last")


def compare_stored(base: Sequence[Path], new: Sequence[Path],
                   bench_filter: str | None = None) -> list[Row]:
    from harness.report import analysis as an

    b, n = _rows(base), _rows(new)
    key = ["machine", "benchmark", "framework", "device", "dtype", "shape", "pass_"]
    merged = b.merge(n, on=key, suffixes=("_b", "_n"))
    out: list[Row] = []
    for r in merged.to_dict("records"):
        cell = tuple(str(r[k]) for k in key)
        if bench_filter and not re.search(bench_filter, " ".join(cell)):
            continue
        side = {s: _Side(r[f"time_{s}"], r[f"samples_{s}"], r[f"ci_lo_{s}"], r[f"ci_hi_{s}"],
                         r[f"quick_{s}"]) for s in ("b", "n")}
        v = an.judge_rows(side["b"], side["n"])
        out.append(Row(cell, float(r["time_b"]), float(r["time_n"]), v))
    return out


@dataclass(frozen=True)
class _Side:
    time: float
    samples: Any
    ci_lo: float
    ci_hi: float
    quick: bool


# --- interleaved rounds ------------------------------------------------------------------

# Samples per side and round. A round pairs the two blocks' *mean* time per call: a median
# of samples would hide a cost that comes in lumps (work every tenth call: with 4 calls a
# sample, most samples miss it; measured, a planted +10% read +3.2%).
SAMPLES = 5
GENERATION = 10  # rounds per pair of worker processes (vd.sequential: why fresh pairs)
SPLIT = 4  # a sample makes 1/SPLIT of the calls of asv's ~20 ms sample: short, many
WORKER = Path(__file__).with_name("compare_worker.py")


def _export(root: Path, rev: str, dest: Path) -> str:
    """`git archive` of `rev` into `dest`; the full commit hash."""
    out = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "-q",
                          f"{rev}^{{commit}}"], capture_output=True, text=True)
    if out.returncode != 0:
        raise CompareError(f"{rev!r}: not a commit of {root}; with --rounds, BASE and NEW are "
                           "git revisions (a hash, a branch, HEAD~1)")
    sha = out.stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(root), "archive", sha], capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return sha


def timing_cells(selection: Selection, gpu: bool) -> list[tuple[str, ...]]:
    """(benchmark, framework, device, dtype, shape, pass) of every timing cell the
    selection names that can run here (framework installed, dtype supported)."""
    from harness.adapters import load

    out: list[tuple[str, ...]] = []
    for g in GRIDS:
        if g.kind != "time":
            continue
        for fw, dev, dt, shape, pass_ in itertools.product(*g.params):
            if (not selection.includes("time", fw, dev, dt, shape, pass_)
                    or (dev == "gpu" and not gpu)):
                continue
            cls = load(fw)
            if cls.installed() and cls.unsupported_reason(dev, dt) is None:
                out.append((f"{g.name}.time_matmul", fw, dev, dt, shape, pass_))
    return out


class _Worker:
    """One side's compare_worker process, its tree first on sys.path."""

    def __init__(self, tree: Path, clock: str, env: dict[str, str], log: Path) -> None:
        boot = ("import runpy, sys; sys.path.insert(0, sys.argv[2]); "
                "runpy.run_path(sys.argv[3], run_name='__main__')")
        self.log = log
        with log.open("w", encoding="utf-8") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", boot, clock, str(tree), str(WORKER)], cwd=tree,
                env={**env, "PYTHONPATH": str(tree)}, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1)

    def ask(self, **msg: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except OSError:
            line = ""
        if not line:
            tail = self.log.read_text(encoding="utf-8", errors="replace").strip()
            raise CompareError("a timing worker stopped: "
                               + (tail.splitlines()[-1] if tail else "no message"))
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        """Ask the worker to quit (it answers nothing) and wait for it; kill a hung one."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
        except OSError:
            pass  # already gone
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def compare_interleaved(root: Path, base_rev: str, new_rev: str, *, rounds: int,
                        budget: float, config: str | None, threshold: float,
                        clock: str = "wall", alpha: float = vd.ALPHA,
                        log: Any = sys.stdout) -> tuple[list[Row], str]:
    """Time BASE and NEW in pairs of worker processes, alternately (A B B A ...), a short
    block per side and round, GENERATION rounds per pair of fresh workers, until every
    cell is decided or `rounds` or the budget are spent; the rows and a line saying why it
    stopped (`vd.sequential`; docs/tracking.md derives the rule)."""
    from harness.system import machine_slug

    selection = load_selection(config) if config else QUICK
    cells = timing_cells(selection, gpu_present())
    if not cells:
        raise CompareError(f"{selection.source}: no timing cell to compare that can run here "
                           "(kinds: time; a framework installed)")
    machine = machine_slug()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="matmul-compare-") as tmp:
        work = Path(tmp)
        trees = {"base": work / "base", "new": work / "new"}
        shas = {"base": _export(root, base_rev, trees["base"]),
                "new": _export(root, new_rev, trees["new"])}
        (work / "selection.json").write_text(selection.to_json(), encoding="utf-8")
        env = {"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ,
               THREADS_ENV: str(bench_threads(selection)),
               SELECTION_ENV: str(work / "selection.json")}
        calls: dict[int, int] = {}  # cell -> calls per sample, the same on both sides

        def workers(g: int) -> dict[str, _Worker]:
            sides = ("base", "new") if g % 2 else ("new", "base")  # who starts first
            return {s: _Worker(trees[s], clock, env, work / f"{s}-{g}.log") for s in sides}

        # The first pair learns which cells run on both sides and their calls per sample.
        first = workers(0)
        try:
            for i, c in enumerate(cells):
                got = {s: w.ask(op="cell", i=i, cell=list(c[1:])) for s, w in first.items()}
                skips = [f"{s} ({shas[s][:8]}): {r['skip']}" for s, r in got.items()
                         if "skip" in r]
                if skips:
                    print(f"compare: {' '.join(c[1:])} not timed: {'; '.join(skips)}",
                          file=log)
                else:
                    calls[i] = max(1, got["base"]["number"] // SPLIT)
        finally:
            for w in first.values():
                w.close()
        timed = sorted(calls)
        if not timed:
            raise CompareError("no timing cell can run in both BASE and NEW (see the lines "
                               "above)")

        def generation(g: int, active: list[int]) -> dict[int, list[tuple[float, float]]]:
            pair = workers(g)
            try:
                for j in active:
                    for w in pair.values():  # one after the other: warm-ups never overlap
                        w.ask(op="cell", i=timed[j], cell=list(cells[timed[j]][1:]))
                out: dict[int, list[tuple[float, float]]] = {j: [] for j in active}
                for r in range(GENERATION):
                    for j in active:
                        i = timed[j]
                        order = ("base", "new") if (g + r) % 2 else ("new", "base")
                        mean = {s: statistics.fmean(pair[s].ask(
                            op="time", i=i, calls=calls[i], samples=SAMPLES)["samples"])
                            for s in order}
                        out[j].append((mean["base"], mean["new"]))
                return out
            finally:
                for w in pair.values():
                    w.close()

        seq = vd.sequential(generation, len(timed),
                            generations=max(1, -(-rounds // GENERATION)),
                            threshold=threshold, alpha=alpha,
                            out_of_budget=lambda: time.monotonic() - start > budget)
    rows = [Row((machine, *cells[timed[j]]), statistics.median(p[0] for p in seq.pairs[j]),
                statistics.median(p[1] for p in seq.pairs[j]), v)
            for j, v in sorted(seq.verdicts.items())]
    print(f"compare: {seq.generations} generations of {GENERATION} rounds measured "
          f"({time.monotonic() - start:.0f} s)", file=log)
    return rows, (f"{seq.why}; {seq.looks} planned looks x {len(timed)} cells, each at "
                  f"{seq.level:.2g} a side (alpha {alpha:g} in all)")


# --- the command -------------------------------------------------------------------------


def _fmt(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.4g} {unit}"
    return f"{s * 1e9:.4g} ns"


def render(rows: Sequence[Row], threshold: float) -> str:
    cells = [" ".join([r.cell[1].split(".")[-2] if "." in r.cell[1] else r.cell[1],
                       *r.cell[2:]]) for r in rows]
    width = max([4, *map(len, cells)])
    lines = [f"{'cell':{width}} {'base':>11} {'new':>11}  verdict"]
    for r, cell in zip(rows, cells, strict=True):
        flag = "  << REGRESSION" if r.verdict.regression(threshold) else ""
        lines.append(f"{cell:{width}} {_fmt(r.base):>11} {_fmt(r.new):>11}  "
                     f"{r.verdict.text()}{flag}")
    return "\n".join(lines)


def compare_command(base: str, new: str, *, threshold: float = 1.05,
                    results_dir: str | None = None, rounds: int | None = None,
                    budget: float = 900.0, config: str | None = None,
                    bench_filter: str | None = None, clock: str = "wall") -> int:
    if not (threshold >= 1.0 and math.isfinite(threshold)):
        raise CompareError(f"--threshold must be a ratio >= 1 (1.05: 5% slower); received "
                           f"{threshold}")
    if rounds is not None and rounds < 1:
        raise CompareError(f"--rounds must be at least 1; received {rounds}")
    if clock not in ("wall", "cpu"):
        raise CompareError(f"--clock must be wall or cpu; received {clock!r}")
    if clock != "wall" and not rounds:
        raise CompareError("--clock applies to --rounds (stored results keep the clock "
                           "they were measured with)")
    from harness.bench import checkout

    if rounds:
        if shutil.which("git") is None:
            raise CompareError("git is not installed; --rounds exports BASE and NEW with git")
        project = checkout()
        git_head(project)
        rows, why = compare_interleaved(project, base, new, rounds=rounds, budget=budget,
                                        config=config, threshold=threshold, clock=clock)
        how = f"interleaved rounds, {clock} clock, {why}"
    else:
        root: Path | None
        try:
            root = checkout()
        except BenchError:
            root = None
        from harness.report.load_asv import default_asv_results

        results = Path(results_dir) if results_dir else default_asv_results(root)
        rows = compare_stored(resolve(base, results, root), resolve(new, results, root),
                              bench_filter)
        how = "stored samples, unpaired (drift between the two runs is not removed)"
    if not rows:
        raise CompareError(f"{base} and {new} have no timing cell in common to compare")
    print(render(rows, threshold))
    bad = [r for r in rows if r.verdict.regression(threshold)]
    n_res = sum(r.verdict.resolved for r in rows)
    print(f"compare: {len(rows)} cells ({how}): {n_res} resolved, {len(rows) - n_res} not "
          f"resolved; {len(bad)} resolved regression(s) beyond {threshold:g}x")
    return 1 if bad else 0
