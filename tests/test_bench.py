"""The asv suite and `matmul-harness bench`: grid, selection, guard, timed call, real asv runs.

The two end-to-end tests run asv itself (`asv check`, then a tiny `asv run --quick`) in this
environment with a temporary HOME and results folder, so they neither read nor write the
user's ~/.asv-machine.json or the repo's results/.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import common
from harness import bench, shapes, suite

ROOT = Path(__file__).resolve().parents[1]
ASV = [sys.executable, "-m", "asv"]  # asv of this interpreter's environment
SUITE = ("accuracy", "matmul", "memory")


def asv_names(g: suite.Grid, method: str) -> list[str]:
    """Names as asv matches `--bench` regexes: `module.Class.method('a', 'b', ...)`."""
    return [f"{g.name}.{method}({', '.join(map(repr, combo))})"
            for combo in itertools.product(*g.params)]


def selected(regexes: list[str]) -> set[str]:
    names = {n for g in suite.GRIDS for m in g.methods for n in asv_names(g, m)}
    return {n for n in names if any(re.search(r, n) for r in regexes)}


def env_for(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    # asv drops PYTHONPATH: the benchmarks import this checkout's harness through
    # ASV_PYTHONPATH, as `matmul-harness bench` arranges.
    return {**os.environ, "HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2",
            "ASV_PYTHONPATH": str(ROOT)}


# --- the grid as asv sees it ---------------------------------------------------------------

def test_benchmark_classes_carry_the_grid_of_harness_bench() -> None:
    import benchmarks.accuracy
    import benchmarks.matmul
    import benchmarks.memory

    modules = {"matmul": benchmarks.matmul, "accuracy": benchmarks.accuracy,
               "memory": benchmarks.memory}  # versions.Installed: no grid (tests/test_tracking)
    for g in suite.GRIDS:
        module, cls_name = g.name.split(".")
        cls = getattr(modules[module], cls_name)
        assert cls.params == g.params
        assert cls.param_names == g.param_names
        assert cls.version == "1"  # tracked long-term: an explicit version
        # (https://github.com/airspeed-velocity/asv/issues/1218)
        for m in g.methods:
            assert callable(getattr(cls, m))
        if g.kind == "time":
            assert cls.param_names == ["framework", "device", "dtype", "shape", "pass"]
    values = {v for g in suite.GRIDS for v in g.params[3]}
    assert all(common.case(v).geometry for v in values)  # readable string ids, never tuples


def test_importing_the_suite_imports_no_framework_and_no_asv() -> None:
    code = ("import sys, benchmarks.matmul, benchmarks.accuracy, benchmarks.memory, "
            "benchmarks.overhead; "
            "print(sorted(m for m in ('torch', 'jax', 'tensorflow', 'asv') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_cells_outside_the_selection_or_without_gpu_are_na_before_any_import() -> None:
    code = (
        "import sys\n"
        "from benchmarks import matmul\n"
        "for cell in [('torch', 'cpu', 'float16', '2048x2048x2048', 'forward'),\n"
        "             ('tensorflow', 'gpu', 'float32', '1024x1024x1024', 'forward'),\n"
        "             ('numpy', 'gpu', 'float32', '1024x1024x1024', 'forward')]:\n"
        "    try:\n"
        "        matmul.Square().setup(*cell)\n"
        "    except NotImplementedError as exc:\n"
        "        print('n/a:', exc)\n"
        "print(sorted(m for m in ('torch', 'jax', 'tensorflow') if m in sys.modules))\n"
    )
    env = {**os.environ, "PATH": "/nonexistent"}  # no nvidia-smi: no GPU
    env.pop(suite.SELECTION_ENV, None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, env=env)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("n/a: not in the built-in default selection")
    assert lines[1] == "n/a: no GPU found (nvidia-smi lists none)"
    assert lines[2] == "n/a: numpy has no gpu backend"
    assert lines[3] == "[]"


# --- the timed call --------------------------------------------------------------------------

class Recorder:
    """A fake adapter that logs every call, to see what a timed call does and in what order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    def forward(self, x: Any, w: Any) -> str:
        self.log.append(("forward", (x, w)))
        return "y"

    def pullback(self, x: Any, w: Any) -> tuple[str, Any]:
        self.log.append(("pullback", (x, w)))

        def f(g: Any) -> tuple[str, str]:
            self.log.append(("f", g))
            return "dx", "dw"

        return "y", f

    def vjp(self, x: Any, w: Any, g: Any) -> tuple[str, str, str]:
        self.log.append(("vjp", (x, w, g)))
        return "y", "dx", "dw"

    def sync(self, outputs: tuple[Any, ...]) -> None:
        self.log.append(("sync", outputs))


@pytest.mark.parametrize(("pass_", "timed"), [
    ("forward", [("forward", ("x", "w")), ("sync", ("y",))]),
    ("backward", [("f", "g"), ("sync", ("dx", "dw"))]),
    ("forward_backward", [("vjp", ("x", "w", "g")), ("sync", ("y", "dx", "dw"))]),
])
def test_every_timed_call_ends_with_the_sync_of_what_it_computed(
    pass_: str, timed: list[tuple[str, Any]]
) -> None:
    a = Recorder()
    call = common._pass(a, pass_, "x", "w", "g")
    setup = list(a.log)
    if pass_ == "backward":  # the forward is saved (and synced) once, outside the timing
        assert setup == [("pullback", ("x", "w")), ("sync", ("y",))]
    else:
        assert setup == []
    call()
    call()
    assert a.log[len(setup):] == timed * 2


def test_calls_per_sample_fill_about_twenty_milliseconds() -> None:
    import time

    assert common._calibrate(lambda: time.sleep(0.05)) == 1
    n = common._calibrate(lambda: time.sleep(0.001))
    assert 5 <= n <= 25


# --- the selection (config) ------------------------------------------------------------------

def test_default_selection_plans_exactly_its_cells_on_a_cpu_only_machine() -> None:
    regexes, notes = bench.plan(suite.DEFAULT, gpu=False)
    got = selected(regexes)
    square = {n for n in got if n.startswith("matmul.Square.")}
    assert len(square) == 4 * 2 * 3 * 3  # frameworks x {float32, float64} x shapes x passes
    # the drift cells are the grid's own (float16, complex64, long K), not the selection's
    assert ("accuracy.Drift.track_y_effective_bits('torch', 'cpu', 'float16', '16x65536x16')"
            in got)
    # every run records the releases it measured
    assert any(re.search(r, "versions.Installed.track_version('jax')") for r in regexes)
    assert all("'cpu'" in n for n in got)
    assert not any(n.startswith("matmul.DeepBench.") for n in got)
    assert "memory.Peak.peakmem_forward_backward('jax', 'cpu', 'float64', '1024x1024x1024')" in got
    assert not any("track_device_peak_bytes" in n for n in got)  # GPU only
    assert any(n.startswith("gpu: no GPU found") for n in notes)


def test_plan_skips_what_a_framework_cannot_do_and_keeps_gpu_cells_with_a_gpu() -> None:
    sel = suite.parse_selection({"gpu": {"dtypes": ["bfloat16"], "shapes": ["deepbench"]},
                                 "cpu": {"dtypes": ["bfloat16", "float32"],
                                         "shapes": ["64x64x64"]},
                                 "kinds": ["time"], "passes": ["forward"]}, "t.yaml")
    got = selected(bench.plan(sel, gpu=True)[0])
    assert "matmul.Square.time_matmul('numpy', 'cpu', 'float32', '64x64x64', 'forward')" in got
    assert not any("'numpy'" in n and "'bfloat16'" in n for n in got)  # numpy has no bfloat16
    assert not any("'numpy'" in n and "'gpu'" in n for n in got)
    assert not any(n.startswith("matmul.DeepBench.") for n in got)  # no bfloat16 in its grid
    assert "matmul.Square.time_matmul('torch', 'cpu', 'bfloat16', '64x64x64', 'forward')" in got


def test_config_values_groups_and_defaults() -> None:
    sel = suite.parse_selection({"frameworks": "torch", "threads": 1,
                                 "gpu": {"shapes": ["square", "16x2560x2560"]}}, "t.yaml")
    assert sel.frameworks == ("torch",)
    assert sel.threads == 1
    assert sel.cpu is None
    assert sel.gpu is not None
    assert sel.gpu.shapes == (*shapes.SQUARE, "16x2560x2560")
    assert suite.DEFAULT.gpu is not None
    assert sel.gpu.dtypes == suite.DEFAULT.gpu.dtypes  # a device's missing key: its default
    assert sel.includes("time", "torch", "gpu", "float16", "64x64x64", "backward")
    assert not sel.includes("time", "torch", "cpu", "float32", "64x64x64", "backward")
    again = suite.parse_selection(json.loads(sel.to_json()), "again")
    assert again.frameworks == sel.frameworks and again.gpu == sel.gpu


@pytest.mark.parametrize(("data", "message"), [
    ({"cpu": None, "frameworks": ["pytorch"]},
     "t.yaml: frameworks: unknown value 'pytorch' (did you mean 'torch'?); allowed: numpy, "),
    ({"cpu": {"dtypes": ["complex32"]}}, "cpu.dtypes: unknown value 'complex32' (did you mean"),
    ({"cpu": {"shapes": ["100x100x100"]}}, "allowed: square, deepbench, 64x64x64,"),
    ({"cpu": {"shape": ["64x64x64"]}}, "t.yaml: cpu: unknown key 'shape' (did you mean"),
    ({"gpus": {}}, "t.yaml: unknown key 'gpus' (did you mean 'gpu'?); allowed: frameworks"),
    ({"frameworks": ["torch"]}, "select at least one device"),
    ({"cpu": None, "threads": 0}, "threads must be an integer >= 1"),
    ({"cpu": None, "threads": True}, "threads must be an integer >= 1"),
    ({"cpu": None, "passes": []}, "passes must be a non-empty list drawn from forward,"),
    ({"cpu": None, "kinds": ["time", "speed"]}, "kinds: unknown value 'speed'"),
    ({"cpu": ["float32"]}, "cpu must be a mapping with keys dtypes, shapes"),
    ([1, 2], "expected a mapping with keys frameworks"),
])
def test_bad_configs_are_one_line_errors_naming_key_and_allowed_values(
    data: Any, message: str
) -> None:
    with pytest.raises(suite.BenchError) as err:
        suite.parse_selection(data, "t.yaml")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bench_cli_exits_2_with_one_line_on_a_bad_config_or_outside_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cpu:\n  dtypes: [float32\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "harness", "bench", "--config", str(bad)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith(f"matmul-harness: error: {bad}: YAML syntax error at line")
    assert len(out.stderr.strip().splitlines()) == 1

    with pytest.raises(suite.BenchError, match="not a git checkout with a commit"):
        bench.git_head(tmp_path)
    from harness import cli

    monkeypatch.setattr(bench, "checkout", lambda: tmp_path)
    monkeypatch.setattr(bench, "plan", lambda sel, gpu: (["x"], []))
    assert cli.main(["bench", "--quick"]) == 2


def test_a_missing_config_is_a_bench_error_worded_as_every_config_error(tmp_path: Path) -> None:
    from harness.config import ConfigError, read_yaml

    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as expected:
        read_yaml(missing, str(missing))
    with pytest.raises(suite.BenchError) as err:
        suite.load_selection(missing)
    assert str(err.value) == str(expected.value)


def test_machine_record_names_the_physical_machine_and_threads(tmp_path: Path) -> None:
    path = tmp_path / ".asv-machine.json"
    path.write_text(json.dumps({"box-2t": {"machine": "box-2t"}, "version": 1}))
    bench._annotate_machine(path, bench.machine_name("box", 2), 2, "box")
    record = json.loads(path.read_text())["box-2t"]
    assert record["host_machine"] == "box"  # verify's system.machine_name: one report card
    assert record["threads"] == "2" and record["machine"] == "box-2t"
    assert record["gpu"] and record["float32_precision"].startswith("ieee")
    assert "os" in record and "num_cpu" in record  # asv's own fields, as asv would write them


# --- asv itself -------------------------------------------------------------------------------

def test_asv_check_passes_in_the_existing_environment(tmp_path: Path) -> None:
    out = subprocess.run([*ASV, "check", "-E", "existing:same", "--config",
                          str(ROOT / "asv.conf.json")],
                         capture_output=True, text=True, env=env_for(tmp_path), timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No problems found" in out.stdout
    for module in SUITE:
        assert (ROOT / "benchmarks" / f"{module}.py").is_file()


def results_of(results: Path, machine: str) -> dict[str, Any]:
    files = [p for p in (results / machine).glob("*.json") if p.name != "machine.json"]
    assert len(files) == 1, files
    data = json.loads(files[0].read_text(encoding="utf-8"))
    cols = data["result_columns"]
    return {name: dict(zip(cols, entry, strict=False)) for name, entry in data["results"].items()}


def cell_values(record: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    combos = itertools.product(*record["params"])
    return {tuple(v.strip("'") for v in c): r for c, r in zip(combos, record["result"],
                                                             strict=True)}


def test_quick_asv_run_saves_finite_cpu_timings_for_every_framework(tmp_path: Path) -> None:
    """`asv run -E existing:same --quick --set-commit-hash HEAD` on a handful of cells."""
    env = env_for(tmp_path)
    results = tmp_path / "results"
    conf = bench._write_conf(ROOT, tmp_path, results)
    commit = bench.git_head(ROOT)
    subprocess.run([*ASV, "machine", "--yes", "--machine", "test", "--config", str(conf)],
                   check=True, env=env, capture_output=True, timeout=120)
    cells = (r"^matmul\.Square\.time_matmul\('(numpy|torch|jax|tensorflow)', 'cpu', "
             r"'float32', '64x64x64', 'forward'\)$")
    gpu = r"^matmul\.Square\.time_matmul\('torch', 'gpu', 'float32', '64x64x64', 'forward'\)$"
    out = subprocess.run([*ASV, "run", "--config", str(conf), "-E", "existing:same", "--quick",
                          "--set-commit-hash", commit, "--machine", "test", "--show-stderr",
                          f"--bench={cells}", f"--bench={gpu}"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    values = cell_values(results_of(results, "test")["matmul.Square.time_matmul"])
    for fw in suite.FRAMEWORKS:
        t = values[(fw, "cpu", "float32", "64x64x64", "forward")]
        # a finite time per call (no bound: timings are measured by benchmarks, and a test's
        # threshold would only measure how loaded the CI machine is)
        assert isinstance(t, float) and math.isfinite(t) and t > 0, (fw, t)
    if not suite.gpu_present():
        assert math.isnan(values[("torch", "gpu", "float32", "64x64x64", "forward")])  # n/a
    assert values[("torch", "cpu", "float64", "64x64x64", "forward")] is not None
    assert not (ROOT / "results" / "test").exists()  # nothing written into the repo


def test_bench_command_records_machine_threads_and_prints_gflops(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text("frameworks: [numpy, torch]\nkinds: [time, accuracy]\n"
                      "passes: [forward_backward]\nthreads: 1\n"
                      "cpu: {dtypes: [float32], shapes: [256x256x256]}\n", encoding="utf-8")
    results = tmp_path / "results"
    out = subprocess.run([sys.executable, "-m", "harness", "bench", "--quick", "--config",
                          str(config), "--results-dir", str(results)],
                         capture_output=True, text=True, env=env_for(tmp_path), timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    (machine_dir,) = [p for p in results.iterdir() if p.is_dir()]
    assert machine_dir.name.endswith("-1t")
    card = json.loads((machine_dir / "machine.json").read_text(encoding="utf-8"))
    assert card["host_machine"] == machine_dir.name.removesuffix("-1t")
    assert card["threads"] == "1" and card["gpu"] and card["float32_precision"].startswith("ieee")
    assert card["os"] and card["num_cpu"]  # asv's own fields kept
    records = results_of(results, machine_dir.name)
    for q in ("dx", "dw"):
        ratios = cell_values(records[f"accuracy.Gradients.track_{q}_error_ratio"])
        for fw in ("numpy", "torch"):
            assert 0 <= ratios[(fw, "cpu", "float32", "256x256x256")] <= 1
    row = re.search(r"cpu +256x256x256 float32 +forward_backward +(.*)", out.stdout)
    assert row is not None, out.stdout[-2000:]
    assert len(re.findall(r"\( *[0-9.]+\)", row.group(1))) == 2  # GFLOP/s, numpy and torch
    assert "n/a" not in out.stdout  # unselected cells are kept out of the echo
