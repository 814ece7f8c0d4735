"""The tolerance and the checker: every way a result can be wrong is a named fail."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.cases import Case, geometry, make_inputs
from harness.checks import check, rounding_margins
from harness.dtypes import get
from harness.reference import reference
from harness.tolerance import bound, params, phi


def _ref(case: Case, dtype: str):  # type: ignore[no-untyped-def]
    return reference(make_inputs(case, get(dtype), 0))


def _check(q: str, got: np.ndarray, case: Case, dtype: str, **kw):  # type: ignore[no-untyped-def]
    ref = _ref(case, dtype)
    p = params(q, case.geometry, rounded_partials=False)
    return check(q, got, ref.values[q], ref.scale[q], get(dtype), p, **kw)


CASE = Case("c", (5, 7), (7, 3))


def test_k_eff_per_quantity() -> None:
    geo = geometry((2, 1, 5, 6), (1, 3, 6, 4))
    assert params("Y", geo, rounded_partials=False).k_eff == 6
    assert params("dX", geo, rounded_partials=False).k_eff == 4 * 3  # N x X's broadcast
    assert params("dW", geo, rounded_partials=True).k_eff == 5 * 2  # M x W's broadcast
    assert params("dW", geo, rounded_partials=True).b_red == 2
    assert params("dW", geo, rounded_partials=False).b_red == 1


def test_phi_is_sqrt_k_for_zero_mean_and_k_otherwise() -> None:
    assert phi(4, complex_=False) == 4
    assert phi(10_000, complex_=False) == 400
    assert phi(10_000, complex_=False, zero_mean=False) == 10_000
    assert phi(3, complex_=True) == pytest.approx(math.sqrt(2) * phi(7, complex_=False))


def test_bound_grows_with_tf32_mode() -> None:
    ref = _ref(CASE, "float32")
    p = params("Y", CASE.geometry, rounded_partials=False)
    ieee = bound(ref.values["Y"], ref.scale["Y"], get("float32"), p, "ieee")
    tf32 = bound(ref.values["Y"], ref.scale["Y"], get("float32"), p, "tf32")
    assert np.all(tf32 > 100 * ieee)


def test_rounded_reference_passes_with_small_ratio() -> None:
    for dtype in ("float16", "bfloat16", "float32", "complex64"):
        ref = _ref(CASE, dtype)
        got = ref.values["dX"].astype(get(dtype).numpy)
        o = _check("dX", got, CASE, dtype)
        assert o.status == "pass", o.reason
        assert 0 <= o.ratio <= 1 / 3 + 1e-9  # one rounding is c_out=3 times smaller


def test_wrong_shape_is_a_fail_naming_both_shapes() -> None:
    got = np.zeros((3, 7), dtype=np.float32)
    o = _check("dX", got, CASE, "float32")
    assert o.status == "fail"
    assert o.reason == "dX: shape (3, 7), expected (5, 7)"


def test_wrong_dtype_is_a_fail() -> None:
    got = _ref(CASE, "float32").values["dW"]  # float64 instead of float32
    o = _check("dW", got, CASE, "float32")
    assert o.status == "fail" and "dtype float64, expected float32" in o.reason


def test_nan_where_reference_is_finite_is_a_fail() -> None:
    got = _ref(CASE, "float64").values["Y"].copy()
    got[2, 1] = np.nan
    o = _check("Y", got, CASE, "float64")
    assert o.status == "fail"
    assert "NaN mismatch at 1 element(s), first at (2, 1)" in o.reason


def test_inf_is_a_fail() -> None:
    got = _ref(CASE, "float64").values["Y"].copy()
    got[0, 0] = -np.inf
    o = _check("Y", got, CASE, "float64")
    assert o.status == "fail" and "Inf mismatch" in o.reason


def test_nan_in_reference_must_be_matched_exactly() -> None:
    ref = np.array([np.nan, 1.0, np.inf])
    scale = np.ones(3)
    p = params("Y", CASE.geometry, rounded_partials=False)
    ok = check("Y", np.array([np.nan, 1.0, np.inf]), ref, scale, get("float64"), p)
    assert ok.status == "pass"
    bad = check("Y", np.array([0.0, 1.0, np.inf]), ref, scale, get("float64"), p)
    assert bad.status == "fail" and "NaN mismatch" in bad.reason
    neg = check("Y", np.array([np.nan, 1.0, -np.inf]), ref, scale, get("float64"), p)
    assert neg.status == "fail" and "Inf mismatch" in neg.reason


def test_input_returned_unchanged_is_a_fail() -> None:
    case = Case("sq", (6, 6), (6, 6))
    inp = make_inputs(case, get("float32"), 0)
    o = _check("dX", inp.x, case, "float32")  # "gradient" = the input itself
    assert o.status == "fail" and "x the allowed" in o.reason


def test_zero_size_result_must_be_exact_zero() -> None:
    case = Case("k0", (3, 0), (0, 4))
    got = np.zeros((3, 4), dtype=np.float32)
    assert _check("Y", got, case, "float32").status == "pass"
    got[1, 1] = 1e-30
    o = _check("Y", got, case, "float32")
    assert o.status == "fail" and o.ratio == float("inf")


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
def test_relative_error_of_1e_minus_3_fails_in_single_and_double(dtype: str) -> None:
    got = (_ref(CASE, dtype).values["dX"] * (1 + 1e-3)).astype(get(dtype).numpy)
    o = _check("dX", got, CASE, dtype)
    assert o.status == "fail" and o.ratio > 10


def _trunc_bf16(a: np.ndarray) -> np.ndarray:
    """Round toward zero to bfloat16 (TensorFlow's Eigen CPU kernels): biased by design."""
    f = a.astype(np.float32)
    return (f.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32).astype(
        get("bfloat16").numpy)


def test_margins_are_exact_rounding_intervals() -> None:
    """Anything closer to ref than its margin rounds to q; just beyond, it need not."""
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(50_000) * np.exp(rng.uniform(-20, 10, 50_000))
    d = get("float16")
    q, margin, _ = rounding_margins(ref, d)
    assert np.array_equal(ref.astype(np.float16).astype(np.float64), q)
    for f in (-0.999, 0.999):
        assert np.array_equal((ref + f * margin).astype(np.float16).astype(np.float64), q)
    beyond = (ref + 1.001 * margin + 1e-300).astype(np.float16).astype(np.float64)
    below = (ref - 1.001 * margin - 1e-300).astype(np.float16).astype(np.float64)
    assert np.mean((beyond != q) | (below != q)) > 0.99


def test_a_correctly_rounded_outer_product_has_no_room_for_bias() -> None:
    """K = 1 (the issue's false failure): one exact product per element, so a correct
    kernel returns exactly RN(ref); β₀ is whatever it is, and β must equal it."""
    case = Case("outer", (8, 7, 1, 3, 1), (7, 1, 1))
    ref = _ref(case, "bfloat16")
    o = _check("Y", ref.values["Y"].astype(get("bfloat16").numpy), case, "bfloat16")
    assert o.status == "pass" and o.bias == o.bias_null and not o.biased
    assert o.bias_limit < 1e-3  # only exact ties of the 16-bit products sit on a boundary


def test_round_toward_zero_is_flagged_and_rounded_partials_leave_it_silent() -> None:
    case = Case("sq", (64, 64), (64, 64))
    ref = _ref(case, "bfloat16").values["Y"]
    o = _check("Y", _trunc_bf16(ref), case, "bfloat16")
    assert o.status == "pass" and o.biased and o.bias < o.bias_null
    # reduced from 64 rounded partials: the model allows far more than any sub-ulp bias
    wide = Case("bcast", (4, 4, 4, 16, 16), (16, 16))
    r = _ref(wide, "bfloat16")
    p = params("dW", wide.geometry, rounded_partials=True)
    got = _trunc_bf16(r.values["dW"])
    o = check("dW", got, r.values["dW"], r.scale["dW"], get("bfloat16"), p)
    assert o.bias_limit > 1e-2 and not o.biased


def test_a_result_within_its_bound_never_falls_below_the_bits_floor() -> None:
    ref = _ref(CASE, "float32")
    p = params("Y", CASE.geometry, rounded_partials=False)
    allowed = bound(ref.values["Y"], ref.scale["Y"], get("float32"), p)
    worst = (ref.values["Y"] + 0.9 * allowed).astype(np.float32)
    o = _check("Y", worst, CASE, "float32")
    assert o.status == "pass" and o.effective_bits >= o.bits_floor > 15
