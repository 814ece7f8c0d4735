"""Where the cells of `verify` run: the executor seam.

`local` (the default) is harness.orchestrator.Runner: one worker process per framework and
precision mode on this machine. `ray` (harness/executors/ray_executor.py, the optional
extra `pip install 'matmul-harness[ray]'`) runs each framework x device x precision-mode
group as a Ray task on a node of a Ray cluster, with the same Runner there, and streams the
rows back. Both take the same arguments and call `on_rows` once per finished cell, so
`verify`'s partial log, resume, Ctrl-C and time limits work the same way with either.

This module imports no Ray: choosing and checking an executor costs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from harness.config import Config
from harness.orchestrator import Progress, Runner
from harness.plan import Cell
from harness.results import Row

EXECUTORS = ("local", "ray")
RAY_INSTALL_HINT = "pip install 'matmul-harness[ray]'"


class ExecutorError(ValueError):
    """A bad executor choice or an executor that cannot start: a one-line message, exit 2."""


class Executor(Protocol):
    def run(self, cells: Sequence[Cell], total: int | None = None) -> None: ...


@dataclass(frozen=True)
class Settings:
    """The executor chosen on the command line (`verify --executor ...`)."""

    name: str = "local"
    address: str = ""  # ray: the cluster to join ("" starts a local one)
    accelerator: str = ""  # ray: the accelerator type GPU groups ask for, e.g. H100


def settings(executor: str | None, address: str | None, accelerator: str | None) -> Settings:
    """Validated `--executor`, `--ray-address` (or RAY_ADDRESS), `--ray-accelerator`."""
    name = "local" if executor is None else executor.strip()
    if name not in EXECUTORS:
        raise ExecutorError(f"--executor {executor!r}: unknown executor; expected one of "
                            f"{', '.join(EXECUTORS)}")
    if name != "ray":
        given = [flag for flag, value in (("--ray-address", address),
                                          ("--ray-accelerator", accelerator)) if value]
        if given:  # RAY_ADDRESS in the environment is not a request: it is ignored here
            raise ExecutorError(f"{given[0]} needs --executor ray; received --executor "
                                f"{name}")
        return Settings()
    if accelerator is not None and not accelerator.strip():
        raise ExecutorError("--ray-accelerator '': expected an accelerator type such as "
                            "H100, A100 or MI300X")
    where = address if address is not None else os.environ.get("RAY_ADDRESS", "")
    return Settings("ray", where.strip(), (accelerator or "").strip())


def make(
    chosen: Settings,
    config: Config,
    on_rows: Callable[[list[Row]], None],
    progress: Progress | None,
    jobs: int,
    cell_timeout: float,
    total_timeout: float | None,
    done_before: int = 0,
) -> Executor:
    """The runner of `chosen`; for Ray, connected to its cluster (ExecutorError if not)."""
    if chosen.name == "local":
        return Runner(config, on_rows, progress, jobs, cell_timeout, total_timeout,
                      done_before=done_before)
    from harness.executors.ray_executor import RayRunner, connect  # lazy: Ray is an extra

    return RayRunner(config, on_rows, connect(chosen, jobs), chosen, progress, cell_timeout,
                     total_timeout, done_before=done_before)


def check_available(chosen: Settings) -> None:
    """Before any output is made: ExecutorError if `chosen` cannot work here at all
    (Ray not installed, a malformed or unreachable --ray-address)."""
    if chosen.name == "ray":
        from harness.executors.ray_executor import precheck

        precheck(chosen)
