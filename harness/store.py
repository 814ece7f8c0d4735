"""A verify run's folder, written so that a killed run loses no finished cell.

    config.json           the resolved config, written first (what --resume continues)
    verify.partial.jsonl  append-only: one line per finished cell, flushed and fsynced
    verify.csv, run.json  the final files, written atomically (temp file + rename) at the end

A run killed at any moment (kill -9, Ctrl-C, machine loss) leaves every finished cell in
verify.partial.jsonl; at worst the last line is torn, and that cell is simply run again.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.config import Config, ConfigError, parse
from harness.plan import Key, row_key
from harness.results import COLUMNS, REQUIRED_COLUMNS, STATUSES, ResultsFileError, Row, atomic_write

CONFIG_FILE = "config.json"
PARTIAL_FILE = "verify.partial.jsonl"
FINAL_FILE = "verify.csv"
META_FILE = "run.json"
FORMAT = "matmul-harness/verify-cells/1"

def save_config(out_dir: Path, cfg: Config) -> None:
    data = {
        "frameworks": list(cfg.frameworks),
        "devices": list(cfg.devices),
        "dtypes": list(cfg.dtypes),
        "precision": list(cfg.precision),
        "seed": cfg.seed,
        "cell_timeout": cfg.cell_timeout,
        "timeout": cfg.timeout,
        "check": cfg.check,
        "cases": [{"name": c.name, "x": list(c.x), "w": list(c.w)} for c in cfg.cases],
    }
    atomic_write(out_dir / CONFIG_FILE, json.dumps(data, indent=1) + "\n")


def load_config(out_dir: Path, known_frameworks: Sequence[str]) -> Config:
    """The config of the run recorded in `out_dir`, validated like any config."""
    path = out_dir / CONFIG_FILE
    if not out_dir.is_dir():
        raise ResultsFileError(f"--resume {out_dir}: no such folder")
    if not path.is_file():
        raise ResultsFileError(
            f"--resume {out_dir}: not a matmul-harness verify folder (no {CONFIG_FILE}); "
            "pass the --out folder of an earlier verify run"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsFileError(f"{path}: corrupt run config ({exc})") from None
    try:
        return parse(data, str(path), known_frameworks)
    except ConfigError as exc:
        raise ResultsFileError(f"{exc} (the recorded config of the run)") from None


class CellLog:
    """The append-only record of finished cells."""

    def __init__(self, out_dir: Path, kept: dict[Key, list[Row]]) -> None:
        """Start the log afresh holding `kept` (written atomically), then append to it."""
        self.path = out_dir / PARTIAL_FILE
        atomic_write(self.path, "".join(line(rows) for rows in kept.values()))
        self._f = self.path.open("a", encoding="utf-8")

    def append(self, rows: Sequence[Row]) -> None:
        self._f.write(line(rows))
        self._f.flush()
        os.fsync(self._f.fileno())  # survives machine loss, not only kill -9

    def close(self) -> None:
        self._f.close()


def line(rows: Sequence[Row]) -> str:
    """One cell's record in the partial log: a single JSON line."""
    return json.dumps({"format": FORMAT, "cell": list(row_key(rows[0])),
                       "rows": [dataclasses.asdict(x) for x in rows]}) + "\n"


def read_cells(out_dir: Path) -> dict[Key, list[Row]]:
    """Finished cells of an interrupted run (a torn last line is dropped)."""
    path = out_dir / PARTIAL_FILE
    if not path.is_file():
        return {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"{path}: cannot read ({exc})") from None
    cells: dict[Key, list[Row]] = {}
    for n, line in enumerate(lines, start=1):
        try:
            rows = _parseline(line)
        except (ValueError, KeyError, TypeError) as exc:
            if n == len(lines) and not line.endswith("\n"):
                break  # the line a killed run was writing: that cell runs again
            raise ResultsFileError(
                f"{path}: line {n} is not a matmul-harness cell record ({exc}); "
                f"move the file away to start the run afresh"
            ) from None
        cells[row_key(rows[0])] = rows
    return cells


def _parseline(line: str) -> list[Row]:
    data: Any = json.loads(line)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"expected format {FORMAT!r}")
    rows = [Row(**{c: rec[c] for c in COLUMNS if c in rec or c in REQUIRED_COLUMNS})
            for rec in data["rows"]]
    if not rows or any(r.status not in STATUSES for r in rows):
        raise ValueError("no rows, or an unknown status")
    return rows
