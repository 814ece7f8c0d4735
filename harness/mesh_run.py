"""`matmul-harness verify-mesh`: a matmul split across a device mesh, checked like any cell.

Cells (`harness.mesh.plan`) go to mesh workers (`harness.mesh_worker`), one group per
framework and world size, each started in a session of its own: a group that hangs past
the cell timeout or dies is ended whole (`killpg`: gloo ranks included), its current
cell becomes `error`, and a fresh group takes the remaining cells. Results are checked
here against the float64 reference with the split-aware bound (`mesh.bound_params`) and
written as verify.csv rows (README: "Sharded matmul").
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from harness.cases import make_inputs
from harness.checks import Outcome, check
from harness.dtypes import get
from harness.errors import describe
from harness.judge import make_row as verify_row
from harness.mesh import LAYOUTS, QUANTITIES, MeshCell, MeshConfig, bound_params
from harness.mesh_worker import MeshJob
from harness.plan import Cell
from harness.reference import reference
from harness.results import Row
from harness.runfiles import VERIFY_FILE

STARTUP_TIMEOUT_S = 300.0  # importing a framework, starting P ranks on a busy machine


def make_row(cell: MeshCell, quantity: str, status: str, reason: str, version: str,
             outcome: Outcome | None = None, k_eff: int = -1, note: str = "") -> Row:
    """A verify.csv row of a mesh cell, made as verify makes one: the `case` column names
    the case, layout and API, the device the mesh; mesh workers pin full float32 (`ieee`).
    The reason's whitespace is folded (tracebacks from ranks carry indentation)."""
    as_cell = Cell(cell.framework, "pinned", cell.device, cell.dtype,
                   replace(cell.case, name=cell.label))
    return verify_row(as_cell, quantity, status, " ".join(reason.split()), version,
                      outcome=outcome, k_eff=k_eff, compute="ieee", note=note)


def judge(cell: MeshCell, msg: dict[str, Any], version: str, seed: int) -> list[Row]:
    """Rows of a finished cell: Y, dX, dW against the reference, then the placements."""
    if msg["status"] != "ok":
        return [make_row(cell, q, msg["status"], msg["reason"], version) for q in QUANTITIES]
    dtype = get(cell.dtype)
    ref = reference(make_inputs(cell.case, dtype, seed))
    layout = LAYOUTS[cell.layout]
    rows = []
    for q in QUANTITIES[:3]:
        p = bound_params(layout, cell.mesh, q, cell.case)
        o = check(q, msg["outputs"][q], ref.values[q], ref.scale[q], dtype, p)
        note = f"sum split across {p.parts} devices" if p.parts > 1 else ""
        if dtype.name == "bfloat16" and o.status == "pass" and o.biased:
            # reported, not failed: the bias test is not yet measured on mesh results
            # (docs/sharded.md)
            note += f"; bias β={o.bias:.3g} (|β-β₀| is {o.bias_z:.3g}x its limit)"
        rows.append(make_row(cell, q, o.status, o.reason, version, o, p.k_eff, note.strip("; ")))
    problems = msg["placement"]
    note = f"shardings {msg['shardings']}; collectives {msg['collectives']}"
    rows.append(make_row(cell, "placement", "fail" if problems else "pass",
                         "; ".join(problems), version, note=note))
    return rows


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End the worker and every rank it started (they share its session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10  # SIGKILL is asynchronous: see the ranks gone too
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


def _groups(cells: Sequence[MeshCell]) -> list[tuple[str, int, list[tuple[int, MeshCell]]]]:
    """One worker group per framework (JAX: all its meshes in one process, with as many
    host devices as the largest needs) and, for torch, per world size."""
    out: dict[tuple[str, int], list[tuple[int, MeshCell]]] = {}
    for i, c in enumerate(cells):
        key = (c.framework, 0 if c.framework == "jax" else c.mesh.size)
        out.setdefault(key, []).append((i, c))
    return [(f, n or max(c.mesh.size for _, c in todo), todo) for (f, n), todo in out.items()]


def run(cfg: MeshConfig, cells: Sequence[MeshCell], on_rows: Callable[[list[Row]], None],
        cell_timeout: float | None = None) -> None:
    """Run `cells`, handing each cell's rows to `on_rows` as it finishes."""
    limit = cell_timeout or cfg.cell_timeout
    end = time.monotonic() + cfg.timeout
    for framework, devices, todo in _groups(cells):
        pending = deque(todo)
        while pending:
            if time.monotonic() >= end:
                why = f"timeout: the run's overall limit of {cfg.timeout:g} s was reached"
                for _, c in pending:
                    on_rows([make_row(c, q, "error", why, "") for q in QUANTITIES])
                break
            _run_group(cfg, framework, devices, pending, on_rows, limit, end)


def _run_group(cfg: MeshConfig, framework: str, devices: int,
               pending: deque[tuple[int, MeshCell]], on_rows: Callable[[list[Row]], None],
               limit: float, end: float) -> None:
    """One worker group over `pending`, popping each cell it settles."""
    # gloo waits longer than we do: a hung peer is ours to time out and kill, not rank 0's
    job = MeshJob(framework, list(pending), cfg.seed, list(sys.path), devices, 2 * limit)
    log = tempfile.TemporaryFile()
    recv, send = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "harness.mesh_worker", str(send)],
                                stdin=subprocess.PIPE, stdout=log, stderr=log,
                                pass_fds=(send,), start_new_session=True)
    finally:
        os.close(send)
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(pickle.dumps(job))
        proc.stdin.close()
    conn = Connection(recv, writable=False)
    version, started = "", False
    deadline = time.monotonic() + STARTUP_TIMEOUT_S + limit
    try:
        while pending:
            wait = min(deadline, end) - time.monotonic()
            if wait <= 0 or not conn.poll(wait):
                if time.monotonic() >= end:  # run() records what is left
                    return
                what = f"timeout after {limit:g} s (cell)" if started else (
                    f"timeout after {STARTUP_TIMEOUT_S + limit:g} s (start-up)")
                _lost(pending, on_rows, what, version, started)
                return
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                _kill_group(proc)
                _lost(pending, on_rows, _death(proc, log), version, started)
                return
            deadline = time.monotonic() + limit
            if msg["event"] == "hello":
                version, started = msg["version"], True
                continue
            if msg["event"] == "restart":  # a rank died: its group can do no more
                return
            if msg["event"] == "fatal":
                _lost(pending, on_rows, msg["reason"], version, started=False)
                return
            index, cell = pending.popleft()
            if index != msg["index"]:
                raise RuntimeError(f"mesh worker answered cell {msg['index']}, expected {index}")
            try:
                rows = judge(cell, msg, version, cfg.seed)
            except Exception as exc:
                rows = [make_row(cell, q, "error", f"harness could not check the results: "
                                 f"{describe(exc)}", version) for q in QUANTITIES]
            on_rows(rows)
    finally:
        conn.close()
        if not pending:  # let a finished group tidy up (its temporary store) first
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        _kill_group(proc)  # also ends ranks left behind by a finished or failed rank 0
        log.close()


def _lost(pending: deque[tuple[int, MeshCell]], on_rows: Callable[[list[Row]], None],
          cause: str, version: str, started: bool) -> None:
    """The group died or hung: its cell is an error; if it never started, all are."""
    _, cell = pending.popleft()
    on_rows([make_row(cell, q, "error", cause, version) for q in QUANTITIES])
    while pending and not started:
        _, cell = pending.popleft()
        on_rows([make_row(cell, q, "error", cause, version) for q in QUANTITIES])


def _death(proc: subprocess.Popen[bytes], log: Any) -> str:
    code = proc.returncode
    cause = (f"mesh worker killed by {signal.Signals(-code).name}" if code is not None and code < 0
             else f"mesh worker exited with status {code}")
    log.seek(0)
    lines = [ln.strip() for ln in log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    return f"{cause}; stderr: {' | '.join(lines[-3:])}" if lines else cause


def verify(cfg: MeshConfig, cells: Sequence[MeshCell], cell_timeout: float | None = None,
           seen: list[Row] | None = None) -> list[Row]:
    """Every cell's rows, in plan order; `seen` also gets them as they come (so an
    interrupted run keeps what finished)."""
    rows: list[Row] = []

    def keep(new: list[Row]) -> None:
        rows.extend(new)
        if seen is not None:
            seen.extend(new)

    run(cfg, cells, keep, cell_timeout)
    rank = {(c.framework, c.device, c.dtype, c.label): i for i, c in enumerate(cells)}
    return sorted(rows, key=lambda r: rank.get((r.framework, r.device, r.dtype, r.case),
                                               len(rank)))


def command(*, config: str | None, out_dir: Path, frameworks: Sequence[str] = (),
            dtypes: Sequence[str] = (), cell_timeout: float | None = None) -> int:
    """`verify-mesh`: run a mesh config, write verify.csv, print the matrix; the exit code."""
    from harness import mesh, store
    from harness.config import ConfigError, packaged, seconds
    from harness.results import matrix, problems, summary_line

    cfg = mesh.load(config if config else packaged(DEFAULT_CONFIG))
    for flag, got, allowed in (("--framework", frameworks, mesh.FRAMEWORKS),
                               ("--dtype", dtypes, mesh.MESH_DTYPES)):
        bad = [v for v in got if v not in allowed]
        if bad:
            raise ConfigError(f"{flag} {bad[0]!r}: unknown value; allowed: {', '.join(allowed)}")
    cfg = replace(cfg, frameworks=tuple(frameworks) or cfg.frameworks,
                  dtypes=tuple(dtypes) or cfg.dtypes)
    limit = None if cell_timeout is None else seconds(cell_timeout, "--cell-timeout")
    cells = mesh.plan(cfg)
    rows, done = skipped(cells), list[Row]()
    try:
        rows += verify(cfg, [c for c in cells if installed(c.framework)], limit, done)
    except KeyboardInterrupt:  # the groups are killed on the way out; keep what finished
        store.write_rows(out_dir, rows + done)
        print(f"matmul-harness: interrupted; the finished cells are in {out_dir / VERIFY_FILE}",
              file=sys.stderr)
        return 130
    store.write_rows(out_dir, rows)
    print(matrix(rows))
    for line in problems(rows):
        print(line)
    print(f"results: {out_dir / VERIFY_FILE}")
    print(summary_line(rows))
    return 1 if any(r.status in ("fail", "error") for r in rows) else 0


DEFAULT_CONFIG = "mesh.yaml"


def installed(framework: str) -> bool:
    return importlib.util.find_spec(framework) is not None


def skipped(cells: Sequence[MeshCell]) -> list[Row]:
    """Skip rows for the cells of frameworks that are not installed."""
    return [make_row(c, q, "skip", f"{c.framework} is not installed: pip install "
                     f"'matmul-harness[{c.framework}]'", "")
            for c in cells if not installed(c.framework) for q in QUANTITIES]
