"""The `matmul-harness` command line.

Exit codes: 0 nothing failed or errored; 1 something failed or errored; 2 usage or config
error (a one-line message on stderr, never a traceback); 3 the environment failed us
(cannot write an output, disk full, stdout closed: one line, and how to resume where
cells are kept); 130 interrupted (Ctrl-C, SIGTERM or SIGHUP: finished cells are kept, and
the message says how to resume).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TypeVar

from harness import __version__, executors, runfiles, store
from harness.adapters import RegistryError, load_target, registry
from harness.config import (
    PRECISION_MODES,
    Config,
    ConfigError,
    check_name,
    load,
    seconds,
    validate_selection,
)
from harness.dtypes import DEVICES, DTYPES
from harness.orchestrator import DEFAULT_JOBS, Progress
from harness.plan import (
    Cell,
    Key,
    Shard,
    ShardError,
    group_cells,
    in_plan_order,
    parse_shard,
    plan,
    shard_of,
)
from harness.results import (
    ResultsFileError,
    Row,
    matrix,
    printable,
    problems,
    read_csv,
    summary_line,
    write_junit,
)
from harness.system import machine_slug

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
SELFTEST_TRIALS = 10
MAX_MESSAGE = 1000  # characters of an error message: one line, whatever it quotes


T = TypeVar("T")


class UsageError(Exception):
    """Bad command-line input; the message is shown as is and the exit code is 2."""


class EnvironmentFailure(Exception):
    """The machine failed us (disk full, an output that cannot be written): exit 3."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="matmul-harness",
        description="Verify and benchmark the gradients of Y = X @ W across frameworks.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    v = sub.add_parser("verify", help="check every quantity of every cell (Y, dX, dW, dY, the "
                       "adjoint identity, d2W) against the reference")
    _verify_args(v)
    r = sub.add_parser("run", help="the main job: verify, selftest, quick asv benchmark and "
                                   "report, into results/")
    r.add_argument("--config", help="YAML config (default: the embedded configs/default.yaml)")
    r.add_argument("--out", help="output folder (default: a new folder under results/)")
    r.add_argument("--force", action="store_true",
                   help="replace the run in a non-empty --out folder (its files are removed)")
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
                   help="measure instead: time BASE and NEW (git revisions) in turn in "
                        "worker processes for up to N rounds (400: 40 generations of 10), "
                        "paired verdicts")
    c.add_argument("--budget", type=float, default=900.0, metavar="SECONDS",
                   help="with --rounds: stop at the first look after this (default: "
                        "%(default)s)")
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
    mg = sub.add_parser("merge", help="combine verify folders from many machines and shards "
                                      "into one verify.csv (and run.json)")
    mg.add_argument("folders", nargs="+", metavar="DIR", help="verify --out folders")
    mg.add_argument("--out", required=True, metavar="DIR", help="where the merged set goes")
    mg.add_argument("--prefer", choices=("newest", "first"),
                    help="a cell found twice on one machine: keep the newest run's, or the "
                         "first folder's (default: refuse)")
    mg.add_argument("--allow-missing", action="store_true",
                    help="merge although a shard is missing (recorded in run.json)")
    mg.add_argument("--force", action="store_true",
                    help="replace the results already in --out")
    rr = sub.add_parser("repro", help="write a standalone script (numpy and the framework "
                                      "only) that reproduces one cell of a verify run")
    rr.add_argument("result_dir", metavar="RESULT_DIR", help="a verify output folder")
    rr.add_argument("--case", required=True, metavar="NAME", help="the cell's case")
    rr.add_argument("--framework", required=True, metavar="F", help="the cell's framework")
    rr.add_argument("--dtype", required=True, metavar="D", help="the cell's dtype")
    rr.add_argument("--device", default="cpu", choices=DEVICES,
                    help="the cell's device (default: %(default)s)")
    rr.add_argument("--out", metavar="FILE",
                    help="where the script goes (default: RESULT_DIR/repro_<cell>.py)")
    _mesh_parsers(sub)
    return p


def _mesh_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`verify-mesh` and `selftest-mesh`: a matmul split across a device mesh."""
    vm = sub.add_parser("verify-mesh", help="check Y, dX, dW of a matmul sharded across a "
                                            "device mesh (JAX, torch DTensor)")
    vm.add_argument("--config", help="mesh YAML (default: the embedded configs/mesh.yaml)")
    vm.add_argument("--framework", action="append", default=[], metavar="jax|torch")
    vm.add_argument("--dtype", action="append", default=[], metavar="NAME")
    vm.add_argument("--out", help="output folder (default: a new folder under results/)")
    vm.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                    help="a cell running longer ends its worker group: error")
    sm = sub.add_parser("selftest-mesh", help="planted sharding bugs (missing all-reduce, "
                                              "scaled gradient, misplaced shard) caught per seed")
    sm.add_argument("--trials", type=int, default=5, metavar="N",
                    help="independent seeds per bug, layout and framework (default: %(default)s)")
    sm.add_argument("--out", help="output folder (default: a new folder under results/)")


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
    v.add_argument("--force", action="store_true",
                   help="replace the run in a non-empty --out folder (its files are removed)")
    v.add_argument("--resume", metavar="DIR",
                   help="finish the interrupted run in DIR (its own config; no re-runs)")
    v.add_argument("--junit", metavar="FILE", help="also write the matrix as JUnit XML")
    v.add_argument("--jobs", type=int, default=DEFAULT_JOBS,
                   help="frameworks run at once, one worker process each (default: %(default)s)")
    v.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                   help="a cell running longer is killed and recorded as error "
                        "(default: the config's cell_timeout, 300)")
    v.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="limit for the whole run; cells not done by then are errors "
                        "(default: the config's timeout, 7200)")
    v.add_argument("--check", metavar="full|sampled|auto",
                   help="how results are checked: against a full float64 reference, on "
                        "sampled elements and projections, or auto (sampled for products "
                        "above 2^30 multiply-adds; default: the config's check, auto)")
    v.add_argument("--shard", metavar="I/N",
                   help="run only slice I of N of the plan (balanced by estimated cost; "
                        "combine the N folders with `matmul-harness merge`)")
    # -- where the cells run (harness/executors): local worker processes, or a Ray cluster
    v.add_argument("--executor", metavar="local|ray",
                   help="run cells in local worker processes (default) or as Ray tasks, one "
                        "per framework, device and precision mode (needs "
                        "'matmul-harness[ray]')")
    v.add_argument("--ray-address", metavar="HOST:PORT",
                   help="with --executor ray: join this Ray cluster (default: RAY_ADDRESS, "
                        "else a local cluster of --jobs CPUs is started)")
    v.add_argument("--ray-accelerator", metavar="TYPE",
                   help="with --executor ray: GPU cells run only on nodes with this "
                        "accelerator type, e.g. H100")


def main(argv: Sequence[str] | None = None) -> int:
    _tolerant_streams()
    args = _parser().parse_args(argv)
    try:
        return _command(args)
    except (ConfigError, RegistryError, UsageError, ResultsFileError) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except EnvironmentFailure as exc:
        _error(str(exc))
        return EXIT_ENVIRONMENT
    except BrokenPipeError:  # `| head`: the reader is gone, and that is all
        _silence_stdout()
        return EXIT_ENVIRONMENT
    except OSError as exc:
        what = f"{exc.filename}: " if exc.filename else ""
        _error(f"{what}{exc.strerror or exc}")
        return EXIT_ENVIRONMENT


def _command(args: argparse.Namespace) -> int:
    """Run the command `args` names (argparse requires one): its exit code."""
    return _HANDLERS[args.command](args)


def _verify_command(args: argparse.Namespace) -> int:
    return verify(
        config=args.config, frameworks=args.framework, devices=args.device,
        dtypes=args.dtype, modes=args.precision, out=args.out, resume=args.resume,
        junit=args.junit, jobs=args.jobs, cell_timeout=args.cell_timeout,
        timeout=args.timeout, force=args.force, check=args.check, shard=args.shard,
        executor=_executor(args.executor, args.ray_address, args.ray_accelerator),
    )[0]


def _run_command(args: argparse.Namespace) -> int:
    return run_command(config=args.config, out=args.out, bench=not args.no_bench,
                       force=args.force)


def _report_command(args: argparse.Namespace) -> int:
    from harness.report.command import report_command  # lazy: pandas, matplotlib

    _out_dir(args.out, "report")  # before any work: a read-only --out is exit 2 now
    return report_command(args.result_dirs, args.out, baseline=args.baseline,
                          asv_results=args.asv_results, peaks=args.peaks)


def _trials(trials: int) -> int:
    """`--trials`, checked: at least 1 (exit 2 otherwise)."""
    if trials < 1:
        raise UsageError(f"--trials must be at least 1; received {trials}")
    return trials


def _selftest_command(args: argparse.Namespace) -> int:
    from harness import selftest

    trials = _trials(args.trials)
    cfg = load(args.config, tuple(registry()))
    return selftest.run(cfg.cases, trials, _out_dir(args.out, "selftest"))


def _verify_mesh_command(args: argparse.Namespace) -> int:
    from harness import mesh_run  # lazy: keeps `import harness` light

    return mesh_run.command(config=args.config, out_dir=_out_dir(args.out, "mesh"),
                            frameworks=args.framework, dtypes=args.dtype,
                            cell_timeout=args.cell_timeout)


def _selftest_mesh_command(args: argparse.Namespace) -> int:
    from harness import mesh_selftest

    return mesh_selftest.run(_trials(args.trials), _out_dir(args.out, "selftest-mesh"))


def _repro_command(args: argparse.Namespace) -> int:
    from harness.repro import write

    path = write(Path(args.result_dir), args.case, args.framework, args.dtype,
                 args.device, Path(args.out) if args.out else None)
    print(f"repro: {path}\nrun it anywhere numpy and {args.framework} are "
          f"installed: python {path}")
    return EXIT_OK


def _merge_command(args: argparse.Namespace) -> int:
    from harness.merge import merge

    out_dir = _out_dir(args.out, "merge")
    rows, missing = merge([Path(f) for f in args.folders], out_dir, prefer=args.prefer,
                          allow_missing=args.allow_missing, force=args.force)
    for gap in missing:
        print(f"matmul-harness: merged without shard {printable(gap)}", file=sys.stderr)
    print(f"merged {len(args.folders)} folder(s): "
          f"{len({r.machine for r in rows})} machine(s)")
    return _show(rows, out_dir, None)


def _compare_command(args: argparse.Namespace) -> int:
    from harness.compare import compare_command  # lazy: pandas

    return compare_command(args.base, args.new, threshold=args.threshold,
                           results_dir=args.results_dir, rounds=args.rounds,
                           budget=args.budget, config=args.config,
                           bench_filter=args.bench, clock=args.clock)


def _bench_command(args: argparse.Namespace) -> int:
    from harness.bench import run_bench  # lazy: keeps `import harness` light

    extra = args.asv_args[1:] if args.asv_args[:1] == ["--"] else args.asv_args
    return run_bench(quick=args.quick, config=args.config, extra_args=extra,
                     results_dir=Path(args.results_dir) if args.results_dir else None,
                     versions=args.versions, rounds=args.rounds)


# Each subcommand of `_parser` and the function that runs it.
_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "verify": _verify_command,
    "run": _run_command,
    "report": _report_command,
    "selftest": _selftest_command,
    "verify-mesh": _verify_mesh_command,
    "selftest-mesh": _selftest_mesh_command,
    "repro": _repro_command,
    "merge": _merge_command,
    "compare": _compare_command,
    "bench": _bench_command,
}


def _executor(name: str | None, address: str | None,
              accelerator: str | None) -> executors.Settings:
    """`--executor` and its `--ray-*` flags, checked before anything is made (exit 2)."""
    try:
        chosen = executors.settings(name, address, accelerator)
        executors.check_available(chosen)
    except executors.ExecutorError as exc:
        raise UsageError(str(exc)) from None
    return chosen


def _error(message: str) -> None:
    """The one line of an error: control characters escaped, cut to MAX_MESSAGE."""
    text = printable(message)
    if len(text) > MAX_MESSAGE:
        text = f"{text[: MAX_MESSAGE - 1]}…"
    with contextlib.suppress(OSError):  # stderr gone (the terminal closed): nothing to do
        print(f"matmul-harness: error: {text}", file=sys.stderr, flush=True)


def _tolerant_streams() -> None:
    """A terminal that cannot encode a character (LC_ALL=C: ASCII, errors 'strict' or
    'surrogateescape') shows it escaped instead of losing the summary to a
    UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            with contextlib.suppress(ValueError, OSError):
                stream.reconfigure(errors="backslashreplace")


def _silence_stdout() -> None:
    """After EPIPE, send what is left of stdout nowhere: the interpreter's final flush
    would otherwise print a second BrokenPipeError."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())


def _select(cfg: Config, frameworks: Sequence[str], devices: Sequence[str],
            dtypes: Sequence[str], modes: Sequence[str], cell_timeout: float | None,
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
        precision=validate_selection(modes, PRECISION_MODES, "--precision")
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
        _probe(path)
    except OSError as exc:
        raise UsageError(
            f"{flag} {str(path)!r} is not a writable folder ({exc.strerror}); "
            f"choose another with {flag}"
        ) from None
    return path


def _probe(folder: Path) -> None:
    """OSError unless a file can be created in `folder` (as atomic_write will)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".write-test.")
    os.close(fd)
    os.unlink(name)


def _junit_path(junit: str | None) -> Path | None:
    """`--junit FILE`, checked before any work: a folder or an unwritable place is exit 2."""
    if not junit:
        return None
    path = Path(junit)
    problem = "is a folder; expected a file name" if path.is_dir() else ""
    if not problem:
        try:
            _probe(path.parent)
        except OSError as exc:
            problem = f"cannot be written in {str(path.parent)!r} ({exc.strerror})"
    if problem:
        raise UsageError(f"--junit {junit!r} {problem}; choose another with --junit")
    return path


def run_command(*, config: str | None, out: str | None, bench: bool,
                force: bool = False) -> int:
    """The main job: verify, the selftest, a quick asv benchmark, and the report of all.

    A selftest, benchmark or report problem is reported and makes the exit code non-zero,
    but never costs the correctness results, which are written first. The output folder
    is held (locked) for the whole job.
    """
    load(config, tuple(registry()))  # a bad config is exit 2 before a folder is made
    folder = _out_dir(out, "run")
    with store.claim(folder):
        return _run_all(config, folder, bench, force)


def _run_all(config: str | None, folder: Path, bench: bool, force: bool) -> int:
    code, out_dir = verify(config=config, out=str(folder), prefix="run", force=force)
    if code == EXIT_INTERRUPTED:
        return code
    from harness import selftest

    print("\n== selftest: what a pass is worth ==", flush=True)
    cases = load(config, tuple(registry())).cases
    code = max(code, selftest.run(cases, SELFTEST_TRIALS, out_dir))
    if bench:
        from harness.bench import run_bench
        from harness.suite import BenchError

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
    modes: Sequence[str] = (),  # --precision: pinned, default
    out: str | None = None,
    resume: str | None = None,
    junit: str | None = None,
    jobs: int = DEFAULT_JOBS,
    cell_timeout: float | None = None,
    timeout: float | None = None,
    prefix: str = "verify",
    force: bool = False,
    check: str | None = None,
    shard: str | None = None,
    executor: executors.Settings | None = None,
) -> tuple[int, Path]:
    """`verify` (and the verify step of `run`): the exit code and the output folder.

    Every input and output path is checked before the first cell runs; the folder is
    locked while the run works in it.
    """
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1; received {jobs}")
    part = _shard(shard)
    junit_path = _junit_path(junit)
    known = tuple(registry())
    if resume:
        if config or frameworks or devices or dtypes or modes or out or force or part \
                or check:
            raise UsageError(
                "--resume DIR continues the run recorded in DIR with that run's own config "
                "and shard; drop --config/--framework/--device/--dtype/--precision/--out/"
                "--force/--shard/--check"
            )
        return _resume(Path(resume), prefix, known, cell_timeout, timeout, junit_path, jobs,
                       executor)
    cfg = _select(load(config, known), frameworks, devices, dtypes, modes,
                  cell_timeout, timeout)
    if check is not None:
        cfg = replace(cfg, check=check_name(check, "--check"))
    return _fresh(cfg, _out_dir(out, prefix), force, part, junit_path, jobs, executor)


def _shard(shard: str | None) -> Shard | None:
    try:
        return parse_shard(shard) if shard is not None else None
    except ShardError as exc:
        raise UsageError(str(exc)) from None


def _fresh(cfg: Config, out_dir: Path, force: bool, part: Shard | None,
           junit: Path | None, jobs: int,
           executor: executors.Settings | None) -> tuple[int, Path]:
    """A new run of `cfg` (or its shard `part`) in `out_dir`."""
    with store.claim(out_dir):
        store.prepare_fresh(out_dir, force)
        record = _write(lambda: store.save_config(out_dir, cfg, shard=_text(part)),
                        out_dir / runfiles.CONFIG_FILE)
        cells = shard_of(plan(cfg), part)
        return _run(cfg, cells, {}, out_dir, record, junit, jobs, executor), out_dir


def _resume(folder: Path, prefix: str, known: tuple[str, ...], cell_timeout: float | None,
            timeout: float | None, junit: Path | None, jobs: int,
            executor: executors.Settings | None) -> tuple[int, Path]:
    """`--resume DIR`: the run recorded in DIR, its finished cells kept, the rest run."""
    recorded, record = store.load_config(folder, known)  # first: makes nothing
    out_dir = _out_dir(str(folder), prefix, "--resume")
    with store.claim(out_dir, "--resume"):
        cfg = _select(recorded, (), (), (), (), cell_timeout, timeout)
        cells = shard_of(plan(cfg), parse_shard(record.shard) if record.shard else None)
        kept = store.read_cells(out_dir, record.fingerprint, cells)
        if not (out_dir / runfiles.PARTIAL_FILE).exists() and (
                out_dir / runfiles.VERIFY_FILE).is_file():
            return _finished(out_dir, cells, junit), out_dir
        record = replace(record, resumed=(*record.resumed, store.stamp()))
        _write(lambda: store.save_config(out_dir, recorded, record),
               out_dir / runfiles.CONFIG_FILE)
        return _run(cfg, cells, kept, out_dir, record, junit, jobs, executor), out_dir


def _text(part: Shard | None) -> str:
    return str(part) if part else ""


def _write(action: Callable[[], T], path: Path, kept: Path | None = None) -> T:
    """`action()`, its OSError (disk full...) made an EnvironmentFailure naming `path` and,
    where finished cells are kept, how to resume."""
    try:
        return action()
    except OSError as exc:
        hint = (f"; finished cells are kept in {kept}. Resume with: matmul-harness verify "
                f"--resume {shlex.quote(str(kept.parent))}" if kept else "")
        raise EnvironmentFailure(f"cannot write {path} ({exc.strerror or exc}){hint}") from None


def _run(cfg: Config, cells: list[Cell], kept: dict[Key, list[Row]], out_dir: Path,
         record: store.RunRecord, junit: Path | None, jobs: int,
         executor: executors.Settings | None) -> int:
    """Run the cells not `kept`, logging each as it finishes; then the final files."""
    log = _write(lambda: store.CellLog(out_dir, kept, record.fingerprint),
                 out_dir / runfiles.PARTIAL_FILE)
    started = time.time()
    try:
        rows, placed = _run_cells(cfg, cells, kept, log, jobs, executor)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        log.close()
    rows = in_plan_order(rows, cells)
    _write(lambda: store.write_rows(out_dir, rows), out_dir / runfiles.VERIFY_FILE, log.path)
    _write(lambda: store.write_run(out_dir, cfg, rows, started, record, placed),
           out_dir / runfiles.RUN_FILE, log.path)
    log.path.unlink(missing_ok=True)  # verify.csv now holds every cell
    return _show(rows, out_dir, junit)


def _run_cells(cfg: Config, cells: list[Cell], kept: dict[Key, list[Row]],
               log: store.CellLog, jobs: int,
               executor: executors.Settings | None) -> tuple[list[Row], dict[str, object]]:
    """Every row, kept and new; an interruption (Ctrl-C, SIGTERM, SIGHUP) is said, then
    re-raised as KeyboardInterrupt with every finished cell in the log. The dict is
    run.json's record of where the cells ran (empty for the local executor)."""
    rows = [r for rs in kept.values() for r in rs]
    machine = machine_slug()  # every row keeps its machine: merged runs mix several

    def record_rows(new: list[Row]) -> None:
        new = [replace(r, machine=r.machine or machine) for r in new]
        rows.extend(new)
        log.append(new)

    chosen = executor or executors.Settings()
    remaining = [c for c in cells if c.key not in kept]

    def start_and_run() -> executors.Executor:
        # started under the signal handlers: a Ctrl-C while Ray starts is an interrupt too
        try:
            runner = executors.make(chosen, cfg, record_rows, _progress_printer(), jobs,
                                    cfg.cell_timeout, cfg.timeout, done_before=len(kept))
        except executors.ExecutorError as exc:  # nothing ran; the folder holds the run
            raise UsageError(f"{exc}; nothing ran: retry with matmul-harness verify "
                             f"--resume {shlex.quote(str(log.path.parent))} and the "
                             "--executor flags") from None
        runner.run(remaining, total=len(cells))
        return runner

    try:
        with _signals_as_interrupt():
            runner = _write(start_and_run, log.path, log.path)
    except KeyboardInterrupt:
        _clear_progress()
        done = len(group_cells(rows))
        with contextlib.suppress(OSError):  # SIGHUP: the terminal may be gone
            print(f"matmul-harness: interrupted after {done} of {len(cells)} cells; finished "
                  f"cells are kept in {log.path}. Resume with: matmul-harness verify --resume "
                  f"{shlex.quote(str(log.path.parent))}", file=sys.stderr, flush=True)
        raise
    _clear_progress()
    if chosen.name == "local":
        return rows, {}
    placed = getattr(runner, "placements", None)  # the Ray executor's: where groups ran
    return rows, {"executor": {"name": chosen.name, "address": chosen.address,
                               "accelerator": chosen.accelerator, "placements": placed}}


def _finished(out_dir: Path, cells: list[Cell], junit: Path | None) -> int:
    """`--resume` of a finished run: its verify.csv, checked against its config and shown;
    nothing is run and nothing rewritten (run.json keeps its start and wall time)."""
    final = out_dir / runfiles.VERIFY_FILE
    done = group_cells(read_csv(final))
    by_key = {c.key: c for c in cells}
    bad = [why for k, rs in done.items() if (why := store.mismatch(rs, by_key.get(k)))]
    if bad or set(done) != set(by_key):
        raise store.RunFolderError(
            f"{final}: does not hold the results of {out_dir / runfiles.CONFIG_FILE} "
            f"({bad[0] if bad else 'not every cell of its plan'}); start afresh with --force"
        )
    print(f"{out_dir}: the run is finished; nothing to resume", file=sys.stderr)
    return _show(in_plan_order([r for rs in done.values() for r in rs], cells), out_dir, junit)


def _show(rows: list[Row], out_dir: Path, junit: Path | None) -> int:
    if junit:
        _write(lambda: write_junit(rows, junit), junit)
    print(matrix(rows))
    for line in problems(rows):
        print(line)
    print(f"results: {printable(str(out_dir / runfiles.VERIFY_FILE))}")
    print(summary_line(rows), flush=True)
    return EXIT_FAILED if any(r.status in ("fail", "error") for r in rows) else EXIT_OK


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # a CI job cancelled, `kill`, terminal closed


@contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the run like Ctrl-C: cleanly (workers ended, temp files
    removed, finished cells kept, exit 130)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = [(s, signal.signal(s, handler)) for s in STOP_SIGNALS]
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for s, old in previous:
            signal.signal(s, old)


def _interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def _progress_printer() -> Progress | None:
    if not _interactive():
        return None

    def show(done: int, total: int, framework: str) -> None:
        sys.stderr.write(f"\r\x1b[2K[{done}/{total} cells] {printable(framework)}")
        sys.stderr.flush()

    return show


def _clear_progress() -> None:
    if _interactive():
        sys.stderr.write("\r\x1b[2K")
        sys.stderr.flush()
