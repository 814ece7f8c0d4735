"""Reading results into one long-form table: verify.csv + run.json and asv's results JSON.

The selftest's files beside verify.csv (selftest.csv, selftest_fd.csv) are no measurements
of a framework: load_selftest.py reads them into their own records (`Loaded.selftests`).

Every measurement becomes one row of the same columns (`COLUMNS`), whatever file it came
from, and runs merge with one `drop_duplicates` on an explicit identity key (`IDENTITY`,
newest run kept), as benchopt does. Anything that is not what it should be raises
`ReportInputError` with the file and what was expected; a missing *optional* input (no
asv results yet) is not an error, only an empty part of the table.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from harness.results import COLUMNS as VERIFY_COLUMNS
from harness.results import ResultsFileError, read_csv

if TYPE_CHECKING:
    from harness.report.load_selftest import Selftest

# One row per measurement. For correctness rows `case` is the verify case and `quantity`
# Y/dX/dW; for asv rows `case` is the shape id ("MxKxN") and `quantity` the pass.
# `mode` is verify's precision_mode: "pinned" (full precision forced, the default) or
# "default" (as the framework ships); the same cell is checked in both.
IDENTITY: tuple[str, ...] = (
    "source", "machine", "benchmark", "framework", "device", "mode", "dtype", "case",
    "quantity",
)
COLUMNS: tuple[str, ...] = (
    *IDENTITY,
    "kind",  # verify, or asv's benchmark type: time, track, peakmem, mem
    "status",  # pass, fail, skip, error (asv: a number, null = fail, NaN = skip)
    "reason",
    "value",  # asv: the result (seconds for time_, the unit for track_); verify: NaN
    "unit",
    "q25", "q75",  # asv: quartiles of the samples
    "ratio", "max_abs_err", "precision", "framework_version", "note",  # verify only
    "flops",  # asv timing rows: floating-point operations of one call
    "stamp",  # when the run was made (epoch s): the newest duplicate wins
    "origin",  # the file the row came from
)
TIMING_PARAMS: tuple[str, ...] = ("framework", "device", "dtype", "shape", "pass")
PASS_FACTOR: dict[str, int] = {"forward": 1, "backward": 2, "forward_backward": 3}
VERIFY_FILE, RUN_FILE = "verify.csv", "run.json"


class ReportInputError(ResultsFileError):
    """An input is missing, corrupt or of another kind; the message names the file.

    A ResultsFileError, so the CLI reports it as bad input (exit 2, one line)."""


@dataclass
class Machine:
    """What is known of one machine: the harness's system card and asv's machine.json.

    `name` is the physical machine: run.json's `machine_name` and, for asv, the
    `host_machine` that `matmul-harness bench` records (its asv machine name adds the thread
    count, `<name>-2t`), so verify's and asv's records of one box are one Machine. asv
    results without `host_machine` (older, or from plain `asv run`) go by asv's name."""

    name: str
    card: dict[str, Any] = field(default_factory=dict)  # run.json "system"
    run: dict[str, Any] = field(default_factory=dict)  # run.json minus "system"
    asv: dict[str, Any] = field(default_factory=dict)  # machine.json / result "params"
    asv_names: list[str] = field(default_factory=list)  # asv's machine names, e.g. "box-2t"
    asv_runs: list[str] = field(default_factory=list)  # "commit8 env (date)"
    sources: list[str] = field(default_factory=list)


@dataclass
class Loaded:
    table: pd.DataFrame  # COLUMNS, deduplicated on IDENTITY
    machines: dict[str, Machine]
    notes: list[str]  # what was looked at and found missing, for the report's header
    asv_source: str  # where asv results were looked for
    selftests: list[Selftest] = field(default_factory=list)  # per folder that has one


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


# --- verify.csv + run.json ---------------------------------------------------------------


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot be read ({exc.strerror}); expected {what}") \
            from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{path}: not valid JSON ({exc}); expected {what}") from None


def _stamp(text: object) -> float:
    if isinstance(text, str):
        try:
            return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp()
        except ValueError:
            pass
    return 0.0


def read_verify(folder: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows of one verify output folder, and its run.json."""
    if not folder.is_dir():
        raise ReportInputError(
            f"{folder}: no such folder; expected a verify output folder "
            f"(with {VERIFY_FILE} and {RUN_FILE})"
        )
    csv_path, run_path = folder / VERIFY_FILE, folder / RUN_FILE
    if not csv_path.is_file():
        raise ReportInputError(
            f"{csv_path}: missing; expected the {VERIFY_FILE} of `matmul-harness verify` "
            "(or the selftest.csv of `matmul-harness selftest`)"
        )
    # The harness's own reader: the same header and value checks as everywhere else.
    df = pd.DataFrame([dataclasses.astuple(r) for r in read_csv(csv_path)],
                      columns=list(VERIFY_COLUMNS))
    run: dict[str, Any] = {}
    if run_path.is_file():
        loaded = _read_json(run_path, f"the {RUN_FILE} of `matmul-harness verify`")
        if not isinstance(loaded, dict) or not isinstance(loaded.get("system", {}), dict):
            raise ReportInputError(
                f"{run_path}: not a {RUN_FILE}; expected an object with a \"system\" object"
            )
        run = loaded
    system = run.get("system") or {}
    machine = str(system.get("machine_name") or system.get("hostname") or folder.name)
    out = pd.DataFrame({
        "source": "verify",
        "machine": machine,
        "benchmark": "verify",
        "kind": "verify",
        "framework": df["framework"],
        "device": df["device"],
        # Files written before precision modes existed have only pinned rows.
        "mode": df["precision_mode"] if "precision_mode" in df else "pinned",
        "dtype": df["dtype"],
        "case": df["case"],
        "quantity": df["quantity"],
        "status": df["status"],
        "reason": df["reason"],
        "value": math.nan,
        "unit": "",
        "q25": math.nan,
        "q75": math.nan,
        "ratio": df["ratio"].astype(float),
        "max_abs_err": df["max_abs_err"].astype(float),
        "precision": df["precision"],
        "framework_version": df["framework_version"],
        "note": df["note"] if "note" in df else "",
        "flops": math.nan,
        "stamp": _stamp(run.get("started")),
        "origin": str(csv_path),
    }, columns=list(COLUMNS))
    return out, run


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
        loaded = _read_json(bench_path, "asv's benchmarks.json")
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
    data = _read_json(path, what)
    if not (isinstance(data, dict) and isinstance(data.get("results"), dict)
            and isinstance(data.get("result_columns"), list)):
        raise ReportInputError(f"{path}: not asv results; expected {what}")
    raw = data.get("params")
    params: dict[str, Any] = raw if isinstance(raw, dict) else {}
    machine_json = _read_json(machine_dir / "machine.json", "asv's machine.json")
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
    import itertools

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


# --- everything --------------------------------------------------------------------------


def load(result_dirs: Sequence[Path], asv_results: Path | None) -> Loaded:
    """All inputs as one table, newest run kept per identity key; the selftest's files of
    every folder that has them (a folder may hold only those) beside it."""
    # Imported here: load_selftest imports ReportInputError from this module.
    from harness.report.load_selftest import read_selftest

    machines: dict[str, Machine] = {}
    notes: list[str] = []
    frames: list[pd.DataFrame] = []
    selftests: list[Selftest] = []
    for folder in map(Path, result_dirs):
        if folder.is_dir() and not (folder / VERIFY_FILE).is_file():
            only = read_selftest(folder, folder.name)  # `selftest --out DIR` alone
            if only is not None:
                selftests.append(only)
                continue
        rows, run = read_verify(folder)
        name = str(rows["machine"].iloc[0]) if len(rows) else folder.name
        m = machines.setdefault(name, Machine(name))
        if _stamp(run.get("started")) >= _stamp(m.run.get("started")) or not m.card:
            m.card = dict(run.get("system") or {})
            m.run = {k: v for k, v in run.items() if k != "system"}
        m.sources.append(str(folder))
        frames.append(rows)
        st = read_selftest(folder, name)
        if st is not None:
            selftests.append(st)
    if not result_dirs:
        notes.append("no verify output folders given: no correctness results")
    explicit = asv_results is not None
    asv_path = asv_results if asv_results is not None else default_asv_results()
    if explicit and not asv_path.exists():
        raise ReportInputError(
            f"{asv_path}: no such file or folder; expected asv's results folder "
            "(with benchmarks.json and one folder per machine)"
        )
    frames.append(read_asv(asv_path, machines, notes))
    frames = [f for f in frames if not f.empty]
    table = (pd.concat(frames, ignore_index=True) if frames
             else pd.DataFrame(columns=list(COLUMNS)))
    table = (table.sort_values("stamp", kind="stable")
             .drop_duplicates(list(IDENTITY), keep="last")
             .reset_index(drop=True))
    for c in ("value", "q25", "q75", "ratio", "max_abs_err", "flops", "stamp"):
        table[c] = pd.to_numeric(table[c], errors="coerce").astype(float)
    return Loaded(table, machines, notes, str(asv_path), selftests)
