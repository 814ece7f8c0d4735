"""`matmul-harness bench`: the asv suite in `benchmarks/`, run in the current environment.

The grid and the selection of cells a run measures live in `harness.suite` (`benchmarks/`
reads them there). This module drives asv: it turns a
selection into `asv run --bench` regexes (cells outside it cost nothing), writes asv's
config and machine record, runs asv and prints a summary of the timings it saved.

Nothing here imports asv or a framework at module import: `benchmarks/` imports this module
during asv's discovery, and `import harness` must stay light.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import __version__, shapes
from harness.suite import (
    DEFAULT,
    DEVICES,
    FIXED_KINDS,
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

__all__ = [
    "CLOCK_ENV", "ROUNDS_ENV", "VERSIONS_BENCH", "checkout", "file_versions", "git_head",
    "machine_name", "parse_versions", "plan", "run_bench", "summary", "table_lines",
    "time_results", "version_number", "version_text",
]

VERSIONS_BENCH = "versions.Installed.track_version"
# Rounds of the timing benchmarks (matmul.*): asv's `-a rounds=N` would also repeat every
# track_ benchmark N times, and their values are deterministic.
ROUNDS_ENV = "MATMUL_BENCH_ROUNDS"
# "cpu": CPU cells time the process's CPU time instead of the wall clock (compare --clock)
CLOCK_ENV = "MATMUL_BENCH_CLOCK"
# asv's track_ benchmarks return numbers, so a release is stored as one: 0.6.2 -> 6002,
# 2.13.0 -> 2013000 (each part below 1000). Local labels and pre-release tags are dropped.
VERSION_SCALE = (1_000_000, 1_000, 1)


def version_number(text: str) -> float:
    """`2.13.0+cpu` -> 2013000.0: the release as asv's track_version stores it."""
    parts = re.findall(r"\d+", text.split("+")[0])[:3]
    if not parts or any(int(p) >= 1000 for p in parts[1:]):
        raise ValueError(f"version {text!r} is not of the form MAJOR.MINOR.PATCH with parts "
                         "below 1000")
    return float(sum(int(p) * s for p, s in zip(parts, VERSION_SCALE, strict=False)))


def version_text(number: float) -> str:
    """2013000.0 -> "2.13.0" (inverse of version_number, tags dropped)."""
    n = round(number)
    return f"{n // 1_000_000}.{n // 1_000 % 1_000}.{n % 1_000}"


def parse_versions(text: str) -> dict[str, list[str]]:
    """`jax==0.6.2,jax==0.7.2` -> {"jax": ["0.6.2", "0.7.2"]}: asv's matrix.req."""
    out: dict[str, list[str]] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, version = item.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise BenchError(f"--versions: {item!r} is not NAME==VERSION; expected e.g. "
                             "jax==0.6.2,jax==0.7.2 (one environment per release)")
        out.setdefault(name.strip(), []).append(version.strip())
    if not out:
        raise BenchError(f"--versions: nothing to install in {text!r}; expected e.g. "
                         "jax==0.6.2,jax==0.7.2")
    return out


def plan(selection: Selection, gpu: bool,
         check_installed: bool = True) -> tuple[list[str], list[str]]:
    """`asv run --bench` regexes selecting the cells that can run here, and why others can't.

    The versions benchmark runs for every selected framework, so each result file records
    the releases that produced it. `check_installed=False`: the frameworks are installed in
    environments asv builds (`--versions`), not necessarily in this one."""
    from harness.adapters import load

    regexes: list[str] = []
    notes: list[str] = []
    if selection.gpu is not None and not gpu:
        notes.append("gpu: no GPU found (nvidia-smi lists none); GPU cells not run")
    for fw in selection.frameworks:
        cls = load(fw)
        if check_installed and not cls.installed():
            notes.append(f"{fw}: not installed ({cls.install_hint}); its cells not run")
            continue
        for g in GRIDS:
            if g.kind not in selection.kinds:
                continue
            for dev in DEVICES:
                d = selection.device(dev)
                if d is None or (dev == "gpu" and not gpu):
                    continue
                fixed = g.kind in FIXED_KINDS  # the grid's own cells, whatever d selects
                dts = [t for t in g.dtypes if (fixed or t in d.dtypes)
                       and cls.unsupported_reason(dev, t) is None]
                shp = [s for s in g.shapes if fixed or s in d.shapes]
                if not (dts and shp):
                    continue
                methods = [m for m in g.methods if dev == "gpu" or m not in g.gpu_only]
                values = [[fw], [dev], dts, shp]
                if g.with_pass:
                    values.append(list(selection.passes))
                args = ", ".join("'(?:" + "|".join(map(re.escape, v)) + ")'" for v in values)
                names = "|".join(map(re.escape, methods))
                regexes.append(f"^{re.escape(g.name)}\\.(?:{names})\\({args}\\)$")
    if not regexes:
        raise BenchError(f"{selection.source}: the selection has no cell that can run here "
                         f"({'; '.join(notes) or 'no grid cell matches it'})")
    fws = [f for f in selection.frameworks if any(f"'(?:{re.escape(f)})'" in r
                                                   for r in regexes)]
    regexes.append(f"^{re.escape(VERSIONS_BENCH)}\\('(?:{'|'.join(map(re.escape, fws))})'\\)$")
    return regexes, notes


def checkout(start: Path | None = None) -> Path:
    """The project folder bench runs in: the current folder or the nearest one above it
    holding asv.conf.json and benchmarks/ (a clone of matmul-harness).

    Never the installed package's own location: from an editable install of one clone, a
    bench run in a second clone measures and writes into the second."""
    here = (start or Path.cwd()).resolve()
    for root in (here, *here.parents):
        if (root / "asv.conf.json").is_file() and (root / "benchmarks").is_dir():
            return root
    raise BenchError(f"{here}: no asv.conf.json and benchmarks/ here or above; run "
                     "matmul-harness bench in a clone of matmul-harness (git clone, cd)")


def git_head(root: Path) -> str:
    """The commit asv records results under; a clear error outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "HEAD"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BenchError(f"{root}: cannot run git ({exc}); asv records results under the "
                         "current commit, so bench needs git and a git checkout") from None
    if out.returncode != 0:
        why = (out.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise BenchError(f"{root}: not a git checkout with a commit ({why}); asv records "
                         "results under the current commit: run bench in a git clone")
    return out.stdout.strip()


def machine_name(host: str, threads: int) -> str:
    """asv's machine name: the physical machine (`harness.system.machine_slug`: host and GPU
    model, as asv has no GPU field) and the thread count, since timings with different
    thread counts are not one series."""
    return f"{host}-{threads}t"


def run_bench(*, quick: bool, config: str | None, results_dir: Path | None = None,
              extra_args: Sequence[str] = (), versions: str | None = None,
              rounds: int | None = None) -> int:
    """Run the selection through `asv run`; asv's exit code.

    `config`: a bench YAML (None: QUICK when `quick`, else DEFAULT). `results_dir`: where
    asv writes results (None: asv.conf.json's `results_dir` in the project folder bench
    runs in). `versions`: "jax==0.6.2,jax==0.7.2" runs in asv-managed environments, one
    per release (asv's matrix.req), instead of this one; only those frameworks are timed.
    `rounds`: asv rounds per timing cell (MATMUL_BENCH_ROUNDS); with several environments asv
    interleaves them (round 1 of every release, then round 2...), so machine drift hits
    every release alike. Samples are always recorded (`--record-samples`): the report and
    `matmul-harness compare` judge differences from them. `extra_args` go to `asv run`.
    Raises BenchError (exit 2 in the CLI) for a bad config, no git checkout or no asv.
    """
    import importlib.util
    from dataclasses import replace

    from harness.system import machine_slug

    selection = load_selection(config) if config else QUICK if quick else DEFAULT
    matrix = parse_versions(versions) if versions else None
    if rounds is not None and rounds < 1:
        raise BenchError(f"--rounds must be at least 1; received {rounds}")
    if importlib.util.find_spec("asv") is None:
        raise BenchError("asv is not installed in this environment: pip install 'asv>=0.6.4'")
    root = checkout()
    commit = git_head(root)
    gpu = gpu_present()
    if matrix:
        unknown = [f for f in matrix if f not in selection.frameworks]
        if unknown:
            raise BenchError(f"--versions: {unknown[0]!r} is not a framework of the "
                             f"selection; allowed: {', '.join(selection.frameworks)}")
        selection = replace(selection, frameworks=tuple(matrix))
    regexes, notes = plan(selection, gpu, check_installed=not matrix)
    threads = bench_threads(selection)
    host = machine_slug()  # verify's run.json names the machine the same way
    machine = machine_name(host, threads)
    with tempfile.TemporaryDirectory(prefix="matmul-bench-") as tmp:
        home = Path(tmp)
        conf = _write_conf(root, home, results_dir, matrix)
        if not matrix:
            # asv resolves the configured branches even with --set-commit-hash; a clone
            # need not have a local `main`, so name the commit measured instead.
            data = json.loads(conf.read_text(encoding="utf-8"))
            data["branches"] = [commit]
            conf.write_text(json.dumps(data, indent=2), encoding="utf-8")
        (home / "selection.json").write_text(selection.to_json(), encoding="utf-8")
        env = {"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ, "HOME": str(home),
               THREADS_ENV: str(threads), SELECTION_ENV: str(home / "selection.json")}
        if rounds:
            env[ROUNDS_ENV] = str(rounds)
        if not matrix:
            # asv drops PYTHONPATH; the benchmarks must import this folder's harness (the
            # code being measured), not whichever checkout is installed.
            env["ASV_PYTHONPATH"] = str(root)
        _asv(["machine", "--yes", "--machine", machine, "--config", str(conf)], env, root)
        _annotate_machine(home / ".asv-machine.json", machine, threads, host)
        where = (f"asv-managed environments {versions}" if matrix
                 else "this environment")
        print(f"bench: {selection.source} selection, machine {machine}, commit {commit[:8]}, "
              f"{threads} CPU thread(s) per framework, in {where}"
              f"{', quick' if quick else ''}")
        for note in notes:
            print(f"bench: {note}")
        # asv interleaves rounds across environments only when asked (its default is off)
        how = ([f"{commit}^!", "--interleave-rounds"] if matrix else
               ["-E", "existing:same", "--set-commit-hash", commit])
        args = ["run", "--config", str(conf), *how, "--machine", machine, "--record-samples",
                *(["--quick"] if quick else []),
                *(f"--bench={r}" for r in regexes), *extra_args]
        results = Path(json.loads(conf.read_text(encoding="utf-8"))["results_dir"])
        log = results / f"bench-{machine}-{commit[:8]}.log"
        started = time.time() - 1
        code = _asv(args, env, root, check=False, log=log)
    print(summary(results, machine, commit, started if matrix else None))
    print(f"bench: asv's full output: {log}")
    # asv publish's pages load their scripts from CDNs: say how to read results offline
    print("bench: to read the results: matmul-harness report --out DIR (one self-contained "
          "HTML file), or asv publish && python tools/asv_offline.py (asv's pages, their "
          "scripts fetched from npm once, then offline)")
    return code


def _asv(args: list[str], env: dict[str, str], cwd: Path, check: bool = True,
         log: Path | None = None) -> int:
    """Run asv; with `log`, keep its whole output there and echo it without the n/a rows
    (asv prints a row for every cell of the grid, most of them outside the selection)."""
    cmd = [sys.executable, "-m", "asv", *args]
    if log is None:
        out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
        code = out.returncode
        if code != 0:
            print(out.stdout + out.stderr, end="", file=sys.stderr)
    else:
        with log.open("w", encoding="utf-8") as f, subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1,
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                f.write(line)
                if not line.rstrip().endswith("n/a"):
                    print(line, end="", flush=True)
        code = proc.returncode
    if check and code != 0:
        raise BenchError(f"asv {args[0]} failed with exit status {code}")
    return code


def _write_conf(root: Path, home: Path, results_dir: Path | None,
                matrix: dict[str, list[str]] | None = None) -> Path:
    """asv.conf.json with absolute paths (asv chdirs to the config's folder); `matrix`
    replaces its matrix.req (one managed environment per release)."""
    from asv.util import load_json

    conf: dict[str, Any] = load_json(str(root / "asv.conf.json"), js_comments=True)
    results = (results_dir or root / conf.get("results_dir", "results")).resolve()
    html = (results.parent / f"{results.name}-html" if results_dir
            else root / conf.get("html_dir", ".asv/html"))
    conf.update(repo=str(root), benchmark_dir=str(root / conf.get("benchmark_dir", "benchmarks")),
                results_dir=str(results), html_dir=str(html),
                env_dir=str(root / conf.get("env_dir", ".asv/env")))
    if matrix is not None:
        conf["matrix"] = {"req": matrix}
    results.mkdir(parents=True, exist_ok=True)
    path = home / "asv.conf.json"
    path.write_text(json.dumps(conf, indent=2), encoding="utf-8")
    return path


def _annotate_machine(path: Path, machine: str, threads: int, host: str) -> None:
    """Add what asv's machine record lacks; asv copies it to results/<machine>/machine.json.

    `host_machine` is the physical machine (`harness.system.machine_slug`, run.json's
    `system.machine_name`): the report merges verify's and asv's records of one machine
    under it."""
    from asv.machine import Machine

    from harness.system import cpu_model, gpus

    data = json.loads(path.read_text(encoding="utf-8"))
    # `asv machine --yes --machine NAME` records the name only; add asv's own defaults.
    data[machine] = {**Machine.get_defaults(), **data[machine]}
    data[machine].update(
        host_machine=host, cpu=cpu_model(), gpu=", ".join(gpus()) or "none",
        threads=str(threads),
        float32_precision="ieee (pinned: no TF32 or reduced-precision reductions)",
        harness_version=__version__,
    )
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _fmt_time(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def file_versions(data: dict[str, Any]) -> dict[str, str]:
    """framework -> release that produced an asv result file: its versions benchmark (read
    in the environment that ran it), else the file's requirements (asv's matrix.req)."""
    out = {k: str(v) for k, v in (data.get("requirements") or {}).items() if v}
    entry = (data.get("results") or {}).get(VERSIONS_BENCH)
    if isinstance(entry, list):
        record = dict(zip(data.get("result_columns", []), entry, strict=False))
        values = record.get("result") or []
        for combo, value in zip(_product(record.get("params") or []), values, strict=False):
            if isinstance(value, int | float) and value == value and value > 0:
                out[combo[0].strip("'")] = version_text(value)
    return out


def time_results(results: Path, machine: str, commit: str,
                 since: float | None = None) -> list[dict[str, Any]]:
    """The timing cells asv saved for `commit` on `machine`: one dict per measured cell.

    `since`: every result file written since then (one per environment: releases side by
    side, each framework labelled with its version); None: the newest file only."""
    files = sorted((results / machine).glob(f"{commit[:8]}-*.json"),
                   key=lambda p: p.stat().st_mtime)
    if since is not None:
        files = [f for f in files if f.stat().st_mtime >= since]
    elif files:
        files = files[-1:]
    rows: list[dict[str, Any]] = []
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        versions = file_versions(data) if since is not None else {}
        columns = data.get("result_columns", [])
        for name, entry in data.get("results", {}).items():
            if not name.endswith(".time_matmul"):
                continue
            record = dict(zip(columns, entry, strict=False))
            values = record.get("result") or []
            combos = _product(record.get("params") or [])
            for combo, value in zip(combos, values, strict=False):
                fw, dev, dt, shape, pass_ = (v.strip("'") for v in combo)
                label = f"{fw} {versions[fw]}" if fw in versions else fw
                rows.append({"framework": label, "device": dev, "dtype": dt, "shape": shape,
                             "pass": pass_, "seconds": value})
    return rows


def _product(params: list[list[str]]) -> list[tuple[str, ...]]:
    import itertools

    return list(itertools.product(*params))


def summary(results: Path, machine: str, commit: str, since: float | None = None) -> str:
    """Median time and GFLOP/s of every measured timing cell, frameworks (and releases)
    side by side."""
    rows = [r for r in time_results(results, machine, commit, since)
            if isinstance(r["seconds"], (int, float)) and r["seconds"] == r["seconds"]]
    if not rows:
        return f"bench: no timings saved under {results / machine}"
    return "\n".join([f"median time per call (GFLOP/s); results: {results / machine}",
                      *table_lines(rows)])


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The header and one line per (device, shape, dtype, pass) of timing rows."""
    from harness.suite import frameworks  # plugins too, in registry order

    order = frameworks()
    fws = sorted({r["framework"] for r in rows},
                 key=lambda f: (order.index(f.split()[0])
                                if f.split()[0] in order else len(order), f))
    keys = sorted({(r["device"], r["shape"], r["dtype"], r["pass"]) for r in rows},
                  key=lambda k: (k[0], shapes.flops(k[1], "forward"), k[2],
                                 shapes.PASSES.index(k[3])))
    table = {(r["device"], r["shape"], r["dtype"], r["pass"], r["framework"]): r["seconds"]
             for r in rows}
    head = f"{'device':6} {'shape':>16} {'dtype':8} {'pass':16}" + "".join(
        f" {f:>21}" for f in fws)
    lines = [head]
    for key in keys:
        cells = []
        for f in fws:
            s = table.get((*key, f))
            cells.append(f" {'-':>21}" if s is None else
                         f" {_fmt_time(s):>10} "
                         f"({shapes.flops(key[1], key[3], key[2]) / s / 1e9:7.1f})")
        lines.append(f"{key[0]:6} {key[1]:>16} {key[2]:8} {key[3]:16}" + "".join(cells))
    return lines
