"""The `matmul-harness` command line.

Exit codes: 0 nothing failed or errored; 1 something failed or errored; 2 usage or config
error (a one-line message on stderr, never a traceback); 130 interrupted (Ctrl-C or
SIGTERM: finished cells are kept, and the message says how to resume).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType

from harness import __version__, store
from harness.adapters import RegistryError, load_target, registry
from harness.config import PRECISION_MODES, Config, ConfigError, load, seconds, validate_selection
from harness.dtypes import DEVICES, DTYPES
from harness.orchestrator import Progress, Runner
from harness.plan import group_cells, in_plan_order, plan
from harness.results import (
    ResultsFileError,
    Row,
    atomic_write,
    matrix,
    problems,
    read_csv,
    summary_line,
    write_csv,
    write_junit,
)
from harness.system import system_info

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
SELFTEST_TRIALS = 10


class UsageError(Exception):
    """Bad command-line input; the message is shown as is and the exit code is 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="matmul-harness",
        description="Verify and benchmark the gradients of Y = X @ W across frameworks.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    v = sub.add_parser("verify", help="check Y, dX and dW of every cell against the reference")
    _verify_args(v)
    r = sub.add_parser("run", help="the main job: verify, selftest, quick asv benchmark and "
                                   "report, into results/")
    r.add_argument("--config", help="YAML config (default: the embedded configs/default.yaml)")
    r.add_argument("--out", help="output folder (default: a new folder under results/)")
    r.add_argument("--no-bench", action="store_true",
                   help="skip the quick asv benchmark (the report then has no timings)")
    b = sub.add_parser("bench", help="time every framework through asv in this environment")
    b.add_argument("--quick", action="store_true",
                   help="asv --quick (one ~20 ms sample per cell, after warm-up) on the "
                        "small built-in quick selection")
    b.add_argument("--config", help="bench YAML selecting frameworks, devices, dtypes, shapes "
                                    "(default: the built-in selection)")
    b.add_argument("--results-dir", metavar="DIR",
                   help="where asv writes results (default: asv.conf.json's, results/)")
    b.add_argument("--versions", metavar="NAME==VER,...",
                   help="time these framework releases side by side, each in an asv-managed "
                        "environment (e.g. jax==0.6.2,jax==0.7.2)")
    b.add_argument("--rounds", type=int, metavar="N",
                   help="asv rounds per cell, interleaved across releases (default: asv's, 2)")
    b.add_argument("asv_args", nargs=argparse.REMAINDER, metavar="-- ASV_RUN_ARGS",
                   help="passed to asv run, e.g. -- --show-stderr")
    rp = sub.add_parser("report", help="write report.html and report.md from verify and asv "
                                       "results")
    rp.add_argument("result_dirs", nargs="*", metavar="RESULT_DIR",
                    help="verify output folders (verify.csv, run.json); default: every one "
                         "under results/")
    rp.add_argument("--out", required=True, metavar="DIR", help="where the report goes")
    rp.add_argument("--baseline", default="numpy", metavar="FRAMEWORK",
                    help="speedups are against this framework (default: %(default)s)")
    rp.add_argument("--asv-results", metavar="PATH",
                    help="asv results folder or file (default: asv.conf.json's, results/)")
    rp.add_argument("--peaks", metavar="FILE",
                    help="peak GFLOP/s table (default: the embedded configs/peaks.yaml)")
    c = sub.add_parser("compare", help="is NEW slower than BASE? verdicts from asv samples; "
                                       "exit 1 on a resolved regression")
    c.add_argument("base", metavar="BASE", help="asv result file, environment name or commit "
                                                "(with --rounds: a git revision)")
    c.add_argument("new", metavar="NEW", help="the same kinds as BASE")
    c.add_argument("--threshold", type=float, default=1.05, metavar="RATIO",
                   help="a resolved slowdown beyond this ratio exits 1 (default: %(default)s)")
    c.add_argument("--results-dir", metavar="DIR",
                   help="asv results to look in (default: asv.conf.json's, results/)")
    c.add_argument("--bench", metavar="REGEX", help="only cells whose name matches")
    c.add_argument("--rounds", type=int, metavar="N",
                   help="measure instead: alternate asv runs of BASE and NEW (git revisions) "
                        "for up to N rounds, paired verdicts")
    c.add_argument("--budget", type=float, default=900.0, metavar="SECONDS",
                   help="with --rounds: stop starting rounds after this (default: %(default)s)")
    c.add_argument("--config", help="with --rounds: bench YAML of the cells to time "
                                    "(default: the built-in quick selection)")
    c.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="with --rounds: time CPU cells in wall time or in the process's CPU "
                        "time, far steadier on a shared machine (default: %(default)s)")
    st = sub.add_parser("selftest", help="show what a pass is worth: planted bugs caught per "
                                         "dtype, and the reference against finite differences")
    st.add_argument("--trials", type=int, default=SELFTEST_TRIALS, metavar="N",
                    help="independent seeds per planted bug and dtype (default: %(default)s)")
    st.add_argument("--config", help="YAML config whose small cases are checked by finite "
                                     "differences (default: the embedded default)")
    st.add_argument("--out", help="output folder (default: a new folder under results/)")
    return p


def _verify_args(v: argparse.ArgumentParser) -> None:
    v.add_argument("--config", help="YAML config (default: the embedded configs/default.yaml)")
    v.add_argument("--framework", action="append", default=[], metavar="NAME",
                   help="only this framework (repeatable)")
    v.add_argument("--device", action="append", default=[], metavar="cpu|gpu",
                   help="only this device (repeatable)")
    v.add_argument("--dtype", action="append", default=[], metavar="NAME",
                   help="only this dtype (repeatable)")
    v.add_argument("--precision", action="append", default=[], metavar="pinned|default",
                   help="only this precision mode (repeatable)")
    v.add_argument("--out", help="output folder (default: a new folder under results/)")
    v.add_argument("--resume", metavar="DIR",
                   help="finish the interrupted run in DIR (its own config; no re-runs)")
    v.add_argument("--junit", metavar="FILE", help="also write the matrix as JUnit XML")
    v.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                   help="frameworks run at once, one worker process each (default: %(default)s)")
    v.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                   help="a cell running longer is killed and recorded as error "
                        "(default: the config's cell_timeout, 300)")
    v.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="limit for the whole run; cells not done by then are errors "
                        "(default: the config's timeout, 7200)")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return run_command(config=args.config, out=args.out, bench=not args.no_bench)
        if args.command == "report":
            from harness.report.command import report_command  # lazy: pandas, matplotlib

            return report_command(args.result_dirs, args.out, baseline=args.baseline,
                                  asv_results=args.asv_results, peaks=args.peaks)
        if args.command == "selftest":
            from harness import selftest

            if args.trials < 1:
                raise UsageError(f"--trials must be at least 1; received {args.trials}")
            cfg = load(args.config, tuple(registry()))
            return selftest.run(cfg.cases, args.trials, _out_dir(args.out, "selftest"))
        if args.command == "compare":
            from harness.compare import compare_command  # lazy: pandas

            return compare_command(args.base, args.new, threshold=args.threshold,
                                   results_dir=args.results_dir, rounds=args.rounds,
                                   budget=args.budget, config=args.config,
                                   bench_filter=args.bench, clock=args.clock)
        if args.command == "bench":
            from harness.bench import run_bench  # lazy: keeps `import harness` light

            extra = args.asv_args[1:] if args.asv_args[:1] == ["--"] else args.asv_args
            return run_bench(quick=args.quick, config=args.config, extra_args=extra,
                             results_dir=Path(args.results_dir) if args.results_dir else None,
                             versions=args.versions, rounds=args.rounds)
        return verify(
            config=args.config, frameworks=args.framework, devices=args.device,
            dtypes=args.dtype, precision=args.precision, out=args.out, resume=args.resume,
            junit=args.junit, jobs=args.jobs, cell_timeout=args.cell_timeout,
            timeout=args.timeout,
        )[0]
    except (ConfigError, RegistryError, UsageError, ResultsFileError) as exc:
        print(f"matmul-harness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _select(cfg: Config, frameworks: Sequence[str], devices: Sequence[str],
            dtypes: Sequence[str], precision: Sequence[str], cell_timeout: float | None,
            timeout: float | None) -> Config:
    """Command-line selections replace the config's lists (validated the same way)."""
    known = tuple(registry())
    unknown = [f for f in frameworks if f not in known]
    if unknown:
        installed = [n for n in known if load_target(registry()[n], n).installed()]
        raise UsageError(
            f"--framework {unknown[0]!r}: unknown framework; known: {', '.join(known)} "
            f"(installed here: {', '.join(installed) or 'none'})"
        )
    return replace(
        cfg,
        frameworks=tuple(dict.fromkeys(frameworks)) or cfg.frameworks,
        devices=validate_selection(devices, DEVICES, "--device") or cfg.devices,
        dtypes=validate_selection(dtypes, tuple(DTYPES), "--dtype") or cfg.dtypes,
        precision=validate_selection(precision, PRECISION_MODES, "--precision")
        or cfg.precision,
        cell_timeout=cfg.cell_timeout if cell_timeout is None
        else seconds(cell_timeout, "--cell-timeout"),
        timeout=cfg.timeout if timeout is None else seconds(timeout, "--timeout"),
    )


def _out_dir(out: str | None, prefix: str, flag: str = "--out") -> Path:
    """A writable output folder, made if missing (`--resume` folders must already exist)."""
    path = Path(out) if out else Path("results") / time.strftime(f"{prefix}-%Y%m%d-%H%M%S")
    try:
        if flag == "--out":
            path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"{flag} {str(path)!r} is not a writable folder ({exc.strerror}); "
            f"choose another with {flag}"
        ) from None
    return path


def run_command(*, config: str | None, out: str | None, bench: bool) -> int:
    """The main job: verify, the selftest, a quick asv benchmark, and the report of all.

    A selftest, benchmark or report problem is reported and makes the exit code non-zero,
    but never costs the correctness results, which are written first.
    """
    code, out_dir = verify(config=config, out=out, prefix="run")
    if code == EXIT_INTERRUPTED:
        return code
    from harness import selftest

    print("\n== selftest: what a pass is worth ==", flush=True)
    cases = load(config, tuple(registry())).cases
    code = max(code, selftest.run(cases, SELFTEST_TRIALS, out_dir))
    if bench:
        from harness.bench import BenchError, run_bench

        print("\n== quick benchmark (asv) ==", flush=True)
        try:
            bench_code = run_bench(quick=True, config=None)
        except BenchError as exc:
            print(f"matmul-harness: benchmark not run: {exc}", file=sys.stderr)
            bench_code = EXIT_FAILED
        code = max(code, EXIT_FAILED if bench_code else EXIT_OK)
    from harness.report import build_report

    print("\n== report ==", flush=True)
    try:
        html, md = build_report([out_dir], out_dir)
    except ResultsFileError as exc:
        print(f"matmul-harness: report not written: {exc}", file=sys.stderr)
        return max(code, EXIT_FAILED)
    print(f"report: {html}\nreport (Markdown): {md}")
    return code


def verify(
    *,
    config: str | None = None,
    frameworks: Sequence[str] = (),
    devices: Sequence[str] = (),
    dtypes: Sequence[str] = (),
    precision: Sequence[str] = (),
    out: str | None = None,
    resume: str | None = None,
    junit: str | None = None,
    jobs: int = 2,
    cell_timeout: float | None = None,
    timeout: float | None = None,
    prefix: str = "verify",
) -> tuple[int, Path]:
    """`verify` (and the verify step of `run`): the exit code and the output folder."""
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1; received {jobs}")
    known = tuple(registry())
    if resume:
        if config or frameworks or devices or dtypes or precision or out:
            raise UsageError(
                "--resume DIR continues the run recorded in DIR with that run's own config; "
                "drop --config/--framework/--device/--dtype/--precision/--out"
            )
        recorded = store.load_config(Path(resume), known)  # first: a typo makes no folder
        out_dir = _out_dir(resume, prefix, "--resume")
        cfg = _select(recorded, (), (), (), (), cell_timeout, timeout)
        kept = store.read_cells(out_dir)
        if not kept and (out_dir / store.FINAL_FILE).is_file():
            kept = group_cells(read_csv(out_dir / store.FINAL_FILE))
    else:
        cfg = _select(load(config, known), frameworks, devices, dtypes, precision,
                      cell_timeout, timeout)
        out_dir = _out_dir(out, prefix)
        store.save_config(out_dir, cfg)
        kept = {}
    cells = plan(cfg)
    kept = {k: v for k, v in kept.items() if k in {c.key for c in cells}}
    remaining = [c for c in cells if c.key not in kept]
    rows = [r for rs in kept.values() for r in rs]
    log = store.CellLog(out_dir, kept)

    def record(new: list[Row]) -> None:
        rows.extend(new)
        log.append(new)

    started = time.time()
    runner = Runner(cfg, record, _progress_printer(), jobs, cfg.cell_timeout, cfg.timeout,
                    done_before=len(kept))
    try:
        with _sigterm_as_interrupt():
            runner.run(remaining, total=len(cells))
    except KeyboardInterrupt:
        _clear_progress()
        done = len(group_cells(rows))
        print(f"matmul-harness: interrupted after {done} of {len(cells)} cells; finished "
              f"cells are kept in {log.path}. Resume with: matmul-harness verify --resume "
              f"{out_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED, out_dir
    finally:
        log.close()
    _clear_progress()
    rows = in_plan_order(rows, cells)
    write_csv(rows, out_dir / store.FINAL_FILE)
    _write_meta(out_dir / store.META_FILE, cfg, rows, started)
    log.path.unlink(missing_ok=True)  # verify.csv now holds every cell
    if junit:
        write_junit(rows, Path(junit))
    print(matrix(rows))
    for line in problems(rows):
        print(line)
    print(f"results: {out_dir / store.FINAL_FILE}")
    print(summary_line(rows))
    return EXIT_FAILED if any(r.status in ("fail", "error") for r in rows) else EXIT_OK, out_dir


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI job cancelled, `kill`) stops the run like Ctrl-C: cleanly."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write_meta(path: Path, cfg: Config, rows: Sequence[Row], started: float) -> None:
    versions = {r.framework: r.framework_version for r in rows if r.framework_version}
    precisions = sorted({f"{r.label} {r.dtype}: {r.precision}" for r in rows if r.precision})
    meta = {
        "harness_version": __version__,
        "config": cfg.source,
        "seed": cfg.seed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": round(time.time() - started, 3),
        "framework_versions": versions,
        "precision_modes": precisions,
        "system": system_info(),
    }
    atomic_write(path, json.dumps(meta, indent=2) + "\n")


def _interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def _progress_printer() -> Progress | None:
    if not _interactive():
        return None

    def show(done: int, total: int, framework: str) -> None:
        sys.stderr.write(f"\r\x1b[2K[{done}/{total} cells] {framework}")
        sys.stderr.flush()

    return show


def _clear_progress() -> None:
    if _interactive():
        sys.stderr.write("\r\x1b[2K")
        sys.stderr.flush()
