"""The mesh worker: runs one framework's mesh cells, in a process group of its own.

`python -m harness.mesh_worker FD` is started by `harness.mesh_run` in a new session, the
job (a pickled `MeshJob`) on stdin, messages back on the pipe FD:

    {"event": "hello", "version": str}
    {"event": "cell", "index": int, "status": "ok" | "error", "reason": str,
     "outputs": {"Y", "dX", "dW": ndarray}, "placement": [str], "collectives": str,
     "shardings": str}
    {"event": "fatal", "reason": str}

JAX runs in this process, with the host CPU device count set before JAX starts. torch
runs SPMD: this process is rank 0 and starts ranks 1..P-1 (`python -m harness.mesh_worker
rank R STORE`), which join a gloo group through a file store. Every process of the group
shares the session, so the orchestrator ends all of them with one `killpg`.
"""

from __future__ import annotations

import atexit
import faulthandler
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from harness.cases import make_inputs
from harness.dtypes import get
from harness.errors import describe
from harness.mesh import MeshCell
from harness.worker import ENV_DEFAULTS


@dataclass(frozen=True)
class MeshJob:
    framework: str
    tasks: list[tuple[int, MeshCell]]  # (index in the plan, cell)
    seed: int
    sys_path: list[str]
    devices: int  # JAX: host devices to create; torch: the world size
    collective_timeout: float  # seconds a gloo collective may wait for a peer


def _runner(job: MeshJob, rank: int, store: str) -> Any:
    if job.framework == "jax":
        from harness.sharded.jax_mesh import JaxMesh, configure

        return JaxMesh(configure(job.devices))
    from harness.sharded.torch_mesh import TorchMesh, init

    return TorchMesh(init(rank, job.devices, store, job.collective_timeout))


def serve(job: MeshJob, rank: int, store: str, conn: Connection | None,
          dead: Callable[[], str] = lambda: "") -> None:
    """Run the job's cells; rank 0 (`conn` set) reports each, and stops with a
    `restart` message once `dead()` names a rank that died (its group is broken)."""
    faulthandler.enable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides what stops
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        runner = _runner(job, rank, store)
    except Exception as exc:
        if conn is not None:
            conn.send({"event": "fatal",
                       "reason": f"{job.framework} mesh failed to start: {describe(exc)}"})
        return
    if conn is not None:
        conn.send({"event": "hello", "version": runner.version()})
    for index, cell in job.tasks:
        msg: dict[str, Any] = {"event": "cell", "index": index}
        try:
            i = make_inputs(cell.case, get(cell.dtype), job.seed)
            result = runner.run(cell.api, cell.layout, cell.mesh.shape, cell.mesh.axes,
                                i.x, i.w, i.g, cell.bug)
            if result is not None:
                msg.update(status="ok", reason="", outputs=result.outputs,
                           placement=result.placement, collectives=result.collectives,
                           shardings=result.shardings)
        except Exception as exc:
            msg.update(status="error", reason=describe(exc))
        if conn is None:
            continue
        gone = dead()
        if job.framework == "torch" and msg.get("status") == "error":
            # A failed collective leaves the ranks out of step: the group is done. A peer
            # that died is the likely cause; its exit can lag the error rank 0 sees.
            for _ in range(50):
                gone = gone or dead()
                if gone:
                    break
                time.sleep(0.1)
            msg["reason"] = f"{gone}; {msg['reason']}" if gone else msg["reason"]
            gone = gone or "a collective failed"
        conn.send(msg)
        if gone:
            conn.send({"event": "restart", "reason": gone})
            break
    if conn is not None:
        conn.close()


def _start_ranks(job: MeshJob, store: str) -> list[subprocess.Popen[bytes]]:
    """Ranks 1..P-1 of a torch group: same job, same session, output to our stderr."""
    procs = []
    for r in range(1, job.devices):
        p = subprocess.Popen([sys.executable, "-m", "harness.mesh_worker", "rank", str(r), store],
                             stdin=subprocess.PIPE)
        assert p.stdin is not None
        p.stdin.write(pickle.dumps(job))
        p.stdin.close()
        procs.append(p)

    def stop() -> None:
        for p in procs:
            if p.poll() is None:
                p.kill()

    atexit.register(stop)
    return procs


def _dead(procs: list[subprocess.Popen[bytes]]) -> str:
    for r, p in enumerate(procs, start=1):
        if p.poll() is not None:
            return f"rank {r} exited with status {p.returncode}"
    return ""


def main() -> None:
    job: MeshJob = pickle.loads(sys.stdin.buffer.read())
    sys.path[:0] = [p for p in job.sys_path if p not in sys.path]
    if sys.argv[1] == "rank":
        serve(job, int(sys.argv[2]), sys.argv[3], None)
        return
    conn = Connection(int(sys.argv[1]), readable=False)
    with tempfile.TemporaryDirectory(prefix="harness-mesh-") as tmp:
        store = os.path.join(tmp, "store")
        procs = _start_ranks(job, store) if job.framework == "torch" else []
        serve(job, 0, store, conn, lambda: _dead(procs))
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main()
