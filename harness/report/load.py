"""Reading results into one long-form table: verify.csv + run.json here, asv's results
JSON in load_asv.py, the selftest's files (selftest.csv, selftest_fd.csv: no measurements
of a framework) in load_selftest.py, into their own records (`Loaded.selftests`).

Every measurement becomes one row of the same columns (`schema.COLUMNS`), whatever file it
came from, and runs merge with one `drop_duplicates` on an explicit identity key
(`schema.IDENTITY`, newest run kept), as benchopt does. Anything that is not what it should
be raises `ReportInputError` with the file and what was expected; a missing *optional*
input (no asv results yet) is not an error, only an empty part of the table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from harness.report.load_asv import default_asv_results, read_asv
from harness.report.load_selftest import Selftest, read_selftest
from harness.report.schema import COLUMNS, IDENTITY, Machine, ReportInputError, read_json
from harness.results import COLUMNS as VERIFY_COLUMNS
from harness.results import read_csv
from harness.runfiles import RUN_FILE, VERIFY_FILE


@dataclass
class Loaded:
    table: pd.DataFrame  # COLUMNS, deduplicated on IDENTITY
    machines: dict[str, Machine]
    notes: list[str]  # what was looked at and found missing, for the report's header
    asv_source: str  # where asv results were looked for
    selftests: list[Selftest] = field(default_factory=list)  # per folder that has one


# --- verify.csv + run.json ---------------------------------------------------------------


def _stamp(text: object) -> float:
    if isinstance(text, str):
        try:
            return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp()
        except ValueError:
            pass
    return 0.0


def _read_run(run_path: Path) -> dict[str, Any]:
    """run.json, or {} where the folder has none."""
    if not run_path.is_file():
        return {}
    loaded = read_json(run_path, f"the {RUN_FILE} of `matmul-harness verify`")
    if not isinstance(loaded, dict) or not isinstance(loaded.get("system", {}), dict):
        raise ReportInputError(
            f"{run_path}: not a {RUN_FILE}; expected an object with a \"system\" object"
        )
    return loaded


def read_verify(folder: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows of one verify output folder, and its run.json."""
    if not folder.is_dir():
        raise ReportInputError(
            f"{folder}: no such folder; expected a verify output folder "
            f"(with {VERIFY_FILE} and {RUN_FILE})"
        )
    csv_path = folder / VERIFY_FILE
    if not csv_path.is_file():
        raise ReportInputError(
            f"{csv_path}: missing; expected the {VERIFY_FILE} of `matmul-harness verify` "
            "(or the selftest.csv of `matmul-harness selftest`)"
        )
    # The harness's own reader: the same header and value checks as everywhere else.
    df = pd.DataFrame([dataclasses.astuple(r) for r in read_csv(csv_path)],
                      columns=list(VERIFY_COLUMNS))
    run = _read_run(folder / RUN_FILE)
    system = run.get("system") or {}
    machine = str(system.get("machine_name") or system.get("hostname") or folder.name)
    return _verify_rows(df, machine, _stamp(run.get("started")), csv_path), run


def _verify_rows(df: pd.DataFrame, machine: str, stamp: float,
                 csv_path: Path) -> pd.DataFrame:
    """verify.csv's columns as the long-form table's."""
    return pd.DataFrame({
        "source": "verify",
        # Each row's own machine where it records one (merged folders hold several).
        "machine": (df["machine"].where(df["machine"] != "", machine) if "machine" in df
                    else machine),
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
        "ci_lo": math.nan,
        "ci_hi": math.nan,
        "samples": None,
        "n_samples": 0,
        "quick": False,
        "ratio": df["ratio"].astype(float),
        "max_abs_err": df["max_abs_err"].astype(float),
        "precision": df["precision"],
        "framework_version": df["framework_version"],
        "env": "",
        "commit": "",
        "note": df["note"] if "note" in df else "",
        "flops": math.nan,
        "stamp": stamp,
        "origin": str(csv_path),
    }, columns=list(COLUMNS))


# --- everything --------------------------------------------------------------------------


def _read_folder(folder: Path, machines: dict[str, Machine],
                 selftests: list[Selftest]) -> pd.DataFrame | None:
    """One result folder: its verify rows (None for a selftest-only folder); its machine's
    card into `machines`, its selftest files into `selftests`."""
    if folder.is_dir() and not (folder / VERIFY_FILE).is_file():
        only = read_selftest(folder, folder.name)  # `selftest --out DIR` alone
        if only is not None:
            selftests.append(only)
            return None
    rows, run = read_verify(folder)
    names = list(dict.fromkeys(map(str, rows["machine"]))) or [folder.name]
    name = names[0]
    # `merge` writes one card per machine under "systems"; a plain run has one "system".
    raw = run.get("systems")
    systems: dict[str, Any] = raw if isinstance(raw, dict) else {}
    for each in names:
        m = machines.setdefault(each, Machine(each))
        if _stamp(run.get("started")) >= _stamp(m.run.get("started")) or not m.card:
            m.card = dict(systems.get(each) or run.get("system") or {})
            m.run = {k: v for k, v in run.items() if k not in ("system", "systems")}
        m.sources.append(str(folder))
    st = read_selftest(folder, name)
    if st is not None:
        selftests.append(st)
    return rows


def _merge(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One table, one row per identity key, numeric columns as floats.

    Of two rows with one identity (the same release, environment and commit measured
    twice), the newer measurement wins, except that n/a never replaces a measured value:
    a later partial run (asv records the cells it did not select as n/a) hides nothing."""
    frames = [f for f in frames if not f.empty]
    table = (pd.concat(frames, ignore_index=True) if frames
             else pd.DataFrame(columns=list(COLUMNS)))
    for c in ("value", "q25", "q75", "ci_lo", "ci_hi", "ratio", "max_abs_err", "flops",
              "stamp"):
        table[c] = pd.to_numeric(table[c], errors="coerce").astype(float)
    table["n_samples"] = pd.to_numeric(table["n_samples"], errors="coerce").fillna(0).astype(int)
    table["quick"] = table["quick"].astype(bool)
    for c in ("framework_version", "env", "commit"):
        table[c] = table[c].fillna("").astype(str)
    measured = (table["status"] != "skip").rename("_measured")
    order = pd.concat([measured, table["stamp"]], axis=1).sort_values(
        ["_measured", "stamp"], kind="stable").index
    return (table.loc[order].drop_duplicates(list(IDENTITY), keep="last")
            .reset_index(drop=True))


def load(result_dirs: Sequence[Path], asv_results: Path | None) -> Loaded:
    """All inputs as one table, newest run kept per identity key; the selftest's files of
    every folder that has them (a folder may hold only those) beside it."""
    machines: dict[str, Machine] = {}
    notes: list[str] = []
    frames: list[pd.DataFrame] = []
    selftests: list[Selftest] = []
    for folder in map(Path, result_dirs):
        rows = _read_folder(folder, machines, selftests)
        if rows is not None:
            frames.append(rows)
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
    return Loaded(_merge(frames), machines, notes, str(asv_path), selftests)
