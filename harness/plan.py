"""The cells of a run: framework x precision mode x device x dtype x case, in report order.

Precision modes: "pinned" forces full float32 (TF32 off, highest matmul precision);
"default" leaves each framework as it ships (TF32 in JAX and TensorFlow on Ampere+ GPUs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.cases import Case
from harness.config import Config
from harness.results import Row

Key = tuple[str, str, str, str, str]  # framework, precision mode, device, dtype, case


@dataclass(frozen=True)
class Cell:
    framework: str
    mode: str
    device: str
    dtype: str
    case: Case

    @property
    def key(self) -> Key:
        return (self.framework, self.mode, self.device, self.dtype, self.case.name)


def row_key(row: Row) -> Key:
    return (row.framework, row.precision_mode, row.device, row.dtype, row.case)


def plan(config: Config) -> list[Cell]:
    return [
        Cell(f, m, d, t, c)
        for f in config.frameworks
        for m in config.precision
        for d in config.devices
        for t in config.dtypes
        for c in config.cases
    ]


def in_plan_order(rows: Sequence[Row], cells: Sequence[Cell]) -> list[Row]:
    """Rows sorted by their cell's place in the plan (stable within a cell)."""
    order = {c.key: i for i, c in enumerate(cells)}
    return sorted(rows, key=lambda r: order.get(row_key(r), len(order)))


def group_cells(rows: Sequence[Row]) -> dict[Key, list[Row]]:
    """Rows grouped by cell, in order."""
    cells: dict[Key, list[Row]] = {}
    for r in rows:
        cells.setdefault(row_key(r), []).append(r)
    return cells
