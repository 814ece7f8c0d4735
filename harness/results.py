"""Long-form result rows and what is written from them: verify.csv, JUnit XML, the matrix.

One row per framework x device x dtype x case x quantity. The CSV columns are the fields
of `Row`, in order; README.md documents each.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import runfiles

STATUSES: tuple[str, ...] = ("pass", "fail", "skip", "error")


@dataclass(frozen=True)
class Row:
    framework: str
    device: str
    dtype: str
    case: str
    x_shape: str  # "5x7"; "" for a 0-D shape never occurs (0-D operands are rejected)
    w_shape: str
    quantity: str  # one of runfiles.QUANTITIES: Y, dX, dW, dY, adjoint, d2W
    status: str  # pass, fail, skip or error
    reason: str  # why it failed, was skipped or errored; empty on pass
    max_abs_err: float  # max |got - ref| over the elements (NaN when not compared)
    ratio: float  # max |got - ref| / bound: the fraction of the allowed error used
    k_eff: int  # length of each element's sum, which the bound grows with
    precision: str  # the compute mode of a float32 product: ieee, tf32, bf16, bf16x3
    framework_version: str
    # Added by the precision forensics; files written before them read with these defaults.
    precision_mode: str = "pinned"  # pinned (full precision forced) or default (as shipped)
    effective_bits: float = float("nan")  # -log2(rms(got - ref) / rms(ref))
    nominal_bits: int = 0  # the dtype's mantissa bits (24 for float32)
    bias: float = float("nan")  # β = Re Σ(got - ref)·conj(ref) / Σ|ref|²
    note: str = ""  # effective bits below the compute mode's bound, known divergences
    precision_flags: str = ""  # the framework settings behind `precision` (TF32 switches...)
    check: str = ""  # full or sampled (harness/sampled.py); empty in files from before it
    # Added by sharded and merged runs; older files read with "" (the folder's run.json
    # then names the machine).
    machine: str = ""  # run.json's system.machine_name of the machine that ran the cell


    @property
    def label(self) -> str:
        """`framework:device`, with `:default` for the as-shipped precision mode."""
        return runfiles.label(self.framework, self.device, self.precision_mode)


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Row))
REQUIRED_COLUMNS: tuple[str, ...] = COLUMNS[: COLUMNS.index("precision_mode")]


def counts(rows: Iterable[Row]) -> Counter[str]:
    c: Counter[str] = Counter(r.status for r in rows)
    return c


def summary_line(rows: Sequence[Row]) -> str:
    c = counts(rows)
    return (
        f"{c['pass']} passed, {c['fail']} failed, {c['skip']} skipped, {c['error']} errors"
    )


def _umask() -> int:
    """The process's umask (read by setting it and back: no other way in Python)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a reader never sees half a file.

    The file gets the mode any new file would (0666 less the umask), not mkstemp's 0600:
    results are shared, served and attached to CI runs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="", errors="backslashreplace") as f:
            f.write(text)
            os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(rows: Sequence[Row], path: Path) -> None:
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow(_fmt(getattr(r, c)) for c in COLUMNS)
    atomic_write(path, buf.getvalue())


# A spreadsheet runs a cell starting with one of these as a formula (CSV injection). Text
# cells so starting get one leading apostrophe, which spreadsheets show as "text"; any
# apostrophes already there are counted, so reading strips exactly the one added and every
# text survives the round trip. Numbers (a negative bias) are never touched.
_FORMULA = re.compile(r"'*[=+\-@\t\r]")


def guard_cell(text: str) -> str:
    """`text` made safe to open in a spreadsheet; `unguard_cell` undoes it."""
    return f"'{text}" if _FORMULA.match(text) else text


def unguard_cell(text: str) -> str:
    return text[1:] if text.startswith("'") and _FORMULA.match(text[1:]) else text


class ResultsFileError(ValueError):
    """A results file that is corrupt or not ours; the message names the file and line."""


_TYPES = {f.name: f.type for f in dataclasses.fields(Row)}


def read_csv(path: Path) -> list[Row]:
    """Rows of a verify.csv; anything malformed raises ResultsFileError (file and line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"{path}: cannot read results file ({exc})") from None
    reader = csv.reader(text.splitlines(keepends=True))
    header = next(reader, None) or []
    if header[: len(REQUIRED_COLUMNS)] != list(REQUIRED_COLUMNS) or not set(header) <= set(
        COLUMNS
    ):
        raise ResultsFileError(
            f"{path}: not a matmul-harness verify results file; expected the header "
            f"{','.join(COLUMNS)}; received {','.join(header or ['<empty file>'])[:120]}"
        )
    out = []
    for lineno, rec in enumerate(reader, start=2):
        if len(rec) != len(header):
            raise ResultsFileError(
                f"{path}: line {lineno}: expected {len(header)} fields; received {len(rec)}"
            )
        kw: dict[str, object] = {}
        try:
            for c, v in zip(header, rec, strict=True):
                t = _TYPES[c]
                kw[c] = (float(v) if v else float("nan")) if t == "float" else (
                    int(v) if t == "int" else unguard_cell(v))
        except ValueError as exc:
            raise ResultsFileError(f"{path}: line {lineno}: {exc}") from None
        if kw["status"] not in STATUSES:
            raise ResultsFileError(
                f"{path}: line {lineno}: status {kw['status']!r}; allowed: {', '.join(STATUSES)}"
            )
        out.append(Row(**kw))  # type: ignore[arg-type]
    return out


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "" if v != v else f"{v:.6g}"
    return guard_cell(v) if isinstance(v, str) else str(v)


# Characters XML 1.0 cannot hold at all (C0 controls but tab, newline and CR; surrogates;
# U+FFFE/U+FFFF); ElementTree would write them and leave an invalid file.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """`text` with what XML cannot hold shown escaped (`\\x1b`), the rest as is."""
    return _XML_INVALID.sub(lambda m: ascii(m.group())[1:-1], text)


def printable(text: str) -> str:
    """`text` for a terminal: control characters (ESC, newlines) and lone surrogates shown
    escaped, so a name or reason can neither move the cursor nor break the line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def write_junit(rows: Sequence[Row], path: Path) -> None:
    """The matrix as JUnit XML: a testsuite per framework:device, a testcase per row."""
    suites = ET.Element("testsuites", name="matmul-harness verify")
    by_suite: dict[str, list[Row]] = {}
    for r in rows:
        by_suite.setdefault(r.label, []).append(r)
    for name, members in by_suite.items():
        c = counts(members)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=xml_text(name),
            tests=str(len(members)),
            failures=str(c["fail"]),
            errors=str(c["error"]),
            skipped=str(c["skip"]),
        )
        for r in members:
            case = ET.SubElement(
                suite, "testcase", classname=xml_text(name),
                name=xml_text(f"{r.dtype}-{r.case}-{r.quantity}"),
            )
            tag = {"fail": "failure", "error": "error", "skip": "skipped"}.get(r.status)
            if tag:
                ET.SubElement(case, tag, message=xml_text(r.reason))
            elif r.ratio == r.ratio:
                ET.SubElement(case, "system-out").text = f"ratio={r.ratio:.3g}"
    ET.indent(suites)
    atomic_write(path, ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n")


def matrix(rows: Sequence[Row]) -> str:
    """Rows framework:device, columns dtype, cells `pass/fail/skip[/error]` counts."""
    dtypes = list(dict.fromkeys(r.dtype for r in rows))
    keys = list(dict.fromkeys(r.label for r in rows))
    show_err = any(r.status == "error" for r in rows)
    cells: dict[tuple[str, str], Counter[str]] = {}
    for r in rows:
        cells.setdefault((r.label, r.dtype), Counter())[r.status] += 1

    def cell(k: str, d: str) -> str:
        c = cells.get((k, d), Counter())
        parts = [c["pass"], c["fail"], c["skip"]] + ([c["error"]] if show_err else [])
        return "/".join(map(str, parts)) if sum(c.values()) else "-"

    legend = "pass/fail/skip" + ("/error" if show_err else "")
    table = [[legend, *map(printable, dtypes)]] + [
        [printable(k), *(cell(k, d) for d in dtypes)] for k in keys]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in table]
    return "\n".join(line.rstrip() for line in lines)


def problems(rows: Sequence[Row], limit: int = 20) -> list[str]:
    """One line per fail/error (first `limit`), then skip reasons grouped."""
    bad = [r for r in rows if r.status in ("fail", "error")]
    lines = [
        printable(f"{r.status.upper()} {r.label} {r.dtype} {r.case} {r.quantity}: {r.reason}")
        for r in bad[:limit]
    ]
    if len(bad) > limit:
        lines.append(f"... and {len(bad) - limit} more in verify.csv")
    skips = Counter(
        (r.label, r.reason) for r in rows if r.status == "skip"
    )
    lines += [printable(f"skip {k} x{n}: {why}") for (k, why), n in skips.items()]
    return lines
