"""Exact-integer golden GEMM, bit-for-bit what the systolic array computes."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["int_array", "matmul", "wrap_signed"]


def wrap_signed(x: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap of integers to ``bits`` bits, as a hardware register does."""
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in 1..64, not {bits!r}")
    x = np.asarray(x, dtype=np.int64)
    if bits == 64:
        return x
    mask = (1 << bits) - 1
    half = 1 << (bits - 1)
    return ((x & mask) ^ half) - half


def int_array(name: str, value: Any, ndim: int, lo: int, hi: int) -> np.ndarray:
    """``value`` as an integer array of ``ndim`` dimensions with values in ``lo..hi``.

    Raises ``TypeError``/``ValueError`` naming ``name`` for a non-integer dtype, a wrong number
    of dimensions or a value out of range.
    """
    arr = np.asarray(value)
    if not (np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_):
        raise TypeError(f"{name} must hold integers, not {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, not of shape {arr.shape}")
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        raise ValueError(
            f"{name} holds values outside {lo}..{hi} ({int(arr.min())}..{int(arr.max())})"
        )
    return arr


def matmul(a: np.ndarray, b: np.ndarray, *, acc_width: int = 32) -> np.ndarray:
    """``C = A @ B`` over signed integers, accumulated exactly and wrapped to ``acc_width``.

    Parameters
    ----------
    a : (M, K) integer array
    b : (K, N) integer array
    acc_width : int
        Accumulator width in bits; the result wraps like the hardware accumulator.

    Returns
    -------
    (M, N) int64 array.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"matmul takes 2-D operands, got shapes {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"inner dimensions differ: A is {a.shape}, B is {b.shape}")
    for name, x in (("A", a), ("B", b)):
        if not np.issubdtype(x.dtype, np.integer):
            raise TypeError(f"{name} must hold integers, not {x.dtype}")
    # int64 products of <=32-bit operands summed over K < 2**30 cannot overflow int64 here;
    # wrapping the exact sum equals wrapping at every step (modular arithmetic).
    return wrap_signed(a.astype(np.int64) @ b.astype(np.int64), acc_width)
