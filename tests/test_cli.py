"""The command line: outputs, and every exit code (0 ok, 1 failures, 2 bad input)."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli import main
from tests.conftest import chdir
from tests.test_registry import fake_entry_points

SQUARE_CFG = """
frameworks: [numpy]
devices: [cpu, gpu]
dtypes: [float32, float64]
cases:
  - {name: square, x: [6, 6], w: [6, 6]}
  - {name: vec_vec, x: [5], w: [5]}
"""


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_writes_csv_matrix_and_summary(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = write(tmp_path, SQUARE_CFG)
    junit = tmp_path / "junit.xml"
    code, out, err = run(capsys, "verify", "--config", cfg, "--out", str(tmp_path / "o"),
                         "--junit", str(junit))
    assert code == 0, out + err
    # numpy has no autodiff: its dY, adjoint and d2W rows are skips with that reason
    assert out.splitlines()[-1] == "12 passed, 0 failed, 36 skipped, 0 errors"
    assert "numpy:cpu       6/0/6" in out and "numpy:gpu       0/0/12" in out
    assert "skip numpy:gpu x24: numpy has no gpu backend" in out
    assert "skip numpy:cpu x8: numpy has no forward-mode autodiff" in out
    assert err == ""  # not a TTY: no progress output
    with (tmp_path / "o" / "verify.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 48
    assert list(rows[0]) == [
        "framework", "device", "dtype", "case", "x_shape", "w_shape", "quantity", "status",
        "reason", "max_abs_err", "ratio", "k_eff", "precision", "framework_version",
        "precision_mode", "effective_bits", "nominal_bits", "bias", "note", "precision_flags",
        "check",
        "machine",
    ]
    assert {r["check"] for r in rows if r["status"] == "pass"} == {"full"}
    first = rows[0]
    assert (first["framework"], first["dtype"], first["case"], first["quantity"]) == (
        "numpy", "float32", "square", "Y")
    assert first["status"] == "pass" and first["precision"] == "ieee"
    assert 0 <= float(first["ratio"]) <= 1
    assert first["precision_mode"] == "pinned" and first["nominal_bits"] == "24"
    assert float(first["effective_bits"]) > 20
    suites = ET.parse(junit).getroot()
    cpu = suites.find("testsuite[@name='numpy:cpu']")
    assert cpu is not None and cpu.get("tests") == "24" and cpu.get("failures") == "0"
    assert (tmp_path / "o" / "run.json").is_file()


def test_selection_flags_replace_the_config_lists(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = write(tmp_path, SQUARE_CFG)
    code, out, _ = run(capsys, "verify", "--config", cfg, "--out", str(tmp_path / "o"),
                       "--device", "cpu", "--dtype", "complex64")
    assert code == 0
    assert out.splitlines()[-1] == "6 passed, 0 failed, 6 skipped, 0 errors"


def test_default_out_is_a_new_folder_under_results(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = write(tmp_path, SQUARE_CFG)
    with chdir(tmp_path):
        code, out, _ = run(capsys, "verify", "--config", cfg, "--device", "cpu")
    assert code == 0
    made = list((tmp_path / "results").glob("verify-*/verify.csv"))
    assert len(made) == 1 and f"results: {made[0].relative_to(tmp_path)}" in out


def test_failures_exit_1(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fake_entry_points(monkeypatch, wrongtranspose="tests.fake_plugin:WrongTransposePlugin")
    cfg = write(tmp_path, SQUARE_CFG.replace("[numpy]", "[numpy, wrongtranspose]"))
    code, out, _ = run(capsys, "verify", "--config", cfg, "--out", str(tmp_path / "o"),
                       "--device", "cpu")
    assert code == 1
    assert "FAIL wrongtranspose:cpu float32 square dX: dX: |err|=" in out
    assert out.splitlines()[-1] == "22 passed, 2 failed, 24 skipped, 0 errors"


def test_missing_framework_is_a_skip_with_install_hint(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fake_entry_points(monkeypatch, notinstalled="tests.fake_plugin:MissingFrameworkAdapter")
    cfg = write(tmp_path, SQUARE_CFG.replace("[numpy]", "[notinstalled]"))
    code, out, _ = run(capsys, "verify", "--config", cfg, "--out", str(tmp_path / "o"))
    assert code == 0
    assert ("surely_not_an_installed_module_xyz is not installed: "
            "pip install surely-not-installed") in out


BAD_CONFIGS = [
    ("frameworks: [numpy]\ndtype: [float32]\ncases: [{name: a, x: [2], w: [2]}]\n",
     "unknown key 'dtype' (did you mean 'dtypes'?); allowed: frameworks, devices, dtypes"),
    ("dtypes: [float33]\ncases: [{name: a, x: [2], w: [2]}]\n",
     "dtypes: unknown value 'float33' (did you mean 'float32'?); allowed: float16, bfloat16"),
    ("frameworks: [pytorch]\ncases: [{name: a, x: [2], w: [2]}]\n",
     "frameworks: unknown value 'pytorch'"),
    ("devices: [metal]\ncases: [{name: a, x: [2], w: [2]}]\n",
     "devices: unknown value 'metal'; allowed: cpu, gpu"),
    ("cases: [{name: a, x: [2, 3.5], w: [3, 2]}]\n",
     "cases[0] (a): x must hold non-negative integers; received [2, 3.5] (bad dim 3.5)"),
    ("cases: [{name: a, x: [2, -3], w: [3, 2]}]\n", "(bad dim -3)"),
    ("cases: [{name: a, x: [2, 3], w: [4, 2]}]\n",
     "cases[0] (a): core dims do not match: x=[2, 3] has K=3, w=[4, 2] has K=4"),
    ("cases: [{name: a, x: [], w: [4, 2]}]\n", "cases[0] (a): x is [] (a 0-D operand)"),
    ("cases: [{name: a, x: [2, 3, 4], w: [3, 4, 2]}]\n", "batch dims do not broadcast"),
    ("cases: []\n", "cases must be a non-empty list"),
    ("frameworks: [numpy]\n", "cases must be a non-empty list"),
    ("cases: [{name: a, x: [2], w: [2], y: [1]}]\n", "unknown case key 'y'"),
    ("cases: [{name: a, x: [2]}]\n", "cases[0]: missing key 'w'"),
    ("cases: [{name: a, x: [2], w: [2]}, {name: a, x: [3], w: [3]}]\n",
     "cases[1]: duplicate case name 'a'"),
    ("seed: -1\ncases: [{name: a, x: [2], w: [2]}]\n", "seed must be a non-negative integer"),
    ("cases: [{name: a, x: [2], w: [2]}\n", "YAML syntax error at line 2, column 1"),
    ("- just\n- a list\n", "expected a mapping"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS,
                         ids=[m.split(";")[0][:40] for _, m in BAD_CONFIGS])
def test_config_errors_exit_2_with_one_line(tmp_path: Path, capsys, text: str,  # type: ignore[no-untyped-def]
                                            message: str) -> None:
    cfg = write(tmp_path, text)
    code, out, err = run(capsys, "verify", "--config", cfg, "--out", str(tmp_path / "o"))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"matmul-harness: error: {cfg}: ")
    assert message in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--config", "/no/such/file.yaml"], "/no/such/file.yaml: config file not found"),
    (["--framework", "mxnet"], "--framework 'mxnet': unknown framework; known: numpy, torch, "
                               "jax, tensorflow (installed here: numpy"),
    (["--dtype", "float8"], "--dtype 'float8': unknown value"),
    (["--device", "metal"], "--device 'metal': unknown value; allowed: cpu, gpu"),
    (["--out", "/etc/hostname/sub"], "is not a writable folder"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--cell-timeout", "0"], "--cell-timeout must be a positive number of seconds"),
    (["--timeout", "-5"], "--timeout must be a positive number of seconds; received -5.0"),
])
def test_bad_arguments_exit_2(capsys, no_plugins, argv: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "verify", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err


def test_argparse_usage_errors_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        main(["verify", "--no-such-flag"])
    assert exc.value.code == 2


def test_console_entry_point_runs_as_module(tmp_path: Path) -> None:
    cfg = write(tmp_path, SQUARE_CFG)
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "verify", "--config", cfg, "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "12 passed, 0 failed, 36 skipped, 0 errors"


def test_run_writes_correctness_selftest_and_report(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The main job without its benchmark step (tests/test_bench.py runs that one)."""
    cfg = write(tmp_path, SQUARE_CFG)
    code, out, _ = run(capsys, "run", "--no-bench", "--config", cfg, "--out",
                       str(tmp_path / "o"))
    assert code == 0
    for name in ("verify.csv", "run.json", "selftest.csv", "selftest_fd.csv", "report.html",
                 "report.md"):
        assert (tmp_path / "o" / name).is_file(), name
    assert f"report: {tmp_path / 'o' / 'report.html'}" in out
    assert re.search(r"\nmissing transpose +10/10 ", out)  # the column width follows the rows


def test_a_script_without_a_main_guard_can_run_verify(tmp_path: Path) -> None:
    """Workers are fresh interpreters that never re-import the caller's __main__ (as
    multiprocessing's spawn would, failing every worker of an unguarded script)."""
    cfg = write(tmp_path, SQUARE_CFG)
    script = tmp_path / "job.py"
    script.write_text(
        "import sys\nfrom harness.cli import main\n"
        f"sys.exit(main(['verify', '--config', {cfg!r}, '--out', {str(tmp_path / 'o')!r}]))\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "12 passed, 0 failed, 36 skipped, 0 errors"


def test_every_subcommand_has_one_handler() -> None:
    """The dispatcher's table and the parser name the same commands: a subcommand added to
    one and not the other fails here, not at a user's first call."""
    import argparse

    from harness import cli

    (sub,) = [a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == set(cli._HANDLERS)
