"""Loading and strictly validating run configs (YAML).

Every problem is a `ConfigError` whose one-line message names the file, the key or case,
what was received and what is allowed; the CLI prints it and exits 2, with no traceback.
"""

from __future__ import annotations

import difflib
import importlib.resources
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.cases import Case, ShapeError, geometry
from harness.dtypes import DEVICES, DTYPES

KEYS: tuple[str, ...] = (
    "frameworks", "devices", "dtypes", "precision", "cases", "seed", "cell_timeout", "timeout",
    "check",
)
# How results are checked (harness/sampled.py): `full` against a whole float64 reference,
# `sampled` on sampled elements and projections, `auto` sampled only for large products.
CHECKS: tuple[str, ...] = ("auto", "full", "sampled")
PRECISION_MODES: tuple[str, ...] = ("pinned", "default")
CELL_TIMEOUT_S = 300.0  # one cell, worst case a large product on a slow CPU
TIMEOUT_S = 7200.0  # the whole run
CASE_KEYS: tuple[str, ...] = ("name", "x", "w")
DEFAULT_NAME = "default.yaml"
MAX_CONFIG_BYTES = 1 << 20  # a config is a few KiB; this stops /dev/zero and runaway files
MAX_QUOTE = 120  # characters of a received value quoted in a message
MAX_SEED = 2**64 - 1  # numpy's SeedSequence takes more, but no config needs it
# One rule for case names: they become file-name-like ids, CSV cells, JUnit names and
# report text, so they are short, printable ASCII and never start with a sign or a dot
# (a spreadsheet runs a cell starting with = + - @ as a formula).
CASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
CASE_NAME_RULE = ("1-100 characters from A-Z a-z 0-9 _ . + -, starting with a letter or a "
                  "digit")


class ConfigError(ValueError):
    """A config that cannot be used; the message is meant for the user as is."""


@dataclass(frozen=True)
class Config:
    frameworks: tuple[str, ...]
    devices: tuple[str, ...]
    dtypes: tuple[str, ...]
    cases: tuple[Case, ...]
    seed: int
    source: str  # where it came from, for messages and the run record
    precision: tuple[str, ...] = ("pinned",)  # pinned: full float32 forced; default: as shipped
    cell_timeout: float = CELL_TIMEOUT_S  # seconds; a longer cell is killed: error
    timeout: float = TIMEOUT_S  # seconds for the whole run; what is left then: error
    check: str = "auto"  # full, sampled or auto (sampled above a size: harness/sampled.py)


def packaged(name: str) -> Path:
    """A file of configs/ (the default config, known divergences, ...).

    In a checkout (and an editable install) it is read in place; a wheel ships the same
    files as the `harness.configs` package data (see pyproject.toml).
    """
    checkout = Path(__file__).resolve().parents[1] / "configs" / name
    if checkout.is_file():
        return checkout
    return Path(str(importlib.resources.files("harness.configs") / name))


def default_path() -> Path:
    """The embedded default config: configs/default.yaml."""
    return packaged(DEFAULT_NAME)


def clip(value: Any, limit: int = MAX_QUOTE) -> str:
    """`repr(value)` for a message, cut to `limit` characters with an ellipsis.

    repr escapes control characters and lone surrogates, so the message stays one
    printable line whatever the config held.
    """
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader without its three surprises for a config.

    Aliases (`*name`) are refused: a few hundred bytes of nested aliases ("billion
    laughs") expand into gigabytes. Duplicate keys are refused (PyYAML lets the last one
    win silently). Floats in exponent form without a dot (`1e7`, `1e308`), which YAML 1.1
    reads as strings, are floats as in YAML 1.2; `.inf` stays a float too.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, f"aliases are not allowed in a config (found *{event.anchor}); "
                "write the value out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable: the base class says so
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {clip(key)}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_text(path: Path, src: str, limit: int = MAX_CONFIG_BYTES) -> str:
    """A config file's text: at most `limit` bytes, UTF-8 (a BOM is fine), else ConfigError."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)  # bounded: /dev/zero or a huge file stops here
    except FileNotFoundError:
        raise ConfigError(f"{src}: config file not found; pass an existing --config") from None
    except OSError as exc:
        raise ConfigError(f"{src}: cannot read config file: {exc.strerror}") from None
    if len(data) > limit:
        raise ConfigError(f"{src}: config file is larger than {limit / 2**20:g} MiB; "
                          "a config lists frameworks, dtypes and cases, a few KiB at most")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{src}: config file is UTF-16 text; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{src}: config file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8") from None


def read_yaml(path: Path, src: str) -> Any:
    """The parsed YAML of a config file; ConfigError (one line) when missing or malformed."""
    text = read_text(path, src)
    try:
        return yaml.load(text, Loader=StrictLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{src}: YAML syntax error{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{src}: YAML nested too deeply to be a config") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{src}: unusable value: {clip(str(exc))}") from None


def load(path: str | Path | None, known_frameworks: Sequence[str]) -> Config:
    """Read and validate a config file; `None` means the embedded default."""
    p = Path(path) if path is not None else default_path()
    src = str(path) if path is not None else f"{DEFAULT_NAME} (embedded default)"
    return parse(read_yaml(p, src), src, known_frameworks)


def parse(data: Any, src: str, known_frameworks: Sequence[str]) -> Config:
    """Validate an already-parsed mapping."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{src}: expected a mapping with keys {', '.join(KEYS)}; "
            f"received {type(data).__name__}"
        )
    check_keys(data, KEYS, src, "key")
    return Config(
        frameworks=_names(data, "frameworks", known_frameworks, src),
        devices=_names(data, "devices", DEVICES, src),
        dtypes=_names(data, "dtypes", tuple(DTYPES), src),
        cases=_cases(data.get("cases"), src),
        precision=_names(data, "precision", PRECISION_MODES, src, default=("pinned",)),
        seed=_seed(data.get("seed", 0), src),
        source=src,
        cell_timeout=seconds(data.get("cell_timeout", CELL_TIMEOUT_S), f"{src}: cell_timeout"),
        timeout=seconds(data.get("timeout", TIMEOUT_S), f"{src}: timeout"),
        check=check_name(data.get("check", "auto"), f"{src}: check"),
    )


# The validation helpers below are shared with the bench config (harness/suite.py), which
# passes its own error class: one wording for every config the harness reads.


def check_keys(data: dict[Any, Any], allowed: Sequence[str], src: str, what: str = "key",
               error: type[ConfigError] = ConfigError) -> None:
    """Every key of `data` is one of `allowed`, else `error` naming the closest."""
    for key in data:
        if key not in allowed:
            raise error(
                f"{src}: unknown {what} {clip(key)}{did_you_mean(str(key), allowed)}; "
                f"allowed: {', '.join(allowed)}"
            )


def did_you_mean(got: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(got, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def name_list(value: Any, key: str, allowed: Sequence[str], src: str,
              groups: dict[str, tuple[str, ...]] | None = None,
              error: type[ConfigError] = ConfigError) -> tuple[str, ...]:
    """A name or a non-empty list of names drawn from `allowed` (a name of `groups` stands
    for its members), de-duplicated in order; else `error`."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise error(
            f"{src}: {key} must be a non-empty list drawn from {', '.join(allowed)}; "
            f"received {clip(value)}"
        )
    out: list[str] = []
    for item in value:
        if groups and item in groups:
            out.extend(groups[item])
        elif item in allowed:
            out.append(item)
        else:
            names = [*(groups or {}), *allowed]
            raise error(
                f"{src}: {key}: unknown value {clip(item)}{did_you_mean(str(item), names)}; "
                f"allowed: {', '.join(names)}"
            )
    return tuple(dict.fromkeys(out))  # de-duplicated, order kept


def _names(data: dict[str, Any], key: str, allowed: Sequence[str], src: str,
           default: Sequence[str] | None = None) -> tuple[str, ...]:
    """A list of names drawn from `allowed`; a missing key means `default` (all of them)."""
    if key not in data:
        return tuple(allowed if default is None else default)
    return name_list(data[key], key, allowed, src)


def validate_selection(
    values: Sequence[str], allowed: Sequence[str], flag: str
) -> tuple[str, ...]:
    """Check command-line selections (`--dtype`, ...) with the same wording as configs."""
    for v in values:
        if v not in allowed:
            raise ConfigError(
                f"{flag} {clip(v)}: unknown value{did_you_mean(v, allowed)}; "
                f"allowed: {', '.join(allowed)}"
            )
    return tuple(dict.fromkeys(values))


def check_name(value: Any, what: str) -> str:
    """One of CHECKS (the config key `check` and the `--check` flag alike)."""
    if value not in CHECKS:
        raise ConfigError(f"{what}: unknown value {value!r}{did_you_mean(str(value), CHECKS)}; "
                          f"allowed: {', '.join(CHECKS)}")
    return str(value)


def _seed(value: Any, src: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{src}: seed must be a non-negative integer below 2**64; "
                          f"received {clip(value)}")
    return value


def seconds(value: Any, what: str) -> float:
    """A positive number of seconds (config keys and command-line flags alike).

    `.inf` (YAML) or `inf` (flag) means no limit; so does any value too large for a clock
    (an integer beyond float range becomes inf). The orchestrator never hands one to a
    system call as is: it waits in slices (see orchestrator.MAX_WAIT_S).
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{what} must be a positive number of seconds; received "
                          f"{clip(value)} (.inf in YAML, inf on the command line: no limit)")
    try:
        return float(value)
    except OverflowError:  # an int beyond 1e308
        return math.inf


def _cases(value: Any, src: str) -> tuple[Case, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(
            f"{src}: cases must be a non-empty list of {{name, x: [dims], w: [dims]}}; "
            f"received {clip(value)}"
        )
    cases: list[Case] = []
    for i, item in enumerate(value):
        case = _case(item, f"{src}: cases[{i}]")
        if any(c.name == case.name for c in cases):
            raise ConfigError(f"{src}: cases[{i}]: duplicate case name {clip(case.name)}")
        cases.append(case)
    return tuple(cases)


def _case(item: Any, where: str) -> Case:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping {{name, x, w}}; received {clip(item)}")
    check_keys(item, CASE_KEYS, where, "case key")
    for key in CASE_KEYS:
        if key not in item:
            raise ConfigError(f"{where}: missing key {key!r}; a case needs {', '.join(CASE_KEYS)}")
    name = item["name"]
    if not isinstance(name, str) or not CASE_NAME.fullmatch(name):
        raise ConfigError(f"{where}: name must be {CASE_NAME_RULE}; received {clip(name)}")
    where = f"{where} ({name})"
    x, w = _shape(item["x"], f"{where}: x"), _shape(item["w"], f"{where}: w")
    try:
        geometry(x, w)
    except ShapeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return Case(name=name, x=x, w=w)


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list of dims such as [3, 4]; received {clip(value)}")
    if not value:
        raise ConfigError(f"{where} is [] (a 0-D operand); matmul needs at least 1-D")
    for d in value:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise ConfigError(
                f"{where} must hold non-negative integers; received {clip(value)} "
                f"(bad dim {clip(d)})"
            )
    return tuple(value)
