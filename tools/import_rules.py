"""The architecture's import rules, read from the AST: a draft for issue 12.

Nothing is imported: each module of `harness/` is parsed, its imports (module level and
inside functions alike) are collected, and the rules are checked on that graph:
- the orchestrator side (cli, orchestrator, plan, store) loads no framework at import time;
- adapters import neither the CLI, the runner, the bench nor the report;
- matrix products are written only in the reference (and numpy's baseline adapter), and
  adapters never transpose (their gradients come from autodiff);
- the report imports no adapter, worker, selftest, reference, orchestrator or judge.

`python tools/import_rules.py` prints every violation and exits 1 when there is one. It is
not yet a test: today the report imports harness.selftest and the selftest's planted bugs
write their wrong formulas with `@`; issue 12 moves both, then makes this a test in
`make test` with planted violations proving each rule can fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "jax", "jaxlib", "tensorflow", "keras", "mlx", "tinygrad", "ray")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted (a `from a import b` also counts as `a.b`)
    line: int
    top_level: bool  # at module level (runs at import time), not inside a function


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(root: Path) -> Iterator[Import]:
    """Every import statement of every module under `root`/harness."""
    for path in sorted((root / "harness").rglob("*.py")):
        name = module_name(root, path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        yield from _imports_of(tree, name, path.name == "__init__.py")


def _imports_of(tree: ast.Module, name: str, is_package: bool) -> Iterator[Import]:
    package = name if is_package else name.rpartition(".")[0]
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno, id(node) in top)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            yield Import(name, base, node.lineno, id(node) in top)
            for alias in node.names:
                yield Import(name, f"{base}.{alias.name}", node.lineno, id(node) in top)


def _module_of(target: str, modules: set[str]) -> str:
    """The module an import loads: `a.b.NAME` is module `a.b` when NAME is no module."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in modules:
            return ".".join(parts[:i])
    return target


def _is(target: str, prefixes: tuple[str, ...]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def _graph(root: Path, top_level_only: bool) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for imp in imports(root):
        if imp.top_level or not top_level_only:
            edges.setdefault(imp.module, set()).add(imp.target)
    return edges


def _closure(edges: dict[str, set[str]], start: str) -> set[str]:
    """Modules `start` loads when imported (module-level imports, transitively)."""
    seen, todo = {start}, [start]
    while todo:
        for target in edges.get(todo.pop(), ()):
            for mod in _and_parents(target):
                if mod not in seen:
                    seen.add(mod)
                    todo.append(mod)
    return seen


def _and_parents(target: str) -> list[str]:
    parts = target.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


ORCHESTRATOR_SIDE = ("harness.cli", "harness.orchestrator", "harness.plan", "harness.store")
ADAPTER_FORBIDDEN = ("harness.cli", "harness.orchestrator", "harness.report", "harness.bench")
REPORT_FORBIDDEN = ("harness.adapters", "harness.worker", "harness.selftest",
                    "harness.reference", "harness.orchestrator", "harness.judge")
# Where the matmul formulas may be written: the reference, and numpy's baseline adapter,
# whose backward *is* the formula (numpy has no autodiff).
FORMULA_HOMES = ("harness.reference", "harness.adapters.numpy")


def violations(root: Path) -> list[str]:
    """Every broken rule, one line each; empty when the tree keeps them all."""
    out: list[str] = []
    eager = _graph(root, True)
    for start in ORCHESTRATOR_SIDE:
        for mod in sorted(_closure(eager, start)):
            for target in sorted(eager.get(mod, ())):
                if _is(target, FRAMEWORKS):
                    out.append(f"{start} loads {mod}, which imports the framework {target}")
    modules = {module_name(root, p) for p in (root / "harness").rglob("*.py")}
    for imp in imports(root):
        target = _module_of(imp.target, modules)
        if _is(imp.module, ("harness.adapters",)) and _is(target, ADAPTER_FORBIDDEN):
            out.append(f"{imp.module}:{imp.line} (an adapter) imports {target}")
        # the registry (harness.adapters itself) names frameworks without loading adapters
        if (_is(imp.module, ("harness.report",)) and _is(target, REPORT_FORBIDDEN)
                and target != "harness.adapters"):
            out.append(f"{imp.module}:{imp.line} (the report) imports {target}")
    out.extend(_formulas(root))
    return out


def _formulas(root: Path) -> Iterator[str]:
    """A matrix product (`@`, matmul, einsum, tensordot) written outside the formula homes.

    Adapters call their framework's matmul for the product under test (the forward), so
    there a product is allowed, but a transpose next to it is a hand-made gradient.
    """
    for path in sorted((root / "harness").rglob("*.py")):
        name = module_name(root, path)
        if name in FORMULA_HOMES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        # framework runners (adapters, the mesh runners) compute the product under test
        adapter = _is(name, ("harness.adapters", "harness.sharded"))
        for node in ast.walk(tree):
            what = _product(node)
            if what and not adapter:
                yield f"{name}:{node.lineno} computes a matrix product ({what}) outside reference"
            if adapter and _transpose(node):
                yield f"{name}:{node.lineno} (an adapter) transposes: gradients come from autodiff"


def _product(node: ast.AST) -> str:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
        return "@"
    if isinstance(node, ast.Call):
        f = node.func
        # `np.matmul(...)`, `x.matmul(...)`: a bare name (`matvec(...)`) is a function of
        # the reference's, imported by name, not a product written here
        called = f.attr if isinstance(f, ast.Attribute) else ""
        if called in ("matmul", "einsum", "tensordot", "matvec", "vecmat"):
            return f"{called}()"
    return ""


def _transpose(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute) and node.attr in ("mT", "mH", "T", "H"):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in ("swapaxes", "transpose", "matrix_transpose", "adjoint")
    return False


def main() -> int:
    found = violations(ROOT)
    for line in found:
        print(line)
    print(f"{len(found)} violation(s) of the import rules")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
