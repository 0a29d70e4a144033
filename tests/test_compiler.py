"""The network compiler: whole networks as one program, every tensor checked bit for bit on the
reference interpreter against the golden; layout, quantization and plan validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kernels.interp import execute
from kernels.layers import DepthwiseConv2D
from kernels.lower import ALIGN, TilePlan, default_plan
from kernels.lower_vector import VectorPlan, default_vector_plan
from mapping.compiler import (
    SIX,
    TARGET,
    CompiledNetwork,
    channel_conv,
    compile_network,
    default_plans,
    naive_plans,
)
from mapping.mapper import map_network
from mapping.workloads import INPUT, NetworkBuilder
from mapping.zoo import get_network
from rtl import isa
from rtl.config import load_config
from rtl.isa import Op

CONFIGS = {name: load_config(name) for name in ("tiny", "default")}


def mini_mobilenet():
    """Stem, inverted residuals (t=1, strided t=6, one with a residual add), head, classifier."""
    b = NetworkBuilder("mini_mobilenet", (1, 12, 12, 3))
    x = b.conv("stem", b.input, 8, 3, stride=2, pad=1, act="relu6")
    y = b.depthwise("b1.dw", x, 3, pad=1, act="relu6")
    x = b.conv("b1.project", y, 8, 1)
    y = b.conv("b2.expand", x, 24, 1, act="relu6")
    y = b.depthwise("b2.dw", y, 3, stride=2, pad=1, act="relu6")
    x = b.conv("b2.project", y, 12, 1)
    y = b.conv("b3.expand", x, 36, 1, act="relu6")
    y = b.depthwise("b3.dw", y, 3, pad=1, act="relu6")
    y = b.conv("b3.project", y, 12, 1)
    x = b.add("b3.add", x, y)
    x = b.conv("head", x, 40, 1, act="relu6")
    x = b.flatten("flatten", b.gap("pool", x))
    b.dense("classifier", x, 10)
    return b.build()


def mini_resnet():
    """Stem, max pool, a bottleneck with a downsample and one without, pool, classifier."""
    b = NetworkBuilder("mini_resnet", (1, 16, 16, 3))
    x = b.conv("conv1", b.input, 8, 5, stride=2, pad=2, act="relu")
    x = b.pool("maxpool", x, 3, stride=2, pad=1)
    for i, stride in enumerate((2, 1)):
        y = b.conv(f"l{i}.conv1", x, 4, 1, act="relu")
        y = b.conv(f"l{i}.conv2", y, 4, 3, stride=stride, pad=1, act="relu")
        y = b.conv(f"l{i}.conv3", y, 16, 1)
        if i == 0:
            x = b.conv(f"l{i}.downsample", x, 16, 1, stride=stride)
        x = b.add(f"l{i}.add", x, y, act="relu")
    x = b.flatten("flatten", b.gap("avgpool", x))
    b.dense("fc", x, 7)
    return b.build()


def mini_inception():
    """Concats fed by convolutions, pools, depthwise and adds; slices read by other layers."""
    b = NetworkBuilder("mini_inception", (1, 9, 10, 5))
    stem = b.conv("stem", b.input, 12, 3, pad=1, act="relu")
    b1 = b.conv("b1", stem, 6, 1, act="relu")
    b2 = b.conv("b2", b.conv("b2.reduce", stem, 4, 1, act="relu"), 7, 3, pad=1, act="relu")
    b3 = b.pool("b3.pool", stem, 3, stride=1, pad=1)
    b4 = b.depthwise("b4.dw", stem, 3, pad=1, act="relu")
    cat = b.concat("cat", b1, b2, b3, b4)
    r = b.conv("r", b3, 6, 1)  # reads a concat slice
    a = b.add("a", b1, r, act="relu")  # reads a concat slice
    c = b.conv("c", cat, 9, 3, pad=1, act="relu")
    d = b.depthwise("d.dw", stem, 5, pad=2, act="relu6")  # on the array in one plan set
    cat2 = b.concat("cat2", c, d, a)
    x = b.pool("down", cat2, 2, stride=2)
    x = b.flatten("flatten", b.gap("gap", x))
    b.dense("fc", x, 5)
    return b.build()


def mini_resnext():
    """Grouped convolutions: bottlenecks whose 3x3 has 4 groups (packed side by side on the
    array where they fit), a grouped convolution reading a concat slice and one writing into a
    concat, a depthwise-multiplier convolution (groups == cin, cout = 2*cin)."""
    b = NetworkBuilder("mini_resnext", (1, 12, 12, 3))
    x = b.conv("conv1", b.input, 16, 3, stride=2, pad=1, act="relu")
    for i, stride in enumerate((1, 2)):
        y = b.conv(f"l{i}.conv1", x, 8, 1, act="relu")
        y = b.conv(f"l{i}.conv2", y, 8, 3, stride, 1, groups=4, act="relu")
        y = b.conv(f"l{i}.conv3", y, 16, 1)
        if i == 1:
            x = b.conv(f"l{i}.downsample", x, 16, 1, stride=stride)
        x = b.add(f"l{i}.add", x, y, act="relu")
    g = b.conv("g", x, 12, 3, 1, 1, groups=2, act="relu")
    m = b.conv("mult", x, 32, 1, groups=16)
    cat = b.concat("cat", g, m)
    s = b.conv("slice", m, 8, 3, 1, 1, groups=8, act="relu6")  # reads a concat slice
    w = b.conv("whole", cat, 4, 1, groups=4)  # reads the whole concat
    x = b.flatten("flatten", b.gap("gap", b.concat("cat2", s, w)))
    b.dense("fc", x, 5)
    return b.build()


NETWORKS = {"mobilenet": mini_mobilenet, "resnet": mini_resnet, "inception": mini_inception,
            "resnext": mini_resnext}  # fmt: skip


def array_depthwise(config, network) -> dict:
    """Default plans, but every depthwise layer on the array one channel at a time."""
    plans = default_plans(config, network)
    for node in network:
        if isinstance(node.op, DepthwiseConv2D):
            plans[node.name] = default_plan(config, channel_conv(node.op))
    return plans


PLANS = {"default": lambda config, network: None, "naive": naive_plans,
         "array_dw": array_depthwise}  # fmt: skip


def run_interp(compiled: CompiledNetwork) -> dict[str, int]:
    result = execute(compiled.config, compiled.program, compiled.image)
    assert not any(result.tokens_left.values()), result.tokens_left
    arena = np.frombuffer(result.dram, dtype=np.int8)
    return compiled.check(arena[compiled.arena.addr : compiled.arena.addr + compiled.arena.nbytes])


@pytest.mark.parametrize("plans", list(PLANS))
@pytest.mark.parametrize("net", list(NETWORKS))
@pytest.mark.parametrize("cfg", list(CONFIGS))
def test_small_networks_bit_exact_in_every_tensor(cfg, net, plans):
    config, network = CONFIGS[cfg], NETWORKS[net]()
    compiled = compile_network(config, network, PLANS[plans](config, network), seed=3)
    mismatches = run_interp(compiled)
    assert set(mismatches) == {node.name for node in network}
    assert not any(mismatches.values()), {k: v for k, v in mismatches.items() if v}


def test_mobilenetv2_32_default_bit_exact_in_every_tensor():
    config = CONFIGS["default"]
    compiled = compile_network(config, get_network("mobilenetv2", input_size=32))
    assert set(compiled.engines.values()) == {"array", "vector", "view"}
    assert not any(run_interp(compiled).values())


@pytest.mark.slow
@pytest.mark.parametrize("plans", ["default", "naive"])
def test_mobilenetv2_32_tiny_bit_exact_in_every_tensor(plans):
    # ~3 minutes each on the interpreter: the 4x4 array runs the 1280x1000 classifier as 80,000
    # MATMULs (make regress)
    config = CONFIGS["tiny"]
    network = get_network("mobilenetv2", input_size=32)
    compiled = compile_network(config, network, PLANS[plans](config, network))
    assert not any(run_interp(compiled).values())


@pytest.mark.slow
def test_mobilenetv2_32_default_naive_bit_exact_in_every_tensor():
    config = CONFIGS["default"]
    network = get_network("mobilenetv2", input_size=32)
    compiled = compile_network(config, network, naive_plans(config, network))
    assert not any(run_interp(compiled).values())


def test_a_wrong_value_is_caught_and_located():
    compiled = compile_network(CONFIGS["tiny"], mini_inception())
    result = execute(compiled.config, compiled.program, compiled.image)
    arena = bytearray(result.dram[: compiled.arena.nbytes])
    region = compiled.regions["b3.pool"]  # a concat slice: one byte inside the concat buffer
    arena[region.addr + region.pixel_stride * 5 + 2] ^= 0x40
    mismatches = compiled.check(np.frombuffer(bytes(arena), dtype=np.int8))
    assert {k for k, v in mismatches.items() if v} == {"b3.pool", "cat"}


# ---------------------------------------------------------------- values stay in range


def test_values_stay_in_range_through_mobilenetv2():
    network = get_network("mobilenetv2", input_size=32)
    compiled = compile_network(CONFIGS["default"], network, seed=1)
    for node in network:
        if compiled.engines[node.name] == "view":
            continue
        y = compiled.goldens[node.name].astype(np.int64)
        act = getattr(node.op, "act", "none")
        top = SIX if act == "relu6" else 127
        stats = (
            f"{node.name}: min {y.min()} max {y.max()} zero {np.mean(y == 0):.2f} "
            f"clamped {np.mean((y >= top) | (y <= -128)):.4f}"
        )
        assert np.mean((y >= top) | (y <= -128)) < 0.01, stats  # hardly ever saturated
        assert np.mean(y != 0) > 0.3, stats  # not vanishing (ReLU zeroes about half)
        assert np.abs(y).max() > TARGET // 2, stats  # uses the int8 range
        assert len(np.unique(y)) > 20, stats
        if act == "none" and node.kind != "avgpool":  # (a pool of ReLU6 outputs is >= 0)
            assert y.min() < -TARGET // 2, stats  # signed layers stay signed


def test_requant_is_calibrated_per_channel_on_the_accumulators():
    compiled = compile_network(CONFIGS["default"], mini_resnet(), seed=5)
    rq = compiled.tensors["conv1"]["requant"]
    assert rq.channels == 8 and rq.zero_point == 0 and rq.act == "relu"
    assert len(set(rq.multiplier)) > 1  # per channel
    fc = compiled.tensors["fc"]["requant"]  # one row: the whole tensor's percentile
    assert len(set(zip(fc.multiplier, fc.shift, strict=True))) == 1
    add = compiled.tensors["l0.add"]
    assert max(add["ma"], add["mb"]) == 1 << 14 and min(add["ma"], add["mb"]) >= 1


def test_seed_changes_the_data_not_the_program():
    a = compile_network(CONFIGS["tiny"], mini_resnet(), seed=1)
    b = compile_network(CONFIGS["tiny"], mini_resnet(), seed=2)
    c = compile_network(CONFIGS["tiny"], mini_resnet(), seed=1)
    assert a.image == c.image and a.image != b.image
    assert not np.array_equal(a.goldens[INPUT], b.goldens[INPUT])


# ---------------------------------------------------------------- layout and program


@pytest.mark.parametrize("net", list(NETWORKS))
def test_layout(net):
    config = CONFIGS["tiny"]
    network = NETWORKS[net]()
    compiled = compile_network(config, network, naive_plans(config, network))
    arena, weights = compiled.arena, compiled.weights
    assert arena.addr == 0 and weights.addr >= arena.nbytes
    assert compiled.program_addr >= weights.addr + weights.nbytes
    assert compiled.program_addr % ALIGN == 0 and weights.addr % ALIGN == 0
    assert len(compiled.image) >= compiled.program_addr + 16 * len(compiled.program)
    owners = {}  # byte -> node, for the tensors that own their bytes
    kinds = {node.name: node.kind for node in network}
    for name, region in compiled.regions.items():
        assert region.end <= arena.nbytes
        assert compiled.goldens[name].shape == region.shape
        if kinds.get(name) in ("flatten", "reshape"):
            src = compiled.regions[network.node(name).inputs[0]]
            assert region.addr == src.addr
            continue
        if region.packed:
            assert region.addr % ALIGN == 0
            for byte in range(region.addr, region.end):
                assert byte not in owners, (name, owners.get(byte))
                owners[byte] = name
    # concat producers lie in channel slices of the concat's buffer
    for node in network:
        if node.kind == "concat":
            buf, offset = compiled.regions[node.name], 0
            for src in node.inputs:
                r = compiled.regions[src]
                assert (r.addr, r.pixel_stride) == (buf.addr + offset, buf.channels)
                offset += r.channels
            assert offset == buf.channels
    # the input is in the image
    x = compiled.regions[INPUT]
    got = np.frombuffer(compiled.image[x.addr : x.end], dtype=np.int8).reshape(x.shape)
    assert np.array_equal(got, compiled.goldens[INPUT])


def test_program_structure():
    config = CONFIGS["tiny"]
    network = mini_inception()
    compiled = compile_network(config, network)
    ops = [Op(w & 0xF) for w in compiled.program]
    stop = 0
    for node in network:
        start, end = compiled.commands[node.name]
        assert start == stop
        stop = end
        if compiled.engines[node.name] == "view":
            assert start == end
        else:  # each layer's program ends with its FENCE, and has no other
            assert ops[end - 1] == Op.FENCE and Op.FENCE not in ops[start : end - 1]
            units = {isa.decode(w).queue.name for w in compiled.program[start:end]}
            engine = "VECTOR" if compiled.engines[node.name] == "vector" else "EXEC"
            assert engine in units
    assert stop == len(compiled.program) and ops[-1] == Op.FENCE
    assert compiled.macs == network.macs
    assert compiled.program == tuple(isa.from_bytes(compiled.image[compiled.program_addr :])[
        : len(compiled.program)])  # fmt: skip


def test_plans():
    config = CONFIGS["default"]
    network = mini_inception()
    naive = naive_plans(config, network)
    for node in network:
        plan = naive.get(node.name)
        if node.kind in ("conv", "dense", "depthwise"):
            assert isinstance(plan, TilePlan) and not plan.double_buffer
        elif node.kind in ("add", "maxpool", "avgpool"):
            assert isinstance(plan, VectorPlan) and not plan.double_buffer
        else:
            assert plan is None
    assert naive == map_network(config, network, naive=True).plans
    compiled = compile_network(config, network, naive)
    assert compiled.engines["b4.dw"] == "array-naive" and compiled.engines["cat"] == "view"
    model = compiled.model_cycles()
    assert model["cat"] == 0 and all(model[n] > 0 for n in compiled.plans)
    assert compile_network(config, network).engines["b4.dw"] == "vector"
    assert compile_network(config, network).plans == default_plans(config, network)


def test_plan_errors_name_the_node():
    config = CONFIGS["tiny"]
    network = mini_inception()
    with pytest.raises(ValueError, match=r"node 'stem' \(conv\) runs on the systolic array"):
        compile_network(config, network, {"stem": VectorPlan(1, 1)})
    with pytest.raises(ValueError, match=r"node 'a' \(add\) runs on the vector unit only"):
        compile_network(config, network, {"a": TilePlan(1, 1)})
    with pytest.raises(ValueError, match=r"node 'cat' \(concat\) is a view"):
        compile_network(config, network, {"cat": TilePlan(1, 1)})
    with pytest.raises(ValueError, match=r"node\(s\) 'nope'"):
        compile_network(config, network, {"nope": TilePlan(1, 1)})
    with pytest.raises(ValueError, match=r"node 'stem' \(conv\): plan .* does not fit"):
        compile_network(config, network, {"stem": TilePlan(20, 20)})
    with pytest.raises(TypeError, match="node 'stem'"):
        compile_network(config, network, {"stem": "fast"})


def test_unsupported_concats_and_views_are_errors():
    config = CONFIGS["tiny"]
    b = NetworkBuilder("bad", (1, 4, 4, 3))
    x = b.conv("x", b.input, 4, 1)
    b.concat("cat", b.input, x)
    with pytest.raises(ValueError, match="concat 'cat' reads 'input', the network input"):
        compile_network(config, b.build())
    b = NetworkBuilder("bad", (1, 4, 4, 3))
    x = b.conv("x", b.input, 4, 1)
    y = b.conv("y", b.input, 4, 1)
    b.concat("c1", x, y)
    b.concat("c2", x, y)
    with pytest.raises(ValueError, match="'x', which already writes into concat 'c1'"):
        compile_network(config, b.build())
    b = NetworkBuilder("bad", (1, 4, 4, 3))
    x = b.conv("x", b.input, 4, 1)
    y = b.conv("y", b.input, 4, 1)
    b.concat("c1", x, y)
    b.dense("fc", b.flatten("flat", x), 3)
    with pytest.raises(ValueError, match=r"'flat' \(flatten\) views 'x'.*view the concat"):
        compile_network(config, b.build())


def test_dense_reads_the_flattened_tensor_in_nhwc_order():
    config = CONFIGS["tiny"]
    b = NetworkBuilder("flat", (1, 3, 2, 5))
    x = b.conv("x", b.input, 4, 1, act="relu")
    b.dense("fc", b.flatten("flat", x), 6)
    compiled = compile_network(config, b.build())
    assert compiled.regions["flat"].addr == compiled.regions["x"].addr
    flat = compiled.goldens["x"].reshape(1, -1)  # (y*w + x)*c + ch
    assert np.array_equal(compiled.goldens["flat"], flat)
    assert not any(run_interp(compiled).values())


def test_plan_replacement_keeps_defaults_for_the_rest():
    config = CONFIGS["default"]
    network = mini_mobilenet()
    plan = dataclasses.replace(default_plan(config, network.node("head").op), double_buffer=False)
    compiled = compile_network(config, network, {"head": plan})
    assert compiled.plans["head"] == plan
    assert compiled.plans["stem"] == default_plan(config, network.node("stem").op)


def test_vector_program_checks_addresses_and_strides():
    from kernels.layers import Add
    from kernels.lower_vector import vector_program

    config = CONFIGS["tiny"]
    layer = Add("add", h=2, w=3, c=5)
    plan = default_vector_plan(config, layer)
    kw = {"params_addr": 0, "output_addr": 64}
    with pytest.raises(ValueError, match="addresses of a, b, not input"):
        vector_program(config, layer, plan, inputs={"input": 0}, **kw)
    with pytest.raises(ValueError, match=r"the b stride 4 must be in c=5\.\."):
        vector_program(config, layer, plan, inputs={"a": 0, "b": 0}, input_strides={"b": 4}, **kw)
    with pytest.raises(ValueError, match="output address -1 is outside"):
        vector_program(config, layer, plan, inputs={"a": 0, "b": 0}, params_addr=0, output_addr=-1)
