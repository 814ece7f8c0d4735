"""`matmul-harness bench`: the asv suite in `benchmarks/`, run in the current environment.

The suite's parameter grid is defined here (`GRIDS`), beside the *selection* of cells a run
measures (`DEFAULT`, `QUICK`, or a `--config` YAML file). asv starts one process per
parameter combination, so a selection is passed to `asv run` as `--bench` regexes (cells
outside it cost nothing) and, through `MATMUL_BENCH_SELECTION`, to the benchmarks' `setup`,
which records cells outside it as n/a when someone runs plain `asv run`.

Nothing here imports asv or a framework at module import: `benchmarks/` imports this module
during asv's discovery, and `import harness` must stay light.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import __version__, shapes
from harness.config import ConfigError

FRAMEWORKS: tuple[str, ...] = ("numpy", "torch", "jax", "tensorflow")
DEVICES: tuple[str, ...] = ("cpu", "gpu")
DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")
KINDS: tuple[str, ...] = ("time", "accuracy", "memory")
SHAPE_GROUPS: dict[str, tuple[str, ...]] = {
    "square": shapes.SQUARE,
    "deepbench": shapes.DEEPBENCH_SUITE,
}
SELECTION_ENV = "MATMUL_BENCH_SELECTION"  # a selection file, or "all"; unset: DEFAULT
THREADS_ENV = "MATMUL_BENCH_THREADS"  # CPU threads of every framework; unset: all cores
SEED = 0  # inputs are harness.cases.make_inputs(case, dtype, SEED)


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
        values = [list(FRAMEWORKS), list(DEVICES), list(self.dtypes), list(self.shapes)]
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
    gpu=DeviceSelection(DTYPES, ("1024x1024x1024", "2048x2048x2048", *shapes.DEEPBENCH_SUITE)),
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


def _hint(got: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(got, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _names(value: Any, key: str, allowed: Sequence[str], src: str,
           groups: dict[str, tuple[str, ...]] | None = None) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise BenchError(f"{src}: {key} must be a non-empty list drawn from "
                         f"{', '.join(allowed)}; received {value!r}")
    out: list[str] = []
    for item in value:
        if groups and item in groups:
            out.extend(groups[item])
        elif item in allowed:
            out.append(item)
        else:
            names = [*(groups or {}), *allowed]
            raise BenchError(f"{src}: {key}: unknown value {item!r}{_hint(str(item), names)}; "
                             f"allowed: {', '.join(names)}")
    return tuple(dict.fromkeys(out))


def _keys(data: dict[Any, Any], allowed: Sequence[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise BenchError(f"{where}: unknown key {key!r}{_hint(str(key), allowed)}; "
                             f"allowed: {', '.join(allowed)}")


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
        frameworks=top("frameworks", FRAMEWORKS),
        passes=top("passes", shapes.PASSES),
        kinds=top("kinds", KINDS),
        cpu=_device(data["cpu"], "cpu", src) if "cpu" in data else None,
        gpu=_device(data["gpu"], "gpu", src) if "gpu" in data else None,
        threads=threads,
        source=src,
    )


def load_selection(path: str | Path) -> Selection:
    """Read and validate a bench config (YAML; JSON is YAML too)."""
    src = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchError(f"{src}: config file not found; pass an existing --config") from None
    except OSError as exc:
        raise BenchError(f"{src}: cannot read config file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BenchError(f"{src}: YAML syntax error{where}: "
                         f"{getattr(exc, 'problem', None) or exc}") from None
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


def plan(selection: Selection, gpu: bool) -> tuple[list[str], list[str]]:
    """`asv run --bench` regexes selecting the cells that can run here, and why others can't."""
    from harness.adapters import load

    regexes: list[str] = []
    notes: list[str] = []
    if selection.gpu is not None and not gpu:
        notes.append("gpu: no GPU found (nvidia-smi lists none); GPU cells not run")
    for fw in selection.frameworks:
        cls = load(fw)
        if not cls.installed():
            notes.append(f"{fw}: not installed ({cls.install_hint}); its cells not run")
            continue
        for g in GRIDS:
            if g.kind not in selection.kinds:
                continue
            for dev in DEVICES:
                d = selection.device(dev)
                if d is None or (dev == "gpu" and not gpu):
                    continue
                dts = [t for t in g.dtypes
                       if t in d.dtypes and cls.unsupported_reason(dev, t) is None]
                shp = [s for s in g.shapes if s in d.shapes]
                if not (dts and shp):
                    continue
                methods = [m for m in g.methods if dev == "gpu" or m not in g.gpu_only]
                values = [[fw], [dev], dts, shp]
                if g.with_pass:
                    values.append(list(selection.passes))
                args = ", ".join("'(?:" + "|".join(map(re.escape, v)) + ")'" for v in values)
                names = "|".join(map(re.escape, methods))
                regexes.append(f"^{re.escape(g.name)}\\.(?:{names})\\({args}\\)$")
    if not regexes:
        raise BenchError(f"{selection.source}: the selection has no cell that can run here "
                         f"({'; '.join(notes) or 'no grid cell matches it'})")
    return regexes, notes


def checkout() -> Path:
    """The source checkout holding asv.conf.json and benchmarks/ (bench needs one)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "asv.conf.json").is_file() or not (root / "benchmarks").is_dir():
        raise BenchError(f"{root}: no asv.conf.json and benchmarks/ here; matmul-harness "
                         "bench needs a source checkout installed with pip install -e .")
    return root


def git_head(root: Path) -> str:
    """The commit asv records results under; a clear error outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "HEAD"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BenchError(f"{root}: cannot run git ({exc}); asv records results under the "
                         "current commit, so bench needs git and a git checkout") from None
    if out.returncode != 0:
        why = (out.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise BenchError(f"{root}: not a git checkout with a commit ({why}); asv records "
                         "results under the current commit: run bench in a git clone")
    return out.stdout.strip()


def machine_name(threads: int) -> str:
    """asv's machine name: host, GPU model (asv has no GPU field) and thread count."""
    from harness.system import machine_slug

    return f"{machine_slug()}-{threads}t"


def run_bench(*, quick: bool, config: str | None, results_dir: Path | None = None,
              extra_args: Sequence[str] = ()) -> int:
    """Run the selection through `asv run` in this environment; asv's exit code.

    `config`: a bench YAML (None: QUICK when `quick`, else DEFAULT). `results_dir`: where
    asv writes results (None: asv.conf.json's, `results/`). `extra_args` go to `asv run`.
    Raises BenchError (exit 2 in the CLI) for a bad config, no git checkout or no asv.
    """
    import importlib.util

    selection = load_selection(config) if config else QUICK if quick else DEFAULT
    if importlib.util.find_spec("asv") is None:
        raise BenchError("asv is not installed in this environment: pip install 'asv>=0.6.4'")
    root = checkout()
    commit = git_head(root)
    gpu = gpu_present()
    regexes, notes = plan(selection, gpu)
    threads = bench_threads(selection)
    machine = machine_name(threads)
    with tempfile.TemporaryDirectory(prefix="matmul-bench-") as tmp:
        home = Path(tmp)
        conf = _write_conf(root, home, results_dir)
        (home / "selection.json").write_text(selection.to_json(), encoding="utf-8")
        env = {"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ, "HOME": str(home),
               THREADS_ENV: str(threads), SELECTION_ENV: str(home / "selection.json")}
        _asv(["machine", "--yes", "--machine", machine, "--config", str(conf)], env, root)
        _annotate_machine(home / ".asv-machine.json", machine, threads)
        print(f"bench: {selection.source} selection, machine {machine}, commit {commit[:8]}, "
              f"{threads} CPU thread(s) per framework{', quick' if quick else ''}")
        for note in notes:
            print(f"bench: {note}")
        args = ["run", "--config", str(conf), "-E", "existing:same", "--set-commit-hash",
                commit, "--machine", machine, *(["--quick"] if quick else []),
                *(f"--bench={r}" for r in regexes), *extra_args]
        results = Path(json.loads(conf.read_text(encoding="utf-8"))["results_dir"])
        log = results / f"bench-{machine}-{commit[:8]}.log"
        code = _asv(args, env, root, check=False, log=log)
    print(summary(results, machine, commit))
    print(f"bench: asv's full output: {log}")
    return code


def _asv(args: list[str], env: dict[str, str], cwd: Path, check: bool = True,
         log: Path | None = None) -> int:
    """Run asv; with `log`, keep its whole output there and echo it without the n/a rows
    (asv prints a row for every cell of the grid, most of them outside the selection)."""
    cmd = [sys.executable, "-m", "asv", *args]
    if log is None:
        out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
        code = out.returncode
        if code != 0:
            print(out.stdout + out.stderr, end="", file=sys.stderr)
    else:
        with log.open("w", encoding="utf-8") as f, subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1,
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                f.write(line)
                if not line.rstrip().endswith("n/a"):
                    print(line, end="", flush=True)
        code = proc.returncode
    if check and code != 0:
        raise BenchError(f"asv {args[0]} failed with exit status {code}")
    return code


def _write_conf(root: Path, home: Path, results_dir: Path | None) -> Path:
    """asv.conf.json with absolute paths (asv chdirs to the config's folder)."""
    from asv.util import load_json

    conf: dict[str, Any] = load_json(str(root / "asv.conf.json"), js_comments=True)
    results = (results_dir or root / conf.get("results_dir", "results")).resolve()
    html = results / "html" if results_dir else root / conf.get("html_dir", "results/html")
    conf.update(repo=str(root), benchmark_dir=str(root / conf.get("benchmark_dir", "benchmarks")),
                results_dir=str(results), html_dir=str(html),
                env_dir=str(root / conf.get("env_dir", ".asv/env")))
    results.mkdir(parents=True, exist_ok=True)
    path = home / "asv.conf.json"
    path.write_text(json.dumps(conf, indent=2), encoding="utf-8")
    return path


def _annotate_machine(path: Path, machine: str, threads: int) -> None:
    """Add what asv's machine record lacks; asv copies it to results/<machine>/machine.json."""
    from asv.machine import Machine

    from harness.system import cpu_model, gpus

    data = json.loads(path.read_text(encoding="utf-8"))
    # `asv machine --yes --machine NAME` records the name only; add asv's own defaults.
    data[machine] = {**Machine.get_defaults(), **data[machine]}
    data[machine].update(
        cpu=cpu_model(), gpu=", ".join(gpus()) or "none", threads=str(threads),
        float32_precision="ieee (pinned: no TF32 or reduced-precision reductions)",
        harness_version=__version__,
    )
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _fmt_time(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def time_results(results: Path, machine: str, commit: str) -> list[dict[str, Any]]:
    """The timing cells asv saved for `commit` on `machine`: one dict per measured cell."""
    files = sorted((results / machine).glob(f"{commit[:8]}-*.json"),
                   key=lambda p: p.stat().st_mtime)
    if not files:
        return []
    data = json.loads(files[-1].read_text(encoding="utf-8"))
    columns = data.get("result_columns", [])
    rows: list[dict[str, Any]] = []
    for name, entry in data.get("results", {}).items():
        if not name.endswith(".time_matmul"):
            continue
        record = dict(zip(columns, entry, strict=False))
        values = record.get("result") or []
        combos = _product(record.get("params") or [])
        for combo, value in zip(combos, values, strict=False):
            fw, dev, dt, shape, pass_ = (v.strip("'") for v in combo)
            rows.append({"framework": fw, "device": dev, "dtype": dt, "shape": shape,
                         "pass": pass_, "seconds": value})
    return rows


def _product(params: list[list[str]]) -> list[tuple[str, ...]]:
    import itertools

    return list(itertools.product(*params))


def summary(results: Path, machine: str, commit: str) -> str:
    """Median time and GFLOP/s of every measured timing cell, frameworks side by side."""
    rows = [r for r in time_results(results, machine, commit)
            if isinstance(r["seconds"], (int, float)) and r["seconds"] == r["seconds"]]
    if not rows:
        return f"bench: no timings saved under {results / machine}"
    fws = [f for f in FRAMEWORKS if any(r["framework"] == f for r in rows)]
    keys = sorted({(r["device"], r["shape"], r["dtype"], r["pass"]) for r in rows},
                  key=lambda k: (k[0], shapes.flops(k[1], "forward"), k[2],
                                 shapes.PASSES.index(k[3])))
    table = {(r["device"], r["shape"], r["dtype"], r["pass"], r["framework"]): r["seconds"]
             for r in rows}
    head = f"{'device':6} {'shape':>16} {'dtype':8} {'pass':16}" + "".join(
        f" {f:>21}" for f in fws)
    lines = [f"median time per call (GFLOP/s); results: {results / machine}", head]
    for key in keys:
        cells = []
        for f in fws:
            s = table.get((*key, f))
            cells.append(f" {'-':>21}" if s is None else
                         f" {_fmt_time(s):>10} ({shapes.flops(key[1], key[3]) / s / 1e9:7.1f})")
        lines.append(f"{key[0]:6} {key[1]:>16} {key[2]:8} {key[3]:16}" + "".join(cells))
    return "\n".join(lines)
