"""Simulation-speed bench: the array kept 100% busy, no per-cycle Python.

Weights are preloaded once; then ``i_act`` holds a valid row (one never-ending tile) and
``o_out`` is always ready, so every PE does a MAC every cycle while only the simulator runs
(GPI clock, ``Timer`` waits). Writes ``{"cycles_per_s": [...], "outputs": n}`` to
``TANDEM_BENCH_OUT``.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, Timer

from rtl.config import HWConfig
from tb.streams import pack

PERIOD_NS = 10
CFG = HWConfig.from_dict(json.loads(os.environ["TANDEM_CONFIG_JSON"]))
CYCLES = int(os.environ.get("TANDEM_BENCH_CYCLES", "100000"))
REPEATS = int(os.environ.get("TANDEM_BENCH_REPEATS", "3"))


@cocotb.test()
async def throughput(dut):
    rng = np.random.default_rng(0)
    Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
    if hasattr(dut, "i_os"):
        dut.i_os.value = 0
    dut.rst.value = 1
    dut.i_weight__valid.value = 0
    dut.i_act__valid.value = 0
    dut.o_out__ready.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    for _ in range(CFG.rows):  # one weight tile
        row = rng.integers(-128, 128, CFG.cols)
        dut.i_weight__payload.value = pack(row, CFG.weight_width)
        dut.i_weight__valid.value = 1
        await RisingEdge(dut.clk)
        while dut.i_weight__ready.value != 1:
            await RisingEdge(dut.clk)
    dut.i_weight__valid.value = 0
    row = rng.integers(-128, 128, CFG.rows)
    dut.i_act__payload.value = pack(row, CFG.input_width, [(0, 1)])  # last=0: never ends
    dut.i_act__valid.value = 1
    await ClockCycles(dut.clk, CFG.rows + CFG.cols + 4)  # fill the array
    await ReadOnly()
    assert dut.o_out__valid.value == 1, "array did not reach steady state"
    rates = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        await Timer(CYCLES * PERIOD_NS, "ns")
        rates.append(CYCLES / (time.perf_counter() - t0))
    await ReadOnly()
    assert dut.o_out__valid.value == 1 and dut.i_act__ready.value == 1, "array stalled"
    out = os.environ.get("TANDEM_BENCH_OUT")
    if out:
        with open(out, "w") as fh:
            json.dump({"cycles_per_s": rates}, fh)
