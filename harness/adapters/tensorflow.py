"""TensorFlow: gradients from `tf.GradientTape`.

`tf.matmul` and `@` reject rank < 2; `tf.experimental.numpy.matmul` follows numpy's 1-D
rules and differentiates correctly, so it is the product under test.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.adapters.base import Adapter, Capabilities
from harness.dtypes import DEVICES, DTYPES


class TensorFlowAdapter(Adapter):
    name = "tensorflow"
    module = "tensorflow"
    install_hint = "pip install 'matmul-harness[tensorflow]'"
    capabilities = Capabilities(
        devices=DEVICES,
        dtypes=tuple(DTYPES),
        forward_mode=True,
        second_order=True,
        # Broadcast gradients are per-batch products rounded to the storage dtype, then
        # reduce_sum (docs/numerics.md), which the float16/bfloat16 bound must allow for.
        rounded_broadcast_partials=True,
    )
    repro_snippet = '''
import tensorflow as tf

def run(x, w, g, dtype, device):
    tf.config.experimental.enable_tensor_float_32_execution(False)  # full float32
    dt = getattr(tf, dtype)
    with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
        X, W, G = (tf.identity(tf.cast(tf.constant(a), dt)) for a in (x, w, g))
        with tf.GradientTape() as tape:
            tape.watch([X, W])
            Y = tf.experimental.numpy.matmul(X, W)  # numpy's 1-D rules; tf.matmul inside
        dX, dW = tape.gradient(Y, [X, W], output_gradients=G,
                               unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return tuple(np.asarray(tf.cast(t, tf.complex128 if t.dtype.is_complex else tf.float64))
                 for t in (Y, dX, dW))
'''

    def __init__(self, *, pin_precision: bool = True, threads: int | None = None) -> None:
        import tensorflow as tf

        if threads:
            # Only possible before TF's runtime starts; later calls raise RuntimeError.
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)

        if pin_precision:
            # TF computes float32 GEMMs in TF32 on Ampere+ GPUs by default
            # (https://github.com/tensorflow/tensorflow/issues/127346); full float32 is what
            # the tolerance assumes.
            tf.config.experimental.enable_tensor_float_32_execution(False)
        self.tf = tf
        self._gpu = bool(tf.config.list_physical_devices("GPU"))

    def version(self) -> str:
        return str(self.tf.__version__)

    def threads(self) -> int:
        n = self.tf.config.threading.get_intra_op_parallelism_threads()
        return int(n) if n else len(os.sched_getaffinity(0))  # 0 means "all cores"

    def device_reason(self, device: str) -> str | None:
        if device == "cpu" or self._gpu:
            return None
        return "no GPU visible to tensorflow"

    def _on(self, t: Any) -> Any:
        """Run ops where `t` lives. Without a GPU every op runs on the CPU anyway, and
        entering tf.device costs ~6 µs a call, which an 8x8x8 benchmark would time."""
        return self.tf.device(t.device) if self._gpu else contextlib.nullcontext()

    def precision(self, device: str, dtype: str) -> str:
        if device == "gpu" and self.tf.config.experimental.tensor_float_32_execution_enabled():
            return "tf32"
        return "ieee"

    def precision_flags(self) -> str:
        tf32 = self.tf.config.experimental.tensor_float_32_execution_enabled()
        onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")
        return f"tensor_float_32_execution={int(tf32)} TF_ENABLE_ONEDNN_OPTS={onednn}"

    def to_device(self, a: np.ndarray, device: str) -> Any:
        with self.tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
            return self.tf.identity(self.tf.constant(a))

    def to_numpy(self, t: Any) -> np.ndarray:
        return np.asarray(t.numpy())

    def forward(self, x: Any, w: Any) -> Any:
        with self._on(x):
            return self.tf.experimental.numpy.matmul(x, w)

    def pullback(self, x: Any, w: Any) -> tuple[Any, Callable[[Any], tuple[Any, Any]]]:
        tf = self.tf
        with self._on(x), tf.GradientTape(persistent=True) as tape:
            tape.watch([x, w])
            y = tf.experimental.numpy.matmul(x, w)

        def backward(g: Any) -> tuple[Any, Any]:
            # An empty product leaves a gradient unconnected; TF's convention for that
            # is None, whose value is zero.
            with self._on(x):
                dx, dw = tape.gradient(
                    y, [x, w], output_gradients=g,
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )
            return dx, dw

        return y, backward

    def jvp(self, x: Any, w: Any, tx: Any, tw: Any) -> tuple[Any, Any]:
        tf = self.tf
        with self._on(x), tf.autodiff.ForwardAccumulator((x, w), (tx, tw)) as acc:
            y = tf.experimental.numpy.matmul(x, w)
        return y, acc.jvp(y, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def second_order(self, x: Any, w: Any, g: Any, v: Any) -> Any:
        tf = self.tf
        zero = tf.UnconnectedGradients.ZERO
        with self._on(x), tf.GradientTape() as outer:
            outer.watch(w)
            with tf.GradientTape() as inner:
                inner.watch([x, w])
                y = tf.experimental.numpy.matmul(x, w)
            dx = inner.gradient(y, x, output_gradients=g, unconnected_gradients=zero)
            h = tf.reduce_sum(tf.math.real(tf.math.conj(v) * dx))
        return outer.gradient(h, w, unconnected_gradients=zero)

    def reset_peak_memory(self, device: str) -> None:
        if device != "gpu":
            super().reset_peak_memory(device)
        self.tf.config.experimental.reset_memory_stats("GPU:0")

    def peak_memory(self, device: str) -> int:
        if device != "gpu":
            return super().peak_memory(device)
        return int(self.tf.config.experimental.get_memory_info("GPU:0")["peak"])

    def sync(self, outputs: tuple[Any, ...]) -> None:
        if any("GPU" in t.device for t in outputs):
            self.tf.test.experimental.sync_devices()
