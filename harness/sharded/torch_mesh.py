"""torch on a device mesh: DTensor (`distribute_tensor` + `torch.matmul`), `.backward()`.

Runs SPMD in every rank of a gloo (CPU) or NCCL (GPU) process group that
`harness.mesh_worker` starts; every rank calls `run` with the same arguments, rank 0
returns the `Result`. Collectives are counted with DTensor's `CommDebugMode`.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

from harness.mesh import LAYOUTS, Layout, Spec, spec_of
from harness.sharded import Result


def init(rank: int, world: int, store_file: str, timeout_s: float) -> Any:
    """Join the process group (gloo on CPU); returns the torch module."""
    import datetime

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # P ranks share the cores
    torch.set_float32_matmul_precision("highest")
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=timeout_s))
    return torch


class TorchMesh:
    def __init__(self, torch: Any) -> None:
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import Replicate, Shard, distribute_tensor
        from torch.distributed.tensor.debug import CommDebugMode

        self.torch, self.dist = torch, dist
        self.init_device_mesh, self.distribute_tensor = init_device_mesh, distribute_tensor
        self.Replicate, self.Shard, self.CommDebugMode = Replicate, Shard, CommDebugMode
        self._meshes: dict[tuple[tuple[int, ...], tuple[str, ...]], Any] = {}

    def version(self) -> str:
        return str(self.torch.__version__)

    def _placements(self, spec: Spec, ndim: int) -> list[Any]:
        """DTensor placements (one per mesh dim) of a per-tensor-dim spec."""
        return [self.Shard(spec.index(i)) if i in spec else self.Replicate()
                for i in range(ndim)]

    def _to_torch(self, a: np.ndarray) -> Any:
        torch = self.torch
        if a.dtype.name == "bfloat16":  # torch.from_numpy knows no ml_dtypes; exact round trip
            return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
        return torch.from_numpy(np.array(a, copy=True))

    def _to_numpy(self, t: Any) -> np.ndarray:
        import ml_dtypes

        t = t.detach().cpu()
        if t.dtype == self.torch.bfloat16:
            return np.asarray(t.float().numpy().astype(ml_dtypes.bfloat16))
        return np.asarray(t.numpy())

    def run(self, api: str, layout_name: str, shape: tuple[int, ...], axes: tuple[str, ...],
            x: np.ndarray, w: np.ndarray, g: np.ndarray, bug: str = "") -> Result | None:
        if api not in ("dtensor", "manual"):
            raise ValueError(f"unknown torch mesh api {api!r}; allowed: dtensor, manual")
        rank = self.dist.get_rank()
        if bug == "hang" and rank == 1:
            time.sleep(10**6)
        if bug == "crash" and rank == 1:
            os._exit(3)
        layout = LAYOUTS[layout_name]
        key = (shape, axes)
        if key not in self._meshes:
            self._meshes[key] = self.init_device_mesh("cpu", shape, mesh_dim_names=axes)
        mesh = self._meshes[key]
        if api == "manual":
            return self._manual(LAYOUTS[layout_name], mesh, axes, x, w, g, bug)
        place = {q: self._placements(spec_of(layout, q), len(shape)) for q in ("Y", "dX", "dW")}
        xd = self.distribute_tensor(self._to_torch(x), mesh, place["dX"]).requires_grad_(True)
        wd = self.distribute_tensor(self._to_torch(w), mesh, place["dW"]).requires_grad_(True)
        gd = self.distribute_tensor(self._to_torch(g), mesh, place["Y"])
        comm = self.CommDebugMode()
        with comm:
            # DTensor leaves a K-sharded product Partial; the layout's Y placement (an
            # all-reduce for the row layout) is part of the computation under test.
            y = self.torch.matmul(xd, wd).redistribute(mesh, place["Y"])
            y.backward(gd)
            results = {"Y": y, "dX": xd.grad, "dW": wd.grad}
            carried = {q: _fmt(r.placements) for q, r in results.items() if r is not None}
            for q in ("dX", "dW"):
                # DTensor leaves the gradient of a replicated operand Partial(sum): the
                # all-reduce is deferred to the next redistribute (as DDP/FSDP do it).
                # That is the promise kept late; any other placement is a problem.
                if results[q] is not None and _deferred(results[q].placements, place[q]):
                    results[q] = results[q].redistribute(mesh, place[q])
        counts = comm.get_comm_counts()
        problems: list[str] = []
        for q, r in results.items():
            problems += self._placement(q, r, place[q], mesh)
        full = {q: self._to_numpy(r.full_tensor()) for q, r in results.items()}  # collective
        if rank != 0:
            return None
        return Result(
            outputs=full,
            placement=problems,
            collectives=" ".join(f"{getattr(k, '__name__', str(k))}={v}"
                                 for k, v in counts.items() if v) or "none",
            shardings=" ".join(f"{q}={p}" for q, p in carried.items()),
        )

    def _manual(self, layout: Layout, mesh: Any, axes: tuple[str, ...], x: np.ndarray,
                w: np.ndarray, g: np.ndarray, bug: str) -> Result | None:
        torch, dist = self.torch, self.dist
        all_reduce, copy_to_parallel = _reduce_fn(torch, dist)
        coord = list(mesh.get_coordinate())
        shape = mesh.mesh.shape
        if bug == "rolled":  # this rank takes its neighbour's shard along the first axis
            coord[0] = (coord[0] + 1) % shape[0]

        def local(a: np.ndarray, spec: Spec) -> np.ndarray:
            index = tuple(slice(None) if s is None else
                          slice(coord[s] * (d // shape[s]), (coord[s] + 1) * (d // shape[s]))
                          for d, s in zip(a.shape, spec, strict=True))
            return a[index]

        xl = self._to_torch(local(x, layout.x)).requires_grad_(True)
        wl = self._to_torch(local(w, layout.w)).requires_grad_(True)
        gl = self._to_torch(local(g, layout.y))
        comm = self.CommDebugMode()
        with comm:
            xin, win = xl, wl
            # an operand replicated along an axis its gradient's sum is split over
            for q, t in (("dX", "x"), ("dW", "w")):
                for a in layout.split.get(q, ()):
                    group = mesh.get_group(axes[a])
                    if t == "x":
                        xin = copy_to_parallel.apply(xin, group, bug == "no_allreduce")
                    else:
                        win = copy_to_parallel.apply(win, group, bug == "no_allreduce")
            y = torch.matmul(xin, win)
            for a in layout.split.get("Y", ()):
                y = all_reduce.apply(y, mesh.get_group(axes[a]))
            y.backward(gl)
        size = math.prod(shape)
        dx, dw = xl.grad, wl.grad
        if bug == "scaled":
            dx, dw = dx * size, dw * size
        pieces = {q: (tuple(mesh.get_coordinate()), self._to_numpy(t.detach()))
                  for q, t in (("Y", y), ("dX", dx), ("dW", dw))}
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, pieces)
        if dist.get_rank() != 0:
            return None
        full = {q: _assemble([p[q] for p in gathered], spec_of(layout, q), shape, ref.shape)
                for q, ref in (("Y", g), ("dX", x), ("dW", w))}
        return Result(outputs=full,
                      collectives=" ".join(f"{getattr(k, '__name__', str(k))}={v}"
                                           for k, v in comm.get_comm_counts().items() if v)
                      or "none")

    def _placement(self, q: str, r: Any, want: list[Any], mesh: Any) -> list[str]:
        """Placements as promised, and copies of each shard equal bitwise across ranks."""
        problems = []
        if r is None:
            return [f"{q}: no gradient was computed"]
        if list(r.placements) != want:
            problems.append(f"{q}: placements {_fmt(r.placements)}, the layout promises "
                            f"{_fmt(want)}")
        coord = mesh.get_coordinate()
        shard_key = tuple(c for c, p in zip(coord, r.placements, strict=True) if p.is_shard())
        local = self._to_numpy(r.to_local()).astype(np.float64)
        gathered: list[Any] = [None] * self.dist.get_world_size()
        self.dist.all_gather_object(gathered, (shard_key, local))
        first: dict[tuple[int, ...], np.ndarray] = {}
        for k, a in gathered:
            if k in first and not np.array_equal(first[k], a, equal_nan=True):
                same = a.shape == first[k].shape
                diff = float(np.max(np.abs(first[k] - a))) if same else math.nan
                problems.append(f"{q}: replicas of shard {k} disagree (max difference {diff:.3g})")
                break
            first.setdefault(k, a)
        return problems


def _reduce_fn(torch: Any, dist: Any) -> Any:
    class AllReduce(torch.autograd.Function):  # type: ignore[misc]
        """g: all-reduce forward, identity backward (a K-split product)."""

        @staticmethod
        def forward(ctx: Any, t: Any, group: Any) -> Any:
            t = t.clone()
            dist.all_reduce(t, group=group)
            return t

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            return grad, None

    class CopyToParallel(torch.autograd.Function):  # type: ignore[misc]
        """f: identity forward, all-reduce backward (an operand replicated across devices
        whose gradient sums over them); `skip` plants the missing all-reduce."""

        @staticmethod
        def forward(ctx: Any, t: Any, group: Any, skip: bool) -> Any:
            ctx.group, ctx.skip = group, skip
            return t.view_as(t)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            grad = grad.clone()
            if not ctx.skip:
                dist.all_reduce(grad, group=ctx.group)
            return grad, None, None

    return AllReduce, CopyToParallel


def _assemble(pieces: list[tuple[tuple[int, ...], np.ndarray]], spec: Spec,
              mesh_shape: tuple[int, ...], full: tuple[int, ...]) -> np.ndarray:
    """The full array from every rank's (mesh coordinate, local shard); a replicated
    piece is taken from the rank with coordinate 0 along the axes it is replicated on."""
    out = np.zeros(full, dtype=pieces[0][1].dtype)
    used = [a for a in spec if a is not None]
    for coord, piece in pieces:
        if any(c != 0 for i, c in enumerate(coord) if i not in used):
            continue
        index = tuple(slice(None) if s is None else
                      slice(coord[s] * (d // mesh_shape[s]), (coord[s] + 1) * (d // mesh_shape[s]))
                      for d, s in zip(full, spec, strict=True))
        out[index] = piece
    return out


def _deferred(got: Any, want: list[Any]) -> bool:
    """Placements that differ from `want` only by Partial where Replicate is promised."""
    pairs = list(zip(got, want, strict=True))
    return any(p != w for p, w in pairs) and all(
        p == w or (p.is_partial() and w.is_replicate()) for p, w in pairs)


def _fmt(placements: Any) -> str:
    return "(" + ",".join(str(p) for p in placements) + ")"
