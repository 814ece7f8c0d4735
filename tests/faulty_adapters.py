"""Adapters that misbehave on purpose, one fault per case name (fault injection).

The numpy adapter does the real work; a case named after a fault triggers it. Used as
entry-point plugins, so the faults happen inside real worker processes.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from harness.adapters.numpy import NumpyAdapter
from harness.cases import Inputs


class Faulty(NumpyAdapter):
    name = "faulty"

    def run(self, inputs: Inputs, device: str) -> dict[str, np.ndarray]:
        fault = _case_of(inputs)
        if fault == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        if fault == "exit":
            os._exit(3)
        if fault == "hang":
            time.sleep(3600)
        if fault == "raise":
            raise ValueError("planted failure")
        if fault == "oom":
            raise MemoryError("Unable to allocate 8.00 TiB for an array")
        out = super().run(inputs, device)
        dx = out["dX"]
        if fault == "wrong_shape":
            out["dX"] = dx.T.copy()
        elif fault == "wrong_dtype":
            out["dX"] = dx.astype(np.float64)
        elif fault == "nan":
            dx[0, 1] = np.nan
        elif fault == "inf":
            dx[1, 0] = np.inf
        elif fault == "unchanged":
            out["dX"] = inputs.x.copy()
        return out


class Slow(NumpyAdapter):
    """Correct, but 0.3 s per cell: time to kill a run in the middle."""

    name = "slow"

    def run(self, inputs: Inputs, device: str) -> dict[str, np.ndarray]:
        time.sleep(0.3)
        return super().run(inputs, device)


class BrokenAtStart(NumpyAdapter):
    name = "broken"

    def __init__(self, **kw: object) -> None:
        raise ImportError("libcudart.so.12: cannot open shared object file")


class CrashAtStart(NumpyAdapter):
    name = "crashstart"

    def __init__(self, **kw: object) -> None:
        os.kill(os.getpid(), signal.SIGSEGV)


# Cases carry no name into the worker's inputs; the fault is keyed by the X shape's first
# dim instead, which the test config sets per fault.
FAULT_BY_ROWS = {
    3: "segfault", 5: "hang", 6: "raise", 7: "oom", 8: "wrong_shape", 9: "wrong_dtype",
    10: "nan", 11: "inf", 12: "unchanged", 13: "exit",
}


def _case_of(inputs: Inputs) -> str:
    return FAULT_BY_ROWS.get(inputs.x.shape[0], "ok")


class Hostile(NumpyAdapter):
    """Faults of issue 10: a worker frozen in the middle of sending its result, and a
    reason holding what terminals, CSV, XML and ASCII locales choke on."""

    name = "hostile"

    def run(self, inputs: Inputs, device: str) -> dict[str, np.ndarray]:
        rows = inputs.x.shape[0]
        if rows == 16:  # frozen mid-send: a message header promising 1 MB, then SIGSTOP
            import struct
            import sys

            fd = int(sys.argv[1])  # the worker's pipe (python -m harness.worker FD, or
            os.write(fd, struct.pack("!i", 1 << 20) + b"\x80" * 4096)  # the -I boot)
            os.kill(os.getpid(), signal.SIGSTOP)
        if rows == 17:
            raise ValueError("=planted \u2264 \x1b[31mred\x1b[0m \udc80 <b>&</b>\nline 2")
        return super().run(inputs, device)
