"""The layer cost model without a simulator: its counts against the real programs, sanity and
monotonicity of its cycles, the unified `layer_cost`, and the energy table."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from kernels.conv import random_layer_data
from kernels.layers import Add, Conv2D, Dense, DepthwiseConv2D, Pool2D
from kernels.lower import TilePlan, default_plan, lower
from kernels.lower_vector import VectorPlan, default_vector_plan
from kernels.naive import estimate_program, lower_depthwise_naive
from mapping import (
    EnergyTable,
    LayerCost,
    array_layer_cycles,
    depthwise_array_cycles,
    layer_cost,
    load_energy_table,
    vector_layer_cycles,
)
from mapping.layer_cost import _array_model
from rtl.config import load_config


def random_layers(seed: int, count: int, *, max_hw: int, max_c: int):
    """Seeded convolutions (1x1/3x3/5x5, stride 1/2, odd channels, batch 2) and dense layers."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        if i % 4 == 3:
            m, k, n = (int(rng.integers(1, v)) for v in (3 * max_hw, 2 * max_c, 2 * max_c))
            out.append(Dense(f"dense{i}", m=m, k=k, n=n))
            continue
        k = int(rng.choice([1, 3, 5]))
        h, w = (int(rng.integers(max(k, 2), max_hw + 1)) for _ in range(2))
        out.append(
            Conv2D(
                f"conv{i}", h=h, w=w, cin=int(rng.integers(1, max_c + 1)),
                cout=int(rng.integers(1, max_c + 1)), k=k, stride=int(rng.choice([1, 2])),
                pad=int(rng.integers(0, k // 2 + 1)), batch=int(rng.choice([1, 1, 2])),
            )
        )  # fmt: skip
    return out


MODS = (
    {},
    {"dataflow": "os"},
    {"double_buffer": False},
    {"resident_weights": False},
    {"resident_weights": False, "n_outer": True},
    {"half_rows": True},
    {"one_row": True},
)


def plans(cfg, layer):
    """The default plan and variants of it that fit: os, single buffering, streamed weights,
    n outer, smaller tiles."""
    base = default_plan(cfg, layer)
    for mod in MODS:
        mod = dict(mod)
        if mod.pop("half_rows", False):
            mod["oh_t"] = max(1, base.oh_t // 2)
        if mod.pop("one_row", False):
            mod.update(oh_t=1, ow_t=max(1, base.ow_t // 2))
        plan = dataclasses.replace(base, **mod)
        try:
            plan.validate(cfg, layer)
        except ValueError:
            continue
        yield plan


def counts(cfg, layer, plan):
    if isinstance(layer, DepthwiseConv2D):
        conv = layer.channel_conv()
        return _array_model(cfg, conv, plan, layer.c, layer.c, layer.c, 16, 20, layer.macs)[1]
    conv = layer.as_conv()
    return _array_model(cfg, conv, plan, 1, conv.cin, conv.cout, 16, 20, layer.macs)[1]


@pytest.mark.parametrize("name", ["tiny", "default", "wide"])
def test_counts_match_the_program(name):
    """Commands, MATMULs and streamed rows exactly; load and store beats within 5% (the model
    averages the misalignment of rows over a period of pixels), exactly when rows are aligned."""
    cfg = load_config(name)
    checked = 0
    for layer in random_layers(7, 10, max_hw=12, max_c=3 * cfg.rows):
        for plan in plans(cfg, layer):
            low = lower(cfg, layer, random_layer_data(layer, np.random.default_rng(0)), plan)
            est = estimate_program(cfg, low.program)
            n = counts(cfg, layer, plan)
            where = f"{layer} {plan}"
            assert n["commands"] == est.commands, where
            assert n["matmuls"] == est.matmuls, where
            assert n["streamed"] == est.rows_streamed, where
            assert n["fetch_beats"] == est.fetch_beats, where
            assert n["load_beats"] == pytest.approx(est.load_beats, rel=0.05, abs=1), where
            assert n["store_beats"] == pytest.approx(est.store_beats, rel=0.05, abs=1), where
            assert n["stored_bytes"] == layer.output_bytes, where
            checked += 1
    assert checked >= 30


def test_counts_exact_when_rows_are_aligned():
    cfg = load_config("default")  # 16-byte beats; cin, cout multiples of 16
    layer = Conv2D("aligned", h=12, w=10, cin=32, cout=48, k=3, pad=1, stride=2)
    for plan in plans(cfg, layer):
        low = lower(cfg, layer, random_layer_data(layer, np.random.default_rng(0)), plan)
        est = estimate_program(cfg, low.program)
        n = counts(cfg, layer, plan)
        assert (n["load_beats"], n["store_beats"]) == (est.load_beats, est.store_beats), plan


# K groups (`TilePlan.k_groups`): groups of unequal size, cin not a multiple of rows, both loop
# orders, single and double buffering, both dataflows.
K_CASES = [
    ("tiny", Dense("d", m=7, k=30, n=6), TilePlan(1, 2, double_buffer=False,
                                                  resident_weights=False, k_groups=3)),
    ("tiny", Dense("d", m=3, k=27, n=9), TilePlan(1, 3, resident_weights=False, k_groups=4)),
    ("tiny", Dense("d", m=3, k=27, n=9), TilePlan(1, 2, resident_weights=False, n_outer=True,
                                                  k_groups=4, dataflow="os")),
    ("tiny", Conv2D("c", h=6, w=7, cin=19, cout=11, k=3, pad=1),
     TilePlan(2, 3, resident_weights=False, n_outer=True, k_groups=2)),
    ("tiny", Conv2D("c", h=6, w=7, cin=19, cout=11, k=3, pad=1),
     TilePlan(3, 4, double_buffer=False, resident_weights=False, k_groups=2)),
    ("tiny", Conv2D("c", h=5, w=6, cin=27, cout=5, k=3, stride=2, pad=1, batch=2),
     TilePlan(2, 2, double_buffer=False, resident_weights=False, k_groups=4, dataflow="os")),
    ("default", Conv2D("c", h=6, w=7, cin=70, cout=20, k=3, stride=2, pad=1, batch=2),
     TilePlan(2, 3, resident_weights=False, k_groups=3)),
    ("default", Dense("d", m=9, k=200, n=33), TilePlan(1, 9, resident_weights=False, k_groups=4,
                                                       dataflow="os")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "layer", "plan"), K_CASES)
def test_k_group_counts_match_the_program(name, layer, plan):
    """Each K group is its own step with its own load group: the counts stay exact."""
    cfg = load_config(name)
    if plan.dataflow == "os":
        cfg = cfg.replace(dataflow="both")
    low = lower(cfg, layer, random_layer_data(layer, np.random.default_rng(0)), plan)
    est = estimate_program(cfg, low.program)
    n = counts(cfg, layer, plan)
    assert n["commands"] == est.commands
    assert n["matmuls"] == est.matmuls
    assert n["streamed"] == est.rows_streamed
    assert n["fetch_beats"] == est.fetch_beats
    assert n["load_beats"] == pytest.approx(est.load_beats, rel=0.05, abs=1)
    assert n["store_beats"] == pytest.approx(est.store_beats, rel=0.05, abs=1)
    cyc = array_layer_cycles(cfg, layer, plan)
    assert all(v >= 0 for v in cyc.terms.values()), cyc
    assert cyc.total == sum(cyc.terms.values())
    assert cyc.compute == n["streamed"]
    assert 0 < cyc.utilization <= 1
    assert cyc.total >= cyc.compute + cyc.preload + cyc.fill_drain


def test_fc6_cost_with_k_groups():
    """VGG-16 fc6 on default needs k_groups: every weight byte is loaded once (one image)."""
    cfg = load_config("default")
    fc6 = Dense("fc6", m=1, k=25088, n=4096)
    plan = default_plan(cfg, fc6)
    assert plan.k_groups > 1
    cost = layer_cost(cfg, fc6, plan)
    assert cost.dram_bytes >= 25088 * 4096
    assert cost.cycles >= 25088 * 4096 / 16  # the weights through a 16-byte port


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_depthwise_counts_match_the_program(name):
    cfg = load_config(name)
    layer = DepthwiseConv2D("dw", h=9, w=11, c=5, k=3, stride=2, pad=1)
    conv = layer.channel_conv()
    for plan in plans(cfg, conv):
        t = random_layer_data(layer, np.random.default_rng(0))
        est = estimate_program(cfg, lower_depthwise_naive(cfg, layer, t, plan).program)
        n = counts(cfg, layer, plan)
        assert n["commands"] == est.commands, plan
        assert n["streamed"] == est.rows_streamed, plan
        assert n["load_beats"] == pytest.approx(est.load_beats, rel=0.05, abs=1), plan
        assert n["store_beats"] == est.store_beats, plan


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_terms_are_sane(name):
    """Terms are non-negative and add up; compute is the streamed rows; the total is at least
    the array's own time and at most everything serialized; utilization is at most 1."""
    cfg = load_config(name)
    for layer in random_layers(11, 8, max_hw=10, max_c=2 * cfg.rows):
        for plan in plans(cfg, layer):
            cyc = array_layer_cycles(cfg, layer, plan)
            n = counts(cfg, layer, plan)
            assert all(v >= 0 for v in cyc.terms.values()), (plan, cyc)
            assert cyc.total == sum(cyc.terms.values())
            assert cyc.compute == n["streamed"]
            assert cyc.total >= cyc.compute + cyc.preload + cyc.fill_drain
            assert 0 < cyc.utilization <= 1
            assert cyc.macs == layer.macs and cyc.pes == cfg.pes


def test_monotone_in_bandwidth_latency_and_size():
    cfg = load_config("default")
    layer = Conv2D("c", h=20, w=20, cin=40, cout=40, k=3, pad=1)
    plan = default_plan(cfg, layer)
    by_bw = [array_layer_cycles(cfg, layer, plan, bandwidth=b).total for b in (1, 2, 4, 8, 16)]
    assert by_bw == sorted(by_bw, reverse=True) and by_bw[0] > by_bw[-1]
    by_lat = [array_layer_cycles(cfg, layer, plan, latency=v).total for v in (1, 20, 100, 400)]
    assert by_lat == sorted(by_lat) and by_lat[0] < by_lat[-1]
    wider = Conv2D("c", h=20, w=20, cin=40, cout=80, k=3, pad=1)
    assert array_layer_cycles(cfg, wider, plan).total > array_layer_cycles(cfg, layer, plan).total
    dw = DepthwiseConv2D("dw", h=28, w=28, c=32, k=3, pad=1)
    vp = default_vector_plan(cfg, dw)
    by_bw = [layer_cost(cfg, dw, vp, bandwidth=b).cycles for b in (2, 4, 8, 16)]
    assert by_bw == sorted(by_bw, reverse=True) and by_bw[0] > by_bw[-1]
    single = dataclasses.replace(plan, double_buffer=False)
    assert array_layer_cycles(cfg, layer, single).total > array_layer_cycles(cfg, layer, plan).total


def test_a_large_layer_runs_near_peak():
    cfg = load_config("default")
    layer = Conv2D("bench", h=56, w=56, cin=64, cout=64, k=3, pad=1)
    cost = layer_cost(cfg, layer, default_plan(cfg, layer))
    assert 0.9 < cost.utilization <= 1
    assert cost.compute == 56 * 56 * 9 * 4 * 4  # rows streamed: pixels x taps x chunks x n-tiles


def test_layer_cost_dispatches_on_layer_and_plan():
    cfg = load_config("default")
    conv = Conv2D("c", h=8, w=8, cin=20, cout=24, k=3, pad=1)
    dense = Dense("d", m=30, k=40, n=50)
    dw = DepthwiseConv2D("dw", h=12, w=12, c=20, k=3, pad=1)
    add = Add("a", h=8, w=8, c=24)
    pool = Pool2D("p", h=8, w=8, c=24, k=2, stride=2, kind="max")
    for layer in (conv, dense):
        cost = layer_cost(cfg, layer, default_plan(cfg, layer))
        assert cost.engine == "array"
        assert cost.cycles == array_layer_cycles(cfg, layer, default_plan(cfg, layer)).total
        assert cost.dram_write == layer.output_bytes
        assert cost.dram_read >= layer.input_bytes + layer.weight_bytes
    plan = default_plan(cfg, dw.channel_conv())
    cost = layer_cost(cfg, dw, plan)
    assert cost.engine == "array" and cost.cycles == depthwise_array_cycles(cfg, dw, plan).total
    for layer in (dw, add, pool):
        vp = default_vector_plan(cfg, layer)
        cost = layer_cost(cfg, layer, vp)
        assert cost.engine == "vector" and cost.peak == cfg.vector_lanes
        # the unit's busy cycles are exact; the DMA, tokens and the decoder only add to them
        v = vector_layer_cycles(cfg, layer, vp)
        assert cost.compute == v.busy and cost.cycles > v.busy + v.epilogue
        assert cost.cycles == sum(cost.terms.values())
    with pytest.raises(TypeError, match="VectorPlan"):
        layer_cost(cfg, add, TilePlan(1, 1))
    with pytest.raises(TypeError, match="TilePlan"):
        layer_cost(cfg, conv, VectorPlan(1, 1))


def test_a_plan_that_does_not_fit_names_the_layer():
    cfg = load_config("tiny")
    layer = Conv2D("too_big", h=64, w=64, cin=64, cout=64, k=3, pad=1)
    with pytest.raises(ValueError, match="too_big"):
        layer_cost(cfg, layer, TilePlan(64, 64))
    with pytest.raises(ValueError, match="bandwidth"):
        layer_cost(cfg, layer, TilePlan(1, 1), bandwidth=0)


def test_costs_add_up():
    cfg = load_config("default")
    a = Conv2D("a", h=8, w=8, cin=16, cout=16, k=3, pad=1)
    b = DepthwiseConv2D("b", h=8, w=8, c=16, k=3, pad=1)
    ca = layer_cost(cfg, a, default_plan(cfg, a))
    cb = layer_cost(cfg, b, default_vector_plan(cfg, b))
    tot = ca + cb
    assert isinstance(tot, LayerCost) and tot.engine == "mixed"
    assert tot.cycles == ca.cycles + cb.cycles and tot.macs == ca.macs + cb.macs
    assert tot.energy_pj == pytest.approx(ca.energy_pj + cb.energy_pj)
    assert (ca + ca).engine == "array"
    cyc = array_layer_cycles(cfg, a, default_plan(cfg, a))
    assert (cyc + cyc).total == 2 * cyc.total


def test_energy_follows_the_table():
    cfg = load_config("default")
    layer = Conv2D("c", h=10, w=10, cin=32, cout=32, k=3, pad=1)
    plan = default_plan(cfg, layer)
    table = load_energy_table()
    cost = layer_cost(cfg, layer, plan, energy=table)
    assert cost.energy_mac_pj == pytest.approx(layer.macs * table.mac_pj)
    assert cost.energy_dram_pj == pytest.approx(cost.dram_bytes * table.dram_pj_per_byte)
    assert cost.energy_static_pj == 0
    doubled = dataclasses.replace(table, dram_pj_per_byte=2 * table.dram_pj_per_byte)
    cost2 = layer_cost(cfg, layer, plan, energy=doubled)
    assert cost2.energy_dram_pj == pytest.approx(2 * cost.energy_dram_pj)
    assert cost2.energy_mac_pj == cost.energy_mac_pj
    flat = dataclasses.replace(table, sram_scaling_exponent=0.0)
    scaled = table.spad_scale(cfg.spad_kib)
    assert scaled == pytest.approx(math.sqrt(cfg.spad_kib / table.spad_reference_kib))
    assert layer_cost(cfg, layer, plan, energy=flat).energy_spad_pj == pytest.approx(
        cost.energy_spad_pj / scaled
    )
    assert cost.spad_read > 0 and cost.acc_write > 0 and cost.acc_read > 0


def test_energy_table_loader(tmp_path):
    table = load_energy_table()
    assert table == EnergyTable()  # the TOML states the documented defaults
    bad = tmp_path / "bad.toml"
    bad.write_text("mac_pj = 0.3\nsram_pj = 1.0\n")
    with pytest.raises(ValueError, match=r"unknown key.*sram_pj"):
        load_energy_table(bad)
    bad.write_text("mac_pj = -1\n")
    with pytest.raises(ValueError, match="mac_pj must be >= 0"):
        load_energy_table(bad)
    bad.write_text('mac_pj = "cheap"\n')
    with pytest.raises(ValueError, match="mac_pj must be a number"):
        load_energy_table(bad)
    good = tmp_path / "good.toml"
    good.write_text("mac_pj = 0.5\n")
    assert load_energy_table(good).mac_pj == 0.5
