"""Tracking across releases and commits: rank tests, verdicts, versions as an axis, the
merge that never hides a measurement, `matmul-harness compare`, the build step of asv's
managed environments, and accuracy cells that move when a kernel changes.

asv result files here are written by `write_result` in asv's own format (result_columns,
samples, started_at, env_name, requirements), with samples drawn from seeded generators.
The real runs (two jax releases through asv, the planted slowdown) are scripts:
benchmarks/track_releases.sh and benchmarks/planted_regression.py.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import bench, suite, verdict
from harness.cli import main
from harness.report import analysis, build_report
from harness.report.load import load
from tests.conftest import chdir

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a",
           "stats_ci_99_b", "stats_q_25", "stats_q_75", "stats_number", "stats_repeat",
           "samples", "profile"]
TIME = "matmul.Square.time_matmul"
PARAMS = [["'jax'"], ["'cpu'"], ["'float32'"], ["'256x256x256'"],
          ["'forward'", "'backward'"]]


# --- rank tests against brute force ------------------------------------------------------


def brute_mann_whitney(a: list[float], b: list[float]) -> float:
    """Two-sided p by enumerating every split of the pooled values (no ties)."""
    pooled = [*a, *b]

    def u(xs: tuple[float, ...]) -> float:
        return sum(1.0 for x in xs for y in pooled if y < x) - len(xs) * (len(xs) - 1) / 2

    u_obs = u(tuple(a))
    us = [u(c) for c in itertools.combinations(pooled, len(a))]
    mean = len(a) * len(b) / 2
    return min(1.0, sum(abs(x - mean) >= abs(u_obs - mean) - 1e-9 for x in us) / len(us))


@pytest.mark.parametrize("seed", range(6))
def test_rank_test_matches_brute_force_enumeration(seed: int) -> None:
    rng = random.Random(seed)
    n, m = rng.randint(2, 6), rng.randint(2, 6)
    shift = rng.choice([0.0, 0.5, 2.0])
    a = [rng.gauss(0, 1) for _ in range(n)]
    b = [rng.gauss(shift, 1) for _ in range(m)]
    assert verdict.mann_whitney_p(a, b) == pytest.approx(brute_mann_whitney(a, b))


def test_rank_tests_agree_with_scipy_where_it_is_installed() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(7)
    for _ in range(5):
        a = [round(rng.gauss(0, 1), 1) for _ in range(40)]  # ties: the normal approximation
        b = [round(rng.gauss(0.4, 1), 1) for _ in range(30)]
        want = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").pvalue
        assert verdict.mann_whitney_p(a, b) == pytest.approx(want, rel=1e-6)


def test_verdicts_from_samples_intervals_and_smoke() -> None:
    rng = random.Random(1)
    base = [1.0 + rng.gauss(0, 0.01) for _ in range(20)]
    slow = [1.1 + rng.gauss(0, 0.01) for _ in range(20)]
    same = [1.0 + rng.gauss(0, 0.01) for _ in range(20)]
    v = verdict.judge(base, slow)
    assert v.state == verdict.SLOWER and v.regression(1.05) and not v.regression(1.2)
    assert verdict.judge(slow, base).state == verdict.FASTER
    assert not verdict.judge(base, same).resolved
    assert verdict.judge(base, slow, smoke=True).state == verdict.SMOKE  # never judged
    assert verdict.judge([], [], base_ci=(1.0, 1.1), new_ci=(1.2, 1.3)).state == verdict.SLOWER
    assert not verdict.judge([], [], base_ci=(1.0, 1.2), new_ci=(1.1, 1.3)).resolved
    assert not verdict.judge([1.0], [2.0]).resolved  # one sample each: nothing to judge


# --- versions ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["0.6.2", "2.13.0+cpu", "0.10.2", "1.26.4", "2.21.0"])
def test_versions_round_trip_through_asv_numbers(text: str) -> None:
    assert bench.version_text(bench.version_number(text)) == text.split("+")[0]


def test_bad_versions_are_one_line_errors() -> None:
    assert bench.parse_versions("jax==0.6.2,jax==0.7.2") == {"jax": ["0.6.2", "0.7.2"]}
    for bad in ("jax", "jax==", "==0.6.2", ","):
        with pytest.raises(suite.BenchError, match="--versions"):
            bench.parse_versions(bad)


# --- the project folder, the build step ----------------------------------------------------


def test_bench_runs_in_the_project_folder_it_is_started_in(tmp_path: Path) -> None:
    project = tmp_path / "clone"
    (project / "benchmarks").mkdir(parents=True)
    (project / "asv.conf.json").write_text("{}", encoding="utf-8")
    (project / "sub").mkdir()
    assert bench.checkout(project / "sub") == project.resolve()
    with chdir(project):
        assert bench.checkout() == project.resolve()
    with pytest.raises(suite.BenchError, match=r"no asv\.conf\.json and benchmarks/"):
        bench.checkout(tmp_path)
    conf = json.loads(bench._write_conf(ROOT, tmp_path, None).read_text(encoding="utf-8"))
    results, html = Path(conf["results_dir"]), Path(conf["html_dir"])
    assert results == ROOT / "results" and results not in html.parents  # asv#html warning


def test_the_build_command_builds_exactly_our_wheel_offline(tmp_path: Path) -> None:
    """asv.conf.json's build_command on a copy of HEAD, as asv runs it: one wheel, and
    nothing fetched (no index, no build isolation: setuptools from this environment)."""
    from asv.util import load_json

    conf = load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    (command,) = conf["build_command"]
    assert "--no-deps" in command
    src, cache = tmp_path / "src", tmp_path / "cache"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True,
                             check=True)
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    args = command.format(build_cache_dir=cache, build_dir=src).split()
    assert args[0] == "python"
    env = {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    wheels = list(cache.glob("*.whl"))
    assert [w.name.split("-")[0] for w in wheels] == ["matmul_harness"]
    assert conf["matrix"]["req"]  # releases to build environments for


# --- asv result files ----------------------------------------------------------------------


def draw(rng: random.Random, median: float, n: int, spread: float = 0.01) -> list[float]:
    return [median * (1 + rng.gauss(0, spread)) for _ in range(n)]


def write_result(results: Path, *, commit: str, env: str, started: int,
                 values: dict[str, list[float] | None], version: str | None,
                 machine: str = "box-1t", requirements: dict[str, str] | None = None,
                 date: int = 1_700_000_000_000) -> Path:
    """One asv result file with the timing cells of PARAMS (pass -> samples; None: n/a)."""
    mdir = results / machine
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / "machine.json").write_text(json.dumps({"machine": machine, "version": 1}))
    res, samples, q25, q75, rep = [], [], [], [], []
    for p in ("forward", "backward"):
        s = values.get(p)
        if s is None:
            res.append(math.nan)
            samples.append(None)
            q25.append(None)
            q75.append(None)
            rep.append(None)
        else:
            srt = sorted(s)
            res.append(srt[len(s) // 2])
            samples.append(s)
            q25.append(srt[len(s) // 4])
            q75.append(srt[3 * len(s) // 4])
            rep.append(len(s))
    entry = dict.fromkeys(COLUMNS)
    entry.update(result=res, params=PARAMS, version="1", started_at=started, duration=1.0,
                 stats_q_25=q25, stats_q_75=q75, stats_number=[1] * 2, stats_repeat=rep,
                 samples=samples)
    results_ = {TIME: [entry[c] for c in COLUMNS]}
    if version:
        v = dict.fromkeys(COLUMNS)
        v.update(result=[bench.version_number(version)], params=[["'jax'"]], version="1",
                 started_at=started)
        results_[bench.VERSIONS_BENCH] = [v[c] for c in COLUMNS]
    data = {"commit_hash": commit, "env_name": env, "date": date,
            "params": {"machine": machine}, "python": "3.11",
            "requirements": requirements or {}, "env_vars": {}, "result_columns": COLUMNS,
            "results": results_, "durations": {}, "version": 2}
    path = mdir / f"{commit[:8]}-{env}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    bdir = results / "benchmarks.json"
    bdir.write_text(json.dumps({TIME: {"type": "time", "unit": "seconds",
                                       "param_names": ["framework", "device", "dtype", "shape",
                                                       "pass"]}}))
    return path


def two_releases(results: Path, slow: float = 1.2, n: int = 15) -> None:
    rng = random.Random(11)
    write_result(results, commit="c0ffee00aa", env="virtualenv-py3.11-jax0.6.2",
                 started=1_800_000_000_000, version="0.6.2",
                 values={"forward": draw(rng, 1e-3, n), "backward": draw(rng, 2e-3, n)})
    write_result(results, commit="c0ffee00aa", env="virtualenv-py3.11-jax0.7.2",
                 started=1_800_000_100_000, version=None, requirements={"jax": "0.7.2"},
                 values={"forward": draw(rng, slow * 1e-3, n),
                         "backward": draw(rng, 2e-3, n, spread=0.3)})


def test_releases_of_one_commit_are_both_kept_with_their_versions(tmp_path: Path) -> None:
    two_releases(tmp_path)
    t = load([], tmp_path).table
    timed = t[t["kind"] == "time"]
    assert sorted(set(timed["framework_version"])) == ["0.6.2", "0.7.2"]  # track, then req
    assert len(timed) == 4 and bench.VERSIONS_BENCH not in set(t["benchmark"])
    sr = analysis.series(analysis.timings(t), analysis.CELL)
    assert list(dict.fromkeys(sr.sort_values("order")["series"])) == ["0.6.2", "0.7.2"]
    latest = analysis.latest(analysis.timings(t))  # newest by run time (the commit dates are equal)
    assert set(latest["framework_version"]) == {"0.7.2"}


def test_a_later_partial_run_never_hides_a_measured_value(tmp_path: Path) -> None:
    rng = random.Random(5)
    write_result(tmp_path, commit="aaaa0000", env="existing-py", started=1_800_000_000_000,
                 version="0.7.2", values={"forward": draw(rng, 1e-3, 9),
                                          "backward": draw(rng, 2e-3, 9)})
    # later, another commit, only `forward` selected: asv records backward as n/a (NaN)
    write_result(tmp_path, commit="bbbb1111", env="existing-py", started=1_900_000_000_000,
                 version="0.7.2", values={"forward": draw(rng, 1e-3, 9), "backward": None})
    latest = analysis.latest(analysis.timings(load([], tmp_path).table))
    back = latest[latest["pass_"] == "backward"]
    assert list(back["status"]) == ["pass"] and list(back["commit"]) == ["aaaa0000"]
    # the same identity twice (one results folder copied over another): n/a loses too
    copy = tmp_path / "copy"
    write_result(copy, commit="aaaa0000", env="existing-py", started=1_950_000_000_000,
                 version="0.7.2", values={"forward": draw(rng, 1e-3, 9), "backward": None})
    from harness.report.load import _merge
    from harness.report.load_asv import read_asv

    both = _merge([read_asv(tmp_path, {}, []), read_asv(copy, {}, [])])
    row = both[(both["commit"] == "aaaa0000") & (both["quantity"] == "backward")
               & (both["kind"] == "time")]
    assert list(row["status"]) == ["pass"]


def test_report_shows_releases_side_by_side_and_colours_only_resolved(tmp_path: Path) -> None:
    two_releases(tmp_path / "asv")
    html, md = build_report([], tmp_path / "out", asv_results=tmp_path / "asv")
    page = html.read_text(encoding="utf-8")
    section = page.split('<section id="releases">')[1].split("</section>")[0]
    assert "jax 0.6.2" in section and "jax 0.7.2" in section
    assert re.search(r'<td class="slower"[^>]*>[^<]*<small>slower \+1\d\.\d%', section)
    # backward: the same median, 30% spread: not resolved and not coloured
    assert re.search(r'<td class="unresolved"[^>]*>[^<]*<small>not resolved', section)
    assert "<img" in section  # the trend figure, x axis the release
    text = md.read_text(encoding="utf-8")
    assert "## Across releases and commits" in text and "(slower +" in text


def test_quick_timings_are_smoke_tests_without_speedups(tmp_path: Path) -> None:
    rng = random.Random(2)
    for fw_version, commit in (("0.7.2", "abcd0000"),):
        write_result(tmp_path / "asv", commit=commit, env="existing-py",
                     started=1_800_000_000_000, version=fw_version,
                     values={"forward": draw(rng, 1e-3, 1), "backward": draw(rng, 1e-3, 1)})
    t = analysis.timings(load([], tmp_path / "asv").table)
    assert t["quick"].all()
    assert analysis.speedups(t, "jax").empty  # no speedup from one cold sample
    html, _ = build_report([], tmp_path / "out", asv_results=tmp_path / "asv",
                           baseline="jax")
    page = html.read_text(encoding="utf-8")
    assert "smoke test (1 sample)" in page and "IQR 0%" not in page


# --- compare -------------------------------------------------------------------------------


def test_compare_exits_1_on_a_resolved_regression_only(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    two_releases(tmp_path, slow=1.10)
    args = ["--results-dir", str(tmp_path)]
    assert main(["compare", "virtualenv-py3.11-jax0.6.2", "virtualenv-py3.11-jax0.7.2",
                 *args]) == 1
    out = capsys.readouterr().out
    assert "<< REGRESSION" in out and "not resolved" in out  # backward is too noisy
    assert main(["compare", "virtualenv-py3.11-jax0.6.2", "virtualenv-py3.11-jax0.7.2",
                 "--threshold", "1.2", *args]) == 0  # resolved, but within the threshold
    assert main(["compare", "virtualenv-py3.11-jax0.7.2", "virtualenv-py3.11-jax0.6.2",
                 *args]) == 0  # faster is never a regression


def test_compare_a_noop_is_never_a_regression(tmp_path: Path) -> None:
    rng = random.Random(9)
    for commit, started in (("1111aaaa", 1), ("2222bbbb", 2)):
        write_result(tmp_path, commit=commit, env="existing-py",
                     started=1_800_000_000_000 + started, version="0.7.2",
                     values={"forward": draw(rng, 1e-3, 15), "backward": draw(rng, 2e-3, 15)})
    first = tmp_path / "box-1t" / "1111aaaa-existing-py.json"
    assert main(["compare", str(first), "2222bbbb", "--results-dir", str(tmp_path)]) == 0


def test_compare_bad_input_is_exit_2_with_one_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    two_releases(tmp_path)
    base = ["--results-dir", str(tmp_path)]
    cases: list[tuple[list[str], str]] = [
        (["nope", "virtualenv-py3.11-jax0.7.2", *base],
         "'nope': no asv result file, environment"),
        (["c0ffee00", "c0ffee00", "--threshold", "0.9", *base],
         "--threshold must be a ratio >= 1"),
        (["a", "b", "--results-dir", str(tmp_path / "missing")], "no such folder"),
    ]
    for argv, message in cases:
        assert main(["compare", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


# --- accuracy that can move ----------------------------------------------------------------


def test_drift_cells_move_when_the_accumulation_order_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same product summed in two halves of K (a split-K kernel) gives another error
    ratio and other effective bits at K = 65536 float32: a kernel change shows."""
    import numpy as np

    from benchmarks import common
    from harness.adapters.numpy import NumpyAdapter

    monkeypatch.setenv(suite.SELECTION_ENV, "all")
    monkeypatch.setenv(suite.THREADS_ENV, "1")
    monkeypatch.setattr(common, "_adapters", {})
    monkeypatch.setattr(common, "_outcomes", {})
    shape = "16x65536x16"
    plain = common.outcomes("drift", "numpy", "cpu", "float32", shape)["Y"]

    class SplitK(NumpyAdapter):
        def vjp(self, x: Any, w: Any, g: Any) -> tuple[Any, Any, Any]:
            _, dx, dw = super().vjp(x, w, g)
            h = x.shape[-1] // 2
            return np.matmul(x[:, :h], w[:h]) + np.matmul(x[:, h:], w[h:]), dx, dw

    monkeypatch.setattr(common, "_adapters", {"numpy": SplitK(threads=1)})
    monkeypatch.setattr(common, "_outcomes", {})
    split = common.outcomes("drift", "numpy", "cpu", "float32", shape)["Y"]
    assert plain != split
    assert all(0 < r <= 1 and b > 15 for r, b in (plain, split))


def test_drift_case_ids() -> None:
    from benchmarks import common

    c = common.case("b256:64x64x64")
    assert c.x == (256, 64, 64) and c.w == (64, 64)
    assert common.case("16x65536x16").x == (16, 65536)
    with pytest.raises(ValueError, match="batch prefix"):
        common.case("x3:2x2x2")


def test_cpu_clock_is_for_cpu_cells_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from benchmarks import common

    monkeypatch.delenv(bench.CLOCK_ENV, raising=False)
    assert common.clock("cpu") is time.perf_counter
    monkeypatch.setenv(bench.CLOCK_ENV, "cpu")
    assert common.clock("cpu") is time.process_time
    assert common.clock("gpu") is time.perf_counter  # CPU time says nothing of a GPU
    assert main(["compare", "a", "b", "--clock", "cpu"]) == 2  # stored results: no clock
