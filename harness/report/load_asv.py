"""Reading asv's results into rows of the long-form table (schema.COLUMNS).

One row per parameter combination of every benchmark with a `framework` parameter; the
machine's card takes asv's machine.json (and the result's "params" over it). A missing
results folder is no error, only a note: the timing sections then say how to make one.
Shapes and FLOPs live here too: asv's timing rows carry the FLOPs of one call.
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

from harness.report.schema import COLUMNS, Machine, ReportInputError, read_json

TIMING_PARAMS: tuple[str, ...] = ("framework", "device", "dtype", "shape", "pass")
PASS_FACTOR: dict[str, int] = {"forward": 1, "backward": 2, "forward_backward": 3}


# --- shapes and FLOPs --------------------------------------------------------------------

_SHAPE = re.compile(r"^\d+(x\d+){2,3}$")


def shape_dims(shape_id: str) -> tuple[int, ...]:
    """(M, K, N), or (B, M, K, N) for a batched id; ValueError for anything else."""
    if not _SHAPE.match(shape_id):
        raise ValueError(f"shape id {shape_id!r} is not of the form MxKxN")
    return tuple(int(v) for v in shape_id.split("x"))


def flops(shape_id: str, pass_: str, dtype: str) -> float:
    """Real floating-point operations of one call.

    2*M*K*N per product (times the batch); backward is two products, forward_backward
    three. A complex multiply-add is 8 real operations instead of 2, so complex dtypes
    count 4x: GFLOP/s then compare across dtypes and against a real peak.
    """
    dims = shape_dims(shape_id)
    per_product = 2.0 * math.prod(dims)
    return per_product * PASS_FACTOR[pass_] * (4 if dtype.startswith("complex") else 1)


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
    stamp = _num(data.get("date")) / 1000.0 if data.get("date") else 0.0
    when = datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M") if stamp else "?"
    m.asv_runs.append(f"{str(data.get('commit_hash', '?'))[:8]} {data.get('env_name', '?')} "
                      f"({when})")
    m.sources.append(str(path))
    records: list[dict[str, Any]] = []
    cols = data["result_columns"]
    for bench, values in data["results"].items():
        if not isinstance(values, list):
            raise ReportInputError(f"{path}: results[{bench!r}] is not a list; expected {what}")
        entry = dict(zip(cols, values, strict=False))
        meta = benchmarks.get(bench) if isinstance(benchmarks.get(bench), dict) else {}
        records.extend(_combinations(bench, entry, meta or {}, name, stamp, path))
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))


def _kind(bench: str, meta: dict[str, Any]) -> str:
    kind = meta.get("type")
    if isinstance(kind, str):
        return kind
    last = bench.rsplit(".", 1)[-1]
    return last.split("_", 1)[0] if "_" in last else "time"


def _combinations(bench: str, entry: dict[str, Any], meta: dict[str, Any], machine: str,
                  stamp: float, path: Path) -> Iterator[dict[str, Any]]:
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
        yield {
            "source": "asv", "machine": machine, "benchmark": bench, "kind": kind,
            "framework": p.get("framework", ""), "device": p.get("device", "cpu"),
            "mode": "pinned",
            "dtype": dtype, "case": shape, "quantity": pass_,
            "status": status,
            "reason": {"fail": "asv recorded a failure", "skip": "n/a in asv"}.get(status, ""),
            "value": _num(value), "unit": unit,
            "q25": _num(q25[i]), "q75": _num(q75[i]),
            "ratio": math.nan, "max_abs_err": math.nan, "precision": "",
            "framework_version": "", "note": "", "flops": fl, "stamp": stamp, "origin": str(path),
        }

