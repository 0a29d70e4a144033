"""Workloads, the analytical cost model, and (later) mapping and design-space exploration."""

from .cost import ArrayTile, TileCycles, array_tile_cycles, array_tiles_cycles

__all__ = ["ArrayTile", "TileCycles", "array_tile_cycles", "array_tiles_cycles"]
