"""The release of each framework, read in the environment that runs the suite.

asv records a managed environment's requirements but not what an open requirement (or
`-E existing:same`) resolved to, and track_ benchmarks return numbers only: so the release
is stored as one number (`harness.bench.version_number`: 0.6.2 -> 6002), next to the
timings and error ratios of the same result file. The report and `matmul-harness compare`
read it back (`harness.bench.version_text`) to label every row with the release that
produced it.
"""

from __future__ import annotations

from typing import ClassVar

from harness import bench, suite


class Installed:
    version = "1"
    timeout = 120.0  # one framework import
    unit = "release (major*10^6 + minor*10^3 + patch)"
    params: ClassVar[list[list[str]]] = [list(suite.FRAMEWORKS)]
    param_names: ClassVar[list[str]] = ["framework"]

    def setup(self, framework: str) -> None:
        from harness.adapters import load

        cls = load(framework)
        if not cls.installed():
            raise NotImplementedError(f"{framework} is not installed ({cls.install_hint})")

    def track_version(self, framework: str) -> float:
        from harness.adapters import load

        return bench.version_number(load(framework)(pin_precision=False).version())
