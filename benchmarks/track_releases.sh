#!/bin/sh
# Benchmark several releases of one framework side by side, in asv-managed environments,
# and write the report that shows them with faster / slower / not resolved verdicts.
#
#   benchmarks/track_releases.sh                                  # jax 0.6.2 and 0.7.2
#   benchmarks/track_releases.sh torch==2.13.0,torch==2.14.1      # any framework, any releases
#   ROUNDS=6 CONFIG=my-bench.yaml benchmarks/track_releases.sh jax==0.7.2,jax==0.10.2
#
# Run it in a clone of matmul-harness (results/ and .asv/ go there), with matmul-harness
# installed. asv builds one virtualenv per release (pip needs a package index: PyPI or a
# mirror) and interleaves the rounds of all releases, so machine drift hits them alike.
# The environments stay in .asv/env for the next run; delete that folder to free the disk.
set -eu
VERSIONS=${1:-jax==0.6.2,jax==0.7.2}
ROUNDS=${ROUNDS:-4}
CONFIG=${CONFIG:-benchmarks/releases.yaml}
OUT=${OUT:-results/releases-report}
MH=${MATMUL_HARNESS:-matmul-harness}
$MH bench --versions "$VERSIONS" --rounds "$ROUNDS" --config "$CONFIG"
$MH report --out "$OUT"
