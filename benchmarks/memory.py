"""Peak memory of one forward+backward: host (asv's peakmem_, the process's peak RSS,
framework import included) and, on GPU, device memory in use (inputs included)."""

from __future__ import annotations

from benchmarks import common
from harness import suite


class Peak:
    version = "1"
    timeout = 300.0
    unit = "bytes"
    params = suite.grid("memory.Peak").params
    param_names = suite.grid("memory.Peak").param_names

    def setup(self, framework: str, device: str, dtype: str, shape: str) -> None:
        self._cell = common.cell("memory", framework, device, dtype, shape,
                                 "forward_backward", calibrate=False)

    def peakmem_forward_backward(self, framework: str, device: str, dtype: str,
                                 shape: str) -> None:
        self._cell.call()

    def track_device_peak_bytes(self, framework: str, device: str, dtype: str,
                                shape: str) -> int:
        if device != "gpu":
            from asv_runner.benchmarks.mark import SkipNotImplemented

            raise SkipNotImplemented("device memory is measured on GPU only")
        return common.device_peak_bytes(framework, self._cell)
