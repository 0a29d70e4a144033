"""Analytical cycle model of the systolic array and the vector unit, from their timing properties.

Convention: a count of cycles runs from the cycle the first input beat is accepted to the cycle
the last output row is transferred, both included, assuming inputs are always offered and outputs
always accepted. No cycle constant is written here: every latency is read from
:class:`rtl.systolic.SystolicArray` and :class:`rtl.vector.VectorTiming`.

The vector unit's layers (`vector_layer_cycles`) are modelled from the commands
`kernels.lower_vector` emits for a plan: the unit's busy cycles are exactly the sum of its
commands' `vector_command_cycles`; the DMA moves the input tiles (halos included), the parameter
blocks and the output at ``dma_beat_bytes`` per cycle, overlapped with the unit when
double-buffered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from kernels.layers import VECTOR_LAYERS
from kernels.lower_vector import VectorGeometry, VectorPlan, default_vector_plan
from kernels.vector import VectorLayer
from rtl import isa
from rtl.config import HWConfig
from rtl.systolic import SystolicArray
from rtl.vector import VectorUnit

__all__ = [
    "ArrayTile",
    "TileCycles",
    "VectorLayerCycles",
    "array_tile_cycles",
    "array_tiles_cycles",
    "vector_command_cycles",
    "vector_layer_cycles",
]


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


# -------------------------------------------------------------------- the vector unit


def vector_command_cycles(config: HWConfig, command: isa.Command) -> int:
    """Busy cycles of one decoded DWCONV or EWISE command (`rtl.vector.VectorTiming`)."""
    if command.op not in (isa.Op.DWCONV, isa.Op.EWISE):
        raise ValueError(f"{command.op.name} is not a vector command (DWCONV or EWISE)")
    mode = command.fields.get("mode", 0)
    return VectorUnit.timing(config).command_cycles(
        command.op, mode, command.kh, command.kw, command.out_h, command.out_w
    )


@dataclass(frozen=True)
class VectorLayerCycles:
    """Cycles of one vector layer split into named terms; ``+`` adds layers up.

    Parameters
    ----------
    busy : int
        Cycles the vector unit is busy: the sum of its commands' cycles.
    dma : int
        Cycles the DMA needs for every load and store (bytes / ``dma_beat_bytes``).
    prologue, epilogue : int
        DMA cycles of the first step's loads (before the unit can start) and of the last
        step's stores (after it has finished), which no command overlaps.
    total : int
        Estimated cycles of the layer. Double-buffered: ``prologue + max(busy, dma - prologue -
        epilogue) + epilogue`` (loads and stores of the other steps hide under the unit, or the
        unit under them); single-buffered: ``busy + dma`` (the units take turns).
    macs : int
        The layer's multiply-accumulates (window taps for pools).
    lanes : int
        Vector lanes (MACs per cycle at peak).
    """

    busy: int
    dma: int
    prologue: int
    epilogue: int
    total: int
    macs: int
    lanes: int

    @property
    def utilization(self) -> float:
        """Fraction of the unit's peak, ``macs / (total * lanes)``."""
        return self.macs / (self.total * self.lanes) if self.total else 0.0

    @property
    def busy_utilization(self) -> float:
        """Fraction of peak while the unit is busy, ``macs / (busy * lanes)``."""
        return self.macs / (self.busy * self.lanes) if self.busy else 0.0

    def __add__(self, other: VectorLayerCycles) -> VectorLayerCycles:
        if not isinstance(other, VectorLayerCycles):
            return NotImplemented
        if other.lanes != self.lanes:
            raise ValueError(f"cannot add results of {self.lanes} and {other.lanes} lanes")
        return VectorLayerCycles(
            *(getattr(self, f) + getattr(other, f)
              for f in ("busy", "dma", "prologue", "epilogue", "total", "macs")),
            lanes=self.lanes,
        )  # fmt: skip


def vector_layer_cycles(
    config: HWConfig, layer: VectorLayer, plan: VectorPlan | None = None
) -> VectorLayerCycles:
    """Cycles of a depthwise, add or pool layer lowered with ``plan`` (closed form).

    Parameters
    ----------
    config : HWConfig
    layer : DepthwiseConv2D, Add or Pool2D
    plan : VectorPlan, optional
        `kernels.lower_vector.default_vector_plan` when omitted.

    Raises
    ------
    ValueError
        The plan does not fit (`VectorPlan.validate`).
    """
    if not isinstance(layer, VECTOR_LAYERS):
        raise TypeError(
            f"layer must be a DepthwiseConv2D, Add or Pool2D, not {type(layer).__name__}"
        )
    if plan is None:
        plan = default_vector_plan(config, layer)
    geo = VectorGeometry(config, layer, plan)
    if geo.error:
        raise ValueError(geo.error)
    timing = VectorUnit.timing(config)
    busy = sum(
        n * timing.command_cycles(geo.op, geo.mode, geo.kh, geo.kw, oh, ow)
        for (oh, ow), n in geo.command_shapes().items()
    )
    beat = config.dma_beat_bytes
    loaded, stored = geo.dma_bytes()
    dma = -(-loaded // beat) + -(-stored // beat)
    prologue = -(-geo.first_load_bytes() // beat)
    epilogue = -(-geo.last_store_bytes() // beat)
    if plan.double_buffer:
        total = prologue + max(busy, dma - prologue - epilogue) + epilogue
    else:
        total = busy + dma
    return VectorLayerCycles(busy, dma, prologue, epilogue, total, layer.macs, timing.lanes)
