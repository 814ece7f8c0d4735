"""Plugins are first-class: the asv grid, the bench config, the system card and the report
take every registered name, found from packaging metadata without importing a framework.

Entry points are faked two ways: by monkeypatching importlib.metadata in this process, and,
for subprocesses, by a `.dist-info` folder on PYTHONPATH (what an installed plugin is).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import bench, suite, system
from harness.report import analysis, figures
from tests.test_registry import fake_entry_points

ROOT = Path(__file__).resolve().parents[1]


def dist_info(site: Path, **targets: str) -> Path:
    """A minimal installed distribution declaring `targets` as harness.adapters plugins."""
    d = site / "harness_fakeplug-9.8.7.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-fakeplug\n"
                                "Version: 9.8.7\n", encoding="utf-8")
    lines = "".join(f"{n} = {t}\n" for n, t in targets.items())
    (d / "entry_points.txt").write_text(f"[harness.adapters]\n{lines}", encoding="utf-8")
    return site


def test_grid_and_bench_config_take_every_registered_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_entry_points(monkeypatch, fakeplugin="tests.fake_plugin:FakePluginAdapter")
    assert suite.frameworks() == (*suite.FRAMEWORKS, "fakeplugin")  # built-ins first
    for g in suite.GRIDS:
        assert g.params[0] == [*suite.FRAMEWORKS, "fakeplugin"]
    sel = suite.parse_selection({"frameworks": ["fakeplugin"], "cpu": None}, "t.yaml")
    assert sel.frameworks == ("fakeplugin",)
    assert suite.parse_selection({"cpu": None}, "t.yaml").frameworks == suite.frameworks()
    with pytest.raises(suite.BenchError, match=r"unknown value 'fakeplugn' \(did you mean "
                                               r"'fakeplugin'\?\); allowed: .*fakeplugin"):
        suite.parse_selection({"frameworks": ["fakeplugn"], "cpu": None}, "t.yaml")
    regexes, _ = bench.plan(sel, gpu=False)
    assert regexes and all("'(?:fakeplugin)'" in r for r in regexes)


def test_the_grid_times_complex_dtypes_while_defaults_stay_real() -> None:
    assert {"complex64", "complex128"} <= set(suite.grid("matmul.Square").dtypes)
    sel = suite.parse_selection({"cpu": {"dtypes": ["complex64", "complex128"]}}, "t.yaml")
    assert sel.cpu is not None and sel.cpu.dtypes == ("complex64", "complex128")
    for default in (suite.DEFAULT, suite.QUICK):
        assert default.frameworks == ("numpy", "torch", "jax", "tensorflow")
        for d in (default.cpu, default.gpu):
            assert d is not None and not {"complex64", "complex128"} & set(d.dtypes)


def test_discovery_sees_an_installed_plugin_without_importing_it(tmp_path: Path) -> None:
    """asv's discovery imports benchmarks/: the grid holds the plugin, nothing is imported."""
    site = dist_info(tmp_path / "site", fakeplugin="tests.fake_plugin:FakePluginAdapter")
    code = ("import sys, benchmarks.matmul as m; print(m.Square.params[0]); "
            "print(sorted(k for k in ('tests.fake_plugin', 'torch', 'jax', 'tensorflow', "
            "'mlx') if k in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env=env, check=True, timeout=120)
    grid, imported = out.stdout.strip().splitlines()
    assert "'fakeplugin'" in grid and grid.startswith("['numpy', 'torch', 'jax', 'tensorflow'")
    assert imported == "[]"


def test_system_card_records_plugin_and_framework_versions(tmp_path: Path) -> None:
    site = dist_info(tmp_path / "site", fakeplugin="tests.fake_plugin:FakePluginAdapter")
    code = ("import json; from harness import system; i = system.system_info(); "
            "print(json.dumps([i['plugins'], i['framework_versions']]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env=env, check=True, timeout=120)
    import json

    plugins, versions = json.loads(out.stdout)
    assert plugins["fakeplugin"] == "harness-fakeplug 9.8.7"
    # the fake plugin wraps numpy: its framework's version is numpy's distribution's
    assert versions["fakeplugin"] == versions["numpy"] == system.distribution_version("numpy")
    assert list(versions)[:4] == ["numpy", "torch", "jax", "tensorflow"]


def test_report_orders_and_styles_frameworks_by_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_entry_points(monkeypatch, fakeplugin="tests.fake_plugin:FakePluginAdapter")
    analysis.registry_order.cache_clear()
    monkeypatch.setattr(analysis, "registry_order", analysis.registry_order.__wrapped__)
    import pandas as pd

    df = pd.DataFrame({"framework": ["zeta", "fakeplugin", "torch", "numpy"]})
    assert analysis.frameworks(df) == ["numpy", "torch", "fakeplugin", "zeta"]
    styles = {(figures.color(f), figures.marker(f))
              for f in ("numpy", "torch", "jax", "tensorflow", "fakeplugin")}
    assert len(styles) == 5  # the plugin gets a style of its own
    assert figures.color("numpy") == "#4c72b0" and figures.marker("tensorflow") == "D"


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_complex_cells_time_and_judge_like_real_ones(
    monkeypatch: pytest.MonkeyPatch, dtype: str,
) -> None:
    """What asv runs for a complex cell (numpy, in-process): the timed pass and the error
    ratios that accuracy.Gradients tracks."""
    from benchmarks import common

    for cache in ("_adapters", "_cells", "_outcomes"):  # this test's adapter stays its own
        monkeypatch.setattr(common, cache, {})
    monkeypatch.setenv(suite.SELECTION_ENV, "all")
    monkeypatch.setenv(suite.THREADS_ENV, "1")
    c = common.cell("time", "numpy", "cpu", dtype, "64x64x64", "forward_backward",
                    calibrate=False)
    try:
        assert c.x.dtype == np.dtype(dtype) and c.number == 1
        c.call()
        ratios = common.error_ratios("numpy", "cpu", dtype, "256x256x256")
    finally:
        c.adapter._limits.restore_original_limits()  # numpy's BLAS threads, as they were
    assert set(ratios) == {"dX", "dW"} and all(0 <= r <= 1 for r in ratios.values())
