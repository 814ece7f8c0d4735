"""A crashed worker's reason quotes the process's own last fatal words, not only Python's.

`orchestrator._tail` on captured stderr texts (glibc heap corruption under TensorFlow's
start-up chatter, an absl CHECK failure, an uncaught C++ exception with a CUDA error), and on
the log of a real process that glibc aborts (an invalid free through ctypes), both read
directly and through a whole `verify` run whose adapter dies that way.
"""

from __future__ import annotations

import csv
import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from harness.adapters.numpy import NumpyAdapter
from harness.cases import Inputs
from harness.cli import main
from harness.orchestrator import _tail
from tests.test_registry import fake_entry_points

TF_NOISE = (  # TensorFlow's start-up lines on a CPU-only machine, as captured here
    "2026-11-29 07:20:01.1: I tensorflow/core/util/port.cc:153] oneDNN custom operations are "
    "on.\nI0000 00:00:1795936968.547948    6367 cudart_stub.cc:31] Could not find cuda "
    "drivers on your machine, GPU will not be used.\nE0000 00:00:1795936969.878644    6367 "
    "cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to "
    "cuInit: UNKNOWN ERROR (303)\n"
)
FAULTHANDLER = """\
Fatal Python error: Aborted

Thread 0x00007f6b2effd6c0 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 324 in wait

Current thread 0x00007f6b3c9a5b80 (most recent call first):
  File "/venv/tensorflow/python/eager/execute.py", line 53 in quick_execute
  File "/venv/tensorflow/python/ops/gen_math_ops.py", line 6245 in mat_mul
"""

CASES = {
    "glibc heap corruption under TensorFlow's start-up lines": (
        TF_NOISE + "corrupted size vs. prev_size\n" + FAULTHANDLER,
        "corrupted size vs. prev_size | Fatal Python error: Aborted | File "
        '"/venv/tensorflow/python/eager/execute.py", line 53 in quick_execute'),
    "two glibc lines, then a bare abort (no faulthandler)": (
        TF_NOISE + "corrupted size vs. prev_size\nfree(): invalid pointer\n",
        "corrupted size vs. prev_size | free(): invalid pointer"),
    "an absl CHECK failure": (
        TF_NOISE + "F0000 00:00:1795936970.1   6367 matmul_op_impl.h:1014] Check failed: "
        "status.ok() Invalid argument: batch dims\n*** Check failure stack trace: ***\n"
        "    @     0x7f6b1c2d3e4f  absl::log_internal::LogMessage::Die()\n" + FAULTHANDLER,
        "F0000 00:00:1795936970.1   6367 matmul_op_impl.h:1014] Check failed: status.ok() "
        "Invalid argument: batch dims | *** Check failure stack trace: *** | "
        "Fatal Python error: Aborted"),
    "an uncaught C++ exception carrying a CUDA error": (
        "terminate called after throwing an instance of 'c10::Error'\n"
        "  what():  CUDA error: an illegal memory access was encountered\n" + FAULTHANDLER,
        "terminate called after throwing an instance of 'c10::Error' | what():  CUDA error: "
        "an illegal memory access was encountered | Fatal Python error: Aborted"),
    "a plain segfault keeps Python's headline and innermost frame": (
        "Fatal Python error: Segmentation fault\n\nCurrent thread 0x1 (most recent call "
        'first):\n  File "/x/faulty.py", line 9 in run\n  File "/x/worker.py", line 2 in main\n',
        'Fatal Python error: Segmentation fault | File "/x/faulty.py", line 9 in run'),
    "no fatal words: the last lines": (
        TF_NOISE + "Traceback (most recent call last):\n  File \"w.py\", line 1\n"
        "SystemExit: 3\n",
        "E0000 00:00:1795936969.878644    6367 cuda_platform.cc:52] failed call to cuInit"),
}


@pytest.mark.parametrize("text,expected", CASES.values(), ids=CASES.keys())
def test_reason_quotes_the_last_fatal_words(tmp_path: Path, text: str, expected: str) -> None:
    log = tmp_path / "w.log"
    log.write_text(text)
    reason = _tail(log)
    assert expected in reason, reason
    if "corrupted" in text or "Check failed" in text:
        assert "cuInit" not in reason  # start-up chatter is not a last word


def test_many_fatal_lines_keep_the_last_three_on_one_line(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_text("".join(f"free(): invalid pointer {i}\n" for i in range(10)))
    assert _tail(log) == " | ".join(f"free(): invalid pointer {i}" for i in (7, 8, 9))


def _invalid_free() -> None:
    """Hand glibc a pointer into the middle of a buffer: it aborts with its own words."""
    import faulthandler

    faulthandler.enable()
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    buf = ctypes.create_string_buffer(64)
    libc.free(ctypes.addressof(buf) + 16)


def test_a_real_glibc_abort_is_quoted(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent.parent)!r}); " \
           "from tests.test_crash_reason import _invalid_free; _invalid_free()"
    with log.open("w") as f:
        proc = subprocess.run([sys.executable, "-c", code], stdout=f, stderr=f, timeout=60)
    assert proc.returncode < 0  # SIGABRT
    reason = _tail(log)
    assert reason.startswith("free(): invalid pointer | Fatal Python error: Aborted"), reason


class GlibcAbort(NumpyAdapter):
    """numpy's results, except that the cell named `abort` dies in glibc's free()."""

    name = "glibcabort"

    def run(self, inputs: Inputs, device: str) -> dict[str, object]:  # type: ignore[override]
        if inputs.x.shape[0] == 3:
            _invalid_free()
        return super().run(inputs, device)  # type: ignore[return-value]


def test_verify_reports_the_glibc_words_of_a_dead_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_entry_points(monkeypatch, glibcabort="tests.test_crash_reason:GlibcAbort")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("frameworks: [glibcabort]\ndevices: [cpu]\ndtypes: [float32]\ncases:\n"
                   "  - {name: abort, x: [3, 4], w: [4, 2]}\n"
                   "  - {name: after, x: [2, 4], w: [4, 2]}\n")
    assert main(["verify", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 1
    rows = list(csv.DictReader((tmp_path / "o" / "verify.csv").open()))
    dx = {r["case"]: r for r in rows if r["quantity"] == "dX"}
    assert dx["abort"]["status"] == "error"
    assert dx["abort"]["reason"].startswith(
        "worker killed by SIGABRT; stderr: free(): invalid pointer | Fatal Python error"), dx
    assert dx["after"]["status"] == "pass"  # a fresh worker took the rest
