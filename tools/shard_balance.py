"""How evenly `verify --shard I/N` splits a config, and how many worker start-ups it costs
(a measurement of the estimate, not of wall time).

For each N: the estimated cost of the largest shard over the mean, and the framework x
precision-mode groups each shard holds (each is one worker start-up there).

    .venv/bin/python tools/shard_balance.py [--config configs/default.yaml] [--device cpu]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from harness.adapters import registry
from harness.config import load
from harness.plan import assign, cost, plan


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML config (default: the embedded default)")
    p.add_argument("--device", action="append", default=[], help="only this device")
    p.add_argument("--max-shards", type=int, default=6)
    args = p.parse_args()
    cfg = load(args.config, tuple(registry()))
    if args.device:
        cfg = replace(cfg, devices=tuple(args.device))
    cells = plan(cfg)
    groups = len({(c.framework, c.mode) for c in cells})
    print(f"{len(cells)} cells, {groups} framework x mode groups")
    for n in range(1, args.max_shards + 1):
        where = assign(cells, n)
        loads = [sum(cost(c) for c, s in zip(cells, where, strict=True) if s == i)
                 for i in range(n)]
        starts = [len({(c.framework, c.mode) for c, s in zip(cells, where, strict=True)
                       if s == i}) for i in range(n)]
        print(f"N={n}: largest/mean estimated cost {max(loads) / (sum(loads) / n):.3f}, "
              f"start-ups per shard {starts} ({sum(starts)} in all, at most {groups + n - 1})")


if __name__ == "__main__":
    main()
