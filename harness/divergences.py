"""Known divergences: framework behaviour that differs from the model, recorded, not hidden.

`configs/known_divergences.yaml` holds one entry per line, each with the reason and an
upstream link. Two kinds (`check`):

- `bias`: the float16/bfloat16 bias test is reported in the row's note as
  `known divergence: ...` instead of failing the cell; the per-element check still applies.
- `error`: an error whose message contains `match` is a documented framework limitation:
  the quantity is a skip whose reason says `known limitation: ...`, never a silent pass.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.config import ConfigError, packaged

FILE = "known_divergences.yaml"
FIELDS = ("framework", "device", "dtype", "quantity", "check", "match", "reason", "link")
CHECKS = ("bias", "error")


@dataclass(frozen=True)
class Divergence:
    framework: str
    device: str  # a device, or "*"
    dtype: str  # a dtype, or "*"
    quantity: str  # a quantity, or "*"
    check: str  # what it excuses: "bias" or "error"
    match: str  # for "error": text the error message must contain
    reason: str
    link: str

    def matches(self, framework: str, device: str, dtype: str, quantity: str, check: str,
                message: str = "") -> bool:
        return (
            (self.framework, self.check) == (framework, check)
            and self.device in ("*", device)
            and self.dtype in ("*", dtype)
            and self.quantity in ("*", quantity)
            and self.match in message
        )


@functools.cache
def load(path: Path | None = None) -> tuple[Divergence, ...]:
    p = path or packaged(FILE)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: cannot read known divergences ({exc})") from None
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or set(item) != set(FIELDS):
            raise ConfigError(
                f"{p}: entry {i}: expected the keys {', '.join(FIELDS)}; received {item!r}"
            )
        if not str(item["link"]).startswith("https://"):
            raise ConfigError(f"{p}: entry {i}: link must be an https:// URL upstream")
        if item["check"] not in CHECKS:
            raise ConfigError(f"{p}: entry {i}: check {item['check']!r}; allowed: "
                              f"{', '.join(CHECKS)}")
        out.append(Divergence(**{k: str(item[k]) for k in FIELDS}))
    return tuple(out)


def find(framework: str, device: str, dtype: str, quantity: str, check: str,
         message: str = "") -> Divergence | None:
    return next((d for d in load()
                 if d.matches(framework, device, dtype, quantity, check, message)), None)
