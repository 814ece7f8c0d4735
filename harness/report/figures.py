"""The report's figures, drawn with matplotlib's Agg canvas and inlined as base64 PNG.

`matplotlib.figure.Figure` is used directly, never pyplot: no global figure state, no GUI
backend is ever selected, and nothing needs closing. Colours are fixed per framework so a
framework looks the same in every figure.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize, to_rgba
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from harness.report import analysis
from harness.report.tables import TIMES, all_skipped, groups, sig
from harness.runfiles import QUANTITIES, label

# Framework styles by registry position (built-ins first, so theirs never change); a
# framework not registered here (a plugin installed only where the results came from) gets
# one of EXTRA by its name.
PALETTE = ("#4c72b0", "#dd5324", "#3a9a4f", "#e6a01a", "#8172b3", "#937860", "#da8bc3")
EXTRA = ("#8172b3", "#937860", "#da8bc3", "#8c8c8c")
MARKER_CYCLE = ("o", "s", "^", "D", "v", "P", "X")
DTYPE_COLORS = dict(zip(("float16", "bfloat16", "float32", "float64", "complex64",
                         "complex128"),
                        ("#e377c2", "#bcbd22", "#1f77b4", "#17becf", "#9467bd", "#8c564b"),
                        strict=True))
PASS_STYLES: dict[str, Literal["-", ":", "--", "-."]] = {
    "forward": "-", "backward": ":", "forward_backward": "--"}
DPI = 100


@dataclass(frozen=True)
class Figure:
    title: str
    src: str  # data:image/png;base64,...
    alt: str


def color(framework: str) -> str:
    order = analysis.registry_order()
    if framework in order and order.index(framework) < len(PALETTE):
        return PALETTE[order.index(framework)]
    return EXTRA[sum(map(ord, framework)) % len(EXTRA)]


def marker(framework: str) -> str:
    order = analysis.registry_order()
    if framework in order:
        return MARKER_CYCLE[order.index(framework) % len(MARKER_CYCLE)]
    return "o"


def _png(fig: MplFigure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight",
                metadata={"Software": None})  # no version string: same input, same bytes
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _grid(n: int) -> tuple[int, int]:
    cols = min(3, n)
    return math.ceil(n / cols), cols


PASS_CMAP = LinearSegmentedColormap.from_list("pass", ["#1a9850", "#a6d96a", "#fee08b"])
STATUS_COLORS = {"fail": "#d73027", "error": "#222222", "skip": "#e3e5e8", "": "#ffffff"}


def heatmap(corr: pd.DataFrame, machine: str = "") -> Figure:
    """One machine's worst error ratio per framework:device x quantity (rows) and dtype
    (columns): passes from green (far inside the bound) to yellow (near it), failures red,
    errors black, skips grey. Rows where everything skipped are left out (the section
    lists them)."""
    dts = analysis.dtypes(corr)
    rows, starts = _heatmap_rows(corr)
    norm = Normalize(vmin=-4, vmax=0, clip=True)
    rgba, texts = _heatmap_cells(corr, rows, dts, norm)
    fig = MplFigure(figsize=(0.95 * len(dts) + 3.2, 0.24 * len(rows) + 1.5),
                    layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(rgba, aspect="auto", interpolation="nearest")
    for i, j, text, status in texts:
        ax.text(j, i, text, ha="center", va="center", fontsize=6.5,
                color="white" if status in ("fail", "error") else "#222222",
                fontweight="bold" if status == "fail" else "normal")
    ax.set_xticks(range(len(dts)), dts, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(rows)),
                  [f"{label(fw, dev, mode)}  {q}" if i in starts else q
                   for i, (fw, dev, mode, q) in enumerate(rows)], fontsize=7)
    ax.tick_params(length=0)
    ax.set_xticks(np.arange(len(dts) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(rows) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.0)
    ax.tick_params(which="minor", length=0)
    for i in starts[1:]:
        ax.axhline(i - 0.5, color="#444444", linewidth=1.4)
    _heatmap_legend(fig, ax, norm, len(rows))
    where = f"{machine}: " if machine else ""
    fig.suptitle(f"{where}worst error ratio (fraction of the allowed error)", fontsize=10)
    return Figure(f"Correctness heatmap{' of ' + machine if machine else ''}", _png(fig),
                  "heatmap of the worst error ratio per framework, device, quantity, dtype")


def _heatmap_rows(corr: pd.DataFrame) -> tuple[list[tuple[str, str, str, str]], list[int]]:
    """(framework, device, mode, quantity) per row, and the rows that start a group."""
    skipped = {lab for lab, _ in all_skipped(corr)}
    rows: list[tuple[str, str, str, str]] = []
    starts: list[int] = []
    for fw, dev, mode in groups(corr):
        if label(fw, dev, mode) in skipped:
            continue
        g = corr[(corr["framework"] == fw) & (corr["device"] == dev) & (corr["mode"] == mode)]
        starts.append(len(rows))
        rows += [(fw, dev, mode, q) for q in analysis.ordered(g["quantity"].astype(str),
                                                         QUANTITIES)]
    return rows, starts


def _heatmap_cells(corr: pd.DataFrame, rows: list[tuple[str, str, str, str]], dts: list[str],
                   norm: Normalize) -> tuple[np.ndarray, list[tuple[int, int, str, str]]]:
    """The colour of every cell, and (row, column, text, status) of its label."""
    by = corr.set_index(["framework", "device", "mode", "dtype", "quantity"])
    rgba = np.ones((len(rows), len(dts), 4))
    texts: list[tuple[int, int, str, str]] = []
    for i, (fw, dev, mode, q) in enumerate(rows):
        for j, dt in enumerate(dts):
            status, ratio = "", math.nan
            if (fw, dev, mode, dt, q) in by.index:
                r = by.loc[(fw, dev, mode, dt, q)]
                status, ratio = str(r["status"]), float(r["worst_ratio"])
            if status == "pass" and math.isfinite(ratio):
                rgba[i, j] = PASS_CMAP(norm(math.log10(max(ratio, 1e-6))))
            else:
                rgba[i, j] = to_rgba(STATUS_COLORS.get(status, "#ffffff"))
            text = (sig(ratio, 2) if status in ("pass", "fail") and math.isfinite(ratio)
                    else {"skip": "skip", "error": "err"}.get(status, ""))
            texts.append((i, j, text, status))
    return rgba, texts


def _heatmap_legend(fig: MplFigure, ax: Axes, norm: Normalize, n_rows: int) -> None:
    """The colour bar of passing ratios, and the legend of the other statuses."""
    bar = fig.colorbar(ScalarMappable(norm, PASS_CMAP), ax=ax, fraction=0.05, pad=0.02,
                       ticks=[-4, -3, -2, -1, 0], shrink=min(1.0, 12 / max(1, n_rows)) ** 0.5)
    bar.ax.set_yticklabels(["≤1e-4", "1e-3", "0.01", "0.1", "1 = bound"], fontsize=7)
    bar.ax.set_title("pass", fontsize=7)
    handles = [Patch(color=STATUS_COLORS[s], label=label) for s, label in
               (("fail", "fail (> 1)"), ("error", "error"), ("skip", "skip"))]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=7.5,
               frameon=False)


def _plain_log(ax: Axes, axis: str = "y", base: float = 10) -> None:
    """Log scale with plain tick labels (0.5, 2, 64) instead of 10^x."""
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    if axis == "y":
        ax.set_yscale("log", base=base)
        ax.yaxis.set_major_formatter(fmt)
        if base == 10:
            ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            ax.yaxis.set_minor_formatter(fmt)
    else:
        ax.set_xscale("log", base=base)
        ax.xaxis.set_major_formatter(fmt)
        if base == 10:
            ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            ax.xaxis.set_minor_formatter(fmt)


def gflops_vs_size(t: pd.DataFrame, machine: str, device: str, multi: bool) -> Figure:
    g = t[(t["machine"] == machine) & (t["device"] == device) & (t["status"] == "pass")]
    dts = analysis.dtypes(g)
    nr, nc = _grid(len(dts))
    fig = MplFigure(figsize=(4.0 * nc, 3.1 * nr + 0.6), layout="constrained")
    axes = fig.subplots(nr, nc, squeeze=False, sharex=True)
    fws, ps = analysis.frameworks(g), analysis.passes(g)
    for ax, dt in zip(axes.flat, dts, strict=False):
        gd = g[g["dtype"] == dt]
        for fw in fws:
            for p in ps:
                s = gd[(gd["framework"] == fw) & (gd["pass_"] == p)]
                s = s.groupby("size", as_index=False)["gflops"].max()
                if len(s):
                    x = np.cbrt(s["size"])  # (M*K*N)^(1/3): the side of an equal cube
                    ax.plot(x, s["gflops"], PASS_STYLES.get(p, "-."), color=color(fw),
                            marker=marker(fw), markersize=3, linewidth=1.3)
        _plain_log(ax, "x", base=2)
        _plain_log(ax, "y")
        ax.set_title(dt, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(dts):]:
        ax.set_visible(False)
    for ax in axes.flat[:len(dts)]:
        _declutter(ax)
    for ax in axes[:, 0]:
        ax.set_ylabel("GFLOP/s", fontsize=9)
    for ax in axes[-1, :]:
        ax.set_xlabel("size (M·K·N)^(1/3)", fontsize=9)
    handles = [Line2D([], [], color=color(f), marker=marker(f), label=f) for f in fws]
    handles += [Line2D([], [], color="#444444", linestyle=PASS_STYLES.get(p, "-."), label=p)
                for p in ps]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8,
               frameon=False)
    where = f"{machine} {device}" if multi else device
    fig.suptitle(f"GFLOP/s against size, {where}", fontsize=11)
    return Figure(f"GFLOP/s against size: {where}", _png(fig),
                  f"GFLOP/s against matrix size per dtype on {where}")


def _declutter(ax: Axes) -> None:
    """Minor tick labels (2, 5, 20...) only on log axes spanning under three decades."""
    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() == "log" and lo > 0 and hi / lo > 300:
            axis.set_minor_formatter(NullFormatter())


def _bars(ax: Axes, groups: list[str], series: list[tuple[str, list[float], str]],
          fmt: str, base: float = 0.0) -> None:
    """Grouped bars from `base` (1 for ratios on a log axis: slower goes down)."""
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (name, values, col) in enumerate(series):
        heights = [v - base for v in values]
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, bottom=base,
                      label=name, color=col, edgecolor="white", linewidth=0.5)
        if len(groups) * len(series) <= 40:  # labels stay legible
            ax.bar_label(bars, [fmt.format(sig(v, 2)) if math.isfinite(v) else ""
                                for v in values], fontsize=6.5, padding=1)
    ax.set_xticks(x, groups, fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(True, axis="y", alpha=0.3)


def speedup_bars(geo: pd.DataFrame, machine: str, baseline: str, multi: bool) -> Figure:
    g = geo[geo["machine"] == machine]
    dts = analysis.dtypes(g[g["dtype"] != "all"])
    dts += ["all"] if len(dts) > 1 else []  # one dtype: "all dtypes" would repeat it
    keys = [(fw, dev) for fw in analysis.frameworks(g)
            for dev in analysis.devices(g[g["framework"] == fw])]
    by = g.set_index(["framework", "device", "dtype"])["geomean"]
    fig = MplFigure(figsize=(max(6.0, 1.1 * len(dts) + 2), 3.6), layout="constrained")
    ax = fig.add_subplot()
    series = [(label(fw, dev), [float(by.get((fw, dev, d), np.nan)) for d in dts],
               color(fw)) for fw, dev in keys]
    _bars(ax, [d if d != "all" else "all dtypes" for d in dts], series, "{}" + TIMES,
          base=1.0)
    for i, (_, dev) in enumerate(keys):  # GPU bars hatched, in the same colour
        if dev != "cpu":
            for patch in ax.containers[i]:
                patch.set_hatch("///")
    # A geometric mean the samples do not resolve throughout is drawn faint: no ranking
    # from an unresolved difference.
    if {"n_faster", "n_slower"} <= set(g.columns):
        ok = g.set_index(["framework", "device", "dtype"])
        for i, (fw, dev) in enumerate(keys):
            for patch, d in zip(ax.containers[i], dts, strict=False):
                k = (fw, dev, d)
                if k in ok.index and not (int(ok.loc[k, "n"]) == int(ok.loc[k, "n_faster"])
                                          or int(ok.loc[k, "n"]) == int(ok.loc[k, "n_slower"])):
                    patch.set_alpha(0.3)
    _plain_log(ax, "y")
    ax.axhline(1.0, color="#333333", linewidth=1)
    ax.set_ylabel(f"speedup over {baseline} (geo. mean; faint: not resolved)", fontsize=9)
    _declutter(ax)
    fig.legend(fontsize=8, ncol=min(4, len(keys)), loc="outside upper center", frameon=False)
    where = f" on {machine}" if multi else ""
    return Figure(f"Speedup over {baseline}{where}", _png(fig),
                  f"bar chart of the geometric-mean speedup over {baseline}{where}")


def peak_bars(pk: pd.DataFrame, machine: str, device: str, multi: bool) -> Figure:
    g = pk[(pk["machine"] == machine) & (pk["device"] == device)]
    dts = analysis.dtypes(g)
    by = g.set_index(["framework", "dtype"])["fraction"]
    fig = MplFigure(figsize=(max(6.0, 1.1 * len(dts) + 2), 3.4), layout="constrained")
    ax = fig.add_subplot()
    series = [(fw, [100 * float(by.get((fw, d), np.nan)) for d in dts], color(fw))
              for fw in analysis.frameworks(g)]
    _bars(ax, dts, series, "{}%")
    ax.set_ylabel("% of peak (best shape)", fontsize=9)
    ax.set_ylim(0, max(100.0, float(np.nanmax([v for s in series for v in s[1]] + [0])) * 1.1))
    fig.legend(fontsize=8, ncol=len(series), loc="outside upper center", frameon=False)
    where = f"{machine} {device}" if multi else device
    return Figure(f"Fraction of peak: {where}", _png(fig),
                  f"bar chart of the best fraction of peak per dtype on {where}")


def accuracy_scatter(acc: pd.DataFrame, machine: str = "") -> Figure:
    """Worst error ratio against time: marker = framework, fill = dtype, size = device."""
    shape, pass_ = str(acc["shape"].iloc[0]), str(acc["pass_"].iloc[0])
    fig = MplFigure(figsize=(8.0, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for r in acc.itertuples(index=False):
        gpu = r.device != "cpu"
        ax.scatter(r.time, max(r.worst_ratio, 1e-6), s=80 if gpu else 40,
                   marker=marker(r.framework), color=DTYPE_COLORS.get(r.dtype, "k"),
                   edgecolors=color(r.framework), linewidths=1.8 if gpu else 1.0, alpha=0.9)
    _plain_log(ax, "x")
    _plain_log(ax, "y")
    ax.axhline(1.0, color="#c0392b", linewidth=1, linestyle="--")
    ax.text(0.01, 1.0, "bound", color="#c0392b", va="bottom", fontsize=8,
            transform=ax.get_yaxis_transform())
    ax.set_xlabel(f"median time at {shape}, {pass_} (s; left is faster)", fontsize=9)
    ax.set_ylabel("worst error ratio, all cases (lower is more accurate)", fontsize=9)
    ax.grid(True, alpha=0.3)
    _declutter(ax)
    handles = [Line2D([], [], linestyle="", marker=marker(f), color="#bbbbbb",
                      markeredgecolor=color(f), markeredgewidth=1.5, label=f)
               for f in analysis.frameworks(acc)]
    handles += [Line2D([], [], linestyle="", marker="s", color=DTYPE_COLORS.get(d, "k"),
                       label=d) for d in analysis.dtypes(acc)]
    handles += [Line2D([], [], linestyle="", marker="o", color="#999999", markersize=ms,
                       label=dev) for dev, ms in (("cpu", 5), ("gpu", 8))
                if dev in set(acc["device"])]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    where = f" on {machine}" if machine else ""
    fig.suptitle(f"Accuracy against speed{where}", fontsize=10)
    return Figure(f"Accuracy against speed{where}", _png(fig),
                  "scatter of worst error ratio against median time per framework and dtype")


def release_trend(sr: pd.DataFrame, machine: str, device: str, framework: str,
                  multi: bool) -> Figure:
    """Median time per release (x, in release order) relative to the first release, one
    line per dtype, shape and pass; a filled marker where the samples resolve the change
    from the release before, a hollow one where they do not (or a smoke test)."""
    g = sr[(sr["machine"] == machine) & (sr["device"] == device)
           & (sr["framework"] == framework)]
    labels = list(dict.fromkeys(g.sort_values("order")["series"]))
    x_of = {lab: i for i, lab in enumerate(labels)}
    fig = MplFigure(figsize=(max(5.5, 1.3 * len(labels) + 3), 3.8), layout="constrained")
    ax = fig.add_subplot()
    lines = list(g.groupby(["dtype", "shape", "pass_"], sort=True))
    cmap = [DTYPE_COLORS.get(str(k[0]), "#444444") for k, _ in lines]
    for (key, cell), col in zip(lines, cmap, strict=True):
        cell = cell.sort_values("order")
        rows = list(cell.itertuples(index=False))
        base = float(rows[0].time)
        xs = [x_of[r.series] for r in rows]
        ys = [float(r.time) / base for r in rows]
        ax.plot(xs, ys, PASS_STYLES.get(str(key[2]), "-."), color=col, linewidth=1.1,
                alpha=0.8)
        for i, r in enumerate(rows):
            resolved = i > 0 and analysis.judge_rows(rows[i - 1], r).resolved
            ax.plot(xs[i], ys[i], marker="o", markersize=5, color=col,
                    markerfacecolor=col if resolved or i == 0 else "white")
            lo, hi = float(r.q25) / base, float(r.q75) / base
            if math.isfinite(lo) and math.isfinite(hi):
                ax.vlines(xs[i], lo, hi, color=col, linewidth=0.8, alpha=0.6)
    ax.set_xticks(range(len(labels)), [f"{framework} {lab}" for lab in labels], fontsize=8)
    ax.set_xlim(-0.4, len(labels) - 0.6)
    _plain_log(ax, "y")
    _declutter(ax)
    ax.axhline(1.0, color="#333333", linewidth=0.8)
    ax.set_ylabel(f"time / time of {framework} {labels[0]}", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    handles = [Line2D([], [], color=DTYPE_COLORS.get(d, "#444444"), label=d)
               for d in analysis.dtypes(g)]
    handles += [Line2D([], [], color="#444444", linestyle=PASS_STYLES.get(p, "-."), label=p)
                for p in analysis.passes(g)]
    handles += [Line2D([], [], linestyle="", marker="o", color="#444444", label="resolved"),
                Line2D([], [], linestyle="", marker="o", color="#444444",
                       markerfacecolor="white", label="not resolved")]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7.5, frameon=False)
    where = f"{machine} {device}" if multi else device
    fig.suptitle(f"{framework} across releases, {where} (median, quartile bars)", fontsize=10)
    return Figure(f"{framework} across releases: {where}", _png(fig),
                  f"median time of {framework} per release relative to the first, on {where}")
