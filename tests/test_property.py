"""Property-based: no correct framework may ever fail, on any matmul-compatible shape.

Shapes come from `benchmarks.campaign.shape_pair` (K = 1, every 1-D form, zero-size dims,
broadcast batch dims up to 8-D with size-1 dims on either side, tiny, odd and long sizes),
values from the harness's own generator, gradients from each framework's real autodiff, and
the verdict from `harness.judge.judge`, as `verify` gives it. This is the bounded, seeded CI
profile; `python benchmarks/campaign.py --checks 200000` is the long one. The statistics'
own guarantees (a correctly rounded result, or the most biased result the bound's model
allows, is never flagged) are checked on the same shapes without any framework.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.campaign import (
    check_example,
    in_process,
    load_regressions,
    run_regression,
    shape_pair,
)
from harness.adapters import load
from harness.cases import Case, make_inputs, make_tangents
from harness.checks import check
from harness.dtypes import DTYPES, get
from harness.reference import reference
from harness.tolerance import C_OUT, bound, params
from tests.conftest import FRAMEWORKS, need

ROOT = Path(__file__).resolve().parent.parent

# Examples per framework: JAX compiles once per shape and dtype (~0.5 s), TensorFlow's eager
# second-order tapes cost ~0.2 s; numpy and torch take milliseconds.
EXAMPLES = {"numpy": 150, "torch": 80, "tensorflow": 25, "jax": 15}


@st.composite
def pairs(draw: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return shape_pair(lambda lo, hi: draw(st.integers(lo, hi)))


def profile(examples: int) -> Any:
    return settings(derandomize=True, max_examples=examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_correct_autodiff_never_fails_on_random_shapes(framework: str) -> None:
    need(framework)
    adapter = in_process(framework)
    cls = type(adapter)
    dtypes = [d for d in DTYPES if not cls.unsupported_reason("cpu", d)]

    @profile(EXAMPLES[framework])
    @given(pair=pairs(), dtype=st.sampled_from(dtypes), seed=st.integers(0, 2**16))
    def correct(pair: tuple[tuple[int, ...], tuple[int, ...]], dtype: str, seed: int) -> None:
        rows = check_example(adapter, cls, *pair, dtype, seed)
        bad = [f"{r.quantity} {r.status}: {r.reason}" for r in rows
               if r.status in ("fail", "error")]
        assert not bad, f"{framework} {dtype} {pair[0]} @ {pair[1]} seed {seed}: {bad}"

    correct()


def _judged(pair: tuple[tuple[int, ...], tuple[int, ...]], dtype: str, seed: int,
            make: Any) -> list[Any]:
    """check() of every quantity, `make(ref, slack, d)` standing in for the framework."""
    case, d = Case("p", *pair), get(dtype)
    ref = reference(make_inputs(case, d, seed), make_tangents(case, d, seed))
    out = []
    for q, value in ref.values.items():
        p = params(q, case.geometry, rounded_partials=True)
        allowed = bound(value, ref.scale[q], d, p)
        slack = np.maximum(allowed - C_OUT * d.u_out * np.abs(value), 0.0)
        got = make(value, slack, d).astype(d.numpy)
        out.append((q, check(q, got, value, ref.scale[q], d, p)))
    return out


@profile(300)
@given(pair=pairs(), dtype=st.sampled_from(list(DTYPES)), seed=st.integers(0, 2**16))
def test_correctly_rounded_results_are_never_flagged(
    pair: tuple[tuple[int, ...], tuple[int, ...]], dtype: str, seed: int,
) -> None:
    for q, o in _judged(pair, dtype, seed, lambda ref, slack, d: ref):
        assert o.status == "pass" and not o.biased, (q, o)


@profile(300)
@given(pair=pairs(), dtype=st.sampled_from(["float16", "bfloat16"]),
       seed=st.integers(0, 2**16), direction=st.sampled_from([-1.0, 1.0]))
def test_the_most_biased_result_the_model_allows_is_not_flagged(
    pair: tuple[tuple[int, ...], tuple[int, ...]], dtype: str, seed: int, direction: float,
) -> None:
    """Every element pushed by its whole slack the same way (all outward or all inward),
    then rounded: the worst correlated error the bound's model admits is never read as a
    bias. (Its per-element verdict is not the point: the full slack includes the bound's
    safety factor S_FACTOR, and a push across zero adds a rounding the bound covers only
    through that factor.)"""
    def push(ref: np.ndarray, slack: np.ndarray, d: Any) -> np.ndarray:
        return ref + direction * np.sign(ref) * slack * (1 - 2.0**-20)

    for q, o in _judged(pair, dtype, seed, push):
        assert not o.biased, (q, o)


def test_regression_config_is_valid_and_names_each_case_once() -> None:
    entries = load_regressions()
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)) and len(entries) >= 7
    assert all(e["why"] and e["quantities"] for e in entries)


@pytest.mark.parametrize("entry", load_regressions(), ids=lambda e: e["name"])
def test_regression_cases_pass(entry: dict[str, Any]) -> None:
    ran = False
    for framework in entry["frameworks"]:
        if framework not in FRAMEWORKS or not load(framework).installed():
            continue
        ran = True
        if entry.get("isolate"):
            _isolated(entry["name"], framework)
        else:
            assert run_regression(entry, framework) == []
    if not ran:
        pytest.skip(f"none of {entry['frameworks']} is installed")


def _isolated(name: str, framework: str) -> None:
    """A case that once crashed its framework, in a subprocess: a crash there is the
    framework's (reported with its last words), a fail is ours."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "campaign.py"), "--regression", name,
         "--frameworks", framework], capture_output=True, text=True, timeout=600, cwd=ROOT)
    if proc.returncode < 0:
        pytest.skip(f"{framework} crashed on {name} (signal {-proc.returncode}): "
                    f"{proc.stderr.strip().splitlines()[-3:]}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
