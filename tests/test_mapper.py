"""The mapper: candidate plans, overrides, the naive baseline, search results, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernels.layers import Add, Conv2D, Dense, DepthwiseConv2D, global_avg_pool
from kernels.lower import TilePlan
from kernels.lower_vector import VectorPlan
from mapping.layer_cost import array_cycles_floor, layer_cost
from mapping.mapper import (
    Override,
    candidate_plans,
    map_layer,
    map_network,
    naive_plan,
    parse_override,
)
from mapping.zoo import get_network
from rtl.config import load_config
from tandem.cli import main

LAYERS = [
    Conv2D("c3", h=56, w=56, cin=64, cout=64, k=3, stride=1, pad=1),
    Conv2D("c1_wide", h=14, w=14, cin=160, cout=960, k=1),
    Conv2D("c5_s2", h=33, w=29, cin=7, cout=21, k=5, stride=2, pad=2, batch=2),
    Dense("fc", m=3, k=1280, n=1000),
    DepthwiseConv2D("dw", h=28, w=28, c=144, k=3, stride=2, pad=1),
    Add("add", h=14, w=14, c=96),
    global_avg_pool("gap", h=7, w=7, c=320),
    Conv2D("g32", h=28, w=28, cin=256, cout=256, k=3, stride=2, pad=1, groups=32),
]


@pytest.mark.parametrize("cfg_name", ["tiny", "default"])
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_every_candidate_fits_and_is_distinct(cfg_name, layer):
    cfg = load_config(cfg_name)
    plans = candidate_plans(cfg, layer)
    assert plans, f"no candidate for {layer.name} on {cfg_name}"
    assert len(set(plans)) == len(plans)
    for plan in plans:
        if isinstance(plan, VectorPlan):
            plan.validate(cfg, layer)
        elif isinstance(layer, DepthwiseConv2D):
            assert plan.oh_t <= layer.out_h and plan.ow_t <= layer.out_w
        else:
            plan.validate(cfg, layer)


def test_depthwise_candidates_cover_both_engines():
    cfg = load_config("default")
    plans = candidate_plans(cfg, LAYERS[4])
    kinds = {type(p) for p in plans}
    assert kinds == {TilePlan, VectorPlan}


def test_map_layer_returns_the_minimum_over_candidates():
    cfg = load_config("default")
    layer = LAYERS[0]
    plan, cost, evaluated, n = map_layer(cfg, layer)
    costs = [layer_cost(cfg, layer, p).cycles for p in candidate_plans(cfg, layer)]
    assert n == len(costs) and evaluated <= n
    assert cost.cycles == min(costs)
    assert cost == layer_cost(cfg, layer, plan)


@pytest.mark.parametrize("cfg_name", ["tiny", "default", "wide"])
def test_pruned_search_equals_the_exhaustive_one(cfg_name):
    """The cycles search skips plans by a lower bound; its choice is the exhaustive minimum
    (first in candidate order on a tie), and the bound never exceeds the model."""
    cfg = load_config(cfg_name)
    for layer in [*LAYERS, Conv2D("c7s2", h=64, w=64, cin=3, cout=24, k=7, stride=2, pad=3)]:
        plans = candidate_plans(cfg, layer)
        cycles = [layer_cost(cfg, layer, p).cycles for p in plans]
        for p, c in zip(plans, cycles, strict=True):
            if isinstance(p, TilePlan):
                assert array_cycles_floor(cfg, layer, p) <= c, (layer.name, p)
        plan, *_ = map_layer(cfg, layer)
        assert plan == plans[cycles.index(min(cycles))]


def test_energy_objective_never_costs_more_energy():
    cfg = load_config("default")
    for layer in LAYERS:
        _, by_cycles, *_ = map_layer(cfg, layer, objective="cycles")
        _, by_energy, *_ = map_layer(cfg, layer, objective="energy")
        assert by_energy.energy_pj <= by_cycles.energy_pj
        assert by_cycles.cycles <= by_energy.cycles


def test_mapping_is_deterministic():
    cfg = load_config("default")
    net = get_network("mobilenetv2", input_size=64)
    a = map_network(cfg, net)
    b = map_network(cfg, net)
    assert a.plans == b.plans
    assert a.cycles == b.cycles


def test_mapped_beats_naive_and_puts_depthwise_on_the_vector_unit():
    cfg = load_config("default")
    net = get_network("mobilenetv2", input_size=224)
    mapped = map_network(cfg, net)
    naive = map_network(cfg, net, naive=True)
    for lm in mapped.layers:
        if lm.kind == "depthwise":
            assert lm.engine == "vector", lm.name
    for lm in naive.layers:
        if lm.kind in ("conv", "dense", "depthwise"):
            assert lm.engine == "array" and not lm.plan.double_buffer, lm.name
    assert mapped.cycles * 2 < naive.cycles
    assert len(mapped.plans) == sum(1 for n in net if n.engine != "none")


def test_k_group_candidates_only_when_nothing_fits_unsplit():
    """A dense layer whose one n-tile's weights exceed tiny's scratchpad gets K-group candidates
    (the smallest k_groups that fits per mode, and the next power of two); layers that fit
    unsplit get none."""
    cfg = load_config("tiny")
    for layer in LAYERS[:4]:
        plans = candidate_plans(cfg, layer)
        assert all(p.k_groups == 1 for p in plans if isinstance(p, TilePlan)), layer.name
    deep = Dense("deep", m=2, k=20000, n=9)  # 5000 chunks: 20000 weight rows > 4096
    plans = candidate_plans(cfg, deep)
    assert plans and all(p.k_groups > 1 and not p.resident_weights for p in plans)
    by_mode: dict[tuple[bool, bool], set[int]] = {}
    for plan in plans:
        plan.validate(cfg, deep)
        by_mode.setdefault((plan.double_buffer, plan.n_outer), set()).add(plan.k_groups)
    for (double, n_outer), kgs in by_mode.items():
        lo, hi = min(kgs), max(kgs)
        with pytest.raises(ValueError, match="weights of one n-tile"):  # one group fewer
            TilePlan(1, 1, double, False, n_outer, k_groups=lo - 1).validate(cfg, deep)
        assert hi == 1 << lo.bit_length()  # and the next power of two
    assert naive_plan(cfg, deep).k_groups > 1


def test_resnext50_groups_run_side_by_side():
    mapped = map_network(load_config("default"), get_network("resnext50"))
    by_name = {lm.name: lm for lm in mapped.layers}
    # 4-, 8-, 16- and 32-channel groups on a 16x16 array: 4, 2, 1 and 1 per segment
    for name, pack in [("layer1.0", 4), ("layer2.0", 2), ("layer3.0", 1), ("layer4.0", 1)]:
        lm = by_name[f"{name}.conv2"]
        assert lm.groups == (pack, 32)
        assert lm.plan_text.endswith(f" {pack}/32g")
        assert (lm.to_dict()["groups_per_segment"], lm.to_dict()["groups"]) == (pack, 32)
    assert by_name["layer1.0.conv1"].groups == (1, 1)
    assert "g" not in by_name["layer1.0.conv1"].plan_text.split()[-1]


def test_vgg16_fc6_maps_with_k_groups():
    cfg = load_config("default")
    mapped = map_network(cfg, get_network("vgg16"))
    split = {name for name, plan in mapped.plans.items() if getattr(plan, "k_groups", 1) > 1}
    assert split == {"fc6"}


def test_naive_plan_is_the_largest_single_buffered_tile():
    cfg = load_config("default")
    plan = naive_plan(cfg, LAYERS[0])
    assert plan == TilePlan(plan.oh_t, 56, double_buffer=False)
    taller = TilePlan(plan.oh_t + 1, 56, double_buffer=False)
    with pytest.raises(ValueError):
        taller.validate(cfg, LAYERS[0])


def test_overrides_parse_and_restrict():
    assert parse_override("depthwise=array") == ("depthwise", Override(engine="array"))
    assert parse_override("conv_3=os,8x56,single") == (
        "conv_3",
        Override(dataflow="os", tile=(8, 56), double_buffer=False),
    )
    for bad in ("depthwise", "=array", "conv=fast", "conv=ws,os", "dw=vector,ws"):
        with pytest.raises(ValueError, match="override"):
            parse_override(bad)
    cfg = load_config("default")
    net = get_network("mobilenetv2", input_size=64)
    forced = map_network(cfg, net, overrides=["depthwise=array", "features.2.expand=os,single"])
    for lm in forced.layers:
        if lm.kind == "depthwise":
            assert lm.engine == "array"
    plan = forced.layer("features.2.expand").plan
    assert plan.dataflow == "os" and not plan.double_buffer


def test_override_errors_name_the_key():
    cfg = load_config("default")
    net = get_network("mobilenetv2", input_size=64)
    with pytest.raises(ValueError, match="'nosuchlayer' is neither a node nor a layer kind"):
        map_network(cfg, net, overrides=["nosuchlayer=array"])
    with pytest.raises(ValueError, match="no plan obeys the override"):
        map_network(cfg, net, overrides=["add=array"])


def test_cli_map_prints_table_and_json(capsys):
    assert main(["map", "--config", "default", "--network", "mobilenetv2",
                 "--input-size", "64"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "total" in out and "evaluated by the model" in out
    assert main(["map", "--config", "default", "--network", "mobilenetv2", "--input-size",
                 "64", "--json", "--objective", "edp"]) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert data["objective"] == "edp"
    assert data["totals"]["cycles"] == sum(layer["cycles"] for layer in data["layers"])


def test_cli_map_bad_input_is_named(capsys):
    assert main(["map", "--config", "default", "--onnx", "/no/such.onnx"]) == 2
    assert "--onnx /no/such.onnx: no such file" in capsys.readouterr().err
    assert main(["map", "--config", "default", "--network", "mobilenetv2",
                 "--override", "conv=warp"]) == 2  # fmt: skip
    assert "unknown value 'warp'" in capsys.readouterr().err


def test_cli_report_writes_markdown_and_png(tmp_path, capsys):
    assert main(["report", "--config", "default", "--network", "mobilenetv2",
                 "--input-size", "64", "--out", str(tmp_path)]) == 0  # fmt: skip
    md = (tmp_path / "mobilenet_v2-default.md").read_text()
    assert "| **total** |" in md and "speedup" in md
    png = (tmp_path / "mobilenet_v2-default.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_cli_map_reads_a_real_onnx_model_and_a_scalesim_csv(tmp_path, capsys):
    import onnx

    from mapping.scalesim import write_csv

    model = Path(onnx.__file__).parent / "backend/test/data/light/light_resnet50.onnx"
    assert main(["map", "--config", "default", "--onnx", str(model), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["macs"] == get_network("resnet50").macs
    csv = tmp_path / "mnv2.csv"
    write_csv(get_network("mobilenetv2", input_size=64), csv)
    assert main(["map", "--config", "default", "--csv", str(csv)]) == 0
    assert "total" in capsys.readouterr().out
