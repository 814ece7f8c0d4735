"""Time per call of `Y = X @ W` forward, backward (given a saved forward) and both.

One asv process per parameter combination; `setup` builds and warms the cell once per
process (cached in `common`). The timed body makes `calls` calls of the pass, each followed
by the adapter's device sync, a block of about 20 ms; `timer` divides asv's clock by
`calls`, so asv records seconds per call (asv_runner >= 0.3 would otherwise time one call
per sample and re-run `setup` between calls, which costs microseconds per call).
"""

from __future__ import annotations

import os

from benchmarks import common
from harness import bench, suite


class _Matmul:
    # explicit, so edits to this file do not drop the history
    # (https://github.com/airspeed-velocity/asv/issues/1218)
    version = "1"
    timeout = 300.0  # import + warm-up + samples of the largest cells
    number = 1  # one body per sample: the body loops (see the module docstring)
    # `bench --rounds N`: asv interleaves the rounds of several environments (releases)
    rounds = int(os.environ.get(bench.ROUNDS_ENV) or 2)

    def setup(self, framework: str, device: str, dtype: str, shape: str, pass_: str) -> None:
        cell = common.cell("time", framework, device, dtype, shape, pass_)
        self._call = cell.call
        self._calls = range(cell.number)
        self.timer = cell.timer  # asv reads it after setup: seconds per call

    def time_matmul(self, framework: str, device: str, dtype: str, shape: str,
                    pass_: str) -> None:
        call = self._call
        for _ in self._calls:
            call()


class Square(_Matmul):
    """Square products, 64 to 2048."""

    params = suite.grid("matmul.Square").params
    param_names = suite.grid("matmul.Square").param_names


class DeepBench(_Matmul):
    """Training GEMMs of DeepBench (harness.shapes.DEEPBENCH_SUITE)."""

    params = suite.grid("matmul.DeepBench").params
    param_names = suite.grid("matmul.DeepBench").param_names
