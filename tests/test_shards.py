"""Sharded runs and `merge`: slices of one plan, run apart, combine to the unsharded table."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from harness import store
from harness.cases import Case
from harness.cli import main
from harness.config import parse
from harness.plan import (
    Cell,
    ShardError,
    assign,
    cost,
    group_cells,
    parse_shard,
    plan,
    shard_of,
)
from harness.results import read_csv, write_csv
from tests.conftest import need

CFG = """
frameworks: [numpy, torch]
devices: [cpu]
dtypes: [float32, float64]
precision: [pinned]
seed: 3
cases:
  - {name: square, x: [6, 6], w: [6, 6]}
  - {name: tall, x: [40, 3], w: [3, 5]}
  - {name: vec_vec, x: [5], w: [5]}
"""


def _cells(rng: random.Random) -> list[Cell]:
    cases = [Case(f"c{i}", (rng.randint(1, 64), k := rng.randint(0, 64)), (k, rng.randint(1, 64)))
             for i in range(rng.randint(1, 12))]
    fws = rng.sample(["numpy", "torch", "jax", "tensorflow"], rng.randint(1, 4))
    dts = rng.sample(["float16", "float32", "float64", "complex64"], rng.randint(1, 4))
    return [Cell(f, m, "cpu", t, c) for f in fws for m in ("pinned", "default")
            for t in dts for c in cases]


@pytest.mark.parametrize("seed", range(25))
def test_shards_partition_the_plan_deterministically_and_balanced(seed: int) -> None:
    rng = random.Random(seed)
    cells = _cells(rng)
    n = rng.randint(1, 7)
    where = assign(cells, n)
    assert where == assign(list(cells), n)  # deterministic
    parts = [shard_of(cells, parse_shard(f"{i}/{n}")) for i in range(1, n + 1)]
    assert sorted(c.key for p in parts for c in p) == sorted(c.key for c in cells)
    for p in parts:  # each slice in plan order
        assert [cells.index(c) for c in p] == sorted(cells.index(c) for c in p)
    loads = [sum(map(cost, p)) for p in parts]
    mean, largest = sum(loads) / n, max(map(cost, cells))
    assert all(abs(load - mean) <= largest for load in loads)  # balanced within one cell
    groups = len({(c.framework, c.mode) for c in cells})
    assert sum(len({(c.framework, c.mode) for c in p}) for p in parts) <= groups + n - 1


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", "-1/2", "", "1/2/3", "1/ "])
def test_malformed_shard_is_refused(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ShardError):
        parse_shard(text)
    assert main(["verify", f"--shard={text}", "--out", "/nonexistent/never"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--shard" in err and "I/N" in err


def _plain(row: object) -> tuple[object, ...]:
    """A row's values with NaN as None (NaN != NaN)."""
    return tuple(None if v != v else v for v in vars(row).values())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One config run whole and in three shards (numpy and torch)."""
    need("torch")
    root = tmp_path_factory.mktemp("shards")
    (root / "c.yaml").write_text(CFG)
    for name, extra in [("all", []), ("s1", ["--shard", "1/3"]), ("s2", ["--shard", "2/3"]),
                        ("s3", ["--shard", "3/3"])]:
        code = main(["verify", "--config", str(root / "c.yaml"), "--out", str(root / name),
                     "--jobs", "2", *extra])
        assert code == 0, name
    return root


def test_shards_merged_give_the_unsharded_table(runs: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    sizes = [len(read_csv(runs / s / "verify.csv")) for s in ("s1", "s2", "s3")]
    assert all(sizes) and sum(sizes) == len(read_csv(runs / "all" / "verify.csv"))
    assert main(["merge", str(runs / "s3"), str(runs / "s1"), str(runs / "s2"),
                 "--out", str(runs / "m")]) == 0
    merged, whole = read_csv(runs / "m" / "verify.csv"), read_csv(runs / "all" / "verify.csv")
    assert list(map(_plain, merged)) == list(map(_plain, whole))
    assert (runs / "m" / "verify.csv").read_bytes() == (runs / "all" / "verify.csv").read_bytes()
    meta = json.loads((runs / "m" / "run.json").read_text())
    assert sorted(s["shard"] for s in meta["sources"]) == ["1/3", "2/3", "3/3"]
    assert meta["missing_shards"] == [] and len(meta["systems"]) == 1


def test_a_shard_is_part_of_the_runs_identity(runs: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    records = {s: json.loads((runs / s / "config.json").read_text())["run"]
               for s in ("all", "s1", "s2")}
    assert records["s1"]["shard"] == "1/3" and records["all"]["shard"] == ""
    assert len({r["fingerprint"] for r in records.values()}) == 3
    assert main(["verify", "--resume", str(runs / "s1"), "--shard", "2/3"]) == 2
    assert "--shard" in capsys.readouterr().err


def test_resume_of_an_interrupted_shard_runs_only_its_missing_cells(
        runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "s2"
    folder.mkdir()
    (folder / "config.json").write_bytes((runs / "s2" / "config.json").read_bytes())
    done = group_cells(read_csv(runs / "s2" / "verify.csv"))
    cfg, record = store.load_config(folder, ("numpy", "torch"))
    cells = shard_of(plan(cfg), parse_shard("2/3"))
    assert set(done) == {c.key for c in cells}
    # killed before its last numpy cell (numpy: no torch start-up to wait for)
    lost = [c.key for c in cells if c.framework == "numpy"][-1]
    log = store.CellLog(folder, {k: rs for k, rs in done.items() if k != lost},
                        record.fingerprint)
    log.close()
    assert main(["verify", "--resume", str(folder)]) == 0
    assert (folder / "verify.csv").read_bytes() == (runs / "s2" / "verify.csv").read_bytes()


def test_merge_refuses_what_it_cannot_combine(runs: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    def merge(*argv: str) -> tuple[int, str]:
        code = main(["merge", *argv])
        err = capsys.readouterr().err
        assert code != 2 or err.count("\n") == 1, err
        return code, err

    code, err = merge(str(runs / "s1"), str(runs / "s3"), "--out", str(tmp_path / "a"))
    assert code == 2 and "missing shard 2/3" in err and "--allow-missing" in err
    code, err = merge(str(runs / "s1"), str(runs / "s3"), "--out", str(tmp_path / "b"),
                      "--allow-missing")
    assert code == 0 and "2/3" in err
    meta = json.loads((tmp_path / "b" / "run.json").read_text())
    assert meta["missing_shards"] and meta["missing_shards"][0].startswith("2/3")

    code, err = merge(str(runs / "s1"), str(runs / "all"), "--out", str(tmp_path / "c"))
    assert code == 2 and str(runs / "s1") in err and str(runs / "all") in err
    assert "is in both" in err and "--prefer" in err
    assert merge(str(runs / "s1"), str(runs / "all"), "--out", str(tmp_path / "d"),
                 "--prefer", "first")[0] == 0
    assert merge(str(runs / "all"), str(runs / "s1"), "--out", str(tmp_path / "e"),
                 "--prefer", "newest")[0] == 0
    whole = (runs / "all" / "verify.csv").read_bytes()
    assert (tmp_path / "d" / "verify.csv").read_bytes() == whole

    other = tmp_path / "other"  # another seed: the same cell names mean other inputs
    other.mkdir()
    data = json.loads((runs / "s2" / "config.json").read_text())
    data["seed"] = 4
    cfg = parse({k: v for k, v in data.items() if k != "run"}, "x", ("numpy", "torch"))
    data["run"]["fingerprint"] = store.fingerprint(cfg, "2/3")
    (other / "config.json").write_text(json.dumps(data))
    for name in ("verify.csv", "run.json"):
        (other / name).write_bytes((runs / "s2" / name).read_bytes())
    code, err = merge(str(runs / "s1"), str(other), str(runs / "s3"), "--out",
                      str(tmp_path / "f"))
    assert code == 2 and "different configs" in err and str(other) in err

    edited = tmp_path / "edited"  # a verify.csv that is not its config.json's
    edited.mkdir()
    for name in ("config.json", "run.json"):
        (edited / name).write_bytes((runs / "s2" / name).read_bytes())
    rows = read_csv(runs / "s2" / "verify.csv")
    write_csv([replace(rows[0], case="bogus"), *rows[1:]], edited / "verify.csv")
    code, err = merge(str(runs / "s1"), str(edited), str(runs / "s3"), "--out",
                      str(tmp_path / "h"))
    assert code == 2 and "bogus" in err and "not in the run's plan" in err

    code, err = merge(str(runs / "s1"), "--out", str(runs / "s1"))
    assert code == 2
    code, err = merge(str(tmp_path / "nothing"), "--out", str(tmp_path / "g"))
    assert code == 2 and "nothing" in err


def test_report_draws_one_card_per_machine_of_a_merged_set(runs: Path, tmp_path: Path) -> None:
    """Shards from two machines: the merged rows keep each, the report has both cards."""
    from harness.report.load import load

    moved = tmp_path / "s2"
    moved.mkdir()
    for name in ("config.json", "run.json"):
        (moved / name).write_bytes((runs / "s2" / name).read_bytes())
    rows = read_csv(runs / "s2" / "verify.csv")
    write_csv([replace(r, machine="box-b-H100") for r in rows], moved / "verify.csv")
    meta = json.loads((moved / "run.json").read_text())
    meta["system"]["machine_name"] = "box-b-H100"
    (moved / "run.json").write_text(json.dumps(meta))
    assert main(["merge", str(runs / "s1"), str(moved), str(runs / "s3"),
                 "--out", str(tmp_path / "m")]) == 0
    merged = read_csv(tmp_path / "m" / "verify.csv")
    assert {r.machine for r in merged} == {rows[0].machine, "box-b-H100"}
    empty = tmp_path / "asv"
    empty.mkdir()
    loaded = load([tmp_path / "m"], empty)
    assert set(loaded.machines) == {r.machine for r in merged}
    assert loaded.machines["box-b-H100"].card["machine_name"] == "box-b-H100"
    b = loaded.table[loaded.table["machine"] == "box-b-H100"]
    assert len(b) == len(rows)
