"""The layer graph (mapping.workloads) and the built-in networks (mapping.zoo)."""

from __future__ import annotations

import dataclasses

import pytest

from kernels.layers import Add, Conv2D, Dense, DepthwiseConv2D, Pool2D
from mapping.workloads import (
    Concat,
    Flatten,
    Network,
    NetworkBuilder,
    Node,
    Reshape,
    Source,
    Totals,
    conv2d,
)
from mapping.zoo import (
    GOOGLENET_INCEPTIONS,
    NETWORKS,
    alexnet,
    get_network,
    googlenet,
    mobilenet_v2,
    mobilenet_v2_depthwise,
    resnet50,
    resnext50,
    vgg16,
)

# ----------------------------------------------------------------------------- published totals
# MACs are multiply-accumulates of the layers with weights (convolutions, depthwise, dense); adds
# and pools are counted apart (`vector_ops`). Params are weights plus one bias per output channel,
# batch norm folded: torchvision's counts (which hold two BN parameters per channel and no conv
# bias) minus one per BN channel.
PUBLISHED = {
    # Sandler et al. 2018, table 4: 300M multiply-adds, 3.4M params; torchvision: 0.30 GFLOPS,
    # 3,504,872 params with BN (3,487,816 folded).
    "mobilenetv2": (300.8e6, 3_487_816),
    # torchvision resnet50 (v1.5, stride on the 3x3): 4.09 GFLOPS, 25,557,032 params with BN
    # (25,530,472 folded). He et al. 2016 give 3.8G for v1 (stride on the first 1x1).
    "resnet50": (4.09e9, 25_530_472),
    # torchvision resnext50_32x4d (Xie et al. 2017): 4.23 GFLOPS, 25,028,904 params with BN
    # (24,994,792 folded: 34,112 batch-norm channels).
    "resnext50": (4.23e9, 24_994_792),
    # Simonyan and Zisserman 2015 (config D), torchvision vgg16: 15.47 GFLOPS, 138,357,544 params.
    "vgg16": (15.47e9, 138_357_544),
    # Szegedy et al. 2015, table 1: 1.5G ops in total, but its conv1 row says 34M where the
    # stated 7x7x3x64 over 112x112 is 118M: 1502M - 34M + 118M = 1586M. Params: the table sums
    # to 6797.7K with K = 1024 (its 1000K linear layer is 1024x1000), 6.96M, plus ~8K biases.
    "googlenet": (1.586e9, 6.97e6),
    # torchvision alexnet (single group, 64-192-384-256-256): 0.71 GFLOPS, 61,100,840 params.
    # The grouped 2012 original is 0.72G / 60,965,224 params (below).
    "alexnet": (0.714e9, 61_100_840),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_zoo_totals_match_published_figures(name):
    macs, params = PUBLISHED[name]
    net = get_network(name)
    assert net.macs == pytest.approx(macs, rel=0.01)
    assert net.params == pytest.approx(params, rel=0.01)
    assert net.input_shape == (1, 224, 224, 3)
    assert net.output_shape == (1, 1000)


def test_exact_parameter_counts():
    # Exactly torchvision's counts with batch norm folded (see PUBLISHED).
    assert mobilenet_v2().params == 3_487_816
    assert resnet50().params == 25_530_472
    assert resnext50().params == 24_994_792
    assert vgg16().params == 138_357_544
    assert alexnet().params == 61_100_840


def test_mobilenet_v2_structure():
    net = mobilenet_v2()
    counts = net.counts()
    assert counts["conv"] + counts["depthwise"] == 52
    assert counts["depthwise"] == 17 and counts["add"] == 10 and counts["dense"] == 1
    assert net.node("classifier").op == Dense("classifier", m=1, k=1280, n=1000)
    assert all(op.act == "relu6" for op in net.layers("depthwise"))
    assert {op.act for op in net.layers("conv") if op.name.endswith(".project")} == {"none"}
    assert net.node("features.3.add").inputs == ("features.2.project", "features.3.project")
    # The 17 depthwise layers are mobilenet_v2_depthwise(), up to their names.
    for input_size in (224, 96):
        dw = mobilenet_v2(input_size).layers("depthwise")
        named = [dataclasses.replace(op, name=f"block{i}_dw") for i, op in enumerate(dw, 1)]
        assert named == mobilenet_v2_depthwise(input_size)
    assert mobilenet_v2_depthwise(224, batch=2)[0].batch == 2


def test_resnet50_structure():
    net = resnet50()
    assert net.counts()["conv"] == 53 and net.counts()["add"] == 16
    assert net.stat("layer2.0.conv2").output_shape == (1, 28, 28, 128)  # v1.5: stride on the 3x3
    assert net.node("layer1.0.add").inputs == ("layer1.0.downsample", "layer1.0.conv3")
    assert net.node("layer1.0.add").op.act == "relu"
    assert net.node("layer1.0.conv3").op.act == "none"


def test_resnext50_structure():
    net = resnext50()
    # ResNet-50's graph with 32-group 3x3 convolutions twice as wide as its bottlenecks
    assert [n.name for n in net] == [n.name for n in resnet50()]
    grouped = [op for op in net.layers("conv") if op.groups > 1]
    assert len(grouped) == 16 and {op.groups for op in grouped} == {32}
    assert [grouped[i].cin for i in (0, 3, 7, 13)] == [128, 256, 512, 1024]  # stage by stage
    assert net.node("layer1.0.conv2").op.weight_shape == (3, 3, 4, 128)
    assert net.stat("layer4.2.conv3").output_shape == (1, 7, 7, 2048)


def test_vgg16_layers():
    net = vgg16()
    assert net.counts() == {"conv": 13, "maxpool": 5, "flatten": 1, "dense": 3}
    assert net.node("fc6").op.k == 7 * 7 * 512


# Szegedy et al. 2015, table 1, "ops" column (millions) per inception module. Module 5a is left
# out: the table says 54M, but its own channels (256, 160, 320, 32, 128, 128 at 7x7x832) give
# 51.1M, and its params column (1072K) disagrees with them too.
GOOGLENET_TABLE_MOPS = {
    "3a": 128,
    "3b": 304,
    "4a": 73,
    "4b": 88,
    "4c": 100,
    "4d": 119,
    "4e": 170,
    "5b": 71,
}


def test_googlenet_matches_the_papers_table():
    net = googlenet()
    for module, mops in GOOGLENET_TABLE_MOPS.items():
        macs = sum(s.macs for s in net.stats if s.name.startswith(f"inception{module}."))
        assert macs == pytest.approx(mops * 1e6, rel=0.01), module
    assert net.counts()["concat"] == 9 == len(GOOGLENET_INCEPTIONS)
    # True 5x5 branches, four-way concats.
    five = net.node("inception3a.branch3").op
    assert (five.k, five.pad, five.cin, five.cout) == (5, 2, 16, 32)
    concat = net.node("inception3a.concat")
    assert len(concat.inputs) == 4
    assert net.stat("inception3a.concat").output_shape == (1, 28, 28, 256)
    assert net.stat("inception5b.concat").output_shape == (1, 7, 7, 1024)
    assert sum(s.weight_bytes for s in net.stats) == pytest.approx(6797.7 * 1024, rel=0.01)


def test_alexnet_variants():
    net = alexnet()
    assert [net.stat(n).output_shape[1] for n in ("conv1", "pool1", "pool2", "pool5")] == [
        55,
        27,
        13,
        6,
    ]
    # the 2012 two-GPU model: conv2, conv4, conv5 in 2 groups; the 60,965,224 parameters
    # usually quoted for it, exactly
    original = alexnet(variant="original")
    assert original.macs == pytest.approx(0.72e9, rel=0.01)
    assert original.params == 60_965_224
    assert [original.node(f"conv{i}").op.groups for i in range(1, 6)] == [1, 2, 1, 2, 2]
    with pytest.raises(ValueError, match="variant must be one of 'torchvision', 'original'"):
        alexnet(variant="caffe")


def test_engines_and_kinds():
    net = googlenet(64)
    for s in net.stats:
        want = {
            "conv": "array",
            "dense": "array",
            "depthwise": "vector",
            "add": "vector",
            "maxpool": "vector",
            "avgpool": "vector",
        }.get(s.kind, "none")
        assert s.engine == want, s.name
    engines = {s.engine for s in mobilenet_v2(32).stats}
    assert engines == {"array", "vector", "none"}


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("input_size", [32, 64, 65])
def test_small_inputs_build_valid_networks(name, input_size):
    minimum = 63 if name == "alexnet" else 32
    if input_size < minimum:
        with pytest.raises(ValueError, match=f"input_size must be an integer >= {minimum}"):
            get_network(name, input_size)
        return
    net = get_network(name, input_size)
    assert net.input_shape == (1, input_size, input_size, 3)
    assert net.output_shape == (1, 1000)
    assert 0 < net.macs < get_network(name).macs


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_too_small_inputs_are_refused(name):
    minimum = 63 if name == "alexnet" else 32
    get_network(name, minimum)
    with pytest.raises(ValueError, match=rf"{minimum} .*not {minimum - 1}"):
        get_network(name, minimum - 1)
    with pytest.raises(ValueError, match=r"not 224\.0"):
        get_network(name, 224.0)


def test_get_network_names():
    assert set(NETWORKS) == {"mobilenetv2", "resnet50", "resnext50", "vgg16", "googlenet",
                             "alexnet"}  # fmt: skip
    assert get_network("MobileNet_V2", 32).name == "mobilenet_v2"
    with pytest.raises(ValueError, match=r"unknown network 'lenet'.*mobilenetv2, resnet50"):
        get_network("lenet")


# ----------------------------------------------------------------------------- the graph
def test_node_counts_and_bytes():
    b = NetworkBuilder("tiny", (1, 8, 8, 3))
    x = b.conv("c1", b.input, 4, 3, pad=1, act="relu")
    y = b.depthwise("dw", x, 3, pad=1)
    z = b.add("add", x, y)
    p = b.pool("pool", z, 2, stride=2)
    c = b.concat("cat", p, p)
    f = b.flatten("flat", c)
    r = b.reshape("view", f, (1, -1))
    b.dense("fc", r, 10)
    net = b.build()
    assert [s.output_shape for s in net.stats] == [
        (1, 8, 8, 4),
        (1, 8, 8, 4),
        (1, 8, 8, 4),
        (1, 4, 4, 4),
        (1, 4, 4, 8),
        (1, 128),
        (1, 128),
        (1, 10),
    ]
    c1 = net.stat("c1")
    assert (c1.macs, c1.params) == (8 * 8 * 4 * 27, 27 * 4 + 4)
    assert (c1.input_bytes, c1.weight_bytes, c1.output_bytes) == (192, 108, 256)
    assert net.stat("add").input_bytes == 512 and net.stat("add").vector_ops == 512
    assert net.stat("add").macs == 0
    assert net.stat("cat").bytes == 0 and net.stat("cat").engine == "none"
    assert net.macs == 8 * 8 * 4 * 27 + 8 * 8 * 4 * 9 + 128 * 10
    assert net.params == 112 + 40 + 1290
    total = sum((s.totals for s in net.stats), Totals())
    assert total == net.totals and net.bytes == total.bytes
    assert Totals(1, 2, 3, 4, 5, 6) + Totals(1, 1, 1, 1, 1, 1) == Totals(2, 3, 4, 5, 6, 7)
    assert "tiny: 8 nodes" in net.summary()


def test_conv2d_groups():
    assert isinstance(conv2d("c", 8, 8, 4, 8, 3, groups=1), Conv2D)
    assert isinstance(conv2d("d", 8, 8, 4, 4, 3, pad=1, groups=4), DepthwiseConv2D)
    g = conv2d("g", 8, 8, 4, 8, 3, groups=2)
    assert (type(g), g.groups, g.weight_shape, g.macs) == (Conv2D, 2, (3, 3, 2, 8), 6 * 6 * 8 * 18)
    with pytest.raises(ValueError, match=r"layer 'g': groups=3 must divide both cin=4 and cout=8"):
        conv2d("g", 8, 8, 4, 8, 3, groups=3)


def test_shape_mismatch_names_both_nodes():
    a = Conv2D("a", 8, 8, 3, 4, 3, pad=1)
    b = Conv2D("b", 8, 8, 5, 4, 1)
    with pytest.raises(
        ValueError,
        match=r"node 'b' \(conv\) expects input 0 of shape \(1, 8, 8, 5\), but its producer "
        r"'a' gives \(1, 8, 8, 4\)",
    ):
        Network("n", (1, 8, 8, 3), (Node(a), Node(b, ("a",))))
    with pytest.raises(ValueError, match=r"node 'a' .* producer 'input' gives \(1, 8, 8, 2\)"):
        Network("n", (1, 8, 8, 2), (Node(a),))
    add = Add("add", 8, 8, 4)
    with pytest.raises(ValueError, match=r"node 'add' \(add\) expects input 1 .* 'input'"):
        Network("n", (1, 8, 8, 3), (Node(a), Node(add, ("a", "input"))))
    p = Pool2D("p", 8, 8, 4, 2, stride=2)
    with pytest.raises(ValueError, match=r"node 'cat' .* producer 'p' gives \(1, 4, 4, 4\)"):
        Network("n", (1, 8, 8, 3), (Node(a), Node(p, "a"), Node(Concat("cat"), ("a", "p"))))
    with pytest.raises(ValueError, match=r"'r' \(reshape\) cannot view input \(1, 8, 8, 4\)"):
        Network("n", (1, 8, 8, 3), (Node(a), Node(Reshape("r", (3, -1)), "a")))
    with pytest.raises(ValueError, match=r"'fc' \(dense\) expects input 0 of shape \(1, 256\)"):
        Network("n", (1, 8, 8, 3), (Node(a), Node(Dense("fc", 1, 256, 2), "a")))
    fc = Dense("fc", 1, 256, 2)
    assert Network("n", (1, 8, 8, 3), (Node(a), Node(Flatten("f"), "a"), Node(fc, "f"))).macs


def test_topological_order_and_names():
    a = Conv2D("a", 8, 8, 3, 3, 1)
    b = Conv2D("b", 8, 8, 3, 3, 1)
    with pytest.raises(ValueError, match=r"node 'a' reads 'b', which comes after it"):
        Network("n", (1, 8, 8, 3), (Node(a, "b"), Node(b)))
    with pytest.raises(ValueError, match=r"node 'a' reads 'x', which does not exist"):
        Network("n", (1, 8, 8, 3), (Node(a, "x"),))
    with pytest.raises(ValueError, match=r"node name 'a' is used twice"):
        Network("n", (1, 8, 8, 3), (Node(a), Node(a, "a")))
    with pytest.raises(ValueError, match=r"node 'add' \(add\) reads 2 input\(s\), not 1"):
        Node(Add("add", 8, 8, 3), ("a",))
    with pytest.raises(ValueError, match=r"node 'cat' \(concat\) reads >= 2 input\(s\), not 1"):
        Node(Concat("cat"), ("a",))
    with pytest.raises(TypeError, match="node op must be a Conv2D"):
        Node("conv")
    with pytest.raises(ValueError, match="input_shape must be positive integers"):
        Network("n", (1, 0, 8, 3), (Node(a),))
    with pytest.raises(ValueError, match="network 'n' has no nodes"):
        Network("n", (1, 8, 8, 3), ())


def test_source_is_a_tensor_from_memory():
    b = NetworkBuilder("s", (1, 4))
    x = b.source("ifmap", (1, 8, 8, 3))
    b.conv("conv", x, 4, 3)
    net = b.build()
    src, conv = net.stats
    assert (src.kind, src.engine, src.output_shape) == ("source", "none", (1, 8, 8, 3))
    assert src.totals == Totals()
    assert conv.input_bytes == 8 * 8 * 3
    with pytest.raises(ValueError, match=r"node 'x': shape must be positive integers"):
        Source("x", (1, 0))
