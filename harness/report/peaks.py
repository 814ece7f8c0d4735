"""The device peak table (configs/peaks.yaml): read, validated strictly, matched to devices.

Each entry names a device model by a substring of the model string the system card
records (GPU name from nvidia-smi, CPU model from /proc/cpuinfo) and gives its peak
GFLOP/s per dtype; the first entry that matches wins, so specific models go before
generic ones. `per_core: true` entries are per core and are multiplied by the cores the
run could use.
"""

from __future__ import annotations

import importlib.resources
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.dtypes import DEVICES, DTYPES
from harness.report.schema import ReportInputError

PEAKS_NAME = "peaks.yaml"
ENTRY_KEYS = {"name", "match", "device", "per_core", "source", "peaks"}
REQUIRED = ("name", "match", "device", "peaks")


@dataclass(frozen=True)
class Peak:
    name: str
    match: str
    device: str  # cpu or gpu
    per_core: bool
    source: str
    peaks: dict[str, float]  # dtype -> GFLOP/s


def default_path() -> Path:
    """configs/peaks.yaml of a checkout, or the copy shipped as harness.configs data."""
    checkout = Path(__file__).resolve().parents[2] / "configs" / PEAKS_NAME
    if checkout.is_file():
        return checkout
    return Path(str(importlib.resources.files("harness.configs") / PEAKS_NAME))


def load_peaks(path: Path | None = None) -> list[Peak]:
    path = default_path() if path is None else path
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot be read ({exc.strerror}); expected the "
                               "peak table (see configs/peaks.yaml)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ReportInputError(f"{path}: YAML syntax error{where}") from None
    return validate(data, str(path))


def validate(data: Any, where: str) -> list[Peak]:
    """The entries of a parsed peak table; ReportInputError naming `where` and the key."""

    def fail(key: str, msg: str) -> ReportInputError:
        return ReportInputError(f"{where}: {key}: {msg}")

    if not isinstance(data, dict) or set(data) != {"devices"}:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise fail("top level", f"expected exactly one key, devices. Received: {got}")
    entries = data["devices"]
    if not isinstance(entries, list) or not entries:
        raise fail("devices", "expected a non-empty list of device entries")
    out: list[Peak] = []
    seen: set[str] = set()
    for i, e in enumerate(entries):
        out.append(_entry(e, f"devices[{i}]", seen, fail))
    return out


def _entry(e: Any, key: str, seen: set[str],
           fail: Callable[[str, str], ReportInputError]) -> Peak:
    """One device entry, checked key by key; its name joins `seen`."""
    if not isinstance(e, dict):
        raise fail(key, f"expected a mapping with keys {', '.join(sorted(ENTRY_KEYS))}")
    unknown = sorted(set(e) - ENTRY_KEYS)
    if unknown:
        raise fail(f"{key}.{unknown[0]}",
                   f"unknown key; allowed: {', '.join(sorted(ENTRY_KEYS))}")
    for k in REQUIRED:
        if k not in e:
            raise fail(f"{key}.{k}", "missing (required)")
    for k in ("name", "match"):
        if not isinstance(e[k], str) or not e[k].strip():
            raise fail(f"{key}.{k}", f"expected a non-empty string. Received: {e[k]!r}")
    if e["name"] in seen:
        raise fail(f"{key}.name", f"duplicate name {e['name']!r}")
    seen.add(e["name"])
    if e["device"] not in DEVICES:
        raise fail(f"{key}.device",
                   f"expected one of {', '.join(DEVICES)}. Received: {e['device']!r}")
    per_core = e.get("per_core", False)
    if not isinstance(per_core, bool):
        raise fail(f"{key}.per_core", f"expected true or false. Received: {per_core!r}")
    source = e.get("source", "")
    if not isinstance(source, str):
        raise fail(f"{key}.source", f"expected a string. Received: {source!r}")
    return Peak(e["name"], e["match"], e["device"], per_core, source,
                _peaks(e["peaks"], key, fail))


def _peaks(peaks: Any, key: str,
           fail: Callable[[str, str], ReportInputError]) -> dict[str, float]:
    """An entry's dtype -> GFLOP/s mapping, every value a positive number."""
    if not isinstance(peaks, dict) or not peaks:
        raise fail(f"{key}.peaks", "expected a mapping of dtype to GFLOP/s")
    clean: dict[str, float] = {}
    for dtype, v in peaks.items():
        if dtype not in DTYPES:
            raise fail(f"{key}.peaks.{dtype}",
                       f"unknown dtype; allowed: {', '.join(DTYPES)}")
        if (isinstance(v, bool) or not isinstance(v, int | float)
                or not math.isfinite(v) or v <= 0):
            raise fail(f"{key}.peaks.{dtype}",
                       f"expected a positive number of GFLOP/s. Received: {v!r}")
        clean[dtype] = float(v)
    return clean


def find(peaks: list[Peak], device: str, model: str) -> Peak | None:
    """The first entry for `device` whose `match` is in `model` (case-insensitive)."""
    low = model.lower()
    for p in peaks:
        if p.device == device and p.match.lower() in low:
            return p
    return None
