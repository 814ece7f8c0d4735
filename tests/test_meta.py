"""Meta-tests: the checker must catch deliberately wrong gradients.

docs/numerics.md: structural bugs (missing transpose on a square W, batch-0-only or unreduced
broadcast dW, missing conjugation) are visible per element in every dtype; a 1e-3 relative
scaling is visible per element in float32/float64/complex64/complex128 but sits below one
ulp of float16/bfloat16 (it needs the aggregate bias statistic there).
"""

from __future__ import annotations

import pytest

from harness.adapters import Adapter, load
from harness.cases import Case, make_inputs, make_tangents
from harness.dtypes import DTYPES, get
from harness.judge import judge
from harness.plan import Cell
from tests import wrong_adapters as wa
from tests.conftest import installed

SQUARE = Case("square", (16, 16), (16, 16))
BROADCAST_W = Case("broadcast_w", (4, 5, 6), (6, 3))
CASE_FOR = {
    wa.MissingTranspose: SQUARE,
    wa.BatchZeroOnly: BROADCAST_W,
    wa.Unreduced: BROADCAST_W,
    wa.MissingConjugation: SQUARE,
    wa.Scaled: SQUARE,
}
BASES = [b for b in ("numpy", "torch") if installed(b)]


def visible(bug: type[wa.Wrapped], dtype: str) -> bool:
    if bug is wa.MissingConjugation:
        return dtype.startswith("complex")  # conj is the identity on real numbers
    if bug is wa.Scaled:
        return dtype not in ("float16", "bfloat16")
    return True


def _rows(adapter: type[Adapter], case: Case, dtype: str):  # type: ignore[no-untyped-def]
    a = adapter()
    out, errors = a.run_all(make_inputs(case, get(dtype), 0),
                            make_tangents(case, get(dtype), 0), "cpu")
    cell = Cell(adapter.name, "pinned", "cpu", dtype, case)
    rows = judge(cell, out, errors, adapter, "ieee", a.version(), 0)
    return {r.quantity: r for r in rows}


PARAMS = [
    pytest.param(base, bug, dtype, id=f"{bug.__name__}-{base}-{dtype}")
    for base in BASES
    for bug in wa.BUGS
    for dtype in DTYPES
    if visible(bug, dtype)
]


@pytest.mark.parametrize(("base", "bug", "dtype"), PARAMS)
def test_planted_bug_is_reported_as_fail(base: str, bug: type[wa.Wrapped], dtype: str) -> None:
    base_cls = load(base)
    if base_cls.unsupported_reason("cpu", dtype):
        pytest.skip(base_cls.unsupported_reason("cpu", dtype) or "")
    case = CASE_FOR[bug]
    rows = _rows(wa.on(base_cls, bug), case, dtype)
    assert rows[bug.bug].status == "fail", rows[bug.bug]
    assert rows[bug.bug].reason.startswith(f"{bug.bug}:")
    # the bug is confined to one gradient: the forward product, the other gradient, and
    # the forward-mode and second-order results (computed on their own) still pass
    untouched = {"Y", "dX", "dW", "dY", "d2W"} - {bug.bug}
    assert all(rows[q].status in ("pass", "skip") for q in untouched), rows


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_the_unbroken_wrapper_passes(base: str, dtype: str) -> None:
    """Without a bug the same wrapper passes: the failures above are the bugs' doing."""
    base_cls = load(base)
    if base_cls.unsupported_reason("cpu", dtype):
        pytest.skip(base_cls.unsupported_reason("cpu", dtype) or "")
    for case in (SQUARE, BROADCAST_W):
        rows = _rows(wa.on(base_cls, wa.Wrapped), case, dtype)
        assert all(r.status in ("pass", "skip") for r in rows.values()), rows
        assert all(rows[q].status == "pass" for q in ("Y", "dX", "dW"))


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
@pytest.mark.parametrize("bug", [wa.MissingTranspose, wa.BatchZeroOnly, wa.MissingConjugation])
def test_adjoint_identity_catches_gradient_bugs_without_the_formulas(
    bug: type[wa.Wrapped],
) -> None:
    """⟨G, J·v⟩ = ⟨Jᴴ·G, v⟩ from torch's own JVP and the planted VJP: no reference used."""
    rows = _rows(wa.on(load("torch"), bug), CASE_FOR[bug], "complex128")
    assert rows["adjoint"].status == "fail", rows["adjoint"]
    assert rows["adjoint"].reason.startswith("adjoint: ⟨G, J·v⟩=")
    assert _rows(wa.on(load("torch"), wa.Wrapped), CASE_FOR[bug], "complex128")[
        "adjoint"].status == "pass"


def test_unreduced_gradient_fails_on_shape() -> None:
    rows = _rows(wa.on(load("numpy"), wa.Unreduced), BROADCAST_W, "float32")
    assert rows["dW"].reason == "dW: shape (4, 6, 3), expected (6, 3)"
