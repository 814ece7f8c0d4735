"""Synthetic results in the exact on-disk formats the report reads.

verify.csv is written with the harness's own writer (harness.results.write_csv) and
run.json with the keys `matmul-harness verify` writes; asv results follow asv 0.6's
results format (results/<machine>/<commit8>-<env>.json with `result_columns`,
results/<machine>/machine.json, results/benchmarks.json). Timings come from a simple
roofline model with seeded noise, so the same call writes the same bytes. selftest.csv and
selftest_fd.csv are not synthetic: the real `harness.selftest` code runs at few trials
(about a second) and writes them with its own writer.

    python tools/report_fixtures.py            # rewrites tests/fixtures/report/
    python tools/report_fixtures.py selftest   # rewrites only the selftest files
"""

from __future__ import annotations

import itertools
import json
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.results import Row, write_csv  # noqa: E402

FRAMEWORKS = ("numpy", "torch", "jax", "tensorflow")
DTYPES = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128")
PASSES = ("forward", "backward", "forward_backward")
RESULT_COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a",
                  "stats_ci_99_b", "stats_q_25", "stats_q_75", "stats_number",
                  "stats_repeat", "samples", "profile"]
TIME_BENCH = "matmul.TimeMatmul.time_matmul"
VERSIONS = {"numpy": "2.4.6", "torch": "2.13.0+cpu", "jax": "0.10.2", "tensorflow": "2.21.0"}
CASES = (("classic_1x3_3x4", "1x3", "3x4", 3), ("square", "8x8", "8x8", 8),
         ("broadcast_both", "2x1x5x6", "1x3x6x4", 6))


def system(machine: str, cpu: str, gpus: Sequence[str], cores: int) -> dict[str, object]:
    return {
        "hostname": machine.split("-")[0], "machine_name": machine, "cpu": cpu,
        "cpu_count": cores, "cpu_affinity": cores, "gpus": list(gpus),
        "platform": "Linux-6.1.0-x86_64-with-glibc2.36", "python": "3.11.7",
        "framework_versions": dict(VERSIONS),
        "blas": [{"internal_api": "openblas", "version": "0.3.31", "num_threads": cores,
                  "architecture": "Zen", "threading_layer": "pthreads"}],
        "env": {"OMP_NUM_THREADS": str(cores)},
    }


def write_verify(folder: Path, machine: str, *, cpu: str = "AMD EPYC 7B13",
                 gpus: Sequence[str] = (), cores: int = 2,
                 frameworks: Sequence[str] = FRAMEWORKS, dtypes: Sequence[str] = DTYPES,
                 cases: Sequence[tuple[str, str, str, int]] = CASES,
                 started: str = "2026-11-20T10:00:00+0000", seed: int = 0,
                 fail: tuple[str, str, str, str] | None = None,
                 error: tuple[str, str, str] | None = None) -> None:
    """fail = (framework, device, dtype, case): that case's dW fails with ratio 1.7.
    error = (framework, device, dtype): every row of that cell errors."""
    rng = random.Random(seed)
    rows: list[Row] = []
    for fw, dev, dt, (case, xs, ws, k) in itertools.product(frameworks, ("cpu", "gpu"),
                                                             dtypes, cases):
        for q in ("Y", "dX", "dW"):
            status, reason, ratio, err = "pass", "", rng.uniform(0.001, 0.6), 0.0
            if dev == "gpu" and not gpus:
                status, reason = "skip", f"no GPU visible to {fw}"
            elif dev == "gpu" and fw == "numpy":
                status, reason = "skip", "numpy has no gpu backend"
            elif fw == "numpy" and dt == "bfloat16":
                status, reason = "skip", "numpy has no native bfloat16"
            elif error == (fw, dev, dt):
                status, reason = "error", "worker crashed (signal 11); last stderr: Fatal"
            elif fail == (fw, dev, dt, case) and q == "dW":
                status, ratio = "fail", 1.7
                reason = "dW[0, 1]: |got - ref| = 0.0034 > bound 0.002"
            if status in ("pass", "fail"):
                err = ratio * 1e-3
            else:
                ratio = err = math.nan
            rows.append(Row(fw, dev, dt, case, xs, ws, q, status, reason, err, ratio, k,
                            "tf32" if dev == "gpu" and dt == "float32" and fw == "jax"
                            else "ieee", VERSIONS[fw]))
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(rows, folder / "verify.csv")
    computes = sorted({f"{r.framework}:{r.device}:{r.precision}" for r in rows
                       if r.status != "skip"})
    meta = {"harness_version": "0.1.0", "config": "quick.yaml", "seed": 0,
            "started": started, "wall_s": 12.5, "framework_versions": dict(VERSIONS),
            "precision_modes": computes, "system": system(machine, cpu, gpus, cores)}
    (folder / "run.json").write_text(json.dumps(meta, indent=2) + "\n")


def model_time(fw: str, dev: str, dt: str, shape: str, pass_: str, rng: random.Random,
               scale: float = 1.0) -> float | None:
    """Seconds for one call, or NaN (n/a), from a saturating-throughput model."""
    if fw == "numpy" and (dev == "gpu" or dt == "bfloat16"):
        return math.nan
    dims = [int(v) for v in shape.split("x")]
    flop = 2.0 * math.prod(dims) * {"forward": 1, "backward": 2, "forward_backward": 3}[
        pass_] * (4 if dt.startswith("complex") else 1)
    cpu = {"numpy": 60.0, "torch": 75.0, "jax": 68.0, "tensorflow": 55.0}[fw]
    gpu = {"numpy": 1.0, "torch": 42000.0, "jax": 45000.0, "tensorflow": 38000.0}[fw]
    rate = (cpu if dev == "cpu" else gpu) * 1e9
    rate *= {"float16": 0.2 if dev == "cpu" else 12, "bfloat16": 0.3 if dev == "cpu" else 12,
             "float32": 1.0, "float64": 0.5, "complex64": 0.9, "complex128": 0.45}[dt]
    if fw == "numpy" and dt == "float16":
        rate *= 0.05  # numpy's float16 matmul has no BLAS kernel
    n3 = math.prod(dims)
    rate *= n3 / (n3 + (2e5 if dev == "cpu" else 5e7))  # small products are overhead-bound
    overhead = 5e-6 if dev == "cpu" else 2e-5
    return (flop / rate + overhead) * rng.uniform(0.97, 1.03) * scale


def write_asv(results: Path, machine: str, *, commit: str, date_ms: int,
              cpu: str = "AMD EPYC 7B13", cores: int = 2,
              frameworks: Sequence[str] = FRAMEWORKS, devices: Sequence[str] = ("cpu", "gpu"),
              dtypes: Sequence[str] = DTYPES, shapes: Sequence[str] = ("64x64x64",),
              passes: Sequence[str] = PASSES, seed: int = 0, scale: float = 1.0,
              fail: tuple[str, str, str, str] | None = None,
              extras: bool = True, annotate: dict[str, str] | None = None) -> None:
    """One asv run (one results file) of the timing benchmark, plus a track_ and a
    peakmem_ benchmark and one benchmark without our parameters when `extras`.
    `annotate`: machine fields `matmul-harness bench` adds (host_machine, threads, gpu)."""
    rng = random.Random(seed)
    params = [list(frameworks), list(devices), list(dtypes), list(shapes), list(passes)]
    reprs = [[repr(v) for v in p] for p in params]
    res: list[float | None] = []
    q25: list[float | None] = []
    q75: list[float | None] = []
    for fw, dev, dt, shape, p in itertools.product(*params):
        t = model_time(fw, dev, dt, shape, p, rng, scale)
        if fail == (fw, dev, dt, shape):
            t = None
        res.append(t)
        ok = t is not None and not math.isnan(t)
        q25.append(t * 0.98 if ok and t is not None else None)
        q75.append(t * 1.03 if ok and t is not None else None)
    n = len(res)
    entries: dict[str, list[object]] = {
        TIME_BENCH: [res, reprs, "1", date_ms, 42.0, q25, q75, q25, q75, [10] * n, [5] * n],
    }
    bench_meta: dict[str, object] = {TIME_BENCH: _bench_meta(TIME_BENCH, "time", "seconds",
                                                             params)}
    if extras:
        tp = [list(frameworks), list(devices), list(dtypes)]
        track = [math.nan if fw == "numpy" and (dv == "gpu" or dt == "bfloat16") else
                 rng.uniform(0.01, 0.5) for fw, dv, dt in itertools.product(*tp)]
        name = "accuracy.TrackError.track_error_ratio"
        entries[name] = [track, [[repr(v) for v in p] for p in tp], "1", date_ms, 3.0]
        bench_meta[name] = _bench_meta(name, "track", "ratio", tp, ["framework", "device",
                                                                   "dtype"])
        mem = "matmul.PeakMem.peakmem_matmul"
        mp = [list(frameworks), list(shapes)]
        entries[mem] = [[2.0e8 + 1e6 * i for i in range(len(frameworks) * len(shapes))],
                        [[repr(v) for v in p] for p in mp], "1", date_ms, 5.0]
        bench_meta[mem] = _bench_meta(mem, "peakmem", "bytes", mp, ["framework", "shape"])
        imp = "imports.TimeImport.timeraw_import_harness"
        entries[imp] = [[0.25], [], "1", date_ms, 2.0]
        bench_meta[imp] = _bench_meta(imp, "time", "seconds", [], [])
    env = "existing-py_usr_local_bin_python3.11"
    info = {"arch": "x86_64", "cpu": cpu, "machine": machine, "num_cpu": str(cores),
            "os": "Linux 6.1.0", "ram": str(24 * 2**30), **(annotate or {})}
    data = {"commit_hash": commit, "env_name": env, "date": date_ms,
            "params": {**info, "python": "3.11"}, "python": "3.11", "requirements": {},
            "env_vars": {}, "result_columns": RESULT_COLUMNS, "results": entries,
            "durations": {}, "version": 2}
    mdir = results / machine
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / "machine.json").write_text(json.dumps({**info, "version": 1}, indent=4) + "\n")
    (mdir / f"{commit[:8]}-{env}.json").write_text(json.dumps(data) + "\n")
    bpath = results / "benchmarks.json"
    merged = json.loads(bpath.read_text()) if bpath.is_file() else {}
    merged.update(bench_meta)
    merged["version"] = 2
    bpath.write_text(json.dumps(merged, indent=4, sort_keys=True) + "\n")


def _bench_meta(name: str, kind: str, unit: str, params: list[list[str]],
                names: Sequence[str] = ("framework", "device", "dtype", "shape", "pass"),
                ) -> dict[str, object]:
    return {"code": "...", "name": name, "param_names": list(names),
            "params": [[repr(v) for v in p] for p in params], "type": kind, "unit": unit,
            "version": "1", "timeout": 60.0, "min_run_count": 2, "number": 0,
            "repeat": 0, "rounds": 2, "sample_time": 0.01, "warmup_time": -1}


def shapes(n: int) -> list[str]:
    """n shape ids, square and rectangular, from 16 to about 2048 on a side."""
    out: list[str] = []
    for i in range(n):
        side = int(16 * 2 ** (7 * i / max(1, n - 1)))
        out.append(f"{side}x{side}x{side}" if i % 3 else f"{side}x{2 * side}x{side // 2 or 1}")
    return list(dict.fromkeys(out))


def write_fixtures(root: Path) -> None:
    """tests/fixtures/report: `full` (two machines, correctness and asv) and `partial`."""
    full = root / "full"
    write_verify(full / "verify-cpu", "ci-box-cpu",
                 fail=("tensorflow", "cpu", "float16", "square"))
    write_verify(full / "verify-gpu", "gpu-box-NVIDIA-H100-80GB-HBM3",
                 gpus=["NVIDIA H100 80GB HBM3"], cpu="AMD EPYC 9454", cores=16,
                 dtypes=("bfloat16", "float32", "float64"), seed=1,
                 error=("jax", "gpu", "bfloat16"), started="2026-11-21T09:00:00+0000")
    sh = ("64x64x64", "256x512x128", "1024x1024x1024")
    dts = ("bfloat16", "float32", "float64", "complex64")
    # An older run of the same machine: its timings must be replaced by the newer ones.
    write_asv(full / "asv", "ci-box-cpu", commit="0ddba11c0ffee000", date_ms=1763500000000,
              devices=("cpu",), dtypes=dts, shapes=sh, seed=7, scale=3.0)
    write_asv(full / "asv", "ci-box-cpu", commit="a1b2c3d4e5f60718", date_ms=1763600000000,
              devices=("cpu",), dtypes=dts, shapes=sh, seed=2,
              fail=("jax", "cpu", "bfloat16", "64x64x64"))
    write_asv(full / "asv", "gpu-box-NVIDIA-H100-80GB-HBM3", commit="a1b2c3d4e5f60718",
              date_ms=1763700000000, cpu="AMD EPYC 9454", cores=16, dtypes=dts[:3],
              shapes=sh, seed=3)
    write_verify(root / "partial" / "verify-cpu", "laptop-cpu", cpu="Intel(R) Core(TM) i7",
                 frameworks=("numpy", "torch", "jax"), dtypes=("float32", "float64"))
    # `merged`: verify names the box vm-cpu, bench's asv machine vm-cpu-2t records
    # host_machine vm-cpu: one card. old-box-4t predates host_machine: its own card.
    merged = root / "merged"
    small = {"dtypes": ("float32", "float64"), "shapes": ("64x64x64", "256x256x256")}
    write_verify(merged / "verify-vm", "vm-cpu", dtypes=small["dtypes"], cases=CASES[:2])
    write_asv(merged / "asv", "vm-cpu-2t", commit="a1b2c3d4e5f60718", date_ms=1763600000000,
              devices=("cpu",), seed=4, extras=False, **small,
              annotate={"host_machine": "vm-cpu", "threads": "2", "gpu": "none"})
    write_asv(merged / "asv", "old-box-4t", commit="0ddba11c0ffee000", date_ms=1763500000000,
              devices=("cpu",), seed=5, extras=False, cores=4, **small)
    write_selftest(root)


SELFTEST_TRIALS = 3


def write_selftest(root: Path) -> None:
    """`full/verify-cpu` as `matmul-harness run` leaves it: the selftest beside verify's
    files, at SELFTEST_TRIALS seeds, finite differences on the fixture's own cases."""
    from harness import selftest
    from harness.cases import Case

    cases = tuple(Case(name, _dims(xs), _dims(ws)) for name, xs, ws, _ in CASES)
    selftest.write(selftest.sensitivity(SELFTEST_TRIALS), selftest.fd_cases(cases),
                   root / "full" / "verify-cpu")


def _dims(shape: str) -> tuple[int, ...]:
    return tuple(int(v) for v in shape.split("x"))


if __name__ == "__main__":
    target = ROOT / "tests" / "fixtures" / "report"
    if sys.argv[1:] == ["selftest"]:
        write_selftest(target)
    else:
        write_fixtures(target)
    print(f"wrote {target}")
