"""The system card: what machine a result came from, found without importing a framework.

Used by `verify` (run.json), `bench` (asv's machine name, which has no GPU field) and the
report (one card per machine). Framework versions, plugins included, come from package
metadata; the GPU from `nvidia-smi`, when there is one; BLAS and its thread count from
threadpoolctl.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from typing import Any

# Environment variables that change threads or numerics, recorded as they were.
RECORDED_ENV: tuple[str, ...] = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "XLA_FLAGS",
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "TF_ENABLE_ONEDNN_OPTS",
    "NVIDIA_TF32_OVERRIDE",
    "CUDA_VISIBLE_DEVICES",
)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gpus() -> list[str]:
    """GPU model names from nvidia-smi (empty without an NVIDIA GPU or driver)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def framework_versions() -> dict[str, str]:
    """Installed version of every registered framework, plugins included, in registry order
    ("" when not installed, or when its adapter cannot be loaded).

    The version is that of the distribution providing the adapter's `module` (its
    framework), read from packaging metadata: the adapter module is imported (a cheap
    class definition), its framework is not.
    """
    from harness.adapters import RegistryError, load_target, registry

    out: dict[str, str] = {}
    for name, target in registry().items():
        try:
            module = load_target(target, name).module
        except RegistryError:
            out[name] = ""
            continue
        out[name] = distribution_version(module)
    return out


def plugin_versions() -> dict[str, str]:
    """Each plugin adapter and the distribution providing it: `{"mlx": "harness-mlx 0.1.0"}`."""
    from harness.adapters import plugin_distributions

    return plugin_distributions()


def distribution_version(module: str) -> str:
    """Version of the distribution that installs top-level package `module` ("" if none).

    The distribution is usually named after the package (numpy, torch, jax, mlx); where it
    is not (tensorflow-cpu installs `tensorflow`), the slower full metadata scan finds it.
    """
    top = module.partition(".")[0]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(top)
    for dist in _packages_distributions().get(top, []):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(dist)
    return ""


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def blas() -> list[dict[str, Any]]:
    """numpy's BLAS libraries: name, version, threads, CPU kernel (threadpoolctl)."""
    from threadpoolctl import threadpool_info

    keep = ("internal_api", "version", "num_threads", "architecture", "threading_layer")
    return [
        {k: i.get(k) for k in keep} for i in threadpool_info() if i.get("user_api") == "blas"
    ]


def machine_slug(gpu: list[str] | None = None) -> str:
    """A file-name-safe machine name that includes the GPU model (asv has no GPU field)."""
    gpu = gpus() if gpu is None else gpu
    base = platform.node() or "machine"
    label = gpu[0] if gpu else "cpu"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{base}-{label}").strip("-")


def system_info() -> dict[str, Any]:
    gpu = gpus()
    return {
        "hostname": platform.node(),
        "machine_name": machine_slug(gpu),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "gpus": gpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "framework_versions": framework_versions(),
        "plugins": plugin_versions(),
        "blas": blas(),
        "env": {k: os.environ[k] for k in RECORDED_ENV if k in os.environ},
    }
