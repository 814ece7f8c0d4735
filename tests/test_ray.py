"""The Ray executor (`verify --executor ray`) on one small local Ray cluster.

One module-scoped cluster (2 CPUs, a declared fake GPU and an `accelerator_type:H100`
resource) serves every test: starting one costs 10-20 s. The heavier checks (the default
config, the executor's overhead) are benchmarks/ray_overhead.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from harness import executors, runfiles
from harness.adapters.numpy import NumpyAdapter
from harness.cases import Inputs
from harness.cli import main
from harness.config import parse
from harness.executors import Settings
from harness.plan import plan
from harness.results import Row
from tests.test_faults import PLUGINS, config, orchestrator, read, wait_for_cells
from tests.test_registry import fake_entry_points

# ray.init starts its services through subprocess (fork, then exec at once), which
# Python warns about once JAX's threads exist in this process (other tests import it)
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")

SLEEP_ROWS = 5  # a case whose X has this many rows sleeps SLEEP_S in the sleepy adapter
SLEEP_S = 30.0  # long: a framework worker outliving its killed Ray worker is seen


class Sleepy(NumpyAdapter):
    """Correct, but one case is slow: a cell to kill a Ray worker in the middle of."""

    name = "sleepy"

    def run(self, inputs: Inputs, device: str) -> dict[str, np.ndarray]:
        if inputs.x.shape[0] == SLEEP_ROWS:
            time.sleep(SLEEP_S)
        return super().run(inputs, device)


MY_PLUGINS = {**PLUGINS, "sleepy": "tests.test_ray:Sleepy"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster for the module; yields its GCS address (for subprocess drivers)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: "
                                            "pip install 'matmul-harness[ray]'")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=1, resources={"accelerator_type:H100": 1},
             include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, **MY_PLUGINS)


def _meta(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / runfiles.RUN_FILE).read_text())
    return data


def _verdicts(folder: Path) -> list[tuple[str, ...]]:
    return [(r["framework"], r["device"], r["dtype"], r["case"], r["quantity"], r["status"],
             r["reason"], r["ratio"], r["max_abs_err"]) for r in read(folder / "verify.csv")]


def test_gpu_groups_are_scheduled_on_the_gpu_and_accelerator(
        tmp_path: Path, cluster: str, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config("numpy", [("a", 3), ("b", 4)]).replace("[cpu]", "[cpu, gpu]"))
    out = tmp_path / "o"
    assert main(["verify", "--config", str(cfg), "--out", str(out), "--executor", "ray",
                 "--ray-accelerator", "H100"]) == 0
    placed = {p["group"]: p for p in _meta(out)["executor"]["placements"]}
    assert set(placed) == {"numpy cpu pinned", "numpy gpu pinned"}
    gpu, cpu = placed["numpy gpu pinned"]["resources"], placed["numpy cpu pinned"]["resources"]
    assert gpu.get("GPU") == 1 and gpu.get("accelerator_type:H100", 0) > 0
    assert "GPU" not in cpu and cpu.get("CPU") == 1
    rows = read(out / "verify.csv")
    assert {r["status"] for r in rows if r["device"] == "cpu" and r["quantity"] == "dX"} == {
        "pass"}
    # the fake GPU is no device numpy can use: its own reason, from the node
    assert all(r["status"] == "skip" and "numpy" in r["reason"] for r in rows
               if r["device"] == "gpu")
    assert all(r["machine"] for r in rows)

    # an accelerator type no node offers: the GPU cells say so instead of waiting forever
    out2 = tmp_path / "o2"
    assert main(["verify", "--config", str(cfg), "--out", str(out2), "--executor", "ray",
                 "--ray-accelerator", "A100"]) == 0
    gpu_rows = [r for r in read(out2 / "verify.csv") if r["device"] == "gpu"]
    assert gpu_rows and all(r["status"] == "skip" and "accelerator type A100 (offered: H100)"
                            in r["reason"] for r in gpu_rows)


def test_same_verdicts_as_the_local_executor(tmp_path: Path, cluster: str) -> None:
    pytest.importorskip("torch", reason="torch is not installed: "
                                        "pip install 'matmul-harness[torch]'")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config("numpy, torch", [("a", 3), ("b", 17)])
                   .replace("[float32]", "[bfloat16, complex64]")
                   .replace("[cpu]", "[cpu, gpu]"))
    local, ray = tmp_path / "local", tmp_path / "ray"
    assert main(["verify", "--config", str(cfg), "--out", str(local)]) == 0
    assert main(["verify", "--config", str(cfg), "--out", str(ray), "--executor", "ray"]) == 0
    assert _verdicts(ray) == _verdicts(local)
    assert "executor" not in _meta(local)  # the local run.json is as it was


def test_sigkill_of_the_ray_worker_costs_only_its_cell(tmp_path: Path, cluster: str,
                                                      plugins: None) -> None:
    import ray as ray_module

    from harness.executors.ray_executor import Cluster, RayRunner

    cases = [("first", 2), ("slow", SLEEP_ROWS), ("after", 3), ("last", 4)]
    cfg = parse(yaml.safe_load(config("sleepy", cases)), "test", tuple(MY_PLUGINS))
    cells = plan(cfg)
    rows: list[Row] = []
    runner = RayRunner(cfg, rows.extend, Cluster(ray_module, False), Settings("ray"),
                       cell_timeout=120.0)
    thread = threading.Thread(target=runner.run, args=(cells,))
    thread.start()
    deadline = time.monotonic() + 120
    while not any(r.case == "first" for r in rows) or not runner.placements:
        assert time.monotonic() < deadline and thread.is_alive(), rows
        time.sleep(0.05)
    time.sleep(1.0)  # the slow cell is now in its worker's sleep
    os.kill(runner.placements[0]["pid"], signal.SIGKILL)
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert not _framework_workers("sleepy-"), "a framework worker outlived its Ray worker"
    dx = {r.case: r for r in rows if r.quantity == "dX"}
    assert [dx[c].status for c, _ in cases] == ["pass", "error", "pass", "pass"]
    assert "Ray task lost on" in dx["slow"].reason
    assert "WorkerCrashedError" in dx["slow"].reason or "died" in dx["slow"].reason
    assert len(rows) == len(cases) * 6  # every cell once
    attempts = [(p["group"], p["attempt"]) for p in runner.placements]
    assert attempts == [("sleepy cpu pinned", 0), ("sleepy cpu pinned", 1)]
    assert runner.placements[1]["pid"] != runner.placements[0]["pid"]


def _framework_workers(job_prefix: str, wait_s: float = 10.0) -> list[int]:
    """Pids of framework workers whose job file starts with `job_prefix`, once those
    that are ending have had `wait_s` to go."""
    deadline = time.monotonic() + wait_s
    while True:
        pids = []
        for proc in Path("/proc").iterdir():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:  # not a process, or gone
                continue
            if any(Path(os.fsdecode(c)).name.startswith(job_prefix) and c.endswith(b".job")
                   for c in cmd):
                pids.append(int(proc.name))
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.2)


SLOW_CASES = [(f"c{i}", 2 + (i % 3) * 13) for i in range(12)]  # 0.3 s a cell


def _table(path: Path) -> list[tuple[str, ...]]:
    return [(r["framework"], r["dtype"], r["case"], r["quantity"], r["status"], r["ratio"])
            for r in read(path)]


def test_resume_after_the_driver_is_killed_or_interrupted(
        tmp_path: Path, cluster: str, plugins: None) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config("slow", SLOW_CASES).replace("[float32]", "[float32, float64]"))
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    ray_args = ("--executor", "ray", "--ray-address", cluster)
    assert main(["verify", "--config", str(cfg), "--out", str(whole), "--executor", "ray"]) == 0

    proc = orchestrator("verify", "--config", str(cfg), "--out", str(cut), *ray_args)
    wait_for_cells(cut / runfiles.PARTIAL_FILE, 3, proc, timeout=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (cut / "verify.csv").exists()

    # resumed, then Ctrl-C'd: exit 130, the resume command, and what finished is kept
    kept = (cut / runfiles.PARTIAL_FILE).read_text().count("\n")
    proc = orchestrator("verify", "--resume", str(cut), *ray_args)
    wait_for_cells(cut / runfiles.PARTIAL_FILE, kept + 2, proc, timeout=120)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"Resume with: matmul-harness verify --resume {cut}" in err
    assert "Traceback" not in err
    assert not (cut / "verify.csv").exists()

    resumed = orchestrator("verify", "--resume", str(cut), *ray_args)
    _, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err
    assert _table(cut / "verify.csv") == _table(whole / "verify.csv")
    assert len(_table(cut / "verify.csv")) == 2 * len(SLOW_CASES) * 6  # no duplicates
    assert len(_meta(cut)["resumed"]) == 2


def test_cell_and_run_timeouts_as_locally(tmp_path: Path, cluster: str,
                                          plugins: None) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config("sleepy", [("first", 2), ("slow", SLEEP_ROWS), ("last", 4)]))
    out = tmp_path / "cell"
    assert main(["verify", "--config", str(cfg), "--out", str(out), "--executor", "ray",
                 "--cell-timeout", "2"]) == 1
    dx = {r["case"]: r for r in read(out / "verify.csv") if r["quantity"] == "dX"}
    assert [dx[c]["status"] for c in ("first", "slow", "last")] == ["pass", "error", "pass"]
    assert dx["slow"]["reason"] == "timeout after 2 s (cell)"

    out = tmp_path / "run"
    cfg.write_text(config("sleepy", [("slow", SLEEP_ROWS), ("last", 4)]))
    assert main(["verify", "--config", str(cfg), "--out", str(out), "--executor", "ray",
                 "--timeout", "2"]) == 1
    rows = read(out / "verify.csv")
    assert len(rows) == 2 * 6
    assert {r["reason"] for r in rows if r["quantity"] == "dX"} == {
        "timeout: the run's overall limit of 2 s was reached"}
    assert not _framework_workers("sleepy-"), "a cancelled task left its framework worker"


@pytest.mark.parametrize(("argv", "expected"), [
    (["--executor", "dask"], "--executor 'dask': unknown executor; expected one of local, ray"),
    (["--ray-accelerator", "H100"], "--ray-accelerator needs --executor ray"),
    (["--executor", "local", "--ray-address", "127.0.0.1:6379"],
     "--ray-address needs --executor ray; received --executor local"),
    (["--executor", "ray", "--ray-address", "127.0.0.1:1"],
     "--ray-address '127.0.0.1:1': nothing answers at 127.0.0.1:1"),
    (["--executor", "ray", "--ray-address", "head:port"],
     "--ray-address 'head:port': expected HOST:PORT"),
    (["--executor", "ray", "--ray-accelerator", " "], "--ray-accelerator '': expected"),
])
def test_bad_executor_input_exits_2_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
        expected: str) -> None:
    if "127.0.0.1:1" in argv or "head:port" in argv:
        pytest.importorskip("ray", reason="Ray is not installed: "
                                          "pip install 'matmul-harness[ray]'")
    out = tmp_path / "o"
    assert main(["verify", "--framework", "numpy", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not out.exists()  # checked before anything is made


def test_ray_not_installed_exits_2_with_the_install_hint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray: ModuleNotFoundError
    out = tmp_path / "o"
    assert main(["verify", "--framework", "numpy", "--out", str(out),
                 "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--executor ray needs Ray, which is not installed here" in err
    assert f"install it with: {executors.RAY_INSTALL_HINT}" in err
    assert not out.exists()


def test_choosing_an_executor_imports_no_ray() -> None:
    code = ("import sys, harness, harness.cli, harness.executors\n"
            "from harness.executors import settings\n"
            "settings('local', None, None)\n"
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "False"
