"""A matmul split across a device mesh: the split-aware bound, mesh configs, the mesh
workers on 4 simulated devices, and isolation of a group that hangs or dies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import mesh, mesh_run
from harness.cases import Case, make_inputs
from harness.checks import check
from harness.config import ConfigError
from harness.dtypes import get
from harness.reference import reference
from tests.conftest import need

ROOT = Path(__file__).resolve().parents[1]
TP4 = mesh.Mesh("tp4", (4,), ("model",))
DP2TP2 = mesh.Mesh("dp2tp2", (2, 2), ("data", "model"))


def _split_sum(x: np.ndarray, w: np.ndarray, parts: int, acc: type, out: np.dtype,
               rng: np.random.Generator) -> np.ndarray:
    """X @ W as `parts` partials over K, each accumulated in `acc` and rounded to `out`,
    then added in a random order with every add rounded to `out` (an all-reduce)."""
    ks = np.array_split(np.arange(x.shape[1]), parts)
    partials = [(x[:, k].astype(acc) @ w[k].astype(acc)).astype(out) for k in ks]
    order = rng.permutation(parts)
    total = partials[order[0]]
    for p in order[1:]:
        total = (total.astype(np.float64) + partials[p].astype(np.float64)).astype(out)
    return total


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("parts", [2, 4, 8])
def test_split_bound_holds_for_rounded_partials_and_catches_a_missing_one(
        dtype: str, parts: int) -> None:
    d = get(dtype)
    layout = mesh.LAYOUTS["row"]
    m = mesh.Mesh("m", (parts,), ("model",))
    case = Case("split", (16, 256), (256, 12))
    p = mesh.bound_params(layout, m, "Y", case)
    assert (p.parts, p.b_red, p.k_eff) == (parts, parts, 256)
    worst = 0.0
    for seed in range(5):
        i = make_inputs(case, d, seed)
        ref = reference(i)
        rng = np.random.default_rng(seed)
        got = _split_sum(i.x, i.w, parts, np.float32, d.numpy, rng)
        o = check("Y", got, ref.values["Y"], ref.scale["Y"], d, p)
        assert o.status == "pass", o.reason
        worst = max(worst, o.ratio)
        short = _split_sum(i.x[:, : 256 - 256 // parts], i.w[: 256 - 256 // parts], parts - 1,
                           np.float32, d.numpy, rng) if parts > 2 else got * 0
        assert check("Y", short.astype(d.numpy), ref.values["Y"], ref.scale["Y"], d,
                     p).status == "fail"
    assert worst > 1e-3  # the bound is not vacuous: the error uses some of it


def test_layout_table_says_which_sum_is_split() -> None:
    case = Case("c", (8, 16), (16, 12))
    split = {name: {q: mesh.parts(lay, TP4 if lay.ndim == 1 else DP2TP2, q)
                    for q in ("Y", "dX", "dW")} for name, lay in mesh.LAYOUTS.items()}
    assert split["column"] == {"Y": 1, "dX": 4, "dW": 1}
    assert split["row"] == {"Y": 4, "dX": 1, "dW": 1}
    assert split["data"] == {"Y": 1, "dX": 1, "dW": 4}
    assert split["data_row"] == {"Y": 2, "dX": 1, "dW": 2}
    assert mesh.bound_params(mesh.LAYOUTS["column"], TP4, "Y", case).parts == 1
    assert mesh.fits(mesh.LAYOUTS["row"], TP4, Case("odd", (8, 6), (6, 4))) is not None
    assert mesh.fits(mesh.LAYOUTS["data_row"], TP4, case) == "needs a 2-D mesh, the mesh is 1-D"


GOOD = {"meshes": [{"name": "tp4", "shape": [4], "axes": ["model"]}],
        "cases": [{"name": "c", "x": [8, 16], "w": [16, 12], "mesh": "tp4",
                   "layouts": ["row"]}]}


@pytest.mark.parametrize("patch, words", [
    ({"meshs": []}, "unknown key"),
    ({"dtypes": ["float16"]}, "dtypes"),
    ({"meshes": [{"name": "tp4", "shape": [0], "axes": ["model"]}]}, "positive integers"),
    ({"meshes": [{"name": "tp4", "shape": [4], "axes": ["a", "b"]}]}, "1 distinct names"),
    ({"cases": [{"name": "c", "x": [8, 6], "w": [6, 12], "mesh": "tp4",
                 "layouts": ["row"]}]}, "not divisible by mesh axis 'model'"),
    ({"cases": [{"name": "c", "x": [8, 16], "w": [16, 12], "mesh": "tp8",
                 "layouts": ["row"]}]}, "must be one of tp4"),
    ({"cases": [{"name": "c", "x": [8, 16], "w": [16, 12], "mesh": "tp4",
                 "layouts": ["diagonal"]}]}, "layouts"),
])
def test_bad_mesh_configs_are_one_line_errors(patch: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        mesh.parse({**GOOD, **patch}, "m.yaml")
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_cli_bad_mesh_config_exits_2(tmp_path: Path) -> None:
    from harness.cli import main

    bad = tmp_path / "m.yaml"
    bad.write_text("meshes: []\ncases: []\n")
    assert main(["verify-mesh", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2


def _cfg(frameworks: tuple[str, ...], cell_timeout: float) -> mesh.MeshConfig:
    return mesh.MeshConfig(frameworks, ("float32",), (TP4, DP2TP2), (), 0, "test",
                           cell_timeout, 600.0)


def test_jax_every_layout_passes_on_4_devices_float32() -> None:
    need("jax")
    cfg = mesh.load(ROOT / "configs" / "mesh_quick.yaml")
    cells = [c for c in mesh.plan(cfg) if c.framework == "jax"]
    rows = mesh_run.verify(cfg, cells)
    assert len(rows) == 4 * len(cells) == 4 * 10
    assert all(r.status == "pass" for r in rows), [r.reason for r in rows if r.reason]
    notes = {r.case: r.note for r in rows if r.quantity == "placement"}
    assert "all-reduce=1" in notes["small_8x16x12[row,jit]"]
    assert "all-reduce=2" in notes["small2d_8x16x12[data_row,shard_map]"]


def test_torch_dtensor_row_parallel_passes_and_a_hung_or_dead_rank_costs_its_cell(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One torch group of 4 gloo ranks: a rank that hangs is timed out, one that dies
    ends its group; the cells around them pass, and no rank is left behind."""
    need("torch")
    case = Case("small_8x16x12", (8, 16), (16, 12))
    def planted(bug: str) -> mesh.MeshCell:
        return mesh.MeshCell("torch", "dtensor", TP4, "row", "float32",
                             Case(bug, (8, 16), (16, 12)), bug)

    # the hang comes last so that only the crash costs a second group start-up (~5 s idle)
    cells = [mesh.MeshCell("torch", "dtensor", TP4, "row", "float32", case), planted("crash"),
             mesh.MeshCell("torch", "dtensor", TP4, "column", "float32", case),
             mesh.MeshCell("torch", "dtensor", DP2TP2, "data_row", "float32", case),
             planted("hang")]
    leaders: list[int] = []
    real = subprocess.Popen

    def spy(*args: object, **kw: object) -> subprocess.Popen[bytes]:
        p = real(*args, **kw)  # type: ignore[call-overload]
        leaders.append(p.pid)
        return p  # type: ignore[no-any-return]

    monkeypatch.setattr(mesh_run.subprocess, "Popen", spy)
    rows = mesh_run.verify(_cfg(("torch",), 15.0), cells)
    by_case = {(r.case, r.quantity): r for r in rows}
    assert len(rows) == 4 * len(cells)
    hang = by_case[("hang[row,dtensor]", "Y")]
    assert hang.status == "error" and "timeout after 15 s (cell)" in hang.reason
    crash = by_case[("crash[row,dtensor]", "dX")]
    assert crash.status == "error" and "rank 1 exited with status 3" in crash.reason
    ok = [r for r in rows if r.case.startswith("small")]
    assert len(ok) == 12 and all(r.status == "pass" for r in ok), [r.reason for r in ok]
    assert "all_reduce=1" in by_case[("small_8x16x12[row,dtensor]", "placement")].note
    assert len(leaders) == 2  # the first group, and a fresh one after the crash
    for pgid in leaders:  # every process of every group is gone
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)


def test_planted_sharding_bugs_are_caught_in_jax() -> None:
    """Each bug on every layout it applies to (float32 here; `selftest-mesh` adds bfloat16
    and torch); the control passes."""
    need("jax")
    from harness import mesh_selftest

    ts = mesh_selftest.tallies(1, ("jax",), ("float32",))
    assert {t.bug for t in ts} == set(mesh_selftest.PLANTED)
    assert [t for t in ts if not t.ok] == []
    assert sum(t.detected for t in ts if t.bug) == sum(t.trials for t in ts if t.bug) > 0
    assert all(t.detected == 0 for t in ts if not t.bug)


def test_mesh_modules_load_no_framework() -> None:
    code = ("import sys\n"
            "import harness.mesh, harness.mesh_run, harness.mesh_worker, harness.mesh_selftest\n"
            "import harness.sharded.jax_mesh, harness.sharded.torch_mesh\n"
            "print(','.join(m for m in ('torch', 'jax', 'jaxlib', 'tensorflow') "
            "if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_a_mesh_row_is_a_verify_row_of_its_layout() -> None:
    """mesh_run.make_row builds through judge.make_row: generated cells, reasons and
    outcomes land in the columns a mesh row has always used."""
    from harness.checks import Outcome
    from harness.config import packaged

    rng = np.random.default_rng(5)
    cells = mesh.plan(mesh.load(packaged(mesh_run.DEFAULT_CONFIG)))
    pieces = ["a", "b  c", "\n", "\t", "Traceback:\n    File", ""]
    for i in range(200):
        cell = cells[int(rng.integers(len(cells)))]
        reason = "".join(pieces[int(j)] for j in rng.integers(len(pieces), size=5))
        o = None if i % 3 == 0 else Outcome("fail", reason, float(rng.random()),
                                            float(rng.random()), 20.5, -0.25)
        row = mesh_run.make_row(cell, "dX", "fail", reason, "2.5", o, i, "n")
        assert (row.framework, row.device, row.dtype, row.case) == (
            cell.framework, cell.device, cell.dtype, cell.label)
        assert row.x_shape == "x".join(map(str, cell.case.x))
        assert (row.precision, row.precision_mode, row.k_eff, row.note) == (
            "ieee", "pinned", i, "n")
        assert row.reason == " ".join(reason.split())
        assert row.nominal_bits == get(cell.dtype).nominal_bits
        if o is None:
            assert np.isnan(row.max_abs_err) and np.isnan(row.bias)
        else:
            assert (row.max_abs_err, row.ratio, row.effective_bits, row.bias) == (
                o.max_abs_err, o.ratio, 20.5, -0.25)
