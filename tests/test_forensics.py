"""Precision forensics: modes, effective bits, the bias test, known divergences, selftest."""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness import divergences, selftest
from harness.adapters import load
from harness.adapters.numpy import NumpyAdapter
from harness.cases import Case, Inputs, make_inputs, make_tangents
from harness.cli import main
from harness.config import ConfigError
from harness.dtypes import get
from harness.judge import judge
from harness.plan import Cell
from tests import wrong_adapters as wa
from tests.conftest import need

BIG = Case("square_64", (64, 64), (64, 64))


def _rows(adapter: Any, case: Case, dtype: str, compute: str = "ieee") -> dict[str, Any]:
    a = adapter()
    out, errors = a.run_all(make_inputs(case, get(dtype), 0),
                            make_tangents(case, get(dtype), 0), "cpu")
    rows = judge(Cell(adapter.name, "pinned", "cpu", dtype, case), out, errors, adapter,
                 compute, "", 0)
    return {r.quantity: r for r in rows}


def test_sub_ulp_scaling_in_float16_fails() -> None:
    """1e-3 is about 2 ulp of float16: caught per element here, and β measures it."""
    rows = _rows(wa.on(NumpyAdapter, wa.Scaled), BIG, "float16")
    assert rows["dX"].status == "fail"
    assert rows["dX"].bias == pytest.approx(1e-3, rel=0.2)
    assert rows["dW"].status == "pass" and abs(rows["dW"].bias) < 1e-4


class ScaledOnce(NumpyAdapter):
    """A kernel whose dX is off by 1e-3 before its single rounding to the dtype.

    (Scaling an already-rounded bfloat16 result by 1+1e-3 and rounding again changes
    nothing: 1e-3 is below half an ulp everywhere in bfloat16.)
    """

    name = "scaledonce"
    capabilities = load("torch").capabilities

    def run(self, inputs: Inputs, device: str) -> dict[str, np.ndarray]:
        from harness.reference import matmul_vjp

        wide = [a.astype(np.float64) for a in (inputs.x, inputs.w, inputs.g)]
        y, dx, dw = matmul_vjp(*wide)
        t = inputs.x.dtype
        return {"Y": y.astype(t), "dX": (dx * (1 + 1e-3)).astype(t), "dW": dw.astype(t)}

    def run_all(self, inputs: Inputs, tangents: Any, device: str) -> Any:
        return self.run(inputs, device), {}


def test_sub_ulp_scaling_in_bfloat16_fails_through_the_bias_test() -> None:
    """1e-3 is a quarter ulp of bfloat16: invisible per element, plain in β."""
    rows = _rows(ScaledOnce, BIG, "bfloat16")
    assert rows["dX"].status == "fail", rows["dX"]
    assert rows["dX"].reason.startswith("dX: systematic bias β=")
    assert rows["dX"].ratio <= 1  # the per-element test alone would have passed it
    assert rows["Y"].status == "pass" and rows["dW"].status == "pass"


class TF32Inputs(NumpyAdapter):
    """float32 products whose inputs were truncated to TF32's 10 mantissa bits."""

    name = "tf32sim"

    def run(self, inputs: Inputs, device: str) -> dict[str, np.ndarray]:
        def tf32(a: np.ndarray) -> np.ndarray:
            return (a.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)

        x, w, g = tf32(inputs.x), tf32(inputs.w), tf32(inputs.g)
        wide = [a.astype(np.float64) for a in (x, w, g)]
        from harness.reference import matmul_vjp

        return {q: v.astype(np.float32) for q, v in
                zip(("Y", "dX", "dW"), matmul_vjp(*wide), strict=True)}


def test_a_silent_tf32_downgrade_is_visible_as_effective_bits() -> None:
    as_ieee = _rows(TF32Inputs, BIG, "float32", compute="ieee")
    assert as_ieee["Y"].status == "fail"
    assert 9 < as_ieee["Y"].effective_bits < 13 and as_ieee["Y"].nominal_bits == 24
    assert "effective precision" in as_ieee["Y"].note and "ieee float32" in as_ieee["Y"].note
    # recorded honestly as TF32, the same numbers pass under TF32's tolerance, unflagged
    as_tf32 = _rows(TF32Inputs, BIG, "float32", compute="tf32")
    assert as_tf32["Y"].status == "pass" and as_tf32["Y"].note == ""


def test_full_precision_delivers_its_nominal_bits() -> None:
    rows = _rows(NumpyAdapter, BIG, "float32")
    assert rows["Y"].effective_bits > 22 and rows["Y"].note == ""


def test_tensorflow_eigen_bfloat16_truncation_is_a_known_divergence(  # type: ignore[no-untyped-def]
    tmp_path: Path, monkeypatch, capsys,
) -> None:
    """Real TF: with oneDNN off, its Eigen kernels round bf16 results toward zero."""
    need("tensorflow")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # inherited by the spawned worker
    cfg = tmp_path / "c.yaml"
    cfg.write_text("frameworks: [tensorflow]\ndevices: [cpu]\ndtypes: [bfloat16]\n"
                   "cases: [{name: square_64, x: [64, 64], w: [64, 64]}]\n")
    assert main(["verify", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 0
    y = next(r for r in csv.DictReader((tmp_path / "o" / "verify.csv").open())
             if r["quantity"] == "Y")
    assert y["status"] == "pass"
    assert y["note"].startswith("known divergence: Y: systematic bias β=-")
    assert "github.com/tensorflow/tensorflow" in y["note"]
    # without the entry the same run fails: the data file is what excuses it
    monkeypatch.setattr(divergences, "load", lambda path=None: ())
    assert main(["verify", "--config", str(cfg), "--out", str(tmp_path / "p")]) == 1
    assert "systematic bias" in capsys.readouterr().out


def test_precision_modes_are_an_axis(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    need("torch")
    need("jax")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("frameworks: [torch, jax]\ndevices: [cpu]\ndtypes: [float32]\n"
                   "precision: [pinned, default]\ncases: [{name: a, x: [5, 7], w: [7, 3]}]\n")
    assert main(["verify", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "torch:cpu " in out and "torch:cpu:default " in out
    rows = list(csv.DictReader((tmp_path / "o" / "verify.csv").open()))
    assert {r["precision_mode"] for r in rows} == {"pinned", "default"}
    assert {r["precision"] for r in rows} == {"ieee"}  # both compute full float32 on a CPU
    flags = {(r["framework"], r["precision_mode"]): r["precision_flags"] for r in rows}
    # what each framework was set to, as it says itself: pinned forces, default leaves
    assert "jax_default_matmul_precision=highest" in flags[("jax", "pinned")]
    assert "jax_default_matmul_precision=default" in flags[("jax", "default")]
    assert "cuda.matmul.allow_tf32=0" in flags[("torch", "pinned")]


def test_unknown_precision_mode_exits_2(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("precision: [fast]\ncases: [{name: a, x: [2], w: [2]}]\n")
    assert main(["verify", "--config", str(cfg)]) == 2
    assert "precision: unknown value 'fast'; allowed: pinned, default" in capsys.readouterr().err


@pytest.mark.parametrize(("entry", "message"), [
    ("- {framework: x}\n", "expected the keys framework, device, dtype"),
    ("- {framework: a, device: b, dtype: c, quantity: d, check: bias, match: '', reason: r, "
     "link: 'http://x'}\n", "link must be an https:// URL"),
    ("- {framework: a, device: b, dtype: c, quantity: d, check: vibes, match: '', reason: r, "
     "link: 'https://x'}\n", "check 'vibes'; allowed: bias, error"),
])
def test_known_divergence_file_is_validated(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "k.yaml"
    path.write_text(entry)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        divergences.load(path)


def test_shipped_known_divergences_are_valid() -> None:
    entries = divergences.load()
    assert entries and all(e.link.startswith("https://github.com/") for e in entries)


def test_selftest_catches_every_bug_it_must_and_flags_nothing_correct() -> None:
    results = selftest.sensitivity(trials=3)
    assert selftest.verdict(results) == []
    control = [r for r in results if r.bug == "none (control)"]
    assert control and all(r.detected == 0 for r in control)
    scaled = {r.dtype: r for r in results if r.bug.startswith("scaling")}
    assert scaled["float16"].detected == 3 and scaled["float32"].detected == 3


def test_selftest_verdict_reports_a_blind_spot() -> None:
    results = selftest.sensitivity(trials=2)
    blind = [r if r.bug != "missing transpose" or r.dtype != "float32"
             else dataclasses.replace(r, detected=1) for r in results]
    case = next(r.case for r in blind if r.bug == "missing transpose" and r.dtype == "float32")
    assert selftest.verdict(blind) == [f"missing transpose in float32 at {case} caught only "
                                       "1/2 times; the checker must catch it every time"]


def test_finite_differences_validate_the_reference_and_catch_a_broken_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = Case("small", (2, 3, 4), (4, 5))
    assert all(r.passed for c in (False, True) for r in selftest.finite_differences(case, c))
    from harness import reference

    def no_conjugation(x: np.ndarray, w: np.ndarray, g: np.ndarray):  # type: ignore[no-untyped-def]
        y, dx, dw = reference.matmul_vjp(x, w, g)
        return y, np.conj(dx), dw  # the classic bug, in the reference itself

    monkeypatch.setattr(selftest, "matmul_vjp", no_conjugation)
    broken = {(r.dtype, r.quantity): r.passed for r in selftest.finite_differences(case, True)}
    assert broken == {("complex128", "dX"): False, ("complex128", "dW"): True}


def test_selftest_command_writes_tables(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["selftest", "--trials", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\nmissing conjugation +n/a +n/a +n/a +n/a +2/2 +2/2\n", out)
    assert re.search(r"\nnone \(control\), Y of K = 1 +0/2 +0/2 +0/2 +0/2 +0/2 +0/2\n", out)
    assert "gradients agree" in out
    rows = list(csv.DictReader((tmp_path / "selftest.csv").open()))
    assert len(rows) == len(selftest.BUGS) * 6
    assert (tmp_path / "selftest_fd.csv").is_file()


def test_second_order_and_forward_mode_catch_their_own_bugs() -> None:
    need("torch")

    class WrongJVP(wa.Wrapped):
        base = load("torch")
        capabilities = load("torch").capabilities

        def jvp(self, x: Any, w: Any, tx: Any, tw: Any) -> tuple[Any, Any]:
            y, dy = self.inner.jvp(x, w, tx, tw)
            return y, dy - self.inner.torch.matmul(x, tw)  # drops the X·tW term

    rows = _rows(WrongJVP, Case("c", (5, 7), (7, 3)), "float64")
    assert rows["dY"].status == "fail" and rows["dY"].reason.startswith("dY:")
    assert rows["adjoint"].status == "fail"  # the JVP no longer matches the VJP
