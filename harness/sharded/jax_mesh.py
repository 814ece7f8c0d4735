"""JAX on a device mesh: GSPMD (`jax.jit` with NamedShardings) and `shard_map`, `jax.vjp`.

The number of host CPU devices must be set before JAX starts its backends, which is why
this runs in a worker process of its own (`harness.mesh_worker` calls `configure` first).
On a machine with GPUs the same mesh is laid over the GPUs.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from typing import Any

import numpy as np

from harness.mesh import LAYOUTS, Layout, Spec, spec_of
from harness.sharded import Result

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")
_OP = re.compile(r"\s(" + "|".join(COLLECTIVES) + r")(?:-start)?\(")


def configure(devices: int) -> Any:
    """Import JAX with at least `devices` host CPU devices; returns the module."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}"
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 would silently become float32
    jax.config.update("jax_default_matmul_precision", "highest")  # no TF32 on GPUs
    return jax


def collectives(hlo: str) -> str:
    """Counts of the collectives in compiled HLO text: `all-reduce=2 all-gather=1`."""
    c = Counter(_OP.findall(hlo))
    return " ".join(f"{k}={c[k]}" for k in COLLECTIVES if c[k]) or "none"


class JaxMesh:
    def __init__(self, jax: Any) -> None:
        import jax.numpy as jnp
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        self.jax, self.jnp = jax, jnp
        self.Mesh, self.NamedSharding, self.P = Mesh, NamedSharding, PartitionSpec
        self._compiled: dict[tuple[Any, ...], Any] = {}

    def version(self) -> str:
        return str(self.jax.__version__)

    def _devices(self, n: int) -> list[Any]:
        gpus = [d for d in self.jax.devices() if d.platform == "gpu"]
        pool = gpus if len(gpus) >= n else self.jax.devices("cpu")
        if len(pool) < n:
            raise RuntimeError(f"the mesh needs {n} devices; jax sees {len(pool)}")
        return list(pool[:n])

    def _pspec(self, spec: Spec, axes: tuple[str, ...]) -> Any:
        return self.P(*(None if a is None else axes[a] for a in spec))

    def run(self, api: str, layout_name: str, shape: tuple[int, ...], axes: tuple[str, ...],
            x: np.ndarray, w: np.ndarray, g: np.ndarray, bug: str = "") -> Result:
        layout = LAYOUTS[layout_name]
        if bug == "hang":
            time.sleep(10**6)
        if bug == "crash":
            os._exit(3)
        devs = np.array(self._devices(math.prod(shape)), dtype=object).reshape(shape)
        mesh = self.Mesh(devs, axes)
        sh = {q: self.NamedSharding(mesh, self._pspec(spec_of(layout, q), axes))
              for q in ("Y", "dX", "dW")}
        key = (api, layout_name, shape, axes, x.shape, w.shape, str(x.dtype), bug)
        if key not in self._compiled:
            fn = self._function(api, layout, mesh, axes, sh, bug)
            args = (self.jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh["dX"]),
                    self.jax.ShapeDtypeStruct(w.shape, w.dtype, sharding=sh["dW"]),
                    self.jax.ShapeDtypeStruct(g.shape, g.dtype, sharding=sh["Y"]))
            self._compiled[key] = fn.lower(*args).compile()
        compiled = self._compiled[key]
        placed = [self.jax.device_put(a, sh[q]) for a, q in ((x, "dX"), (w, "dW"), (g, "Y"))]
        y, dx, dw = compiled(*placed)
        self.jax.block_until_ready((y, dx, dw))
        results = {"Y": y, "dX": dx, "dW": dw}
        problems: list[str] = []
        for q, r in results.items():
            problems += self._placement(q, r, sh[q])
        return Result(
            outputs={q: np.asarray(r) for q, r in results.items()},  # gathers the shards
            placement=problems,
            collectives=collectives(compiled.as_text()),
            shardings=" ".join(f"{q}={r.sharding.spec}" for q, r in results.items()),
        )

    def _function(self, api: str, layout: Layout, mesh: Any, axes: tuple[str, ...],
                  sh: dict[str, Any], bug: str) -> Any:
        jax, jnp = self.jax, self.jnp
        if api == "jit":
            def vjp_jit(x: Any, w: Any, g: Any) -> tuple[Any, Any, Any]:
                y, pull = jax.vjp(jnp.matmul, x, w)
                dx, dw = pull(g)
                return y, dx, dw

            return jax.jit(vjp_jit, in_shardings=(sh["dX"], sh["dW"], sh["Y"]),
                           out_shardings=(sh["Y"], sh["dX"], sh["dW"]))
        specs = {q: s.spec for q, s in sh.items()}
        if api == "shard_map":
            y_axes = tuple(axes[a] for a in layout.split.get("Y", ()))

            def local(x: Any, w: Any) -> Any:
                y = jnp.matmul(x, w)
                return jax.lax.psum(y, y_axes) if y_axes else y

            forward = jax.shard_map(local, mesh=mesh, in_specs=(specs["dX"], specs["dW"]),
                                    out_specs=specs["Y"])

            def vjp_sm(x: Any, w: Any, g: Any) -> tuple[Any, Any, Any]:
                y, pull = jax.vjp(forward, x, w)  # JAX transposes the psum itself
                dx, dw = pull(g)
                return y, dx, dw

            return jax.jit(vjp_sm)
        if api == "manual":
            return jax.jit(jax.shard_map(self._manual(layout, mesh, axes, bug), mesh=mesh,
                                         in_specs=(specs["dX"], specs["dW"], specs["Y"]),
                                         out_specs=(specs["Y"], specs["dX"], specs["dW"]),
                                         check_vma=False))
        raise ValueError(f"unknown jax mesh api {api!r}; allowed: jit, shard_map, manual")

    def _manual(self, layout: Layout, mesh: Any, axes: tuple[str, ...], bug: str) -> Any:
        """Per-device VJP with the collectives written out (as hand-written tensor
        parallelism does): the selftest's control, and where its bugs are planted."""
        jax, jnp = self.jax, self.jnp
        names = {q: tuple(axes[a] for a in layout.split.get(q, ())) for q in ("Y", "dX", "dW")}
        size = math.prod(mesh.devices.shape)
        sharded_axis = {q: next((a for a in spec_of(layout, q) if a is not None), None)
                        for q in ("Y", "dX", "dW")}

        def body(x: Any, w: Any, g: Any) -> tuple[Any, Any, Any]:
            y, pull = jax.vjp(jnp.matmul, x, w)
            dx, dw = pull(g)
            out = {"Y": y, "dX": dx, "dW": dw}
            for q, ax in names.items():
                if ax and not (bug == "no_allreduce" and q != "Y"):
                    out[q] = jax.lax.psum(out[q], ax)
            if bug == "scaled":
                out["dX"], out["dW"] = out["dX"] * size, out["dW"] * size
            if bug == "rolled":
                for q, a in sharded_axis.items():
                    if a is not None:
                        n = mesh.devices.shape[a]
                        out[q] = jax.lax.ppermute(out[q], axes[a],
                                                  [(i, (i + 1) % n) for i in range(n)])
            return out["Y"], out["dX"], out["dW"]

        return body

    def _placement(self, q: str, r: Any, want: Any) -> list[str]:
        """The result carries the promised sharding, and copies of a shard agree bitwise."""
        problems = []
        if not r.sharding.is_equivalent_to(want, r.ndim):
            problems.append(f"{q}: sharding {r.sharding.spec}, the layout promises {want.spec}")
        copies: dict[str, np.ndarray] = {}
        for s in r.addressable_shards:
            where = repr(s.index)
            data = np.asarray(s.data)
            if where in copies and not np.array_equal(copies[where], data, equal_nan=True):
                diff = np.abs(copies[where].astype(np.float64) - data.astype(np.float64))
                problems.append(f"{q}: replicas of shard {where} disagree (max difference "
                                f"{float(np.max(diff)):.3g})")
                break
            copies.setdefault(where, data)
        return problems

