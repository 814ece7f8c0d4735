"""What the report shows, computed from the long-form table: aggregates, speedups, peaks.

Each function takes the table (or a slice of it) and returns a small pandas DataFrame;
presentation (tables.py, figures.py) never recomputes a number.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from harness import verdict as vd
from harness.adapters import BUILTIN, RegistryError, names
from harness.dtypes import DEVICES, DTYPES
from harness.report.peaks import Peak, find
from harness.report.schema import Machine
from harness.shapes import PASS_PRODUCTS, shape_dims

# The built-ins, whose results every verify run is expected to hold (harness.adapters).
FRAMEWORK_ORDER: tuple[str, ...] = tuple(BUILTIN)
STATUS_RANK = {"error": 3, "fail": 2, "pass": 1, "skip": 0}


def ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    """Distinct values, known ones in `order` first, then the rest sorted."""
    seen = set(values)
    return [v for v in order if v in seen] + sorted(seen - set(order))


@functools.cache
def registry_order() -> tuple[str, ...]:
    """Frameworks in registry order (built-ins, then the plugins installed here); the
    built-ins alone when a plugin clashes (the report still renders, plugins sorted)."""
    try:
        return names()
    except RegistryError:
        return FRAMEWORK_ORDER


def frameworks(df: pd.DataFrame) -> list[str]:
    return ordered(df["framework"].astype(str), registry_order())


def dtypes(df: pd.DataFrame) -> list[str]:
    return ordered(df["dtype"].astype(str), tuple(DTYPES))


def devices(df: pd.DataFrame) -> list[str]:
    return ordered(df["device"].astype(str), DEVICES)


def passes(df: pd.DataFrame) -> list[str]:
    return ordered(df["pass_"].astype(str), tuple(PASS_PRODUCTS))


def geomean(values: Iterable[float]) -> float:
    arr = np.asarray([v for v in values if v > 0 and math.isfinite(v)], dtype=float)
    return float(np.exp(np.log(arr).mean())) if arr.size else math.nan


# --- correctness -------------------------------------------------------------------------


def correctness(table: pd.DataFrame) -> pd.DataFrame:
    """One row per machine x framework x device x mode x dtype x quantity.

    Counts per status, the worst (largest) error ratio of the compared rows, the cell's
    status (error > fail > pass > skip) and its distinct reasons.
    """
    rows = table[table["source"] == "verify"]
    keys = ["machine", "framework", "device", "mode", "dtype", "quantity"]
    out: list[dict[str, Any]] = []
    for key, g in rows.groupby(keys, sort=False):
        counts = g["status"].value_counts()
        status = max(counts.index, key=lambda s: STATUS_RANK.get(str(s), 0))
        ratios = g["ratio"][g["status"].isin(["pass", "fail"])].dropna()
        reasons = list(dict.fromkeys(r for r in g["reason"] if r))
        out.append({
            **dict(zip(keys, key, strict=True)),
            **{f"n_{s}": int(counts.get(s, 0)) for s in STATUS_RANK},
            "worst_ratio": float(ratios.max()) if len(ratios) else math.nan,
            "status": str(status),
            "reasons": reasons,
        })
    return pd.DataFrame(out, columns=[*keys, *(f"n_{s}" for s in STATUS_RANK),
                                      "worst_ratio", "status", "reasons"])


# --- timings -----------------------------------------------------------------------------


def timings(table: pd.DataFrame) -> pd.DataFrame:
    """asv time_ rows with GFLOP/s and spread (interquartile range over the median)."""
    t = table[(table["source"] == "asv") & (table["kind"] == "time")].copy()
    t = t.rename(columns={"case": "shape", "quantity": "pass_", "value": "time"})
    ok = t["status"] == "pass"
    t["gflops"] = np.where(ok & (t["time"] > 0), t["flops"] / t["time"] / 1e9, np.nan)
    t["spread"] = np.where(ok & (t["time"] > 0), (t["q75"] - t["q25"]) / t["time"], np.nan)
    t["size"] = t["shape"].map(_size).astype(float)  # M*K*N (times the batch)
    return t.reset_index(drop=True)


def _size(shape: str) -> float:
    try:
        return float(math.prod(shape_dims(shape)))
    except ValueError:
        return math.nan


CELL: list[str] = ["machine", "benchmark", "framework", "device", "dtype", "shape", "pass_"]


def latest(t: pd.DataFrame) -> pd.DataFrame:
    """One row per timing cell: the newest measurement (by run time), an n/a never
    replacing a measured value. Releases and commits side by side: `series`."""
    if t.empty:
        return t
    measured = (t["status"] != "skip").rename("_m")
    order = pd.concat([measured, t["stamp"]], axis=1).sort_values(
        ["_m", "stamp"], kind="stable").index
    return t.loc[order].drop_duplicates(CELL, keep="last").reset_index(drop=True)


def _version_key(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split(".")[:3])
    except ValueError:
        return (10**9,)


def series(rows: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Measured rows of cells (grouped by `keys`) measured under more than one release,
    environment or commit, each labelled (`series`: "0.6.2", "0.7.2 @1a2b3c4d"...) and
    ordered (`order`: by release, then run time)."""
    ok = rows[rows["status"] == "pass"].copy()
    ident = ["framework_version", "env", "commit"]
    if not ok.empty:
        ok["_ident"] = ok[ident].astype(str).agg("|".join, axis=1)
        distinct = ok.groupby(list(keys))["_ident"].transform("nunique")
        ok = ok[distinct > 1].drop(columns="_ident")
    if ok.empty:
        return ok.assign(series=pd.Series(dtype=str), order=pd.Series(dtype=float))
    commits = ok.groupby(list(keys))["commit"].transform("nunique")
    versions = ok.groupby(list(keys))["framework_version"].transform("nunique")
    envs = ok.groupby(list(keys))["env"].transform("nunique")
    labels = []
    for r, nc, nv, ne in zip(ok.itertuples(index=False), commits, versions, envs,
                             strict=True):
        parts = [r.framework_version] if r.framework_version else []
        if nc > 1 or not parts:
            parts.append(f"@{r.commit[:8]}" if r.commit else "?")
        if ne > 1 and nv <= 1 and nc <= 1:
            parts.append(f"[{r.env}]")
        labels.append(" ".join(parts))
    ok["series"] = labels
    first = ok.groupby("series")["stamp"].transform("min")
    ok["_v"] = ok["framework_version"].map(_version_key)
    ok = ok.assign(_first=first).sort_values(["_v", "_first", "stamp"], kind="stable")
    rank = {lab: i for i, lab in enumerate(dict.fromkeys(ok["series"]))}
    ok["order"] = ok["series"].map(rank).astype(float)
    return ok.drop(columns=["_v", "_first"])


def judge_rows(base: Any, new: Any) -> vd.Verdict:
    """NEW's timing against BASE's (two rows of the timing table) from their samples."""
    def samples(r: Any) -> list[float]:
        s = getattr(r, "samples", None)
        return list(s) if isinstance(s, tuple | list) else []

    def ci(r: Any) -> tuple[float, float] | None:
        lo, hi = float(getattr(r, "ci_lo", math.nan)), float(getattr(r, "ci_hi", math.nan))
        return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None

    smoke = bool(getattr(base, "quick", False)) or bool(getattr(new, "quick", False))
    b, n = samples(base), samples(new)
    if not b and not ci(base):
        b = [float(base.time)]
    if not n and not ci(new):
        n = [float(new.time)]
    return vd.judge(b, n, base_ci=ci(base), new_ci=ci(new), smoke=smoke)


def timing_benchmarks(t: pd.DataFrame) -> list[str]:
    return sorted(set(t["benchmark"]))


def speedups(t: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Each timing next to the baseline framework's on the same machine, dtype, shape and
    pass: on the same device when the baseline has it, else on the CPU.

    speedup = baseline time / time (> 1: faster than the baseline). `verdict`: whether the
    samples resolve the difference (harness.verdict: faster, slower, not resolved).
    `--quick` timings (one cold sample: smoke tests) are left out: no speedup from them.
    """
    ok = t[(t["status"] == "pass") & ~t["quick"].astype(bool)]
    key = ["machine", "benchmark", "dtype", "shape", "pass_"]
    cols = [*key, "framework", "device", "time", "base_time", "base_device", "speedup",
            "verdict"]
    stats = ["time", "samples", "ci_lo", "ci_hi", "quick"]
    base = ok[ok["framework"] == baseline][[*key, "device", *stats]]
    if base.empty:
        return pd.DataFrame(columns=cols)
    b = {c: f"base_{c}" for c in stats}
    out = ok.merge(base.rename(columns=b), on=[*key, "device"], how="left")
    out["base_device"] = np.where(out["base_time"].notna(), out["device"], "")
    on_cpu = base[base["device"] == "cpu"].drop(columns="device")
    out = out.merge(on_cpu.rename(columns={c: f"cpu_{c}" for c in stats}), on=key, how="left")
    fill = out["base_time"].isna() & out["cpu_time"].notna()
    for c in stats:
        out[f"base_{c}"] = out[f"base_{c}"].astype(object)
        out.loc[fill, f"base_{c}"] = out.loc[fill, f"cpu_{c}"]
    out.loc[fill, "base_device"] = "cpu"
    out = out.dropna(subset=["base_time"]).copy()
    out["base_time"] = out["base_time"].astype(float)
    out["speedup"] = out["base_time"] / out["time"]
    out["verdict"] = [
        judge_rows(SimpleNamespace(**{c: r[f"base_{c}"] for c in stats}),
                   SimpleNamespace(**{c: r[c] for c in stats})).state
        for r in out.to_dict("records")]
    return out[cols].reset_index(drop=True)


def speedup_geomeans(s: pd.DataFrame) -> pd.DataFrame:
    """Geometric mean speedup per machine x framework x device, per dtype and over all
    (dtype "all"), with the number of timings it averages and how many of them the
    samples resolve as faster or slower than the baseline."""
    out: list[dict[str, Any]] = []
    for (m, fw, dev), g in s.groupby(["machine", "framework", "device"], sort=False):
        for dt, gd in [*g.groupby("dtype", sort=False), ("all", g)]:
            out.append({"machine": m, "framework": fw, "device": dev, "dtype": dt,
                        "geomean": geomean(gd["speedup"]), "n": len(gd),
                        "n_faster": int((gd["verdict"] == vd.FASTER).sum()),
                        "n_slower": int((gd["verdict"] == vd.SLOWER).sum()),
                        "base_device": ",".join(sorted(set(gd["base_device"])))})
    return pd.DataFrame(out, columns=["machine", "framework", "device", "dtype", "geomean",
                                      "n", "n_faster", "n_slower", "base_device"])


# --- peaks -------------------------------------------------------------------------------


def device_model(m: Machine | None, device: str) -> tuple[str, int]:
    """The model string to match in the peak table, and the cores the run could use."""
    card = m.card if m else {}
    asv = m.asv if m else {}
    cores = card.get("cpu_affinity") or card.get("cpu_count") or asv.get("num_cpu") or 1
    try:
        n = max(1, int(cores))
    except (TypeError, ValueError):
        n = 1
    if device == "gpu":
        gpus = card.get("gpus") or []
        model = str(gpus[0]) if gpus else (m.name if m else "")
        return model, n
    return str(card.get("cpu") or asv.get("cpu") or ""), n


def peak_fractions(t: pd.DataFrame, machines: dict[str, Machine],
                   peaks: list[Peak]) -> tuple[pd.DataFrame, list[str]]:
    """Best GFLOP/s over shapes and passes per machine x device x framework x dtype, over
    the matched peak. Notes say which devices have no entry."""
    ok = t[t["status"] == "pass"].dropna(subset=["gflops"])
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    for (mname, dev), g in ok.groupby(["machine", "device"], sort=False):
        model, cores = device_model(machines.get(str(mname)), str(dev))
        entry = find(peaks, str(dev), model)
        if entry is None:
            notes.append(f"{mname} {dev}: no entry in the peak table matches "
                         f"{model or 'an unknown model'!r}; add one to configs/peaks.yaml")
            continue
        scale = cores if entry.per_core else 1
        for (fw, dt), gd in g.groupby(["framework", "dtype"], sort=False):
            if dt not in entry.peaks:
                continue
            best = gd.loc[gd["gflops"].idxmax()]
            peak = entry.peaks[str(dt)] * scale
            out.append({"machine": mname, "device": dev, "framework": fw, "dtype": dt,
                        "gflops": float(best["gflops"]), "shape": best["shape"],
                        "pass_": best["pass_"], "peak": peak, "fraction": best["gflops"] / peak,
                        "entry": entry.name, "model": model,
                        "cores": cores if entry.per_core else 0})
    cols = ["machine", "device", "framework", "dtype", "gflops", "shape", "pass_", "peak",
            "fraction", "entry", "model", "cores"]
    return pd.DataFrame(out, columns=cols), notes


# --- accuracy against speed --------------------------------------------------------------


def reference_shape(t: pd.DataFrame) -> tuple[str, str]:
    """The (shape, pass) the accuracy plot times: the largest shape measured for the most
    framework x dtype pairs, forward_backward when there (the check covers Y, dX, dW)."""
    ok = t[t["status"] == "pass"]
    ps = passes(ok)
    pass_ = "forward_backward" if "forward_backward" in ps else ps[0]
    g = ok[ok["pass_"] == pass_].groupby("shape").agg(
        n=("framework", "size"), size=("size", "max"))
    best = g.sort_values(["n", "size"], ascending=False).index[0]
    return str(best), pass_


def track_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """asv's tracked gradient error ratios (track_*error_ratio), worst per machine x
    framework x device x dtype: the accuracy of the benchmarked shapes themselves."""
    tr = table[(table["source"] == "asv") & (table["kind"] == "track")
               & table["benchmark"].str.contains("error_ratio") & (table["status"] == "pass")]
    keys = ["machine", "framework", "device", "dtype"]
    out = tr.groupby(keys, as_index=False)["value"].max()
    return out.rename(columns={"value": "worst_ratio"})


def accuracy_speed(corr: pd.DataFrame, t: pd.DataFrame,
                   track: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One point per machine x framework x device x dtype: the worst error ratio (verify's
    over every case and quantity; asv's tracked ratio where verify has none) and the median
    time at the reference shape."""
    keys = ["machine", "framework", "device", "dtype"]
    cols = [*keys, "worst_ratio", "ratio_from", "time", "shape", "pass_"]
    ok = t[t["status"] == "pass"]
    pinned = corr[corr["mode"] == "pinned"]  # the mode the benchmarks run in
    worst = pinned.dropna(subset=["worst_ratio"]).groupby(keys, as_index=False)[
        "worst_ratio"].max().assign(ratio_from="verify")
    worst = pd.concat([worst, track.assign(ratio_from="asv track")], ignore_index=True)
    worst = worst.drop_duplicates(keys, keep="first")
    if ok.empty or worst.empty:
        return pd.DataFrame(columns=cols), ""
    shape, pass_ = reference_shape(ok)
    times = ok[(ok["shape"] == shape) & (ok["pass_"] == pass_)]
    times = times.groupby(keys, as_index=False)["time"].min()
    note = ""
    merged = times.merge(worst, on=keys)
    if merged.empty:
        # Correctness and timings from different machines: the ratio does not depend on
        # the machine's speed, so pair them across machines and say so.
        w = worst.groupby(keys[1:], as_index=False).agg(
            worst_ratio=("worst_ratio", "max"), ratio_from=("ratio_from", "first"))
        merged = times.merge(w, on=keys[1:])
        note = (f"correctness ({', '.join(sorted(set(worst['machine'])))}) and timings "
                f"({', '.join(sorted(set(times['machine'])))}) come from different "
                "machines; they are paired by framework, device and dtype")
    merged["shape"], merged["pass_"] = shape, pass_
    return merged[cols], note
