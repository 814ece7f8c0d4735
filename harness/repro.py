"""`matmul-harness repro`: a standalone script that reproduces one cell for upstream.

The script needs only numpy and the framework (no harness): it builds the cell's inputs
bit for bit (inline, or regenerated with the seeding of `harness.cases`; either way a
SHA-256 of the bytes, computed here, is checked before anything runs), runs the
framework's own autodiff through the adapter's `repro_snippet`, and prints the error of Y,
dX and dW against float64 products computed in the script. Those products are the one
exception to "formulas live only in harness/reference.py": the script carries the
reference's own functions, copied from their source by `inspect` when it is written, so
that it runs where matmul-harness is not installed.

A crash in the framework ends the script the way it ended the harness's worker (a fatal
signal such as SIGABRT): that exit is the reproduction.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import textwrap
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness import __version__, cases, reference
from harness.adapters import load
from harness.cases import Case, Inputs, make_inputs
from harness.config import ConfigError
from harness.dtypes import get
from harness.results import ResultsFileError, Row, read_csv
from harness.runfiles import RUN_FILE, VERIFY_FILE
from harness.system import RECORDED_ENV

INLINE_BYTES = 256 * 1024  # larger inputs are regenerated from the seed (K = 65536 cases)


class ReproError(ConfigError):
    """The cell cannot be found or reproduced: exit 2 with this one line."""


@dataclass(frozen=True)
class Cell:
    """What a reproducer is written from: the case, the recorded rows, the run's facts."""

    framework: str
    device: str
    dtype: str
    case: Case
    seed: int
    rows: tuple[Row, ...]
    env: dict[str, str]  # the run's recorded thread/numerics variables (oneDNN, XLA...)


def command(result_dir: str, case: str, framework: str, dtype: str, device: str) -> str:
    """The shell command that writes a cell's reproducer (the report prints it)."""
    import shlex

    return (f"matmul-harness repro {shlex.quote(result_dir)} --case {shlex.quote(case)} "
            f"--framework {framework} --dtype {dtype} --device {device}")


def find_cell(result_dir: Path, case: str, framework: str, dtype: str, device: str) -> Cell:
    """The cell's rows and run facts from a verify output folder; ReproError if absent."""
    csv_path = result_dir / VERIFY_FILE
    if not csv_path.is_file():
        raise ReproError(f"{result_dir}: no verify.csv; expected a folder written by "
                         "matmul-harness verify --out DIR")
    try:
        all_rows = read_csv(csv_path)
    except ResultsFileError as exc:
        raise ReproError(str(exc)) from None
    rows = tuple(r for r in all_rows if (r.framework, r.device, r.dtype, r.case)
                 == (framework, device, dtype, case) and r.precision_mode == "pinned")
    if not rows:
        # Reproducers pin full float32 precision, as verify's `pinned` mode does.
        cells = sorted({f"{r.framework}/{r.device}/{r.dtype}/{r.case}" for r in all_rows
                        if r.precision_mode == "pinned"})
        shown = ", ".join(cells[:8]) + (f" and {len(cells) - 8} more" if len(cells) > 8 else "")
        raise ReproError(f"{csv_path}: no cell {framework}/{device}/{dtype}/{case} in the "
                         f"pinned precision mode; cells there: {shown or 'none'}")
    r = rows[0]
    shape = Case(case, _shape(r.x_shape), _shape(r.w_shape))
    run: dict[str, Any] = {}
    run_path = result_dir / RUN_FILE
    if run_path.is_file():
        run = json.loads(run_path.read_text(encoding="utf-8"))
    env = (run.get("system") or {}).get("env") or {}
    return Cell(framework, device, dtype, shape, int(run.get("seed", 0)), rows,
                {k: str(v) for k, v in env.items() if k in RECORDED_ENV})


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.split("x")) if text else ()


def script(cell: Cell) -> str:
    """The reproducer's source for `cell`."""
    cls = load(cell.framework)
    if not cls.repro_snippet:
        raise ReproError(f"{cell.framework} writes no reproducer: its adapter "
                         f"({cls.__module__}) sets no repro_snippet")
    dtype = get(cell.dtype)
    inputs = make_inputs(cell.case, dtype, cell.seed)
    parts = [
        _header(cell),
        "from __future__ import annotations\n\nimport base64\nimport hashlib\nimport math\n"
        "import os\nimport sys\nimport zlib\n",
        "".join(f"os.environ.setdefault({k!r}, {v!r})\n" for k, v in cell.env.items()),
        "import numpy as np\n",
        f"CASE, DTYPE, DEVICE, SEED = {cell.case.name!r}, {cell.dtype!r}, {cell.device!r}, "
        f"{cell.seed}\n"
        f"SHAPES = {{'x': {cell.case.x!r}, 'w': {cell.case.w!r}, "
        f"'g': {cell.case.geometry.y_shape!r}}}\n"
        f"DIGEST = {_digest(inputs)!r}  # SHA-256 of the harness's x, w, g bytes\n"
        f"U = {dtype.u_out!r}  # unit roundoff of {cell.dtype}\n",
        _inputs_code(cell, inputs),
        "\n# --- the framework's own autodiff (the adapter's repro_snippet) ---\n",
        textwrap.dedent(cls.repro_snippet).strip() + "\n",
        "\n# --- float64 products: harness/reference.py's functions, copied ---\n",
        *(inspect.getsource(f) + "\n" for f in (reference._mH, reference.sum_to_shape,
                                                reference.matmul_grads)),
        _MAIN,
    ]
    return "\n".join(p for p in parts if p)


def _header(cell: Cell) -> str:
    recorded = "\n".join(f"  {r.quantity}: {r.status}{': ' + r.reason if r.reason else ''}"
                         for r in cell.rows)
    return (
        f'#!/usr/bin/env python3\n"""Reproducer for {cell.framework} {cell.device} '
        f"{cell.dtype}, case {cell.case.name}:\nX {cell.case.x} @ W {cell.case.w}, seed "
        f"{cell.seed}. Written by matmul-harness {__version__} (`matmul-harness repro`).\n\n"
        f"matmul-harness recorded:\n{recorded}\n\n"
        f"Needs only numpy and {cell.framework}. It builds the same inputs (bit for bit: "
        "their SHA-256 is\nchecked), runs the framework's own autodiff, and prints the "
        "error of Y, dX and dW against\nfloat64 products computed here with numpy. A crash "
        'of the framework ends it with that signal.\n"""\n'
    )


def _digest(inputs: Inputs) -> str:
    h = hashlib.sha256()
    for a in (inputs.x, inputs.w, inputs.g):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _inputs_code(cell: Cell, inputs: Inputs) -> str:
    """Inline the inputs, or regenerate them with harness.cases' own code (copied)."""
    arrays = {"x": inputs.x, "w": inputs.w, "g": inputs.g}
    size = sum(a.nbytes for a in arrays.values())
    if size <= INLINE_BYTES or cell.dtype == "bfloat16":
        # bfloat16 travels as its 16-bit patterns (numpy has no bfloat16 type) and arrives
        # as float32, which holds every bfloat16 exactly.
        lines = ["# --- the inputs, inline (zlib + base64 of the raw bytes) ---",
                 "def _load(blob, shape):",
                 "    raw = zlib.decompress(base64.b64decode(blob))",
                 "    if DTYPE == 'bfloat16':",
                 "        bits = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16",
                 "        return bits.view(np.float32).reshape(shape), raw",
                 "    return np.frombuffer(raw, np.dtype(DTYPE)).reshape(shape).copy(), raw",
                 ""]
        for name, a in arrays.items():
            blob = base64.b64encode(zlib.compress(np.ascontiguousarray(a).tobytes(), 9))
            lines.append(f"{name}, _{name}_raw = _load({blob.decode('ascii')!r}, "
                         f"SHAPES[{name!r}])")
        lines.append("RAW = _x_raw + _w_raw + _g_raw")
        return "\n".join(lines) + "\n"
    src = "\n".join(inspect.getsource(f) for f in (cases._rng, cases._draw))
    return (
        "# --- the inputs, regenerated: harness/cases.py's _rng and _draw, copied ---\n"
        "class _D:  # what _rng and _draw read of harness's Case and DType\n"
        "    name = DTYPE\n    numpy = np.dtype(DTYPE)\n    is_complex = numpy.kind == 'c'\n"
        "\n\nclass _C:\n    name = CASE\n\n\n"
        f"DRAW_CHUNK = {cases.DRAW_CHUNK}\n\n\n{src}\n"
        "_rng_ = _rng(_C, _D, SEED, 'inputs')\n"
        "x, w, g = (_draw(_rng_, SHAPES[k], _D) for k in ('x', 'w', 'g'))\n"
        "RAW = b''.join(np.ascontiguousarray(a).tobytes() for a in (x, w, g))\n"
    )


_MAIN = '''
def main():
    if hashlib.sha256(RAW).hexdigest() != DIGEST:
        sys.exit("inputs differ from the harness run's (SHA-256 mismatch); numpy "
                 f"{np.__version__} draws another stream")
    print(f"inputs: x {SHAPES['x']}, w {SHAPES['w']}, g {SHAPES['g']} {DTYPE}, seed {SEED}: "
          "bit-identical to the harness run (SHA-256 checked)", flush=True)
    hi = np.complex128 if np.dtype(x.dtype).kind == "c" else np.float64
    xr, wr, gr = (np.asarray(a, hi) for a in (x, w, g))
    ref = dict(zip(("Y", "dX", "dW"), (np.matmul(xr, wr), *matmul_grads(xr, wr, gr))))
    ax, aw, ag = (np.abs(a) for a in (xr, wr, gr))
    scale = dict(zip(("Y", "dX", "dW"), (np.matmul(ax, aw), *matmul_grads(ax, aw, ag))))
    print(f"running {DEVICE} {DTYPE} forward and backward...", flush=True)
    got = dict(zip(("Y", "dX", "dW"), run(x, w, g, DTYPE, DEVICE)))
    print(f"{'':3} {'max |got - ref|':>16} {'at':>16} {'got':>14} {'expected':>14} "
          f"{'max |got-ref|/(|.|·|.|) in u':>30}")
    for q in ("Y", "dX", "dW"):
        a = np.asarray(got[q]).astype(hi)
        if a.shape != ref[q].shape:
            print(f"{q:3} shape {a.shape}, expected {ref[q].shape}")
            continue
        if a.size == 0:
            print(f"{q:3} empty, as expected")
            continue
        err = np.abs(a - ref[q])
        if not np.isfinite(err).all():
            bad = np.unravel_index(int(np.argmax(~np.isfinite(err))), err.shape)
            print(f"{q:3} non-finite at {tuple(map(int, bad))}: got {a[bad]}, "
                  f"expected {ref[q][bad]}")
            continue
        i = np.unravel_index(int(np.argmax(err)), err.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(err > 0, err / scale[q], 0.0)
        print(f"{q:3} {float(err[i]):16.3g} {str(tuple(map(int, i))):>16} "
              f"{complex(a[i]) if hi is np.complex128 else float(a[i]):14.6g} "
              f"{complex(ref[q][i]) if hi is np.complex128 else float(ref[q][i]):14.6g} "
              f"{float(rel.max()) / U:30.3g}")


if __name__ == "__main__":
    main()
'''


def write(result_dir: Path, case: str, framework: str, dtype: str, device: str,
          out: Path | None) -> Path:
    """Write the reproducer of a cell; its path (default `repro_<cell>.py` in result_dir)."""
    cell = find_cell(result_dir, case, framework, dtype, device)
    text = script(cell)
    path = out or result_dir / f"repro_{framework}_{device}_{dtype}_{case}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
