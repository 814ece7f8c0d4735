"""Facts with one home, and rows made in one place (issue 12)."""

from __future__ import annotations

import inspect

import pytest

from harness import cli, orchestrator, runfiles
from harness.adapters import BUILTIN, load
from harness.cases import Case, make_inputs, make_tangents
from harness.dtypes import DTYPES, get
from harness.judge import judge
from harness.plan import Cell
from harness.results import Row
from tests.conftest import installed


def test_jobs_has_one_default() -> None:
    """`verify --jobs`, `make run` (cli.verify), the Runner and the library call agree."""
    default = orchestrator.DEFAULT_JOBS
    assert 1 <= default <= 4
    assert cli._parser().parse_args(["verify"]).jobs == default
    for fn in (cli.verify, orchestrator.verify, orchestrator.Runner):
        assert inspect.signature(fn).parameters["jobs"].default == default, fn


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_the_judge_puts_the_flags_on_every_row(framework: str) -> None:
    """Checked, skipped and adjoint rows alike carry the worker's flags: nothing edits a row
    after the judge made it."""
    if not installed(framework):
        pytest.skip(f"{framework} is not installed")
    adapter = load(framework)
    case, dtype = Case("small", (3, 4), (4, 5)), get("float32")
    out, errors = adapter().run_all(make_inputs(case, dtype, 0), make_tangents(case, dtype, 0),
                                    "cpu")
    rows = judge(Cell(framework, "pinned", "cpu", "float32", case), out, errors, adapter,
                 "ieee", "1", 0, flags="matmul=highest")
    assert [r.quantity for r in rows] == list(runfiles.QUANTITIES)
    assert {r.precision_flags for r in rows} == {"matmul=highest"}
    assert all(r.status in ("pass", "skip") for r in rows), rows
    if framework == "torch":  # its adjoint row is checked, not skipped
        assert {r.quantity: r.status for r in rows}["adjoint"] == "pass"


def test_adapters_draw_their_dtypes_from_the_one_list() -> None:
    for name in BUILTIN:
        dtypes = load(name).capabilities.dtypes
        assert set(dtypes) <= set(DTYPES), name
        assert list(dtypes) == [d for d in DTYPES if d in dtypes], name  # DTYPES' order


def test_a_row_label_is_the_reports() -> None:
    row = Row(framework="torch", device="gpu", dtype="float32", case="c", x_shape="1x1",
              w_shape="1x1", quantity="Y", status="pass", reason="", max_abs_err=0.0,
              ratio=0.0, k_eff=1, precision="tf32", framework_version="1",
              precision_mode="default")
    assert row.label == runfiles.label("torch", "gpu", "default") == "torch:gpu:default"
    assert runfiles.label("torch", "gpu") == "torch:gpu"
