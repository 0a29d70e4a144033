"""K groups (`TilePlan.k_groups`, the reduction split into groups that accumulate) on the RTL:
dense and conv layers, ws and os, lowered with k_groups > 1, bit-exact on Verilator (one
simulator process for all), and the layer cost model's cycles against the measured ones."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.conv import layer_golden, random_layer_data
from kernels.layers import Conv2D, Dense
from kernels.lower import TilePlan, default_plan, lower
from mapping import array_layer_cycles
from rtl.config import load_config
from tb.core_sim import CoreJob, run_programs

# Unequal groups (cin not a multiple of rows, the last group smaller), both loop orders, single
# and double buffering, both dataflows; tiny has rows = cols = 4.
CASES = [
    (Dense("fc", m=5, k=30, n=6, act="relu"), TilePlan(1, 5, resident_weights=False, k_groups=3)),
    (Dense("fc", m=3, k=27, n=9),
     TilePlan(1, 2, double_buffer=False, resident_weights=False, k_groups=4, dataflow="os")),
    (Conv2D("conv", h=6, w=7, cin=19, cout=11, k=3, pad=1, act="relu"),
     TilePlan(2, 3, resident_weights=False, k_groups=2)),
    (Conv2D("conv", h=6, w=7, cin=19, cout=11, k=3, pad=1),
     TilePlan(3, 4, double_buffer=False, resident_weights=False, n_outer=True, k_groups=3)),
    (Conv2D("conv", h=5, w=6, cin=27, cout=5, k=3, stride=2, pad=1, batch=2),
     TilePlan(2, 3, resident_weights=False, k_groups=4, dataflow="os")),
]  # fmt: skip


@pytest.fixture(scope="module")
def k_group_runs():
    cfg = load_config("tiny")
    jobs, goldens, lowered = [], [], []
    for i, (layer, plan) in enumerate(CASES):
        t = random_layer_data(layer, np.random.default_rng(300 + i))
        low = lower(cfg, layer, t, plan)
        jobs.append(CoreJob.from_lowered(low))
        goldens.append(layer_golden(layer, t))
        lowered.append(low)
    return cfg, run_programs(cfg, jobs, sim="verilator", name="k-groups"), goldens, lowered


@pytest.mark.sim
def test_k_groups_bit_exact_on_the_rtl(k_group_runs):
    _cfg, results, goldens, lowered = k_group_runs
    for r, want, low in zip(results, goldens, lowered, strict=True):
        assert r.status == "done", f"{low.plan}: {r.error}"
        assert not r.dram_oob, f"{low.plan}: DRAM access out of range"
        got = np.frombuffer(r.output, dtype=np.int8).reshape(want.shape)
        bad = int((got != want).sum())
        assert bad == 0, f"{low.layer} {low.plan}: {bad} of {want.size} outputs differ"
        assert r.counters["retired"] == len(low.program)


@pytest.mark.sim
def test_k_groups_cost_model_against_the_rtl(k_group_runs):
    """A regression guard, not the validated tolerance of tests/test_layer_cost_sim.py: on these
    small tiny layers with streamed, small-tile plans the model over-predicts the RTL by +1.0% to
    +15.4% with K groups, and by +0.3% to +11.5% on the same plans with ``k_groups=1``
    (docs/cost-model.md, "K groups"); the guard is the measured bound, 16%."""
    cfg, results, _goldens, lowered = k_group_runs
    lines, bad = [], []
    for r, low in zip(results, lowered, strict=True):
        model = array_layer_cycles(cfg, low.layer, low.plan).total
        err = model / r.cycles - 1
        line = f"{low.layer.name:5} {low.plan}: model {model} rtl {r.cycles} ({err:+.1%})"
        lines.append(line)
        if abs(err) > 0.16:
            bad.append(line)
    print("\n" + "\n".join(lines))
    assert not bad, "model off the RTL beyond tolerance:\n" + "\n".join(bad)


@pytest.mark.sim
@pytest.mark.slow
def test_k_groups_scaled_fc6_on_default():
    """VGG-16 fc6's whole reduction (k=25088) with 64 outputs on default, bit-exact, and the
    model within the validated 5% (layers of at least 10,000 cycles): default_plan's ws k2
    single-buffered, os k8 and ws k4 double-buffered."""
    cfg = load_config("default")
    layer = Dense("fc6s", m=1, k=25088, n=64)
    plans = [
        default_plan(cfg, layer),
        TilePlan(1, 1, resident_weights=False, k_groups=8, dataflow="os"),
        TilePlan(1, 1, resident_weights=False, k_groups=4),
    ]
    assert plans[0].k_groups == 2
    t = random_layer_data(layer, np.random.default_rng(5))
    want = layer_golden(layer, t)
    lows = [lower(cfg, layer, t, p) for p in plans]
    results = run_programs(cfg, [CoreJob.from_lowered(lo) for lo in lows], sim="verilator",
                           name="k-groups-fc6")  # fmt: skip
    lines, bad = [], []
    for r, low in zip(results, lows, strict=True):
        assert r.status == "done", f"{low.plan}: {r.error}"
        got = np.frombuffer(r.output, dtype=np.int8).reshape(want.shape)
        assert np.array_equal(got, want), low.plan
        model = array_layer_cycles(cfg, layer, low.plan).total
        err = model / r.cycles - 1
        lines.append(f"{low.plan}: model {model} rtl {r.cycles} ({err:+.1%})")
        if abs(err) > 0.05:
            bad.append(lines[-1])
    print("\n" + "\n".join(lines))
    assert not bad, "model off the RTL beyond tolerance:\n" + "\n".join(bad)
