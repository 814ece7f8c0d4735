"""One side of `matmul-harness compare --rounds`: a long-lived process that times cells of
one exported tree on request.

`harness.compare` starts two of these, one per revision, each with its own tree first on
`sys.path`, so each imports *its* `harness` and `benchmarks/`: the timed call is the tree's
own `benchmarks.common.cell(...)`, the warmed-up closure asv times. The orchestrator then
asks them in turn (A B B A ...) for a short block of samples, so the two sides of a pair
are measured a fraction of a second apart and machine drift falls on both.

This file is run by path (`runpy.run_path`), never imported from the tree under test: it
uses the standard library only, and nothing of the tree but `benchmarks.common.cell`.

Protocol, one JSON object per line (stdin in, the original stdout out; whatever the
frameworks print goes to stderr):
    {"op": "cell", "i": 0, "cell": [framework, device, dtype, shape, pass]}
        -> {"number": calls per 20 ms sample} or {"skip": why}
    {"op": "time", "i": 0, "calls": 10, "samples": 5} -> {"samples": [s per call, ...]}
    {"op": "quit"}
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any


def serve(clock_name: str, stdin: Any, out: Any) -> None:
    # The tree's own benchmarks (first on sys.path), whatever its version: untyped here.
    common: Any = importlib.import_module("benchmarks.common")

    cells: dict[int, tuple[Callable[[], None], Callable[[], float]]] = {}
    for line in stdin:
        msg = json.loads(line)
        reply: dict[str, Any]
        if msg["op"] == "quit":
            return
        if msg["op"] == "cell":
            fw, device, dtype, shape, pass_ = msg["cell"]
            try:
                cell = common.cell("time", fw, device, dtype, shape, pass_)
            except NotImplementedError as exc:
                reply = {"skip": str(exc)}
            else:
                # CPU time sees far less of the other processes of a shared machine; a GPU
                # cell's CPU time says nothing of the GPU, so it keeps the wall clock.
                clock = (time.process_time if clock_name == "cpu" and device == "cpu"
                         else time.perf_counter)
                cells[msg["i"]] = (cell.call, clock)
                reply = {"number": cell.number}
        else:  # "time": the body asv times, `calls` calls between two clock reads
            call, clock = cells[msg["i"]]
            calls = range(msg["calls"])
            samples = []
            for _ in range(msg["samples"]):
                start = clock()
                for _ in calls:
                    call()
                samples.append((clock() - start) / msg["calls"])
            reply = {"samples": samples}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def main() -> None:
    # Frameworks may print to stdout; the protocol keeps the original, stdout becomes stderr.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    try:
        serve(sys.argv[1], sys.stdin, out)
    except Exception:  # the orchestrator reads the reason from stderr
        traceback.print_exc()
        sys.exit(3)


if __name__ == "__main__":
    main()
