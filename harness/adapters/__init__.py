"""The adapter registry: a built-in table plus the `harness.adapters` entry-point group.

A third-party package adds a framework without touching ours by declaring, in its own
packaging metadata:

    [project.entry-points."harness.adapters"]
    mlx = "harness_mlx.adapter:MLXAdapter"

Names are user-visible (`--framework mlx`); a plugin that reuses a taken name is an error
that shows the registry, never a silent override.
"""

from __future__ import annotations

import importlib
import importlib.metadata

from harness.adapters.base import Adapter, AdapterUnavailable, Capabilities

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "Adapter",
    "AdapterUnavailable",
    "Capabilities",
    "RegistryError",
    "load",
    "load_target",
    "names",
    "plugin_distributions",
    "registry",
    "target_of",
]

ENTRY_POINT_GROUP = "harness.adapters"

BUILTIN: dict[str, str] = {
    "numpy": "harness.adapters.numpy:NumpyAdapter",
    "torch": "harness.adapters.torch:TorchAdapter",
    "jax": "harness.adapters.jax:JaxAdapter",
    "tensorflow": "harness.adapters.tensorflow:TensorFlowAdapter",
}


class RegistryError(RuntimeError):
    """A plugin clashes with a registered name or cannot be loaded."""


def registry() -> dict[str, str]:
    """Every adapter name mapped to its `module:Class` target, built-ins first."""
    table = dict(BUILTIN)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in table and table[ep.name] != ep.value:
            raise RegistryError(
                f"adapter name {ep.name!r} from entry point {ep.value!r} is already "
                f"registered as {table[ep.name]!r}; registry: {table}"
            )
        table[ep.name] = ep.value
    return table


def names() -> tuple[str, ...]:
    """Every registered framework name in registry order: built-ins first, then plugins.

    Reads packaging metadata only: no adapter module and no framework is imported.
    """
    return tuple(registry())


def plugin_distributions() -> dict[str, str]:
    """Each plugin adapter's name mapped to the distribution that declares it, with its
    version (`"harness-mlx 0.1.0"`), from packaging metadata; built-ins are not listed."""
    out: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN:
            continue
        dist = getattr(ep, "dist", None)
        out[ep.name] = f"{dist.name} {dist.version}" if dist is not None else "unknown"
    return out


def load(name: str) -> type[Adapter]:
    """The adapter class registered as `name` (imports its module, not its framework)."""
    table = registry()
    if name not in table:
        raise RegistryError(f"unknown framework {name!r}; known: {', '.join(table)}")
    return load_target(table[name], name)


def load_target(target: str, name: str = "") -> type[Adapter]:
    """The adapter class at `module:Class`; workers use this, so plugins need no registry."""
    module, _, attr = target.partition(":")
    label = f"adapter {name!r} ({target})" if name else f"adapter {target}"
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f"{label} cannot be loaded: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise RegistryError(f"{label} is not a harness.adapters.Adapter subclass")
    return cls


def target_of(cls: type[Adapter]) -> str:
    """`module:Class` of an adapter class, for `load_target` in another process."""
    return f"{cls.__module__}:{cls.__qualname__}"
