"""Entry-point discovery, tested by monkeypatching importlib.metadata (no install)."""

from __future__ import annotations

import importlib.metadata

import pytest

from harness.adapters import BUILTIN, ENTRY_POINT_GROUP, RegistryError, load, registry


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, **targets: str) -> None:
    eps = tuple(
        importlib.metadata.EntryPoint(name=n, value=v, group=ENTRY_POINT_GROUP)
        for n, v in targets.items()
    )

    def entry_points(**kw: object) -> tuple[importlib.metadata.EntryPoint, ...]:
        return eps if kw.get("group") == ENTRY_POINT_GROUP else ()

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_builtins_are_registered(no_plugins: None) -> None:
    assert registry() == BUILTIN
    assert list(registry()) == ["numpy", "torch", "jax", "tensorflow"]


def test_plugin_is_discovered_and_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, fakeplugin="tests.fake_plugin:FakePluginAdapter")
    assert registry()["fakeplugin"] == "tests.fake_plugin:FakePluginAdapter"
    assert load("fakeplugin").name == "fakeplugin"


def test_name_collision_fails_loudly_showing_the_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_entry_points(monkeypatch, torch="tests.fake_plugin:FakePluginAdapter")
    with pytest.raises(RegistryError, match=r"'torch' .* already registered .*registry: "):
        registry()


def test_plugin_that_is_not_an_adapter_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, bad="tests.fake_plugin:NotAnAdapter")
    with pytest.raises(RegistryError, match=r"not a harness\.adapters\.Adapter subclass"):
        load("bad")


def test_plugin_that_cannot_be_imported_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, gone="no_such_module_abc:Adapter")
    with pytest.raises(RegistryError, match="cannot be loaded"):
        load("gone")


def test_unknown_name_lists_the_known_ones(no_plugins: None) -> None:
    with pytest.raises(RegistryError, match="known: numpy, torch, jax, tensorflow"):
        load("mxnet")
