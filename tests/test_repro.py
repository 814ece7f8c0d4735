"""`matmul-harness repro`: the script runs standalone (no harness importable), builds the
harness's inputs bit for bit, and reports the measured error of a planted-bug cell."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import repro
from harness.cases import Case
from harness.cli import main
from harness.results import read_csv
from tests.conftest import need
from tests.test_registry import fake_entry_points

CFG = """
frameworks: [numpy, wrongtranspose]
devices: [cpu]
dtypes: [float32, float64]
cases:
  - {name: square, x: [6, 6], w: [6, 6]}
  - {name: vec_vec, x: [5], w: [5]}
"""


def standalone(path: Path, cwd: Path, env: dict[str, str] | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a script where `import harness` fails: no PYTHONPATH, and harness blocked."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import runpy, sys; sys.modules['harness'] = None; "
            f"runpy.run_path({str(path)!r}, run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=cwd, env={**base, **(env or {})}, timeout=timeout)


def test_reproducer_of_a_planted_bug_reports_its_error_standalone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_entry_points(monkeypatch, wrongtranspose="tests.fake_plugin:WrongTransposePlugin")
    (tmp_path / "c.yaml").write_text(CFG, encoding="utf-8")
    out_dir = tmp_path / "run"
    assert main(["verify", "--config", str(tmp_path / "c.yaml"), "--out", str(out_dir)]) == 1
    (row,) = [r for r in read_csv(out_dir / "verify.csv") if r.framework == "wrongtranspose"
              and r.status == "fail" and r.dtype == "float64"]
    assert (row.case, row.quantity) == ("square", "dX")
    script = tmp_path / "elsewhere" / "repro.py"
    capsys.readouterr()
    assert main(["repro", str(out_dir), "--case", "square", "--framework", "wrongtranspose",
                 "--dtype", "float64", "--out", str(script)]) == 0
    assert f"repro: {script}" in capsys.readouterr().out
    text = script.read_text(encoding="utf-8")
    assert "harness" not in re.sub(r'""".*?"""', "", text, flags=re.S).replace(
        "harness run", "").replace("harness's", "").replace("harness/", "")
    out = standalone(script, tmp_path / "elsewhere")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "bit-identical to the harness run" in out.stdout
    lines = {ln.split()[0]: ln.split() for ln in out.stdout.splitlines()
             if ln[:3].strip() in ("Y", "dX", "dW")}
    # the script measures the same error verify recorded for the planted bug, and none in Y
    assert float(lines["dX"][1]) == pytest.approx(row.max_abs_err, rel=1e-2)
    assert float(lines["dX"][1]) > 0.1 and float(lines["Y"][1]) < 1e-12
    assert "dX: fail: dX: |err|=" in text  # the recorded verdict, in the docstring


@pytest.mark.parametrize(("case", "dtype", "inline"), [
    (Case("bf", (3, 4), (2, 4, 5)), "bfloat16", True),
    (Case("c64", (2, 1, 3, 4), (1, 3, 4, 2)), "complex64", True),
    (Case("f16vec", (7,), (7,)), "float16", True),
    (Case("big", (4, 65536), (65536, 4)), "float32", False),  # regenerated from the seed
    (Case("bigc", (2, 8192), (8192, 3)), "complex128", False),
])
def test_inputs_are_bit_identical_inline_or_regenerated(
    tmp_path: Path, case: Case, dtype: str, inline: bool,
) -> None:
    cell = repro.Cell("numpy", "cpu", dtype, case, 7, (), {})
    text = repro.script(cell)
    assert ("the inputs, inline" in text) == inline
    path = tmp_path / "r.py"
    path.write_text(text, encoding="utf-8")
    out = standalone(path, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "bit-identical to the harness run (SHA-256 checked)" in out.stdout
    # a changed seed changes the digest: the check is not vacuous
    path.write_text(text.replace("SEED, 'inputs')", "SEED + 1, 'inputs')"), encoding="utf-8")
    if not inline:
        bad = standalone(path, tmp_path)
        assert bad.returncode == 1 and "SHA-256 mismatch" in bad.stderr


def test_bad_repro_requests_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["repro", str(tmp_path), "--case", "x", "--framework", "numpy",
                 "--dtype", "float32"]) == 2
    assert "no verify.csv" in capsys.readouterr().err
    with (tmp_path / "verify.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["framework", "device", "dtype", "case", "x_shape", "w_shape", "quantity",
                    "status", "reason", "max_abs_err", "ratio", "k_eff", "precision",
                    "framework_version"])
        w.writerow(["numpy", "cpu", "float32", "sq", "2x2", "2x2", "Y", "pass", "", "0", "0",
                    "2", "ieee", "2"])
    assert main(["repro", str(tmp_path), "--case", "x", "--framework", "numpy",
                 "--dtype", "float32"]) == 2
    assert ("no cell numpy/cpu/float32/x in the pinned precision mode; cells there: "
            "numpy/cpu/float32/sq") in \
        capsys.readouterr().err


def test_report_lists_the_repro_command_of_each_failure() -> None:
    import pandas as pd

    from harness.report.tables import problem_list

    table = pd.DataFrame([{"source": "verify", "status": "fail", "machine": "m",
                           "framework": "tensorflow", "device": "cpu", "mode": "pinned",
                           "dtype": "float32", "case": "b 1", "quantity": "dX",
                           "reason": "boom", "origin": "/r/run 1/verify.csv"}])
    (line,) = problem_list(table)
    assert line.endswith("reproducer: `matmul-harness repro '/r/run 1' --case 'b 1' "
                         "--framework tensorflow --dtype float32 --device cpu`")


def test_tensorflow_onednn_crash_case(tmp_path: Path) -> None:
    """The issue's case: tf.matmul (7,1,5,2) @ (2,6) float32 on the CPU with oneDNN on,
    reported to corrupt the heap (SIGABRT) under TensorFlow 2.21. The reproducer either
    dies of SIGABRT, or (on CPUs where it does not happen, such as this AVX2 EPYC) prints
    its measured errors."""
    need("tensorflow")
    cell = repro.Cell("tensorflow", "cpu", "float32", Case("tf_crash", (7, 1, 5, 2), (2, 6)),
                      0, (), {"TF_ENABLE_ONEDNN_OPTS": "1"})
    path = tmp_path / "tf.py"
    path.write_text(repro.script(cell), encoding="utf-8")
    out = standalone(path, tmp_path, {"TF_CPP_MIN_LOG_LEVEL": "2"})
    if out.returncode == -signal.SIGABRT:
        return
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"^dW +[0-9.e-]+ +\(\d, \d\)", out.stdout, flags=re.M), out.stdout
