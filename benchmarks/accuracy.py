"""How much of the allowed error each gradient uses, tracked so asv graphs numerical drift.

The value is `max |got - ref| / bound` over the elements of dX (or dW), judged exactly as
`matmul-harness verify` judges it (float64 reference, derived bound): <= 1 passes.
"""

from __future__ import annotations

from benchmarks import common
from harness import suite


class Gradients:
    version = "1"
    timeout = 300.0
    unit = "max |err| / bound"
    params = suite.grid("accuracy.Gradients").params
    param_names = suite.grid("accuracy.Gradients").param_names

    def setup(self, framework: str, device: str, dtype: str, shape: str) -> None:
        common.adapter("accuracy", framework, device, dtype, shape)

    def track_dx_error_ratio(self, framework: str, device: str, dtype: str,
                             shape: str) -> float:
        return common.error_ratios(framework, device, dtype, shape)["dX"]

    def track_dw_error_ratio(self, framework: str, device: str, dtype: str,
                             shape: str) -> float:
        return common.error_ratios(framework, device, dtype, shape)["dW"]


class Drift:
    """Error ratio and effective bits where the order of accumulation shows.

    At 256x256x256 float32 every framework's dX and dW are often bit-identical on a CPU,
    so a ratio tracked there cannot move when a kernel changes. These cells have long
    reductions (Y over K = 65536; dW over M = 65536; dW of a W shared by a batch of 256,
    16384 terms) in float16, bfloat16, float32 and complex64: a blocked, pairwise or
    split-K sum, float32 or float16 accumulation, or a complex product split into real
    ones give different errors there. The cells are fixed (harness.suite FIXED_KINDS):
    the `drift` kind of a bench selection turns them on or off.
    """

    version = "1"
    timeout = 300.0
    params = suite.grid("accuracy.Drift").params
    param_names = suite.grid("accuracy.Drift").param_names

    def setup(self, framework: str, device: str, dtype: str, shape: str) -> None:
        common.adapter("drift", framework, device, dtype, shape)

    def _get(self, q: str, i: int, framework: str, device: str, dtype: str,
             shape: str) -> float:
        return common.outcomes("drift", framework, device, dtype, shape)[q][i]

    def track_y_error_ratio(self, framework: str, device: str, dtype: str,
                            shape: str) -> float:
        return self._get("Y", 0, framework, device, dtype, shape)

    def track_dx_error_ratio(self, framework: str, device: str, dtype: str,
                             shape: str) -> float:
        return self._get("dX", 0, framework, device, dtype, shape)

    def track_dw_error_ratio(self, framework: str, device: str, dtype: str,
                             shape: str) -> float:
        return self._get("dW", 0, framework, device, dtype, shape)

    def track_y_effective_bits(self, framework: str, device: str, dtype: str,
                               shape: str) -> float:
        return self._get("Y", 1, framework, device, dtype, shape)

    def track_dx_effective_bits(self, framework: str, device: str, dtype: str,
                                shape: str) -> float:
        return self._get("dX", 1, framework, device, dtype, shape)

    def track_dw_effective_bits(self, framework: str, device: str, dtype: str,
                                shape: str) -> float:
        return self._get("dW", 1, framework, device, dtype, shape)


for _name in dir(Drift):  # asv reads a track_ benchmark's unit from the method
    if _name.startswith("track_"):
        getattr(Drift, _name).unit = ("max |err| / bound" if _name.endswith("ratio")
                                      else "bits (-log2 relative RMS error)")
