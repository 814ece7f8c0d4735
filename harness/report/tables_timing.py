"""The timing tables: asv's times per dtype, speedups, fractions of peak, and accuracy
against speed."""

from __future__ import annotations

import pandas as pd

from harness.report import analysis
from harness.report.tables import TIMES, Cell, Table, fmt_flops, fmt_pct, fmt_time, sig
from harness.runfiles import label


def measured(t: pd.DataFrame) -> pd.DataFrame:
    """The timing rows of every (benchmark, shape, pass) that asv ran for at least one
    framework: asv records the combinations a run did not select (or that raised
    NotImplementedError: no GPU, say) as n/a, and a table of nothing but n/a says nothing."""
    key = ["machine", "device", "dtype", "benchmark", "shape", "pass_"]
    ran = t.groupby(key)["status"].transform(lambda s: (s != "skip").any())
    return t[ran.astype(bool)]


def timing_tables(t: pd.DataFrame) -> list[Table]:
    """Per machine x device x dtype: rows shape x pass, columns framework."""
    out: list[Table] = []
    t = measured(t)
    multi_bench = len(analysis.timing_benchmarks(t)) > 1
    machines = list(dict.fromkeys(t["machine"]))
    for m in machines:
        tm = t[t["machine"] == m]
        for dev in analysis.devices(tm):
            for dt in analysis.dtypes(tm[tm["device"] == dev]):
                g = tm[(tm["device"] == dev) & (tm["dtype"] == dt)]
                fws = analysis.frameworks(g)
                by = {(r.benchmark, r.shape, r.pass_, r.framework): r
                      for r in g.itertuples(index=False)}
                order = {p: i for i, p in enumerate(analysis.passes(g))}
                keys = (g.drop_duplicates(["benchmark", "shape", "pass_"])
                        .assign(order=g["pass_"].map(order))
                        .sort_values(["benchmark", "size", "shape", "order"]))
                rows: list[list[Cell]] = []
                for k in keys.itertuples(index=False):
                    p = k.pass_
                    label = f"{p} ({_bench_label(k.benchmark)})" if multi_bench else p
                    row = [Cell(k.shape, css="rowhead"), Cell(label, css="rowhead")]
                    row += [_timing_cell(by.get((k.benchmark, k.shape, p, fw))) for fw in fws]
                    rows.append(row)
                where = f"{m}, {dev}" if len(machines) > 1 else dev
                out.append(Table(
                    caption=f"{dt} on {where}: {len(rows)} shape and pass rows",
                    columns=["shape (MxKxN)", "pass", *fws], rows=rows, details=True))
    return out


def _bench_label(name: str) -> str:
    """"matmul.Square.time_matmul" -> "Square": the class names the shape set."""
    parts = name.split(".")
    return parts[-2] if len(parts) >= 2 else name


def _timing_cell(r: object | None) -> Cell:
    if r is None:
        return Cell("", css="none", title="not measured", md="")
    status = str(getattr(r, "status"))  # noqa: B009 (itertuples rows are not typed)
    if status != "pass":
        text = "failed" if status == "fail" else "n/a"
        return Cell(text, css=status, title=str(getattr(r, "reason")), md=text)  # noqa: B009
    time, gf, spread = (float(getattr(r, k)) for k in ("time", "gflops", "spread"))
    version = str(getattr(r, "framework_version", "") or "")
    tag = f" · {version}" if version else ""
    if bool(getattr(r, "quick", False)):
        # One cold sample (asv --quick): a smoke test, no spread to speak of.
        sub = f"{fmt_flops(gf)} · smoke test (1 sample){tag}"
        return Cell(fmt_time(time), sub=sub, md=f"{fmt_time(time)} · {sub}", css="smoke",
                    title="asv --quick: one cold sample; not a measurement to compare")
    sub = f"{fmt_flops(gf)} · IQR {fmt_pct(spread, 2)}{tag}"
    return Cell(fmt_time(time), sub=sub, md=f"{fmt_time(time)} · {sub}")


# --- speedup, peak, accuracy -------------------------------------------------------------


def speedup_table(geo: pd.DataFrame, baseline: str, title: str = "") -> Table:
    """One machine: rows framework:device, columns dtype and all dtypes."""
    dts = analysis.dtypes(geo[geo["dtype"] != "all"])
    rows: list[list[Cell]] = []
    for fw in analysis.frameworks(geo):
        for dev in analysis.devices(geo[geo["framework"] == fw]):
            g = geo[(geo["framework"] == fw) & (geo["device"] == dev)].set_index("dtype")
            row = [Cell(label(fw, dev), css="rowhead")]
            for dt in [*dts, "all"]:
                if dt not in g.index:
                    row.append(Cell("", css="none", md=""))
                    continue
                v = float(g.loc[dt, "geomean"])
                n, nf, ns = (int(g.loc[dt, k]) for k in ("n", "n_faster", "n_slower"))
                # Coloured only when the samples resolve every timing it averages the same
                # way: an unresolved difference is never coloured or ranked.
                css = ("faster" if nf == n and v > 1 else "slower" if ns == n and v < 1
                       else "even")
                row.append(Cell(f"{sig(v)}{TIMES}", css=css,
                                title=f"geometric mean of {n} timings vs {baseline} on "
                                      f"{g.loc[dt, 'base_device']}: {nf} resolved faster, "
                                      f"{ns} resolved slower, {n - nf - ns} not resolved "
                                      "(Mann-Whitney U on the samples, p < 0.01)"))
            rows.append(row)
    return Table(
        title=title,
        caption=f"Geometric-mean speedup over {baseline} (its time / this time, over shapes "
                f"and passes; > 1 is faster). GPU rows compare with {baseline} on the CPU "
                "when it has no GPU timings. Coloured only where the samples resolve every "
                "timing averaged (faster or slower, p < 0.01); --quick smoke timings are "
                "left out.",
        columns=["framework:device", *dts, "all dtypes"], rows=rows)


def peak_table(pk: pd.DataFrame, title: str = "") -> Table:
    """One machine: rows framework:device, columns dtype."""
    dts = analysis.dtypes(pk)
    rows: list[list[Cell]] = []
    for dev in analysis.devices(pk):
        g = pk[pk["device"] == dev]
        for fw in analysis.frameworks(g):
            by = g[g["framework"] == fw].set_index("dtype")
            row = [Cell(label(fw, dev), css="rowhead")]
            for dt in dts:
                if dt not in by.index:
                    row.append(Cell("", css="none", md=""))
                    continue
                r = by.loc[dt]
                sub = f"{fmt_flops(float(r['gflops']))} of {fmt_flops(float(r['peak']))}"
                row.append(Cell(fmt_pct(float(r["fraction"])), sub=sub,
                                md=f"{fmt_pct(float(r['fraction']))} ({sub})",
                                title=f"best at {r['shape']} {r['pass_']}; peak from "
                                      f"'{r['entry']}'"))
            rows.append(row)
    return Table(title=title,
                 caption="Best GFLOP/s over shapes and passes as a fraction of the device's "
                         "peak (configs/peaks.yaml)",
                 columns=["framework:device", *dts], rows=rows)


def peak_devices(pk: pd.DataFrame) -> list[str]:
    seen = pk.drop_duplicates(["machine", "device"])
    return [f"{r.machine} {r.device}: {r.model!r} matched '{r.entry}'"
            + (f" {TIMES} {r.cores} cores" if r.cores else "") for r in seen.itertuples()]


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in the report's order: framework, device, dtype as everywhere else."""
    rank = {k: {v: i for i, v in enumerate(f(df))}
            for k, f in (("framework", analysis.frameworks), ("device", analysis.devices),
                         ("dtype", analysis.dtypes))}
    return df.sort_values(["framework", "device", "dtype"],
                          key=lambda col: col.map(rank[str(col.name)]))


def accuracy_table(acc: pd.DataFrame, title: str = "") -> Table:
    rows = [[Cell(label(r.framework, r.device), css="rowhead"), Cell(r.dtype),
             Cell(sig(r.worst_ratio), css="fail" if r.worst_ratio > 1 else "pass"),
             Cell(r.ratio_from), Cell(fmt_time(r.time))]
            for r in _sorted(acc).itertuples()]
    return Table(title=title,
                 caption="Worst error ratio and median time at the reference shape",
                 columns=["framework:device", "dtype", "worst ratio", "ratio from", "time"],
                 rows=rows)



# --- releases and commits side by side ---------------------------------------------------


def verdict_cell(r: object, prev: object | None) -> Cell:
    """A timing of one release (or commit), judged against the column before it."""
    time = float(getattr(r, "time"))  # noqa: B009 (itertuples rows are not typed)
    if prev is None:
        return Cell(fmt_time(time), sub="first", md=f"{fmt_time(time)} (first)")
    v = analysis.judge_rows(prev, r)
    pct = f"{100 * (v.ratio - 1):+.1f}%"
    if v.state == "smoke":
        return Cell(fmt_time(time), sub=f"{pct}, smoke test", css="smoke", title=v.method,
                    md=f"{fmt_time(time)} ({pct}, smoke test: not judged)")
    css = {"faster": "faster", "slower": "slower"}.get(v.state, "unresolved")
    p = f", p={v.p:.2g}" if v.p == v.p else ""
    return Cell(fmt_time(time), sub=f"{v.state} {pct}", css=css, title=f"{v.method}{p}",
                md=f"{fmt_time(time)} ({v.state} {pct})")


def release_tables(sr: pd.DataFrame) -> list[Table]:
    """Per machine x device x dtype x framework: rows shape x pass, a column per release
    (or commit), each judged against the column before it from the samples."""
    out: list[Table] = []
    multi = sr["machine"].nunique() > 1
    for (m, dev, dt, fw), g in sr.groupby(["machine", "device", "dtype", "framework"],
                                          sort=False):
        cols = list(dict.fromkeys(g.sort_values("order")["series"]))
        by = {(r.benchmark, r.shape, r.pass_, r.series): r for r in g.itertuples(index=False)}
        order = {p: i for i, p in enumerate(analysis.passes(g))}
        keys = (g.drop_duplicates(["benchmark", "shape", "pass_"])
                .assign(o=g["pass_"].map(order)).sort_values(["benchmark", "size", "o"]))
        rows: list[list[Cell]] = []
        for k in keys.itertuples(index=False):
            row = [Cell(k.shape, css="rowhead"), Cell(k.pass_, css="rowhead")]
            prev = None
            for c in cols:
                r = by.get((k.benchmark, k.shape, k.pass_, c))
                if r is None:
                    row.append(Cell("", css="none", title="not measured", md=""))
                    continue
                row.append(verdict_cell(r, prev))
                prev = r
            rows.append(row)
        where = f"{m}, {dev}" if multi else dev
        out.append(Table(
            caption=f"{fw} {dt} on {where}: median time per release (or commit), each "
                    "judged against "
                    "the column before it (faster / slower: the samples resolve it, "
                    "Mann-Whitney U p < 0.01; not resolved: they do not, and it is not "
                    "coloured)",
            columns=["shape (MxKxN)", "pass", *(f"{fw} {c}" for c in cols)], rows=rows,
            details=len(rows) > 6))
    return out


def accuracy_release_tables(sr: pd.DataFrame) -> list[Table]:
    """Tracked error ratios and effective bits per release: deterministic values, so any
    difference is a change of the computation (a kernel, an accumulation order)."""
    out: list[Table] = []
    for (m, fw, dev), g in sr.groupby(["machine", "framework", "device"], sort=False):
        cols = list(dict.fromkeys(g.sort_values("order")["series"]))
        by = {(r.benchmark, r.case, r.dtype, r.series): r for r in g.itertuples(index=False)}
        keys = g.drop_duplicates(["benchmark", "case", "dtype"]).sort_values(
            ["benchmark", "case", "dtype"])
        rows: list[list[Cell]] = []
        for k in keys.itertuples(index=False):
            row = [Cell(k.benchmark.rsplit(".", 1)[-1].removeprefix("track_"), css="rowhead"),
                   Cell(k.case, css="rowhead"), Cell(k.dtype, css="rowhead")]
            prev: float | None = None
            for c in cols:
                r = by.get((k.benchmark, k.case, k.dtype, c))
                if r is None:
                    row.append(Cell("", css="none", md=""))
                    continue
                v = float(r.value)
                note = "" if prev is None else "same" if v == prev else "changed"
                row.append(Cell(sig(v, 4), sub=note, css="partial" if note == "changed" else "",
                                md=f"{sig(v, 4)}{' (changed)' if note == 'changed' else ''}"))
                prev = v
            rows.append(row)
        out.append(Table(
            caption=f"{fw} on {dev}{', ' + m if sr['machine'].nunique() > 1 else ''}: tracked "
                    "accuracy per release (error ratio: max |err| / bound; effective bits: "
                    "-log2 relative RMS error); 'changed' marks a value that differs from the "
                    "column before it",
            columns=["quantity", "case", "dtype", *(f"{fw} {c}" for c in cols)], rows=rows,
            details=True))
    return out
