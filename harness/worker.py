"""The worker process: runs one framework's cells and streams raw results back.

It is the only place a framework is imported during `verify`. The orchestrator starts it
as `python -I -c BOOT FD JOBFILE PATH...` (see orchestrator._BOOT): a fresh, isolated
interpreter (no inherited CUDA or XLA state; a crash here cannot corrupt the orchestrator;
the caller's `__main__` is never re-imported, as multiprocessing's spawn would; the
current directory is not on its import path) whose import path is the orchestrator's,
stdout and stderr going to a log file from its first instruction, the job (a pickled
`Job`) in JOBFILE, and messages back on the pipe FD:

    {"event": "hello", "version": str, "flags": str}  # flags: the precision settings
    {"event": "cell", "index": int, "status": "ok" | "skip" | "error",
     "reason": str, "compute": str, "outputs": {"Y": ndarray, "dX": ..., "dW": ...,
     "dY": ..., "d2W": ...}, "errors": {quantity: reason}}

Y, dX and dW come from one reverse-mode run; dY (forward mode) and d2W (second order),
where the adapter has them, from their own runs, so a failure there is an error of that
quantity alone.
    {"event": "fatal", "reason": str}          # the framework cannot even start
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from harness.adapters import AdapterUnavailable, load_target
from harness.cases import Case, make_inputs, make_tangents
from harness.dtypes import get
from harness.errors import describe
from harness.spill import spill

# Set before the framework is imported; a user's own setting wins (environment inherited).
# GPU memory taken as needed, not grabbed at start: the benchmarks set these too
# (benchmarks/common.py), where several frameworks share one process and one GPU.
GPU_MEMORY_ENV: dict[str, str] = {
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # JAX would grab 75% of GPU memory
    "TF_FORCE_GPU_ALLOW_GROWTH": "true",  # TensorFlow likewise
}
ENV_DEFAULTS: dict[str, str] = {
    **GPU_MEMORY_ENV,
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TF's start-up chatter drowns the errors we keep
    # Idle OpenMP threads (torch's) spin by default, stealing the cores that the other
    # workers and the orchestrator need: measured 3-4x slower runs on 2 cores.
    "OMP_WAIT_POLICY": "PASSIVE",
}


@dataclass(frozen=True)
class Job:
    framework: str
    target: str  # the adapter's module:Class (plugins need no registry here)
    pin_precision: bool
    tasks: list[Task]
    seed: int
    sys_path: list[str]  # the orchestrator's (less the cwd), so plugin modules import here too
    spill_dir: str = ""  # large results go there as files (harness/spill.py); "": the pipe


@dataclass(frozen=True)
class Task:
    index: int  # position in the orchestrator's plan
    case: Case
    dtype: str
    device: str


def serve(job: Job, conn: Connection) -> None:
    """Run `job`'s cells, sending one message per cell on `conn`."""
    framework, seed = job.framework, job.seed
    # A fatal signal (segfault in a framework) leaves a Python traceback in the log, which
    # the orchestrator quotes in the cell's error.
    faulthandler.enable()
    # Ctrl-C (and a closed terminal's SIGHUP) reaches the whole process group; the
    # orchestrator decides what stops, and a worker dying of the signal first would record
    # its cell as an error instead of "not run".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        adapter = load_target(job.target, framework)(pin_precision=job.pin_precision)
        version = adapter.version()
    except Exception as exc:  # a broken install must not look like a crash of ours
        conn.send({"event": "fatal", "reason": f"{framework} failed to start: {describe(exc)}"})
        return
    conn.send({"event": "hello", "version": version, "flags": adapter.precision_flags()})
    device_reasons: dict[str, str | None] = {}
    for task in job.tasks:
        if task.device not in device_reasons:
            device_reasons[task.device] = adapter.device_reason(task.device)
        reason = device_reasons[task.device]
        msg: dict[str, Any] = {"event": "cell", "index": task.index, "compute": ""}
        if reason is not None:
            msg.update(status="skip", reason=reason)
        else:
            msg["compute"] = adapter.precision(task.device, task.dtype)
            try:
                dtype = get(task.dtype)
                outputs, errors = adapter.run_all(make_inputs(task.case, dtype, seed),
                                                  make_tangents(task.case, dtype, seed),
                                                  task.device)
                if job.spill_dir:
                    outputs = spill(outputs, job.spill_dir)
                msg.update(status="ok", reason="", outputs=outputs, errors=errors)
            except AdapterUnavailable as exc:
                msg.update(status="skip", reason=str(exc))
            except Exception as exc:
                msg.update(status="error", reason=describe(exc))
        conn.send(msg)
    conn.close()


def main(fd: int, job_file: str) -> None:
    """The job from `job_file`, messages on the pipe `fd` (sys.path is already the job's)."""
    conn = Connection(fd, readable=False)
    with open(job_file, "rb") as f:
        job: Job = pickle.load(f)
    serve(job, conn)
