"""The architecture as a test: the rules of docs/architecture.md, read from the AST.

Nothing is imported: each module of `harness/` is parsed, its imports (module level and
inside functions alike, `importlib.import_module("name")` included) are collected with its
calls that write files, and the five rules are checked:

1. the orchestrator side (cli, orchestrator, plan, store) loads no framework at import time;
2. adapters import neither the CLI, the runner (orchestrator, worker), the bench nor the
   report;
3. matrix products are written only in the reference (and numpy's baseline adapter); the
   framework runners (adapters, the mesh runners) call their framework's product for the
   forward under test but never transpose (their gradients come from autodiff);
4. the report imports no adapter, worker, selftest, reference, orchestrator or judge: it
   reads result files only;
5. only the store writes a verify run's files (config.json, the partial log, verify.csv,
   run.json): every other module that makes them (verify, merge, verify-mesh) calls it.

A planted violation in a throw-away copy of the tree proves each rule can fail.
"""

from __future__ import annotations

import ast
import functools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Top-level modules of the frameworks the harness drives (built-in adapters, the example
# plugin, the mesh runners) and of the distributed executor: heavy, and never needed to plan.
FRAMEWORKS = ("torch", "jax", "jaxlib", "tensorflow", "keras", "mlx", "tinygrad", "ray")

ORCHESTRATOR_SIDE = ("harness.cli", "harness.orchestrator", "harness.plan", "harness.store")
ADAPTER_FORBIDDEN = ("harness.cli", "harness.orchestrator", "harness.worker",
                     "harness.report", "harness.bench")
REPORT_FORBIDDEN = ("harness.adapters", "harness.worker", "harness.selftest",
                    "harness.reference", "harness.orchestrator", "harness.judge")
REGISTRY = "harness.adapters"  # names the frameworks without loading an adapter: the report may
# Where the matmul formulas may be written: the reference, and numpy's baseline adapter,
# whose backward *is* the formula (numpy has no autodiff).
FORMULA_HOMES = ("harness.reference", "harness.adapters.numpy")
FRAMEWORK_RUNNERS = ("harness.adapters", "harness.sharded")
# dot/vdot/inner/outer are left out: the checks' and the judge's inner products of
# flattened arrays and the selftest's rank-one accumulation steps are no matrix formula.
PRODUCT_CALLS = ("matmul", "einsum", "tensordot", "matvec", "vecmat")
# Known exceptions, each to be removed when its cause is: (module, what), matched exactly.
# None today: the last one (harness/sampled.py's hand-written magnitude product) moved into
# harness.reference.weighted_norms.
KNOWN: frozenset[tuple[str, str]] = frozenset()
# Rule 5: the files of a verify run folder, by their names in harness.runfiles and on disk,
# the calls that write a file, and the one module that may make them write those.
STORE_FILES = {"CONFIG_FILE": "config.json", "PARTIAL_FILE": "verify.partial.jsonl",
               "VERIFY_FILE": "verify.csv", "RUN_FILE": "run.json"}
WRITE_CALLS = ("write_csv", "atomic_write", "write_text", "write_bytes")
STORE = "harness.store"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted (a `from a import b` also counts as `a.b`)
    line: int
    top_level: bool  # runs at import time: not inside a function or a TYPE_CHECKING block


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@dataclass(frozen=True)
class Module:
    name: str  # dotted
    imports: tuple[Import, ...]
    formulas: tuple[tuple[str, str], ...]  # (what, message) of each product or transpose
    writes: tuple[str, ...]  # a message for each write of a store's file (rule 5)


def modules(root: Path) -> list[Module]:
    """Every module under `root`/harness, analysed (each distinct source text once)."""
    out = []
    for path in sorted((root / "harness").rglob("*.py")):
        name = module_name(root, path)
        out.append(_analyse(name, path.read_text(encoding="utf-8"), path.name == "__init__.py"))
    return out


@functools.cache
def _analyse(name: str, text: str, is_package: bool) -> Module:
    tree = ast.parse(text, name)
    return Module(name, tuple(_imports_of(tree, name, is_package)), tuple(_formulas(tree, name)),
                  tuple(_store_writes(tree, name)))


def imports(root: Path) -> Iterator[Import]:
    """Every import statement of every module under `root`/harness."""
    for m in modules(root):
        yield from m.imports


def _imports_of(tree: ast.Module, name: str, is_package: bool) -> Iterator[Import]:
    package = name if is_package else name.rpartition(".")[0]
    lazy = {id(inner) for node in ast.walk(tree) if _deferred(node)
            for inner in ast.walk(node)}
    for node in ast.walk(tree):
        eager = id(node) not in lazy
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno, eager)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            yield Import(name, base, node.lineno, eager)
            for alias in node.names:
                yield Import(name, f"{base}.{alias.name}", node.lineno, eager)
        elif _dynamic(node):
            assert isinstance(node, ast.Call) and isinstance(node.args[0], ast.Constant)
            yield Import(name, str(node.args[0].value), node.lineno, eager)


def _deferred(node: ast.AST) -> bool:
    """A body that does not run at import: a function's, or an `if TYPE_CHECKING:` block."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        return True
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _dynamic(node: ast.AST) -> bool:
    """`importlib.import_module("name")` or `__import__("name")` with a constant name."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    f = node.func
    called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
    arg = node.args[0]
    return (called in ("import_module", "__import__") and isinstance(arg, ast.Constant)
            and isinstance(arg.value, str))


def _module_of(target: str, modules: set[str]) -> str:
    """The module an import loads: `a.b.NAME` is module `a.b` when NAME is no module."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in modules:
            return ".".join(parts[:i])
    return target


def _is(target: str, prefixes: tuple[str, ...]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def _eager_graph(mods: list[Module]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for m in mods:
        for imp in m.imports:
            if imp.top_level:
                edges.setdefault(imp.module, set()).add(imp.target)
    return edges


def _closure(edges: dict[str, set[str]], start: str) -> set[str]:
    """Modules `start` loads when imported (module-level imports, transitively)."""
    seen, todo = {start}, [start]
    while todo:
        for target in edges.get(todo.pop(), ()):
            parts = target.split(".")
            for mod in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):  # parents load
                if mod not in seen:
                    seen.add(mod)
                    todo.append(mod)
    return seen


def violations(root: Path, known: frozenset[tuple[str, str]] = KNOWN) -> list[str]:
    """Every broken rule, one line each; empty when the tree keeps them all."""
    out: list[str] = []
    mods = modules(root)
    eager = _eager_graph(mods)
    for start in ORCHESTRATOR_SIDE:  # rule 1
        for mod in sorted(_closure(eager, start)):
            for target in sorted(eager.get(mod, ())):
                if _is(target, FRAMEWORKS):
                    out.append(f"{start} loads {mod}, which imports the framework {target}")
    names = {m.name for m in mods}
    for imp in (imp for m in mods for imp in m.imports):
        target = _module_of(imp.target, names)
        if _is(imp.module, ("harness.adapters",)) and _is(target, ADAPTER_FORBIDDEN):  # 2
            out.append(f"{imp.module}:{imp.line} (an adapter) imports {target}")
        if (_is(imp.module, ("harness.report",)) and _is(target, REPORT_FORBIDDEN)  # 4
                and target != REGISTRY):
            out.append(f"{imp.module}:{imp.line} (the report) imports {target}")
    out += [line for m in mods for line in m.writes]  # rule 5
    found = [(m.name, what, line) for m in mods for what, line in m.formulas]  # rule 3
    out += [line for name, what, line in found if (name, what) not in known]
    out += [f"{name}: listed as a known exception ({what}) but no longer one: remove it "
            "from KNOWN" for name, what in sorted(known - {(n, w) for n, w, _ in found})]
    return out


def _formulas(tree: ast.Module, name: str) -> Iterator[tuple[str, str]]:
    """(what, message) of each matrix product or transpose where it may not be."""
    if name in FORMULA_HOMES:
        return
    runner = _is(name, FRAMEWORK_RUNNERS)
    from_reference = {alias.asname or alias.name for node in ast.walk(tree)
                      if isinstance(node, ast.ImportFrom) and node.module and
                      _is(node.module, ("harness.reference",)) for alias in node.names}
    for node in ast.walk(tree):
        what = _product(node, from_reference)
        if what and not runner:
            yield what, f"{name}:{node.lineno} computes a matrix product ({what}) outside reference"
        if runner and _transpose(node):
            yield "transpose", (f"{name}:{node.lineno} (a framework runner) transposes: "
                                "gradients come from autodiff")


def _store_writes(tree: ast.Module, name: str) -> Iterator[str]:
    """A message for each call that writes a verify run's file outside the store: a
    write_csv/atomic_write whose arguments name one, or a path naming one written with
    write_text/write_bytes."""
    if name == STORE:
        return
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
        if called not in WRITE_CALLS:
            continue
        where: list[ast.AST] = [*node.args, *(k.value for k in node.keywords)]
        if called in ("write_text", "write_bytes") and isinstance(f, ast.Attribute):
            where = [f.value]
        named = sorted({file for part in where for file in _files_named(part)})
        if named:
            yield (f"{name}:{node.lineno} writes {', '.join(named)} itself: a run folder's "
                   "files are written by harness.store")


def _files_named(node: ast.AST) -> Iterator[str]:
    for inner in ast.walk(node):
        if isinstance(inner, ast.Name | ast.Attribute):
            key = inner.id if isinstance(inner, ast.Name) else inner.attr
            if key in STORE_FILES:
                yield STORE_FILES[key]
        elif isinstance(inner, ast.Constant) and inner.value in STORE_FILES.values():
            yield str(inner.value)


def _product(node: ast.AST, from_reference: set[str]) -> str:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
        return "@"
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Attribute):  # np.matmul(...), x.matmul(...)
            called = f.attr
        else:  # a bare name is a product unless it is the reference's function, imported
            called = getattr(f, "id", "")
            if called in from_reference:
                return ""
        if called in PRODUCT_CALLS:
            return f"{called}()"
    return ""


def _transpose(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute) and node.attr in ("mT", "mH", "T", "H"):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in ("swapaxes", "transpose", "matrix_transpose", "adjoint")
    return False


def test_the_tree_keeps_every_rule() -> None:
    assert violations(ROOT) == []


# (file, code appended to it): each breaks one rule, in one way a change could.
PLANTED = {
    "store imports a framework": ("harness/store.py", "import torch\n"),
    "plan imports a framework submodule": ("harness/plan.py", "from jax import numpy\n"),
    "the CLI loads a module that imports one": ("harness/cli.py", "from harness import helper\n"),
    "the orchestrator imports one by name": (
        "harness/orchestrator.py", "import importlib\nimportlib.import_module('tensorflow')\n"),
    "adapter imports the CLI": ("harness/adapters/numpy.py", "from harness.cli import main\n"),
    "adapter imports the runner, lazily": (
        "harness/adapters/torch.py", "def f():\n    from harness import orchestrator\n"),
    "adapter imports the report, relatively": (
        "harness/adapters/jax.py", "from ..report import load\n"),
    "report imports the selftest": ("harness/report/load.py", "import harness.selftest\n"),
    "report imports an adapter through the registry's package": (
        "harness/report/tables.py", "from harness.adapters import torch\n"),
    "report imports the reference, relatively": (
        "harness/report/load.py", "from ..reference import matmul_vjp\n"),
    "report imports the worker, lazily": (
        "harness/report/figures.py", "def f():\n    import harness.worker\n"),
    "a formula outside the reference": ("harness/judge.py", "def f(a, b):\n    return a @ b\n"),
    "a product by a bare imported name": (
        "harness/checks.py", "from numpy import einsum\nz = einsum('ij,jk', 1, 2)\n"),
    "an adapter transposing": ("harness/adapters/torch.py", "def f(w):\n    return w.mT\n"),
    "a mesh runner swapping axes": (
        "harness/sharded/jax_mesh.py", "def f(w):\n    return w.swapaxes(-1, -2)\n"),
    "merge writes verify.csv itself": (
        "harness/merge.py", "def f(rows, out):\n    write_csv(rows, out / runfiles.VERIFY_FILE)\n"),
    "verify-mesh writes its rows by the file's literal name": (
        "harness/mesh_run.py", "def f(rows, out):\n    atomic_write(out / 'verify.csv', '')\n"),
    "the CLI writes run.json through pathlib": (
        "harness/cli.py", "def f(out):\n    (out / RUN_FILE).write_text('{}')\n"),
}

# Patterns the rules allow, which a too-eager checker would flag.
ALLOWED = {
    "the CLI imports a framework lazily": (
        "harness/cli.py", "def f():\n    import torch\n"),
    "the report imports the registry": (
        "harness/report/tables.py", "from harness import adapters\n"),
    "numpy's adapter writes the formula": (
        "harness/adapters/numpy.py", "def f(a, b):\n    return a @ b.T\n"),
    "the judge calls the reference's function by name": (
        "harness/judge.py", "from harness.reference import matvec\nz = matvec(1, 2)\n"),
    "merge reads run.json": (
        "harness/merge.py", "def f(p):\n    return (p / runfiles.RUN_FILE).read_text()\n"),
    "the selftest writes its own file": (
        "harness/selftest.py", "def f(p):\n    atomic_write(p / SELFTEST_FILE, '')\n"),
}


def _copy_with(tmp_path: Path, rel: str, code: str) -> Path:
    shutil.copytree(ROOT / "harness", tmp_path / "harness",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "harness" / "helper.py").write_text("import jax\n", encoding="utf-8")
    target = tmp_path / rel
    target.write_text(target.read_text(encoding="utf-8") + "\n" + code, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_a_planted_violation_is_caught(tmp_path: Path, planted: str) -> None:
    rel, code = PLANTED[planted]
    found = violations(_copy_with(tmp_path, rel, code))
    assert found, f"{planted}: not caught"
    assert all(line not in violations(ROOT) for line in found)


@pytest.mark.parametrize("allowed", sorted(ALLOWED))
def test_an_allowed_pattern_is_not_flagged(tmp_path: Path, allowed: str) -> None:
    rel, code = ALLOWED[allowed]
    assert violations(_copy_with(tmp_path, rel, code)) == []


def test_a_known_exception_is_kept_and_a_stale_one_reported(tmp_path: Path) -> None:
    planted = "import numpy as np\nY = np.ones(2) @ np.ones(2)\n"
    root = _copy_with(tmp_path, "harness/plan.py", planted)
    assert violations(root)  # the planted product breaks rule 3
    known = frozenset({("harness.plan", "@")})
    assert violations(root, known) == []  # listed: allowed
    (root / "harness" / "plan.py").write_text("", encoding="utf-8")
    assert any("no longer one" in line for line in violations(root, known))
