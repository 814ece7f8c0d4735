"""A pytest fixture for `harness.testing`: add to your root `conftest.py` (or a test module)

    pytest_plugins = ["harness.pytest_plugin"]

and take `matmul_grads` as an argument: it is `harness.testing.assert_matmul_grads`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness.testing import assert_matmul_grads


@pytest.fixture
def matmul_grads() -> Callable[..., Any]:
    """`harness.testing.assert_matmul_grads`: check a matmul's gradients, raise the verdict."""
    return assert_matmul_grads
