"""The `matmul-harness` command line.

Exit codes: 0 nothing failed or errored; 1 something failed or errored; 2 usage or config
error (a one-line message on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness import __version__
from harness.adapters import RegistryError, registry
from harness.config import Config, ConfigError, load, validate_selection
from harness.dtypes import DEVICES, DTYPES
from harness.orchestrator import CELL_TIMEOUT_S, Progress, verify
from harness.results import Row, matrix, problems, summary_line, write_csv, write_junit
from harness.system import system_info

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


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
    r = sub.add_parser("run", help="the main job: verify the default config into results/")
    r.add_argument("--config", help="YAML config (default: the embedded configs/default.yaml)")
    r.add_argument("--out", help="output folder (default: a new folder under results/)")
    return p


def _verify_args(v: argparse.ArgumentParser) -> None:
    v.add_argument("--config", help="YAML config (default: the embedded configs/default.yaml)")
    v.add_argument("--framework", action="append", default=[], metavar="NAME",
                   help="only this framework (repeatable)")
    v.add_argument("--device", action="append", default=[], metavar="cpu|gpu",
                   help="only this device (repeatable)")
    v.add_argument("--dtype", action="append", default=[], metavar="NAME",
                   help="only this dtype (repeatable)")
    v.add_argument("--out", help="output folder (default: a new folder under results/)")
    v.add_argument("--junit", metavar="FILE", help="also write the matrix as JUnit XML")
    v.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                   help="frameworks run at once, one worker process each (default: %(default)s)")
    v.add_argument("--cell-timeout", type=float, default=CELL_TIMEOUT_S, metavar="SECONDS",
                   help="a cell running longer is killed and recorded as error "
                        "(default: %(default)g)")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _verify(args.config, [], [], [], args.out, None, 2, CELL_TIMEOUT_S, "run")
        return _verify(args.config, args.framework, args.device, args.dtype, args.out,
                       args.junit, args.jobs, args.cell_timeout, "verify")
    except (ConfigError, RegistryError, UsageError) as exc:
        print(f"matmul-harness: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _select(cfg: Config, frameworks: list[str], devices: list[str],
            dtypes: list[str], known: Sequence[str]) -> Config:
    """Command-line selections replace the config's lists (validated the same way)."""
    from dataclasses import replace

    return replace(
        cfg,
        frameworks=validate_selection(frameworks, known, "--framework") or cfg.frameworks,
        devices=validate_selection(devices, DEVICES, "--device") or cfg.devices,
        dtypes=validate_selection(dtypes, tuple(DTYPES), "--dtype") or cfg.dtypes,
    )


def _out_dir(out: str | None, prefix: str) -> Path:
    path = Path(out) if out else Path("results") / time.strftime(f"{prefix}-%Y%m%d-%H%M%S")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"--out {str(path)!r} is not a writable folder ({exc.strerror}); "
            "choose another with --out"
        ) from None
    return path


def _verify(config: str | None, frameworks: list[str], devices: list[str], dtypes: list[str],
            out: str | None, junit: str | None, jobs: int, cell_timeout: float,
            prefix: str) -> int:
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1; received {jobs}")
    if cell_timeout <= 0:
        raise UsageError(f"--cell-timeout must be positive; received {cell_timeout:g}")
    known = tuple(registry())
    cfg = _select(load(config, known), frameworks, devices, dtypes, known)
    out_dir = _out_dir(out, prefix)
    started = time.time()
    rows = verify(cfg, progress=_progress_printer(), jobs=jobs, cell_timeout=cell_timeout)
    _clear_progress()
    write_csv(rows, out_dir / "verify.csv")
    _write_meta(out_dir / "run.json", cfg, rows, started)
    if junit:
        write_junit(rows, Path(junit))
    print(matrix(rows))
    for line in problems(rows):
        print(line)
    print(f"results: {out_dir / 'verify.csv'}")
    print(summary_line(rows))
    return EXIT_FAILED if any(r.status in ("fail", "error") for r in rows) else EXIT_OK


def _write_meta(path: Path, cfg: Config, rows: Sequence[Row], started: float) -> None:
    versions = {r.framework: r.framework_version for r in rows if r.framework_version}
    precisions = sorted({f"{r.framework}:{r.device}:{r.precision}" for r in rows if r.precision})
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
    from harness.results import atomic_write

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
