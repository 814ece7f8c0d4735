"""build_report: load -> analyse -> sections -> report.html (Jinja2) and report.md.

The page is one self-contained file: CSS inline, figures as data: URIs, no script and no
remote asset, so it renders offline and can be attached to a CI run as is.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from harness import __version__
from harness.report import analysis as an
from harness.report import figures as fg
from harness.report import tables as tb
from harness.report.load import Loaded, Machine, load
from harness.report.load_selftest import Selftest
from harness.report.peaks import ENTRY_KEYS, Peak, load_peaks
from harness.results import atomic_write
from harness.selftest import SELFTEST_FILE


@dataclass
class Section:
    id: str
    title: str
    intro: str
    empty: str = ""  # why there is nothing to show (the section is still there)
    cards: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    items: list[tb.Table | fg.Figure] = field(default_factory=list)  # in page order
    lists: list[tuple[str, list[str]]] = field(default_factory=list)  # titled bullet lists
    notes: list[str] = field(default_factory=list)

    @property
    def tables(self) -> list[tb.Table]:
        return [i for i in self.items if isinstance(i, tb.Table)]

    @property
    def figures(self) -> list[fg.Figure]:
        return [i for i in self.items if isinstance(i, fg.Figure)]


def build_report(result_dirs: Sequence[Path], out_dir: Path, *, baseline: str = "numpy",
                 asv_results: Path | None = None,
                 peaks: Path | None = None) -> tuple[Path, Path]:
    """Write out_dir/report.html and out_dir/report.md; return their paths.

    result_dirs: verify output folders (verify.csv, run.json, and selftest.csv and
    selftest_fd.csv where the selftest ran into them) or selftest-only folders.
    asv_results: asv's results folder or one result file (default: asv.conf.json's
    results_dir, else results/).
    peaks: the peak table (default: configs/peaks.yaml). Raises ReportInputError for a
    missing folder or a corrupt or foreign file; missing data only empties a section.
    """
    data = load([Path(p) for p in result_dirs], asv_results)
    peak_table = load_peaks(peaks)
    sections = build_sections(data, baseline, peak_table)
    context = _context(data, sections, baseline, [str(p) for p in result_dirs])
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    md_env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"), autoescape=False,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    md_env.filters["md_table"] = tb.markdown
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    atomic_write(html_path, env.get_template("report.html.j2").render(**context))
    atomic_write(md_path, md_env.get_template("report.md.j2").render(**context))
    return html_path, md_path


def _context(data: Loaded, sections: list[Section], baseline: str,
             inputs: list[str]) -> dict[str, Any]:
    v = data.table[data.table["source"] == "verify"]
    counts = v["status"].value_counts()
    c = {s: int(counts.get(s, 0)) for s in ("pass", "fail", "skip", "error")}
    n_time = int(((data.table["source"] == "asv") & (data.table["kind"] == "time")
                  & (data.table["status"] == "pass")).sum())
    if not len(v):
        verdict = "no correctness results"
    elif c["fail"] or c["error"]:
        verdict = f"{c['fail']} failed and {c['error']} errored checks"
    else:
        verdict = "every compared output and gradient is within its bound"
    return {
        "sections": sections, "counts": c, "verdict": verdict, "n_timings": n_time,
        "bad": bool(c["fail"] or c["error"]), "baseline": baseline,
        "inputs": inputs or ["(none)"], "asv_source": data.asv_source, "notes": data.notes,
        "machines": list(data.machines), "version": __version__,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "frameworks": an.frameworks(data.table) if len(data.table) else [],
    }


def build_sections(data: Loaded, baseline: str, peaks: list[Peak]) -> list[Section]:
    t = an.timings(data.table)
    corr = an.correctness(data.table)
    machines = list(data.machines)
    timed = t[t["status"] == "pass"]
    no_timings = (f"No asv timings were found in {data.asv_source}. Run the benchmark suite "
                  "(asv run; see README) on each machine, then build the report again."
                  if t.empty else
                  "asv recorded no successful timing: every benchmark failed or was n/a "
                  "(see asv's output)." if timed.empty else "")
    return [
        _system(data),
        _correctness(data, corr, machines),
        _selftest(data),
        _timing_section(t, no_timings),
        _speedup(t, baseline, machines, no_timings),
        _gflops(t, no_timings),
        _peak(t, data.machines, peaks, machines, no_timings),
        _accuracy(data.table, corr, t, no_timings),
    ]


def _system(data: Loaded) -> Section:
    s = Section("system", "System", "One card per machine: what the results were measured "
                "on, from the harness's run.json and asv's machine.json (asv's machine "
                "name adds the thread count; both records of one box share a card).")
    s.cards = [(m.name, card_rows(m)) for m in data.machines.values()]
    if not s.cards:
        s.empty = ("No results were given: pass verify output folders and/or an asv "
                   "results folder.")
    return s


def card_rows(m: Machine) -> list[tuple[str, str]]:
    c, a, r = m.card, m.asv, m.run
    rows: list[tuple[str, str]] = [("CPU", str(c.get("cpu") or a.get("cpu") or "unknown"))]
    if c.get("cpu_count"):
        rows.append(("Cores", f"{c['cpu_count']} ({c.get('cpu_affinity', '?')} usable)"))
    elif a.get("num_cpu"):
        rows.append(("Cores", str(a["num_cpu"])))
    if m.asv_names and (m.asv_names != [m.name] or a.get("threads")):
        threads = f" ({a['threads']} CPU threads per framework)" if a.get("threads") else ""
        rows.append(("asv machine", ", ".join(m.asv_names) + threads))
    rows.append(("GPU", ", ".join(c.get("gpus") or []) or
                 ("none found by nvidia-smi" if c else str(a.get("gpu") or "")
                  or "unknown (no run.json)")))
    if str(a.get("ram", "")).isdigit():
        rows.append(("Memory", f"{int(a['ram']) / 2**30:.1f} GiB"))
    rows.append(("OS", str(c.get("platform") or a.get("os") or "unknown")))
    rows.append(("Python", str(c.get("python") or a.get("python") or "unknown")))
    fv = c.get("framework_versions") or r.get("framework_versions") or {}
    if fv:
        rows.append(("Frameworks", ", ".join(f"{k} {v or 'not installed'}"
                                             for k, v in fv.items())))
    for b in c.get("blas") or []:
        rows.append(("BLAS (numpy)", f"{b.get('internal_api')} {b.get('version')} "
                     f"({b.get('architecture')}, {b.get('threading_layer')}, "
                     f"{b.get('num_threads')} threads)"))
    if c:
        env = c.get("env") or {}
        rows.append(("Thread/numerics env", ", ".join(f"{k}={v}" for k, v in env.items())
                     or "none set (library defaults)"))
    if r.get("precision_modes"):
        rows.append(("Precision modes", modes_summary(r["precision_modes"])))
    if r:
        rows.append(("Correctness run", f"{r.get('started', '?')}, {r.get('wall_s', '?')} s, "
                     f"config {r.get('config', '?')}, seed {r.get('seed', '?')}, "
                     f"harness {r.get('harness_version', '?')}"))
    if m.asv_runs:
        rows.append(("asv runs", "; ".join(m.asv_runs)))
    rows.append(("Sources", "; ".join(m.sources)))
    return rows


def modes_summary(entries: Sequence[str]) -> str:
    """run.json's "cell: mode" (or "framework:device:mode") entries, grouped by mode: the
    commonest mode as a count, the others with their cells."""
    by: dict[str, list[str]] = {}
    for e in entries:
        cell, _, mode = str(e).rpartition(":")
        by.setdefault(mode.strip(), []).append(cell.strip())
    ranked = sorted(by.items(), key=lambda kv: -len(kv[1]))
    head, *rest = ranked
    parts = [f"{head[0]} ({'all ' if not rest else ''}{len(head[1])} cells)"]
    for mode, cells in rest:
        shown = ", ".join(cells[:6]) + (f" and {len(cells) - 6} more" if len(cells) > 6 else "")
        parts.append(f"{mode}: {shown}")
    return "; ".join(parts)


def _missing_frameworks(data: Loaded) -> list[str]:
    v = data.table[data.table["source"] == "verify"]
    expected = an.ordered(list(an.FRAMEWORK_ORDER) + list(v["framework"]), an.FRAMEWORK_ORDER)
    notes = []
    for m, g in v.groupby("machine", sort=False):
        missing = [f for f in expected if f not in set(g["framework"])]
        if missing:
            notes.append(f"{m}: no correctness results for {', '.join(missing)} "
                         "(not in its verify.csv)")
    return notes


def _correctness(data: Loaded, corr: pd.DataFrame, machines: list[str]) -> Section:
    s = Section("correctness", "Correctness matrix",
                "Every checked quantity (forward output Y, gradients dX and dW, and the "
                "further checks verify runs) against the float64 reference. Each cell shows "
                "the worst error ratio over the cases: the fraction of the derived bound the "
                "largest error used (pass ≤ 1). Green passed, red failed, grey skipped "
                "(hover for why), dark errored. A :default row is the framework's "
                "as-shipped precision mode rather than full precision.")
    if corr.empty:
        s.empty = ("No correctness results: pass verify output folders (from "
                   "`matmul-harness verify --out DIR`) to `matmul-harness report`.")
        return s
    multi = len(set(corr["machine"])) > 1
    for m in [m for m in machines if m in set(corr["machine"])]:
        cm = corr[corr["machine"] == m]
        s.items += [tb.correctness_table(cm, m if multi else ""),
                    fg.heatmap(cm, m if multi else "")]
        skipped = tb.all_skipped(cm)
        if skipped:
            s.notes.append(f"{m + ': ' if multi else ''}every check skipped on "
                           + "; ".join(f"{lab} ({why})" for lab, why in skipped))
    problems = tb.problem_list(data.table)
    if problems:
        s.lists.append(("Failures and errors", problems))
    skips = tb.skip_reasons(data.table)
    if skips:
        s.lists.append(("Skipped, and why", skips))
    notes = tb.precision_notes(data.table)
    if notes:
        s.lists.append(("Precision notes", notes))
    s.notes += _missing_frameworks(data)
    return s


def _selftest(data: Loaded) -> Section:
    """The checker's sensitivity, from the selftest files of the result folders: one table
    per distinct result (the selftest does not depend on the machine, so folders with the
    same counts share one)."""
    s = Section("selftest", "What a pass is worth",
                "How sensitive the checker behind the matrix above is: matmul-harness "
                "selftest plants bugs that real frameworks have shipped, each computed "
                "exactly and rounded to the dtype, and counts the seeds on which that "
                "checker reports fail. Green: caught every time (the control: never "
                "flagged); red: a required catch missed, or a false alarm; amber: caught "
                "only sometimes where the dtype cannot resolve the error; grey: the bug "
                "cannot occur in that dtype. Hover a cell for the median error ratio.")
    if not data.selftests:
        s.empty = ("No selftest results: none of the result folders has a selftest.csv. "
                   "Run `matmul-harness selftest --out DIR` into a verify output folder "
                   "(`matmul-harness run` does this itself), then build the report again.")
        return s
    same: dict[object, list[Selftest]] = {}
    for st in data.selftests:
        key = (None if st.detections is None else
               tuple((d.bug, d.dtype, d.label, tb.detection_status(d)) for d in st.detections),
               None if st.fd is None else (tb.fd_summary(st.fd), *tb.fd_disagreements(st.fd)))
        same.setdefault(key, []).append(st)
    for group in same.values():
        st = group[0]
        who = ", ".join(dict.fromkeys(g.machine for g in group))
        title = who if len(same) > 1 else ""
        prefix = f"{who}: " if len(same) > 1 else ""
        fd_line = (tb.fd_summary(st.fd) if st.fd is not None else
                   "No selftest_fd.csv: the reference was not checked against finite "
                   "differences.")
        source = "Source: " + "; ".join(
            f"{Path(g.folder) / SELFTEST_FILE} ({g.machine})" for g in group) + "."
        if st.detections is None:
            s.notes.append(f"{prefix}no selftest.csv, only selftest_fd.csv. {fd_line}")
        else:
            s.items.append(tb.selftest_table(st.detections, title))
            s.tables[-1].foot = [fd_line, source]
            s.notes += [prefix + line for line in tb.selftest_shortfalls(st.detections)]
        s.notes += [prefix + line for line in tb.fd_disagreements(st.fd or [])]
    return s


def _timing_section(t: pd.DataFrame, no_timings: str) -> Section:
    s = Section("timings", "Timings per dtype",
                "asv's median time per shape and pass (rows) and framework (columns), with "
                "GFLOP/s (2·M·K·N real operations per product, 8·M·K·N for complex; "
                "backward is two products, forward_backward three) and the spread of the "
                "samples (interquartile range / median).", empty=no_timings)
    if not no_timings:
        s.items = [*tb.timing_tables(t)]
        hidden = len(t) - len(tb.measured(t))
        if hidden:
            s.notes.append(f"{hidden} parameter combinations that asv did not run here (not "
                           "selected, or n/a such as a GPU cell without a GPU) are left out.")
    return s


def _speedup(t: pd.DataFrame, baseline: str, machines: list[str], no_timings: str) -> Section:
    s = Section("speedup", f"Speedup over {baseline}",
                f"{baseline}'s median time divided by each framework's, for the same "
                "machine, dtype, shape and pass; the geometric mean per framework and "
                "device, per dtype and over all dtypes.", empty=no_timings)
    if no_timings:
        return s
    sp = an.speedups(t, baseline)
    if sp.empty:
        present = ", ".join(an.frameworks(t[t["status"] == "pass"]))
        s.empty = (f"No successful timings of the baseline {baseline!r}, so there is nothing "
                   f"to compare against. Frameworks with timings: {present}. Choose one "
                   "with --baseline.")
        return s
    geo = an.speedup_geomeans(sp)
    ms = [m for m in machines if m in set(geo["machine"])]
    for m in ms:
        s.items += [tb.speedup_table(geo[geo["machine"] == m], baseline,
                                     m if len(ms) > 1 else ""),
                    fg.speedup_bars(geo, m, baseline, len(ms) > 1)]
    return s


def _gflops(t: pd.DataFrame, no_timings: str) -> Section:
    s = Section("gflops", "GFLOP/s against size",
                "Achieved GFLOP/s per framework (colour) and pass (line style) against the "
                "size of the product, (M·K·N)^(1/3), one panel per dtype.", empty=no_timings)
    if no_timings:
        return s
    ok = t[t["status"] == "pass"]
    pairs = list(ok[["machine", "device"]].drop_duplicates().itertuples(index=False))
    multi = len(set(ok["machine"])) > 1
    s.items = [fg.gflops_vs_size(t, p.machine, p.device, multi) for p in pairs]
    return s


def _peak(t: pd.DataFrame, machines: dict[str, Machine], peaks: list[Peak],
          order: list[str], no_timings: str) -> Section:
    s = Section("peak", "Fraction of peak",
                "The best GFLOP/s of each framework and dtype as a share of the device's "
                "peak from the peak table (configs/peaks.yaml; --peaks for another). CPU "
                "peaks are per core there, times the cores the run could use.",
                empty=no_timings)
    if no_timings:
        return s
    pk, notes = an.peak_fractions(t, machines, peaks)
    s.notes = notes
    if pk.empty:
        s.empty = ("No device in these results has an entry in the peak table. Add one "
                   f"per device model (keys: {', '.join(sorted(ENTRY_KEYS))}).")
        return s
    ms = [m for m in order if m in set(pk["machine"])]
    s.lists = [("Peaks used", tb.peak_devices(pk))]
    for m in ms:
        s.items.append(tb.peak_table(pk[pk["machine"] == m], m if len(ms) > 1 else ""))
        s.items += [fg.peak_bars(pk, m, dev, len(ms) > 1)
                    for dev in an.devices(pk[pk["machine"] == m])]
    return s


def _accuracy(table: pd.DataFrame, corr: pd.DataFrame, t: pd.DataFrame,
              no_timings: str) -> Section:
    s = Section("accuracy", "Accuracy against speed",
                "One point per framework and dtype: the worst error ratio over every case "
                "and quantity (lower is more accurate; asv's tracked ratio where there is no "
                "verify result) against the median time at one reference shape (further "
                "left is faster).")
    track = an.track_ratios(table)
    if corr.dropna(subset=["worst_ratio"]).empty and track.empty:
        s.empty = ("No compared correctness results (every check was skipped or is "
                   "missing) and no tracked error ratios from asv.")
        return s
    if no_timings:
        s.empty = no_timings
        return s
    acc, note = an.accuracy_speed(corr, t, track)
    if acc.empty:
        s.empty = ("No framework, device and dtype has both an error ratio and a timing.")
        return s
    if note:
        s.notes.append(note)
    ms = list(dict.fromkeys(acc["machine"]))
    for m in ms:
        am = acc[acc["machine"] == m]
        s.items += [fg.accuracy_scatter(am, m if len(ms) > 1 else ""),
                    tb.accuracy_table(am, m if len(ms) > 1 else "")]
    return s
