"""cocotb bench of the systolic array: Driver / Monitor / Model / Checker.

Random GEMMs (seeded; ``TANDEM_SEED``) are split into array tiles and streamed back to back. Every
output is compared integer for integer with the golden :func:`kernels.matmul`, and with an ideal
source and sink the measured cycles must equal :func:`mapping.array_tiles_cycles` exactly.

A GEMM whose K exceeds the array (ws) or whose M exceeds it (os) or whose N exceeds the columns is
split into tiles; the bench sums the partial outputs of K-split ws tiles, the job of the
accumulator memory in the full core.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from kernels.gemm import matmul
from mapping.cost import ArrayTile, array_tiles_cycles
from rtl.config import HWConfig
from tb.streams import StreamDriver, StreamMonitor, pack, unpack

PERIOD_NS = 10
CFG = HWConfig.from_dict(json.loads(os.environ.get("TANDEM_CONFIG_JSON", "{}")))
SEED = int(os.environ.get("TANDEM_SEED", "1"))
N_GEMMS = int(os.environ.get("TANDEM_GEMMS", "6"))


# ---------------------------------------------------------------------------- model side
def random_operand(rng: np.random.Generator, shape, bits: int, style: str) -> np.ndarray:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if style == "min":
        return np.full(shape, lo, dtype=np.int64)
    if style == "max":
        return np.full(shape, hi, dtype=np.int64)
    if style == "extremes":
        return rng.choice([lo, hi], size=shape).astype(np.int64)
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int64)


def random_gemms(rng: np.random.Generator, dataflow: str, count: int):
    """Random (A, B) pairs with awkward shapes; some extend past the array in every dimension."""
    R, C = CFG.rows, CFG.cols
    styles = ["uniform", "min", "max", "extremes"]
    gemms = []
    for i in range(count):
        if dataflow == "ws":
            m = int(rng.integers(1, 3 * R + 2))
            k = int(rng.integers(1, 3 * R + 2))  # K longer than the array: split, summed
        else:
            m = int(rng.integers(1, 2 * R + 2))
            k = int(rng.integers(1, 4 * R + 2))  # K of any length stays in the PEs
        n = int(rng.integers(1, C + C // 2 + 2))
        style = styles[i % len(styles)] if i < len(styles) else "uniform"
        a = random_operand(rng, (m, k), CFG.input_width, style)
        b = random_operand(rng, (k, n), CFG.weight_width, style if style != "min" else "min")
        gemms.append((a, b))
    return gemms


def split_tiles(a: np.ndarray, b: np.ndarray, dataflow: str):
    """Yield (ArrayTile, a_sub, b_sub, row_slice, col_slice) covering ``a @ b``."""
    R, C = CFG.rows, CFG.cols
    M, K = a.shape
    N = b.shape[1]
    if dataflow == "ws":
        for n0 in range(0, N, C):
            for k0 in range(0, K, R):
                a_s, b_s = a[:, k0 : k0 + R], b[k0 : k0 + R, n0 : n0 + C]
                tile = ArrayTile(M, a_s.shape[1], b_s.shape[1], "ws")
                yield tile, a_s, b_s, slice(0, M), slice(n0, n0 + b_s.shape[1])
    else:
        for m0 in range(0, M, R):
            for n0 in range(0, N, C):
                a_s, b_s = a[m0 : m0 + R, :], b[:, n0 : n0 + C]
                tile = ArrayTile(a_s.shape[0], K, b_s.shape[1], "os")
                yield tile, a_s, b_s, slice(m0, m0 + a_s.shape[0]), slice(n0, n0 + b_s.shape[1])


def tile_beats(tile: ArrayTile, a: np.ndarray, b: np.ndarray):
    """Port beats for one tile: (weight beats, activation beats, number of output beats)."""
    R, C, iw, ww = CFG.rows, CFG.cols, CFG.input_width, CFG.weight_width
    if tile.dataflow == "ws":
        b_pad = np.zeros((R, C), dtype=np.int64)
        b_pad[: tile.k, : tile.n] = b
        w_beats = [pack(b_pad[R - 1 - j], ww) for j in range(R)]  # last row first
        a_beats = [
            pack(np.pad(a[i], (0, R - tile.k)), iw, [(i == tile.m - 1, 1)]) for i in range(tile.m)
        ]
        return w_beats, a_beats, tile.m
    a_pad = np.zeros((R, tile.k), dtype=np.int64)
    a_pad[: tile.m] = a
    b_pad = np.zeros((tile.k, C), dtype=np.int64)
    b_pad[:, : tile.n] = b
    a_beats = [pack(a_pad[:, kk], iw, [(kk == tile.k - 1, 1)]) for kk in range(tile.k)]
    w_beats = [pack(b_pad[kk], ww) for kk in range(tile.k)]
    return w_beats, a_beats, R


def tile_result(tile: ArrayTile, words: list[int]) -> tuple[np.ndarray, list[int]]:
    """Decode a tile's output beats into its (m, n) result and the ``last`` flags."""
    C, aw = CFG.cols, CFG.acc_width
    rows = [unpack(w, aw, C) for w in words]
    lasts = [(w >> (aw * C)) & 1 for w in words]
    out = np.array(rows, dtype=np.int64)
    if tile.dataflow == "os":
        out = out[::-1]  # drained bottom row first
        return out[: tile.m, : tile.n], lasts
    return out[:, : tile.n], lasts


# ---------------------------------------------------------------------------- bench
class ArrayBench:
    def __init__(self, dut, rng: random.Random, *, idle: float = 0.0, backpressure: float = 0.0):
        self.dut = dut
        self.w = StreamDriver(dut, "i_weight", dut.clk, period_ns=PERIOD_NS, rng=rng, idle=idle)
        self.a = StreamDriver(dut, "i_act", dut.clk, period_ns=PERIOD_NS, rng=rng, idle=idle)
        self.o = StreamMonitor(
            dut, "o_out", dut.clk, period_ns=PERIOD_NS, rng=rng, backpressure=backpressure
        )

    async def start(self, os_mode: bool) -> None:
        Clock(self.dut.clk, PERIOD_NS, unit="ns").start()
        if hasattr(self.dut, "i_os"):
            self.dut.i_os.value = int(os_mode)
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        self.w.start()
        self.a.start()
        self.o.start()

    def dump_state(self) -> str:
        d = self.dut
        sigs = [
            "i_weight__valid",
            "i_weight__ready",
            "i_act__valid",
            "i_act__ready",
            "o_out__valid",
            "o_out__ready",
            "o_idle",
        ]
        state = {s: str(getattr(d, s).value) for s in sigs}
        state.update(
            weights_left=len(self.w.queue),
            acts_left=len(self.a.queue),
            outputs_seen=len(self.o.beats),
        )
        return json.dumps(state)

    async def run(self, gemms, dataflow: str):
        """Stream all tiles of ``gemms``; return (results per gemm, tiles, first cycle, last)."""
        tiles = []
        n_out = 0
        for g, (a, b) in enumerate(gemms):
            for tile, a_s, b_s, rs, cs in split_tiles(a, b, dataflow):
                w_beats, a_beats, outs = tile_beats(tile, a_s, b_s)
                self.w.send(w_beats)
                self.a.send(a_beats)
                tiles.append((g, tile, rs, cs, outs))
                n_out += outs
        expected_cycles = array_tiles_cycles(CFG, [t[1] for t in tiles])
        start = len(self.o.beats)
        done = self.o.expect(start + n_out)
        budget = 4 * expected_cycles + 200  # watchdog, in cycles
        try:
            await with_timeout(done.wait(), budget * PERIOD_NS, "ns")
        except TimeoutError as exc:
            raise AssertionError(
                f"watchdog: outputs incomplete after {budget} cycles "
                f"(model: {expected_cycles} cycles); state: {self.dump_state()}"
            ) from exc
        beats = self.o.beats[start:]
        results = [np.zeros((a.shape[0], b.shape[1]), dtype=np.int64) for a, b in gemms]
        pos = 0
        for g, tile, rs, cs, outs in tiles:
            words = [w for _, w in beats[pos : pos + outs]]
            pos += outs
            part, lasts = tile_result(tile, words)
            assert lasts == [0] * (outs - 1) + [1], f"bad last flags {lasts} for {tile}"
            results[g][rs, cs] += part
        return results, tiles, expected_cycles, beats


def check_results(dut, gemms, results) -> None:
    for g, ((a, b), got) in enumerate(zip(gemms, results, strict=True)):
        want = matmul(a, b, acc_width=CFG.acc_width)
        if not np.array_equal(got, want):
            bad = np.argwhere(got != want)[:5].tolist()
            raise AssertionError(
                f"gemm {g} ({a.shape[0]}x{a.shape[1]} @ {b.shape[0]}x{b.shape[1]}): "
                f"{int((got != want).sum())} mismatches, first at {bad}"
            )
    dut._log.info("%d GEMMs bit-exact", len(gemms))


async def _regression(dut, dataflow: str, *, idle=0.0, backpressure=0.0, check_cycles=True):
    seed = SEED * 7919 + (0 if dataflow == "ws" else 1) + int(idle * 100) + int(backpressure * 10)
    dut._log.info("seed %d (TANDEM_SEED=%d), config %s", seed, SEED, CFG.name)
    rng_np = np.random.default_rng(seed)
    bench = ArrayBench(dut, random.Random(seed), idle=idle, backpressure=backpressure)
    await bench.start(os_mode=dataflow == "os")
    gemms = random_gemms(rng_np, dataflow, N_GEMMS)
    results, tiles, model_cycles, beats = await bench.run(gemms, dataflow)
    check_results(dut, gemms, results)
    first_in = min(bench.w.sent_cycles[0], bench.a.sent_cycles[0])
    measured = beats[-1][0] - first_in + 1
    dut._log.info(
        "%s: %d tiles, measured %d cycles, model %d", dataflow, len(tiles), measured, model_cycles
    )
    if check_cycles:
        assert measured == model_cycles, (
            f"{dataflow} cycle mismatch on config {CFG.name}: RTL {measured}, model "
            f"{model_cycles} for {len(tiles)} back-to-back tiles"
        )


@cocotb.test(skip=not CFG.has_ws)
async def ws_random(dut):
    """ws: random GEMMs back to back, ideal source/sink: bit-exact and cycle-exact."""
    await _regression(dut, "ws")


@cocotb.test(skip=not CFG.has_os)
async def os_random(dut):
    """os: random GEMMs back to back, ideal source/sink: bit-exact and cycle-exact."""
    await _regression(dut, "os")


@cocotb.test(skip=not CFG.has_ws)
async def ws_stress(dut):
    """ws with idle insertion on both inputs and back-pressure on the output: bit-exact."""
    await _regression(dut, "ws", idle=0.3, backpressure=0.3, check_cycles=False)


@cocotb.test(skip=not CFG.has_os)
async def os_stress(dut):
    """os with idle insertion on both inputs and back-pressure on the output: bit-exact."""
    await _regression(dut, "os", idle=0.3, backpressure=0.3, check_cycles=False)


@cocotb.test(skip=CFG.dataflow != "both")
async def mode_switch(dut):
    """Run-time dataflow switch (``both``): ws, os, ws again, each after the array is idle."""
    seed = SEED * 7919 + 5
    dut._log.info("seed %d", seed)
    rng_np = np.random.default_rng(seed)
    bench = ArrayBench(dut, random.Random(seed))
    await bench.start(os_mode=False)
    for dataflow in ("ws", "os", "ws"):
        while dut.o_idle.value != 1:
            await RisingEdge(dut.clk)
        dut.i_os.value = int(dataflow == "os")
        gemms = random_gemms(rng_np, dataflow, 2)
        results, *_ = await bench.run(gemms, dataflow)
        check_results(dut, gemms, results)
