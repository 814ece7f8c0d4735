"""Issue 10: nothing lost, nothing mixed, nothing hung, under hostile and careless use.

Each test is one of the issue's reproductions (or a generator of its kind); the header of
each block names the item. Workers are real processes wherever the fault lives in one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import runfiles, store
from harness.cli import main
from harness.config import parse
from harness.plan import plan
from harness.results import Row, matrix, problems, read_csv, write_csv, write_junit
from tests.test_faults import config, read, wait_for_cells
from tests.test_registry import fake_entry_points

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = {"slow": "tests.faulty_adapters:Slow", "hostile": "tests.faulty_adapters:Hostile"}
SMALL = config("numpy", [("a", 2), ("b", 3), ("c", 4)])
OTHER = SMALL.replace("[2, 4]", "[5, 4]").replace("cases:", "seed: 7\ncases:")


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, **PLUGINS)


def cfg_file(tmp_path: Path, text: str, name: str = "c.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["verify", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


def interrupt_after(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Ctrl-C right after the n-th cell is logged: an interrupted run, in process."""
    real, seen = store.CellLog.append, [0]

    def append(self: store.CellLog, rows: list[Row]) -> None:
        real(self, rows)
        seen[0] += 1
        if seen[0] == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(store.CellLog, "append", append)


SCRIPT = """
import importlib.metadata, sys
eps = tuple(importlib.metadata.EntryPoint(name=n, value=v, group="harness.adapters")
            for n, v in {plugins!r}.items())
importlib.metadata.entry_points = lambda **kw: eps if kw.get("group") == "harness.adapters" else ()
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def orchestrator(tmp_path: Path, *argv: str, cwd: Path | None = None,
                 env: dict[str, str] | None = None, **kw) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    """`matmul-harness` in its own process, run as a script outside the checkout (so the
    current directory is not its import root), with the test plugins registered."""
    script = tmp_path / "mh.py"
    script.write_text(SCRIPT.format(plugins=PLUGINS))
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, str(script), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd or tmp_path,
                            env=full_env, **kw)


def wait_for(partial: Path, n: int, proc: subprocess.Popen[str]) -> None:
    wait_for_cells(partial, n, proc, timeout=90.0)


# --- 1. resume identity ----------------------------------------------------------------------


def test_resume_after_another_config_into_the_folder_holds_only_that_config(  # type: ignore[no-untyped-def]
        tmp_path: Path, capsys, monkeypatch) -> None:
    a, b, out = cfg_file(tmp_path, SMALL, "a.yaml"), cfg_file(tmp_path, OTHER, "b.yaml"), \
        str(tmp_path / "R")
    assert verify(capsys, "--config", a, "--out", out)[0] == 0
    interrupt_after(monkeypatch, 1)
    assert verify(capsys, "--config", b, "--out", out, "--force")[0] == 130
    monkeypatch.undo()
    code, _, _ = verify(capsys, "--resume", out)
    assert code == 0
    rows = read(Path(out) / "verify.csv")
    assert {r["x_shape"] for r in rows if r["case"] == "a"} == {"5x4"}  # B's, never A's
    assert json.loads((Path(out) / "run.json").read_text())["seed"] == 7
    assert len(rows) == 3 * 6


def test_resume_refuses_an_edited_config(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "R"
    interrupt_after(monkeypatch, 1)
    assert verify(capsys, "--config", cfg_file(tmp_path, SMALL), "--out", str(out))[0] == 130
    kept = (out / runfiles.PARTIAL_FILE).read_text()
    cfg = json.loads((out / "config.json").read_text())
    cfg["cases"][0]["x"] = [5, 4]  # same name, other shape
    (out / "config.json").write_text(json.dumps(cfg))
    code, _, err = verify(capsys, "--resume", str(out))
    assert code == 2 and one_line(err)
    assert "the config was changed after the run started" in err
    assert (out / runfiles.PARTIAL_FILE).read_text() == kept  # nothing lost


@pytest.mark.parametrize("edit", ["shape", "run", "foreign_cell"])
def test_resume_refuses_log_rows_that_are_not_this_runs(tmp_path: Path, capsys,  # type: ignore[no-untyped-def]
                                                         monkeypatch, edit: str) -> None:
    out = tmp_path / "R"
    interrupt_after(monkeypatch, 2)
    assert verify(capsys, "--config", cfg_file(tmp_path, SMALL), "--out", str(out))[0] == 130
    partial = out / runfiles.PARTIAL_FILE
    first, second = partial.read_text().splitlines(keepends=True)
    rec = json.loads(second)
    if edit == "shape":
        for r in rec["rows"]:
            r["x_shape"] = "9x4"
    elif edit == "run":
        rec["run"] = "0123456789abcdef"
    else:
        for r in rec["rows"]:
            r["case"] = "zz"
    partial.write_text(first + json.dumps(rec) + "\n")
    code, _, err = verify(capsys, "--resume", str(out))
    assert code == 2 and one_line(err), err
    assert "line 2" in err and "this run" in err


def test_a_leftover_verify_csv_is_never_progress(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A's finished verify.csv beside B's config and an empty log: B runs in full."""
    out = tmp_path / "R"
    assert verify(capsys, "--config", cfg_file(tmp_path, SMALL), "--out", str(out))[0] == 0
    other = parse(__import__("yaml").safe_load(OTHER), "b", ("numpy",))
    store.save_config(out, other)
    (out / runfiles.PARTIAL_FILE).write_text("")
    assert verify(capsys, "--resume", str(out))[0] == 0
    assert {r["x_shape"] for r in read(out / "verify.csv") if r["case"] == "a"} == {"5x4"}


# --- 11. resuming a finished run -------------------------------------------------------------


def test_resuming_a_finished_run_rewrites_nothing(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "R"
    assert verify(capsys, "--config", cfg_file(tmp_path, SMALL), "--out", str(out))[0] == 0
    def files() -> dict[str, bytes]:  # the run's files (the lock names its last holder)
        return {p.name: p.read_bytes() for p in out.iterdir() if p.name != runfiles.LOCK_FILE}

    before = files()
    code, text, err = verify(capsys, "--resume", str(out))
    assert code == 0 and "the run is finished; nothing to resume" in err
    assert text.splitlines()[-1] == "9 passed, 0 failed, 9 skipped, 0 errors"
    assert files() == before


def test_a_resumed_run_keeps_its_first_start(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "R"
    interrupt_after(monkeypatch, 1)
    assert verify(capsys, "--config", cfg_file(tmp_path, SMALL), "--out", str(out))[0] == 130
    started = json.loads((out / "config.json").read_text())["run"]["started"]
    monkeypatch.undo()
    time.sleep(1.1)  # a resume a second later: its own start must not replace the first
    assert verify(capsys, "--resume", str(out))[0] == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["started"] == started and len(meta["resumed"]) == 1


# --- 2. deadlines: a worker frozen in the middle of sending ----------------------------------


def test_a_worker_frozen_mid_send_is_killed_at_the_cell_timeout(tmp_path: Path) -> None:
    cfg = cfg_file(tmp_path, config("hostile", [("before", 2), ("frozen", 16), ("after", 4)]))
    proc = orchestrator(tmp_path, "verify", "--config", cfg, "--out", str(tmp_path / "o"),
                        "--cell-timeout", "3", "--timeout", "600")
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the run hung on a worker frozen mid-send") from None
    assert proc.returncode == 1, err
    dx = {r["case"]: r for r in read(tmp_path / "o" / "verify.csv") if r["quantity"] == "dX"}
    assert dx["before"]["status"] == dx["after"]["status"] == "pass"
    assert dx["frozen"]["status"] == "error"
    assert "timeout after 3 s (cell)" in dx["frozen"]["reason"]


# --- 3. output folders -----------------------------------------------------------------------


def test_an_interrupted_folder_is_not_overwritten_without_force(tmp_path: Path, capsys,  # type: ignore[no-untyped-def]
                                                                  monkeypatch) -> None:
    out, cfg = tmp_path / "R", cfg_file(tmp_path, SMALL)
    interrupt_after(monkeypatch, 3)
    assert verify(capsys, "--config", cfg, "--out", str(out))[0] == 130
    monkeypatch.undo()
    kept = (out / runfiles.PARTIAL_FILE).read_text()
    assert kept.count("\n") == 3
    code, _, err = verify(capsys, "--config", cfg, "--out", str(out))
    assert code == 2 and one_line(err)
    assert "already holds a run" in err and f"--resume {out}" in err and "--force" in err
    assert (out / runfiles.PARTIAL_FILE).read_text() == kept


def test_force_clears_every_file_of_the_old_run(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out, cfg = tmp_path / "R", cfg_file(tmp_path, SMALL)
    assert verify(capsys, "--config", cfg, "--out", str(out))[0] == 0
    for name in ("report.html", "report.md", "selftest.csv", "selftest_fd.csv"):
        (out / name).write_text("old run\n")
    (out / "notes.txt").write_text("the user's own\n")
    assert verify(capsys, "--config", cfg, "--out", str(out))[0] == 2
    assert (out / "report.html").read_text() == "old run\n"
    assert verify(capsys, "--config", cfg, "--out", str(out), "--force")[0] == 0
    left = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert left == ["config.json", "notes.txt", "run.json", "verify.csv"]


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_holder(  # type: ignore[no-untyped-def]
        tmp_path: Path, capsys, plugins) -> None:
    slow = cfg_file(tmp_path, config("slow", [(f"c{i}", 2) for i in range(16)]), "slow.yaml")
    out = tmp_path / "R"
    first = orchestrator(tmp_path, "verify", "--config", slow, "--out", str(out))
    wait_for(out / runfiles.PARTIAL_FILE, 1, first)
    for argv in (["--config", cfg_file(tmp_path, SMALL), "--out", str(out), "--force"],
                 ["--resume", str(out)]):
        code, _, err = verify(capsys, *argv)
        assert code == 2 and one_line(err), err
        assert f"is in use by another matmul-harness run (pid {first.pid} on" in err
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    rows = read(out / "verify.csv")
    assert {r["framework"] for r in rows} == {"slow"} and len(rows) == 16 * 6
    assert json.loads((out / "config.json").read_text())["frameworks"] == ["slow"]


# --- 4. worker start: the current directory cannot hijack imports ----------------------------


def test_a_harness_folder_where_the_user_stands_is_not_imported(tmp_path: Path) -> None:
    here = tmp_path / "x"
    (here / "harness").mkdir(parents=True)
    (here / "harness" / "__init__.py").write_text("")
    (here / "harness" / "worker.py").write_text("import sys; sys.exit(3)\n")
    (here / "numpy").mkdir()
    (here / "numpy" / "__init__.py").write_text("raise SystemExit(4)\n")
    cfg = cfg_file(tmp_path, SMALL)
    proc = orchestrator(tmp_path, "verify", "--config", cfg, "--out", str(tmp_path / "o"),
                        cwd=here)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert out.splitlines()[-1] == "9 passed, 0 failed, 9 skipped, 0 errors"


# --- 5. large and infinite timeouts ----------------------------------------------------------


@pytest.mark.parametrize(("flags", "yaml_extra"), [
    (["--timeout", "1e7", "--cell-timeout", "1e7"], ""),
    (["--timeout", "inf", "--cell-timeout", "1e308"], ""),
    ([], "timeout: .inf\ncell_timeout: 1e308"),
    ([], "timeout: 1e7\ncell_timeout: 1" + "0" * 400),  # an int beyond float range
])
def test_huge_and_infinite_timeouts_mean_no_limit(tmp_path: Path, capsys, flags: list[str],  # type: ignore[no-untyped-def]
                                                   yaml_extra: str) -> None:
    cfg = cfg_file(tmp_path, config("numpy", [("a", 2)], yaml_extra))
    code, out, err = verify(capsys, "--config", cfg, "--out", str(tmp_path / "o"), *flags)
    assert code == 0, err
    assert out.splitlines()[-1] == "3 passed, 0 failed, 3 skipped, 0 errors"


# --- 6. unbounded input ----------------------------------------------------------------------

def laughs(levels: int = 5) -> str:
    """A "billion laughs" config: anchors nested inline in a case name, each level nine
    aliases of the one below (9**levels strings; kept small in case the guard regressed)."""
    node = "&a0 [" + ", ".join(["lol"] * 9) + "]"
    for k in range(1, levels):
        node = f"&a{k} [{node}, " + ", ".join([f"*a{k - 1}"] * 8) + "]"
    return f"cases: [{{name: {node}, x: [2], w: [2]}}]\n"


LAUGHS = laughs()


@pytest.mark.parametrize(("data", "message"), [
    (LAUGHS.encode(), "aliases are not allowed in a config"),
    ("cases: [{name: café, x: [2], w: [2]}]\n".encode("latin-1"),
     "not UTF-8 text (byte 0xe9 at offset 18); save it as UTF-8"),
    ("cases: [{name: a, x: [2], w: [2]}]\n".encode("utf-16"), "UTF-16 text; save it as UTF-8"),
    (b"seed: 1\ncases: [{name: a, x: [2], w: [2]}]\nseed: 2\n", "duplicate key 'seed'"),
    (b"cases: [{name: a, x: [2], w: [2], x: [3]}]\n", "duplicate key 'x'"),
    (b"cases: [{name: " + b"n" * 50_000 + b", x: [2], w: [2]}]\n", "name must be 1-100"),
    (b"cases: [{name: a, x: [" + b"7," * 10_000 + b"2], w: [2]}]\n", "…"),
    (b"#" * (2 << 20), "config file is larger than 1 MiB"),
    (b"cases: " + b"[" * 20_000, "YAML"),
    (b"seed: " + b"9" * 5000 + b"\ncases: [{name: a, x: [2], w: [2]}]\n", "unusable value"),
], ids=["billion-laughs", "latin-1", "utf-16", "duplicate-top", "duplicate-case", "long-name",
        "long-value", "too-big", "too-deep", "huge-int"])
def test_hostile_config_input_is_one_short_line(tmp_path: Path, capsys, data: bytes,  # type: ignore[no-untyped-def]
                                                message: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_bytes(data)
    start = time.monotonic()
    code, out, err = verify(capsys, "--config", str(p), "--out", str(tmp_path / "o"))
    assert code == 2 and out == "" and one_line(err), err[:500]
    assert message in err and len(err) < 1200
    assert time.monotonic() - start < 30  # bounded work, not a minute of alias expansion
    assert not (tmp_path / "o").exists()


def test_dev_zero_as_config_stops_at_the_cap(capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = verify(capsys, "--config", "/dev/zero")
    assert code == 2 and one_line(err) and "larger than 1 MiB" in err


# --- 7. names: one rule at config time, escaping in every writer anyway ----------------------

HOSTILE_NAMES = ["<img src=x onerror=alert(1)>", "</details>", "[x](javascript:alert(1))",
                 "a\nb", "esc\x1b[31m", "\ud800", "=1+2", "+cmd", "-1", "@SUM(A1)", " a", "",
                 ".hidden", "a/b", "n" * 101, "caf\u00e9", "tab\tname"]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_hostile_case_names_are_refused_at_config_time(tmp_path: Path, capsys,  # type: ignore[no-untyped-def]
                                                       name: str) -> None:
    text = f"cases: [{{name: {json.dumps(name)}, x: [2], w: [2]}}]\n"
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    code, out, err = verify(capsys, "--config", str(p), "--out", str(tmp_path / "o"))
    assert code == 2 and out == "" and one_line(err), err
    assert "\x1b" not in err
    assert ("name must be 1-100 characters from A-Z a-z 0-9 _ . + -" in err
            or "not UTF-8 text" in err), err


@pytest.mark.parametrize("name", ["a", "classic_1x3_3x4", "v1.2+cpu", "A-b_c.d", "9" * 100])
def test_ordinary_names_are_accepted(name: str) -> None:
    cfg = parse({"cases": [{"name": name, "x": [2], "w": [2]}]}, "t", ("numpy",))
    assert cfg.cases[0].name == name


def hostile_rows() -> list[Row]:
    """Rows as a plugin or a hand-edited file might hold them: every writer must cope."""
    rows = []
    for i, text in enumerate(HOSTILE_NAMES):
        rows.append(Row(framework="numpy", device="cpu", dtype="float32", case=text,
                        x_shape="2", w_shape="2", quantity="dX",
                        status=("fail", "error", "skip", "pass")[i % 4],
                        reason=f"{text} <b>&amp;</b> \u2264", max_abs_err=-1.5 if i else 0.0,
                        ratio=0.5, k_eff=2, precision="ieee", framework_version="=2.0",
                        bias=-0.25))
    return rows


def test_csv_guards_formulas_and_round_trips(tmp_path: Path) -> None:
    rows = hostile_rows()
    write_csv(rows, tmp_path / "v.csv")
    text = (tmp_path / "v.csv").read_text(encoding="utf-8")
    import csv

    for rec in csv.DictReader(text.splitlines(keepends=True)):
        for col in ("case", "reason", "framework_version"):
            assert not rec[col].startswith(("=", "+", "-", "@")), rec[col]
        assert rec["max_abs_err"] in ("0", "-1.5") and rec["bias"] == "-0.25"
    back = read_csv(tmp_path / "v.csv")
    for got, want in zip(back, rows, strict=True):
        assert got.case == want.case.replace("\ud800", "\\ud800")
        assert got.reason == want.reason.replace("\ud800", "\\ud800")
        assert got.framework_version == "=2.0" and got.max_abs_err == want.max_abs_err


def test_junit_is_valid_xml_whatever_the_names(tmp_path: Path) -> None:
    write_junit(hostile_rows(), tmp_path / "j.xml")
    root = ET.parse(tmp_path / "j.xml").getroot()
    names = [c.get("name") for c in root.iter("testcase")]
    assert "float32-esc\\x1b[31m-dX" in names and len(names) == len(HOSTILE_NAMES)


def test_terminal_lines_hold_no_control_characters() -> None:
    rows = hostile_rows()
    text = "\n".join([matrix(rows), *problems(rows)])
    lines = text.splitlines()
    assert all(ch.isprintable() for line in lines for ch in line), lines
    assert len([ln for ln in lines if ln.startswith(("FAIL", "ERROR"))]) == len(
        [r for r in rows if r.status in ("fail", "error")])


def test_markdown_report_is_inert_whatever_the_names(tmp_path: Path) -> None:
    from harness.report import build_report

    (tmp_path / "v").mkdir()
    write_csv(hostile_rows(), tmp_path / "v" / "verify.csv")
    html, md = build_report([tmp_path / "v"], tmp_path / "out")
    text = md.read_text(encoding="utf-8")
    assert "<img" not in text and "<b>" not in text
    assert not re.search(r"(?<!\\)\]\(javascript", text)  # `\](` is literal text, no link
    assert text.count("<details>") == text.count("</details>")
    assert "\x1b" not in text and "esc\\\\x1b" in text
    assert "<img src=x" not in html.read_text(encoding="utf-8")


def test_a_reason_with_surrogates_escapes_and_non_ascii_crashes_no_writer(  # type: ignore[no-untyped-def]
        tmp_path: Path, capsys, plugins) -> None:
    """A worker's exception text holds ESC, a newline, a lone surrogate, HTML and '≤'."""
    cfg = cfg_file(tmp_path, config("hostile", [("boom", 17), ("ok", 2)]))
    junit = tmp_path / "j.xml"
    code, out, err = verify(capsys, "--config", cfg, "--out", str(tmp_path / "o"),
                            "--junit", str(junit))
    assert code == 1, err
    assert "\x1b" not in out and "ERROR hostile:cpu float32 boom Y: ValueError:" in out
    ET.parse(junit)
    rows = read(tmp_path / "o" / "verify.csv")
    assert rows[0]["reason"].startswith("ValueError: =planted")
    assert main(["verify", "--resume", str(tmp_path / "o")]) == 1  # finished: shown again


# --- 8. exit codes: environment and I/O failures ---------------------------------------------


@pytest.mark.parametrize(("argv", "message"), [
    (["--junit", "{tmp}"], "is a folder; expected a file name"),
    (["--junit", "/proc/no-such-dir/j.xml"], "cannot be written in '/proc/no-such-dir'"),
    (["--junit", "/proc/version/j.xml"], "cannot be written in '/proc/version'"),
    (["--out", "/proc/version/out"], "is not a writable folder"),
])
def test_output_paths_are_checked_before_any_work(tmp_path: Path, capsys, argv: list[str],  # type: ignore[no-untyped-def]
                                                  message: str) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "o")]
    code, out, err = verify(capsys, "--config", cfg_file(tmp_path, SMALL), *argv)
    assert code == 2 and out == "" and one_line(err), err
    assert message in err
    assert not (tmp_path / "o" / "verify.csv").exists()
    assert not (tmp_path / "o" / "config.json").exists()


def test_report_to_an_unwritable_folder_is_exit_2(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["report", "--out", "/proc/version/rep", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert one_line(err) and "--out '/proc/version/rep' is not a writable folder" in err


def test_a_full_disk_is_exit_3_with_the_resume_hint_and_loses_nothing(  # type: ignore[no-untyped-def]
        tmp_path: Path, capsys, monkeypatch) -> None:
    out, cfg = tmp_path / "R", cfg_file(tmp_path, SMALL)
    whole = tmp_path / "whole"
    assert verify(capsys, "--config", cfg, "--out", str(whole))[0] == 0
    real, calls = os.fsync, [0]

    def fsync(fd: int) -> None:
        calls[0] += 1
        if calls[0] >= 3:
            raise OSError(28, "No space left on device")
        real(fd)

    monkeypatch.setattr(store.os, "fsync", fsync)
    code, _, err = verify(capsys, "--config", cfg, "--out", str(out))
    assert code == 3 and one_line(err), err
    assert "No space left on device" in err
    assert f"Resume with: matmul-harness verify --resume {out}" in err
    monkeypatch.undo()
    assert verify(capsys, "--resume", str(out))[0] == 0
    key = ("framework", "dtype", "case", "quantity", "status", "ratio")
    assert ([tuple(r[k] for k in key) for r in read(out / "verify.csv")]
            == [tuple(r[k] for k in key) for r in read(whole / "verify.csv")])


def test_final_files_that_cannot_be_written_are_exit_3(tmp_path: Path, capsys,  # type: ignore[no-untyped-def]
                                                       monkeypatch) -> None:
    def full(*a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "write_csv", full)  # the store writes verify.csv
    out = tmp_path / "R"
    code, _, err = verify(capsys, "--config", cfg_file(tmp_path, SMALL), "--out", str(out))
    assert code == 3 and one_line(err) and "--resume" in err
    cfg, record = store.load_config(out, ("numpy",))
    assert len(store.read_cells(out, record.fingerprint, plan(cfg))) == 3  # kept to resume


def test_a_closed_stdout_is_quiet(tmp_path: Path) -> None:
    proc = orchestrator(tmp_path, "verify", "--config", cfg_file(tmp_path, SMALL), "--out",
                        str(tmp_path / "o"))
    assert proc.stdout is not None
    proc.stdout.close()  # `| head -0`: the reader is gone before the first line
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3 and "Traceback" not in err and "BrokenPipe" not in err, err
    assert len(read(tmp_path / "o" / "verify.csv")) == 18  # the results were written first


def test_an_ascii_terminal_keeps_the_summary(tmp_path: Path) -> None:
    cfg = cfg_file(tmp_path, config("hostile, numpy", [("boom", 17), ("ok", 2)]))
    env = {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    proc = orchestrator(tmp_path, "verify", "--config", cfg, "--out", str(tmp_path / "o"),
                        env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert "\\u2264" in out and out.splitlines()[-1].endswith("errors")


# --- 9. SIGHUP -------------------------------------------------------------------------------


def test_sighup_stops_cleanly_like_sigterm(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    slow = cfg_file(tmp_path, config("slow", [(f"c{i}", 2) for i in range(12)]))
    proc = orchestrator(tmp_path, "verify", "--config", slow, "--out", str(tmp_path / "o"),
                        env={"TMPDIR": str(tmp)})
    wait_for(tmp_path / "o" / runfiles.PARTIAL_FILE, 2, proc)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Resume with: matmul-harness verify --resume" in err and "Traceback" not in err
    assert list(tmp.iterdir()) == []  # the workers' log folder is gone
    time.sleep(0.5)
    workers = [p for p in Path("/proc").iterdir() if p.name.isdigit()
               and str(tmp).encode() in _cmdline(p)]
    assert workers == []  # and so are the workers (their job file lived there)


def _cmdline(p: Path) -> bytes:
    try:
        return (p / "cmdline").read_bytes()
    except OSError:
        return b""


# --- 10. file modes --------------------------------------------------------------------------


def test_output_files_follow_the_umask(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    old = os.umask(0o027)
    try:
        out, junit = tmp_path / "o", tmp_path / "j.xml"
        assert verify(capsys, "--config", cfg_file(tmp_path, SMALL), "--out", str(out),
                      "--junit", str(junit))[0] == 0
        from harness.report import build_report

        html, md = build_report([out], out)
    finally:
        os.umask(old)
    for p in (out / "verify.csv", out / "run.json", out / "config.json", junit, html, md):
        assert stat.S_IMODE(p.stat().st_mode) == 0o640, p
