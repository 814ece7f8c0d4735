"""Large worker results travel as files, not through the pipe.

A result sent through the pipe is pickled whole and unpickled whole: the orchestrator holds
the received bytes and the arrays at once, 2.5 GB for the five 8192 x 8192 float32 results
of one cell. Arrays of at least SPILL_MIN_BYTES are instead written by the worker to the
run's temporary folder (`np.save`) and mapped read-only by the orchestrator
(`np.load(mmap_mode="r")`); the file is unlinked as soon as it is mapped, so nothing is
left behind, and the checks read it a block at a time, releasing the pages they are done
with (`release`).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPILL_MIN_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Spilled:
    """An array written to `path` by the worker."""

    path: str


def spill(outputs: dict[str, Any], folder: str) -> dict[str, Any]:
    """`outputs` with each large array replaced by a `Spilled` file in `folder`."""
    out: dict[str, Any] = {}
    for name, value in outputs.items():
        if isinstance(value, np.ndarray) and value.nbytes >= SPILL_MIN_BYTES:
            path = Path(folder) / f"{name}-{uuid.uuid4().hex}.npy"
            np.save(path, value, allow_pickle=False)
            out[name] = Spilled(str(path))
        else:
            out[name] = value
    return out


def unspill(outputs: dict[str, Any]) -> dict[str, Any]:
    """`outputs` with each `Spilled` file mapped read-only (and the file unlinked)."""
    out: dict[str, Any] = {}
    for name, value in outputs.items():
        if isinstance(value, Spilled):
            out[name] = np.load(value.path, mmap_mode="r", allow_pickle=False)
            os.unlink(value.path)  # the mapping stays valid; the space goes with it
        else:
            out[name] = value
    return out


def release(a: Any) -> None:
    """Let the kernel drop the pages of a mapped result already read (RSS falls back)."""
    base = getattr(a, "_mmap", None)
    if isinstance(base, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):
            base.madvise(mmap.MADV_DONTNEED)
