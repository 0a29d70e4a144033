"""Golden GEMM: exact integer arithmetic and hardware wrap-around."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.gemm import matmul, wrap_signed


def test_matches_python_integers():
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, size=(7, 13))
    b = rng.integers(-128, 128, size=(13, 5))
    want = [
        [sum(int(a[i, k]) * int(b[k, j]) for k in range(13)) for j in range(5)] for i in range(7)
    ]
    assert matmul(a, b).tolist() == want


def test_extremes_do_not_saturate():
    a = np.full((2, 1000), -128)
    b = np.full((1000, 3), -128)
    assert (matmul(a, b) == 1000 * 16384).all()


def test_wraps_like_a_register():
    assert wrap_signed(np.array([127, 128, -129, 255, 256]), 8).tolist() == [127, -128, 127, -1, 0]
    a = np.full((1, 4), 127)
    b = np.full((4, 1), 127)  # 4 * 16129 = 64516 wraps in 16 bits
    assert matmul(a, b, acc_width=16).item() == 64516 - 65536


def test_shape_errors():
    with pytest.raises(ValueError, match="inner dimensions differ"):
        matmul(np.zeros((2, 3), int), np.zeros((4, 2), int))
    with pytest.raises(TypeError, match="integers"):
        matmul(np.zeros((2, 3)), np.zeros((3, 2)))
