"""Analytical cycle model of the systolic array, written from the component's latency properties.

Convention: a count of cycles runs from the cycle the first input beat is accepted to the cycle
the last output row is transferred, both included, assuming inputs are always offered and outputs
always accepted. No cycle constant is written here: every latency is read from
:class:`rtl.systolic.SystolicArray`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from rtl.config import HWConfig
from rtl.systolic import SystolicArray

__all__ = ["ArrayTile", "TileCycles", "array_tile_cycles", "array_tiles_cycles"]


@lru_cache(maxsize=64)
def _array(config: HWConfig) -> SystolicArray:
    return SystolicArray.timing(config)


@dataclass(frozen=True)
class ArrayTile:
    """One array tile of ``C[m, n] = A[m, k] @ B[k, n]`` in a given dataflow."""

    m: int
    k: int
    n: int
    dataflow: str

    def check(self, config: HWConfig) -> None:
        """Raise ``ValueError`` if the tile does not fit the array of ``config``."""
        for dim in ("m", "k", "n"):
            v = getattr(self, dim)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"tile {dim} must be a positive integer, not {v!r}")
        if self.dataflow == "ws":
            if not config.has_ws:
                raise ValueError(f"config {config.name!r} has no weight-stationary dataflow")
            if self.k > config.rows or self.n > config.cols:
                raise ValueError(
                    f"ws tile k={self.k}, n={self.n} exceeds the {config.rows}x{config.cols} "
                    f"array of config {config.name!r}: split k into <= {config.rows} and n into "
                    f"<= {config.cols}"
                )
        elif self.dataflow == "os":
            if not config.has_os:
                raise ValueError(f"config {config.name!r} has no output-stationary dataflow")
            if self.m > config.rows or self.n > config.cols:
                raise ValueError(
                    f"os tile m={self.m}, n={self.n} exceeds the {config.rows}x{config.cols} "
                    f"array of config {config.name!r}: split m into <= {config.rows} and n into "
                    f"<= {config.cols}"
                )
        else:
            raise ValueError(f"tile dataflow must be 'ws' or 'os', not {self.dataflow!r}")

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n


@dataclass(frozen=True)
class TileCycles:
    """Cycles of array work split into named terms; ``+`` adds term by term."""

    preload: int = 0
    fill: int = 0
    stream: int = 0
    drain: int = 0

    @property
    def total(self) -> int:
        return self.preload + self.fill + self.stream + self.drain

    def __add__(self, other: TileCycles) -> TileCycles:
        if not isinstance(other, TileCycles):
            return NotImplemented
        return TileCycles(
            self.preload + other.preload,
            self.fill + other.fill,
            self.stream + other.stream,
            self.drain + other.drain,
        )


def array_tile_cycles(config: HWConfig, tile: ArrayTile) -> TileCycles:
    """Cycles of one tile run alone: preload + fill + stream + drain.

    ws: the ``rows`` weight beats, then ``m`` activation rows, then the fill (down the rows) and
    drain (across the columns) of the last row. os: ``k`` reduction beats, the fill until the last
    product lands, then ``rows`` output rows drained.
    """
    tile.check(config)
    arr = _array(config)
    if tile.dataflow == "ws":
        return TileCycles(
            preload=arr.preload_latency,
            fill=arr.ws_fill_latency,
            stream=tile.m,
            drain=arr.ws_drain_latency,
        )
    return TileCycles(
        preload=0, fill=arr.os_fill_latency, stream=tile.k, drain=arr.os_drain_latency
    )


def array_tiles_cycles(config: HWConfig, tiles: Iterable[ArrayTile]) -> int:
    """Cycles of a sequence of tiles offered back to back (no idle cycle from the source).

    os tiles do not overlap: each one's total adds. ws tiles overlap: the next tile's weights
    preload into the idle buffer while the current tile streams; a buffer can be preloaded again
    once the last row that used it has left the array. Mixed sequences are not modelled (the
    dataflow may only change while the array is idle).
    """
    tiles = list(tiles)
    if not tiles:
        return 0
    flows = {t.dataflow for t in tiles}
    if len(flows) != 1:
        raise ValueError("a back-to-back sequence must use one dataflow; split it at the switch")
    if flows == {"os"}:
        return sum(array_tile_cycles(config, t).total for t in tiles)

    arr = _array(config)
    for t in tiles:
        t.check(config)
    preload, latency = arr.preload_latency, arr.ws_latency
    preload_start: list[int] = []
    last_in: list[int] = []
    for i, t in enumerate(tiles):
        start = 0 if i == 0 else preload_start[i - 1] + preload
        if i >= 2:  # buffer i % 2 is free once tile i-2's last row has left the array
            start = max(start, last_in[i - 2] + latency + 1)
        preload_start.append(start)
        first_in = start + preload if i == 0 else max(start + preload, last_in[i - 1] + 1)
        last_in.append(first_in + t.m - 1)
    return last_in[-1] + latency + 1
