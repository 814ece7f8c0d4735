"""`matmul-harness report`: find the inputs, build the report, print where it went."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.report.load_asv import default_asv_results
from harness.report.render import build_report
from harness.report.schema import ReportInputError
from harness.runfiles import RUN_FILE, SELFTEST_FILE, VERIFY_FILE


def discover(root: Path) -> list[Path]:
    """Result folders directly under `root`: verify's (results/run-*, results/verify-*...)
    and the selftest's when it ran alone (results/selftest-*)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if (p / VERIFY_FILE).is_file() or (p / SELFTEST_FILE).is_file())


def report_command(result_dirs: Sequence[str], out: str, *, baseline: str = "numpy",
                   asv_results: str | None = None, peaks: str | None = None) -> int:
    dirs = [Path(d) for d in result_dirs]
    if not dirs:
        root = default_asv_results()
        dirs = discover(root)
        print(f"report: {len(dirs)} result folder(s) (verify or selftest output) found "
              f"under {root}")
    for d in dirs:
        if not d.is_dir():
            raise ReportInputError(f"{d}: no such folder; expected a verify output folder "
                                   f"(with {VERIFY_FILE} and {RUN_FILE})")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportInputError(f"--out {out}: exists and is not a folder; choose another")
    try:
        html, md = build_report(dirs, out_dir, baseline=baseline,
                                asv_results=Path(asv_results) if asv_results else None,
                                peaks=Path(peaks) if peaks else None)
    except PermissionError as exc:
        raise ReportInputError(f"--out {out}: not writable ({exc.strerror}); choose another "
                               "with --out") from None
    print(f"report: {html}")
    print(f"report: {md}")
    return 0
