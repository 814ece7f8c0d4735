"""The Ray executor: each framework x device x precision-mode group as a Ray task.

The driver (this module, inside `verify`) submits one streaming-generator task per group
(harness/executors/ray_node.py), each in a fresh Ray worker process (`max_calls=1`: no
framework state carried between groups), CPU groups asking for one CPU, GPU groups for one
GPU and, with `--ray-accelerator`, that accelerator type. One reader thread per task turns
its stream into messages on a queue; this loop hands each cell's rows to `on_rows` (the
run's partial log) as they come, so nothing finished is lost whatever happens next.

A task lost mid-run (its Ray worker or node died: WorkerCrashedError, NodeDiedError...)
costs its in-flight cell, an `error` row with the cause; the rest of its group is
submitted once more, wherever Ray places it. Lost again, the rest are errors too.
Each cell's limit (`--cell-timeout`) is kept on the node, by the local Runner there; the
run's (`--timeout`) here, cancelling every task at the deadline, as Ctrl-C does (a task
whose driver is gone is ended by Ray itself).

Ray is imported only here and in ray_node.py, never by `import harness`.
"""

from __future__ import annotations

import contextlib
import os
import queue as queues
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.adapters import Adapter, RegistryError, load_target, registry
from harness.config import Config
from harness.executors import RAY_INSTALL_HINT, ExecutorError, Settings
from harness.judge import uniform_rows
from harness.orchestrator import (
    STARTUP_TIMEOUT_S,
    Progress,
    _worker_path,
    drain,
    timeout_reason,
)
from harness.plan import Cell, Key, row_key
from harness.results import Row

DEFAULT_GCS_PORT = 6379  # `ray start --head`'s
DEFAULT_CLIENT_PORT = 10001  # a ray:// address's (Ray Client)
CONNECT_TIMEOUT_S = 5.0  # ray.init on an unreachable address hangs for minutes instead
CANCEL_GRACE_S = 10.0  # a cancelled task's time to stop its framework worker itself
_END = object()  # a task's stream is exhausted


def import_ray() -> Any:
    """The `ray` module, or ExecutorError with the install hint."""
    try:
        import ray
    except ImportError as exc:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed here ({exc}); "
                            f"install it with: {RAY_INSTALL_HINT}") from None
    return ray


def gcs_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) that must answer for `address`; None where Ray finds it itself."""
    if address in ("", "auto", "local"):
        return None
    client = address.startswith("ray://")
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = rest, str(DEFAULT_CLIENT_PORT if client else DEFAULT_GCS_PORT)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ExecutorError(f"--ray-address {address!r}: expected HOST:PORT (the head "
                            "node's GCS address, e.g. 10.0.0.5:6379), ray://HOST:PORT or "
                            "auto")
    return host.strip("[]"), int(port)


def precheck(chosen: Settings) -> None:
    """Ray importable and the cluster's address answering, in seconds, not minutes."""
    import_ray()
    where = gcs_endpoint(chosen.address)
    if where is None:
        return
    host, port = where
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ExecutorError(
            f"--ray-address {chosen.address!r}: nothing answers at {host}:{port} "
            f"({exc.strerror or exc}); start the head node there with `ray start --head "
            f"--port={port}`, or leave --ray-address and RAY_ADDRESS unset for a local "
            "cluster") from None


@dataclass(frozen=True)
class Cluster:
    ray: Any  # the module
    started_here: bool  # ray.init was ours: shut down at the end of the run


def connect(chosen: Settings, jobs: int) -> Cluster:
    """Join `chosen.address`, or start a local cluster of `jobs` CPUs; a Ray already
    initialised in this process (a library user, the tests) is used as it is."""
    ray = import_ray()
    if ray.is_initialized():
        return Cluster(ray, False)
    precheck(chosen)
    # log_to_driver off: the workers' own output would interleave with the matrix
    quiet = {"logging_level": "ERROR", "log_to_driver": False}
    try:
        with _stderr_aside():
            if chosen.address:
                ray.init(address=chosen.address, **quiet)
            else:
                ray.init(num_cpus=jobs, include_dashboard=False, **quiet)
    except Exception as exc:  # ConnectionError, a Ray version mismatch...
        where = chosen.address or "a local cluster"
        raise ExecutorError(f"--executor ray: cannot start or join {where}: "
                            f"{type(exc).__name__}: {_first_line(exc)}") from None
    return Cluster(ray, True)


@contextlib.contextmanager
def _stderr_aside() -> Iterator[None]:
    """Ray's C++ client logs each failed attempt to join a cluster on the process's
    stderr, once a second for up to a minute; while it starts, that goes nowhere, and
    a failure is told in our one line instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


@dataclass(eq=False)  # a task is itself: `in active` compares identity
class _Task:
    group: tuple[str, str, str]  # framework, device, precision mode
    cells: list[Cell]  # not yet finished, in the order the node runs them
    attempt: int
    gen: Any  # the ObjectRefGenerator
    reader: threading.Thread | None = None
    info: dict[str, Any] = field(default_factory=dict)  # the node's start message
    heard: float = field(default_factory=time.monotonic)
    version: str = ""  # the framework's, from its rows


Inbox = queues.Queue[tuple[_Task, Any]]


def _read(ray: Any, task: _Task, inbox: Inbox) -> None:
    """A task's reader thread: each message of its stream, then _END or the exception."""
    try:
        for ref in task.gen:
            inbox.put((task, ray.get(ref)))
        inbox.put((task, _END))
    except Exception as exc:  # the task died, was cancelled, or raised
        inbox.put((task, exc))


@dataclass
class RayRunner:
    """Runs planned cells as Ray tasks; `on_rows` sees each cell's rows as it finishes."""

    config: Config
    on_rows: Callable[[list[Row]], None]
    cluster: Cluster
    chosen: Settings
    progress: Progress | None = None
    cell_timeout: float = 300.0
    total_timeout: float | None = None
    done_before: int = 0
    placements: list[dict[str, Any]] = field(default_factory=list)  # one per task started
    _done: int = 0
    _total: int = 0
    _end: float = float("inf")
    _targets: dict[str, str] = field(default_factory=dict)
    _inbox: Inbox = field(default_factory=queues.Queue)
    _remote: Any = None  # run_group as a Ray remote function, made once per run
    _gpus: bool = False  # whether any node of the cluster offers a GPU

    def run(self, cells: Sequence[Cell], total: int | None = None) -> None:
        """Run `cells`; `total` is the whole plan's size when `cells` is what is left."""
        self._done, self._total = self.done_before, total or len(cells)
        if self.total_timeout:
            self._end = time.monotonic() + self.total_timeout
        self._targets = registry()
        groups: dict[tuple[str, str, str], list[Cell]] = {}
        for c in cells:
            groups.setdefault((c.framework, c.device, c.mode), []).append(c)
        active: list[_Task] = []
        try:
            offered = self.cluster.ray.cluster_resources()
            self._gpus = offered.get("GPU", 0) >= 1
            for group, mine in groups.items():
                why = self._infeasible(group[1], offered)
                if why:
                    for cell in mine:
                        self._emit(uniform_rows(cell, "skip", why, "", self._adapter(cell)))
                else:
                    active.append(self._submit(group, mine, 0))
            while active:
                self._step(active)
                if time.monotonic() > self._end:
                    self._expire(active)
        except BaseException:  # Ctrl-C, SIGTERM: every task ends now, what finished is kept
            self._cancel(active)
            raise
        finally:
            if self.cluster.started_here:
                self.cluster.ray.shutdown()

    def _infeasible(self, device: str, offered: dict[str, float]) -> str:
        """Why no node of the cluster can take a group on `device` ("" if one can).

        A cluster without any GPU runs GPU groups on a CPU slot, as a local run would: the
        adapter gives its own reason (`no CUDA GPU visible to torch`), the same row as
        locally. An accelerator type no node offers would leave the task pending forever.
        """
        acc = self.chosen.accelerator
        if device == "gpu" and acc and f"accelerator_type:{acc}" not in offered:
            types = sorted(k.partition(":")[2] for k in offered
                           if k.startswith("accelerator_type:"))
            return (f"no node of the Ray cluster offers accelerator type {acc} "
                    f"(offered: {', '.join(types) or 'none'})")
        return ""

    def _submit(self, group: tuple[str, str, str], cells: list[Cell], attempt: int) -> _Task:
        from harness.executors.ray_node import run_group

        ray = self.cluster.ray
        ask: dict[str, Any] = {"num_cpus": 1}
        if group[1] == "gpu" and self._gpus:
            ask["num_gpus"] = 1
            if self.chosen.accelerator:
                ask["accelerator_type"] = self.chosen.accelerator
        if self._remote is None:  # max_calls=1: a fresh Ray worker process per group;
            # max_retries=0: a lost task is retried here, without the cells it already sent
            self._remote = ray.remote(max_calls=1, max_retries=0,
                                      num_returns="streaming")(run_group)
        gen = self._remote.options(**ask).remote(self.config, cells, self._targets,
                                                 _worker_path(), self.cell_timeout)
        task = _Task(group, list(cells), attempt, gen)
        task.reader = threading.Thread(target=_read, args=(ray, task, self._inbox),
                                       daemon=True, name=f"ray-{'-'.join(group)}")
        task.reader.start()
        return task

    def _silence_limit(self) -> float:
        """How long a started task may send nothing: its worker's start-up and a cell,
        twice over (references are built on the node too) before it counts as lost."""
        return 2 * (STARTUP_TIMEOUT_S + self.cell_timeout)

    def _step(self, active: list[_Task]) -> None:
        started = [t.heard + self._silence_limit() for t in active if t.info]
        nearest = min([self._end, *started])
        for task, msg in drain(self._inbox, nearest):
            if task not in active:  # cancelled already: late words
                continue
            task.heard = time.monotonic()
            if msg is _END:
                active.remove(task)
                self._lost(task, active, "the Ray task ended without sending this cell")
            elif isinstance(msg, BaseException):
                active.remove(task)
                self._lost(task, active, self._cause(task, msg))
            elif msg["event"] == "start":
                task.info = msg
                self.placements.append({"group": " ".join(task.group),
                                        "attempt": task.attempt,
                                        **{k: msg[k] for k in ("node", "host", "machine",
                                                               "pid", "resources")}})
            else:
                self._rows(task, msg["rows"])
        for task in list(active):
            if task.info and time.monotonic() > task.heard + self._silence_limit():
                self._cancel([task])
                active.remove(task)
                self._lost(task, active, "no word from the Ray task for "
                                         f"{self._silence_limit():g} s")

    def _rows(self, task: _Task, rows: list[Row]) -> None:
        key: Key = row_key(rows[0])
        if key not in {c.key for c in task.cells}:  # the protocol is ours: our bug
            raise RuntimeError(f"Ray task {task.group} sent cell {key}, not one of its own")
        task.cells = [c for c in task.cells if c.key != key]
        task.version = rows[0].framework_version or task.version
        self._emit(rows)

    def _cause(self, task: _Task, exc: BaseException) -> str:
        where = task.info.get("host") or "its node"
        # a RayTaskError's own first line is only "ray::run_group() (pid=..., ip=...)":
        # the exception raised on the node is its `cause`
        inner = getattr(exc, "cause", None)
        if isinstance(inner, BaseException):
            exc = inner
        return f"Ray task lost on {where}: {type(exc).__name__}: {_first_line(exc)}"

    def _lost(self, task: _Task, active: list[_Task], cause: str) -> None:
        """The in-flight cell is an error with `cause`; the rest of the group is submitted
        once more, or, if this was the retry, recorded as errors too."""
        if not task.cells:
            return
        cell, rest = task.cells[0], task.cells[1:]
        self._emit(uniform_rows(cell, "error", cause, task.version, self._adapter(cell)))
        if not rest:
            return
        if task.attempt == 0:
            active.append(self._submit(task.group, rest, 1))
            return
        again = f"{cause} (its group had already been retried once)"
        for c in rest:
            self._emit(uniform_rows(c, "error", again, task.version, self._adapter(c)))

    def _expire(self, active: list[_Task]) -> None:
        """The overall time limit is reached: stop every task, record what did not run."""
        why = timeout_reason(self.total_timeout)
        self._cancel(active)
        for task in active:
            for c in task.cells:
                self._emit(uniform_rows(c, "error", why, task.version, self._adapter(c)))
        active.clear()

    def _cancel(self, tasks: Sequence[_Task]) -> None:
        """Cancel `tasks`: first as Ctrl-C (the node stops its framework worker), then, for
        a task still running after CANCEL_GRACE_S, by killing its Ray worker."""
        ray = self.cluster.ray
        for t in tasks:
            with contextlib.suppress(Exception):
                ray.cancel(t.gen, force=False)
        deadline = time.monotonic() + CANCEL_GRACE_S
        for t in tasks:
            if t.reader:
                t.reader.join(timeout=max(0.0, deadline - time.monotonic()))
            if t.reader is None or t.reader.is_alive():
                with contextlib.suppress(Exception):
                    ray.cancel(t.gen, force=True)

    def _adapter(self, cell: Cell) -> type[Adapter] | None:
        """The adapter class, for the capability skips of error rows (None if unknown)."""
        target = self._targets.get(cell.framework)
        if target is None:
            return None
        try:
            return load_target(target, cell.framework)
        except RegistryError:
            return None

    def _emit(self, rows: list[Row]) -> None:
        self.on_rows(rows)
        self._done += 1
        if self.progress:
            self.progress(self._done, self._total, rows[0].framework)
