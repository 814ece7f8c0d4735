"""Cases (`X` and `W` shapes), their matmul geometry, and deterministic inputs.

A case is only shapes; the values are generated here, in the dtype under test, from the
config's seed, the case name and the dtype name, so the orchestrator (which builds the
reference) and a worker (which runs a framework) draw the same rounded values without
shipping arrays between processes.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from harness.dtypes import DType

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """Shapes that numpy's matmul rejects (0-D operand, mismatched core or batch dims)."""


@dataclass(frozen=True)
class Geometry:
    """What numpy's matmul makes of two shapes, after promoting 1-D operands."""

    batch: Shape  # broadcast batch dims of Y
    m: int
    k: int
    n: int
    y_shape: Shape  # with the dims added for 1-D operands removed again
    x_multiplicity: int  # how many Y batches each element of X feeds (broadcast count)
    w_multiplicity: int


def geometry(x: Shape, w: Shape) -> Geometry:
    """Geometry of `X @ W`; ShapeError says why numpy would refuse the shapes."""
    if len(x) == 0 or len(w) == 0:
        raise ShapeError(f"0-D operand (x={list(x)}, w={list(w)}): matmul needs at least 1-D")
    x2 = (1, *x) if len(x) == 1 else x
    w2 = (*w, 1) if len(w) == 1 else w
    if x2[-1] != w2[-2]:
        raise ShapeError(
            f"core dims do not match: x={list(x)} has K={x2[-1]}, w={list(w)} has K={w2[-2]}"
        )
    xb, wb = x2[:-2], w2[:-2]
    try:
        batch = tuple(np.broadcast_shapes(xb, wb))
    except ValueError:
        raise ShapeError(
            f"batch dims do not broadcast: x={list(x)} has {list(xb)}, w={list(w)} has {list(wb)}"
        ) from None
    m, k, n = x2[-2], x2[-1], w2[-1]
    y = (*batch, *((m,) if len(x) > 1 else ()), *((n,) if len(w) > 1 else ()))
    nb = math.prod(batch)
    return Geometry(
        batch=batch,
        m=m,
        k=k,
        n=n,
        y_shape=y,
        x_multiplicity=nb // math.prod(xb) if math.prod(xb) else 0,
        w_multiplicity=nb // math.prod(wb) if math.prod(wb) else 0,
    )


@dataclass(frozen=True)
class Case:
    name: str
    x: Shape
    w: Shape

    @property
    def geometry(self) -> Geometry:
        return geometry(self.x, self.w)

    @property
    def label(self) -> str:
        """Shapes as users write them: `1x3 @ 3x4`."""
        return f"{_fmt(self.x)} @ {_fmt(self.w)}"


def _fmt(shape: Shape) -> str:
    return "x".join(map(str, shape)) if shape else "()"


@dataclass(frozen=True)
class Inputs:
    """`X`, `W` and the upstream gradient `G`, all in the dtype under test."""

    x: np.ndarray
    w: np.ndarray
    g: np.ndarray


@dataclass(frozen=True)
class Tangents:
    """Directions for the forward-mode and second-order checks, in the dtype under test.

    `tx`, `tw`: the JVP's input tangents (`dY = tX·W + X·tW`); `v`: the vector that
    `⟨dX, V⟩` is differentiated along for the second-order check (X's shape).
    """

    tx: np.ndarray
    tw: np.ndarray
    v: np.ndarray


def make_inputs(case: Case, dtype: DType, seed: int) -> Inputs:
    """Zero-mean normal values rounded to `dtype`, deterministic per (seed, case, dtype)."""
    rng = _rng(case, dtype, seed, "inputs")
    shapes = (case.x, case.w, case.geometry.y_shape)
    x, w, g = (_draw(rng, s, dtype) for s in shapes)
    return Inputs(x, w, g)


def make_tangents(case: Case, dtype: DType, seed: int) -> Tangents:
    """Like `make_inputs`, from an independent stream (the inputs do not change)."""
    rng = _rng(case, dtype, seed, "tangents")
    tx, tw, v = (_draw(rng, s, dtype) for s in (case.x, case.w, case.x))
    return Tangents(tx, tw, v)


def _rng(case: Case, dtype: DType, seed: int, stream: str) -> np.random.Generator:
    key = zlib.crc32(f"{case.name}\0{dtype.name}".encode())
    salt = {"inputs": 0, "tangents": 1}[stream]
    return np.random.default_rng([seed, key] if salt == 0 else [seed, key, salt])


DRAW_CHUNK = 2**20  # values drawn at a time: the float64 draw never doubles a large input


def _draw(rng: np.random.Generator, shape: Shape, dtype: DType) -> np.ndarray:
    """Normal values in `dtype`, drawn in chunks: the generator's stream is sequential, so
    the values are those of one draw of the whole shape."""
    out = np.empty(shape, dtype=dtype.numpy)
    flat = out.reshape(-1)
    # complex: unit variance overall, real and imaginary parts each N(0, 1/2), all the
    # real parts first
    parts = ((flat.real, math.sqrt(0.5)), (flat.imag, math.sqrt(0.5))) if (
        dtype.is_complex) else ((flat, 1.0),)
    for part, scale in parts:
        for i in range(0, part.size, DRAW_CHUNK):
            values = rng.standard_normal(min(DRAW_CHUNK, part.size - i))
            part[i:i + values.size] = values * scale if scale != 1.0 else values
    return out
