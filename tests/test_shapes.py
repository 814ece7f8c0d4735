"""The benchmark shape catalogue: ids, FLOPs, and DeepBench's roles and layer sizes."""

from __future__ import annotations

import pytest

from harness import shapes


def test_square_sizes_are_the_powers_of_two_from_64_to_2048() -> None:
    assert shapes.SQUARE == tuple(f"{s}x{s}x{s}" for s in (64, 128, 256, 512, 1024, 2048))


@pytest.mark.parametrize("bad", ["", "1024", "1x2", "0x4x4", "4x4x-1", "4X4X4", "4x4x4x4",
                                 " 4x4x4", "a x4x4", "04x4x4"])
def test_parse_shape_rejects_malformed_ids(bad: str) -> None:
    with pytest.raises(shapes.ShapeIdError, match="MxKxN"):
        shapes.parse_shape(bad)


def test_flops_count_two_per_multiply_add_and_one_product_per_pass() -> None:
    assert shapes.parse_shape("16x500000x1024") == (16, 500000, 1024)
    assert shapes.flops("2x3x4", "forward") == 48
    assert shapes.flops("2x3x4", "backward") == 96
    assert shapes.flops("1024x1024x1024", "forward_backward") == 6 * 1024**3
    with pytest.raises(ValueError, match="unknown pass"):
        shapes.flops("2x3x4", "jvp")


def test_deepbench_has_every_training_gemm_with_its_role() -> None:
    assert len(shapes.DEEPBENCH) == 160  # DeepBench's training_set
    assert len({g.shape_id for g in shapes.DEEPBENCH}) == 83  # distinct products
    assert {g.role for g in shapes.DEEPBENCH} == set(shapes.ROLES)
    counts = {r: sum(g.role == r for g in shapes.DEEPBENCH) for r in shapes.ROLES}
    assert counts == {"forward": 77, "dX": 73, "dW": 10}  # NN, TN and NT entries


@pytest.mark.parametrize(("entry", "role", "layer", "shape"), [
    # DeepBench (m, n, k, a_t, b_t), column-major -> (role, batch, in, out), row-major MxKxN
    ((2560, 16, 2560, False, False), "forward", (16, 2560, 2560), "16x2560x2560"),
    ((7680, 64, 2560, True, False), "dX", (64, 7680, 2560), "64x2560x7680"),
    ((7680, 5481, 2560, False, True), "dW", (2560, 5481, 7680), "5481x2560x7680"),
    ((1024, 16, 500000, False, False), "forward", (16, 500000, 1024), "16x500000x1024"),
])
def test_deepbench_entries_map_to_the_layer_and_the_row_major_product(
    entry: tuple[int, int, int, bool, bool], role: str, layer: tuple[int, int, int],
    shape: str,
) -> None:
    m, n, k, _, _ = entry
    gemm = shapes.DeepBenchGemm(role, *layer)
    assert gemm in shapes.DEEPBENCH
    assert gemm.shape_id == shape == f"{n}x{k}x{m}"
    # the product really is the layer's: forward X @ W, dX = G @ W^T, dW = X^T @ G
    batch, in_, out = layer
    expect = {"forward": (batch, in_, out), "dX": (batch, out, in_), "dW": (in_, batch, out)}
    assert gemm.mkn == expect[role]


def test_the_suite_times_deepbench_gemms_only() -> None:
    assert set(shapes.DEEPBENCH_SUITE) <= {g.shape_id for g in shapes.DEEPBENCH}
    assert {g.role for g in shapes.DEEPBENCH if g.shape_id in shapes.DEEPBENCH_SUITE} == set(
        shapes.ROLES)
