"""`compare --rounds`: the sign-test bounds, the threshold-aware verdict, the sequential
looks and their false-alarm budget, on synthetic rounds from seeded generators that mimic
the shared 2-core machine (drift common to a round, a fixed effect per worker process,
one-sided interference spikes); then the command's orchestration with stand-in workers,
and one real worker (numpy) speaking the protocol.

The real runs (a planted slowdown in the numpy adapter, a no-op) are a script:
benchmarks/planted_regression.py.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist
from typing import Any, ClassVar

import pytest

from harness import compare, verdict
from harness.cli import main
from tests.conftest import chdir

ROOT = Path(__file__).resolve().parents[1]
Generation = Callable[[int, list[int]], dict[int, list[tuple[float, float]]]]


def rounds_generator(seed: int, shift: float, *, process_sd: float = 0.02,
                     spikes: float = 0.1, cells: int = 1, rounds: int = 10) -> Generation:
    """Synthetic generations: per round a drift of up to +-35% hits both sides alike;
    each fresh pair of processes differs by a lasting log-normal effect (process_sd); a
    side is hit by a +10..60% interference spike with probability `spikes`; NEW is
    `shift` slower."""
    rng = random.Random(seed)

    def generation(g: int, active: list[int]) -> dict[int, list[tuple[float, float]]]:
        effect = {i: rng.gauss(0.0, process_sd) for i in active}
        out: dict[int, list[tuple[float, float]]] = {}
        for i in active:
            pairs = []
            for _ in range(rounds):
                drift = math.exp(rng.uniform(-0.35, 0.35))
                side = [drift * math.exp(rng.gauss(0, 0.02))
                        * (1 + rng.uniform(0.1, 0.6) if rng.random() < spikes else 1.0)
                        for _ in range(2)]
                pairs.append((side[0], side[1] * (1 + shift) * math.exp(effect[i])))
            out[i] = pairs
        return out

    return generation


# --- the bounds ----------------------------------------------------------------------------


def test_median_bounds_are_order_statistics_chosen_by_the_binomial() -> None:
    d = [float(v) for v in range(1, 13)]  # n = 12: P(B <= 0) = 2.4e-4, P(B <= 1) = 3.2e-3
    assert verdict.median_bounds(d, 1e-3) == (1.0, 12.0)
    assert verdict.median_bounds(d, 1e-4) == (-math.inf, math.inf)  # too few for alpha
    # n = 20 at 0.05 a side: P(B <= 5) = 0.0207, P(B <= 6) = 0.0577, so the 6th values
    assert verdict.median_bounds([float(v) for v in range(20, 0, -1)], 0.05) == (6.0, 15.0)
    # beyond 1023 draws 2**n overflows a float: exact arithmetic still gives bounds
    lo, hi = verdict.median_bounds([float(v) for v in range(2000)], 0.01)
    assert 900 < lo < 1000 < hi < 1100


@pytest.mark.parametrize("draw", ["exponential", "lognormal", "two-point-mixture"])
def test_median_bounds_cover_the_median_as_often_as_promised(draw: str) -> None:
    """Skewed and lumpy distributions: the lower bound exceeds the true median in at
    most `alpha` of the trials (a one-sided level), the upper falls below it as rarely."""
    rng = random.Random(len(draw))  # fixed per case (hash() is salted per process)
    draws: dict[str, tuple[Callable[[], float], float]] = {
        "exponential": (lambda: rng.expovariate(1.0), math.log(2)),
        "lognormal": (lambda: rng.lognormvariate(0.0, 1.0), 1.0),
        # 55% near 0, 45% near 1: the median is N(0, 0.01)'s 0.5/0.55 quantile
        "two-point-mixture": (lambda: rng.gauss(0, 0.01) + (rng.random() < 0.45),
                              0.01 * NormalDist().inv_cdf(0.5 / 0.55)),
    }
    sample, median = draws[draw]
    alpha, trials = 0.05, 1500
    above = below = 0
    for _ in range(trials):
        lo, hi = verdict.median_bounds([sample() for _ in range(25)], alpha)
        above += lo > median
        below += hi < median
    assert above / trials <= alpha and below / trials <= alpha
    assert above > 0 and below > 0  # not vacuous: the bounds are as tight as alpha allows


# --- one look ------------------------------------------------------------------------------


def test_the_verdict_is_threshold_aware() -> None:
    rng = random.Random(4)
    slow = [math.log(1.10) + rng.gauss(0, 0.01) for _ in range(30)]
    small = [math.log(1.02) + rng.gauss(0, 0.002) for _ in range(30)]
    same = [rng.gauss(0, 0.005) for _ in range(30)]
    v = verdict.judge_paired(slow, threshold=1.05, alpha=1e-3)
    assert v.state == verdict.SLOWER and v.regression(1.05) and not v.regression(1.2)
    assert v.bounds is not None and v.bounds[0] > verdict.margin(1.05) and verdict.decided(
        v, 1.05)
    # resolved slower, but surely within the threshold: decided, and no regression
    w = verdict.judge_paired(small, threshold=1.05, alpha=1e-3)
    assert w.state == verdict.SLOWER and not w.regression(1.05) and verdict.decided(w, 1.05)
    u = verdict.judge_paired(same, threshold=1.05, alpha=1e-3)
    assert u.state == verdict.UNCHANGED and u.resolved and not u.regression(1.05)
    f = verdict.judge_paired([-x for x in slow], threshold=1.05, alpha=1e-3)
    assert f.state == verdict.FASTER and not f.regression(1.0)
    few = verdict.judge_paired(slow[:5], threshold=1.05, alpha=1e-3)
    assert few.state == verdict.UNRESOLVED and not verdict.decided(few, 1.05)
    assert "bounds +" in v.text() and verdict.margin(1.05) == pytest.approx(1.025)


# --- the sequential procedure --------------------------------------------------------------


def test_a_10_percent_slowdown_is_resolved_and_cancels_drift_pooling_cannot() -> None:
    for seed in range(20):
        seq = verdict.sequential(rounds_generator(seed, 0.10), 1, generations=40,
                                 threshold=1.05)
        v = seq.verdicts[0]
        assert v.regression(1.05), (seed, v.text())
        assert 1.07 < v.ratio < 1.13 and seq.generations <= 24
    # the same rounds, pooled without their pairing, cannot resolve it (drift +-35%)
    pairs = rounds_generator(0, 0.10)(1, [0])[0]
    assert not verdict.judge([b for b, _ in pairs], [n for _, n in pairs]).resolved


def test_a_noop_is_never_a_regression_and_is_decided_unchanged() -> None:
    decided = 0
    for seed in range(40):
        seq = verdict.sequential(rounds_generator(100 + seed, 0.0), 1, generations=40,
                                 threshold=1.05)
        assert not seq.verdicts[0].regression(1.05), seq.verdicts[0].text()
        decided += verdict.decided(seq.verdicts[0], 1.05)
    assert decided >= 36  # most no-ops stop early, as "not beyond the threshold"


def false_alarms(seeds: int, alpha: float, cells: int = 1) -> int:
    """No-op runs (threshold 1: any resolved slowdown counts) that end in a regression."""
    count = 0
    for seed in range(seeds):
        seq = verdict.sequential(rounds_generator(seed, 0.0, process_sd=0.0, spikes=0.0,
                                                  cells=cells, rounds=3),
                                 cells, generations=30, threshold=1.0, alpha=alpha, every=2)
        count += any(v.regression(1.0) for v in seq.verdicts.values())
    return count


def test_repeated_looks_keep_the_false_alarm_rate_within_alpha(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Threshold 1 leaves no margin, so only the Bonferroni split over looks and cells
    keeps no-ops from being called regressions; without it the rate is several alpha."""
    alpha, seeds = 0.1, 300
    assert false_alarms(seeds, alpha) / seeds <= alpha
    assert false_alarms(seeds // 4, alpha, cells=3) / (seeds // 4) <= alpha
    monkeypatch.setattr(verdict, "look_alpha", lambda a, looks, cells: a)  # no correction
    assert false_alarms(seeds, alpha) / seeds > 1.5 * alpha


def test_the_looks_and_the_budget() -> None:
    assert verdict.looks_plan(40) == [12, 16, 20, 24, 28, 32, 36, 40]
    assert verdict.looks_plan(13) == [12, 13] and verdict.looks_plan(5) == [5]
    assert verdict.look_alpha(0.01, 8, 2) == pytest.approx(0.01 / 16)
    calls: list[int] = []
    gen = rounds_generator(1, 0.0, process_sd=0.0, spikes=0.0)

    def counted(g: int, active: list[int]) -> dict[int, list[tuple[float, float]]]:
        calls.append(g)
        return gen(g, active)

    seq = verdict.sequential(counted, 1, generations=40, threshold=1.0,
                             out_of_budget=lambda: True)
    # the budget is checked at looks only, so the level planned for 8 looks still holds
    assert seq.generations == 12 and calls == list(range(1, 13))
    assert seq.looks == 8 and seq.level == pytest.approx(0.01 / 8)
    assert "budget spent after 12 generations" in seq.why


# --- the command ---------------------------------------------------------------------------


class FakeWorker:
    """Stands in for compare_worker: NEW's tree is `SLOW` slower, with drift and noise."""

    SLOW = 0.0
    rng = random.Random(0)
    started: ClassVar[list[str]] = []

    def __init__(self, tree: Path, clock: str, env: dict[str, str], log: Path) -> None:
        self.side = tree.name
        self.effect = math.exp(self.rng.gauss(0, 0.01))
        FakeWorker.started.append(self.side)
        assert clock == "cpu" and json.loads(Path(env[compare.SELECTION_ENV]).read_text())

    def ask(self, **msg: Any) -> dict[str, Any]:
        if msg["op"] == "cell":
            return {"number": 40}
        slow = 1 + self.SLOW if self.side == "new" else 1.0
        drift = math.exp(self.rng.uniform(-0.3, 0.3))
        return {"samples": [1e-3 * slow * drift * self.effect * math.exp(
            self.rng.gauss(0, 0.01)) for _ in range(msg["samples"])]}

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("slow", "code"), [(0.10, 1), (0.0, 0), (-0.10, 0)])
def test_compare_rounds_exit_codes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str], slow: float,
                                   code: int) -> None:
    config = tmp_path / "one.yaml"
    config.write_text("frameworks: [numpy]\nkinds: [time]\npasses: [forward]\nthreads: 1\n"
                      "cpu: {dtypes: [float32], shapes: [256x256x256]}\n", encoding="utf-8")
    monkeypatch.setattr(compare, "_Worker", FakeWorker)
    monkeypatch.setattr(FakeWorker, "SLOW", slow)
    monkeypatch.setattr(FakeWorker, "started", [])
    with chdir(ROOT):
        assert main(["compare", "HEAD", "HEAD", "--rounds", "400", "--config", str(config),
                     "--clock", "cpu"]) == code
    out = capsys.readouterr().out
    assert ("<< REGRESSION" in out) == (code == 1)
    assert "every cell decided after" in out and "planned looks" in out
    # a fresh pair per generation (plus the first pair that finds the cells), and the
    # side that starts first alternates
    gens = len(FakeWorker.started) // 2 - 1
    assert gens >= 12 and FakeWorker.started[2:4] != FakeWorker.started[4:6]


def test_compare_rounds_bad_input_is_exit_2(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with chdir(ROOT):
        assert main(["compare", "no-such-rev", "HEAD", "--rounds", "20"]) == 2
    assert "'no-such-rev': not a commit" in capsys.readouterr().err
    assert main(["compare", "HEAD", "HEAD", "--rounds", "0"]) == 2


def test_a_real_worker_times_its_trees_benchmark_call(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    selection = tmp_path / "selection.json"
    selection.write_text(json.dumps({"frameworks": ["numpy"], "kinds": ["time"],
                                     "passes": ["forward"],
                                     "cpu": {"dtypes": ["float32"], "shapes": ["64x64x64"]}}),
                         encoding="utf-8")
    env = {**compare.os.environ, compare.SELECTION_ENV: str(selection),
           compare.THREADS_ENV: "1"}
    w = compare._Worker(ROOT, "cpu", env, tmp_path / "w.log")
    try:
        got = w.ask(op="cell", i=0, cell=["numpy", "cpu", "float32", "64x64x64", "forward"])
        assert got["number"] >= 1
        samples = w.ask(op="time", i=0, calls=3, samples=4)["samples"]
        assert len(samples) == 4 and all(0 < s < 1 for s in samples)
        skip = w.ask(op="cell", i=1, cell=["numpy", "cpu", "float64", "64x64x64", "forward"])
        assert "not in the" in skip["skip"]  # outside the selection: a reason, no crash
    finally:
        w.close()
    assert w.proc.returncode == 0


def test_timing_cells_follow_the_selection() -> None:
    from harness.adapters import load

    sel = compare.QUICK
    cells = compare.timing_cells(sel, gpu=False)
    installed = [f for f in sel.frameworks if load(f).installed()]
    assert {c[1] for c in cells} == set(installed)
    assert all(c[2] == "cpu" and c[0].endswith(".time_matmul") and c[3] == "float32"
               and c[4] == "256x256x256" for c in cells)
    assert {c[5] for c in cells} == set(sel.passes) and len(set(cells)) == len(cells)
