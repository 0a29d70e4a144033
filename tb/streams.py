"""cocotb stream driver and monitor for Amaranth ``lib.stream`` ports (valid/ready/payload).

Both obey the stream rules from the source's side: a driver never drops ``valid`` before the beat
transfers and holds the payload; idle cycles are inserted only between beats. Values are sampled
in ``ReadOnly`` so Icarus and Verilator agree. Every beat's transfer cycle is recorded.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence

import cocotb
from cocotb.triggers import Event, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

__all__ = ["StreamDriver", "StreamMonitor", "pack", "unpack"]


def pack(values: Iterable[int], width: int, extra: Sequence[tuple[int, int]] = ()) -> int:
    """Pack element values (element 0 in the low bits) plus ``(value, bits)`` fields after them."""
    word, shift, mask = 0, 0, (1 << width) - 1
    for v in values:
        word |= (int(v) & mask) << shift
        shift += width
    for v, bits in extra:
        word |= (int(v) & ((1 << bits) - 1)) << shift
        shift += bits
    return word


def unpack(word: int, width: int, count: int) -> list[int]:
    """Inverse of :func:`pack` for ``count`` signed elements of ``width`` bits."""
    mask, half = (1 << width) - 1, 1 << (width - 1)
    out = []
    for i in range(count):
        v = (word >> (i * width)) & mask
        out.append(v - (1 << width) if v & half else v)
    return out


class _Cycle:
    def __init__(self, period_ns: float):
        self.period = period_ns

    def now(self) -> int:
        return int(get_sim_time("ns") // self.period)


class StreamDriver:
    """Drives ``<prefix>__valid/__payload`` and watches ``<prefix>__ready``.

    ``idle`` is the probability of inserting an idle cycle before each beat (seeded ``rng``).
    """

    def __init__(self, dut, prefix: str, clk, *, period_ns: float, rng=None, idle: float = 0.0):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.clk = clk
        self.rng = rng or random.Random(0)
        self.idle = idle
        self.queue: deque[int] = deque()
        self.sent_cycles: list[int] = []
        self._cycle = _Cycle(period_ns)
        self._empty = Event()
        self.valid.value = 0
        self._task = None

    def send(self, beats: Iterable[int]) -> None:
        self.queue.extend(beats)
        self._empty.clear()

    def start(self) -> None:
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        cur = None
        while True:
            if cur is None and self.queue and not (self.idle and self.rng.random() < self.idle):
                cur = self.queue.popleft()
            self.valid.value = int(cur is not None)
            if cur is not None:
                self.payload.value = cur
            await ReadOnly()
            if cur is not None and self.ready.value == 1:
                self.sent_cycles.append(self._cycle.now())
                cur = None
                if not self.queue:
                    self._empty.set()
            await RisingEdge(self.clk)


class StreamMonitor:
    """Drives ``<prefix>__ready`` (low with probability ``backpressure``) and records beats."""

    def __init__(
        self, dut, prefix: str, clk, *, period_ns: float, rng=None, backpressure: float = 0.0
    ):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.clk = clk
        self.rng = rng or random.Random(0)
        self.backpressure = backpressure
        self.beats: list[tuple[int, int]] = []  # (cycle, payload)
        self._cycle = _Cycle(period_ns)
        self._want = 0
        self._enough = Event()
        self.ready.value = 0

    def start(self) -> None:
        cocotb.start_soon(self._run())

    def expect(self, count: int) -> Event:
        """An event set once ``count`` beats in total have been received."""
        self._want = count
        self._enough = Event()
        if len(self.beats) >= count:
            self._enough.set()
        return self._enough

    async def _run(self) -> None:
        while True:
            bp = self.backpressure and self.rng.random() < self.backpressure
            self.ready.value = int(not bp)
            await ReadOnly()
            if self.valid.value == 1 and not bp:
                self.beats.append((self._cycle.now(), self.payload.value.to_unsigned()))
                if len(self.beats) >= self._want:
                    self._enough.set()
            await RisingEdge(self.clk)
