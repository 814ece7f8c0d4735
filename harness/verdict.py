"""Is one timing faster or slower than another, or can the samples not tell?

Two rank tests, written out (a few dozen lines; scipy is not a dependency of the package):

- `mann_whitney_p`: two independent sets of samples (two asv results, each with its
  samples): exact distribution of U for small sets without ties, the normal approximation
  with tie correction otherwise.
- `signed_rank_p`: paired differences (log ratios of interleaved rounds, A then B then A...):
  Wilcoxon's signed-rank test, exact for up to 50 pairs, normal approximation beyond.

A `Verdict` is "faster", "slower", "not resolved" or "smoke" (a `--quick` timing: one cold
sample; never judged, never turned into a speedup). Where samples are missing, asv's 99%
confidence intervals decide: disjoint intervals resolve, overlapping ones do not.

Nothing here imports pandas or a framework: `matmul-harness compare` and the report use it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

ALPHA = 0.01  # two-sided: a difference is resolved when p < ALPHA
FASTER, SLOWER, UNRESOLVED, SMOKE = "faster", "slower", "not resolved", "smoke"


@dataclass(frozen=True)
class Verdict:
    """NEW against BASE: `ratio` = NEW's median / BASE's (> 1: NEW is slower)."""

    state: str  # FASTER, SLOWER, UNRESOLVED or SMOKE
    ratio: float
    p: float  # the test's two-sided p-value (NaN: decided by intervals, or not tested)
    method: str  # how it was decided, for the report and compare's output

    @property
    def resolved(self) -> bool:
        return self.state in (FASTER, SLOWER)

    def regression(self, threshold: float) -> bool:
        """A resolved slowdown larger than `threshold` (e.g. 1.05: more than 5% slower)."""
        return self.state == SLOWER and self.ratio > threshold

    def text(self) -> str:
        pct = f"{100 * (self.ratio - 1):+.1f}%" if math.isfinite(self.ratio) else "?"
        p = f", p={self.p:.2g}" if math.isfinite(self.p) else ""
        return f"{self.state} ({pct}{p}; {self.method})"


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


@lru_cache(maxsize=64)
def _w_counts(n: int) -> tuple[int, ...]:
    """How many sign patterns of ranks 1..n give each positive-rank sum W = 0..n(n+1)/2."""
    out = [1]
    for r in range(1, n + 1):
        nxt = [0] * (len(out) + r)
        for w, c in enumerate(out):
            nxt[w] += c
            nxt[w + r] += c
        out = nxt
    return tuple(out)


def signed_rank_p(diffs: Sequence[float]) -> float:
    """Two-sided p-value of Wilcoxon's signed-rank test that the differences centre on 0."""
    d = [x for x in diffs if x != 0.0]
    n = len(d)
    if n < 2:
        return math.nan
    ranks, ties = _ranks([abs(x) for x in d])
    w = sum(r for r, x in zip(ranks, d, strict=True) if x > 0)
    if all(t == 1 for t in ties) and n <= 50:
        counts = _w_counts(n)
        total = 2 ** n
        lo = min(w, n * (n + 1) / 2 - w)
        return min(1.0, float(2 * sum(counts[: math.floor(lo) + 1]) / total))
    mean = n * (n + 1) / 4
    var = n * (n + 1) * (2 * n + 1) / 24 - sum(t ** 3 - t for t in ties) / 48
    z = (abs(w - mean) - 0.5) / math.sqrt(var)
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


def judge_paired(base: Sequence[float], new: Sequence[float], *,
                 alpha: float = ALPHA) -> Verdict:
    """NEW against BASE from interleaved rounds: base[i] and new[i] were measured one
    right after the other, so machine drift between rounds cancels in their ratio."""
    pairs = [(b, n) for b, n in zip(base, new, strict=True) if b > 0 and n > 0]
    logs = [math.log(n / b) for b, n in pairs]
    ratio = math.exp(statistics.median(logs)) if logs else math.nan
    p = signed_rank_p(logs)
    return Verdict(_direction(ratio, p, alpha), ratio, p,
                   f"Wilcoxon signed-rank on {len(logs)} interleaved rounds")
