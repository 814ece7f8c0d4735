"""Reading `matmul-harness selftest`'s files: selftest.csv and selftest_fd.csv.

A result folder may hold them beside verify.csv (`matmul-harness run` writes all into one
folder) or alone (`matmul-harness selftest --out DIR`). Absent files are normal: the
report's section then says how to make them. A file that is there is read strictly, as
verify.csv is: a foreign header, a short line or a value of the wrong kind raises
`ReportInputError` naming the file, the line and what was expected.

The file names, headers and records are `harness.runfiles`' (the selftest writes with the
same), and tests/test_report.py reads files written by `harness.selftest.write`.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from harness.report.schema import ReportInputError
from harness.runfiles import (  # the writer's own names, headers and records
    DETECTION_COLUMNS,
    FD_COLUMNS,
    SAMPLED_COLUMNS,
    SAMPLED_FILE,
    SELFTEST_FD_FILE,
    SELFTEST_FILE,
    Detection,
    FDResult,
)


@dataclass
class Selftest:
    """What one result folder holds of the selftest; None where a file is absent."""

    folder: str
    machine: str
    detections: list[Detection] | None
    fd: list[FDResult] | None


def read_selftest(folder: Path, machine: str) -> Selftest | None:
    """The folder's selftest files, or None when it has neither."""
    det_path, fd_path = folder / SELFTEST_FILE, folder / SELFTEST_FD_FILE
    if not det_path.is_file() and not fd_path.is_file():
        return None
    detections = _detections(det_path) if det_path.is_file() else None
    fd = _fd(fd_path) if fd_path.is_file() else None
    return Selftest(str(folder), machine, detections, fd)


def _rows(path: Path, columns: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: text}) of a CSV whose header must be exactly `columns`."""
    what = f"the {path.name} of `matmul-harness selftest`"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{path}: cannot be read ({exc}); expected {what}") from None
    try:
        records = list(csv.reader(text.splitlines(keepends=True)))
    except csv.Error as exc:
        raise ReportInputError(f"{path}: not CSV ({exc}); expected {what}") from None
    header = records[0] if records else []
    if header != list(columns):
        raise ReportInputError(
            f"{path}: not {what}; expected the header {','.join(columns)}; received "
            f"{','.join(header or ['<empty file>'])[:120]}")
    out = []
    for lineno, rec in enumerate(records[1:], start=2):
        if not rec:
            continue
        if len(rec) != len(columns):
            raise ReportInputError(
                f"{path}: line {lineno}: expected {len(columns)} fields; received {len(rec)}")
        out.append((lineno, dict(zip(columns, rec, strict=True))))
    return out


T = TypeVar("T")


def _value(path: Path, lineno: int, row: dict[str, str], column: str,
           parse: Callable[[str], T], expected: str) -> T:
    try:
        return parse(row[column])
    except ValueError:
        raise ReportInputError(f"{path}: line {lineno}: {column} {row[column]!r}; expected "
                               f"{expected}") from None


def _bool(text: str) -> bool:
    if text not in ("True", "False"):
        raise ValueError(text)
    return text == "True"


def _count(text: str) -> int:
    n = int(text)
    if n < 0:
        raise ValueError(text)
    return n


def _float(text: str) -> float:
    return float(text)  # "nan" included: the CSV writes NaN where a number does not apply


def _detections(path: Path) -> list[Detection]:
    out: list[Detection] = []
    seen: set[tuple[str, str]] = set()
    for lineno, r in _rows(path, DETECTION_COLUMNS):
        v = functools.partial(_value, path, lineno, r)
        d = Detection(
            r["bug"], r["description"], r["quantity"], r["case"], r["dtype"],
            v("applies", _bool, "True or False"),
            v("trials", _count, "a whole number >= 0"),
            v("detected", _count, "a whole number >= 0"),
            v("required", _bool, "True or False"),
            v("median_ratio", _float, "a number or nan"),
            v("median_bias_z", _float, "a number or nan"))
        if not d.bug or not d.dtype:
            raise ReportInputError(f"{path}: line {lineno}: empty bug or dtype; expected "
                                   "one row per planted bug and dtype")
        if d.detected > d.trials or (d.applies and d.trials == 0):
            raise ReportInputError(f"{path}: line {lineno}: detected {d.detected} of "
                                   f"{d.trials} trials; expected 0 <= detected <= trials "
                                   "and at least one trial")
        if (d.bug, d.dtype) in seen:
            raise ReportInputError(f"{path}: line {lineno}: a second row for {d.bug!r} in "
                                   f"{d.dtype}; expected one row per planted bug and dtype")
        seen.add((d.bug, d.dtype))
        out.append(d)
    if not out:
        raise ReportInputError(f"{path}: no rows; expected one row per planted bug and "
                               "dtype (write it again with `matmul-harness selftest`)")
    return out


def _fd(path: Path) -> list[FDResult]:
    out: list[FDResult] = []
    for lineno, r in _rows(path, FD_COLUMNS):
        v = functools.partial(_value, path, lineno, r)
        err = v("max_rel_err", _float, "a number")
        if math.isnan(err):
            raise ReportInputError(f"{path}: line {lineno}: max_rel_err 'nan'; expected a "
                                   "number")
        out.append(FDResult(r["case"], r["dtype"], r["quantity"], err,
                           v("passed", _bool, "True or False"),
                           v("evaluations", _count, "a whole number >= 0")))
    return out  # no rows is fine: no case of the config was small enough


def read_sampled(folder: Path) -> list[Detection] | None:
    """The folder's selftest_sampled.csv (the sampled check's detections: one row per
    planted bug, case and dtype, at the selftest's shapes and larger ones), or None when it
    has none. Read as strictly as selftest.csv; `case` is the shape's label."""
    path = folder / SAMPLED_FILE
    if not path.is_file():
        return None
    out: list[Detection] = []
    nan = float("nan")
    for lineno, r in _rows(path, SAMPLED_COLUMNS):
        v = functools.partial(_value, path, lineno, r)
        d = Detection(r["bug"], "", r["quantity"], r["case"], r["dtype"],
                      v("applies", _bool, "True or False"),
                      v("trials", _count, "a whole number >= 0"),
                      v("detected", _count, "a whole number >= 0"),
                      v("required", _bool, "True or False"), nan, nan)
        if not d.bug or not d.dtype or d.detected > d.trials or (d.applies and not d.trials):
            raise ReportInputError(f"{path}: line {lineno}: bug {d.bug!r}, dtype {d.dtype!r}, "
                                   f"detected {d.detected} of {d.trials}; expected a named "
                                   "bug and dtype and 0 <= detected <= trials >= 1")
        out.append(d)
    return out
