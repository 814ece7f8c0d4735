"""How long `build_report` takes on a large results set (a measurement, not a test).

The set: one machine with a GPU, 4 frameworks x 6 dtypes x 20 shapes x 3 passes x
{cpu, gpu} asv timings (plus the track_/peakmem_ benchmarks), and a verify.csv of
4 frameworks x 2 devices x 6 dtypes x 18 cases x 3 quantities.

    .venv/bin/python tools/report_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_fixtures import shapes, write_asv, write_verify

MACHINE = "speed-box-NVIDIA-H100-80GB-HBM3"
GPU = "NVIDIA H100 80GB HBM3"


def make(root: Path, n_shapes: int) -> tuple[Path, Path]:
    cases = [(f"case{i:02d}", f"{i + 1}x{i + 2}", f"{i + 2}x{i + 3}", i + 2) for i in range(18)]
    verify = root / "verify"
    write_verify(verify, MACHINE, gpus=[GPU], cores=16, cases=cases,
                 fail=("tensorflow", "gpu", "float16", "case03"))
    write_asv(root / "asv", MACHINE, commit="5eedf00d12345678", date_ms=1763600000000,
              cores=16, shapes=shapes(n_shapes), seed=5)
    return verify, root / "asv"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shapes", type=int, default=20)
    args = ap.parse_args()
    from harness.report import build_report
    from harness.report.load import load

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        verify, asv = make(root, args.shapes)
        data = load([verify], asv)
        t = data.table
        n_time = int((t["kind"] == "time").sum())
        n_verify = int((t["source"] == "verify").sum())
        print(f"inputs: {n_verify} correctness rows, {n_time} asv timings "
              f"({args.shapes} shapes), {len(t)} rows in all")
        times = []
        for i in range(args.repeat):
            start = time.perf_counter()
            html, md = build_report([verify], root / f"out{i}", asv_results=asv)
            times.append(time.perf_counter() - start)
            print(f"run {i + 1}: {times[-1]:.2f} s")
        text = html.read_text()
        print(f"report.html {len(text) / 1e6:.2f} MB, {text.count('<img')} figures; "
              f"report.md {md.stat().st_size / 1e3:.0f} kB")
        print(f"build_report: median {statistics.median(times):.2f} s, min {min(times):.2f} s"
              f" over {len(times)} runs (limit 15 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
