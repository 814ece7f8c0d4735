"""`matmul-harness report`: generation from fixture results (full and partial), the
self-contained HTML, Markdown that parses back to the same numbers, and bad input.

Fixtures (tests/fixtures/report, written by tools/report_fixtures.py): `full` has two
machines (a CPU box with a failing cell, a GPU box with an erroring cell), their verify
output and asv results, one machine with two asv runs of which the newer must win;
`partial` is correctness only, one machine, tensorflow missing, no asv results; `merged`
has one box under verify's name (vm-cpu) and bench's asv name (vm-cpu-2t, recording
host_machine vm-cpu), plus an asv machine from before host_machine was recorded.
`full/verify-cpu` also holds selftest.csv and selftest_fd.csv, written by the real
`harness.selftest` at 3 trials, as `matmul-harness run` leaves them beside verify's files.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import itertools
import json
import math
import re
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.report import ReportInputError, build_report
from harness.report.load import load
from harness.report.load_asv import flops
from harness.report.peaks import default_path, find, load_peaks, validate
from harness.runfiles import Detection, FDResult
from tests.conftest import chdir

FIX = Path(__file__).parent / "fixtures" / "report"
FULL_DIRS = [FIX / "full" / "verify-cpu", FIX / "full" / "verify-gpu"]
ASV = FIX / "full" / "asv"
FRAMEWORKS = ("numpy", "torch", "jax", "tensorflow")
SECTIONS = ("system", "correctness", "selftest", "timings", "releases", "speedup", "gflops", "peak",
            "accuracy")
NEW_RUN = ASV / "ci-box-cpu" / "a1b2c3d4-existing-py_usr_local_bin_python3.11.json"


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    html, md = build_report(FULL_DIRS, tmp_path_factory.mktemp("full"), asv_results=ASV)
    return html.read_text(encoding="utf-8"), md.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def partial(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    # An empty working directory: no asv.conf.json and no results/, so no asv results.
    with chdir(tmp_path_factory.mktemp("cwd")):
        html, md = build_report([FIX / "partial" / "verify-cpu"],
                                tmp_path_factory.mktemp("partial"))
    return html.read_text(encoding="utf-8"), md.read_text(encoding="utf-8")


def sections(html: str) -> dict[str, str]:
    parts = re.split(r'<section id="([a-z]+)">', html)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def md_tables(md: str) -> list[tuple[str, str, list[dict[str, str]]]]:
    """(## section, ### title, rows as {column: cell}) for every GFM table."""
    out: list[tuple[str, str, list[dict[str, str]]]] = []
    section = title = ""
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section, title = line[3:], ""
        elif line.startswith("### "):
            title = line[4:]
        elif line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[:\-|]+\|$",
                                                                        lines[i + 1]):
            header = _cells(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(header, _cells(lines[i]), strict=True)))
                i += 1
            out.append((section, title, rows))
            continue
        i += 1
    return out


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def number(cell: str) -> float:
    m = re.search(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", cell)
    assert m, f"no number in cell {cell!r}"
    return float(m.group())


def close(parsed: float, exact: float, what: str) -> None:
    # Cells carry three significant digits.
    assert math.isclose(parsed, exact, rel_tol=6e-3), f"{what}: {parsed} != {exact}"


# --- the full report ---------------------------------------------------------------------


def test_full_report_has_every_section_in_order(full: tuple[str, str]) -> None:
    html, md = full
    assert re.findall(r'<section id="([a-z]+)">', html) == list(SECTIONS)
    for name, body in sections(html).items():
        assert 'class="empty"' not in body, f"section {name} is empty with full inputs"
    assert [h[3:] for h in md.splitlines() if h.startswith("## ")] == [
        "System", "Correctness matrix", "What a pass is worth", "Timings per dtype",
        "Across releases and commits", "Speedup over numpy",
        "GFLOP/s against size", "Fraction of peak", "Accuracy against speed"]


def test_html_is_self_contained(full: tuple[str, str]) -> None:
    html, _ = full
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//|@import|<script|<link", html, re.I)
    assert "http://" not in html and "https://" not in html


def test_html_has_inline_figures_and_names_every_framework(full: tuple[str, str]) -> None:
    from PIL import Image

    html, _ = full
    figures = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(figures) >= 4
    for data in figures:
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            assert im.format == "PNG" and im.width > 200 and im.height > 100
    text = re.sub(r"<[^>]+>", " ", html)
    for fw in FRAMEWORKS:
        assert fw in text
    s = sections(html)
    assert 'class="fail"' in s["correctness"] and 'class="error"' in s["correctness"]
    for name in ("correctness", "speedup", "gflops", "peak", "accuracy"):
        assert "data:image/png;base64," in s[name], f"no figure in {name}"


def test_system_cards_name_cpu_gpu_versions_and_blas(full: tuple[str, str]) -> None:
    card = sections(full[0])["system"]
    for text in ("ci-box-cpu", "AMD EPYC 7B13", "NVIDIA H100 80GB HBM3", "torch 2.13.0+cpu",
                 "openblas 0.3.31", "OMP_NUM_THREADS=16", "tf32: jax:gpu", "a1b2c3d4"):
        assert text in card


def test_markdown_correctness_matrix_parses_back_to_verify_csv(full: tuple[str, str]) -> None:
    worst: dict[tuple[str, str, str, str], float] = {}
    with (FIX / "full" / "verify-cpu" / "verify.csv").open() as f:
        for r in csv.DictReader(f):
            if r["status"] in ("pass", "fail"):
                k = (r["framework"], r["device"], r["dtype"], r["quantity"])
                worst[k] = max(worst.get(k, 0.0), float(r["ratio"]))
    tables = [rows for sec, title, rows in md_tables(full[1])
              if sec == "Correctness matrix" and title == "ci-box-cpu"]
    assert len(tables) == 1
    seen = 0
    for row in tables[0]:
        fw, dev = row["framework:device"].split(":")
        q = row["quantity"]
        for dtype, cell in row.items():
            if dtype in ("framework:device", "quantity") or "skip" in cell:
                continue
            close(number(cell), worst[(fw, dev, dtype, q)], f"{fw}:{dev} {q} {dtype}")
            seen += 1
    assert seen == 4 * 6 * 3 - 3  # numpy has no bfloat16
    fail = next(r for r in tables[0]
                if r["framework:device"] == "tensorflow:cpu" and r["quantity"] == "dW")
    assert fail["float16"].startswith("❌") and "1 failed" in fail["float16"]
    # The all-skipped GPU rows of a CPU machine are listed, not drawn.
    assert {r["framework:device"] for r in tables[0]} == {f"{f}:cpu" for f in FRAMEWORKS}


def _asv_times(path: Path) -> dict[tuple[str, ...], float]:
    data = json.loads(path.read_text())
    entry = dict(zip(data["result_columns"], data["results"]["matmul.TimeMatmul.time_matmul"],
                     strict=False))
    combos = itertools.product(*[[v.strip("'") for v in p] for p in entry["params"]])
    return {c: v for c, v in zip(combos, entry["result"], strict=True)
            if v is not None and not math.isnan(v)}


def test_markdown_speedups_parse_back_to_the_newest_asv_run(full: tuple[str, str]) -> None:
    times = _asv_times(NEW_RUN)
    rows = next(rows for sec, title, rows in md_tables(full[1])
                if sec == "Speedup over numpy" and title == "ci-box-cpu")
    for row in rows:
        fw, dev = row["framework:device"].split(":")
        for dtype in ("float32", "float64", "complex64"):
            ratios = [times[("numpy", dev, dtype, s, p)] / t
                      for (f, d, dt, s, p), t in times.items()
                      if (f, d, dt) == (fw, dev, dtype) and ("numpy", dev, dtype, s, p) in times]
            exact = math.exp(sum(map(math.log, ratios)) / len(ratios))
            close(number(row[dtype]), exact, f"speedup {fw}:{dev} {dtype}")


def test_markdown_timings_parse_back(full: tuple[str, str]) -> None:
    times = _asv_times(NEW_RUN)
    rows = next(rows for sec, _, rows in md_tables(full[1]) if sec == "Timings per dtype")
    unit = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}
    checked = 0
    for row in rows:  # bfloat16 on ci-box-cpu, cpu: the first timing table
        for fw in ("torch", "tensorflow"):
            m = re.match(r"([\d.]+) (s|ms|µs|ns) · ([\d.]+) (G|T)FLOP/s", row[fw])
            assert m, row[fw]
            t = times[(fw, "cpu", "bfloat16", row["shape (MxKxN)"], row["pass"])]
            close(float(m.group(1)) * unit[m.group(2)], t, f"time {fw} {row}")
            gf = flops(row["shape (MxKxN)"], row["pass"], "bfloat16") / t / 1e9
            close(float(m.group(3)) * (1e3 if m.group(4) == "T" else 1), gf, "GFLOP/s")
            checked += 1
    assert checked == 2 * 3 * 3
    assert any(r["jax"] == "failed" for r in rows)  # the null result in asv
    assert all(r["numpy"] == "n/a" for r in rows)  # NaN: numpy has no bfloat16


def test_two_commits_are_both_kept_and_the_newest_is_the_latest_view() -> None:
    from harness.report import analysis

    data = load(FULL_DIRS, ASV)
    t = data.table
    cpu = t[(t["machine"] == "ci-box-cpu") & (t["kind"] == "time")]
    # The commit is part of the identity: both runs stay, one row per cell each.
    assert not cpu.duplicated(["benchmark", "framework", "device", "dtype", "case",
                               "quantity", "commit"]).any()
    assert set(cpu["commit"].str[:8]) == {"0ddba11c", "a1b2c3d4"}
    assert len(cpu) == 2 * 4 * 1 * 4 * 3 * 3
    latest = analysis.latest(analysis.timings(t))
    latest = latest[latest["machine"] == "ci-box-cpu"]
    assert set(latest["origin"]) == {str(NEW_RUN)}
    assert len(latest) == 4 * 1 * 4 * 3 * 3
    assert {"track", "peakmem"} <= set(t["kind"])
    assert len(data.machines["ci-box-cpu"].asv_runs) == 2


# --- what a pass is worth: the selftest ---------------------------------------------------

SELFTEST = FIX / "full" / "verify-cpu"


def html_rows(section: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """(row header, [(css class, text)]) for every body row of the tables in `section`."""
    out = []
    for tr in re.findall(r"<tr(?: class=\"first\")?>(<td.*?)</tr>", section):
        cells = re.findall(r'<td(?: class="([^"]*)")?[^>]*>(.*?)</td>', tr)
        head = re.sub(r"<small>.*", "", cells[0][1])
        out.append((head, [(css, re.sub(r"<[^>]+>", "", text)) for css, text in cells[1:]]))
    return out


def selftest_counts(path: Path) -> dict[tuple[str, str], str]:
    with path.open(encoding="utf-8") as f:
        return {(r["bug"], r["dtype"]): (f"{r['detected']}/{r['trials']}"
                                         if r["applies"] == "True" else "n/a")
                for r in csv.DictReader(f)}


def test_selftest_section_shows_selftest_csv(full: tuple[str, str]) -> None:
    html, md = full
    expected = selftest_counts(SELFTEST / "selftest.csv")
    dtypes = list(dict.fromkeys(dt for _, dt in expected))
    section = sections(html)["selftest"]
    assert re.findall(r"<th>([^<]+)</th>", section) == ["planted bug", *dtypes]
    rows = html_rows(section)
    assert [bug for bug, _ in rows] == list(dict.fromkeys(b for b, _ in expected))
    for bug, cells in rows:
        for dt, (css, text) in zip(dtypes, cells, strict=True):
            assert text == expected[(bug, dt)], (bug, dt)
            # 3 seeds, real checker: every bug caught, no false alarm, conjugation n/a.
            assert css == ("skip" if text == "n/a" else "pass"), (bug, dt, css)
    assert "12/12 gradients agree with the reference, worst relative error" in section
    assert "per-element test (float16 and bfloat16 also by the bias test)" in section
    assert "false-alarm rate" in section
    assert '<a href="#selftest">What a pass is worth</a>' in html
    nav = re.findall(r'<a href="#([a-z]+)">', html)
    assert nav.index("selftest") == nav.index("correctness") + 1
    # The Markdown twin: the same counts, and the finite-difference line.
    tables = [rows for sec, _, rows in md_tables(md) if sec == "What a pass is worth"]
    assert len(tables) == 1
    parsed = {(r["planted bug"], dt): r[dt].removeprefix("✅ ")
              for r in tables[0] for dt in dtypes}
    assert parsed == expected
    assert "12/12 gradients agree with the reference" in md.split("## What a pass")[1]


def planted(bug: str, dtype: str, trials: int, detected: int, ratio: float, z: float,
            applies: bool) -> Detection:
    """The selftest's record of the catalogue's `bug`, with made-up counts."""
    from harness import selftest as st

    return st.detection({b.name: b for b in st.BUGS}[bug], dtype, trials, detected, ratio, z,
                        applies)


def _planted(tmp_path: Path) -> Path:
    """A verify folder whose selftest fell short in every way the report colours."""
    from harness import selftest as st

    nan = math.nan
    results = [
        planted("none (control)", "float32", 10, 1, 0.9, nan, True),  # false alarm
        planted("none (control)", "bfloat16", 10, 0, 0.3, 1.0, True),
        planted("missing transpose", "float32", 10, 7, 5.0, nan, True),  # missed 3
        planted("missing transpose", "bfloat16", 10, 10, 5e4, 1e4, True),
        planted("scaling by 1+1e-3", "float32", 10, 10, 167.0, nan, True),
        planted("scaling by 1+1e-3", "bfloat16", 10, 4, 0.41, 2.5, True),  # amber
        planted("missing conjugation", "float32", 0, 0, nan, nan, False),
        planted("missing conjugation", "bfloat16", 0, 0, nan, nan, False),
    ]
    fd = [FDResult("square", "float64", "dX", 2e-13, True, 128),
          FDResult("square", "float64", "dW", 0.5, False, 128)]
    d = tmp_path / "run"
    shutil.copytree(FIX / "partial" / "verify-cpu", d)
    st.write(results, fd, d)  # the selftest's own writer: the loader must read its format
    return d


def test_selftest_colours_shortfalls_and_markdown(tmp_path: Path) -> None:
    d = _planted(tmp_path)
    with chdir(tmp_path):
        html, md = build_report([d], tmp_path / "out")
    section = sections(html.read_text(encoding="utf-8"))["selftest"]
    assert re.findall(r"<th>([^<]+)</th>", section) == ["planted bug", "bfloat16", "float32"]
    cells = {bug: dict(zip(("bfloat16", "float32"), c, strict=True))
             for bug, c in html_rows(section)}
    assert cells["none (control)"] == {"float32": ("fail", "1/10"),
                                       "bfloat16": ("pass", "0/10")}
    assert cells["missing transpose"] == {"float32": ("fail", "7/10"),
                                          "bfloat16": ("pass", "10/10")}
    # 1e-3 is below one ulp of bfloat16: not required there, so a partial catch is amber.
    assert cells["scaling by 1+1e-3"] == {"float32": ("pass", "10/10"),
                                          "bfloat16": ("partial", "4/10")}
    assert cells["missing conjugation"] == {"float32": ("skip", "n/a"),
                                            "bfloat16": ("skip", "n/a")}
    alarm = planted("none (control)", "float32", 10, 1, 0, 0, True).shortfall
    miss = planted("missing transpose", "float32", 10, 7, 0, 0, True).shortfall
    assert alarm and alarm.startswith("false alarm: the correct float32 result at ")
    assert alarm.endswith(" was flagged 1/10 times") and alarm in section
    assert miss and miss.startswith("missing transpose in float32 at ") and miss in section
    assert "caught only 7/10 times; the checker must catch it every time" in miss
    assert "1/2 gradients agree" in section
    assert "reference dW of square (float64) differs from finite differences" in section
    text = md.read_text(encoding="utf-8")
    rows = next(rows for sec, _, rows in md_tables(text) if sec == "What a pass is worth")
    got = {r["planted bug"]: (r["float32"], r["bfloat16"]) for r in rows}
    assert got == {"none (control)": ("❌ 1/10", "✅ 0/10"),
                   "missing transpose": ("❌ 7/10", "✅ 10/10"),
                   "scaling by 1+1e-3": ("✅ 10/10", "🟡 4/10"),
                   "missing conjugation": ("n/a", "n/a")}
    assert f"- {alarm}" in text


def test_folders_with_the_same_selftest_share_one_table(tmp_path: Path) -> None:
    fell_short = _planted(tmp_path)
    twin = tmp_path / "twin"
    shutil.copytree(SELFTEST, twin)
    with chdir(tmp_path):
        html, _ = build_report([SELFTEST, twin, fell_short], tmp_path / "out")
    s = sections(html.read_text(encoding="utf-8"))["selftest"]
    assert re.findall(r"<h3>([^<]+)</h3>", s) == ["ci-box-cpu", "laptop-cpu"]
    assert s.count("<table") == 2
    assert f"{twin / 'selftest.csv'} (ci-box-cpu)" in s  # the twin joins the first table
    miss = planted("missing transpose", "float32", 10, 7, 0, 0, True).shortfall
    assert f"laptop-cpu: {miss}" in s


def banner(html: str) -> tuple[str, str]:
    """(css class, text) of the header's verdict line."""
    m = re.search(r'<div class="(verdict[^"]*)">([^<]*)</div>', html)
    assert m, "no verdict in the header"
    return m.group(1), m.group(2)


def test_a_selftest_shortfall_turns_the_header_red(tmp_path: Path) -> None:
    # Every verify check passes: only the selftest (missed, false alarm, FD) is short.
    d = _planted(tmp_path)
    with chdir(tmp_path):
        html, md = build_report([d], tmp_path / "out")
    css, text = banner(html.read_text(encoding="utf-8"))
    assert css == "verdict bad"
    assert text == ("every compared output and gradient is within its bound; the selftest "
                    "fell short: 1 required planted bug not always caught, 1 false alarm on "
                    "the control row, 1 reference gradient off finite differences")
    assert md.read_text(encoding="utf-8").startswith(f"# matmul-harness report\n\n**❌ {text}**")


@pytest.mark.parametrize("short", ["none", "missed", "false alarm", "finite differences"])
def test_each_selftest_shortfall_alone_fails_the_header(tmp_path: Path, short: str) -> None:
    from harness import selftest as st

    nan = math.nan
    results = [
        planted("none (control)", "float32", 10, int(short == "false alarm"), 0.3, nan, True),
        planted("missing transpose", "float32", 10, 7 if short == "missed" else 10, 5.0, nan,
                True),
        # Not required in bfloat16 (below one ulp): a partial catch is amber, not a shortfall.
        planted("scaling by 1+1e-3", "bfloat16", 10, 4, 0.41, 2.5, True),
    ]
    fd = [FDResult("square", "float64", "dW", 0.5 if short == "finite differences" else
                   1e-13, short != "finite differences", 128)]
    d = tmp_path / "run"
    shutil.copytree(FIX / "partial" / "verify-cpu", d)
    st.write(results, fd, d)
    with chdir(tmp_path):
        html, md = build_report([d], tmp_path / "out")
    css, text = banner(html.read_text(encoding="utf-8"))
    head = md.read_text(encoding="utf-8").splitlines()[2]
    if short == "none":
        assert css == "verdict" and "fell short" not in text and head.startswith("**✅ ")
        return
    expected = {"missed": "1 required planted bug not always caught",
                "false alarm": "1 false alarm on the control row",
                "finite differences": "1 reference gradient off finite differences"}[short]
    assert css == "verdict bad" and head.startswith("**❌ ")
    assert text.endswith(f"; the selftest fell short: {expected}"), text


def test_twin_selftests_count_once_in_the_header(tmp_path: Path) -> None:
    planted = _planted(tmp_path)
    twin = tmp_path / "twin"
    shutil.copytree(planted, twin)
    with chdir(tmp_path):
        html, _ = build_report([planted, twin], tmp_path / "out")
    _, text = banner(html.read_text(encoding="utf-8"))
    assert "1 required planted bug not always caught, 1 false alarm" in text


def test_a_selftest_only_folder_is_a_result_folder(tmp_path: Path) -> None:
    d = tmp_path / "results" / "selftest-1"
    d.mkdir(parents=True)
    for name in ("selftest.csv", "selftest_fd.csv"):
        shutil.copy(SELFTEST / name, d / name)
    with chdir(tmp_path):
        assert main(["report", "--out", "rep"]) == 0
    s = sections((tmp_path / "rep" / "report.html").read_text(encoding="utf-8"))
    assert "<table" in s["selftest"] and "selftest-1" in s["selftest"]
    assert 'class="empty"' in s["correctness"]  # no verify.csv: no correctness results
    assert 'class="empty"' in s["system"]  # and no system card made up for it


# --- one machine under verify's and asv's names --------------------------------------------

MERGED = FIX / "merged"


def test_verify_and_bench_of_one_box_share_one_machine() -> None:
    from harness.report import analysis

    data = load([MERGED / "verify-vm"], MERGED / "asv")
    assert list(data.machines) == ["vm-cpu", "old-box-4t"]
    vm = data.machines["vm-cpu"]
    assert vm.card["machine_name"] == "vm-cpu" and vm.asv["threads"] == "2"
    assert vm.asv_names == ["vm-cpu-2t"]
    t = data.table
    assert set(t["machine"]) == {"vm-cpu", "old-box-4t"}
    assert {"verify", "asv"} == set(t[t["machine"] == "vm-cpu"]["source"])
    # Without host_machine (older results, plain `asv run`): asv's machine name, as before.
    old = data.machines["old-box-4t"]
    assert old.asv_names == ["old-box-4t"] and not old.card and old.asv["num_cpu"] == "4"
    acc, note = analysis.accuracy_speed(analysis.correctness(t), analysis.timings(t),
                                        analysis.track_ratios(t))
    assert set(acc["machine"]) == {"vm-cpu"} and note == ""  # paired on the same machine


def test_one_system_card_per_box_with_asv_threads(tmp_path: Path) -> None:
    html, md = build_report([MERGED / "verify-vm"], tmp_path, asv_results=MERGED / "asv")
    s = sections(html.read_text(encoding="utf-8"))
    assert re.findall(r'<div class="card"><h3>([^<]+)</h3>', s["system"]) == [
        "vm-cpu", "old-box-4t"]
    assert "vm-cpu-2t (2 CPU threads per framework)" in s["system"]
    assert md.read_text(encoding="utf-8").count("<summary>vm-cpu</summary>") == 1
    assert "come from different machines" not in s["accuracy"]
    assert "<img" in s["accuracy"]


def test_a_box_benchmarked_at_several_thread_counts_keeps_them_apart(tmp_path: Path) -> None:
    asv = tmp_path / "asv"
    shutil.copytree(MERGED / "asv", asv)
    one = asv / "vm-cpu-1t"
    (asv / "vm-cpu-2t").rename(one)
    shutil.copytree(MERGED / "asv" / "vm-cpu-2t", asv / "vm-cpu-2t")
    for f in one.glob("*.json"):
        data = json.loads(f.read_text())
        info = data.get("params", data)
        info.update(machine="vm-cpu-1t", threads="1")
        f.write_text(json.dumps(data))
    data = load([MERGED / "verify-vm"], asv)
    assert list(data.machines) == ["vm-cpu", "old-box-4t", "vm-cpu-1t", "vm-cpu-2t"]
    assert data.machines["vm-cpu-1t"].asv["threads"] == "1"
    timed = data.table[data.table["kind"] == "time"]
    assert len(timed[timed["machine"] == "vm-cpu-1t"]) == len(timed[timed["machine"] ==
                                                                       "vm-cpu-2t"]) > 0
    assert any("vm-cpu: asv results under several machine names (vm-cpu-1t, vm-cpu-2t"
               in n for n in data.notes)


# --- the partial report ------------------------------------------------------------------


def test_partial_report_explains_every_missing_part(partial: tuple[str, str]) -> None:
    html, md = partial
    s = sections(html)
    assert list(s) == list(SECTIONS)
    assert 'class="empty"' not in s["correctness"]
    assert "data:image/png;base64," in s["correctness"]  # the heatmap
    for name in ("timings", "speedup", "gflops", "peak", "accuracy"):
        assert 'class="empty"' in s[name] and "No asv timings were found" in s[name], name
        assert "<img" not in s[name]
    # The missing framework is named, so all four appear.
    assert "laptop-cpu: no correctness results for tensorflow" in s["correctness"]
    text = re.sub(r"<[^>]+>", " ", html)
    assert all(fw in text for fw in FRAMEWORKS)
    assert md.count("> No asv timings were found") == 5
    # No selftest files in the folder: explained, with the command that makes them.
    assert 'class="empty"' in s["selftest"] and "<table" not in s["selftest"]
    assert "matmul-harness selftest --out DIR" in s["selftest"]
    assert "> No selftest results" in md
    rows = next(rows for sec, _, rows in md_tables(md) if sec == "Correctness matrix")
    assert list(dict.fromkeys(r["framework:device"] for r in rows)) == [
        "numpy:cpu", "torch:cpu", "jax:cpu"]
    assert [r["quantity"] for r in rows[:3]] == ["Y", "dX", "dW"]


def test_precision_modes_are_separate_rows(tmp_path: Path) -> None:
    """verify checks a cell in full precision (pinned) and as shipped (default): both
    rows stay (the mode is part of the identity key) and show as separate rows."""
    from harness import results

    if "precision_mode" not in results.COLUMNS:
        pytest.skip("this verify.csv has no precision_mode column")
    rows = [results.Row("torch", "gpu", "float32", "square", "8x8", "8x8", "Y", "pass", "",
                        1e-6, ratio, 8, prec, "2.13.0", precision_mode=mode)
            for mode, ratio, prec in (("pinned", 0.25, "ieee"), ("default", 0.75, "tf32"))]
    (tmp_path / "v").mkdir()
    results.write_csv(rows, tmp_path / "v" / "verify.csv")
    with chdir(tmp_path):
        _, md = build_report([tmp_path / "v"], tmp_path / "out")
    table = next(rows for sec, _, rows in md_tables(md.read_text())
                 if sec == "Correctness matrix")
    got = {r["framework:device"]: number(r["float32"]) for r in table}
    assert got == {"torch:gpu": 0.25, "torch:gpu:default": 0.75}


def test_no_inputs_at_all_is_an_explained_report(tmp_path: Path) -> None:
    with chdir(tmp_path):
        html, md = build_report([], tmp_path / "out")
    s = sections(html.read_text())
    assert all('class="empty"' in body for body in s.values())
    assert "No correctness results" in md.read_text()


# --- the command line --------------------------------------------------------------------


def test_cli_report_writes_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    with chdir(tmp_path):
        code = main(["report", str(FIX / "partial" / "verify-cpu"), "--out", str(out),
                     "--baseline", "torch"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"report: {out / 'report.html'}" in captured.out
    assert (out / "report.html").is_file() and (out / "report.md").is_file()


def test_cli_report_finds_verify_folders_under_results(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(FIX / "partial" / "verify-cpu", tmp_path / "results" / "run-1")
    with chdir(tmp_path):
        code = main(["report", "--out", "rep"])
    assert code == 0
    assert "1 result folder(s) (verify or selftest output) found" in capsys.readouterr().out
    assert "laptop-cpu" in (tmp_path / "rep" / "report.md").read_text()


def _bad(tmp_path: Path, kind: str) -> tuple[list[str], str]:
    """argv for `report` with one bad input, and the file the message must name."""
    good = str(FIX / "partial" / "verify-cpu")
    if kind == "missing dir":
        return [str(tmp_path / "nope")], "nope"
    if kind == "foreign csv":
        d = tmp_path / "v"
        d.mkdir()
        (d / "verify.csv").write_text("a,b\n1,2\n")
        return [str(d)], "verify.csv"
    if kind == "corrupt run.json":
        d = tmp_path / "v"
        d.mkdir()
        (d / "verify.csv").write_text((FIX / "partial" / "verify-cpu" / "verify.csv").read_text())
        (d / "run.json").write_text("{not json")
        return [str(d)], "run.json"
    if kind in ("foreign asv file", "corrupt asv file"):
        m = tmp_path / "asv" / "box"
        m.mkdir(parents=True)
        (m / "machine.json").write_text('{"machine": "box", "version": 1}')
        (m / "abc-env.json").write_text('{"hello": 1}' if kind.startswith("foreign")
                                        else '{"results": ')
        return [good, "--asv-results", str(tmp_path / "asv")], "abc-env.json"
    if kind == "missing asv path":
        return [good, "--asv-results", str(tmp_path / "none")], "none"
    if kind.endswith(("selftest.csv", "selftest_fd.csv")):
        d = tmp_path / "v"
        shutil.copytree(FIX / "full" / "verify-cpu", d)
        name = kind.split()[-1]
        text = (d / name).read_text()
        if kind.startswith("foreign"):
            text = "bug,dtype,caught\nx,float32,1\n"
        elif name == "selftest.csv":  # more detections than trials
            text = text.replace(",True,3,3,1,True,", ",True,3,4,1,True,", 1)
        else:
            text = text.replace(",True,", ",yes,", 1)
        (d / name).write_text(text)
        return [str(d)], name
    if kind == "bad peaks":
        p = tmp_path / "peaks.yaml"
        p.write_text("devices:\n  - {name: x, match: x, device: tpu, peaks: {float32: 1}}\n")
        return [good, "--peaks", str(p)], "peaks.yaml"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing dir", "foreign csv", "corrupt run.json",
                                  "foreign asv file", "corrupt asv file", "missing asv path",
                                  "bad peaks", "foreign selftest.csv", "corrupt selftest.csv",
                                  "corrupt selftest_fd.csv"])
def test_cli_report_bad_input_is_exit_2_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    argv, name = _bad(tmp_path, kind)
    with chdir(tmp_path):
        code = main(["report", *argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("matmul-harness: error: ") and err.count("\n") == 1, err
    assert name in err and "Traceback" not in err


# --- peaks and FLOPs ---------------------------------------------------------------------


def test_shipped_peak_table_is_valid_and_matches_models() -> None:
    peaks = load_peaks(default_path())
    assert find(peaks, "gpu", "NVIDIA H100 80GB HBM3").name == "NVIDIA H100 SXM"  # type: ignore[union-attr]
    assert find(peaks, "gpu", "NVIDIA H100 PCIe").name == "NVIDIA H100 PCIe"  # type: ignore[union-attr]
    assert find(peaks, "cpu", "AMD EPYC 7B13").per_core  # type: ignore[union-attr]
    assert find(peaks, "gpu", "AMD EPYC 7B13") is None


@pytest.mark.parametrize(("data", "message"), [
    ([], "top level: expected exactly one key, devices"),
    ({"devices": [], "x": 1}, "top level"),
    ({"devices": [{"name": "a", "match": "a", "device": "cpu", "peaks": {"float32": 1},
                   "colour": 1}]}, "devices[0].colour: unknown key"),
    ({"devices": [{"name": "a", "match": "a", "device": "cpu"}]}, "devices[0].peaks: missing"),
    ({"devices": [{"name": "a", "match": "a", "device": "cpu", "peaks": {"fp8": 1}}]},
     "devices[0].peaks.fp8: unknown dtype"),
    ({"devices": [{"name": "a", "match": "a", "device": "cpu", "peaks": {"float32": -1}}]},
     "devices[0].peaks.float32: expected a positive number"),
    ({"devices": [{"name": "a", "match": "a", "device": "cpu", "peaks": {"float32": True}}]},
     "expected a positive number"),
    ({"devices": [{"name": "a", "match": "a", "device": "cpu", "peaks": {"float32": 1}},
                  {"name": "a", "match": "b", "device": "gpu", "peaks": {"float32": 1}}]},
     "devices[1].name: duplicate name 'a'"),
    ({"devices": [{"name": "a", "match": "", "device": "cpu", "peaks": {"float32": 1}}]},
     "devices[0].match: expected a non-empty string"),
    ({"devices": [{"name": "a", "match": "a", "device": "cpu", "per_core": "yes",
                   "peaks": {"float32": 1}}]}, "devices[0].per_core: expected true or false"),
])
def test_peak_table_is_validated_strictly(data: object, message: str) -> None:
    with pytest.raises(ReportInputError, match=re.escape(message)):
        validate(data, "peaks.yaml")


def test_flops_per_pass_and_dtype() -> None:
    n = 2 * 1024**3
    assert flops("1024x1024x1024", "forward", "float32") == n
    assert flops("1024x1024x1024", "backward", "float64") == 2 * n
    assert flops("1024x1024x1024", "forward_backward", "float16") == 3 * n
    assert flops("1024x1024x1024", "forward", "complex64") == 4 * n  # 8 real ops per MAC
    assert flops("4x8x16x32", "forward", "float32") == 2 * 4 * 8 * 16 * 32  # batched
    with pytest.raises(ValueError, match="MxKxN"):
        flops("1024", "forward", "float32")


def test_bench_and_report_count_the_same_flops() -> None:
    """One count: the bench's GFLOP/s table and the report's agree, complex dtypes too
    (they once disagreed by 4x on complex, the bench counting it as real)."""
    from harness import bench

    rows = [{"device": "cpu", "shape": "512x512x512", "dtype": dt, "pass": "forward",
             "framework": "numpy", "seconds": 1e-3} for dt in ("float32", "complex64")]
    printed = {line.split()[2]: float(line.rsplit("(", 1)[1].rstrip(")"))
               for line in bench.table_lines(rows) if line.startswith("cpu")}
    for dt, gflops in printed.items():
        assert gflops == pytest.approx(flops("512x512x512", "forward", dt) / 1e-3 / 1e9, 0.01)
    assert printed["complex64"] == pytest.approx(4 * printed["float32"], 0.01)


def test_a_detection_falls_short_exactly_when_the_report_colours_it_fail() -> None:
    """Detection.shortfall (the selftest's and the report's wording) and the report's red
    cell agree on every combination of the fields they read."""
    from harness.report.tables_selftest import detection_status

    base = planted("missing transpose", "float32", 4, 4, 1.0, math.nan, True)
    control = planted("none (control)", "float32", 4, 0, 1.0, math.nan, True)
    seen = set()
    for d0 in (base, control):
        for applies, required, detected in itertools.product(
                (True, False), (True, False), range(5)):
            d = dataclasses.replace(d0, applies=applies, required=required, detected=detected)
            fails = detection_status(d) == "fail"
            assert (d.shortfall is not None) == fails, d
            seen.add(fails)
    assert seen == {True, False}
