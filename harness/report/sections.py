"""The report's sections: what each holds and says when it has nothing to show.

A `Section` is the same structure for both outputs (report.html.j2 and report.md.j2 draw
it). The machines, correctness and selftest sections are here; sections_timing.py builds
the ones from asv's timings, render.py puts them in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.report import analysis, figures, tables, tables_selftest
from harness.report.load import Loaded
from harness.report.load_selftest import Selftest, read_sampled
from harness.report.schema import Machine
from harness.runfiles import SAMPLED_FILE, SELFTEST_FILE


@dataclass
class Section:
    id: str
    title: str
    intro: str
    empty: str = ""  # why there is nothing to show (the section is still there)
    cards: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    items: list[tables.Table | figures.Figure] = field(default_factory=list)  # in page order
    lists: list[tuple[str, list[str]]] = field(default_factory=list)  # titled bullet lists
    notes: list[str] = field(default_factory=list)

    @property
    def tables(self) -> list[tables.Table]:
        return [i for i in self.items if isinstance(i, tables.Table)]

    @property
    def figures(self) -> list[figures.Figure]:
        return [i for i in self.items if isinstance(i, figures.Figure)]


def system_section(data: Loaded) -> Section:
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
    if c.get("plugins"):
        rows.append(("Plugins", ", ".join(f"{k} ({v})" for k, v in c["plugins"].items())))
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
    expected = analysis.ordered(list(analysis.FRAMEWORK_ORDER) + list(v["framework"]),
                                analysis.FRAMEWORK_ORDER)
    notes = []
    for m, g in v.groupby("machine", sort=False):
        missing = [f for f in expected if f not in set(g["framework"])]
        if missing:
            notes.append(f"{m}: no correctness results for {', '.join(missing)} "
                         "(not in its verify.csv)")
    return notes


def correctness_section(data: Loaded, corr: pd.DataFrame, machines: list[str]) -> Section:
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
        s.items += [tables.correctness_table(cm, m if multi else ""),
                    figures.heatmap(cm, m if multi else "")]
        skipped = tables.all_skipped(cm)
        if skipped:
            s.notes.append(f"{m + ': ' if multi else ''}every check skipped on "
                           + "; ".join(f"{lab} ({why})" for lab, why in skipped))
    problems = tables.problem_list(data.table)
    if problems:
        s.lists.append(("Failures and errors", problems))
    skips = tables.skip_reasons(data.table)
    if skips:
        s.lists.append(("Skipped, and why", skips))
    notes = tables.verify_notes(data.table)
    if notes:
        s.lists.append(("Precision notes", notes))
    s.notes += _missing_frameworks(data)
    return s


def selftest_section(data: Loaded) -> Section:
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
        same.setdefault(tables_selftest.result_key(st), []).append(st)
    for group in same.values():
        st = group[0]
        who = ", ".join(dict.fromkeys(g.machine for g in group))
        title = who if len(same) > 1 else ""
        prefix = f"{who}: " if len(same) > 1 else ""
        fd_line = (tables_selftest.fd_summary(st.fd) if st.fd is not None else
                   "No selftest_fd.csv: the reference was not checked against finite "
                   "differences.")
        source = "Source: " + "; ".join(
            f"{Path(g.folder) / SELFTEST_FILE} ({g.machine})" for g in group) + "."
        if st.detections is None:
            s.notes.append(f"{prefix}no selftest.csv, only selftest_fd.csv. {fd_line}")
        else:
            s.items.append(tables_selftest.selftest_table(st.detections, title))
            s.tables[-1].foot = [fd_line, source]
            s.notes += [prefix + line
                        for line in tables_selftest.selftest_shortfalls(st.detections)]
        sampled = read_sampled(Path(st.folder))
        if sampled:
            s.items.append(tables_selftest.sampled_table(sampled))
            s.tables[-1].foot = [f"Source: {Path(st.folder) / SAMPLED_FILE}."]
            s.notes += [prefix + "sampled check: " + line
                        for line in tables_selftest.selftest_shortfalls(sampled)]
        s.notes += [prefix + line for line in tables_selftest.fd_disagreements(st.fd or [])]
    return s
