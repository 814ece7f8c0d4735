"""matmul-harness: verified gradients of Y = X @ W across numpy, PyTorch, JAX and TensorFlow.

Importing this package imports no framework: adapters import theirs lazily, and the
orchestrator runs each framework in its own worker process.
"""

from __future__ import annotations

__version__ = "0.1.0"
