"""How much of the allowed error each gradient uses, tracked so asv graphs numerical drift.

The value is `max |got - ref| / bound` over the elements of dX (or dW), judged exactly as
`matmul-harness verify` judges it (float64 reference, derived bound): <= 1 passes.
"""

from __future__ import annotations

from benchmarks import common
from harness import bench


class Gradients:
    version = "1"
    timeout = 300.0
    unit = "max |err| / bound"
    params = bench.grid("accuracy.Gradients").params
    param_names = bench.grid("accuracy.Gradients").param_names

    def setup(self, framework: str, device: str, dtype: str, shape: str) -> None:
        common.adapter("accuracy", framework, device, dtype, shape)

    def track_dx_error_ratio(self, framework: str, device: str, dtype: str,
                             shape: str) -> float:
        return common.error_ratios(framework, device, dtype, shape)["dX"]

    def track_dw_error_ratio(self, framework: str, device: str, dtype: str,
                             shape: str) -> float:
        return common.error_ratios(framework, device, dtype, shape)["dW"]
