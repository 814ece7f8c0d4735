"""The reference formulas: numpy's 1-D and broadcast rules, and finite differences."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from harness.cases import Case, ShapeError, geometry, make_inputs
from harness.dtypes import DTYPES, get
from harness.reference import matmul_vjp, reference, sum_to_shape

SHAPES = [
    ((1, 3), (3, 4)),
    ((7,), (7, 5)),
    ((5, 7), (7,)),
    ((7,), (7,)),
    ((3, 5, 7), (7,)),
    ((7,), (3, 7, 5)),
    ((2, 1, 5, 6), (1, 3, 6, 4)),
    ((4, 5, 6), (6, 3)),
    ((5, 6), (4, 6, 3)),
    ((3, 0), (0, 4)),
    ((0, 3, 5), (5, 4)),
]


@pytest.mark.parametrize(("xs", "ws"), SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_shapes_follow_numpy(xs: tuple[int, ...], ws: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    y_np = np.matmul(x, w)
    assert geometry(xs, ws).y_shape == y_np.shape
    y, dx, dw = matmul_vjp(x, w, np.ones_like(y_np))
    assert (y.shape, dx.shape, dw.shape) == (y_np.shape, xs, ws)


@pytest.mark.parametrize(("xs", "ws"), [s for s in SHAPES if 0 not in s[0] + s[1]][:8],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_gradients_match_central_differences(
    xs: tuple[int, ...], ws: tuple[int, ...], complex_: bool
) -> None:
    """dX = dL/dRe X + i dL/dIm X of L = Re sum(conj(G) * Y): the torch/TF convention."""
    rng = np.random.default_rng(1)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        a = rng.standard_normal(shape)
        return a + 1j * rng.standard_normal(shape) if complex_ else a

    x, w = draw(xs), draw(ws)
    g = draw(np.matmul(x, w).shape)

    def loss(x_: np.ndarray, w_: np.ndarray) -> float:
        return float(np.real(np.sum(np.conj(g) * np.matmul(x_, w_))))

    _, dx, dw = matmul_vjp(x, w, g)
    for arr, grad, is_x in ((x, dx, True), (w, dw, False)):
        fd = np.zeros_like(grad)
        steps = (1.0, 1j) if complex_ else (1.0,)
        for idx in itertools.product(*map(range, arr.shape)):
            for step in steps:
                e = np.zeros_like(arr)
                e[idx] = step * 1e-3
                lp = loss(arr + e, w) if is_x else loss(x, arr + e)
                lm = loss(arr - e, w) if is_x else loss(x, arr - e)
                fd[idx] += step * (lp - lm) / 2e-3  # L is linear: exact up to rounding
        np.testing.assert_allclose(grad, fd, rtol=1e-9, atol=1e-9)


def test_broadcast_gradient_is_summed_per_operand_shape() -> None:
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 1, 5, 6)), rng.standard_normal((1, 3, 6, 4))
    g = rng.standard_normal((2, 3, 5, 4))
    _, dx, dw = matmul_vjp(x, w, g)
    dx_loop = np.zeros_like(x)
    dw_loop = np.zeros_like(w)
    for i, j in itertools.product(range(2), range(3)):
        dx_loop[i, 0] += g[i, j] @ w[0, j].T
        dw_loop[0, j] += x[i, 0].T @ g[i, j]
    np.testing.assert_allclose(dx, dx_loop, rtol=1e-12)
    np.testing.assert_allclose(dw, dw_loop, rtol=1e-12)


def test_sum_to_shape_keeps_size_one_dims() -> None:
    a = np.ones((4, 2, 3, 5))
    assert sum_to_shape(a, (1, 3, 5)).shape == (1, 3, 5)
    assert float(sum_to_shape(a, (1, 3, 5)).max()) == 8.0
    assert sum_to_shape(a, (2, 1, 5)).shape == (2, 1, 5)


@pytest.mark.parametrize(("xs", "ws", "zero"), [
    ((3, 0), (0, 4), "Y"), ((0, 5), (5, 4), "dW"), ((3, 5), (5, 0), "dX"),
    ((0, 3, 5), (5, 4), "dW"),
])
def test_zero_size_dims_give_exact_zeros(xs: tuple[int, ...], ws: tuple[int, ...],
                                         zero: str) -> None:
    ref = reference(make_inputs(Case("z", xs, ws), get("float32"), 0))
    assert ref.values[zero].size > 0
    assert not np.any(ref.values[zero])


def test_reference_uses_the_rounded_inputs() -> None:
    """The reference sees exactly the float16 values the framework sees."""
    inp = make_inputs(Case("c", (4, 5), (5, 3)), get("float16"), 0)
    ref = reference(inp)
    exact = inp.x.astype(np.float64) @ inp.w.astype(np.float64)
    assert np.array_equal(ref.values["Y"], exact)


def test_inputs_are_deterministic_zero_mean_and_in_dtype() -> None:
    case = Case("big", (64, 64), (64, 64))
    for dt in DTYPES.values():
        a, b = make_inputs(case, dt, 7), make_inputs(case, dt, 7)
        assert a.x.dtype == dt.numpy and a.g.shape == (64, 64)
        assert np.array_equal(a.x, b.x) and np.array_equal(a.g, b.g)
        assert abs(complex(np.mean(a.x.astype(np.complex128)))) < 0.1
    other = make_inputs(case, get("float32"), 8)
    assert not np.array_equal(other.x, make_inputs(case, get("float32"), 7).x)


@pytest.mark.parametrize(("xs", "ws", "msg"), [
    ((), (3,), "0-D operand"),
    ((3, 4), (5, 2), "core dims do not match"),
    ((2, 3, 4), (3, 4, 2), "batch dims do not broadcast"),
])
def test_shapes_numpy_rejects_are_rejected(xs: tuple[int, ...], ws: tuple[int, ...],
                                           msg: str) -> None:
    with pytest.raises(ShapeError, match=msg):
        geometry(xs, ws)
