"""References shared by every framework and precision mode of a run.

A cell's reference depends only on (case, dtype, seed) and on the check (full or sampled),
never on the framework or its precision mode, so it is built once and handed to every cell
that needs it. Quantities are added as they are first asked for (numpy needs no dY or
d2W; torch does). Memory is bounded: the entries live in a least-recently-used table of at
most `budget` bytes; an entry pushed out that the plan still needs is written to the run's
temporary folder and read back when its turn comes, one that no cell still needs is
dropped. Nothing here imports a framework: the orchestrator builds references itself.
"""

from __future__ import annotations

import pickle
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.cases import Case, Inputs, Tangents, make_inputs, make_tangents
from harness.dtypes import DType
from harness.reference import magnitudes as magnitude_product
from harness.reference import terms, values
from harness.sampled import Sample, sample

Key = tuple[str, tuple[int, ...], tuple[int, ...], str, int, str]
BUDGET_BYTES = 64 * 2**20  # in memory; what the plan still needs beyond it goes to disk


@dataclass
class Entry:
    """What judging a cell needs besides its outputs: inputs and per-quantity references.

    `g`, `tx`, `tw` (the adjoint identity's weights) stay; the other inputs are dropped
    from a sampled entry once its products are built (an 8192 x 8192 case holds them only
    while building) and drawn again if a later cell asks for a new quantity.
    """

    inputs: Inputs | None
    tangents: Tangents | None = None
    values: dict[str, np.ndarray] = field(default_factory=dict)
    scale: dict[str, np.ndarray] = field(default_factory=dict)
    samples: dict[str, Sample] = field(default_factory=dict)
    g: np.ndarray | None = None
    tx: np.ndarray | None = None
    tw: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        arrays = [*self.values.values(), *self.scale.values()]
        if self.inputs is not None:
            arrays += [self.inputs.x, self.inputs.w]
        if self.tangents is not None:
            arrays.append(self.tangents.v)
        arrays += [a for a in (self.g, self.tx, self.tw) if a is not None]
        return sum(a.nbytes for a in arrays) + sum(s.nbytes for s in self.samples.values())


def key(case: Case, dtype: str, seed: int, check: str) -> Key:
    return (case.name, case.x, case.w, dtype, seed, check)


@dataclass
class References:
    """The run's references, by (case, dtype, seed, check); see the module docstring."""

    seed: int
    budget: int = BUDGET_BYTES
    spill_dir: Path | None = None
    _mem: OrderedDict[Key, Entry] = field(default_factory=OrderedDict)
    _uses: Counter[Key] = field(default_factory=Counter)
    _spilled: dict[Key, Path] = field(default_factory=dict)
    built: int = 0  # quantities computed (not found): for tests and benchmarks
    threads: int = 1  # cores the orchestrator may use now (the caller sets it per cell)
    _ahead: dict[Key, Future[tuple[Entry, int]]] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = None

    def expect(self, items: Iterable[tuple[Case, str, str]]) -> None:
        """Count the cells (case, dtype, check) the plan will ask for."""
        for case, dtype, check in items:
            self._uses[key(case, dtype, self.seed, check)] += 1

    def get(self, case: Case, dtype: DType, check: str, quantities: Iterable[str]) -> Entry:
        """The entry of (case, dtype, check), with each of `quantities` computed."""
        k = key(case, dtype.name, self.seed, check)
        entry = self._mem.pop(k, None) or self._load(k)
        if entry is None and k in self._ahead:
            entry, built = self._ahead.pop(k).result()
            self.built += built
        entry = entry or Entry(None)
        self.built += self._fill(entry, k, case, dtype, check, quantities, self.threads)
        self._mem[k] = entry
        self._fit(keep=k)
        return entry

    def prefetch(self, case: Case, dtype: DType, check: str,
                 quantities: Iterable[str]) -> None:
        """Start building an entry in the background (one thread), for a cell a worker is
        computing or starting up for: its reference is then ready, or nearly, when the
        results arrive. Nothing happens if the entry exists or is already being built."""
        k = key(case, dtype.name, self.seed, check)
        if k in self._mem or k in self._spilled or k in self._ahead:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="reference")
        wanted = list(quantities)

        def build() -> tuple[Entry, int]:
            entry = Entry(None)
            return entry, self._fill(entry, k, case, dtype, check, wanted, 1)

        self._ahead[k] = self._pool.submit(build)

    def close(self) -> None:
        """Stop background builds (the run is over or interrupted)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._ahead.clear()

    def _fill(self, entry: Entry, k: Key, case: Case, dtype: DType, check: str,
              quantities: Iterable[str], threads: int) -> int:
        """Build the quantities `entry` lacks with `threads` threads; how many were built."""
        todo = [q for q in dict.fromkeys(quantities)
                if q not in (entry.samples if check == "sampled" else entry.values)]
        if todo or entry.g is None:
            self._draw(entry, case, dtype, any(q in ("dY", "d2W") for q in todo), threads)
        if not todo:
            return 0
        inputs, tangents = entry.inputs, entry.tangents
        assert inputs is not None

        def build(q: str) -> Sample | tuple[np.ndarray, np.ndarray]:
            t = terms(q, inputs, tangents)
            if check == "sampled":
                return sample(t, _rng(k, q))
            return values(t).reshape(t.final), magnitude_product(t).reshape(t.final)

        # Quantities are built side by side on the cores no worker uses, one BLAS thread
        # each: numpy releases the GIL in its products and array loops, and single-threaded
        # BLAS calls do not spin-wait for each other on a busy machine as threaded ones do.
        with ThreadPoolExecutor(max(1, min(threads, len(todo)))) as pool:
            for q, built in zip(todo, pool.map(build, todo), strict=True):
                if isinstance(built, Sample):
                    entry.samples[q] = built
                else:
                    entry.values[q], entry.scale[q] = built
        if check == "sampled":  # only the adjoint's weights are still needed
            entry.inputs = entry.tangents = None
        return len(todo)

    def _draw(self, entry: Entry, case: Case, dtype: DType, tangents: bool,
              threads: int) -> None:
        """Draw the inputs (and tangents) the entry lacks; both streams at once when the
        orchestrator has a core to spare (numpy's generators release the GIL)."""
        want_t = tangents and entry.tangents is None
        with ThreadPoolExecutor(1) as pool:
            later = pool.submit(make_tangents, case, dtype, self.seed) if (
                want_t and threads > 1) else None
            if entry.inputs is None:
                entry.inputs = make_inputs(case, dtype, self.seed)
            if want_t:
                entry.tangents = later.result() if later else make_tangents(case, dtype,
                                                                            self.seed)
        entry.g = entry.inputs.g
        if entry.tangents is not None:
            entry.tx, entry.tw = entry.tangents.tx, entry.tangents.tw

    def release(self, case: Case, dtype: str, check: str) -> None:
        """One cell of (case, dtype, check) is judged; forget it once none is left."""
        k = key(case, dtype, self.seed, check)
        self._uses[k] -= 1
        if self._uses[k] <= 0:
            self._mem.pop(k, None)
            path = self._spilled.pop(k, None)
            if path is not None:
                path.unlink(missing_ok=True)

    def _fit(self, keep: Key) -> None:
        """Push the least recently used entries out until the rest fit in the budget."""
        total = sum(e.nbytes for e in self._mem.values())
        for k in list(self._mem):
            if total <= self.budget:
                return
            if k == keep:
                continue
            entry = self._mem.pop(k)
            total -= entry.nbytes
            if self._uses[k] > 0 and self.spill_dir is not None:
                path = self.spill_dir / f"ref-{zlib.crc32(repr(k).encode()):08x}.pickle"
                with path.open("wb") as f:
                    pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)
                self._spilled[k] = path

    def _load(self, k: Key) -> Entry | None:
        path = self._spilled.pop(k, None)
        if path is None:
            return None
        with path.open("rb") as f:
            entry: Entry = pickle.load(f)
        path.unlink(missing_ok=True)
        return entry


def _rng(k: Key, quantity: str) -> np.random.Generator:
    """The sampled check's own random rows and vectors, deterministic per cell and quantity."""
    name, _, _, dtype, seed, _ = k
    return np.random.default_rng([seed, zlib.crc32(f"{name}\0{dtype}\0{quantity}".encode()),
                                  2])
