"""`matmul-harness selftest-mesh`: what a pass of `verify-mesh` is worth, shown.

Each planted bug is a sharded backward wrong in one way a real framework has shipped
(`harness.sharded.BUGS`), planted in each framework's `manual` path, where the collectives
are written out as hand-written tensor parallelism does: in JAX a `shard_map` whose
per-device VJP calls `psum`; in torch Megatron-LM's f/g operators (`autograd.Function`s
around `all_reduce`) on 4 gloo ranks. The bugs run through the same mesh workers and the
same checks as `verify-mesh`; the control is that path without a bug. A bug is detected
when any of a cell's rows (Y, dX, dW, placement) fails; the table is the detection rate
over `trials` independent inputs per layout and dtype.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from harness.cases import Case
from harness.mesh import LAYOUTS, Layout, Mesh, MeshCell, MeshConfig
from harness.mesh_run import installed, verify
from harness.results import atomic_write
from harness.sharded import BUGS

FRAMEWORKS: tuple[str, ...] = ("jax", "torch")
PLANTED: tuple[str, ...] = ("", "no_allreduce", "scaled", "rolled")
DTYPES: tuple[str, ...] = ("float32", "bfloat16")
MESHES = {1: Mesh("tp4", (4,), ("model",)), 2: Mesh("dp2tp2", (2, 2), ("data", "model"))}
SHAPE = ((16, 32), (32, 24))


def applies(bug: str, layout: Layout) -> bool:
    """A missing backward all-reduce needs a gradient whose sum is split."""
    if bug == "no_allreduce":
        return any(q in layout.split for q in ("dX", "dW"))
    return True


@dataclass(frozen=True)
class Tally:
    framework: str
    bug: str
    layout: str
    dtype: str
    applies: bool
    trials: int
    detected: int

    @property
    def ok(self) -> bool:
        """A bug is always caught; the control never is."""
        if not self.bug:
            return self.detected == 0
        return not self.applies or self.detected == self.trials


def cells(trials: int, frameworks: tuple[str, ...] = FRAMEWORKS,
          dtypes: tuple[str, ...] = DTYPES) -> list[MeshCell]:
    """One cell per bug x layout x dtype x trial; a trial's case name seeds its inputs."""
    return [
        MeshCell(f, "manual", MESHES[lay.ndim], lay.name, dtype,
                 Case(f"{bug or 'control'}-t{t}", *SHAPE), bug)
        for f in frameworks
        for bug in PLANTED
        for lay in LAYOUTS.values()
        if applies(bug, lay)
        for dtype in dtypes
        for t in range(trials)
    ]


def tallies(trials: int, frameworks: tuple[str, ...] = FRAMEWORKS,
            dtypes: tuple[str, ...] = DTYPES, cell_timeout: float = 300.0) -> list[Tally]:
    todo = cells(trials, frameworks, dtypes)
    cfg = MeshConfig(frameworks, dtypes, tuple(MESHES.values()), (), 0, "selftest-mesh",
                     cell_timeout, 3600.0)
    rows = verify(cfg, todo, cell_timeout)
    failed = {(r.framework, r.dtype, r.case) for r in rows if r.status != "pass"}
    out = []
    for f in frameworks:
        for bug in PLANTED:
            for lay in LAYOUTS.values():
                for dtype in dtypes:
                    mine = [c for c in todo
                            if (c.framework, c.bug, c.layout, c.dtype) == (f, bug, lay.name, dtype)]
                    hit = sum((f, c.dtype, c.label) in failed for c in mine)
                    out.append(Tally(f, bug, lay.name, dtype, applies(bug, lay), len(mine), hit))
    return out


def table(ts: list[Tally]) -> str:
    cols = list(dict.fromkeys(f"{t.layout}/{t.dtype}" for t in ts))
    lines = []
    for f in dict.fromkeys(t.framework for t in ts):
        lines.append(f"{f:<22}" + " ".join(c.ljust(len(c)) for c in cols))
        for bug in PLANTED:
            cells_ = {f"{t.layout}/{t.dtype}": (f"{t.detected}/{t.trials}" if t.applies
                                                else "n/a")
                      for t in ts if (t.framework, t.bug) == (f, bug)}
            lines.append(f"  {bug or 'none (control)':<20}"
                         + " ".join(cells_[c].ljust(len(c)) for c in cols))
    return "\n".join(lines)


def run(trials: int, out_dir: Path) -> int:
    ts = tallies(trials, tuple(f for f in FRAMEWORKS if installed(f)))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["framework", "bug", "description", "layout", "dtype", "applies", "trials",
                "detected", "detection_rate", "required"])
    for t in ts:
        rate = t.detected / t.trials if t.trials else float("nan")
        w.writerow([t.framework, t.bug or "none", BUGS[t.bug], t.layout, t.dtype, t.applies,
                    t.trials, t.detected, f"{rate:.3g}",
                    "0" if not t.bug else ("1" if t.applies else "")])
    atomic_write(out_dir / "selftest_mesh.csv", buf.getvalue())
    print(table(ts))
    print(f"results: {out_dir / 'selftest_mesh.csv'}")
    bad = [t for t in ts if not t.ok]
    for t in bad:
        print(f"blind spot: {t.framework} {t.bug or 'control'} on {t.layout}/{t.dtype}: "
              f"{t.detected}/{t.trials} flagged")
    return 1 if bad else 0
