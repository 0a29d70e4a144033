"""Small hardware helpers shared by the generators."""

from __future__ import annotations

from amaranth import Mux

__all__ = ["pick"]


def pick(items, index):
    """``items[index]`` as a balanced tree of two-way multiplexers over the bits of ``index``
    (an index past the end gives one of the items).

    Simulators evaluate only the selected side of each level, where a ``Switch`` becomes one
    parallel multiplexer that Verilator evaluates over all the items every cycle.
    """
    level = list(items)
    for bit in range(max(1, (len(level) - 1).bit_length())):
        pairs = [level[i : i + 2] for i in range(0, len(level), 2)]
        level = [p[0] if len(p) == 1 else Mux(index[bit], p[1], p[0]) for p in pairs]
    return level[0]
