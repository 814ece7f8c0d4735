"""The asv suite's parameter grid and the selection of its cells a bench run measures.

The grid (`GRIDS`) is what each class in `benchmarks/` is parametrized over; a *selection*
(`DEFAULT`, `QUICK`, or a bench YAML given to `--config`) is the part of it a run measures.
`harness.bench` turns a selection into `asv run --bench` regexes; the benchmarks' `setup`
reads it back through `MATMUL_BENCH_SELECTION` and records cells outside it as n/a.

Nothing here imports asv or a framework: `benchmarks/` imports this module (through
`harness.bench`) during asv's discovery, and `import harness` must stay light.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import dtypes, shapes
from harness.adapters import BUILTIN, names
from harness.config import ConfigError, check_keys, name_list, read_yaml

# The built-in frameworks, which the default selections time; `frameworks()` is every
# registered one, plugins included, which the grid holds and a bench config may name.
FRAMEWORKS: tuple[str, ...] = tuple(BUILTIN)
DEVICES: tuple[str, ...] = dtypes.DEVICES
# Every dtype verify checks; the default selections time the real ones (complex is opt-in).
DTYPES: tuple[str, ...] = tuple(dtypes.DTYPES)
REAL_DTYPES: tuple[str, ...] = tuple(n for n, d in dtypes.DTYPES.items() if not d.is_complex)
KINDS: tuple[str, ...] = ("time", "accuracy", "memory", "drift")
# Kinds whose cells are fixed by the grid (chosen for their numerics): a selection picks
# them by framework, device and kind, never by its dtypes and shapes.
FIXED_KINDS: tuple[str, ...] = ("drift",)
SHAPE_GROUPS: dict[str, tuple[str, ...]] = {
    "square": shapes.SQUARE,
    "deepbench": shapes.DEEPBENCH_SUITE,
}
SELECTION_ENV = "MATMUL_BENCH_SELECTION"  # a selection file, or "all"; unset: DEFAULT
THREADS_ENV = "MATMUL_BENCH_THREADS"  # CPU threads of every framework; unset: all cores
SEED = 0  # inputs are harness.cases.make_inputs(case, dtype, SEED)


def frameworks() -> tuple[str, ...]:
    """Every registered framework, built-ins first, then entry-point plugins.

    Read from packaging metadata on each call (asv's discovery runs it once per process):
    no adapter module and no framework is imported.
    """
    return names()


@dataclass(frozen=True)
class Grid:
    """One benchmark class: its asv name and its parameter values."""

    name: str  # "module.Class", as asv names it (benchmarks/ is the root)
    kind: str  # "time", "accuracy" or "memory"
    methods: tuple[str, ...]
    dtypes: tuple[str, ...]
    shapes: tuple[str, ...]
    with_pass: bool = True
    gpu_only: tuple[str, ...] = ()  # methods that measure something only a GPU has

    @property
    def param_names(self) -> list[str]:
        names = ["framework", "device", "dtype", "shape"]
        return [*names, "pass"] if self.with_pass else names

    @property
    def params(self) -> list[list[str]]:
        values = [list(frameworks()), list(DEVICES), list(self.dtypes), list(self.shapes)]
        return [*values, list(shapes.PASSES)] if self.with_pass else values


GRIDS: tuple[Grid, ...] = (
    Grid("matmul.Square", "time", ("time_matmul",), DTYPES, shapes.SQUARE),
    # DeepBench trains in float32 and float16 (mixed precision); bfloat16 postdates it.
    Grid("matmul.DeepBench", "time", ("time_matmul",), ("float16", "float32"),
         shapes.DEEPBENCH_SUITE),
    Grid("accuracy.Gradients", "accuracy", ("track_dx_error_ratio", "track_dw_error_ratio"),
         DTYPES, ("256x256x256", "1024x1024x1024"), with_pass=False),
    Grid("memory.Peak", "memory", ("peakmem_forward_backward", "track_device_peak_bytes"),
         DTYPES, ("1024x1024x1024", "2048x2048x2048"), with_pass=False,
         gpu_only=("track_device_peak_bytes",)),
    # Accuracy that can move between kernels and releases: long reductions (Y over
    # K = 65536, dW over M = 65536, dW of a W broadcast over a batch of 256), in the dtypes
    # whose accumulation differs most (float16/bfloat16 accumulate in float32 or not,
    # complex splits into real products). Case ids: benchmarks/common.py `case`.
    Grid("accuracy.Drift", "drift",
         tuple(f"track_{q}_{m}" for q in ("y", "dx", "dw")
               for m in ("error_ratio", "effective_bits")),
         ("float16", "bfloat16", "float32", "complex64"),
         ("16x65536x16", "65536x16x16", "b256:64x64x64"), with_pass=False),
)


def grid(name: str) -> Grid:
    """The grid of benchmark class `module.Class`."""
    for g in GRIDS:
        if g.name == name:
            return g
    raise KeyError(f"no benchmark grid {name!r}; known: {', '.join(g.name for g in GRIDS)}")


class BenchError(ConfigError):
    """A bench config or environment that cannot be used: exit 2 with this one line."""


@dataclass(frozen=True)
class DeviceSelection:
    dtypes: tuple[str, ...]
    shapes: tuple[str, ...]


@dataclass(frozen=True)
class Selection:
    """Which cells of the grid a run measures."""

    frameworks: tuple[str, ...]
    passes: tuple[str, ...]
    kinds: tuple[str, ...]
    cpu: DeviceSelection | None
    gpu: DeviceSelection | None
    threads: int | None = None  # None: every core this process may run on
    source: str = "built-in"

    def device(self, name: str) -> DeviceSelection | None:
        return self.cpu if name == "cpu" else self.gpu if name == "gpu" else None

    def includes(self, kind: str, framework: str, device: str, dtype: str, shape: str,
                 pass_: str | None = None) -> bool:
        d = self.device(device)
        if kind in FIXED_KINDS:
            return d is not None and kind in self.kinds and framework in self.frameworks
        return (
            d is not None and kind in self.kinds and framework in self.frameworks
            and dtype in d.dtypes and shape in d.shapes
            and (pass_ is None or pass_ in self.passes)
        )

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if k != "source" and v is not None}
        return json.dumps(data, indent=2)


# CPU: float32 and float64 up to 1024 (2048 float64 forward+backward takes seconds per call
# on a small CPU, and float16/bfloat16 have no fast CPU kernels: numpy's float16 matmul is
# a plain loop). GPU: every dtype, the larger squares and the DeepBench GEMMs.
DEFAULT = Selection(
    frameworks=FRAMEWORKS,
    passes=shapes.PASSES,
    kinds=KINDS,
    cpu=DeviceSelection(("float32", "float64"),
                        ("64x64x64", "256x256x256", "1024x1024x1024")),
    gpu=DeviceSelection(REAL_DTYPES,
                        ("1024x1024x1024", "2048x2048x2048", *shapes.DEEPBENCH_SUITE)),
    source="built-in default",
)
# `make run`: a timing of every framework and pass plus the gradient error ratios, in about
# a minute on a 2-core CPU (each cell is a process that imports its framework).
QUICK = Selection(
    frameworks=FRAMEWORKS,
    passes=shapes.PASSES,
    kinds=("time", "accuracy"),
    cpu=DeviceSelection(("float32",), ("256x256x256",)),
    gpu=DeviceSelection(("float32",), ("1024x1024x1024",)),
    source="built-in quick",
)

_TOP_KEYS = ("frameworks", "passes", "kinds", "threads", "cpu", "gpu")
_DEVICE_KEYS = ("dtypes", "shapes")


def _names(value: Any, key: str, allowed: Sequence[str], src: str,
           groups: dict[str, tuple[str, ...]] | None = None) -> tuple[str, ...]:
    return name_list(value, key, allowed, src, groups, error=BenchError)


def _keys(data: dict[Any, Any], allowed: Sequence[str], where: str) -> None:
    check_keys(data, allowed, where, error=BenchError)


def _device(data: Any, name: str, src: str) -> DeviceSelection:
    default = DEFAULT.device(name)
    assert default is not None
    if data is None:  # `gpu:` with nothing under it: the default for that device
        return default
    if not isinstance(data, dict):
        raise BenchError(f"{src}: {name} must be a mapping with keys dtypes, shapes; "
                         f"received {data!r}")
    _keys(data, _DEVICE_KEYS, f"{src}: {name}")
    all_shapes = tuple(dict.fromkeys(s for g in GRIDS for s in g.shapes))
    return DeviceSelection(
        dtypes=_names(data["dtypes"], f"{name}.dtypes", DTYPES, src)
        if "dtypes" in data else default.dtypes,
        shapes=_names(data["shapes"], f"{name}.shapes", all_shapes, src, SHAPE_GROUPS)
        if "shapes" in data else default.shapes,
    )


def parse_selection(data: Any, src: str) -> Selection:
    """Validate a bench config mapping (see README); every problem is a one-line BenchError."""
    if not isinstance(data, dict):
        raise BenchError(f"{src}: expected a mapping with keys {', '.join(_TOP_KEYS)}; "
                         f"received {type(data).__name__}")
    _keys(data, _TOP_KEYS, src)
    if "cpu" not in data and "gpu" not in data:
        raise BenchError(f"{src}: select at least one device: add a 'cpu' or 'gpu' section "
                         "(each with optional dtypes and shapes)")
    threads = data.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise BenchError(f"{src}: threads must be an integer >= 1 (CPU threads for every "
                         f"framework); received {threads!r}")

    def top(key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
        return _names(data[key], key, allowed, src) if key in data else allowed

    return Selection(
        frameworks=top("frameworks", frameworks()),
        passes=top("passes", shapes.PASSES),
        kinds=top("kinds", KINDS),
        cpu=_device(data["cpu"], "cpu", src) if "cpu" in data else None,
        gpu=_device(data["gpu"], "gpu", src) if "gpu" in data else None,
        threads=threads,
        source=src,
    )


def load_selection(path: str | Path) -> Selection:
    """Read and validate a bench config (YAML; JSON is YAML too); BenchError if unusable."""
    src = str(path)
    try:
        data = read_yaml(Path(path), src)
    except ConfigError as exc:  # missing or malformed: the same one line, as a BenchError
        raise BenchError(str(exc)) from None
    return parse_selection(data, src)


def active_selection() -> Selection | None:
    """The selection benchmarks run under (None: every cell), from MATMUL_BENCH_SELECTION."""
    value = os.environ.get(SELECTION_ENV, "")
    if value == "all":
        return None
    return load_selection(value) if value else DEFAULT


def bench_threads(selection: Selection | None) -> int:
    """CPU threads every framework gets: MATMUL_BENCH_THREADS, the selection's, or all cores."""
    value = os.environ.get(THREADS_ENV)
    if value:
        return int(value)
    if selection is not None and selection.threads:
        return selection.threads
    return len(os.sched_getaffinity(0))


def gpu_present() -> bool:
    """Whether a GPU may be visible, found without importing a framework.

    asv starts a process per cell; this keeps a GPU cell on a GPU-less machine from importing
    its framework (seconds for TensorFlow) only to learn there is no GPU. When it says yes,
    the adapter's `device_reason` decides.
    """
    from harness.system import gpus

    return bool(gpus()) or os.path.exists("/dev/kfd")  # /dev/kfd: AMD ROCm
