"""The bias test's false-alarm rate and power, measured on emulated correct kernels.

    python benchmarks/bias_null.py --examples 2000 --seed 0

No framework needed: on the campaign's random shapes (benchmarks/campaign.py), float16 and
bfloat16 results are computed the ways correct kernels compute them, then judged by
`harness.checks.check`:

- `rounded`: the exact result rounded once to the dtype (what the issue saw flagged for
  K = 1 outer products);
- `float32`: products and sums in float32, then rounded to the dtype (a double rounding);
- `partials`: every broadcast batch's product, and each of the JVP's two terms, rounded to
  the dtype before they are summed (numpy's and TensorFlow's broadcast gradients);

and, for the power, the same kernels with a relative 1e-3 planted before the last rounding.
Prints, per kernel × dtype × quantity, the checks, how many the bias test flagged (each a
false alarm) and, beside it, how many the former statistic (|β| > 6σ with
σ = u/√3·√Σref⁴/Σref², independent roundings assumed) would have flagged; then the
detection rates of the planted scaling under both.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections import Counter
from pathlib import Path

import numpy as np

OLD_Z = 6.0
EPS = 1e-3


def _old_flag(got: np.ndarray, ref: np.ndarray, u: float) -> bool:
    """The statistic as first built, for comparison only."""
    r, g = ref.reshape(-1), got.astype(np.float64).reshape(-1)
    norm = float(np.dot(r, r))
    if norm == 0:
        return False
    beta = float(np.dot(r, g - r)) / norm
    sigma = u / np.sqrt(3.0) * float(np.sqrt((r**4).sum())) / norm
    return bool(abs(beta) > OLD_Z * sigma)


def _kernels(x: np.ndarray, w: np.ndarray, g: np.ndarray, tx: np.ndarray, tw: np.ndarray,
             v: np.ndarray, dt: np.dtype) -> dict[str, dict[str, np.ndarray]]:
    """Each kernel's Y, dX, dW, dY, d2W before the final rounding (float64 arrays)."""
    from harness.reference import matmul_grads, matmul_vjp

    wide = [a.astype(np.float64) for a in (x, w, g, tx, tw, v)]
    x6, w6, g6, tx6, tw6, v6 = wide
    exact = dict(zip(("Y", "dX", "dW"), matmul_vjp(x6, w6, g6), strict=True))
    exact["dY"] = np.matmul(tx6, w6) + np.matmul(x6, tw6)
    exact["d2W"] = matmul_vjp(v6, w6, g6)[2]
    f = [a.astype(np.float32) for a in (x, w, g, tx, tw, v)]
    single = dict(zip(("Y", "dX", "dW"), matmul_vjp(f[0], f[1], f[2]), strict=True))
    single["dY"] = np.matmul(f[3], f[1]) + np.matmul(f[0], f[4])
    single["d2W"] = matmul_vjp(f[5], f[1], f[2])[2]

    def rnd(a: np.ndarray) -> np.ndarray:
        return np.asarray(a).astype(dt).astype(np.float64)

    # matmul_vjp in float32 with each batch's product rounded to the dtype: partials
    def partial_vjp(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.matmul(a, b), *matmul_grads(a, b, c, each=rnd))

    part = dict(zip(("Y", "dX", "dW"), partial_vjp(f[0], f[1], f[2]), strict=True))
    part["dY"] = rnd(np.matmul(f[3], f[1])) + rnd(np.matmul(f[0], f[4]))
    part["d2W"] = partial_vjp(f[5], f[1], f[2])[2]
    return {"rounded": exact, "float32": {k: np.asarray(a, np.float64) for k, a in
                                          single.items()},
            "partials": {k: np.asarray(a, np.float64) for k, a in part.items()}}


def measure(examples: int, seed: int) -> tuple[Counter[tuple[str, ...]], int]:
    counts: Counter[tuple[str, ...]] = Counter()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `timeout`: report so far
    try:
        _measure(examples, seed, counts)
    except KeyboardInterrupt:
        print("interrupted: the counts below cover the examples that finished")
    return counts, examples


def _measure(examples: int, seed: int, counts: Counter[tuple[str, ...]]) -> None:
    from benchmarks.campaign import example
    from harness.cases import Case, make_inputs, make_tangents
    from harness.checks import check
    from harness.dtypes import get
    from harness.reference import reference
    from harness.tolerance import params

    for i in range(examples):
        x_shape, w_shape, _ = example(seed, i)
        case = Case(f"n{i}", x_shape, w_shape)
        for name in ("float16", "bfloat16"):
            d = get(name)
            inp, tan = make_inputs(case, d, seed), make_tangents(case, d, seed)
            ref = reference(inp, tan)
            kernels = _kernels(inp.x, inp.w, inp.g, tan.tx, tan.tw, tan.v, d.numpy)
            for kernel, values in kernels.items():
                for q, before in values.items():
                    p = params(q, case.geometry, rounded_partials=kernel == "partials")
                    r, s = ref.values[q], ref.scale[q]
                    for planted in (False, True):
                        got = (before * (1 + EPS) if planted else before).astype(d.numpy)
                        o = check(q, got, r, s, d, p)
                        key = (kernel, name, q, "planted" if planted else "correct")
                        counts[(*key, "checks")] += 1
                        counts[(*key, "fail")] += o.status == "fail"
                        counts[(*key, "new")] += o.status == "pass" and o.biased
                        counts[(*key, "old")] += o.status == "pass" and _old_flag(
                            got, r, d.u_out)


def report(counts: Counter[tuple[str, ...]]) -> str:
    keys = sorted({k[:3] for k in counts})
    lines = [f"{'kernel':<9} {'dtype':<9} {'q':<4} {'checks':>7} {'flagged':>8} "
             f"{'former':>7} | {'planted 1e-3 caught (per element or bias)':>42} {'former':>7}"]
    tot = Counter[str]()
    for k in keys:
        def c(*s: str, k: tuple[str, ...] = k) -> int:
            return counts[(*k, *s)]

        caught = c("planted", "fail") + c("planted", "new")
        former = c("planted", "fail") + c("planted", "old")
        n = c("correct", "checks")
        lines.append(f"{k[0]:<9} {k[1]:<9} {k[2]:<4} {n:>7} {c('correct', 'new'):>8} "
                     f"{c('correct', 'old'):>7} | {caught:>35}/{c('planted', 'checks'):<6} "
                     f"{former:>7}")
        tot["checks"] += n
        tot["new"] += c("correct", "new")
        tot["old"] += c("correct", "old")
        tot["fail"] += c("correct", "fail")
    lines.append(f"\ncorrect results judged: {tot['checks']}; flagged by the bias test: "
                 f"{tot['new']}; by the former statistic: {tot['old']}; failed per element: "
                 f"{tot['fail']}")
    if tot["new"] == 0 and tot["checks"]:
        lines.append(f"95% upper bound on the bias test's false-alarm rate from these "
                     f"alone: {3 / tot['checks']:.2g} per check (rule of three); the "
                     "derivation bounds it by the bound's own failure rate")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=2000, help="random shapes (default 2000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    counts, _ = measure(args.examples, args.seed)
    print(report(counts))
    flagged = sum(v for k, v in counts.items() if k[3:] == ("correct", "new"))
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
