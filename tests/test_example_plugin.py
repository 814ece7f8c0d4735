"""The example plugin `examples/harness-mlx`, as a user gets it: installed by `make install`
and found through its `harness.adapters` entry point only (never imported by name here).

Verified through `matmul-harness verify` and timed through asv by `matmul-harness bench`
with a small profile (a few cells, one thread: mlx's CPU matmul runs on one).
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_bench import cell_values, results_of
from tests.test_repro import standalone

ROOT = Path(__file__).resolve().parents[1]


def _plugin() -> str:
    try:
        dist = importlib.metadata.distribution("harness-mlx")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the example plugin is not installed (make install does it: "
                    "pip install -e examples/harness-mlx)")
    (ep,) = [e for e in dist.entry_points if e.group == "harness.adapters"]
    return ep.name


def _run(args: list[str], tmp_path: Path,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home)}
    if os.environ.get("PYTHONPATH"):  # asv drops PYTHONPATH from its processes; this it keeps
        env.setdefault("ASV_PYTHONPATH", os.environ["PYTHONPATH"])
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, env=env, cwd=cwd or tmp_path, timeout=600)


def test_example_plugin_is_verified_through_its_entry_point(tmp_path: Path) -> None:
    name = _plugin()
    out = _run(["verify", "--framework", name, "--device", "cpu", "--dtype", "float32",
                "--dtype", "bfloat16", "--dtype", "complex128", "--out", str(tmp_path / "r")],
               tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    with (tmp_path / "r" / "verify.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by = {(r["dtype"], r["status"]) for r in rows}
    assert {r["quantity"] for r in rows if r["dtype"] == "float32" and r["status"] == "pass"} \
        == {"Y", "dX", "dW", "dY", "adjoint", "d2W"}  # its own reverse, forward, 2nd order
    assert ("bfloat16", "pass") in by
    assert ("complex128", "skip") in by and ("complex128", "pass") not in by  # declared gap
    run = json.loads((tmp_path / "r" / "run.json").read_text(encoding="utf-8"))
    assert run["system"]["plugins"][name].startswith("harness-mlx ")
    assert run["system"]["framework_versions"][name] == importlib.metadata.version("mlx")
    # and its own repro_snippet writes a standalone reproducer (bfloat16: the carrier path)
    script = tmp_path / "repro_mlx.py"
    out = _run(["repro", str(tmp_path / "r"), "--case", "broadcast_both", "--framework", name,
                "--dtype", "bfloat16", "--out", str(script)], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    out = standalone(script, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "bit-identical" in out.stdout and re.search(r"^dW +[0-9.e-]+ ", out.stdout, re.M)


def test_example_plugin_is_timed_through_asv(tmp_path: Path) -> None:
    name = _plugin()
    config = tmp_path / "plugin.yaml"
    config.write_text(f"frameworks: [{name}]\nkinds: [time, accuracy]\n"
                      "passes: [forward_backward]\nthreads: 1\n"
                      "cpu: {dtypes: [float32, complex64], shapes: [64x64x64, 256x256x256]}\n",
                      encoding="utf-8")
    results = tmp_path / "results"
    # bench measures the clone it runs in (asv.conf.json, benchmarks/): this one
    out = _run(["bench", "--quick", "--config", str(config), "--results-dir", str(results)],
               tmp_path, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    (machine,) = [p.name for p in results.iterdir() if p.is_dir()]
    records = results_of(results, machine)
    times = cell_values(records["matmul.Square.time_matmul"])
    for dtype in ("float32", "complex64"):
        for shape in ("64x64x64", "256x256x256"):
            t = times[(name, "cpu", dtype, shape, "forward_backward")]
            assert isinstance(t, float) and t > 0, (dtype, shape, t)
        for q in ("dx", "dw"):
            ratios = cell_values(records[f"accuracy.Gradients.track_{q}_error_ratio"])
            assert 0 <= ratios[(name, "cpu", dtype, "256x256x256")] <= 1
    assert f" {name}" in out.stdout  # its column in bench's summary table
