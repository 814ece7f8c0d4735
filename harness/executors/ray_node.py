"""What runs on a Ray node: one framework x device x precision-mode group of cells.

The task (a Ray streaming generator, started by harness/executors/ray_executor.py in a
fresh Ray worker process: `max_calls=1`) runs the group with the local machinery,
harness.orchestrator.Runner: a framework worker process, the float64 reference and the
judge, all on the node, where the outputs are. Only rows cross the network, one message
per finished cell, so the driver writes each to the run's partial log as it arrives.

The reference: each task builds the references of its own cells on the node, from the
run's seed (inputs and references are deterministic functions of seed, case and dtype,
so every node builds the same bytes), in the Runner's own cache, spilled to the node's
temporary folder. Nothing is shared between tasks: shipping float64 arrays from the driver
would cost more network than rebuilding them, and a shared store would tie tasks to nodes.

Messages (dicts): {"event": "start", "node": id, "host": name, "machine": slug, "pid": int,
"resources": {...}} first, then {"event": "rows", "rows": [Row, ...]} per cell.
"""

from __future__ import annotations

import os
import queue as queues
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from harness.adapters import Adapter, load, load_target
from harness.config import Config
from harness.orchestrator import Runner
from harness.plan import Cell
from harness.results import Row
from harness.system import machine_slug

_DONE = object()
POLL_S = 1.0  # a Ray cancellation (KeyboardInterrupt) lands between two polls


def run_group(config: Config, cells: Sequence[Cell], targets: dict[str, str],
              sys_path: Sequence[str], cell_timeout: float) -> Iterator[dict[str, Any]]:
    """Run `cells` (one group) here, yielding a start message, then each cell's rows.

    `targets` is the driver's adapter registry (plugins registered only there still load
    here, given their module is importable); `sys_path` the driver's import path, whose
    folders that exist on this node are appended (a local cluster sees the driver's code).
    """
    import ray  # the task runs under Ray: it is installed here

    for entry in sys_path:
        if entry not in sys.path and os.path.isdir(entry):
            sys.path.append(entry)
    context: Any = ray.get_runtime_context()
    machine = machine_slug()
    yield {"event": "start", "node": context.get_node_id(), "host": socket.gethostname(),
           "machine": machine, "pid": os.getpid(),
           "resources": dict(context.get_assigned_resources())}

    def loader(name: str) -> type[Adapter]:
        return load_target(targets[name], name) if name in targets else load(name)

    out: queues.Queue[object] = queues.Queue()

    def on_rows(rows: list[Row]) -> None:
        out.put([replace(r, machine=r.machine or machine) for r in rows])

    # no overall limit here: the driver keeps it, and cancels this task at the deadline
    runner = Runner(config, on_rows, None, 1, cell_timeout, None, loader=loader)

    def work() -> None:
        try:
            runner.run(cells)
        except BaseException as exc:  # reported to the driver through the generator
            out.put(exc)
        finally:
            out.put(_DONE)

    thread = threading.Thread(target=work, daemon=True, name="group")
    thread.start()
    try:
        while True:
            try:
                item = out.get(timeout=POLL_S)
            except queues.Empty:
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield {"event": "rows", "rows": item}
    finally:  # cancelled (KeyboardInterrupt here) or done: no framework worker outlives us
        runner.stop()
        thread.join(timeout=30)
