"""What every reader of the report's inputs shares: the long-form table's columns and
identity key, the machine record, the input error, and strict JSON reading.

load.py (verify.csv + run.json), load_asv.py (asv's results) and load_selftest.py (the
selftest's CSVs) import from here and never from one another, so data flows one way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.results import ResultsFileError

# One row per measurement. For correctness rows `case` is the verify case and `quantity`
# Y/dX/dW; for asv rows `case` is the shape id ("MxKxN") and `quantity` the pass.
# `mode` is verify's precision_mode: "pinned" (full precision forced, the default) or
# "default" (as the framework ships); the same cell is checked in both.
# The release that produced a row, asv's environment and the commit are part of its
# identity: two releases (or commits) of one cell are two measurements, never duplicates.
IDENTITY: tuple[str, ...] = (
    "source", "machine", "benchmark", "framework", "device", "mode", "dtype", "case",
    "quantity", "framework_version", "env", "commit",
)
COLUMNS: tuple[str, ...] = (
    *IDENTITY,
    "kind",  # verify, or asv's benchmark type: time, track, peakmem, mem
    "status",  # pass, fail, skip, error (asv: a number, null = fail, NaN = skip)
    "reason",
    "value",  # asv: the result (seconds for time_, the unit for track_); verify: NaN
    "unit",
    "q25", "q75",  # asv: quartiles of the samples
    "ci_lo", "ci_hi",  # asv: its 99% confidence interval of the result
    "samples",  # asv: the samples (a tuple of seconds; None unless --record-samples)
    "n_samples",  # asv: how many samples the result is the median of (0: unknown)
    "quick",  # asv: a `--quick` timing (one cold sample): a smoke test, never judged
    "ratio", "max_abs_err", "precision", "note",  # verify only
    "flops",  # asv timing rows: floating-point operations of one call
    "stamp",  # when the measurement was made (epoch s; asv: started_at, not commit date)
    "origin",  # the file the row came from
)


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


def read_json(path: Path, what: str) -> Any:
    """The parsed file; ReportInputError naming it and `what` was expected otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot be read ({exc.strerror}); expected {what}") \
            from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{path}: not valid JSON ({exc}); expected {what}") from None
