"""A third-party adapter, as a plugin package would ship it (numpy under another name)."""

from __future__ import annotations

from harness.adapters.numpy import NumpyAdapter


class FakePluginAdapter(NumpyAdapter):
    name = "fakeplugin"


class MissingFrameworkAdapter(NumpyAdapter):
    """A plugin whose framework is not installed: every cell must be a skip."""

    name = "notinstalled"
    module = "surely_not_an_installed_module_xyz"
    install_hint = "pip install surely-not-installed"


class NotAnAdapter:
    pass


class WrongTransposePlugin(NumpyAdapter):
    """A plugin with a planted bug (dX = G·W): its cells must fail, exit code 1."""

    name = "wrongtranspose"
    # Its reproducer plants the same bug, in numpy (what `matmul-harness repro` writes).
    repro_snippet = """
def run(x, w, g, dtype, device):
    dx, dw = matmul_grads(x, w, g)
    if w.ndim >= 2:
        dx = matmul_grads(x, np.swapaxes(w, -1, -2), g)[0]
    return np.matmul(x, w), dx, dw
"""

    def vjp(self, x, w, g):  # type: ignore[no-untyped-def]
        y, dx, dw = super().vjp(x, w, g)
        if w.ndim < 2:
            return y, dx, dw
        _, dx_bad, _ = super().vjp(x, w.swapaxes(-1, -2), g)
        return y, dx_bad, dw
