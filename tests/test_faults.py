"""Fault injection: the run always finishes, loses nothing, and says what went wrong."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import runfiles, store
from harness.cli import main
from harness.config import parse
from harness.plan import plan
from harness.results import Row
from tests.test_registry import fake_entry_points

PLUGINS = {
    "faulty": "tests.faulty_adapters:Faulty",
    "slow": "tests.faulty_adapters:Slow",
    "broken": "tests.faulty_adapters:BrokenAtStart",
    "crashstart": "tests.faulty_adapters:CrashAtStart",
}
# X's first dim selects the fault (tests/faulty_adapters.py FAULT_BY_ROWS).
FAULT_CASES = [
    ("ok_first", 2), ("segfault", 3), ("after_segfault", 4), ("hang", 5), ("raise", 6),
    ("oom", 7), ("wrong_shape", 8), ("wrong_dtype", 9), ("nan", 10), ("inf", 11),
    ("unchanged", 12), ("exit", 13), ("ok_last", 14),
]
EXPECTED = {  # case -> (status of dX, text in the reason)
    "ok_first": ("pass", ""),
    "segfault": ("error", "worker killed by SIGSEGV; stderr: Fatal Python error: Segmentation"),
    "after_segfault": ("pass", ""),
    "hang": ("error", "timeout after 3 s (cell)"),
    "raise": ("error", "ValueError: planted failure"),
    "oom": ("error", "out of memory: MemoryError: Unable to allocate 8.00 TiB"),
    "wrong_shape": ("fail", "dX: shape (4, 8), expected (8, 4)"),
    "wrong_dtype": ("fail", "dX: dtype float64, expected float32"),
    "nan": ("fail", "dX: NaN mismatch at 1 element(s), first at (0, 1)"),
    "inf": ("fail", "dX: Inf mismatch at 1 element(s), first at (1, 0)"),
    "unchanged": ("fail", "dX: |err|="),
    "exit": ("error", "worker exited with status 3"),
    "ok_last": ("pass", ""),
}


def config(frameworks: str, cases: list[tuple[str, int]], extra: str = "") -> str:
    lines = [f"frameworks: [{frameworks}]", "devices: [cpu]", "dtypes: [float32]", extra,
             "cases:"]
    lines += [f"  - {{name: {n}, x: [{m}, 4], w: [4, 4]}}" for n, m in cases]
    return "\n".join(lines) + "\n"


def read(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, **PLUGINS)


def test_every_fault_is_contained_and_named(tmp_path: Path, plugins, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config("numpy, faulty", FAULT_CASES))
    code = main(["verify", "--config", str(cfg), "--out", str(tmp_path / "o"),
                 "--cell-timeout", "3"])
    out = capsys.readouterr().out
    assert code == 1
    rows = read(tmp_path / "o" / "verify.csv")
    assert len(rows) == 2 * len(FAULT_CASES) * 6  # nothing lost, nothing duplicated
    assert all(r["status"] in ("pass", "skip") for r in rows if r["framework"] == "numpy")
    dx = {r["case"]: r for r in rows if r["framework"] == "faulty" and r["quantity"] == "dX"}
    for case, (status, text) in EXPECTED.items():
        assert dx[case]["status"] == status, dx[case]
        assert text in dx[case]["reason"], dx[case]["reason"]
    assert out.splitlines()[-1].endswith("errors")
    assert not (tmp_path / "o" / runfiles.PARTIAL_FILE).exists()


def test_a_framework_that_cannot_start_errors_every_cell_once(tmp_path: Path, plugins,  # type: ignore[no-untyped-def]
                                                              capsys) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config("broken, crashstart, numpy", [("a", 2), ("b", 4)]))
    code = main(["verify", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert code == 1
    rows = read(tmp_path / "o" / "verify.csv")
    by_fw = {fw: [r for r in rows if r["framework"] == fw] for fw in ("broken", "crashstart")}
    reverse = ("Y", "dX", "dW")  # numpy-based plugins have no forward mode: those are skips
    assert all(r["status"] == "error" for rs in by_fw.values() for r in rs
               if r["quantity"] in reverse)
    assert all("has no" in r["reason"] for rs in by_fw.values() for r in rs
               if r["quantity"] not in reverse)
    assert "broken failed to start: ImportError: libcudart.so.12" in by_fw["broken"][0]["reason"]
    assert "worker killed by SIGSEGV" in by_fw["crashstart"][-4]["reason"]
    assert all(r["status"] in ("pass", "skip") for r in rows if r["framework"] == "numpy")


def test_overall_timeout_records_what_did_not_run(tmp_path: Path, plugins, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config("faulty", [("ok_first", 2), ("hang", 5), ("ok_last", 14)]))
    start = time.monotonic()
    code = main(["verify", "--config", str(cfg), "--out", str(tmp_path / "o"),
                 "--timeout", "4"])
    assert time.monotonic() - start < 30
    assert code == 1
    dx = {r["case"]: r for r in read(tmp_path / "o" / "verify.csv") if r["quantity"] == "dX"}
    assert dx["ok_first"]["status"] == "pass"
    for case in ("hang", "ok_last"):
        assert dx[case]["status"] == "error"
        assert "overall limit of 4 s was reached" in dx[case]["reason"]


# The orchestrator in its own process, with the test plugins registered, as a user runs it.
RUNNER = """
import importlib.metadata, sys
eps = tuple(importlib.metadata.EntryPoint(name=n, value=v, group="harness.adapters")
            for n, v in {plugins!r}.items())
importlib.metadata.entry_points = lambda **kw: eps if kw.get("group") == "harness.adapters" else ()
from harness.cli import main
from harness.config import parse
from harness.plan import plan
from harness.results import Row
sys.exit(main(sys.argv[1:]))
"""


def orchestrator(*argv: str, **kw) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER.format(plugins=PLUGINS), *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[1], **kw,
    )


def kept_cells(folder: Path) -> dict[tuple[str, ...], list[Row]]:
    """The finished cells of the run in `folder`, read as `--resume` reads them."""
    cfg, record = store.load_config(folder, (*PLUGINS, "numpy"))
    return dict(store.read_cells(folder, record.fingerprint, plan(cfg)))


def wait_for_cells(partial: Path, n: int, proc: subprocess.Popen[str],
                   timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if partial.exists() and partial.read_text().count("\n") >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{partial} never reached {n} cells")


SLOW_CASES = [(f"c{i}", 2 + (i % 3) * 13) for i in range(12)]  # 2 and 15 rows: no faults


def _table(path: Path) -> list[tuple[str, ...]]:
    return [(r["framework"], r["dtype"], r["case"], r["quantity"], r["status"], r["ratio"])
            for r in read(path)]


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config("slow, numpy", SLOW_CASES).replace("[float32]",
                                                              "[float32, float64]"))
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    ref = orchestrator("verify", "--config", str(cfg), "--out", str(whole), "--jobs", "1")
    assert ref.wait(timeout=120) == 0, ref.communicate()

    proc = orchestrator("verify", "--config", str(cfg), "--out", str(cut), "--jobs", "1")
    wait_for_cells(cut / runfiles.PARTIAL_FILE, 5, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    kept = kept_cells(cut)
    assert 5 <= len(kept) < 2 * len(SLOW_CASES) * 2
    assert not (cut / "verify.csv").exists()

    resumed = orchestrator("verify", "--resume", str(cut))
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert _table(cut / "verify.csv") == _table(whole / "verify.csv")
    assert len(_table(cut / "verify.csv")) == 2 * len(SLOW_CASES) * 2 * 6  # no duplicates
    assert out.splitlines()[-1] == "144 passed, 0 failed, 144 skipped, 0 errors"


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config("slow", SLOW_CASES))
    proc = orchestrator("verify", "--config", str(cfg), "--out", str(tmp_path / "o"),
                        start_new_session=True)
    wait_for_cells(tmp_path / "o" / runfiles.PARTIAL_FILE, 2, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert f"Resume with: matmul-harness verify --resume {tmp_path / 'o'}" in err
    assert "Traceback" not in err
    kept = kept_cells(tmp_path / "o")
    assert kept and all(r.status in ("pass", "skip") for rows in kept.values() for r in rows)
    resumed = orchestrator("verify", "--resume", str(tmp_path / "o"))
    assert resumed.wait(timeout=120) == 0
    assert len(read(tmp_path / "o" / "verify.csv")) == len(SLOW_CASES) * 6


def test_torn_last_line_is_run_again(tmp_path: Path, plugins, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config("numpy", [("a", 2), ("b", 4), ("c", 15)]))
    assert main(["verify", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 0
    whole = _table(tmp_path / "o" / "verify.csv")
    # what a kill in the middle of a write leaves: two whole lines and a torn third
    from harness.plan import group_cells
    from harness.results import read_csv

    cells = group_cells(read_csv(tmp_path / "o" / "verify.csv"))
    run = store.load_config(tmp_path / "o", ("numpy",))[1].fingerprint
    lines = [store.log_line(rows, run) for rows in cells.values()]
    (tmp_path / "o" / runfiles.PARTIAL_FILE).write_text(lines[0] + lines[1] + lines[2][:40])
    (tmp_path / "o" / "verify.csv").unlink()
    assert main(["verify", "--resume", str(tmp_path / "o")]) == 0
    assert _table(tmp_path / "o" / "verify.csv") == whole


def _recorded(folder: Path) -> None:
    store.save_config(folder, parse({"cases": [{"name": "a", "x": [2], "w": [2]}]}, "t",
                                    ("numpy",)))


@pytest.mark.parametrize(("setup", "message"), [
    (lambda d: None, "not a matmul-harness verify folder (no config.json)"),
    (lambda d: (d / "config.json").write_text("{not json"), "config.json: corrupt run config"),
    (lambda d: (d / "config.json").write_text(json.dumps({"cases": [], "x": 1})),
     "unknown key 'x'"),
    (lambda d: (_recorded(d), (d / runfiles.PARTIAL_FILE).write_text('{"a": 1}\n{"b": 2}\n')),
     "verify.partial.jsonl: line 1 is not a cell record of this run"),
    (lambda d: (d / "config.json").write_text(json.dumps(
        {"cases": [{"name": "a", "x": [2], "w": [2]}]})),
     "config.json: no record of the run's identity"),
])
def test_corrupt_or_foreign_resume_folder_exits_2(tmp_path: Path, capsys, setup,  # type: ignore[no-untyped-def]
                                                  message: str) -> None:
    d = tmp_path / "r"
    d.mkdir()
    setup(d)
    assert main(["verify", "--resume", str(d)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_resume_refuses_a_new_config(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["verify", "--resume", str(tmp_path), "--dtype", "float32"]) == 2
    assert "--resume DIR continues the run recorded in DIR" in capsys.readouterr().err


def test_resume_of_a_missing_folder_creates_nothing(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "no-such-run"
    assert main(["verify", "--resume", str(missing)]) == 2
    assert f"--resume {missing}: no such folder" in capsys.readouterr().err
    assert not missing.exists()


def test_drain_takes_everything_queued_and_never_waits_past_its_deadline() -> None:
    """Both executors' loops wake in orchestrator.drain: all the news at once, an empty list
    at a deadline already past, and no OverflowError for a run without a limit."""
    import queue

    from harness.orchestrator import drain

    inbox: queue.Queue[int] = queue.Queue()
    for i in range(5):
        inbox.put(i)
    assert drain(inbox, float("inf")) == [0, 1, 2, 3, 4]  # inf: capped, and news is there
    assert drain(inbox, time.monotonic() - 1.0) == []
    assert inbox.empty()
