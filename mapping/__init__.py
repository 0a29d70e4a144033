"""Workloads, the analytical cost model, and (later) mapping and design-space exploration."""

from .cost import (
    ArrayTile,
    TileCycles,
    VectorLayerCycles,
    array_tile_cycles,
    array_tiles_cycles,
    vector_command_cycles,
    vector_layer_cycles,
)
from .zoo import mobilenet_v2_depthwise

__all__ = [
    "ArrayTile",
    "TileCycles",
    "VectorLayerCycles",
    "array_tile_cycles",
    "array_tiles_cycles",
    "mobilenet_v2_depthwise",
    "vector_command_cycles",
    "vector_layer_cycles",
]
