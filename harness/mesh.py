"""A device mesh as a device: meshes, layouts, mesh configs and the split-aware bound.

A *layout* says which mesh axis each dim of `X (M, K)`, `W (K, N)` and `Y (M, N)` is
sharded along, and so which of the three sums is split across devices:

    Y  = X·W    sums over K   (split when X's K and W's K are sharded: row-parallel)
    dX = G·Wᵀ   sums over N   (split when W's N is sharded: column-parallel)
    dW = Xᵀ·G   sums over M   (split when X's M is sharded: data-parallel)

A split sum is P partial sums, each rounded to the dtype, then reduced across the devices
(all-reduce or reduce-scatter, each add rounded): `bound_params` gives the checker that
shape of sum, and docs/sharded.md derives the bound. Gradients must come back sharded
like their operand (dX like X, dW like W), the product like `y`. Nothing here imports a
framework.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cases import Case
from harness.config import ConfigError, read_yaml, seconds
from harness.tolerance import BoundParams, params

Spec = tuple[int | None, int | None]  # per dim of a 2-D operand: mesh axis index or None

FRAMEWORKS: tuple[str, ...] = ("jax", "torch")
# How each framework runs a layout: JAX through GSPMD (`jax.jit` with NamedShardings) and
# through `shard_map` (per-device code, explicit psum); torch through DTensor.
APIS: dict[str, tuple[str, ...]] = {"jax": ("jit", "shard_map"), "torch": ("dtensor",)}
QUANTITIES: tuple[str, ...] = ("Y", "dX", "dW", "placement")


@dataclass(frozen=True)
class Layout:
    name: str
    what: str
    ndim: int  # mesh dims it needs
    x: Spec
    w: Spec
    y: Spec
    split: dict[str, tuple[int, ...]]  # quantity -> mesh axes its sum is split across


LAYOUTS: dict[str, Layout] = {
    lay.name: lay
    for lay in (
        Layout("column", "column-parallel: W sharded on N", 1,
               x=(None, None), w=(None, 0), y=(None, 0), split={"dX": (0,)}),
        Layout("row", "row-parallel: X and W sharded on K, Y all-reduced", 1,
               x=(None, 0), w=(0, None), y=(None, None), split={"Y": (0,)}),
        Layout("data", "data-parallel: X sharded on the batch M, W replicated", 1,
               x=(0, None), w=(None, None), y=(0, None), split={"dW": (0,)}),
        Layout("data_column", "2-D: batch M on mesh axis 0, W's N on axis 1", 2,
               x=(0, None), w=(None, 1), y=(0, 1), split={"dX": (1,), "dW": (0,)}),
        Layout("data_row", "2-D: batch M on mesh axis 0, K on axis 1", 2,
               x=(0, 1), w=(1, None), y=(0, None), split={"Y": (1,), "dW": (0,)}),
    )
}


@dataclass(frozen=True)
class Mesh:
    name: str
    shape: tuple[int, ...]
    axes: tuple[str, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class MeshCell:
    """One framework x api x mesh x layout x dtype x case: the unit of a mesh run."""

    framework: str
    api: str
    mesh: Mesh
    layout: str
    dtype: str
    case: Case
    bug: str = ""  # a planted bug (selftest only): see harness.sharded.BUGS

    @property
    def device(self) -> str:
        return f"mesh:{self.mesh.name}"

    @property
    def label(self) -> str:
        """The `case` column of the rows: `name[layout,api]`."""
        return f"{self.case.name}[{self.layout},{self.api}]"


def spec_of(layout: Layout, quantity: str) -> Spec:
    """The sharding a result must have: dX like X, dW like W, Y as the layout says."""
    return {"Y": layout.y, "dX": layout.x, "dW": layout.w}[quantity]


def parts(layout: Layout, mesh: Mesh, quantity: str) -> int:
    """How many devices the quantity's sum is split across (1: not split)."""
    return math.prod(mesh.shape[a] for a in layout.split.get(quantity, ()))


def bound_params(layout: Layout, mesh: Mesh, quantity: str, case: Case) -> BoundParams:
    """The bound's parameters of a sharded quantity: P partials of K_eff/P, then reduced.

    Each of the P partial sums is rounded to the dtype and the P of them are added with
    rounded adds, which is what B_red = P accounts for (docs/sharded.md).
    """
    base = params(quantity, case.geometry, rounded_partials=False)
    p = parts(layout, mesh, quantity)
    return BoundParams(k_eff=base.k_eff, b_red=max(base.b_red, p), parts=p)


@dataclass(frozen=True)
class MeshConfig:
    frameworks: tuple[str, ...]
    dtypes: tuple[str, ...]
    meshes: tuple[Mesh, ...]
    cases: tuple[tuple[Case, str, tuple[str, ...]], ...]  # (case, mesh name, layouts)
    seed: int
    source: str
    cell_timeout: float = 300.0
    timeout: float = 3600.0


CONFIG_KEYS = ("frameworks", "dtypes", "meshes", "cases", "seed", "cell_timeout", "timeout")
MESH_KEYS = ("name", "shape", "axes")
CASE_KEYS = ("name", "x", "w", "mesh", "layouts")
MESH_DTYPES = ("bfloat16", "float32", "float64")  # real dtypes the collectives carry


def load(path: str | Path) -> MeshConfig:
    """Read and validate a mesh config; ConfigError (one line) on any problem."""
    return parse(read_yaml(Path(path), str(path)), str(path))


def _fail(where: str, what: str, got: Any) -> ConfigError:
    return ConfigError(f"{where}: {what}; received {got!r}")


def _names(data: dict[str, Any], key: str, allowed: Sequence[str], src: str) -> tuple[str, ...]:
    value = data.get(key, list(allowed))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or any(v not in allowed for v in value):
        raise _fail(f"{src}: {key}", f"must be a non-empty list drawn from {', '.join(allowed)}",
                    value)
    return tuple(dict.fromkeys(value))


def parse(data: Any, src: str) -> MeshConfig:
    if not isinstance(data, dict):
        raise _fail(src, f"expected a mapping with keys {', '.join(CONFIG_KEYS)}",
                    type(data).__name__)
    for key in data:
        if key not in CONFIG_KEYS:
            raise _fail(src, f"unknown key (allowed: {', '.join(CONFIG_KEYS)})", key)
    meshes = _meshes(data.get("meshes"), src)
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _fail(f"{src}: seed", "must be a non-negative integer", seed)
    return MeshConfig(
        frameworks=_names(data, "frameworks", FRAMEWORKS, src),
        dtypes=_names(data, "dtypes", MESH_DTYPES, src),
        meshes=meshes,
        cases=_cases(data.get("cases"), {m.name: m for m in meshes}, src),
        seed=seed,
        source=src,
        cell_timeout=seconds(data.get("cell_timeout", 300.0), f"{src}: cell_timeout"),
        timeout=seconds(data.get("timeout", 3600.0), f"{src}: timeout"),
    )


def _meshes(value: Any, src: str) -> tuple[Mesh, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(f"{src}: meshes", "must be a non-empty list of {name, shape, axes}", value)
    out: list[Mesh] = []
    for i, item in enumerate(value):
        where = f"{src}: meshes[{i}]"
        if not isinstance(item, dict) or set(item) != set(MESH_KEYS):
            raise _fail(where, f"must be a mapping with exactly {', '.join(MESH_KEYS)}", item)
        name, shape, axes = item["name"], item["shape"], item["axes"]
        if not isinstance(name, str) or not name or any(m.name == name for m in out):
            raise _fail(where, "name must be a unique non-empty string", name)
        if (not isinstance(shape, list) or len(shape) not in (1, 2)
                or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape)):
            raise _fail(where, "shape must be a list of 1 or 2 positive integers", shape)
        if (not isinstance(axes, list) or len(axes) != len(shape)
                or any(not isinstance(a, str) or not a for a in axes)
                or len(set(axes)) < len(axes)):
            raise _fail(where, f"axes must be {len(shape)} distinct names, one per dim", axes)
        out.append(Mesh(name, tuple(shape), tuple(axes)))
    return tuple(out)


def _cases(value: Any, meshes: dict[str, Mesh],
           src: str) -> tuple[tuple[Case, str, tuple[str, ...]], ...]:
    if not isinstance(value, list) or not value:
        raise _fail(f"{src}: cases", "must be a non-empty list of {name, x, w, mesh, layouts}",
                    value)
    out: list[tuple[Case, str, tuple[str, ...]]] = []
    for i, item in enumerate(value):
        where = f"{src}: cases[{i}]"
        if not isinstance(item, dict) or set(item) - set(CASE_KEYS) or set(CASE_KEYS) - set(item):
            raise _fail(where, f"must be a mapping with exactly {', '.join(CASE_KEYS)}", item)
        name, x, w = item["name"], item["x"], item["w"]
        if not isinstance(name, str) or not name or any(c.name == name for c, _, _ in out):
            raise _fail(where, "name must be a unique non-empty string", name)
        for key, dims in (("x", x), ("w", w)):
            if (not isinstance(dims, list) or len(dims) != 2
                    or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims)):
                raise _fail(f"{where} ({name}): {key}", "must be 2 positive integers", dims)
        if x[1] != w[0]:
            raise _fail(f"{where} ({name})", "x's K (x[1]) must equal w's K (w[0])", (x, w))
        mesh = meshes.get(item["mesh"])
        if mesh is None:
            raise _fail(f"{where} ({name}): mesh", f"must be one of {', '.join(meshes)}",
                        item["mesh"])
        layouts = _names(item, "layouts", tuple(LAYOUTS), f"{where} ({name})")
        case = Case(name, tuple(x), tuple(w))
        for lay in layouts:
            why = fits(LAYOUTS[lay], mesh, case)
            if why:
                raise ConfigError(f"{where} ({name}): layout {lay!r} on mesh {mesh.name!r}: {why}")
        out.append((case, mesh.name, layouts))
    return tuple(out)


def fits(layout: Layout, mesh: Mesh, case: Case) -> str | None:
    """Why `case` cannot be laid out on `mesh` this way (None when it can)."""
    if layout.ndim != len(mesh.shape):
        return f"needs a {layout.ndim}-D mesh, the mesh is {len(mesh.shape)}-D"
    g = case.geometry
    for what, spec, dims in (("x", layout.x, case.x), ("w", layout.w, case.w),
                             ("y", layout.y, (g.m, g.n))):
        for d, axis in zip(dims, spec, strict=True):
            if axis is not None and d % mesh.shape[axis]:
                return (f"{what} dim {d} is not divisible by mesh axis {mesh.axes[axis]!r} "
                        f"of size {mesh.shape[axis]}")
    return None


def plan(cfg: MeshConfig) -> list[MeshCell]:
    meshes = {m.name: m for m in cfg.meshes}
    return [
        MeshCell(f, api, meshes[mesh], lay, t, case)
        for f in cfg.frameworks
        for api in APIS[f]
        for case, mesh, layouts in cfg.cases
        for lay in layouts
        for t in cfg.dtypes
    ]
