"""The report's sections from asv's timings: times per dtype, speedups, GFLOP/s against
size, fractions of peak, and accuracy against speed. Each says why it is empty when the
timings (or what it needs beside them) are missing.
"""

from __future__ import annotations

import pandas as pd

from harness.report import analysis, figures, tables_timing
from harness.report.peaks import ENTRY_KEYS, Peak
from harness.report.schema import Machine
from harness.report.sections import Section


def timing_section(t: pd.DataFrame, no_timings: str) -> Section:
    s = Section("timings", "Timings per dtype",
                "asv's median time per shape and pass (rows) and framework (columns), with "
                "GFLOP/s (2·M·K·N real operations per product, 8·M·K·N for complex; "
                "backward is two products, forward_backward three) and the spread of the "
                "samples (interquartile range / median).", empty=no_timings)
    if not no_timings:
        s.items = [*tables_timing.timing_tables(t)]
        hidden = len(t) - len(tables_timing.measured(t))
        if hidden:
            s.notes.append(f"{hidden} parameter combinations that asv did not run here (not "
                           "selected, or n/a such as a GPU cell without a GPU) are left out.")
    return s


def speedup_section(t: pd.DataFrame, baseline: str, machines: list[str],
                    no_timings: str) -> Section:
    s = Section("speedup", f"Speedup over {baseline}",
                f"{baseline}'s median time divided by each framework's, for the same "
                "machine, dtype, shape and pass; the geometric mean per framework and "
                "device, per dtype and over all dtypes.", empty=no_timings)
    if no_timings:
        return s
    sp = analysis.speedups(t, baseline)
    if sp.empty:
        present = ", ".join(analysis.frameworks(t[t["status"] == "pass"]))
        s.empty = (f"No successful timings of the baseline {baseline!r}, so there is nothing "
                   f"to compare against. Frameworks with timings: {present}. Choose one "
                   "with --baseline.")
        return s
    geo = analysis.speedup_geomeans(sp)
    ms = [m for m in machines if m in set(geo["machine"])]
    for m in ms:
        s.items += [tables_timing.speedup_table(geo[geo["machine"] == m], baseline,
                                     m if len(ms) > 1 else ""),
                    figures.speedup_bars(geo, m, baseline, len(ms) > 1)]
    return s


def gflops_section(t: pd.DataFrame, no_timings: str) -> Section:
    s = Section("gflops", "GFLOP/s against size",
                "Achieved GFLOP/s per framework (colour) and pass (line style) against the "
                "size of the product, (M·K·N)^(1/3), one panel per dtype.", empty=no_timings)
    if no_timings:
        return s
    ok = t[t["status"] == "pass"]
    pairs = list(ok[["machine", "device"]].drop_duplicates().itertuples(index=False))
    multi = len(set(ok["machine"])) > 1
    s.items = [figures.gflops_vs_size(t, p.machine, p.device, multi) for p in pairs]
    return s


def peak_section(t: pd.DataFrame, machines: dict[str, Machine], peaks: list[Peak],
          order: list[str], no_timings: str) -> Section:
    s = Section("peak", "Fraction of peak",
                "The best GFLOP/s of each framework and dtype as a share of the device's "
                "peak from the peak table (configs/peaks.yaml; --peaks for another). CPU "
                "peaks are per core there, times the cores the run could use.",
                empty=no_timings)
    if no_timings:
        return s
    pk, notes = analysis.peak_fractions(t, machines, peaks)
    s.notes = notes
    if pk.empty:
        s.empty = ("No device in these results has an entry in the peak table. Add one "
                   f"per device model (keys: {', '.join(sorted(ENTRY_KEYS))}).")
        return s
    ms = [m for m in order if m in set(pk["machine"])]
    s.lists = [("Peaks used", tables_timing.peak_devices(pk))]
    for m in ms:
        s.items.append(tables_timing.peak_table(pk[pk["machine"] == m], m if len(ms) > 1 else ""))
        s.items += [figures.peak_bars(pk, m, dev, len(ms) > 1)
                    for dev in analysis.devices(pk[pk["machine"] == m])]
    return s


def accuracy_section(table: pd.DataFrame, corr: pd.DataFrame, t: pd.DataFrame,
              no_timings: str) -> Section:
    s = Section("accuracy", "Accuracy against speed",
                "One point per framework and dtype: the worst error ratio over every case "
                "and quantity (lower is more accurate; asv's tracked ratio where there is no "
                "verify result) against the median time at one reference shape (further "
                "left is faster).")
    track = analysis.track_ratios(table)
    if corr.dropna(subset=["worst_ratio"]).empty and track.empty:
        s.empty = ("No compared correctness results (every check was skipped or is "
                   "missing) and no tracked error ratios from asv.")
        return s
    if no_timings:
        s.empty = no_timings
        return s
    acc, note = analysis.accuracy_speed(corr, t, track)
    if acc.empty:
        s.empty = ("No framework, device and dtype has both an error ratio and a timing.")
        return s
    if note:
        s.notes.append(note)
    ms = list(dict.fromkeys(acc["machine"]))
    for m in ms:
        am = acc[acc["machine"] == m]
        s.items += [figures.accuracy_scatter(am, m if len(ms) > 1 else ""),
                    tables_timing.accuracy_table(am, m if len(ms) > 1 else "")]
    return s


def releases_section(t: pd.DataFrame, table: pd.DataFrame) -> Section:
    """Every timing and tracked accuracy cell measured under more than one release (or
    commit, or environment): side by side, judged column against column."""
    s = Section("releases", "Across releases and commits",
                "Cells measured under more than one framework release, asv environment or "
                "commit, side by side in release order (then run time). Each timing is "
                "judged against the column before it from the samples: faster or slower "
                "where a Mann-Whitney U test resolves the difference (p < 0.01), not "
                "resolved (and not coloured) where it does not; --quick smoke timings are "
                "never judged. Runs made at different times on a shared machine also differ "
                "by drift: measure releases in one interleaved run (bench --versions "
                "--rounds N) or commits with `matmul-harness compare --rounds N`.")
    sr = analysis.series(t, analysis.CELL)
    tracks = table[(table["source"] == "asv") & (table["kind"] == "track")]
    acc_keys = ["machine", "benchmark", "framework", "device", "dtype", "case"]
    sa = analysis.series(tracks, acc_keys) if len(tracks) else tracks
    if sr.empty and sa.empty:
        s.empty = ("No cell was measured under more than one release or commit. To follow "
                   "a framework across releases: matmul-harness bench --versions "
                   "jax==0.6.2,jax==0.7.2 (see README).")
        return s
    if not sr.empty:
        s.items += [*tables_timing.release_tables(sr)]
        multi = sr["machine"].nunique() > 1
        for p in sr[["machine", "device", "framework"]].drop_duplicates().itertuples(
                index=False):
            s.items.append(figures.release_trend(sr, p.machine, p.device, p.framework, multi))
    if not sa.empty:
        s.items += [*tables_timing.accuracy_release_tables(sa)]
    return s
