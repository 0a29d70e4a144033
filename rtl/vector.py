"""The vector unit: depthwise convolution, residual add and pooling along the channel axis.

``lanes`` lanes work on one *channel group* (byte ``l`` of every scratchpad row is lane ``l``).
Every lane does one multiply-accumulate per cycle; an output pixel takes one cycle per window tap
(``kh*kw``; two for ADD). Taps run column by column and the window slides along ``x``: the
columns an output shares with its left neighbour come from the lane's window registers, so only
the ``stride`` new columns are read from the scratchpad (``docs/vector.md``).

Timing of one command (accepted at cycle ``A``; ``docs/vector.md``)::

    A+1 .. A+P            read the P parameter rows (param_rows)
    A+P+1 .. A+P+N*T      issue one tap a cycle (N = out_h*out_w outputs, T taps each)
    +1                    multiply-accumulate
    +2                    requantize (registered)
    +3                    write the output row        -> busy for P + N*T + latency cycles

The unit takes its next command the cycle after the last write.
"""

from __future__ import annotations

from . import isa
from .config import HWConfig

__all__ = ["VectorUnit"]


class VectorTiming:
    """The vector unit's timing properties (read by the cost model)."""

    #: cycles from the last tap's scratchpad read to its output row written
    latency = 3

    def __init__(self, config: HWConfig):
        self.config = config

    @property
    def lanes(self) -> int:
        return self.config.vector_lanes

    @property
    def peak_macs_per_cycle(self) -> int:
        """One MAC per lane per cycle."""
        return self.config.vector_lanes

    @staticmethod
    def param_rows(op: isa.Op, mode: int, kh: int, kw: int) -> int:
        """Parameter-block rows a command reads before its first tap."""
        if isa.Op(op) == isa.Op.DWCONV:
            return isa.VEC_PARAM_ROWS + kh * kw
        if mode == isa.EwiseMode.ADD:
            return isa.VEC_PARAM_ROWS + isa.VEC_ADD_ROWS
        return isa.VEC_PARAM_ROWS

    @staticmethod
    def taps(op: isa.Op, mode: int, kh: int, kw: int) -> int:
        """Cycles per output pixel."""
        if isa.Op(op) == isa.Op.EWISE and mode == isa.EwiseMode.ADD:
            return 2
        return kh * kw

    def command_cycles(self, op: isa.Op, mode: int, kh: int, kw: int, out_h: int,
                       out_w: int) -> int:  # fmt: skip
        """Busy cycles of one command (the ``vec_busy`` counter's share)."""
        return (
            self.param_rows(op, mode, kh, kw)
            + out_h * out_w * self.taps(op, mode, kh, kw)
            + self.latency
        )


class VectorUnit:
    """Placeholder until the RTL lands; see `VectorTiming`."""

    @staticmethod
    def timing(config: HWConfig) -> VectorTiming:
        return VectorTiming(config)
