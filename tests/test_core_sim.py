"""Regressions of the whole core on the RTL: lowered layers bit-exact, DRAM stress, errors.

Each (simulator, config) case runs all its jobs in one simulator process (a module-scoped
fixture), so the build and start-up are paid once; the tests then check the job results.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kernels.conv import layer_golden, random_layer_data
from kernels.layers import Conv2D, Dense
from kernels.lower import default_plan, lower
from rtl import isa
from rtl.config import load_config
from rtl.isa import Cause, Op, encode
from tb.core_sim import CoreJob, run_programs


def random_layers(seed: int, count: int, *, max_hw: int, max_c: int):
    """Seeded layers with awkward shapes: odd channels, stride 2, K up to 5, batch 2, dense,
    grouped convolutions (2 or 3 groups)."""
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(count):
        if i % 4 == 3:
            layers.append(Dense(f"dense{i}", m=int(rng.integers(1, 3 * max_hw)),
                                k=int(rng.integers(1, 2 * max_c)),
                                n=int(rng.integers(1, 2 * max_c)),
                                act=str(rng.choice(["none", "relu"]))))  # fmt: skip
            continue
        k = int(rng.choice([1, 3, 5]))
        h = int(rng.integers(max(k, 2), max_hw + 1))
        conv = Conv2D(
            f"conv{i}",
            h=h,
            w=int(rng.integers(max(k, 2), max_hw + 1)),
            cin=int(rng.integers(1, max_c + 1)),
            cout=int(rng.integers(1, max_c + 1)),
            k=k,
            stride=int(rng.choice([1, 2])),
            pad=int(rng.integers(0, k // 2 + 1)),
            batch=int(rng.choice([1, 1, 2])),
            act=str(rng.choice(["none", "relu", "relu6"])),
        )
        groups = int(rng.choice([1, 1, 2, 3]))
        if groups > 1:  # channel counts rounded to multiples of the groups
            conv = dataclasses.replace(
                conv,
                name=f"gconv{i}",
                cin=groups * -(-conv.cin // groups),
                cout=groups * -(-conv.cout // groups),
                groups=groups,
            )
        layers.append(conv)
    return layers


def layer_jobs(cfg, layers, seed, dataflow="ws", **dram):
    jobs, goldens, lowered = [], [], []
    for i, layer in enumerate(layers):
        t = random_layer_data(layer, np.random.default_rng(seed + i))
        low = lower(cfg, layer, t, default_plan(cfg, layer, dataflow))
        jobs.append(CoreJob.from_lowered(low, **dram))
        goldens.append(layer_golden(layer, t))
        lowered.append(low)
    return jobs, goldens, lowered


def check_exact(results, goldens, lowered):
    for r, g, low in zip(results, goldens, lowered, strict=True):
        assert r.status == "done", f"{r.name}: {r.error}"
        assert not r.dram_oob, f"{r.name}: DRAM access out of range"
        got = np.frombuffer(r.output, dtype=np.int8).reshape(g.shape)
        bad = int((got != g).sum())
        assert bad == 0, f"{r.name} ({low.layer}): {bad} of {g.size} outputs differ from golden"


CASES = {
    ("verilator", "tiny"): dict(count=12, max_hw=9, max_c=9),
    ("icarus", "tiny"): dict(count=4, max_hw=6, max_c=6),
    ("verilator", "wide"): dict(count=6, max_hw=8, max_c=40),
    ("verilator", "default"): dict(count=4, max_hw=10, max_c=40),
}
# Output-stationary lowerings (TilePlan(dataflow="os")) of other random layers.
OS_CASES = {
    ("verilator", "tiny", "os"): dict(count=8, max_hw=9, max_c=9),
    ("icarus", "tiny", "os"): dict(count=3, max_hw=6, max_c=6),
    ("verilator", "default", "os"): dict(count=3, max_hw=9, max_c=40),
}


@pytest.fixture(
    scope="module", params=[*CASES, *OS_CASES], ids=lambda c: "-".join(c)
)  # fmt: skip
def regression(request):
    sim, name, *flow = request.param
    dataflow = flow[0] if flow else "ws"
    cfg = load_config(name)
    seed = 1000 + len(name) + (500 if flow else 0)
    layers = random_layers(seed, **{**CASES, **OS_CASES}[request.param])
    jobs, goldens, lowered = layer_jobs(cfg, layers, seed, dataflow)
    results = run_programs(cfg, jobs, sim=sim, name=f"regress-{seed}-{dataflow}")
    return cfg, results, goldens, lowered


@pytest.mark.sim
def test_random_layers_bit_exact(regression):
    _cfg, results, goldens, lowered = regression
    check_exact(results, goldens, lowered)


@pytest.mark.sim
def test_counters_match_the_program(regression):
    """Streaming cycles = activation beats of all MATMULs (ws: one per pixel, os: rows per
    block); bytes written = output bytes."""
    cfg, results, _goldens, lowered = regression
    for r, low in zip(results, lowered, strict=True):
        mms = [c for c in map(isa.decode, low.program) if c.op == Op.MATMUL]
        rows = sum(cfg.rows if c.os else c.nx * c.ny for c in mms)
        assert r.counters["exec_streaming"] == rows, r.name
        assert r.counters["wr_bytes"] == low.output.nbytes, r.name
        assert r.counters["retired"] == len(low.program), r.name
        assert r.counters["rd_bytes"] >= 16 * len(low.program), r.name


@pytest.mark.sim
def test_dram_latency_and_bandwidth_stress():
    """Latency 1..200 cycles and bandwidth 1..64 B/cycle: the same bytes every time."""
    cfg = load_config("tiny")
    layer = Conv2D("stress", h=7, w=7, cin=5, cout=6, k=3, stride=1, pad=1, act="relu")
    settings = [(1, 1), (1, 64), (200, 64), (200, 1), (37, 3), (5, 4), (120, 16)]
    jobs, goldens, lowered = [], [], []
    for lat, bw in settings:
        j, g, low = layer_jobs(cfg, [layer], seed=7, latency=lat, bandwidth=bw)
        jobs += j
        goldens += g
        lowered += low
    results = run_programs(cfg, jobs, sim="verilator", name="stress")
    check_exact(results, goldens, lowered)
    outputs = {r.output for r in results}
    assert len(outputs) == 1
    cycles = {(lat, bw): r.cycles for (lat, bw), r in zip(settings, results, strict=True)}
    assert cycles[(200, 1)] > cycles[(1, 64)]  # the DRAM settings really took effect


@pytest.mark.sim
def test_many_outstanding_dram_requests():
    """Two-beat input rows streaming while one-byte output rows are written: more than the
    simulated DRAM's 64 queue entries are in flight and its queue pointers wrap (a width bug
    there once let a request overwrite the queue's head and hung the load unit)."""
    cfg = load_config("default")
    layer = Dense("narrow", m=1024, k=9, n=1)
    jobs, goldens, lowered = layer_jobs(cfg, [layer], seed=11)
    check_exact(run_programs(cfg, jobs, sim="verilator", name="outstanding"), goldens, lowered)


def _error_job(name, words, cfg):
    image = bytearray(4096)
    prog = isa.to_bytes(words)
    image[: len(prog)] = prog
    return CoreJob(name, bytes(image), 0, len(words), 2048, 16, timeout=5000)


@pytest.mark.sim
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_bad_commands_raise_sticky_errors(sim):
    cfg = load_config("tiny")
    ok_load = encode(Op.LOAD, dram_addr=1024, spad_addr=0, rows=2, len=4, stride=4)
    cases = {
        "opcode": ([ok_load, 10], Cause.BAD_OPCODE, 1),
        "spad": ([encode(Op.LOAD, spad_addr=cfg.spad_rows - 1, rows=2, len=4)],
                 Cause.SPAD_RANGE, 0),
        "acc": ([ok_load, encode(Op.STORE, acc_addr=cfg.acc_rows, rows=1, len=4)],
                Cause.ACC_RANGE, 1),
        "length": ([encode(Op.LOAD, rows=1, len=cfg.rows + 1)], Cause.BAD_LENGTH, 0),
        "column": ([encode(Op.CFG_BIAS, col=cfg.cols, bias=1)], Cause.BAD_COLUMN, 0),
        "token": ([encode(Op.LOAD, rows=1, len=4, pop_prev=True)], Cause.BAD_TOKEN, 0),
        "matmul_spad": ([encode(Op.MATMUL, a_addr=cfg.spad_rows - 2, nx=3, ny=1, a_stride_x=1)],
                        Cause.SPAD_RANGE, 0),
        "os_pixels": ([ok_load, encode(Op.MATMUL, os=1, drain=1, nx=cfg.rows + 1, ny=1,
                                       a_stride_x=1)], Cause.BAD_LENGTH, 1),
    }  # fmt: skip
    jobs = [_error_job(n, words, cfg) for n, (words, _c, _pc) in cases.items()]
    results = run_programs(cfg, jobs, sim=sim, name="errors")
    for r, (name, (_w, cause, pc)) in zip(results, cases.items(), strict=True):
        assert r.status == "error", f"{name}: expected an error, got {r.status}"
        assert r.state["o_error_cause"] == cause, f"{name}: {r.error}"
        assert r.state["o_error_pc"] == pc, f"{name}: {r.error}"
        assert Cause(cause).name in r.error


@pytest.mark.sim
def test_watchdog_reports_a_deadlock():
    """A MATMUL waiting for a load token that never comes: the bench ends it with a dump."""
    cfg = load_config("tiny")
    words = [encode(Op.MATMUL, nx=1, ny=1, a_stride_x=1, pop_prev=True), encode(Op.FENCE)]
    (r,) = run_programs(cfg, [_error_job("deadlock", words, cfg)], sim="verilator",
                        name="deadlock")  # fmt: skip
    assert r.status == "timeout"
    assert r.state["counters"]["exec_wait_token"] > 1000
    assert r.state["tokens"]["l2e"] == 0
    assert "watchdog" in r.error


@pytest.mark.sim
def test_ws_and_os_share_the_array():
    """ws, os and ws again in one program (the mode switches while idle), and a 2x2 os tile."""
    cfg = load_config("tiny")
    layer = Conv2D("mix", h=6, w=5, cin=6, cout=5, k=3, stride=1, pad=1, act="relu")
    t = random_layer_data(layer, np.random.default_rng(3))
    want = layer_golden(layer, t)
    plans = [default_plan(cfg, layer, f) for f in ("ws", "os")]
    lows = [lower(cfg, layer, t, p) for p in plans]
    # one image, three programs back to back: ws, os, ws (each ends with FENCE)
    base = lows[0]
    assert all(lo.program_addr == base.program_addr for lo in lows)
    prog = [*lows[0].program, *lows[1].program, *lows[0].program]
    image = bytearray(base.image[: base.program_addr]) + isa.to_bytes(prog)
    job = CoreJob("mix", bytes(image), base.program_addr, len(prog), base.output.addr,
                  base.output.nbytes, timeout=200_000)  # fmt: skip
    (r,) = run_programs(cfg, [job], sim="verilator", name="mix")
    assert r.status == "done", r.error
    assert np.array_equal(np.frombuffer(r.output, np.int8).reshape(want.shape), want)
    assert r.counters["retired"] == len(prog)


SLOW_CASES = [
    ("verilator", "tiny", 2001),
    ("verilator", "tiny", 2002),
    ("verilator", "wide", 2003),
    ("icarus", "wide", 2004),
    ("verilator", "default", 2005),
    ("verilator", "large", 2006),
]


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize(("sim", "name", "seed"), SLOW_CASES)
def test_random_layers_more_seeds(sim, name, seed):
    cfg = load_config(name)
    layers = random_layers(seed, 8, max_hw=12, max_c=3 * cfg.rows)
    jobs, goldens, lowered = layer_jobs(cfg, layers, seed)
    check_exact(run_programs(cfg, jobs, sim=sim, name=f"slow-{seed}"), goldens, lowered)


@pytest.mark.sim
@pytest.mark.slow
def test_benchmark_conv_utilization():
    """The issue's benchmark: 56x56x64 -> 64, 3x3, on default at 16 B/cycle, >= 90% of peak."""
    from kernels.layers import parse_layer_spec
    from tb.bench import BENCH_LAYER
    from tb.sim_layer import run_layer

    cfg = load_config("default")
    report, *_ = run_layer(cfg, parse_layer_spec(BENCH_LAYER), bandwidth=16)
    assert report.bit_exact, report.error
    assert report.utilization >= 0.90, report.summary()
