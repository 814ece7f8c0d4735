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
    "registry",
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


def load(name: str) -> type[Adapter]:
    """The adapter class registered as `name` (imports its module, not its framework)."""
    table = registry()
    if name not in table:
        raise RegistryError(f"unknown framework {name!r}; known: {', '.join(table)}")
    module, _, attr = table[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f"adapter {name!r} ({table[name]}) cannot be loaded: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise RegistryError(
            f"adapter {name!r} ({table[name]}) is not a harness.adapters.Adapter subclass"
        )
    return cls
