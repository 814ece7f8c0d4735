"""`import harness` (and everything the orchestrator uses) loads no framework."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "jax", "jaxlib", "tensorflow", "keras", "pandas", "matplotlib", "asv",
         "mlx")  # mlx: the example plugin's framework (its adapter module is loaded)

MODULES = (
    "harness",
    "harness.cli",
    "harness.orchestrator",
    "harness.worker",
    "harness.config",
    "harness.adapters",
    "harness.adapters.numpy",
    "harness.adapters.torch",
    "harness.adapters.jax",
    "harness.adapters.tensorflow",
    "harness.system",
    "harness.testing",
    "harness.repro",
    "harness.suite",
)


def test_importing_harness_loads_no_framework() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "import harness.cli, harness.system\n"
        + "harness.system.system_info()\n"
        + "from harness.adapters import load, registry\n"
        + "[load(n).installed() for n in registry()]\n"
        + f"loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        + "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"imported at harness import time: {out.stdout}"


def test_cli_help_loads_no_framework() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from harness.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
