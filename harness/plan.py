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


# --- shards: one slice of the plan per CI job or machine ----------------------------------

# A cell's fixed cost in flop-equivalents: inputs drawn, the float64 reference, the judge
# and the pipe dominate small cells, so a shard of many tiny cells is not "free".
CELL_OVERHEAD_FLOPS = 2_000_000


class ShardError(ValueError):
    """A `--shard` that is not I/N with 1 <= I <= N."""


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`I/N` (1 <= I <= N); ShardError saying what was received otherwise."""
    head, sep, tail = text.strip().partition("/")
    try:
        index, count = int(head), int(tail)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise ShardError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. 2/3")
    return Shard(index, count)


def cost(cell: Cell) -> int:
    """A cell's estimated cost: the flops of Y, dX and dW (3 matmuls of 2·m·k·n each, per
    batch; complex counts 4x) plus a fixed per-cell overhead."""
    g = cell.case.geometry
    batch = 1
    for b in g.batch:
        batch *= b
    work = 6 * batch * g.m * g.k * g.n * (4 if cell.dtype.startswith("complex") else 1)
    return work + CELL_OVERHEAD_FLOPS


def assign(cells: Sequence[Cell], count: int) -> list[int]:
    """The 0-based shard of each cell: the plan cut into `count` contiguous runs of about
    equal estimated cost.

    A cell goes to the shard whose share of the total cost holds the middle of the cell
    (its cost's midpoint on the running total), so every cut lies within half a cell of
    its ideal place: each shard's cost is within one largest cell of the mean.
    Deterministic (plan order only). Contiguous because cells of one framework and
    precision mode are adjacent in the plan, and each group a shard holds costs it one
    worker start-up: N shards of G groups start at most G + N - 1 workers in all, where
    dealing cells out one by one would start G x N.
    """
    costs = [cost(c) for c in cells]
    share = sum(costs) / count
    out, before = [], 0
    for c in costs:
        out.append(min(count - 1, int((before + c / 2) / share)))
        before += c
    return out


def shard_of(cells: Sequence[Cell], shard: Shard | None) -> list[Cell]:
    """The cells of `shard` (all of them for None), in plan order."""
    if shard is None or shard.count == 1:
        return list(cells)
    where = assign(cells, shard.count)
    return [c for c, s in zip(cells, where, strict=True) if s == shard.index - 1]
