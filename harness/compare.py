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
  (`git archive`) and timed with asv in this environment, alternately (A B, B A, A B...),
  one asv run per side and round; each round's medians (of 15 samples) form a pair, and
  the pairs are judged with Wilcoxon's signed-rank test, so machine drift between rounds
  cancels. It
  stops when every cell is resolved (8 rounds at least: with fewer the test cannot reach
  p < 0.01) or after N rounds or `--budget` seconds, and says which. `--clock cpu` times
  CPU cells in CPU time (the process's), which other processes on a shared machine
  disturb far less than the wall clock.
"""

from __future__ import annotations

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
from harness.bench import (
    CLOCK_ENV,
    QUICK,
    THREADS_ENV,
    BenchError,
    git_head,
    load_selection,
    plan,
)
from harness.suite import SELECTION_ENV

MIN_ROUNDS = 8  # Wilcoxon signed-rank, two-sided: 8 pairs are the fewest reaching p < 0.01
REPEAT = 15  # samples per cell and asv run; a round pairs the two runs' medians
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


def _round_times(results: Path) -> dict[tuple[str, ...], float]:
    """Each cell's median of one asv run (its REPEAT samples). The fastest sample was tried
    too: on the loaded 2-core machine it resolved less (a planted +10% read +2.9%, p = 0.54,
    where the medians read +16.2%, p = 0.14)."""
    rows = _rows(_result_files(results))
    key = ["machine", "benchmark", "framework", "device", "dtype", "shape", "pass_"]
    return {tuple(str(r[k]) for k in key): float(r["time"]) for r in rows.to_dict("records")}


def compare_interleaved(root: Path, base_rev: str, new_rev: str, *, rounds: int,
                        budget: float, config: str | None, clock: str = "wall",
                        log: Any = sys.stdout) -> tuple[list[Row], str]:
    """Alternate asv runs of BASE and NEW until every cell is resolved or the budget is
    spent; the rows and a line saying why it stopped."""
    from harness.bench import _annotate_machine, _asv, _write_conf, bench_threads
    from harness.system import machine_slug

    selection = load_selection(config) if config else QUICK
    regexes, _ = plan(selection, gpu=False)
    regexes = [r for r in regexes if r.startswith(r"^matmul\.")]  # timings only
    if not regexes:
        raise CompareError(f"{selection.source}: no timing cell to compare (kinds: time)")
    threads = bench_threads(selection)
    pairs: dict[tuple[str, ...], list[tuple[float, float]]] = {}
    start = time.monotonic()
    why = f"{rounds} rounds done (the most --rounds allows)"
    with tempfile.TemporaryDirectory(prefix="matmul-compare-") as tmp:
        work = Path(tmp)
        trees = {"base": work / "base", "new": work / "new"}
        shas = {"base": _export(root, base_rev, trees["base"]),
                "new": _export(root, new_rev, trees["new"])}
        (work / "selection.json").write_text(selection.to_json(), encoding="utf-8")
        env = {"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ, "HOME": str(work),
               THREADS_ENV: str(threads), SELECTION_ENV: str(work / "selection.json"),
               CLOCK_ENV: clock}
        machine = f"{machine_slug()}-{threads}t"
        conf0 = _write_conf(root, work, work / "r0")
        _asv(["machine", "--yes", "--machine", machine, "--config", str(conf0)], env, root)
        _annotate_machine(work / ".asv-machine.json", machine, threads, machine_slug())
        for i in range(rounds):
            order = ("base", "new") if i % 2 == 0 else ("new", "base")
            medians: dict[str, dict[tuple[str, ...], float]] = {}
            for side in order:
                res = work / f"{side}-{i}"
                conf = _write_conf(trees[side], work, res)
                side_env = {**env, "ASV_PYTHONPATH": str(trees[side])}
                data = json.loads(conf.read_text(encoding="utf-8"))
                data["repo"] = str(root)  # the commits live in the project's repository
                # asv resolves the configured branches even when told the commit; a clone
                # need not have `main`, so the branch is the commit itself.
                data["branches"] = [shas[side]]
                conf.write_text(json.dumps(data), encoding="utf-8")
                code = _asv(["run", "--config", str(conf), "-E", "existing:same",
                             "--set-commit-hash", shas[side], "--machine", machine,
                             "--record-samples", "--attribute=rounds=1",
                             f"--attribute=repeat={REPEAT}",
                             *(f"--bench={r}" for r in regexes)],
                            side_env, trees[side], check=False)
                if code not in (0, 2):
                    raise CompareError(f"asv run failed for {side} ({shas[side][:8]}) with "
                                       f"exit status {code}")
                medians[side] = _round_times(res)
            for cell in medians["base"].keys() & medians["new"].keys():
                pairs.setdefault(cell, []).append((medians["base"][cell],
                                                   medians["new"][cell]))
            rows = _paired_rows(pairs)
            done = i + 1
            print(f"compare: round {done}: " + "; ".join(
                f"{' '.join(r.cell[2:])}: {r.verdict.text()}" for r in rows), file=log,
                flush=True)
            if done >= MIN_ROUNDS and rows and all(r.verdict.resolved for r in rows):
                why = f"every cell resolved after {done} rounds"
                break
            if time.monotonic() - start > budget and done < rounds:
                why = (f"budget of {budget:.0f} s spent after {done} rounds; unresolved "
                       "cells stay not resolved")
                break
    return _paired_rows(pairs), why


def _paired_rows(pairs: dict[tuple[str, ...], list[tuple[float, float]]]) -> list[Row]:
    out = []
    for cell, ps in sorted(pairs.items()):
        b, n = [p[0] for p in ps], [p[1] for p in ps]
        out.append(Row(cell, statistics.median(b), statistics.median(n),
                       vd.judge_paired(b, n)))
    return out


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
                                        config=config, clock=clock)
        how = f"interleaved asv runs, {clock} clock, {why}"
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
