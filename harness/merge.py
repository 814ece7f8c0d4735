"""`matmul-harness merge`: verify folders from many machines and shards as one verify.csv.

Folders can be merged when their runs agree on what decides any one cell's result (the
cases, the seed and the harness version: `store.cells_fingerprint`); they may differ in
frameworks, devices, precision modes and shard, so CPU shards and a GPU job combine.
Every row keeps its machine. A cell found twice on one machine is refused unless a rule
(`--prefer newest|first`) says which to keep; the same cell on two machines is two
results, both kept. A shard missing from a sharded run is refused unless
`--allow-missing`, which records it in run.json.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness import __version__, runfiles, store
from harness.adapters import registry
from harness.config import Config
from harness.plan import Key, group_cells, parse_shard, plan, row_key, shard_of
from harness.results import ResultsFileError, Row, read_csv

PREFER = ("newest", "first")


class MergeError(ResultsFileError):
    """Folders that cannot be merged as asked; the CLI shows it on one line, exit 2."""


@dataclass(frozen=True)
class Source:
    folder: Path
    config: Config
    record: store.RunRecord
    run: dict[str, Any]  # run.json
    rows: list[Row]  # machine filled in

    @property
    def machine(self) -> str:
        system = self.run.get("system") or {}
        return str(system.get("machine_name") or system.get("hostname") or self.folder.name)

    @property
    def group(self) -> str:
        """The run's config (frameworks, devices... but not the shard)."""
        return store.fingerprint(self.config)


def read_source(folder: Path) -> Source:
    """A finished verify folder: its config, record, run.json and rows."""
    for name in (runfiles.CONFIG_FILE, runfiles.VERIFY_FILE, runfiles.RUN_FILE):
        if not (folder / name).is_file():
            why = (f"{runfiles.PARTIAL_FILE} is there: the run is unfinished; finish it with "
                   f"matmul-harness verify --resume {folder}"
                   if (folder / runfiles.PARTIAL_FILE).is_file()
                   else "expected the --out folder of a finished `matmul-harness verify`")
            raise MergeError(f"{folder}: no {name}; {why}")
    cfg, record = store.load_config(folder, tuple(registry()))
    try:
        run = json.loads((folder / runfiles.RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MergeError(f"{folder / runfiles.RUN_FILE}: corrupt ({exc})") from None
    if not isinstance(run, dict):
        raise MergeError(f"{folder / runfiles.RUN_FILE}: not a run record (a JSON object)")
    src = Source(folder, cfg, record, run, [])
    rows = [replace(r, machine=r.machine or src.machine)
            for r in read_csv(folder / runfiles.VERIFY_FILE)]
    by_key = {c.key: c for c in plan(cfg)}
    for key, cell_rows in group_cells(rows).items():
        bad = store.mismatch(cell_rows, by_key.get(key))
        if bad:
            raise MergeError(f"{folder / runfiles.VERIFY_FILE}: {bad}; it does not hold the "
                             f"results of {folder / runfiles.CONFIG_FILE}")
    return replace(src, rows=rows)


def _check_configs(sources: Sequence[Source]) -> None:
    first = sources[0]
    want = store.cells_fingerprint(first.config)
    for s in sources[1:]:
        got = store.cells_fingerprint(s.config)
        if got != want:
            raise MergeError(
                f"{first.folder} and {s.folder} ran different configs (their cases, seed or "
                f"harness version differ: fingerprint {want} vs {got}); merge only runs of "
                "one config"
            )


def missing_shards(sources: Sequence[Source]) -> list[str]:
    """For each config run in shards, the shards no folder holds: 'I/N of <folder>'s run'."""
    out: list[str] = []
    by_group: dict[str, list[Source]] = {}
    for s in sources:
        by_group.setdefault(s.group, []).append(s)
    for members in by_group.values():
        if any(not s.record.shard for s in members):
            continue  # an unsharded run of this config holds every cell
        full = plan(members[0].config)
        covered = {c.key for s in members
                   for c in shard_of(full, parse_shard(s.record.shard))}
        for n in sorted({parse_shard(s.record.shard).count for s in members}):
            for i in range(1, n + 1):
                part = shard_of(full, parse_shard(f"{i}/{n}"))
                if any(c.key not in covered for c in part):
                    out.append(f"{i}/{n} of {members[0].folder}'s run "
                               f"({sum(c.key not in covered for c in part)} cells)")
    return out


def _pick(sources: Sequence[Source], prefer: str | None) -> list[tuple[Source, list[Row]]]:
    """Each (machine, cell) once: the chosen source's rows; MergeError on an unresolved
    duplicate."""
    chosen: dict[tuple[str, Key], tuple[Source, list[Row]]] = {}
    for s in sources:
        for key, rows in group_cells(s.rows).items():
            slot = (rows[0].machine, key)
            held = chosen.get(slot)
            if held is None:
                chosen[slot] = (s, rows)
                continue
            if prefer is None:
                raise MergeError(
                    f"cell {', '.join(key)} on machine {rows[0].machine} is in both "
                    f"{held[0].folder} and {s.folder}; keep one with --prefer newest|first"
                )
            newer = _started(s) > _started(held[0])
            if prefer == "newest" and newer:
                chosen[slot] = (s, rows)
    return list(chosen.values())


def _started(s: Source) -> str:
    return s.record.resumed[-1] if s.record.resumed else s.record.started


def _order(sources: Sequence[Source]) -> dict[Key, int]:
    """Plan order over every source's plan (first seen first)."""
    order: dict[Key, int] = {}
    for s in sources:
        for c in plan(s.config):
            order.setdefault(c.key, len(order))
    return order


def merge(folders: Sequence[Path], out: Path, *, prefer: str | None = None,
          allow_missing: bool = False, force: bool = False) -> tuple[list[Row], list[str]]:
    """Write `out`/verify.csv and run.json from `folders`: the rows, and the shards missing
    (recorded, when `allow_missing`; a MergeError otherwise)."""
    if prefer is not None and prefer not in PREFER:
        raise MergeError(f"--prefer {prefer!r}: allowed: {', '.join(PREFER)}")
    if not folders:
        raise MergeError("merge: no folders given; pass the verify --out folders to combine")
    seen: set[Path] = set()
    for f in folders:
        if f.resolve() in seen:
            raise MergeError(f"{f}: given twice")
        seen.add(f.resolve())
        if f.resolve() == out.resolve():
            raise MergeError(f"--out {out} is one of the folders to merge; choose another")
    sources = [read_source(f) for f in folders]
    _check_configs(sources)
    missing = missing_shards(sources)
    if missing and not allow_missing:
        raise MergeError(f"missing shard {missing[0]}"
                         + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                         + "; merge its folder too, or record the gap with --allow-missing")
    picked = _pick(sources, prefer)
    order = _order(sources)
    machines = list(dict.fromkeys(r.machine for s in sources for r in s.rows))
    picked.sort(key=lambda p: (order.get(row_key(p[1][0]), len(order)),
                               machines.index(p[1][0].machine)))
    rows = [r for _, rs in picked for r in rs]
    out.mkdir(parents=True, exist_ok=True)
    with store.claim(out):
        store.prepare_fresh(out, force)
        store.write_rows(out, rows)
        store.write_run_file(out, _meta(sources, missing, prefer))
    return rows, missing


def _meta(sources: Sequence[Source], missing: list[str], prefer: str | None) -> dict[str, Any]:
    systems: dict[str, Any] = {}
    for s in sources:
        systems.setdefault(s.machine, s.run.get("system") or {})
    first = sources[0]
    return {
        "harness_version": __version__,
        "merged": store.stamp(),
        "merged_on": socket.gethostname(),
        "started": max(_started(s) for s in sources),
        "cells_fingerprint": store.cells_fingerprint(first.config),
        "prefer": prefer or "",
        "missing_shards": missing,
        "sources": [{"folder": str(s.folder), "machine": s.machine, "shard": s.record.shard,
                     "fingerprint": s.record.fingerprint, "started": s.record.started,
                     "cells": len(group_cells(s.rows))} for s in sources],
        "systems": systems,  # one system card per machine (the report draws each)
        "system": first.run.get("system") or {},  # the first machine's, for older readers
    }

