"""PyTorch: gradients from `torch.autograd`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np

from harness.adapters.base import Adapter, Capabilities
from harness.dtypes import DEVICES, DTYPES


class TorchAdapter(Adapter):
    name = "torch"
    module = "torch"
    install_hint = "pip install 'matmul-harness[torch]'"
    capabilities = Capabilities(
        devices=DEVICES,
        dtypes=tuple(DTYPES),
        forward_mode=True,
        second_order=True,
        # When both operands broadcast (x (2,1,M,K) @ w (1,3,K,N)) autograd cannot fold the
        # batch into one GEMM: it rounds per-batch products to the dtype and sums them
        # (measured here: float16/bfloat16 dW up to 52x the plain bound without this).
        rounded_broadcast_partials=True,
    )
    repro_snippet = '''
import torch

def run(x, w, g, dtype, device):
    # full float32, as the harness pins it: no TF32, no reduced-precision reductions
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    dev, dt = ("cuda" if device == "gpu" else "cpu"), getattr(torch, dtype)
    X, W, G = (torch.from_numpy(np.array(a)).to(dev, dt) for a in (x, w, g))
    X.requires_grad_(True)
    W.requires_grad_(True)
    Y = torch.matmul(X, W)
    dX, dW = torch.autograd.grad(Y, (X, W), grad_outputs=G)
    wide = torch.complex128 if Y.is_complex() else torch.float64
    return tuple(t.detach().cpu().resolve_conj().to(wide).numpy() for t in (Y, dX, dW))
'''

    def __init__(self, *, pin_precision: bool = True, threads: int | None = None) -> None:
        import torch

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        if pin_precision:
            # Full float32 on GPU: no TF32, and float16/bfloat16 GEMMs reduce split-K
            # partials in float32 (https://github.com/pytorch/pytorch/issues/116870 shows the
            # low-precision default's error).
            torch.set_float32_matmul_precision("highest")
            matmul = torch.backends.cuda.matmul
            matmul.allow_tf32 = False
            matmul.allow_fp16_reduced_precision_reduction = False
            matmul.allow_bf16_reduced_precision_reduction = False

    def version(self) -> str:
        return str(self.torch.__version__)

    def threads(self) -> int:
        return int(self.torch.get_num_threads())

    def device_reason(self, device: str) -> str | None:
        if device == "cpu":
            return None
        if not self.torch.cuda.is_available():
            return "no CUDA GPU visible to torch"
        return None

    def precision(self, device: str, dtype: str) -> str:
        mode = str(self.torch.get_float32_matmul_precision())
        if device == "gpu" and self.torch.backends.cuda.matmul.allow_tf32:
            return "tf32"
        return {"highest": "ieee", "high": "tf32", "medium": "bf16"}.get(mode, mode)

    def precision_flags(self) -> str:
        m = self.torch.backends.cuda.matmul
        return (f"float32_matmul_precision={self.torch.get_float32_matmul_precision()} "
                f"cuda.matmul.allow_tf32={int(m.allow_tf32)} "
                f"allow_fp16_reduced_precision_reduction="
                f"{int(m.allow_fp16_reduced_precision_reduction)} "
                f"allow_bf16_reduced_precision_reduction="
                f"{int(m.allow_bf16_reduced_precision_reduction)}")

    def to_device(self, a: np.ndarray, device: str) -> Any:
        torch = self.torch
        dev = "cuda" if device == "gpu" else "cpu"
        if a.dtype == ml_dtypes.bfloat16:
            # torch.from_numpy knows no ml_dtypes; bfloat16 -> float32 -> bfloat16 is exact
            return torch.from_numpy(a.astype(np.float32)).to(dev, torch.bfloat16)
        # np.ascontiguousarray would turn a 0-D array into 1-D
        return torch.from_numpy(np.array(a, order="C", copy=True)).to(dev)

    def to_numpy(self, t: Any) -> np.ndarray:
        # resolve lazy conjugation/negation views, which .numpy() refuses
        t = t.detach().cpu().resolve_conj().resolve_neg()
        if t.dtype == self.torch.bfloat16:
            return np.asarray(t.float().numpy().astype(ml_dtypes.bfloat16))
        return np.asarray(t.numpy())

    def product(self, x: Any, w: Any) -> Any:
        """The product under test (`harness.testing.TorchFunction` puts a user's here)."""
        return self.torch.matmul(x, w)

    def forward(self, x: Any, w: Any) -> Any:
        return self.product(x, w)

    def pullback(self, x: Any, w: Any) -> tuple[Any, Callable[[Any], tuple[Any, Any]]]:
        torch = self.torch
        x = x.detach().requires_grad_(True)
        w = w.detach().requires_grad_(True)
        y = self.product(x, w)

        def backward(g: Any) -> tuple[Any, Any]:
            dx, dw = torch.autograd.grad(y, (x, w), grad_outputs=g, retain_graph=True)
            return dx, dw

        return y.detach(), backward

    def jvp(self, x: Any, w: Any, tx: Any, tw: Any) -> tuple[Any, Any]:
        y, dy = self.torch.func.jvp(self.torch.matmul, (x, w), (tx, tw))
        return y, dy

    def second_order(self, x: Any, w: Any, g: Any, v: Any) -> Any:
        torch = self.torch
        x = x.detach().requires_grad_(True)
        w = w.detach().requires_grad_(True)
        y = torch.matmul(x, w)
        (dx,) = torch.autograd.grad(y, x, grad_outputs=g, create_graph=True)
        h = (v.conj() * dx).real.sum()
        (d2w,) = torch.autograd.grad(h, w, materialize_grads=True)
        return d2w

    def reset_peak_memory(self, device: str) -> None:
        if device != "gpu":
            super().reset_peak_memory(device)
        self.torch.cuda.synchronize()
        self.torch.cuda.reset_peak_memory_stats()

    def peak_memory(self, device: str) -> int:
        if device != "gpu":
            return super().peak_memory(device)
        return int(self.torch.cuda.max_memory_allocated())

    def sync(self, outputs: tuple[Any, ...]) -> None:
        if any(t.is_cuda for t in outputs):
            self.torch.cuda.synchronize()
