"""A verify run's folder, written so that a killed run loses no finished cell, and no run's
cells are ever mixed with another's.

    config.json           the resolved config and the run's identity, written first
    verify.partial.jsonl  append-only: one line per finished cell, flushed and fsynced
    verify.csv, run.json  the final files, written atomically (temp file + rename) at the end
    .matmul-harness.lock  held (flock) while a run works in the folder

A run killed at any moment (kill -9, Ctrl-C, machine loss) leaves every finished cell in
verify.partial.jsonl; at worst the last line is torn, and that cell is simply run again.

A run is identified by the fingerprint of what decides its results: the config's
frameworks, devices, dtypes, precision modes, cases (names and shapes) and seed, and the
harness version. config.json records it, every line of the partial log carries it, and
`--resume` refuses a folder whose config.json no longer hashes to it, or a line of another
run, or rows whose shapes are not their case's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import __version__
from harness.config import Config, ConfigError, parse
from harness.plan import Cell, Key, row_key
from harness.results import (
    COLUMNS,
    REQUIRED_COLUMNS,
    STATUSES,
    ResultsFileError,
    Row,
    atomic_write,
    write_csv,
)
from harness.runfiles import (  # the folder's files, named once for writers and readers
    CONFIG_FILE,
    LOCK_FILE,
    PARTIAL_FILE,
    RUN_FILE,
    RUN_FILES,
    VERIFY_FILE,
)
from harness.system import system_info

FORMAT = "matmul-harness/verify-cells/2"  # /1 lines carried no run fingerprint
_TIME = "%Y-%m-%dT%H:%M:%S%z"
_RUN_KEY = "run"  # config.json's record of the run itself, beside the config keys


class RunFolderError(ResultsFileError):
    """A folder that cannot be used for this run (in use, not empty, another run's)."""


@dataclass(frozen=True)
class RunRecord:
    """What config.json says about the run besides its config."""

    fingerprint: str
    harness_version: str
    started: str  # when the run first started (a resume keeps it)
    resumed: tuple[str, ...] = ()  # when each resume started
    shard: str = ""  # "I/N" when the run is one slice of its config's plan (verify --shard)


def stamp(t: float | None = None) -> str:
    return time.strftime(_TIME, time.localtime(time.time() if t is None else t))


def _config_data(cfg: Config) -> dict[str, Any]:
    return {
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


def fingerprint(cfg: Config, shard: str = "") -> str:
    """The hash of everything that decides the results (not the time limits, which a
    resume may change): every config key recorded, the harness version, and the shard
    ("I/N") when the run is one slice of the plan (an unsharded run's hash is unchanged)."""
    data = {k: v for k, v in _config_data(cfg).items() if k not in ("cell_timeout", "timeout")}
    data["harness_version"] = __version__
    if shard:
        data["shard"] = shard
    return _hash(data)


def cells_fingerprint(cfg: Config) -> str:
    """The hash of what decides any one cell's result: the cases (names and shapes), the
    seed and the harness version. Runs that agree on it may be merged (`merge`): the same
    cell then means the same inputs, whichever frameworks, devices or shard each ran."""
    data = _config_data(cfg)
    return _hash({"cases": data["cases"], "seed": data["seed"],
                  "harness_version": __version__})


def _hash(data: dict[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_config(out_dir: Path, cfg: Config, record: RunRecord | None = None,
                shard: str = "") -> RunRecord:
    """Write config.json: the config and the run's record (a new run's unless given)."""
    record = record or RunRecord(fingerprint(cfg, shard), __version__, stamp(), shard=shard)
    data = {_RUN_KEY: dataclasses.asdict(record), **_config_data(cfg)}
    atomic_write(out_dir / CONFIG_FILE, json.dumps(data, indent=1) + "\n")
    return record


def load_config(out_dir: Path, known_frameworks: Sequence[str]) -> tuple[Config, RunRecord]:
    """The config of the run recorded in `out_dir`, validated like any config, and checked
    against the fingerprint recorded when the run started."""
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
    raw: Any = data.pop(_RUN_KEY, None) if isinstance(data, dict) else None
    try:
        cfg = parse(data, str(path), known_frameworks)
    except ConfigError as exc:
        raise ResultsFileError(f"{exc} (the recorded config of the run)") from None
    try:
        record = RunRecord(**{**raw, "resumed": tuple(raw.get("resumed", ()))})
    except (TypeError, AttributeError):
        raise ResultsFileError(
            f"{path}: no record of the run's identity (written by an older matmul-harness, "
            f"or edited); start it afresh: matmul-harness verify --force --out {out_dir}"
        ) from None
    if record.harness_version != __version__:
        raise ResultsFileError(
            f"{path}: the run was started by matmul-harness {record.harness_version}, this is "
            f"{__version__}; finish it with that version, or start afresh with --force"
        )
    if record.fingerprint != fingerprint(cfg, record.shard):
        raise ResultsFileError(
            f"{path}: the config was changed after the run started (fingerprint "
            f"{fingerprint(cfg, record.shard)}, recorded {record.fingerprint}); its finished "
            "cells belong to the recorded config: restore it, or start afresh with --force"
        )
    return cfg, record


# --- the folder ---------------------------------------------------------------------------

_held: dict[str, int] = {}  # folder -> lock fd, for nested claims by one process


@contextlib.contextmanager
def claim(out_dir: Path, flag: str = "--out") -> Iterator[None]:
    """Hold the folder's lock for the block; RunFolderError (naming the holder) when
    another process holds it. Re-entrant within a process (`run` claims, then `verify`)."""
    key = os.path.realpath(out_dir)
    if key in _held:
        yield
        return
    path = out_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown process"
        os.close(fd)
        raise RunFolderError(
            f"{flag} {out_dir} is in use by another matmul-harness run ({holder}); wait for "
            "it to finish, or choose another folder"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {stamp()}\n".encode())
    _held[key] = fd
    try:
        yield
    finally:
        del _held[key]
        os.close(fd)  # releases the flock; the empty-ish lock file stays, harmlessly


def run_files(out_dir: Path) -> list[str]:
    """The run files `out_dir` holds."""
    return [name for name in RUN_FILES if (out_dir / name).exists()]


def prepare_fresh(out_dir: Path, force: bool) -> None:
    """A new run may use `out_dir`: refused when it holds another run's files, unless
    `force`, which removes them (and their temp files) first. Call with the lock held."""
    found = run_files(out_dir)
    if not found:
        return
    if not force:
        raise RunFolderError(
            f"--out {out_dir} already holds a run ({', '.join(found)}); finish it with "
            f"matmul-harness verify --resume {out_dir}, or replace it with --force"
        )
    for name in found:
        (out_dir / name).unlink(missing_ok=True)
    for tmp in out_dir.glob(".*.tmp"):  # an atomic write's leftover from a killed run
        if tmp.name[1:].startswith(RUN_FILES):
            tmp.unlink(missing_ok=True)


# --- the partial log -----------------------------------------------------------------------


class CellLog:
    """The append-only record of finished cells."""

    def __init__(self, out_dir: Path, kept: dict[Key, list[Row]], run: str) -> None:
        """Start the log afresh holding `kept` (written atomically), then append to it."""
        self.path = out_dir / PARTIAL_FILE
        self.run = run
        atomic_write(self.path, "".join(log_line(rows, run) for rows in kept.values()))
        self._f = self.path.open("a", encoding="utf-8")

    def append(self, rows: Sequence[Row]) -> None:
        self._f.write(log_line(rows, self.run))
        self._f.flush()
        os.fsync(self._f.fileno())  # survives machine loss, not only kill -9

    def close(self) -> None:
        # Every line was flushed and fsynced as written: a failing close (a full disk)
        # loses nothing, and must not hide the error that brought us here.
        with contextlib.suppress(OSError):
            self._f.close()


def log_line(rows: Sequence[Row], run: str) -> str:
    """One cell's record in the partial log: a single JSON line, tagged with its run."""
    return json.dumps({"format": FORMAT, "run": run, "cell": list(row_key(rows[0])),
                       "rows": [dataclasses.asdict(x) for x in rows]}) + "\n"


def write_rows(out_dir: Path, rows: Sequence[Row]) -> None:
    """verify.csv, atomically: the run's rows, in plan order."""
    write_csv(rows, out_dir / VERIFY_FILE)


def write_run(out_dir: Path, cfg: Config, rows: Sequence[Row], started: float,
              record: RunRecord, extra: dict[str, object] | None = None) -> None:
    """run.json, atomically: what ran, where, with which framework versions and modes;
    `extra` adds entries (the Ray executor's placements)."""
    versions = {r.framework: r.framework_version for r in rows if r.framework_version}
    # each label and dtype's compute mode (ieee, tf32...), under run.json's older key name
    computes = sorted({f"{r.label} {r.dtype}: {r.precision}" for r in rows if r.precision})
    meta = {
        "harness_version": __version__,
        "config": cfg.source,
        "seed": cfg.seed,
        "fingerprint": record.fingerprint,
        "shard": record.shard,  # "I/N", or "" for the whole plan
        "cells_fingerprint": cells_fingerprint(cfg),  # runs that `merge` may combine
        "started": record.started,  # the run's first start, kept across resumes
        "resumed": list(record.resumed),
        "wall_s": round(time.time() - started, 3),  # the last session's
        "framework_versions": versions,
        "precision_modes": computes,
        "system": system_info(),
        **(extra or {}),
    }
    write_run_file(out_dir, meta)


def write_run_file(out_dir: Path, meta: Mapping[str, object]) -> None:
    """run.json, atomically, holding `meta` as given: the one writer of the file, for a
    verify run's record (`write_run`) and a merged folder's (`harness.merge`)."""
    atomic_write(out_dir / RUN_FILE, json.dumps(meta, indent=2) + "\n")


def read_cells(out_dir: Path, run: str, cells: Sequence[Cell]) -> dict[Key, list[Row]]:
    """Finished cells of an interrupted run (a torn last line is dropped).

    Every line must be of run `run` and of a cell of the plan `cells`, with the shapes of
    that cell's case: anything else is another run's and a ResultsFileError.
    """
    path = out_dir / PARTIAL_FILE
    if not path.is_file():
        return {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"{path}: cannot read ({exc})") from None
    plan = {c.key: c for c in cells}
    kept: dict[Key, list[Row]] = {}
    for n, text in enumerate(lines, start=1):
        try:
            rows = _parseline(text, run)
        except (ValueError, KeyError, TypeError) as exc:
            if n == len(lines) and not text.endswith("\n"):
                break  # the line a killed run was writing: that cell runs again
            raise ResultsFileError(
                f"{path}: line {n} is not a cell record of this run ({exc}); "
                f"move the file away to start the run afresh"
            ) from None
        cell = plan.get(row_key(rows[0]))
        bad = mismatch(rows, cell)
        if bad:
            raise ResultsFileError(
                f"{path}: line {n}: {bad}; it is not this run's (move the file away, or "
                "start afresh with --force)"
            )
        kept[row_key(rows[0])] = rows
    return kept


def mismatch(rows: Sequence[Row], cell: Cell | None) -> str:
    """Why `rows` are not the results of `cell` ('' when they are)."""
    if cell is None:
        return f"cell {', '.join(row_key(rows[0]))} is not in the run's plan"
    for r in rows:
        if row_key(r) != cell.key:
            return f"a row of cell {', '.join(row_key(r))} among {', '.join(cell.key)}'s"
        if (_dims(r.x_shape), _dims(r.w_shape)) != (cell.case.x, cell.case.w):
            return (f"case {cell.case.name!r} has shapes x={r.x_shape}, w={r.w_shape} here, "
                    f"but {list(cell.case.x)} and {list(cell.case.w)} in the config")
    return ""


def _dims(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in text.split("x"))
    except ValueError:
        return ()


def _parseline(text: str, run: str) -> list[Row]:
    data: Any = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"expected format {FORMAT!r}")
    if data.get("run") != run:
        raise ValueError(f"written by run {str(data.get('run'))[:20]!r}, not {run!r}")
    rows = [Row(**{c: rec[c] for c in COLUMNS if c in rec or c in REQUIRED_COLUMNS})
            for rec in data["rows"]]
    if not rows or any(r.status not in STATUSES for r in rows):
        raise ValueError("no rows, or an unknown status")
    return rows
