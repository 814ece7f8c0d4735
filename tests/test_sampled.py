"""The sampled check and the shared references: what large cases are checked with.

The sampled check must pass every correct result the full check passes, and catch the
planted bugs: structural ones (seen by the projections of every element) and a 1e-3
scaling (seen per element on the sampled rows and columns) in the dtypes where the full
check sees it.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from harness import reference as R
from harness.adapters import load
from harness.cases import Case, make_inputs, make_tangents
from harness.config import ConfigError, parse
from harness.dtypes import DTYPES, get
from harness.judge import judge
from harness.plan import Cell
from harness.refcache import References
from harness.results import COLUMNS, read_csv
from harness.sampled import (
    AUTO_FULL_MAX_MACS,
    TILES,
    check_sampled,
    lines,
    resolve,
    weighted_bound,
)
from harness.tolerance import bound, params
from tests import wrong_adapters as wa
from tests.conftest import installed

PRODUCTS = ("Y", "dX", "dW", "dY", "d2W")


def _random_cases(n: int, seed: int, most: int = 300) -> list[Case]:
    """Shapes of every kind (1-D, batched, broadcast on either side), some past a tile."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m, k, nn = (int(v) for v in rng.integers(1, most, 3))
        kind = i % 5
        if kind == 0:
            x, w = (m, k), (k, nn)
        elif kind == 1:
            x, w = (int(rng.integers(2, 4)), m, k), (k, nn)
        elif kind == 2:
            x, w = (2, 1, m, k), (1, 3, k, nn)
        elif kind == 3:
            x, w = (k,), (int(rng.integers(2, 4)), k, nn)
        else:
            x, w = (int(rng.integers(2, 4)), m, k), (k,)
        out.append(Case(f"r{seed}-{i}", x, w))
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 17, 100, 129, 1000, 8193])
def test_lines_cover_tile_edges_and_the_last_partial_tile(n: int) -> None:
    picked = lines(n, np.random.default_rng(n))
    assert list(picked) == sorted(set(picked)) and all(0 <= i < n for i in picked)
    assert {0, n - 1} <= set(picked)
    for t in TILES:
        assert {t - 1, t, t + 1} & set(range(n)) <= set(picked)
        assert (n - 1) // t * t in picked  # the first row of the last (partial) tile
    assert len(picked) <= 60  # a sample, not the whole


def test_auto_switches_at_the_documented_size() -> None:
    assert resolve("auto", AUTO_FULL_MAX_MACS) == "full"
    assert resolve("auto", AUTO_FULL_MAX_MACS + 1) == "sampled"
    assert resolve("full", 10**15) == "full" and resolve("sampled", 1) == "sampled"


@pytest.mark.parametrize("seed", [0, 1])
def test_sampled_check_passes_correct_results_and_catches_wrong_ones(seed: int) -> None:
    for case in _random_cases(5, seed, 70):
        for dt in DTYPES.values():
            e = References(seed).get(case, dt, "sampled", PRODUCTS)
            inp, tan = make_inputs(case, dt, seed), make_tangents(case, dt, seed)
            assert e.g is not None and np.array_equal(e.g, inp.g)
            full = R.reference(inp, tan)
            for q in PRODUCTS:
                p = params(q, case.geometry, rounded_partials=False)
                right = full.values[q].astype(dt.numpy)
                o = check_sampled(q, right, e.samples[q], dt, p)
                assert o.status == "pass", (case, dt.name, q, o.reason)
                if right.size < 2:
                    continue
                # one element off by more than the projected bound (Σ_j of its row's or
                # column's bounds, |ref| taken as S), wherever it is, fails
                sb = bound(full.scale[q], full.scale[q], dt, p).reshape(R.terms(
                    q, inp, tan).shape)
                worst = max(float(sb.sum(-1).max()), float(sb.sum(-2).max()))
                wrong = right.copy().reshape(-1)
                i = int(np.random.default_rng(seed).integers(wrong.size))
                wrong[i] += 3 * worst  # x2: the float64 rounding of the projections
                o = check_sampled(q, wrong.reshape(right.shape), e.samples[q], dt, p)
                assert o.status == "fail" and o.ratio > 1, (case, dt.name, q)
                if dt.name not in ("float16", "bfloat16"):
                    scaled = (full.values[q] * (1 + 1e-3)).astype(dt.numpy)
                    o = check_sampled(q, scaled, e.samples[q], dt, p)
                    assert o.status == "fail", (case, dt.name, q, o.ratio)


def test_an_element_outside_the_sample_is_caught_by_the_projections() -> None:
    case, dt = Case("big", (300, 300), (300, 300)), get("float32")
    e = References(0).get(case, dt, "sampled", ["Y"])
    s = e.samples["Y"]
    i = next(r for r in range(300) if r not in set(s.rows))
    j = next(c for c in range(300) if c not in set(s.cols))
    y = R.reference(make_inputs(case, dt, 0), quantities=["Y"]).values["Y"]
    got = y.astype(np.float32)
    got[i, j] += 5.0  # ~3000x its own bound, ~10x the projected bound (300 of them)
    o = check_sampled("Y", got, s, dt, params("Y", case.geometry, rounded_partials=False))
    assert o.status == "fail" and "projection" in o.reason
    got[i, j] = np.nan
    o = check_sampled("Y", got, s, dt, params("Y", case.geometry, rounded_partials=False))
    assert o.status == "fail" and o.reason.startswith(f"Y: NaN/Inf at ({i}, {j})")


def test_sampled_element_failure_names_the_real_element() -> None:
    case, dt = Case("big", (300, 200), (200, 100)), get("float64")
    e = References(0).get(case, dt, "sampled", ["dX"])
    s = e.samples["dX"]
    dx = R.reference(make_inputs(case, dt, 0), quantities=["dX"]).values["dX"].copy()
    row = int(s.rows[-1])
    dx[row, 7] *= 1 + 1e-9
    o = check_sampled("dX", dx, s, dt, params("dX", case.geometry, rounded_partials=False))
    assert o.status == "fail" and f"at ({row}, 7) of (300, 200)" in o.reason


@pytest.mark.parametrize("block", [R.BLOCK_BYTES, 2000])  # one block; many small ones
def test_sampled_products_equal_the_full_ones(block: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(R, "BLOCK_BYTES", block)
    zero = [Case("k0", (3, 0), (0, 4)), Case("b0", (0, 3, 5), (5, 4))]
    for case in [*_random_cases(5, 5, 40), *zero]:
        dt = get("complex64")
        inp, tan = make_inputs(case, dt, 1), make_tangents(case, dt, 1)
        for q in PRODUCTS:
            t = R.terms(q, inp, tan)
            full, mag = R.values(t), R._reduce(
                (np.abs(R._hi(a)) @ np.abs(R._hi(b)) for a, b in t.terms), t.shape)
            rng = np.random.default_rng(0)
            rows, cols = lines(t.shape[-2], rng), lines(t.shape[-1], rng)
            right = rng.standard_normal((t.shape[-1], 2))
            s = R.sampled(t, rows, cols, right)
            for got, want in ((s.rows, full[..., rows, :]), (s.cols, full[..., :, cols]),
                              (s.right, full @ right)):
                assert got.shape == want.shape, (case, q)
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
            # magnitudes run in float32 for complex64: upper bounds, within 1e-5 of exact
            for got, want in ((s.rows_mag, mag[..., rows, :]), (s.cols_mag, mag[..., :, cols]),
                              (s.right_mag, mag.sum(-1, keepdims=True))):
                assert got.shape == want.shape, (case, q)
                assert np.all(got >= want) and np.all(got <= want * (1 + 1e-5) + 1e-30), q


@pytest.mark.parametrize(("dtype", "scale"), [
    ("float32", 1.0), ("float32", 2.0**70), ("float32", 2.0**-70), ("bfloat16", 1.0),
    ("complex64", 1.0), ("float64", 1.0)])
def test_sampled_magnitudes_bound_the_exact_ones_from_above(dtype: str, scale: float) -> None:
    """Where float32 magnitudes overflow (2⁷⁰²) or underflow (2⁻¹⁴⁰), too, the float32 path
    must give upper bounds (or fall back to float64)."""
    dt = get(dtype)
    case = Case("m", (3, 70, 600), (600, 50))
    inp, tan = make_inputs(case, dt, 3), make_tangents(case, dt, 3)
    if scale != 1.0:
        inp = type(inp)(*(np.asarray(a * scale, dt.numpy) for a in (inp.x, inp.w, inp.g)))
    for q in ("Y", "dX", "dW", "dY"):
        t = R.terms(q, inp, tan)
        mag = R._reduce((np.abs(R._hi(a)) @ np.abs(R._hi(b)) for a, b in t.terms), t.shape)
        rng = np.random.default_rng(0)
        rows, cols = lines(t.shape[-2], rng), lines(t.shape[-1], rng)
        s = R.sampled(t, rows, cols, np.ones((t.shape[-1], 2)))
        for got, want in ((s.rows_mag, mag[..., rows, :]), (s.cols_mag, mag[..., :, cols]),
                          (s.right_mag, mag.sum(-1, keepdims=True))):
            assert np.all(np.isfinite(got)), (q, scale)
            # float64 magnitudes (float64 inputs, or after an overflow in float32) are
            # float64 sums in another order: equal to rounding; float32 ones lie above
            assert np.all(got >= want * (1 - 1e-12)), (q, scale)
            assert np.all(got <= want * (1 + 1e-4) + 1e-35), (q, scale)


def test_magnitudes_in_float32_bound_the_exact_sum_from_above() -> None:
    for case in [Case("k", (3, 2**16), (2**16, 2)), *_random_cases(4, 3)]:
        for dt in (get("float32"), get("complex128"), get("bfloat16")):
            inp = make_inputs(case, dt, 0)
            for q in ("Y", "dX", "dW"):
                t = R.terms(q, inp)
                exact = R._reduce((np.abs(R._hi(a)) @ np.abs(R._hi(b)) for a, b in t.terms),
                                  t.shape)
                s = R.magnitudes(t)
                assert np.all(s >= exact) and np.all(s <= exact * 1.01 + 1e-300)


def test_weighted_bound_is_at_least_the_exact_weighted_bound() -> None:
    for case in _random_cases(5, 4, 100):
        dt = get("complex64")
        e = References(0).get(case, dt, "sampled", ["dX", "dW", "dY"])
        inp, tan = make_inputs(case, dt, 0), make_tangents(case, dt, 0)
        full = R.reference(inp, tan, ["dX", "dW", "dY"])
        for q, wt in (("dY", inp.g), ("dX", tan.tx), ("dW", tan.tw)):
            p = params(q, case.geometry, rounded_partials=False)
            t = R.terms(q, inp, tan)
            s = R._reduce((np.abs(R._hi(a)) @ np.abs(R._hi(b)) for a, b in t.terms),
                          t.shape).reshape(t.final)  # S exactly, in float64
            weight = np.abs(wt.astype(np.complex128))
            exact = float(np.sum(weight * bound(full.values[q], s, dt, p)))
            assert weighted_bound(wt, e.samples[q], dt, p, "ieee") >= exact * (1 - 1e-12)


def test_references_are_built_once_and_shared() -> None:
    case, dt = Case("c", (40, 30), (30, 20)), get("float32")
    refs = References(0)
    refs.expect([(case, "float32", "full")] * 2)
    a = refs.get(case, dt, "full", ["Y", "dX", "dW"])
    built = refs.built
    b = refs.get(case, dt, "full", ["Y", "dX", "dW", "dY"])  # only dY is new
    assert b is a and refs.built == built + 1
    refs.release(case, "float32", "full")
    refs.release(case, "float32", "full")
    assert refs.get(case, dt, "full", ["Y"]).values.keys() == {"Y"}  # gone: built anew


def test_entries_past_the_budget_go_to_disk_and_come_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cases = [Case(f"c{i}", (50, 40), (40, 30)) for i in range(4)]
    dt = get("float64")
    refs = References(0, budget=1, spill_dir=tmp_path)
    refs.expect([(c, "float64", "full") for c in cases] * 2)
    first = {c.name: refs.get(c, dt, "full", ["dW"]).values["dW"].copy() for c in cases}
    assert len(list(tmp_path.iterdir())) == 3  # all but the newest were pushed out
    built = refs.built
    for c in cases:
        again = refs.get(c, dt, "full", ["dW"]).values["dW"]
        assert np.array_equal(again, first[c.name])
        refs.release(c, "float64", "full")
        refs.release(c, "float64", "full")
    assert refs.built == built and not list(tmp_path.iterdir())


# past the first tiles (rows 0-2, 15-17, 31-33, 63-65, 127-129 sampled), far from all
BIG = Case("big", (140, 150), (150, 130))
BIG_SQUARE = Case("big_square", (140, 140), (140, 140))
BIG_BROADCAST = Case("big_broadcast", (3, 140, 70), (70, 130))
BUG_CASE = {wa.MissingTranspose: BIG_SQUARE, wa.BatchZeroOnly: BIG_BROADCAST,
            wa.Unreduced: BIG_BROADCAST, wa.MissingConjugation: BIG_SQUARE, wa.Scaled: BIG}


def _judge(adapter, case: Case, dtype: str, check: str):  # type: ignore[no-untyped-def]
    a = adapter()
    out, errors = a.run_all(make_inputs(case, get(dtype), 0),
                            make_tangents(case, get(dtype), 0), "cpu")
    rows = judge(Cell(adapter.name, "pinned", "cpu", dtype, case), out, errors, adapter,
                 "ieee", a.version(), 0, check_mode=check)
    return {r.quantity: r for r in rows}


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
@pytest.mark.parametrize("dtype", ["float32", "complex64", "float16"])
@pytest.mark.parametrize("bug", wa.BUGS, ids=lambda b: b.__name__)
def test_planted_bugs_fail_in_the_sampled_check(bug: type[wa.Wrapped], dtype: str) -> None:
    if bug is wa.MissingConjugation and not dtype.startswith("complex"):
        pytest.skip("conj is the identity on real numbers")
    if bug is wa.Scaled and dtype == "float16":
        pytest.skip("a 1e-3 scaling is below one float16 ulp (the bias test's case)")
    rows = _judge(wa.on(load("torch"), bug), BUG_CASE[bug], dtype, "sampled")
    assert rows[bug.bug].status == "fail" and rows[bug.bug].check == "sampled", rows[bug.bug]
    clean = _judge(wa.on(load("torch"), wa.Wrapped), BUG_CASE[bug], dtype, "sampled")
    assert all(r.status in ("pass", "skip") for r in clean.values()), clean
    assert {r.check for r in clean.values()} == {"sampled"}


def test_check_key_and_old_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = {"cases": [{"name": "a", "x": [2, 3], "w": [3, 4]}]}
    assert parse(base, "t.yaml", ["numpy"]).check == "auto"
    assert parse({**base, "check": "sampled"}, "t.yaml", ["numpy"]).check == "sampled"
    with pytest.raises(ConfigError, match=r"t.yaml: check: unknown value 'sample' \(did you "
                                          r"mean 'sampled'\?\); allowed: auto, full, sampled"):
        parse({**base, "check": "sample"}, "t.yaml", ["numpy"])
    old = tmp_path / "verify.csv"  # written before the `check` column existed
    cols = COLUMNS[: COLUMNS.index("check")]
    old.write_text(",".join(cols) + "\n" + ",".join(
        ["numpy", "cpu", "float32", "a", "2x3", "3x4", "Y", "pass", "", "0", "0.1", "3",
         "ieee", "2.0", "pinned", "24", "24", "0", "", ""]) + "\n")
    assert read_csv(old)[0].check == ""


def test_spilled_results_are_mapped_checked_and_leave_no_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from harness import spill

    monkeypatch.setattr(spill, "SPILL_MIN_BYTES", 1000)
    case, dt = Case("s", (70, 60), (60, 50)), get("float32")
    inp = make_inputs(case, dt, 0)
    ref = R.reference(inp, quantities=["Y", "dX"])
    outputs = {"Y": ref.values["Y"].astype(np.float32), "dX": ref.values["dX"][:1, :1]}
    sent = spill.spill(outputs, str(tmp_path))
    assert isinstance(sent["Y"], spill.Spilled) and isinstance(sent["dX"], np.ndarray)
    got = spill.unspill(sent)
    assert not list(tmp_path.iterdir())  # unlinked once mapped
    assert isinstance(got["Y"], np.memmap) and np.array_equal(got["Y"], outputs["Y"])
    s = References(0).get(case, dt, "sampled", ["Y"]).samples["Y"]
    o = check_sampled("Y", got["Y"], s, dt, params("Y", case.geometry, rounded_partials=False))
    spill.release(got["Y"])
    assert o.status == "pass" and np.array_equal(got["Y"], outputs["Y"])  # still readable


@pytest.mark.parametrize("check", ["sampled", "full"])
def test_prefetched_references_are_the_ones_judged(check: str) -> None:
    case, dt = Case("p", (90, 70), (70, 60)), get("float32")
    refs = References(0)
    refs.prefetch(case, dt, check, PRODUCTS)
    entry = refs.get(case, dt, check, PRODUCTS)  # waits for the background build
    assert refs.built == len(PRODUCTS)
    again = refs.get(case, dt, check, PRODUCTS)
    assert again is entry and refs.built == len(PRODUCTS)
    refs.close()


def test_verify_with_check_sampled_records_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from harness.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("frameworks: [numpy]\ndevices: [cpu]\ndtypes: [float32, complex64]\n"
                   "cases: [{name: a, x: [3, 70, 40], w: [40, 50]}, {name: v, x: [9], w: [9]}]\n")
    assert main(["verify", "--config", str(cfg), "--out", str(tmp_path / "o"),
                 "--check", "sampled"]) == 0
    rows = read_csv(tmp_path / "o" / "verify.csv")
    assert {r.check for r in rows} == {"sampled"}
    assert {r.status for r in rows if r.quantity in ("Y", "dX", "dW")} == {"pass"}
    assert main(["verify", "--config", str(cfg), "--out", str(tmp_path / "p"),
                 "--check", "everything"]) == 2


def test_sampled_selftest_catches_what_the_full_one_does_at_its_shapes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from harness import selftest, selftest_sampled

    sampled = selftest_sampled.sensitivity(1, large=False)
    assert selftest_sampled.problems(sampled) == []
    full = {(r.bug, r.dtype): r.detected for r in selftest.sensitivity(1)}
    for bug, r in sampled:
        if bug.name != selftest.CONTROL:
            assert r.detected >= full[(r.bug, r.dtype)], (bug.name, r.dtype)
    selftest_sampled.write(sampled, tmp_path)
    assert (tmp_path / selftest_sampled.SAMPLED_FILE).read_text().startswith("bug,quantity,")
    # the report reads the file back: one table row per (bug, shape), a miss is a shortfall
    from harness.report.load_selftest import read_sampled
    from harness.report.schema import ReportInputError
    from harness.report.tables_selftest import sampled_table, selftest_shortfalls

    read = read_sampled(tmp_path)
    assert read is not None and len(read) == len(sampled)
    assert len(sampled_table(read).rows) == len({(b.name, b.case.label) for b, _ in sampled})
    assert selftest_shortfalls(read) == []
    path = tmp_path / selftest_sampled.SAMPLED_FILE
    records = list(csv.reader(path.read_text().splitlines()))
    missed = next(r for r in records[1:] if r[-1] == "True" and r[4] == "True")
    missed[-2] = "0"  # a required detection: caught in none of the trials
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(records)
    read = read_sampled(tmp_path)
    assert read is not None and len(selftest_shortfalls(read)) == 1
    path.write_text("bug,quantity\nx,Y\n")
    with pytest.raises(ReportInputError, match="expected the header"):
        read_sampled(tmp_path)
    assert read_sampled(tmp_path / "absent") is None


def test_chunked_draws_are_one_draw(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Inputs are drawn in chunks (no float64 copy of a large input); the values are
    those of one draw of the whole shape, as before."""
    import math

    from harness import cases

    def whole(rng: np.random.Generator, shape: tuple[int, ...], dt) -> np.ndarray:  # type: ignore[no-untyped-def]
        out = np.empty(shape, dtype=dt.numpy)
        if dt.is_complex:
            out.real = rng.standard_normal(shape) * math.sqrt(0.5)
            out.imag = rng.standard_normal(shape) * math.sqrt(0.5)
        else:
            out[...] = rng.standard_normal(shape)
        return out

    monkeypatch.setattr(cases, "DRAW_CHUNK", 1000)
    for shape in [(), (3,), (0, 5), (7, 333), (2, 3, 700)]:
        for dt in DTYPES.values():
            a = whole(np.random.default_rng(5), shape, dt)
            b = cases._draw(np.random.default_rng(5), shape, dt)
            assert a.shape == b.shape and np.array_equal(a, b), (shape, dt.name)
