"""Is one timing faster or slower than another, or can the samples not tell?

Two tests, written out (a few dozen lines; scipy is not a dependency of the package):

- `mann_whitney_p`: two independent sets of samples (two asv results, each with its
  samples): exact distribution of U for small sets without ties, the normal approximation
  with tie correction otherwise.
- `median_bounds`: paired measurements (`compare --rounds`, A B B A ...): distribution-
  free confidence bounds for the median log ratio, from the sign test. `judge_paired`
  turns them into a threshold-aware verdict, `sequential` repeats measuring and judging
  at planned looks; docs/tracking.md derives the rule and how the looks keep the
  false-alarm rate at `alpha`.

A `Verdict` is "faster", "slower", "unchanged" (paired only), "not resolved" or "smoke" (a
`--quick` timing: one cold sample; never judged, never turned into a speedup). Where
samples are missing, asv's 99% confidence intervals decide: disjoint intervals resolve,
overlapping ones do not.

Nothing here imports pandas or a framework: `matmul-harness compare` and the report use it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

ALPHA = 0.01  # two-sided: a difference is resolved when p < ALPHA
FASTER, SLOWER, UNRESOLVED, SMOKE = "faster", "slower", "not resolved", "smoke"
UNCHANGED = "unchanged"  # paired rounds only: the bounds lie within the threshold both ways


@dataclass(frozen=True)
class Verdict:
    """NEW against BASE: `ratio` = NEW's median / BASE's (> 1: NEW is slower)."""

    state: str  # FASTER, SLOWER, UNCHANGED, UNRESOLVED or SMOKE
    ratio: float
    p: float  # the test's two-sided p-value (NaN: decided by bounds or intervals, or not tested)
    method: str  # how it was decided, for the report and compare's output
    # paired rounds: lower and upper confidence bounds of the ratio (judge_paired)
    bounds: tuple[float, float] | None = None

    @property
    def resolved(self) -> bool:
        return self.state in (FASTER, SLOWER, UNCHANGED)

    def regression(self, threshold: float) -> bool:
        """A resolved slowdown beyond `threshold` (e.g. 1.05: more than 5% slower). With
        paired bounds: the estimate is beyond it and the lower bound beyond half of it
        (`margin`), the rule docs/tracking.md derives."""
        if self.state != SLOWER:
            return False
        if self.bounds is None:
            return self.ratio > threshold
        return self.bounds[0] > margin(threshold) and self.ratio > threshold

    def text(self) -> str:
        pct = f"{100 * (self.ratio - 1):+.1f}%" if math.isfinite(self.ratio) else "?"
        p = f", p={self.p:.2g}" if math.isfinite(self.p) else ""
        if self.bounds is not None:
            lo, hi = (f"{100 * (b - 1):+.1f}%" if math.isfinite(b) else "?"
                      for b in self.bounds)
            p = f", bounds {lo} .. {hi}"
        return f"{self.state} ({pct}{p}; {self.method})"


def margin(threshold: float) -> float:
    """The ratio a regression's lower bound must exceed: half the threshold's slowdown
    (1.05 -> 1.025). A no-op (ratio 1) lies below it with room to spare, a change of the
    full threshold lies above it, so both are decided in a bounded number of rounds."""
    return 1.0 + (threshold - 1.0) / 2.0


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Mid-ranks (1-based) of `values`, and the sizes of the tied groups."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@lru_cache(maxsize=256)
def _u_counts(n: int, m: int) -> tuple[int, ...]:
    """How many arrangements of n + m distinct values give each U = 0..n*m."""
    # f(n, m, u) = f(n-1, m, u-m) + f(n, m-1, u): the largest value is in the first set
    # (beating all m of the other) or in the second.
    if n == 0 or m == 0:
        return (1,)
    a, b = _u_counts(n - 1, m), _u_counts(n, m - 1)
    out = [0] * (n * m + 1)
    for u, c in enumerate(a):
        out[u + m] += c
    for u, c in enumerate(b):
        out[u] += c
    return tuple(out)


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value that `a` and `b` come from one distribution (NaN: too few)."""
    n, m = len(a), len(b)
    if n < 2 or m < 2:
        return math.nan
    ranks, ties = _ranks([*a, *b])
    u = sum(ranks[:n]) - n * (n + 1) / 2
    if all(t == 1 for t in ties) and n * m <= 2500:
        counts = _u_counts(n, m)
        total = sum(counts)
        lo = min(u, n * m - u)
        tail = sum(counts[: math.floor(lo) + 1]) / total
        return min(1.0, 2 * tail)
    mean = n * m / 2
    big = n + m
    var = n * m / 12 * ((big + 1) - sum(t ** 3 - t for t in ties) / (big * (big - 1)))
    if var <= 0:
        return 1.0
    z = (abs(u - mean) - 0.5) / math.sqrt(var)  # continuity correction
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))


def _direction(ratio: float, p: float, alpha: float) -> str:
    if not (p < alpha) or not math.isfinite(ratio) or ratio == 1.0:
        return UNRESOLVED
    return SLOWER if ratio > 1 else FASTER


def judge(base: Sequence[float], new: Sequence[float], *,
          base_ci: tuple[float, float] | None = None,
          new_ci: tuple[float, float] | None = None,
          smoke: bool = False, alpha: float = ALPHA) -> Verdict:
    """NEW against BASE from two independent sets of samples (seconds per call).

    `base`/`new`: the samples (asv's `--record-samples`); with fewer than two on either
    side the 99% confidence intervals (asv's stats_ci_99_a/b) decide instead, and
    without those nothing is resolved. `smoke`: either side is a `--quick` timing.
    """
    mb = statistics.median(base) if base else math.nan
    mn = statistics.median(new) if new else math.nan
    if base_ci and not base:
        mb = (base_ci[0] + base_ci[1]) / 2
    if new_ci and not new:
        mn = (new_ci[0] + new_ci[1]) / 2
    ratio = mn / mb if mb > 0 else math.nan
    if smoke:
        return Verdict(SMOKE, ratio, math.nan, "--quick smoke test: one cold sample, "
                       "not judged")
    if len(base) >= 2 and len(new) >= 2:
        p = mann_whitney_p(base, new)
        return Verdict(_direction(ratio, p, alpha), ratio, p,
                       f"Mann-Whitney U on {len(base)}+{len(new)} samples")
    if base_ci and new_ci and all(map(math.isfinite, (*base_ci, *new_ci))):
        disjoint = new_ci[0] > base_ci[1] or new_ci[1] < base_ci[0]
        state = (SLOWER if new_ci[0] > base_ci[1] else FASTER) if disjoint else UNRESOLVED
        return Verdict(state, ratio, math.nan, "99% confidence intervals "
                       + ("disjoint" if disjoint else "overlap"))
    return Verdict(UNRESOLVED, ratio, math.nan, "no samples or intervals to judge from")


def median_bounds(diffs: Sequence[float], alpha: float) -> tuple[float, float]:
    """Lower and upper confidence bounds of the median of `diffs`, each one-sided at level
    `alpha`, from the sign test (distribution-free: independent draws are all it needs).

    With B ~ Binomial(n, 1/2) the count of draws below the true median m, the k-th smallest
    draw exceeds m exactly when B <= k - 1; so the largest k with P(B <= k - 1) <= alpha
    gives a lower bound that is wrong with probability <= alpha (the upper bound by
    symmetry). Too few draws for `alpha` (2**-n > alpha): (-inf, inf)."""
    n = len(diffs)
    d = sorted(diffs)
    limit = Fraction(alpha) * 2 ** n  # exact: 2**n overflows a float beyond 1023 draws
    k, cdf = 0, 0
    while k < n:
        cdf += math.comb(n, k)  # cdf = 2**n * P(B <= k)
        if cdf > limit:
            break
        k += 1
    if k == 0:
        return -math.inf, math.inf
    return d[k - 1], d[n - k]


def look_alpha(alpha: float, looks: int, cells: int) -> float:
    """The level of each look at each cell: Bonferroni over every (look, cell) at which a
    regression could be declared, so the chance of any false alarm stays <= `alpha`."""
    return alpha / (max(1, looks) * max(1, cells))


def judge_paired(logs: Sequence[float], *, threshold: float, alpha: float,
                 unit: str = "paired rounds") -> Verdict:
    """NEW against BASE from independent log ratios log(new / base) of paired measurements
    (A B B A ...: drift between them cancels). `alpha`: the level of this look's bounds
    (`look_alpha`). The state: SLOWER / FASTER when the bounds exclude a ratio of 1;
    UNCHANGED when they lie within (1/threshold, threshold); else UNRESOLVED.
    `regression(threshold)` then needs the lower bound above `margin(threshold)` and the
    estimate (the median ratio) above `threshold`."""
    if not logs:
        return Verdict(UNRESOLVED, math.nan, math.nan, f"no {unit}")
    ratio = math.exp(statistics.median(logs))
    lo, hi = (math.exp(b) for b in median_bounds(logs, alpha))
    if lo > 1.0:
        state = SLOWER
    elif hi < 1.0:
        state = FASTER
    elif hi < threshold and lo > 1.0 / threshold:
        state = UNCHANGED
    else:
        state = UNRESOLVED
    return Verdict(state, ratio, math.nan,
                   f"sign test on {len(logs)} {unit}, bounds at {alpha:.2g} a side", (lo, hi))


def decided(v: Verdict, threshold: float) -> bool:
    """Whether more measuring can no longer change compare's answer for this cell: a
    resolved regression, or an upper bound below the threshold (then not one)."""
    return v.regression(threshold) or (v.bounds is not None and v.bounds[1] < threshold)


FIRST_LOOK = 12  # generations: with fewer, the sign test's bounds at look_alpha are infinite
LOOK_EVERY = 4  # generations between looks


def looks_plan(generations: int, first: int = FIRST_LOOK, every: int = LOOK_EVERY) -> list[int]:
    """The generations after which the cells are judged: `first`, every `every` after it,
    and the last. Fixed before anything is measured, so the Bonferroni split over them
    (`look_alpha`) holds however many are taken."""
    return sorted({*range(min(first, generations), generations, every), generations})


@dataclass(frozen=True)
class Sequential:
    """What `sequential` measured and decided."""

    verdicts: dict[int, Verdict]  # cell -> its verdict at its last look
    pairs: dict[int, list[tuple[float, float]]]  # cell -> (base, new) of every round
    generations: int  # generations measured
    why: str  # why it stopped
    looks: int  # looks planned
    level: float  # each look's level a side (look_alpha)


def generation_log_ratio(pairs: Sequence[tuple[float, float]]) -> float:
    """One generation's value: the median log(new / base) of its rounds."""
    return statistics.median(math.log(n / b) for b, n in pairs)


def sequential(generation: Callable[[int, list[int]], dict[int, list[tuple[float, float]]]],
               cells: int, *, generations: int, threshold: float, alpha: float = ALPHA,
               first: int = FIRST_LOOK, every: int = LOOK_EVERY,
               out_of_budget: Callable[[], bool] = lambda: False) -> Sequential:
    """Measure generations until every cell is `decided`.

    `generation(g, cells)`: the (base, new) rounds of each of `cells` measured by a fresh
    pair of processes (g counts from 1). Two processes of the same code can differ by a
    few percent for as long as they live (memory layout, the core they run on), which
    pairing within them cannot cancel; across generations it is noise like any other, so
    a generation, not a round, is the independent unit: its value is
    `generation_log_ratio`. Cells are judged only at the planned looks, each at
    `look_alpha(alpha, looks, cells)`: whatever the number of looks taken, the chance that
    any cell of a no-op is called a regression stays <= `alpha`. A decided cell is measured
    no more; the run stops when every cell is decided, after `generations`, or at the first
    look after `out_of_budget()` turns true."""
    looks = looks_plan(generations, first, every)
    level = look_alpha(alpha, len(looks), cells)
    pairs: dict[int, list[tuple[float, float]]] = {i: [] for i in range(cells)}
    values: dict[int, list[float]] = {i: [] for i in range(cells)}
    verdicts: dict[int, Verdict] = {}
    active = list(range(cells))
    done = 0
    why = f"{generations} generations done (the most allowed); undecided cells stay so"
    for done in range(1, generations + 1):
        for i, got in generation(done, active).items():
            pairs[i].extend(got)
            values[i].append(generation_log_ratio(got))
        if done not in looks:
            continue
        for i in active:
            verdicts[i] = judge_paired(values[i], threshold=threshold, alpha=level,
                                       unit="generations")
        active = [i for i in active if not decided(verdicts[i], threshold)]
        if not active:
            why = f"every cell decided after {done} generations"
            break
        if done < generations and out_of_budget():
            why = f"budget spent after {done} generations; undecided cells stay so"
            break
    return Sequential(verdicts, pairs, done, why, len(looks), level)
