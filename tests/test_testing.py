"""harness.testing, as a kernel author uses it: a hand-written matmul with a planted bug is
caught with the verdict in the message, and the correct version passes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from harness.adapters.numpy import NumpyAdapter
from harness.testing import NumpyImpl, TorchFunction, assert_matmul_grads, matrix_cases
from tests.conftest import need
from tests.fake_plugin import WrongTransposePlugin

pytest_plugins = ["harness.pytest_plugin"]

VERDICT = (r"dW: \|err\|=\S+ at \(\d+, \d+\) is \S+x the allowed \S+ "
           r"\(got \S+, expected \S+\)")


def numpy_backward(x: np.ndarray, w: np.ndarray, g: np.ndarray,
                   scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The user's hand-written 2-D backward under test (not a reference)."""
    return g @ w.conj().T, (x.conj().T @ g) * x.dtype.type(scale)


def test_correct_numpy_callables_pass_and_rows_come_back() -> None:
    rows = assert_matmul_grads(NumpyImpl(np.matmul, numpy_backward), cases=matrix_cases(),
                               dtypes=["float32", "complex64", "float64"])
    assert {r.quantity for r in rows} == {"Y", "dX", "dW", "dY", "adjoint", "d2W"}
    assert {r.status for r in rows if r.quantity in ("Y", "dX", "dW")} == {"pass"}
    assert len({(r.dtype, r.case) for r in rows}) == 3 * len(matrix_cases())


def test_a_planted_bug_in_numpy_callables_raises_the_verdict() -> None:
    bad = NumpyImpl(np.matmul, lambda x, w, g: numpy_backward(x, w, g, 1 + 2**-10))
    with pytest.raises(AssertionError, match=r"numpy-impl cpu float32 square "
                                             r"\(16x16 @ 16x16\) fail: " + VERDICT):
        assert_matmul_grads(bad, dtypes=["float32"], cases=["square", "nonsquare"])


def test_adapters_are_checked_with_every_quantity_they_declare() -> None:
    rows = assert_matmul_grads(NumpyAdapter, dtypes=["float64", "bfloat16"],
                               cases=["broadcast_both", ("mine", (3, 4), (4,))])
    assert {r.status for r in rows if r.dtype == "bfloat16"} == {"skip"}  # declared gap
    assert {r.status for r in rows if r.dtype == "float64"} >= {"pass"}
    with pytest.raises(AssertionError, match=r"wrongtranspose cpu float32 square .* fail: dX"):
        assert_matmul_grads(WrongTransposePlugin, dtypes=["float32"], cases=["square"])


def test_an_exception_in_the_implementation_is_an_error_verdict() -> None:
    def broken(x: np.ndarray, w: np.ndarray, g: np.ndarray) -> Any:
        raise ValueError("kernel launch failed")

    with pytest.raises(AssertionError, match="error: ValueError: kernel launch failed"):
        assert_matmul_grads(NumpyImpl(np.matmul, broken), cases=["square"])


def test_bad_arguments_are_named() -> None:
    with pytest.raises(KeyError, match="unknown dtype 'float8'"):
        assert_matmul_grads(NumpyAdapter, dtypes=["float8"])
    with pytest.raises(KeyError, match="unknown case 'sqaure'; default cases: "):
        assert_matmul_grads(NumpyAdapter, cases=["sqaure"])
    with pytest.raises(TypeError, match="received ufunc"):
        assert_matmul_grads(np.matmul)  # type: ignore[arg-type]


# --- the README's example: a hand-written torch.autograd.Function -------------------------

def make_matmul(planted_bug: bool) -> Any:
    import torch

    class MyMatmul(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, w: Any) -> Any:
            ctx.save_for_backward(x, w)
            return x @ w

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            x, w = ctx.saved_tensors
            dw = x.mH @ g
            if planted_bug:  # a stale scale factor left in the weight gradient
                dw = dw * (1 + 2**-10)
            return g @ w.mH, dw

    return MyMatmul.apply


def test_readme_example_torch_function(matmul_grads: Any) -> None:
    need("torch")
    rows = matmul_grads(TorchFunction(make_matmul(False)), cases=matrix_cases(),
                        dtypes=["float32", "float64", "complex64"])
    assert rows and {r.status for r in rows if r.quantity in ("Y", "dX", "dW")} == {"pass"}
    with pytest.raises(AssertionError, match="torch-function cpu float32 .* fail: " + VERDICT):
        matmul_grads(TorchFunction(make_matmul(True)), cases=matrix_cases(),
                     dtypes=["float32"])
