"""Plans the cells of a run, runs each framework in its own worker, checks what comes back.

The orchestrator imports no framework. Each framework's cells go to a worker process
(a fresh interpreter running harness.worker); results stream back over a pipe and are
checked here against the float64 reference, so a worker that crashes, hangs or raises
loses only the cell it was on: that cell becomes `error` with the cause, and a fresh worker
takes the framework's remaining cells. Other frameworks' results are never touched.

Every wait has a deadline. Messages are read by one thread per worker, so a worker frozen
in the middle of sending (SIGSTOP, a full pipe) blocks only its reader; the loop here
waits on a queue, in slices of at most MAX_WAIT_S, and kills the worker at its deadline.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import pickle
import queue as queues
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from threadpoolctl import threadpool_limits

import harness
from harness import worker
from harness.adapters import Adapter, RegistryError, load, target_of
from harness.config import CELL_TIMEOUT_S, Config
from harness.dtypes import get
from harness.errors import describe
from harness.judge import check_of, judge, needed, uniform_rows
from harness.plan import Cell, in_plan_order, plan
from harness.refcache import References
from harness.results import Row
from harness.spill import unspill
from harness.worker import Task

STARTUP_TIMEOUT_S = 300.0  # importing a framework and finding its devices
STDERR_TAIL_LINES = 5
# The longest single wait: limits can be inf or 1e308 (no limit), which no system call
# takes as a timeout (OverflowError); the loop wakes at least this often and re-checks.
MAX_WAIT_S = 60.0
# The worker's interpreter: -I (isolated) keeps the current directory, PYTHONPATH and the
# user's site off its import path, so a folder named `harness` or `torch` where the user
# stands cannot replace our code or a framework; the orchestrator's own path is then
# installed explicitly (see _worker_path) before harness.worker is imported.
_BOOT = ("import sys; sys.path[:] = sys.argv[3:]; "
         "from harness.worker import main; main(int(sys.argv[1]), sys.argv[2])")
_EOF = object()  # a reader's last message: the worker's end of the pipe is closed

Progress = Callable[[int, int, str], None]
Message = TypeVar("Message")


def drain(inbox: queues.Queue[Message], until: float) -> list[Message]:
    """What `inbox` holds: the first message waited for until the monotonic time `until`
    (at most MAX_WAIT_S), then whatever else came, without waiting. Both executors' loops
    wake here, at a deadline or with news."""
    got: list[Message] = []
    with contextlib.suppress(queues.Empty):
        got.append(inbox.get(timeout=min(MAX_WAIT_S, max(0.0, until - time.monotonic()))))
        while True:
            got.append(inbox.get_nowait())
    return got


def _worker_path() -> list[str]:
    """The orchestrator's import path for a worker, less the current directory ('' or its
    absolute form), unless that is where harness itself was imported from."""
    cwd = os.getcwd()
    root = os.path.dirname(os.path.dirname(os.path.abspath(harness.__file__)))
    out = []
    for p in sys.path:
        full = os.path.abspath(p or ".")
        if full == cwd and full != root:
            continue
        out.append(full)
    return list(dict.fromkeys(out))


def _read(w: _Worker, inbox: queues.Queue[tuple[_Worker, Any]]) -> None:
    """A worker's reader thread: every message, then _EOF. Only this thread touches the
    worker's connection, and it ends when the worker's end closes (exit or kill)."""
    try:
        while True:
            inbox.put((w, w.conn.recv()))
    except Exception:  # EOFError, OSError, a torn pickle: the worker is gone or broken
        inbox.put((w, _EOF))
    finally:
        w.conn.close()


def _installed_version(module: str) -> str:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(module)
    return ""


@dataclass(eq=False)  # a worker is itself: `in active` compares identity
class _Worker:
    framework: str
    mode: str
    adapter: type[Adapter]
    pending: deque[tuple[Task, Cell]]
    process: Any
    conn: Connection
    log: Path
    deadline: float
    version: str = ""
    flags: str = ""  # the framework's precision settings, process-wide
    started: bool = False


# A group runs in one worker process: (framework, precision mode, adapter, its cells). One
# process per framework and mode, because a mode is process-wide state.
_Group = tuple[str, str, type[Adapter], list[tuple[Task, Cell]]]


# Frameworks run at once, one worker each, wherever the count is not given (`verify
# --jobs`, `make run`, library calls): up to 4, never more than the cores. On 2 cores both
# workers and the reference threads already share the machine.
DEFAULT_JOBS: int = min(4, os.cpu_count() or 1)


@dataclass
class Runner:
    """Runs planned cells through workers; `on_rows` sees each cell's rows as it finishes."""

    config: Config
    on_rows: Callable[[list[Row]], None]
    progress: Progress | None = None
    jobs: int = DEFAULT_JOBS
    cell_timeout: float = CELL_TIMEOUT_S
    total_timeout: float | None = None
    done_before: int = 0  # cells finished by an earlier, interrupted run (resume)
    # how a framework name becomes its adapter class: the registry here; a Ray node is
    # given the driver's registry (harness/executors/ray_node.py)
    loader: Callable[[str], type[Adapter]] = load
    _done: int = 0
    _total: int = 0
    _end: float = float("inf")
    _logdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="harness-")))
    _inbox: queues.Queue[tuple[_Worker, Any]] = field(default_factory=queues.Queue)
    _refs: References = field(default_factory=lambda: References(0))  # set up by run()
    _stopping: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        """Ask a run going on in another thread to end as Ctrl-C would (workers killed,
        KeyboardInterrupt out of `run`); its loop wakes for it at once."""
        self._stopping.set()
        self._inbox.put((None, _EOF))  # type: ignore[arg-type]  # a wake-up, from no worker

    def run(self, cells: Sequence[Cell], total: int | None = None) -> None:
        """Run `cells`; `total` is the whole plan's size when `cells` is what is left."""
        self._done, self._total = self.done_before, total or len(cells)
        self._refs = References(self.config.seed, spill_dir=self._logdir)
        self._refs.expect((c.case, c.dtype, check_of(c, self.config.check)) for c in cells)
        if self.total_timeout:
            self._end = time.monotonic() + self.total_timeout  # inf stays inf: no limit
        queue: deque[_Group] = deque()
        for name, mode in dict.fromkeys((c.framework, c.mode) for c in cells):
            mine = [(i, c) for i, c in enumerate(cells) if (c.framework, c.mode) == (name, mode)]
            runnable = self._settle_without_worker(name, mode, mine)
            if runnable:
                queue.append(runnable)
        active: list[_Worker] = []
        # The orchestrator's own products (references) run beside the workers: one BLAS
        # thread per orchestrator thread; References.threads uses the cores left idle.
        blas = threadpool_limits(limits=1, user_api="blas")
        try:
            while queue or active:
                while queue and len(active) < max(1, self.jobs):
                    active.append(self._start(*queue.popleft()))
                    self._prefetch(active[-1])
                self._step(active, queue)
                if self._stopping.is_set():
                    raise KeyboardInterrupt
                if time.monotonic() > self._end:
                    self._expire(active, queue)
        except BaseException:  # Ctrl-C, SIGTERM: end every worker now, keep what finished
            for w in active:
                w.process.kill()
            raise
        finally:
            for w in active:
                self._stop(w)
            self._refs.close()
            blas.restore_original_limits()
            shutil.rmtree(self._logdir, ignore_errors=True)

    def _emit(self, rows: list[Row], framework: str) -> None:
        self.on_rows(rows)
        self._done += 1
        if self.progress:
            self.progress(self._done, self._total, framework)

    def _settle_without_worker(self, name: str, mode: str,
                               mine: list[tuple[int, Cell]]) -> _Group | None:
        """Settle what needs no worker: unknown or missing frameworks, unsupported dtypes."""
        try:
            adapter = self.loader(name)
        except RegistryError as exc:
            for _, cell in mine:
                self._emit(uniform_rows(cell, "error", str(exc), ""), name)
            return None
        if not adapter.installed():
            why = f"{adapter.module} is not installed: {adapter.install_hint}"
            for _, cell in mine:
                self._emit(uniform_rows(cell, "skip", why, "", adapter), name)
            return None
        version = _installed_version(adapter.module)
        todo = []
        for i, cell in mine:
            reason = adapter.unsupported_reason(cell.device, cell.dtype)
            if reason:
                self._emit(uniform_rows(cell, "skip", reason, version, adapter), name)
            else:
                todo.append((Task(i, cell.case, cell.dtype, cell.device), cell))
        return (name, mode, adapter, todo) if todo else None

    def _start(self, name: str, mode: str, adapter: type[Adapter],
               todo: list[tuple[Task, Cell]]) -> _Worker:
        fd, log_name = tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=self._logdir)
        log = Path(log_name)
        path = _worker_path()
        job = worker.Job(name, target_of(adapter), mode == "pinned", [t for t, _ in todo],
                         self.config.seed, path, spill_dir=str(self._logdir))
        # The job goes in a file, not down a pipe: a worker that never reads (frozen at
        # start) cannot block the orchestrator on a full pipe.
        job_file = log.with_suffix(".job")
        job_file.write_bytes(pickle.dumps(job))
        recv, send = os.pipe()
        try:
            # stdout and stderr go to the log from the first instruction, so even a crash
            # while starting the interpreter or importing a framework leaves its words there
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, str(send), str(job_file), *path],
                stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, pass_fds=(send,),
            )
        finally:
            os.close(send)  # the child holds the only write end: EOF means it is gone
            os.close(fd)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S + self.cell_timeout
        conn = Connection(recv, writable=False)
        w = _Worker(name, mode, adapter, deque(todo), proc, conn, log, deadline)
        threading.Thread(target=_read, args=(w, self._inbox), daemon=True,
                         name=f"read-{name}").start()
        return w

    def _step(self, active: list[_Worker], queue: deque[_Group]) -> None:
        nearest = min(min(w.deadline for w in active), self._end)
        for w, msg in drain(self._inbox, nearest):
            if w not in active:  # a worker already stopped: its end of pipe, or late words
                continue
            if msg is _EOF:
                self._lost(w, active, queue, self._death_cause(w))
            else:
                self._handle(w, msg, active)
        for w in list(active):
            if time.monotonic() > w.deadline:
                what, limit = ("cell", self.cell_timeout) if w.started else (
                    "start-up", STARTUP_TIMEOUT_S + self.cell_timeout)
                self._lost(w, active, queue, f"timeout after {limit:g} s ({what})", kill=True)

    def _handle(self, w: _Worker, msg: dict[str, Any], active: list[_Worker]) -> None:
        w.deadline = time.monotonic() + self.cell_timeout
        if msg["event"] == "hello":
            w.version, w.flags, w.started = msg["version"], msg["flags"], True
            return
        if msg["event"] == "fatal":
            self._fail_all(w.framework, w.adapter, w.pending, msg["reason"], w.version)
            return
        task, cell = w.pending.popleft()
        if task.index != msg["index"]:  # the protocol is ours: a mismatch is our bug
            raise RuntimeError(f"worker {w.framework} answered cell {msg['index']}, "
                               f"expected {task.index}")
        if msg["status"] == "ok":
            try:
                # the cores no worker is computing on build the reference, a thread each
                # (a worker with cells left is computing its next one)
                self._refs.threads = max(1, _cores() - sum(1 for a in active if a.pending))
                rows = judge(cell, unspill(msg["outputs"]), msg["errors"], w.adapter,
                             msg["compute"], w.version, self.config.seed, self._refs,
                             self.config.check, flags=w.flags)
            except Exception as exc:  # e.g. MemoryError building a huge reference
                rows = uniform_rows(cell, "error", "harness could not check the results: "
                                   f"{describe(exc)}", w.version, w.adapter,
                                   msg["compute"], flags=w.flags)
        else:
            rows = uniform_rows(cell, msg["status"], msg["reason"], w.version, w.adapter,
                                msg["compute"], flags=w.flags)
            # e.g. no GPU: the reference this cell was counted for is needed once less
            self._refs.release(cell.case, cell.dtype, check_of(cell, self.config.check))
        self._emit(rows, w.framework)
        self._prefetch(w)
        if not w.pending:
            self._stop(w)
            active.remove(w)

    def _prefetch(self, w: _Worker) -> None:
        """Build the reference of the cell `w` is computing (or starting up for) meanwhile."""
        if w.pending:
            cell = w.pending[0][1]
            self._refs.prefetch(cell.case, get(cell.dtype), check_of(cell, self.config.check),
                                needed(w.adapter))

    def _fail_all(self, framework: str, adapter: type[Adapter],
                  pending: deque[tuple[Task, Cell]], reason: str, version: str) -> None:
        while pending:
            _, cell = pending.popleft()
            self._emit(uniform_rows(cell, "error", reason, version, adapter), framework)

    def _lost(
        self, w: _Worker, active: list[_Worker], queue: deque[_Group], cause: str,
        kill: bool = False,
    ) -> None:
        """A worker died or hung: its current cell is an error, a new worker gets the rest."""
        if kill:
            w.process.kill()
        self._stop(w)
        active.remove(w)
        if not w.pending:
            return
        _, cell = w.pending.popleft()
        self._emit(uniform_rows(cell, "error", cause, w.version, w.adapter), w.framework)
        if not w.started:  # it died starting up: every later start would too
            self._fail_all(w.framework, w.adapter, w.pending, cause, w.version)
        elif w.pending:
            queue.appendleft((w.framework, w.mode, w.adapter, list(w.pending)))

    def _expire(self, active: list[_Worker], queue: deque[_Group]) -> None:
        """The overall time limit is reached: stop everything, record what did not run."""
        why = timeout_reason(self.total_timeout)
        for w in list(active):
            w.process.kill()
            self._stop(w)
            active.remove(w)
            self._fail_all(w.framework, w.adapter, w.pending, why, w.version)
        while queue:
            name, _, adapter, todo = queue.popleft()
            self._fail_all(name, adapter, deque(todo), why, "")

    def _death_cause(self, w: _Worker) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            w.process.wait(timeout=10)
        code = w.process.returncode
        if code is None:
            cause = "worker closed its pipe without exiting"
        elif code < 0:
            name = signal.Signals(-code).name
            cause = f"worker killed by {name}"
            if name == "SIGKILL":
                cause += " (the kernel's out-of-memory killer, or an external kill)"
        else:
            cause = f"worker exited with status {code}"
        tail = _tail(w.log)
        return f"{cause}; stderr: {tail}" if tail else cause

    def _stop(self, w: _Worker) -> None:
        # The connection is its reader thread's to close (closing it under a blocked
        # read could close a reused descriptor): the thread ends at the worker's exit.
        try:
            w.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            w.process.kill()
            w.process.wait(timeout=5)


def timeout_reason(total_timeout: float | None) -> str:
    """The reason of every cell that the run's overall time limit left undone."""
    return f"timeout: the run's overall limit of {total_timeout:g} s was reached"


def verify(
    config: Config,
    *,
    progress: Progress | None = None,
    jobs: int = DEFAULT_JOBS,
    cell_timeout: float = CELL_TIMEOUT_S,
    total_timeout: float | None = None,
) -> list[Row]:
    """Run every cell of `config`; rows in plan order (framework, device, dtype, case)."""
    cells = plan(config)
    rows: list[Row] = []
    Runner(config, rows.extend, progress, jobs, cell_timeout, total_timeout).run(cells)
    return in_plan_order(rows, cells)


def _cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# A dying process's own last words, as its C and C++ runtime print them before abort():
# glibc's heap checks ("corrupted size vs. prev_size", "free(): invalid pointer", newer
# glibc's "Fatal glibc error: ..."), stack protector, absl/glog CHECK failures (an
# "F" log line), uncaught C++ exceptions with their what(), and CUDA errors. Non-fatal
# absl lines ("E0000 ... CUDA error: Failed call to cuInit", on every CPU-only TensorFlow
# start) are not last words and are skipped.
FATAL_WORDS = re.compile(
    r"^(?:(?:free|malloc|realloc|calloc|munmap_chunk|malloc_consolidate|_int_\w+|tcache_\w+)"
    r"\(\): |corrupted |double free or corruption|Fatal glibc error|\*\*\* .+ \*\*\*"
    r"|F\d{4} .*\] |Check failed: |terminate called |\s*what\(\): "
    r"|.*(?:CUDA error|CUDA_ERROR_|cudaError|CUBLAS_STATUS_|CUDNN_STATUS_"
    r"|illegal memory access|device-side assert))")
ABSL_NOT_FATAL = re.compile(r"^[IWE]\d{4} ")
FATAL_WORDS_KEPT = 3  # the last few: a glibc line and its abort, a CHECK and its context
LINE_CHARS = 240


def _tail(path: Path) -> str:
    """What the worker's stderr says about its death, on one line.

    The process's own last fatal words (see FATAL_WORDS) come first, then a faulthandler
    dump (fatal signal) summarised as its headline and the dying thread's innermost frame;
    without either, the last lines.
    """
    try:
        lines = [ln.strip()[:LINE_CHARS] for ln in
                 path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    words = list(dict.fromkeys(
        ln for ln in lines if FATAL_WORDS.match(ln) and not ABSL_NOT_FATAL.match(ln)))
    fatal = [i for i, ln in enumerate(lines) if ln.startswith("Fatal Python error")]
    if fatal:
        # faulthandler lists every thread; the one that died is the "Current thread"
        dump = lines[fatal[-1]:]
        current = next((i for i, ln in enumerate(dump) if ln.startswith("Current thread")), 0)
        frames = [ln for ln in dump[current:] if ln.startswith("File ")]
        return " | ".join([*words[-FATAL_WORDS_KEPT:], lines[fatal[-1]], *frames[:1]])
    if words:
        return " | ".join(words[-FATAL_WORDS_KEPT:])
    return " | ".join(lines[-STDERR_TAIL_LINES:])
