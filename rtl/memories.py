"""Banked on-chip memories: the int8 scratchpad and the int32 accumulator.

Both are built on ``amaranth.lib.memory.Memory``, split into ``banks`` memories by the high
address bits (bank ``b`` holds rows ``b*depth/banks ..``). Every bank has one write port and the
read ports listed; each read port has one cycle of latency and returns data written in the same
cycle (transparent), so a read-modify-write pipeline needs no forwarding.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["BankedMemory", "ReadPortSignature", "WritePortSignature"]


class ReadPortSignature(wiring.Signature):
    """``addr``, ``en`` in; ``data`` out one cycle after ``en``."""

    def __init__(self, addr_width: int, shape):
        super().__init__({"addr": Out(addr_width), "en": Out(1), "data": In(shape)})


class WritePortSignature(wiring.Signature):
    """``addr``, ``data``, ``en`` in; written at the end of the cycle."""

    def __init__(self, addr_width: int, shape):
        super().__init__({"addr": Out(addr_width), "en": Out(1), "data": Out(shape)})


class BankedMemory(wiring.Component):
    """``depth`` rows of ``shape`` in ``banks`` banks with ``write_ports`` and ``read_ports``.

    Parameters
    ----------
    shape : shape-like
        One row (e.g. ``data.ArrayLayout(signed(8), 16)``).
    depth, banks : int
        Rows in total (a multiple of ``banks``) and the number of banks (a power of two).
    read_ports : int
        Number of read ports; all are transparent to every write port.
    write_ports : int
        Number of write ports (``w``, ``w1``, ...); two writes to one row in a cycle are an
        error of the program (the decoupled units never do it).

    Members
    -------
    w, w1, ... : In(WritePortSignature)
    r0, r1, ... : In(ReadPortSignature)
    """

    latency = 1

    def __init__(self, *, shape, depth: int, banks: int, read_ports: int, name: str,
                 write_ports: int = 1):  # fmt: skip
        if depth % banks:
            raise ValueError(f"{name}: depth {depth} is not a multiple of banks {banks}")
        self._shape, self._depth, self._banks, self._nread = shape, depth, banks, read_ports
        self._name = name
        self._nwrite = write_ports
        aw = max(1, (depth - 1).bit_length())
        self.addr_width = aw
        members = {"w": In(WritePortSignature(aw, shape))}
        for i in range(1, write_ports):
            members[f"w{i}"] = In(WritePortSignature(aw, shape))
        for i in range(read_ports):
            members[f"r{i}"] = In(ReadPortSignature(aw, shape))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        per_bank = self._depth // self._banks
        bank_bits = (self._banks - 1).bit_length()
        row_bits = max(1, (per_bank - 1).bit_length())
        width = (
            data.Layout.cast(self._shape).size
            if isinstance(self._shape, data.Layout)
            else len(Signal(self._shape))
        )
        reads = [getattr(self, f"r{i}") for i in range(self._nread)]
        bank_of = [Signal(max(1, bank_bits), name=f"r{i}_bank") for i in range(self._nread)]
        outs = [[] for _ in reads]
        for b in range(self._banks):
            mem = memory.Memory(shape=unsigned(width), depth=per_bank, init=[])
            m.submodules[f"{self._name}_bank{b}"] = mem
            wps = []
            for j in range(self._nwrite):
                w = self.w if j == 0 else getattr(self, f"w{j}")
                wp = mem.write_port()
                wps.append(wp)
                sel = (w.addr >> row_bits) == b if self._banks > 1 else 1
                m.d.comb += [
                    wp.addr.eq(w.addr[:row_bits]),
                    wp.data.eq(w.data.as_value() if hasattr(w.data, "as_value") else w.data),
                    wp.en.eq(w.en & sel),
                ]
            for i, rd in enumerate(reads):
                rp = mem.read_port(transparent_for=tuple(wps))
                rsel = (rd.addr >> row_bits) == b if self._banks > 1 else 1
                m.d.comb += [rp.addr.eq(rd.addr[:row_bits]), rp.en.eq(rd.en & rsel)]
                outs[i].append(rp.data)
        for i, rd in enumerate(reads):
            if self._banks > 1:
                with m.If(rd.en):
                    m.d.sync += bank_of[i].eq(rd.addr >> row_bits)
                value = outs[i][0]
                for b in range(1, self._banks):
                    value = Mux(bank_of[i] == b, outs[i][b], value)
            else:
                value = outs[i][0]
            m.d.comb += rd.data.eq(value)
        return m
