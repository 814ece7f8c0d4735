"""Reading asv's results into rows of the long-form table (schema.COLUMNS).

One row per parameter combination of every benchmark with a `framework` parameter; the
machine's card takes asv's machine.json (and the result's "params" over it). A missing
results folder is no error, only a note: the timing sections then say how to make one.
asv's timing rows carry the FLOPs of one call, counted by `harness.shapes.flops`.

Each row knows what produced it: the framework's release (the file's versions benchmark,
read in the environment that ran it, else asv's matrix requirement), asv's environment
and the commit; when it was measured is the benchmark's `started_at` (asv's `date` is the
commit's date: every environment of one commit shares it). The samples (`--record-samples`)
and asv's 99% interval come along for the verdicts; a result of one sample is a `--quick`
smoke test.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from harness.bench import VERSIONS_BENCH, file_versions
from harness.report.schema import COLUMNS, Machine, ReportInputError, read_json
from harness.shapes import flops

TIMING_PARAMS: tuple[str, ...] = ("framework", "device", "dtype", "shape", "pass")


# --- asv results -------------------------------------------------------------------------


def default_asv_results(root: Path | None = None) -> Path:
    """asv.conf.json's `results_dir` (relative to it), or results/ without a config."""
    root = Path.cwd() if root is None else root
    conf = root / "asv.conf.json"
    if conf.is_file():
        # asv allows // comments in its config (JSONC); a line comment is all we strip.
        text = re.sub(r"(?m)^\s*//.*$", "", conf.read_text(encoding="utf-8"))
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = {}
        results_dir = data.get("results_dir") if isinstance(data, dict) else None
        if isinstance(results_dir, str):
            return root / results_dir
    return root / "results"


def _param(text: object) -> str:
    """asv stores parameter values as repr() strings: "'torch'" -> "torch"."""
    if not isinstance(text, str):
        return str(text)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return str(value)


def _num(v: object) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


@dataclass
class _AsvRun:
    """One asv results file, read, with the machine it belongs to."""

    path: Path
    data: dict[str, Any]
    info: dict[str, Any]  # machine.json, then the result's "params" over it
    name: str  # asv's machine name
    host: str  # the physical machine: `host_machine` when bench recorded it, else `name`


def _asv_files(results: Path) -> Iterator[tuple[Path, Path]]:
    """(machine dir, result file) for each asv result file under `results`."""
    for sub in sorted(p for p in results.iterdir() if p.is_dir()):
        if not (sub / "machine.json").is_file():
            continue  # verify output folders and other runs share results/
        for f in sorted(sub.glob("*.json")):
            if f.name != "machine.json":
                yield sub, f


def read_asv(results: Path, machines: dict[str, Machine],
             notes: list[str]) -> pd.DataFrame:
    """Every benchmark with a `framework` parameter, one row per parameter combination."""
    empty = pd.DataFrame(columns=list(COLUMNS))
    if results.is_file():  # one result file: its machine dir and benchmarks.json above it
        files = [(results.parent, results)]
        results = results.parent.parent
    elif results.is_dir():
        files = list(_asv_files(results))
    else:
        notes.append(f"no asv results: {results} does not exist (run `asv run` first)")
        return empty
    if not files:
        notes.append(f"no asv results under {results} (run `asv run` first)")
        return empty
    bench_path = results / "benchmarks.json"
    benchmarks: dict[str, Any] = {}
    if bench_path.is_file():
        loaded = read_json(bench_path, "asv's benchmarks.json")
        if not isinstance(loaded, dict):
            raise ReportInputError(f"{bench_path}: expected asv's benchmarks.json (an object)")
        benchmarks = loaded
    else:
        notes.append(f"{bench_path} is missing: timing parameters are assumed to be "
                     f"{', '.join(TIMING_PARAMS)}")
    runs = [_open_asv_file(f, d) for d, f in files]
    frames = [_read_asv_file(r, _machine_key(r, runs, notes), benchmarks, machines)
              for r in runs]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else empty


_ASV_FILE = "an asv results file (with \"results\" and \"result_columns\")"


def _open_asv_file(path: Path, machine_dir: Path) -> _AsvRun:
    what = _ASV_FILE
    data = read_json(path, what)
    if not (isinstance(data, dict) and isinstance(data.get("results"), dict)
            and isinstance(data.get("result_columns"), list)):
        raise ReportInputError(f"{path}: not asv results; expected {what}")
    raw = data.get("params")
    params: dict[str, Any] = raw if isinstance(raw, dict) else {}
    machine_json = read_json(machine_dir / "machine.json", "asv's machine.json")
    info = {**(machine_json if isinstance(machine_json, dict) else {}), **params}
    name = str(params.get("machine") or machine_dir.name)
    return _AsvRun(path, data, info, name, str(info.get("host_machine") or name))


def _machine_key(run: _AsvRun, runs: Sequence[_AsvRun], notes: list[str]) -> str:
    """The machine an asv run's rows and card go under: its physical machine, unless that
    machine was benchmarked under several asv names (thread counts): those timings are not
    one series, so each keeps its asv name (merged, the newest would replace the others)."""
    names = sorted({r.name for r in runs if r.host == run.host})
    if len(names) == 1:
        return run.host
    note = (f"{run.host}: asv results under several machine names ({', '.join(names)}, "
            "e.g. thread counts); their timings are kept apart under those names")
    if note not in notes:
        notes.append(note)
    return run.name


def _read_asv_file(run: _AsvRun, name: str, benchmarks: dict[str, Any],
                   machines: dict[str, Machine]) -> pd.DataFrame:
    path, data, what = run.path, run.data, _ASV_FILE
    m = machines.setdefault(name, Machine(name))
    m.asv = run.info
    if run.name not in m.asv_names:
        m.asv_names.append(run.name)
    cols = data["result_columns"]
    for bench, values in data["results"].items():
        if not isinstance(values, list):
            raise ReportInputError(f"{path}: results[{bench!r}] is not a list; expected {what}")
    entries = {b: dict(zip(cols, v, strict=False)) for b, v in data["results"].items()}
    # When it ran: each benchmark's start (ms since the epoch); the file's time where a
    # result predates started_at. Never asv's `date`: that is the commit's.
    fallback = path.stat().st_mtime
    starts = [_num(e.get("started_at")) / 1000.0 for e in entries.values()]
    first = min((v for v in starts if math.isfinite(v)), default=fallback)
    when = datetime.fromtimestamp(first).strftime("%Y-%m-%d %H:%M")
    versions = file_versions(data)
    env = str(data.get("env_name") or "")
    commit = str(data.get("commit_hash") or "")
    label = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    m.asv_runs.append(f"{commit[:8] or '?'} {env or '?'} ({when}{'; ' + label if label else ''})")
    m.sources.append(str(path))
    records: list[dict[str, Any]] = []
    for bench, entry in entries.items():
        if bench == VERSIONS_BENCH:
            continue  # read into `versions`: a label of the other rows, not a measurement
        meta = benchmarks.get(bench) if isinstance(benchmarks.get(bench), dict) else {}
        stamp = _num(entry.get("started_at")) / 1000.0
        origin = _Origin(name, stamp if math.isfinite(stamp) else fallback, path, env, commit,
                         versions)
        records.extend(_combinations(bench, entry, meta or {}, origin))
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))


@dataclass(frozen=True)
class _Origin:
    """What every row of one benchmark in one result file shares."""

    machine: str
    stamp: float  # the benchmark's started_at (epoch s)
    path: Path
    env: str
    commit: str
    versions: dict[str, str]  # framework -> release


def _kind(bench: str, meta: dict[str, Any]) -> str:
    kind = meta.get("type")
    if isinstance(kind, str):
        return kind
    last = bench.rsplit(".", 1)[-1]
    return last.split("_", 1)[0] if "_" in last else "time"


def _samples(v: object) -> tuple[float, ...] | None:
    if not isinstance(v, list):
        return None
    out = tuple(float(x) for x in v if isinstance(x, int | float) and not isinstance(x, bool))
    return out or None


def _combinations(bench: str, entry: dict[str, Any], meta: dict[str, Any],
                  run: _Origin) -> Iterator[dict[str, Any]]:
    params = entry.get("params") or []
    names = meta.get("param_names") or (list(TIMING_PARAMS) if len(params) == 5 else [])
    if "framework" not in names or len(names) != len(params):
        return  # not one of ours (or unnamed): nothing to place in a framework table
    result = entry.get("result")
    combos = list(itertools.product(*params))
    if not isinstance(result, list):
        result = [result] * len(combos)

    def column(key: str) -> list[Any]:
        v = entry.get(key)
        return v if isinstance(v, list) and len(v) == len(combos) else [None] * len(combos)

    q25, q75 = column("stats_q_25"), column("stats_q_75")
    ci_a, ci_b = column("stats_ci_99_a"), column("stats_ci_99_b")
    repeat, samples = column("stats_repeat"), column("samples")
    kind = _kind(bench, meta)
    unit = str(meta.get("unit") or ("seconds" if kind == "time" else
                                    "bytes" if kind == "peakmem" else ""))
    for i, combo in enumerate(combos):
        p = dict(zip(names, (_param(v) for v in combo), strict=True))
        value = result[i] if i < len(result) else None
        status = ("fail" if value is None
                  else "skip" if isinstance(value, float) and math.isnan(value) else "pass")
        shape, pass_, dtype = p.get("shape", ""), p.get("pass", ""), p.get("dtype", "")
        try:
            fl = flops(shape, pass_, dtype) if kind == "time" else math.nan
        except (ValueError, KeyError):
            fl = math.nan
        fw = p.get("framework", "")
        s = _samples(samples[i]) if status == "pass" else None
        n = len(s) if s else int(_num(repeat[i])) if math.isfinite(_num(repeat[i])) else 0
        yield {
            "source": "asv", "machine": run.machine, "benchmark": bench, "kind": kind,
            "framework": fw, "device": p.get("device", "cpu"),
            "mode": "pinned",
            "dtype": dtype, "case": shape, "quantity": pass_,
            "status": status,
            "reason": {"fail": "asv recorded a failure", "skip": "n/a in asv"}.get(status, ""),
            "value": _num(value), "unit": unit,
            "q25": _num(q25[i]), "q75": _num(q75[i]),
            "ci_lo": _num(ci_a[i]), "ci_hi": _num(ci_b[i]), "samples": s, "n_samples": n,
            # asv --quick: one sample, no warm-up. Only timings have samples to count.
            "quick": kind == "time" and status == "pass" and n == 1,
            "ratio": math.nan, "max_abs_err": math.nan, "precision": "",
            "framework_version": run.versions.get(fw, ""), "env": run.env,
            "commit": run.commit, "note": "", "flops": fl, "stamp": run.stamp,
            "origin": str(run.path),
        }

