"""From a cell's raw outputs to its rows: every quantity checked, with its forensics.

Per quantity: the per-element check against the reference (`checks.check`), the effective
mantissa bits actually delivered, the float16/bfloat16 bias test (a failure unless a known
divergence excuses it), and a flag when the effective bits fall below what the recorded
compute mode (ieee, tf32...) promises. The adjoint identity is checked from the framework's
own JVP and VJP without the formulas.
"""

from __future__ import annotations

import math

import numpy as np

from harness import divergences
from harness.adapters import Adapter
from harness.checks import BIAS_DTYPES, Outcome, check
from harness.dtypes import DType, get, widen
from harness.plan import Cell
from harness.refcache import Entry, References
from harness.reference import EXTRA_QUANTITIES, PRODUCTS, QUANTITIES
from harness.results import Row
from harness.sampled import check_sampled, resolve, weighted_bound
from harness.spill import release
from harness.tolerance import bound, params

NAN = float("nan")
LOW_PRECISION = BIAS_DTYPES


def quantities(adapter: type[Adapter]) -> dict[str, str | None]:
    """Every quantity of a cell, mapped to why the adapter cannot produce it (or None)."""
    caps = adapter.capabilities
    fwd = None if caps.forward_mode else f"{adapter.name} has no forward-mode autodiff"
    second = None if caps.second_order else f"{adapter.name} has no second-order autodiff"
    out: dict[str, str | None] = dict.fromkeys(QUANTITIES)
    out.update({"dY": fwd, "adjoint": fwd, "d2W": second})
    return out


def uniform_rows(cell: Cell, status: str, reason: str, version: str,
                 adapter: type[Adapter] | None = None, compute: str = "",
                 flags: str = "") -> list[Row]:
    """Rows of a cell that share one status and reason (skip, error).

    A skip's reason (no GPU, framework missing) holds for every quantity; an error's does
    not reach the quantities the adapter never produces, which keep their own skip reason.
    """
    names = quantities(adapter) if adapter else dict.fromkeys([*QUANTITIES, *EXTRA_QUANTITIES])
    return [
        make_row(cell, q, "skip", never, version, compute=compute, flags=flags)
        if never and status != "skip"
        else make_row(cell, q, status, reason, version, compute=compute, flags=flags)
        for q, never in names.items()
    ]


def make_row(
    cell: Cell,
    quantity: str,
    status: str,
    reason: str,
    version: str,
    *,
    outcome: Outcome | None = None,
    k_eff: int = -1,
    compute: str = "",
    note: str = "",
    check: str = "",
    flags: str = "",
) -> Row:
    """One row of verify.csv; `compute` is how the framework computed the product (ieee,
    tf32...: the row's `precision`), `flags` the framework settings behind it (the worker
    reports them once, at start-up)."""
    c, o = cell.case, outcome
    return Row(
        framework=cell.framework,
        device=cell.device,
        dtype=cell.dtype,
        case=c.name,
        x_shape="x".join(map(str, c.x)),
        w_shape="x".join(map(str, c.w)),
        quantity=quantity,
        status=status,
        reason=" ".join(reason.split("\n")),  # one line per row, in CSV and terminal
        max_abs_err=o.max_abs_err if o else NAN,
        ratio=o.ratio if o else NAN,
        k_eff=k_eff,
        precision=compute,
        precision_flags=flags,
        framework_version=version,
        precision_mode=cell.mode,
        effective_bits=o.effective_bits if o else NAN,
        nominal_bits=get(cell.dtype).nominal_bits,
        bias=o.bias if o else NAN,
        note=note,
        check=check,
    )


def check_of(cell: Cell, check: str) -> str:
    """`full` or `sampled`: the check a cell gets under the config's `check` setting."""
    geo = cell.case.geometry
    return resolve(check, math.prod(geo.batch) * geo.m * geo.k * geo.n)


def needed(adapter: type[Adapter]) -> list[str]:
    """The reference quantities a cell of `adapter` is judged against."""
    wanted = quantities(adapter)
    if wanted["adjoint"] is None:  # the identity's tolerance uses dY's, dX's, dW's bounds
        wanted.update(dY=None, dX=None, dW=None)
    return [q for q in PRODUCTS if wanted[q] is None]


def judge(
    cell: Cell,
    outputs: dict[str, np.ndarray],
    errors: dict[str, str],
    adapter: type[Adapter],
    compute: str,
    version: str,
    seed: int,
    refs: References | None = None,
    check_mode: str = "auto",
    flags: str = "",
) -> list[Row]:
    """Check a cell's outputs; one row per quantity, in `quantities` order.

    `refs` shares references between cells (the orchestrator's); without it, this cell's
    is built alone. `check_mode` is the config's `check`: full, sampled or auto.
    """
    dtype, geo = get(cell.dtype), cell.case.geometry
    check_kind = check_of(cell, check_mode)
    provider = refs if refs is not None else References(seed)
    ref = provider.get(cell.case, dtype, check_kind, needed(adapter))
    wanted = quantities(adapter)
    rounded = adapter.capabilities.rounded_broadcast_partials
    rows: list[Row] = []
    for q, unavailable in wanted.items():
        if unavailable:
            rows.append(make_row(cell, q, "skip", unavailable, version, compute=compute,
                                 check=check_kind, flags=flags))
            continue
        if q == "adjoint":
            rows.append(_adjoint(cell, outputs, ref, rounded, dtype, compute, version, check_kind,
                                 flags))
            continue
        p = params(q, geo, rounded_partials=rounded)
        if q in errors or q not in outputs:
            status, why = _missing(cell, q, errors)
            rows.append(make_row(cell, q, status, why, version, k_eff=p.k_eff,
                                 compute=compute, check=check_kind, flags=flags))
            continue
        if check_kind == "sampled":
            o = check_sampled(q, outputs[q], ref.samples[q], dtype, p, compute)
            release(outputs[q])  # a mapped result: its pages are read, let them go
        else:
            o = check(q, outputs[q], ref.values[q], ref.scale[q], dtype, p, compute)
        status, reason, note = _forensics(cell, q, o, dtype, compute, p.k_eff)
        rows.append(make_row(cell, q, status, reason, version, outcome=o, k_eff=p.k_eff,
                             compute=compute, note=note, check=check_kind, flags=flags))
    provider.release(cell.case, cell.dtype, check_kind)
    return rows


def _missing(cell: Cell, q: str, errors: dict[str, str]) -> tuple[str, str]:
    """Status and reason of a quantity the adapter did not deliver."""
    if q not in errors:
        return "fail", f"{q}: missing from the adapter's results"
    known = divergences.find(cell.framework, cell.device, cell.dtype, q, "error", errors[q])
    if known:
        return "skip", f"known limitation: {known.reason} ({known.link}): {errors[q]}"
    return "error", errors[q]


def _forensics(cell: Cell, q: str, o: Outcome, dtype: DType, compute: str,
               k_eff: int) -> tuple[str, str, str]:
    """Status, reason and note once bias and effective precision are looked at.

    Both thresholds are worst cases of the bound's own model (docs/numerics.md), computed
    by `checks.check` for this quantity's `k_eff` and `compute`: a bias flag or a
    precision note on a correct result would need the bound itself to fail.
    """
    status, reason, notes = o.status, o.reason, []
    if status == "pass" and cell.dtype in LOW_PRECISION and o.biased:
        known = divergences.find(cell.framework, cell.device, cell.dtype, q, "bias")
        what = (f"{q}: systematic bias β={o.bias:.3g} where the correctly rounded result "
                f"has β₀={o.bias_null:.3g}; |β-β₀| is {o.bias_z:.3g}x the {o.bias_limit:.2g} "
                "that accumulation and rounding can explain")
        if known:
            notes.append(f"known divergence: {what}: {known.reason} ({known.link})")
        else:
            status, reason = "fail", (f"{what}: a relative error below one ulp, such as a "
                                      "scaling or a biased rounding")
    if o.effective_bits < o.bits_floor:
        notes.append(f"effective precision {o.effective_bits:.1f} bits is below the "
                     f"{o.bits_floor:.1f} guaranteed by the {compute} {dtype.name} bound "
                     f"(K_eff={k_eff})")
    return status, reason, "; ".join(notes)


def _adjoint(
    cell: Cell,
    outputs: dict[str, np.ndarray],
    ref: Entry,
    rounded_partials: bool,
    dtype: DType,
    compute: str,
    version: str,
    check_kind: str,
    flags: str,
) -> Row:
    """⟨G, J·v⟩ = ⟨Jᴴ·G, v⟩ from the framework's own dY, dX, dW, with v = (tX, tW).

    If each element of dY, dX, dW is within its bound, |lhs - rhs| is at most
    Σ|G|·bound(dY) + Σ|tX|·bound(dX) + Σ|tW|·bound(dW): that sum is the tolerance (in the
    sampled check, an upper bound of it that needs no product: `weighted_bound`).
    """
    need = ("dY", "dX", "dW")
    bounds = {q: params(q, cell.case.geometry, rounded_partials=rounded_partials) for q in need}
    g, tx, tw = ref.g, ref.tx, ref.tw
    assert g is not None and tx is not None and tw is not None
    shapes = {q: (ref.samples[q].final if check_kind == "sampled" else ref.values[q].shape)
              for q in need}
    bad = [q for q in need if q not in outputs or np.shape(outputs[q]) != shapes[q]]
    if bad:
        return make_row(cell, "adjoint", "skip",
                        f"adjoint: needs {', '.join(bad)} of the right shape", version,
                        compute=compute, check=check_kind, flags=flags)

    def inner(a: np.ndarray, b: np.ndarray) -> float:
        """Re⟨a, b⟩ in float64/complex128, a block at a time (results may be mapped files)."""
        fa, fb = np.reshape(a, -1), np.reshape(b, -1)
        step = 2**22
        total = 0.0
        for i in range(0, fa.size, step):
            part = np.vdot(widen(fa[i:i + step]), widen(fb[i:i + step]))
            total += float(np.real(part))
        release(a)
        release(b)
        return total

    def weighted(q: str, weight: np.ndarray) -> float:
        if check_kind == "sampled":
            return weighted_bound(weight, ref.samples[q], dtype, bounds[q], compute)
        return float(np.sum(np.abs(np.asarray(weight, np.complex128))
                            * bound(ref.values[q], ref.scale[q], dtype, bounds[q], compute)))

    lhs = inner(g, outputs["dY"])
    rhs = inner(outputs["dX"], tx) + inner(outputs["dW"], tw)
    tol = sum(weighted(q, weight) for q, weight in (("dY", g), ("dX", tx), ("dW", tw)))
    err = abs(lhs - rhs)
    ratio = 0.0 if err == 0 else (err / tol if tol > 0 else float("inf"))
    o = Outcome("pass" if ratio <= 1 else "fail", "", err, ratio)
    reason = "" if o.status == "pass" else (
        f"adjoint: ⟨G, J·v⟩={lhs:.6g} but ⟨Jᴴ·G, v⟩={rhs:.6g}; |difference|={err:.3g} is "
        f"{ratio:.3g}x the {tol:.3g} the element bounds allow")
    return make_row(cell, "adjoint", o.status, reason, version, outcome=o,
                    compute=compute, check=check_kind, flags=flags)
