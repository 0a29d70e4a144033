"""cocotb bench of the whole core: programs from DRAM, results back in DRAM.

Driven by a job file (``TANDEM_JOBS``, written by :mod:`tb.core_sim`): for each job the DRAM image
is loaded in bulk (``$readmemh``), the program started with one write, and the bench waits on
``o_done``/``o_error`` (no per-cycle Python; the clock is generated in ``tandem_tb``). A
watchdog ends a hung run with a dump of the core's state. The output region is dumped in bulk
(``$writememh``); counters and status go to a result file that the host side checks against the
golden model.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, First, ReadOnly, RisingEdge, Timer

from rtl.core import COUNTERS, QUEUES, TOKENS

PERIOD_NS = 10  # the clock tandem_tb generates (tb.dram.CLOCK_PERIOD_NS; not imported: numpy)


def _state(dut) -> dict:
    names = ["o_busy", "o_done", "o_error", "o_error_cause", "o_error_pc", "o_dbg_decoded"]
    state = {n: int(getattr(dut, n).value) for n in names}
    tokens = int(dut.o_dbg_tokens.value)
    state["tokens"] = {k: (tokens >> (16 * i)) & 0xFFFF for i, k in enumerate(TOKENS)}
    queues = int(dut.o_dbg_queues.value)
    state["queue_levels"] = {k: (queues >> (16 * i)) & 0xFFFF for i, k in enumerate(QUEUES)}
    state["counters"] = {n: int(getattr(dut, f"o_cnt_{n}").value) for n in COUNTERS}
    return state


async def _pulse(sig, clk) -> None:
    sig.value = 1
    await RisingEdge(clk)
    sig.value = 0


_PROGRESS = ("retired", "rd_bytes", "wr_bytes", "exec_streaming", "vec_taps")


def _progress(dut) -> tuple[int, ...]:
    return tuple(int(getattr(dut, f"o_cnt_{n}").value) for n in _PROGRESS)


async def _watch(dut, timeout: int, stall: int) -> None:
    """Wait for done or error; give up after ``timeout`` cycles in all, or as soon as nothing
    moved (no command retired, no DRAM byte, no MAC) for ``stall`` cycles: a deadlock."""
    waited, last = 0, None
    while waited < timeout:
        window = min(stall, timeout - waited)
        trigger = await First(RisingEdge(dut.o_done), RisingEdge(dut.o_error),
                              Timer(window * PERIOD_NS, "ns"))  # fmt: skip
        if not isinstance(trigger, Timer):
            return
        waited += window
        now = _progress(dut)
        if now == last:
            return
        last = now


@cocotb.test()
async def run_jobs(dut):
    jobs = json.loads(Path(os.environ["TANDEM_JOBS"]).read_text())
    # tandem_tb generates its own clock (tb/dram.py): no per-edge VPI writes from cocotb
    for sig in ("i_start", "dram_load", "dram_dump"):
        getattr(dut, sig).value = 0
    results = []
    for job in jobs:
        dut.rst.value = 1
        dut.dram_latency.value = job["latency"]
        dut.dram_bw.value = job["bandwidth"]
        dut.i_prog_addr.value = job["program_addr"]
        dut.i_prog_len.value = job["program_len"]
        shutil.copyfile(job["image_hex"], "dram_in.hex")
        await ClockCycles(dut.clk, 2)
        await _pulse(dut.dram_load, dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        await _pulse(dut.i_start, dut.clk)
        t0 = time.perf_counter()
        await _watch(dut, job["timeout"], job["stall"])
        sim_seconds = time.perf_counter() - t0
        await ReadOnly()
        state = _state(dut)
        await RisingEdge(dut.clk)
        status = "done" if state["o_done"] else "error" if state["o_error"] else "timeout"
        if status == "error":  # let the units drain so the state dump is complete
            await ClockCycles(dut.clk, 10)
        result = {"name": job["name"], "status": status, "state": state,
                  "oob": int(dut.dram_oob.value), "sim_seconds": sim_seconds}  # fmt: skip
        if status == "done":
            dut.dram_dump_base.value = job["dump_base"]
            dut.dram_dump_words.value = job["dump_words"]
            await _pulse(dut.dram_dump, dut.clk)
            await RisingEdge(dut.clk)
            shutil.move("dram_out.hex", job["dump_hex"])
        results.append(result)
        dut._log.info("job %s: %s after %d cycles", job["name"], status,
                      state["counters"]["cycles"])  # fmt: skip
        if status == "timeout":
            dut._log.error("watchdog: %s", json.dumps(state))
    Path(os.environ["TANDEM_JOB_RESULTS"]).write_text(json.dumps(results, indent=1))
