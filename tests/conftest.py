"""Shared fixtures. Frameworks are imported only by tests that need them in-process."""

from __future__ import annotations

import contextlib
import importlib.util
import os

import pytest

# Importing TensorFlow before torch in one process can segfault (Keras 3's root conftest
# imports torch first for this reason); in-process conformance tests import several.
if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401

# TensorFlow's start-up chatter on stderr hides real failures in pytest's output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FRAMEWORKS = ("numpy", "torch", "jax", "tensorflow")


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def need(name: str) -> None:
    """Skip the calling test, with the reason, when `name` is not installed."""
    if not installed(name):
        pytest.skip(f"{name} is not installed: pip install 'matmul-harness[{name}]'")


@pytest.fixture
def no_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry sees the built-ins only, whatever plugins the environment holds."""
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: ())


@contextlib.contextmanager
def chdir(path: os.PathLike[str] | str):  # type: ignore[no-untyped-def]
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)
