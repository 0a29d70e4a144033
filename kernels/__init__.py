"""DNN operations: exact-integer NumPy golden models and (later) lowering to programs."""

from .gemm import matmul, wrap_signed

__all__ = ["matmul", "wrap_signed"]
