"""The GitHub Actions workflow (.github/workflows/matrix.yml) cannot run here: it is linted
with actionlint and its shape checked: a correctness job per framework on CPU runners and on
the self-hosted GPU label, fail-fast off, results uploaded, report.md in the job summary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "matrix.yml"


def actionlint() -> str:
    # The dev extra installs it into the venv, next to this interpreter.
    venv_bin = str(Path(sys.executable).parent)
    exe = shutil.which("actionlint", path=os.pathsep.join([venv_bin, os.environ["PATH"]]))
    if exe:
        return exe
    reason = "actionlint is not installed: pip install -e '.[dev]'"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def test_workflow_passes_actionlint() -> None:
    proc = subprocess.run([actionlint(), "-no-color", str(WORKFLOW)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The lint is not vacuous: a typo in an input and an unknown runner label fail it."""
    bad = WORKFLOW.read_text().replace("pattern: verify-*", "patern: verify-*")
    bad = bad.replace("[self-hosted, linux, gpu]", "[self-hosted, linux, gpus]")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(ROOT / ".github" / "actionlint.yaml", tmp_path / ".github")
    path = tmp_path / ".github" / "workflows" / "matrix.yml"
    path.write_text(bad)
    proc = subprocess.run([actionlint(), "-no-color", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "patern" in proc.stdout and "gpus" in proc.stdout


def test_cpu_and_gpu_jobs_cover_the_frameworks(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    cpu, gpu = jobs["cpu"], jobs["gpu"]
    assert cpu["strategy"]["fail-fast"] is False and gpu["strategy"]["fail-fast"] is False
    shards = int(workflow["env"]["SHARDS"])
    assert cpu["strategy"]["matrix"]["shard"] == list(range(1, shards + 1))
    cpu_run = " ".join(s.get("run", "") for s in cpu["steps"])
    assert '--shard "$SHARD/$SHARDS"' in cpu_run and "--device cpu" in cpu_run
    assert ".[all]" in cpu_run  # every shard holds cells of every framework
    assert [i["framework"] for i in gpu["strategy"]["matrix"]["include"]] == [
        "torch", "jax", "tensorflow"]  # numpy has no GPU backend
    assert "self-hosted" in gpu["runs-on"] and "gpu" in gpu["runs-on"]
    gpu_run = " ".join(s.get("run", "") for s in gpu["steps"])
    assert "--framework" in gpu_run
    for job in (cpu, gpu):
        run = " ".join(s.get("run", "") for s in job["steps"])
        assert "matmul-harness verify" in run
        upload = next(s for s in job["steps"] if "upload-artifact" in s.get("uses", ""))
        assert upload["if"] == "always()"  # results are kept when checks fail


def test_report_job_writes_the_job_summary(workflow: dict[str, Any]) -> None:
    report = workflow["jobs"]["report"]
    assert set(report["needs"]) == {"cpu", "gpu"} and "always()" in report["if"]
    run = " ".join(s.get("run", "") for s in report["steps"])
    # the shards and GPU jobs merged into one set (a dead shard recorded, not dropped)
    assert "matmul-harness merge results/verify-*" in run and "--allow-missing" in run
    assert "matmul-harness report merged" in run
    assert 'report/report.md >> "$GITHUB_STEP_SUMMARY"' in run
    assert any("upload-artifact" in s.get("uses", "") for s in report["steps"])
