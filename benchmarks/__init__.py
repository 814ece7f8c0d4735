"""asv benchmark suite of matmul-harness (see README, "Benchmarks: asv and matmul-harness bench").

Modules: `matmul` (time per pass), `accuracy` (gradient error ratios), `memory` (peak host
and device memory); `common` holds what they share; `overhead` is a script measuring what the
timed call adds over a bare framework loop. The parameter grid lives in `harness.suite`;
`harness.bench` drives asv.
"""
