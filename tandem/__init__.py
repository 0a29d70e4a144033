"""Tandem: generate, verify and model a systolic-array + vector-unit DNN accelerator.

The public API, re-exported from the layered packages (``rtl`` <- ``kernels`` <- ``mapping`` <-
``tb`` <- ``tandem``).
"""

from kernels.gemm import matmul
from mapping.cost import ArrayTile, TileCycles, array_tile_cycles, array_tiles_cycles
from rtl.config import HWConfig, load_config
from rtl.generate import generate_verilog, write_verilog
from rtl.systolic import PE, SystolicArray

__all__ = [
    "PE",
    "ArrayTile",
    "HWConfig",
    "SystolicArray",
    "TileCycles",
    "array_tile_cycles",
    "array_tiles_cycles",
    "generate_verilog",
    "load_config",
    "matmul",
    "write_verilog",
]
