"""The conformance suite, applied to every registered adapter (built-ins and plugins)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from harness.adapters import Adapter, load, registry
from harness.cases import Case, make_inputs, make_tangents
from harness.dtypes import COMPUTE_U_IN, DEVICES, DTYPES, get
from harness.judge import judge, quantities
from harness.plan import Cell

NAMES = sorted(registry())
SMALL = Case("conformance", (2, 3, 4), (4, 5))


@functools.cache
def instance(name: str) -> Adapter:
    cls = load(name)
    if not cls.installed():
        pytest.skip(f"{cls.module} is not installed: {cls.install_hint}")
    return cls()


def supported(name: str) -> list[str]:
    return [d for d in DTYPES if load(name).unsupported_reason("cpu", d) is None]


@pytest.mark.parametrize("name", NAMES)
def test_capabilities_are_valid_data(name: str) -> None:
    cls = load(name)
    assert cls.name == name
    caps = cls.capabilities
    assert set(caps.devices) <= set(DEVICES) and "cpu" in caps.devices
    assert set(caps.dtypes) <= set(DTYPES) and caps.dtypes
    for dtype, why in caps.unsupported:
        assert dtype in DTYPES and why
        assert cls.unsupported_reason("cpu", dtype) == why
    for device in DEVICES:
        if device not in caps.devices:
            assert cls.unsupported_reason(device, "float32")
    assert "pip install" in cls.install_hint


@pytest.mark.parametrize("name", NAMES)
def test_instance_reports_version_threads_and_precision(name: str) -> None:
    a = instance(name)
    assert isinstance(a.version(), str) and a.version()
    assert a.threads() >= 1
    assert a.device_reason("cpu") is None
    for dtype in supported(name):
        assert a.precision("cpu", dtype) in COMPUTE_U_IN


@pytest.mark.parametrize("name", NAMES)
def test_gpu_is_used_or_skipped_with_a_reason(name: str) -> None:
    a = instance(name)
    if "gpu" not in load(name).capabilities.devices:
        pytest.skip(f"{name} has no GPU backend")
    reason = a.device_reason("gpu")
    if reason is not None:
        assert isinstance(reason, str) and "GPU" in reason
        pytest.skip(reason)
    out = a.run(make_inputs(SMALL, get("float32"), 0), "gpu")
    assert a.precision("gpu", "float32") == "ieee"  # pinned: no TF32
    assert out["dX"].shape == SMALL.x


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_keeps_values_and_dtype(name: str) -> None:
    a = instance(name)
    for dtype in supported(name):
        for shape in ((3, 4), (7,), ()):
            arr = np.asarray(np.arange(np.prod(shape)).reshape(shape) - 2.5).astype(
                get(dtype).numpy
            )
            back = a.to_numpy(a.to_device(arr, "cpu"))
            assert back.dtype == arr.dtype and back.shape == arr.shape, (dtype, shape)
            assert np.array_equal(back, arr)


@pytest.mark.parametrize("name", NAMES)
def test_run_is_correct_in_every_supported_dtype(name: str) -> None:
    a = instance(name)
    wanted = quantities(load(name))
    for dtype in supported(name):
        out, errors = a.run_all(make_inputs(SMALL, get(dtype), 0),
                                make_tangents(SMALL, get(dtype), 0), "cpu")
        assert errors == {}
        rows = judge(Cell(name, "pinned", "cpu", dtype, SMALL), out, errors, load(name),
                     "ieee", "", 0)
        expected = ["skip" if wanted[q] else "pass" for q in wanted]
        assert [r.status for r in rows] == expected, rows


@pytest.mark.parametrize("name", NAMES)
def test_pullback_can_be_called_repeatedly(name: str) -> None:
    a = instance(name)
    inp = make_inputs(SMALL, get("float64"), 0)
    x, w, g = (a.to_device(v, "cpu") for v in (inp.x, inp.w, inp.g))
    y, f = a.pullback(x, w)
    first, second = f(g), f(g)
    for u, v in zip(first, second, strict=True):
        assert np.array_equal(a.to_numpy(u), a.to_numpy(v))
    assert np.array_equal(a.to_numpy(y), a.to_numpy(a.forward(x, w)))


@pytest.mark.parametrize("name", NAMES)
def test_jvp_matches_the_product_rule(name: str) -> None:
    a = instance(name)
    if not load(name).capabilities.forward_mode:
        with pytest.raises(NotImplementedError):
            a.jvp(*(a.to_device(np.ones((2, 2)), "cpu") for _ in range(4)))
        return
    for dtype in (d for d in ("float64", "complex128") if d in supported(name)):
        inp = make_inputs(SMALL, get(dtype), 0)
        tx, tw = make_tangents(SMALL, get(dtype), 0).tx, make_tangents(SMALL, get(dtype), 0).tw
        dev = [a.to_device(v, "cpu") for v in (inp.x, inp.w, tx, tw)]
        _, dy = a.jvp(*dev)
        expected = tx @ inp.w + inp.x @ tw
        np.testing.assert_allclose(a.to_numpy(dy), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_second_order_matches_the_closed_form(name: str) -> None:
    """d/dW Re⟨dX, V⟩ = Vᴴ·G, in the same convention as dW (real and complex)."""
    a = instance(name)
    if not load(name).capabilities.second_order:
        with pytest.raises(NotImplementedError):
            a.second_order(*(a.to_device(np.ones((2, 2)), "cpu") for _ in range(4)))
        return
    from harness.reference import matmul_vjp

    for case in (SMALL, Case("bcast", (2, 1, 3, 4), (1, 3, 4, 5)), Case("vec", (4,), (4, 5))):
        for dtype in (d for d in ("float64", "complex128") if d in supported(name)):
            inp, t = make_inputs(case, get(dtype), 0), make_tangents(case, get(dtype), 0)
            got = a.run_second_order(inp, t, "cpu")
            np.testing.assert_allclose(got, matmul_vjp(t.v, inp.w, inp.g)[2], rtol=1e-12,
                                       atol=1e-12)
