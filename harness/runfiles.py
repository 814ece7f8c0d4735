"""The files of a result folder: their names, their columns and the selftest's records.

A leaf: it imports nothing of the harness, so the writers (store.py, results.py,
selftest.py, selftest_sampled.py) and the readers (the report, merge, the CLI's folder
checks) import the same names from here, and neither side has to import the other. A
report reads result files only; it never loads the code that made them.

    config.json           the resolved config and the run's identity, written first
    verify.partial.jsonl  append-only: one line per finished cell, flushed and fsynced
    verify.csv, run.json  the final files, written atomically at the end of a verify run
    selftest.csv          the selftest's detections (DETECTION_COLUMNS)
    selftest_fd.csv       the reference against finite differences (FD_COLUMNS)
    selftest_sampled.csv  the sampled check's detections (SAMPLED_COLUMNS)
    report.html/.md       what `matmul-harness report` renders
    .matmul-harness.lock  held (flock) while a run works in the folder

verify.csv's columns are `harness.results.COLUMNS` (the fields of its `Row`).
"""

from __future__ import annotations

from dataclasses import dataclass

CONFIG_FILE = "config.json"
PARTIAL_FILE = "verify.partial.jsonl"
VERIFY_FILE = "verify.csv"
RUN_FILE = "run.json"
LOCK_FILE = ".matmul-harness.lock"
SELFTEST_FILE = "selftest.csv"
SELFTEST_FD_FILE = "selftest_fd.csv"
SAMPLED_FILE = "selftest_sampled.csv"
REPORT_FILES: tuple[str, ...] = ("report.html", "report.md")
# Every file a run leaves in its folder: a folder holding any of them is in use (a new run
# needs --force, which removes exactly these, or --resume).
RUN_FILES: tuple[str, ...] = (CONFIG_FILE, PARTIAL_FILE, VERIFY_FILE, RUN_FILE,
                              SELFTEST_FILE, SELFTEST_FD_FILE, SAMPLED_FILE, *REPORT_FILES)

DETECTION_COLUMNS: tuple[str, ...] = (
    "bug", "description", "quantity", "case", "dtype", "applies", "trials", "detected",
    "detection_rate", "required", "median_ratio", "median_bias_z",
)
FD_COLUMNS: tuple[str, ...] = (
    "case", "dtype", "quantity", "max_rel_err", "passed", "evaluations",
)
SAMPLED_COLUMNS: tuple[str, ...] = ("bug", "quantity", "case", "dtype", "applies", "trials",
                                    "detected", "required")

# verify.csv's `quantity` values, in the order it lists them: the forward output, the
# reverse-mode gradients, the forward-mode (jvp) output, the adjoint identity and the
# second-order check. harness.reference computes them; the report orders by them.
QUANTITIES: tuple[str, ...] = ("Y", "dX", "dW", "dY", "adjoint", "d2W")



def label(framework: str, device: str, mode: str = "pinned") -> str:
    """A column of the matrix (verify's print, the report): `framework:device`, with
    `:default` for the as-shipped precision mode."""
    return f"{framework}:{device}" + ("" if mode == "pinned" else f":{mode}")


CONTROL = "none (control)"  # the correct result, rounded: its detections are false alarms


def is_control(bug: str) -> bool:
    """Whether `bug` names a control row (the correct result, on some case)."""
    return bug.startswith(CONTROL)  # one control per case: "none (control), …"


@dataclass(frozen=True)
class Detection:
    """One row of selftest.csv: a planted bug in one dtype, caught `detected`/`trials`."""

    bug: str
    description: str
    quantity: str
    case: str
    dtype: str
    applies: bool  # False: the bug cannot occur in this dtype (conjugation of a real)
    trials: int
    detected: int
    required: bool  # the checker must catch it every time
    median_ratio: float  # the per-element test's max |err| / bound (NaN: caught on shape)
    median_bias_z: float  # |β - β₀| / limit of the bias test (float16/bfloat16; else NaN)

    @property
    def control(self) -> bool:
        return is_control(self.bug)

    @property
    def label(self) -> str:
        return f"{self.detected}/{self.trials}" if self.applies else "n/a"

    @property
    def shortfall(self) -> str | None:
        """What this row falls short by, in the one wording the selftest, its sampled table
        and the report print: a false alarm on the control, or a required bug not caught
        every time; None when it keeps its promise (or the bug cannot occur)."""
        if not self.applies:
            return None
        if self.control:
            return (f"false alarm: the correct {self.dtype} result at {self.case} was "
                    f"flagged {self.detected}/{self.trials} times") if self.detected else None
        if self.required and self.detected < self.trials:
            return (f"{self.bug} in {self.dtype} at {self.case} caught only "
                    f"{self.detected}/{self.trials} times; the checker must catch it every "
                    "time")
        return None


@dataclass(frozen=True)
class FDResult:
    """One row of selftest_fd.csv: a reference gradient against finite differences."""

    case: str
    dtype: str
    quantity: str
    max_rel_err: float
    passed: bool
    evaluations: int
