"""Per-framework runs of a matmul split across a device mesh (imported in mesh workers only).

Each module runs one `harness.mesh` layout through its framework's own sharding and
autodiff and returns a `Result`: the gathered Y, dX, dW, the problems found with the
results' placements (sharding not as promised, replicas that disagree), and the
collectives the framework issued.

`BUGS` are planted for the selftest (`harness.mesh_selftest`): each is a sharded backward
wrong in one way a real framework has shipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BUGS: dict[str, str] = {
    "": "none (control): explicit collectives, correct",
    "no_allreduce": "missing all-reduce in the backward pass (openxla/xla#40034)",
    "scaled": "gradients scaled by the mesh size (pytorch/torchtitan#2106)",
    "rolled": "a shard placed at the wrong offset (pytorch/pytorch#166598)",
    # isolation faults, for the tests: a group that hangs or dies mid-cell
    "hang": "one device's process hangs",
    "crash": "one device's process dies",
}


@dataclass
class Result:
    outputs: dict[str, np.ndarray]
    placement: list[str] = field(default_factory=list)  # problems; empty when as promised
    collectives: str = ""  # e.g. "all-reduce=2 all-gather=1"
    shardings: str = ""  # what the results carried, for the row's note
