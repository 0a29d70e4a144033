"""ONNX import (mapping.onnx_import): real models shipped with the onnx package, and edge cases
built with onnx.helper."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper, version_converter

from kernels.layers import Conv2D, Dense, DepthwiseConv2D, Pool2D
from mapping import load_onnx
from mapping.workloads import Node
from mapping.zoo import NETWORKS, get_network, googlenet, resnet50

# The onnx wheel ships the ONNX model zoo's classic networks with their weights replaced by
# ConstantOfShape nodes ("light" models: the real graphs, every attribute and shape kept), and
# small PyTorch exports of single layers (opset 6).
DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
LIGHT = DATA / "light"
TORCH = DATA / "pytorch-converted"


def light(name: str) -> Path:
    path = LIGHT / f"light_{name}.onnx"
    assert path.is_file(), f"{path} is missing: the onnx package no longer ships its light models"
    return path


def torch_model(name: str) -> onnx.ModelProto:
    """A PyTorch export from the onnx package, converted from opset 6 to 13."""
    path = TORCH / name / "model.onnx"
    assert path.is_file(), f"{path} is missing from the onnx package"
    return version_converter.convert_version(onnx.load(str(path)), 13)


def signature(net):
    """Everything but the names: kind, shapes, MACs and activation of every node."""
    return [
        (s.kind, s.input_shapes, s.output_shape, s.macs, getattr(node.op, "act", None))
        for s, node in zip(net.stats, net.nodes, strict=True)
    ]


def unsupported(message: str) -> list[str]:
    """The node names an unsupported-nodes error lists."""
    return re.findall(r"'([^']+)' \(", message.split(": ", 1)[1])


# ----------------------------------------------------------------------------- real networks
def test_resnet50_matches_the_zoo_node_for_node():
    # Caffe2's ResNet-50 (ONNX model zoo) strides on the 3x3 like torchvision's v1.5: BN folds
    # into the 53 convolutions, Relu into them and into the 16 Sums, AveragePool 7x7 becomes the
    # global pool, Reshape a flatten, Gemm the classifier; Softmax carries no MACs.
    net = load_onnx(light("resnet50"))
    zoo = resnet50()
    assert signature(net) == signature(zoo)
    assert net.macs == zoo.macs == 4_089_184_256  # torchvision: 4.09 GFLOPS (multiply-adds)
    assert net.params == zoo.params == 25_530_472  # 25,557,032 minus one per BN channel
    assert net.input_shape == (1, 224, 224, 3)
    assert net.output_shape == (1, 1000)


def test_vgg19_has_the_published_size():
    net = load_onnx(light("vgg19"))
    assert net.counts() == {"conv": 16, "maxpool": 5, "flatten": 1, "dense": 3}
    # Simonyan and Zisserman 2015, configuration E: 19.6G multiply-adds; torchvision vgg19:
    # 19.63 GFLOPS, 143,667,240 parameters.
    assert net.macs == pytest.approx(19.63e9, rel=1e-3)
    assert net.params == 143_667_240
    convs = net.layers("conv")
    assert [c.cout for c in convs] == [64] * 2 + [128] * 2 + [256] * 4 + [512] * 8
    assert all(c.k == 3 and c.pad == 1 and c.stride == 1 and c.act == "relu" for c in convs)
    assert [(d.k, d.n, d.act) for d in net.layers("dense")] == [
        (25088, 4096, "relu"),
        (4096, 4096, "relu"),
        (4096, 1000, "none"),
    ]


def test_googlenet_has_the_zoo_layers_on_smaller_maps():
    # BVLC GoogLeNet as the ONNX model zoo converted it: every convolution has the channels,
    # kernel, stride, padding and ReLU of Szegedy et al.'s table (= mapping.zoo.googlenet), but
    # Caffe's ceil-mode pools became floor-mode ones with no padding, so the feature maps are
    # 55, 27, 13, 6 instead of 56, 28, 14, 7, and the final 7x7 average pool (pads 0, 0, 1, 1,
    # padding not counted) is a global average over the 6x6 map. Each convolution's MACs are
    # the zoo's scaled by its output area: 1.432 G instead of 1.583 G.
    net = load_onnx(light("inception_v1"))
    zoo = googlenet()
    assert net.counts() == zoo.counts()  # LRN and Dropout carry no work and leave no node
    ours, theirs = net.layers("conv"), zoo.layers("conv")
    key = [(c.cin, c.cout, c.k, c.stride, c.pad, c.act) for c in ours]
    assert key == [(c.cin, c.cout, c.k, c.stride, c.pad, c.act) for c in theirs]
    area = {112: 112, 55: 56, 27: 28, 13: 14, 6: 7}  # ONNX map -> zoo map
    for a, b in zip(ours, theirs, strict=True):
        assert area[a.out_h] == b.out_h
        assert a.macs * b.out_h**2 == b.macs * a.out_h**2
    assert net.layers("dense")[0].macs == zoo.layers("dense")[0].macs == 1024 * 1000
    assert net.macs == 1_431_556_352
    assert zoo.macs == 1_582_671_872


def test_squeezenet_1_1_has_torchvision_s_size():
    net = load_onnx(light("squeezenet"))
    # torchvision squeezenet1_1: 1,235,496 parameters, 0.35 GFLOPS (multiply-adds).
    assert net.params == 1_235_496
    assert net.macs == pytest.approx(0.35e9, rel=0.01)
    assert net.counts() == {"conv": 26, "maxpool": 3, "concat": 8, "avgpool": 1}
    # The classifier is a 1x1 convolution and a global pool; Softmax leaves no node.
    assert net.output_shape == (1, 1, 1, 1000)


def test_densenet121_batch_norms_after_concats_run_as_1x1_depthwise():
    # DenseNet applies BN (+ a Caffe Scale: Mul and Add of constants) and ReLU to each concat
    # before its 1x1 convolution. A concat's output feeds several later layers, each with its
    # own BN, so those cannot fold into a producer: each becomes a 1x1 depthwise (per-channel
    # scale and bias, ReLU in the clamp) on the vector unit, 62 of them.
    net = load_onnx(light("densenet121"))
    assert net.counts() == {"conv": 121, "depthwise": 62, "concat": 58, "maxpool": 1, "avgpool": 4}
    dws = net.layers("depthwise")
    assert all(d.k == 1 and d.act == "relu" for d in dws)
    conv_macs = sum(op.macs for op in net.layers("conv"))
    # torchvision densenet121: 2.83 GFLOPS (multiply-adds of its convolutions and classifier).
    assert conv_macs == pytest.approx(2.83e9, rel=0.01)
    assert net.macs == conv_macs + sum(d.macs for d in dws)


def test_zfnet512_imports():
    net = load_onnx(light("zfnet512"))
    assert net.counts() == {"conv": 5, "maxpool": 3, "flatten": 1, "dense": 3}
    c1 = net.layers("conv")[0]
    assert (c1.k, c1.stride, c1.pad, c1.cout, c1.out_h) == (7, 2, 0, 96, 109)


def test_bvlc_alexnet_names_its_asymmetric_pool():
    # its grouped convolutions (two groups, the original two-GPU split) import; one pool does not
    with pytest.raises(ValueError) as err:
        load_onnx(light("bvlc_alexnet"))
    msg = str(err.value)
    assert msg.startswith(f"model '{light('bvlc_alexnet')}': 1 unsupported node: ")
    assert unsupported(msg) == ["n14"]
    assert "'n14' (MaxPool: pads [0, 0, 1, 1] are asymmetric;" in msg


def test_shufflenet_lists_its_channel_shuffles_and_pools():
    with pytest.raises(ValueError) as err:
        load_onnx(light("shufflenet"))
    msg = str(err.value)
    names = unsupported(msg)
    assert f"{len(names)} unsupported nodes" in msg
    # The channel shuffle: Reshape, Transpose, Reshape.
    assert "'n8' (Transpose: perm [0, 2, 1, 3, 4]; Tandem transposes nothing but" in msg
    assert "'n7' (Reshape: views the NCHW tensor [1, 112, 56, 56] as [1, 4, 28, 56, 56]" in msg
    assert "'n4'" not in msg  # a grouped convolution (4 groups): supported
    assert "'n14' (AveragePool: count_include_pad=0 with pads [1, 1, 1, 1]" in msg
    # Every Transpose of the graph is listed, downstream of other unsupported nodes too.
    model = onnx.load(str(light("shufflenet")))
    transposes = [n.name for n in model.graph.node if n.op_type == "Transpose"]
    assert len(transposes) == 16
    assert set(transposes) <= set(names)


def test_inception_v2_lists_its_ceil_mode_pools():
    with pytest.raises(ValueError) as err:
        load_onnx(light("inception_v2"))
    msg = str(err.value)
    assert "11 unsupported nodes" in msg
    assert "'n7' (MaxPool: pads [0, 0, 1, 1] are asymmetric" in msg


def test_pytorch_exports():
    # Real single-layer PyTorch exports (opset 6, converted to 13).
    dw = load_onnx(torch_model("test_Conv2d_depthwise_strided")).nodes[0].op
    assert dw == DepthwiseConv2D(dw.name, h=6, w=6, c=4, k=3, stride=2, batch=2)
    fc = load_onnx(torch_model("test_Linear")).nodes[0].op
    assert fc == Dense(fc.name, m=4, k=10, n=8)
    # groups == cin but cout = 2*cin: a grouped convolution on the array, not a depthwise
    mult = load_onnx(torch_model("test_Conv2d_depthwise_with_multiplier")).nodes[0].op
    assert (type(mult), mult.groups, mult.cin, mult.cout) == (Conv2D, 4, 4, 8)
    bn = load_onnx(torch_model("test_BatchNorm2d_eval"))  # BN of the input: a 1x1 depthwise
    assert bn.counts() == {"depthwise": 1} and bn.nodes[0].op.k == 1
    for name, reason in [
        ("test_Conv2d_dilated", "(Conv: dilations [2, 2]; Tandem convolutions are not dilated)"),
        ("test_Conv1d", "(Conv: a 1-D convolution; Tandem convolutions are 2-D)"),
        ("test_Sigmoid", "(Sigmoid)"),
        ("test_LeakyReLU", "(LeakyRelu)"),
    ]:
        with pytest.raises(ValueError, match=re.escape(reason)):
            load_onnx(torch_model(name), name=name)


def test_old_opset_is_refused_with_the_conversion_to_use():
    path = TORCH / "test_Conv2d" / "model.onnx"
    with pytest.raises(ValueError, match=r"opset 6 is older than 9; convert it first with onnx"):
        load_onnx(path)


# ----------------------------------------------------------------------------- built graphs
def _init(name, shape, value=None):
    data = np.full(shape, 0.5 if value is None else value, dtype=np.float32)
    return numpy_helper.from_array(data, name)


def model(nodes, x_shape, inits=(), opset=13, x_dims=None, y_type=TensorProto.FLOAT):
    """A model of ``nodes`` reading ``x`` (float, ``x_shape``) and giving ``y``."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_dims or x_shape)],
        [helper.make_tensor_value_info("y", y_type, None)],
        list(inits),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def conv(x, y, cin, cout, k, name=None, group=1, **attrs):
    w = f"{name or y}.w"
    node = helper.make_node("Conv", [x, w], [y], name=name or y, group=group, **attrs)
    return node, _init(w, (cout, cin // group, k, k))


def test_the_example_error_lists_dilated_conv_and_lstm():
    # A dilated 3x3 over 5x5 gives 1x1x64: the reshape to (seq=1, batch=1, 64) is exact.
    c7, w7 = conv("x", "c", 3, 64, 3, name="conv7", dilations=[2, 2])
    reshape = helper.make_node("Reshape", ["c", "shape"], ["r"], name="seq")
    lstm = helper.make_node("LSTM", ["r", "W", "R"], ["y"], name="lstm1", hidden_size=4)
    inits = [w7, _init("W", (1, 16, 64)), _init("R", (1, 16, 4))]
    inits.append(numpy_helper.from_array(np.array([1, 1, 64], dtype=np.int64), "shape"))
    with pytest.raises(ValueError) as err:
        load_onnx(model([c7, reshape, lstm], (1, 3, 5, 5), inits), name="x.onnx")
    assert str(err.value).startswith(
        "model 'x.onnx': 2 unsupported nodes: 'conv7' (Conv: dilations [2, 2]; Tandem "
        "convolutions are not dilated), 'lstm1' (LSTM). Tandem imports"
    )


def test_conv_bn_relu_folds_into_one_conv():
    c, w = conv("x", "c", 3, 8, 3, pads=[1, 1, 1, 1], strides=[2, 2])
    bn = helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn")
    relu = helper.make_node("Relu", ["n"], ["y"], name="relu")
    inits = [w, *(_init(t, (8,)) for t in "sbmv")]
    net = load_onnx(model([c, bn, relu], (1, 3, 16, 16), inits))
    assert net.nodes == (net.nodes[0],)
    assert net.nodes[0].op == Conv2D(
        "c", h=16, w=16, cin=3, cout=8, k=3, stride=2, pad=1, act="relu"
    )


def test_affine_that_cannot_fold_becomes_a_1x1_depthwise():
    # The conv's output feeds the BN and the concat: BN cannot change it, so it runs apart.
    c, w = conv("x", "c", 3, 8, 1)
    bn = helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn")
    relu = helper.make_node("Relu", ["n"], ["r"], name="relu")
    cat = helper.make_node("Concat", ["c", "r"], ["y"], name="cat", axis=1)
    inits = [w, *(_init(t, (8,)) for t in "sbmv")]
    net = load_onnx(model([c, bn, relu, cat], (1, 3, 4, 4), inits))
    assert net.counts() == {"conv": 1, "depthwise": 1, "concat": 1}
    assert net.node("bn").op == DepthwiseConv2D("bn", h=4, w=4, c=8, k=1, act="relu")
    assert net.node("c").op.act == "none"
    assert net.output_shape == (1, 4, 4, 16)


def test_relu_after_a_shared_tensor_is_unsupported():
    c, w = conv("x", "c", 3, 8, 1)
    relu = helper.make_node("Relu", ["c"], ["r"], name="relu")
    add = helper.make_node("Add", ["c", "r"], ["y"], name="add")
    with pytest.raises(ValueError, match=r"'relu' \(Relu: reads 'c' \(Conv2D\), which feeds"):
        load_onnx(model([c, relu, add], (1, 3, 4, 4), [w]))


@pytest.mark.parametrize(
    ("opset", "bounds", "act"),
    [(9, (0.0, 6.0), "relu6"), (11, (0.0, 6.0), "relu6"), (11, (0.0, None), "relu")],
)
def test_clip_folds_as_relu6_or_relu(opset, bounds, act):
    c, w = conv("x", "c", 3, 8, 1)
    inits = [w]
    if opset < 11:  # min and max are attributes
        clip = helper.make_node("Clip", ["c"], ["y"], name="clip", min=bounds[0], max=bounds[1])
    else:  # min and max are inputs
        names = []
        for tag, value in zip(("lo", "hi"), bounds, strict=True):
            if value is not None:
                inits.append(numpy_helper.from_array(np.array(value, dtype=np.float32), tag))
            names.append(tag if value is not None else "")
        clip = helper.make_node("Clip", ["c", *names], ["y"], name="clip")
    net = load_onnx(model([c, clip], (1, 3, 4, 4), inits, opset=opset))
    assert [n.op.act for n in net] == [act]


def test_clip_to_other_bounds_is_unsupported():
    c, w = conv("x", "c", 3, 8, 1)
    clip = helper.make_node("Clip", ["c"], ["y"], name="clip", min=-1.0, max=1.0)
    with pytest.raises(ValueError, match=r"'clip' \(Clip: Clip\(-1, 1\); Tandem clamps as ReLU"):
        load_onnx(model([c, clip], (1, 3, 4, 4), [w], opset=9))


def test_grouped_convolutions():
    dw, w = conv("x", "y", 8, 8, 3, group=8, pads=[1, 1, 1, 1])
    net = load_onnx(model([dw], (1, 8, 6, 6), [w]))
    assert net.nodes[0].op == DepthwiseConv2D("y", h=6, w=6, c=8, k=3, pad=1)
    g2, w = conv("x", "y", 8, 12, 3, group=2)
    net = load_onnx(model([g2], (1, 8, 6, 6), [w]))
    assert net.nodes[0].op == Conv2D("y", h=6, w=6, cin=8, cout=12, k=3, groups=2)
    assert net.macs == 4 * 4 * 12 * 3 * 3 * 4  # each output sums over its group's 4 channels
    g3, w = conv("x", "y", 8, 12, 3, group=3)
    with pytest.raises(ValueError, match=r"groups=3 must divide both cin=8 and cout=12"):
        load_onnx(model([g3], (1, 8, 6, 6), [w]))


@pytest.mark.parametrize(
    ("attrs", "pad", "error"),
    [
        ({"pads": [0, 0, 1, 1], "strides": [2, 2]}, 0, None),  # 7x7: the extra row is unread
        ({"pads": [0, 0, 1, 1], "strides": [2, 2]}, None, "are asymmetric"),  # 8x8: it is read
        ({"auto_pad": "SAME_UPPER"}, 1, None),  # stride 1, 3x3: total 2, symmetric
        ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, None, "(auto_pad SAME_UPPER)"),
        ({"pads": [1, 0, 1, 0]}, None, "differ between height and width"),
        ({"ceil_mode": 1, "strides": [2, 2]}, None, "ceil_mode=1 rounds the output size up"),
    ],
)
def test_padding_is_accepted_only_where_it_is_exact(attrs, pad, error):
    size = 7 if pad == 0 else 8
    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[3, 3], **attrs)
    m = model([node], (1, 4, size, size))
    if error is None:
        op = load_onnx(m).nodes[0].op
        assert isinstance(op, Pool2D) and op.pad == pad
        return
    with pytest.raises(ValueError, match=re.escape(error)):
        load_onnx(m)


def test_gemm_trans_b_and_bias_folding():
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["g"], name="fc1", transB=1),
        helper.make_node("Relu", ["g"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["m"], name="fc2"),
        helper.make_node("Add", ["m", "b2"], ["y"], name="bias"),
    ]
    inits = [_init("w1", (32, 48)), _init("b1", (32,)), _init("w2", (32, 10)), _init("b2", (10,))]
    net = load_onnx(model(nodes, (2, 3, 4, 4), inits))
    assert net.counts() == {"flatten": 1, "dense": 2}
    assert net.node("fc1").op == Dense("fc1", m=2, k=48, n=32, act="relu")
    assert net.node("fc2").op == Dense("fc2", m=2, k=32, n=10)
    trans_a = helper.make_node("Gemm", ["f", "w1"], ["y"], name="fc", transA=1)
    with pytest.raises(ValueError, match=r"'fc' \(Gemm: transA=1"):
        load_onnx(model([nodes[0], trans_a], (48, 3, 4, 4), [_init("w1", (48, 32))]))


def test_matmul_over_tokens_reshapes_around_a_dense():
    mm = helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")
    net = load_onnx(model([mm], (1, 5, 16), [_init("w", (16, 8))]))
    assert [n.kind for n in net] == ["reshape", "dense", "reshape"]
    assert net.node("proj").op == Dense("proj", m=5, k=16, n=8)
    assert net.output_shape == (1, 5, 8)
    act = helper.make_node("MatMul", ["x", "x2"], ["y"], name="qk")
    tr = helper.make_node("Transpose", ["x"], ["x2"], name="t", perm=[0, 2, 1])
    two = r"'t' \(Transpose: perm \[0, 2, 1\].*\), 'qk' \(MatMul: multiplies two"
    with pytest.raises(ValueError, match=two):
        load_onnx(model([tr, act], (1, 5, 16)))


def test_quantized_qlinear_and_qdq_graphs():
    def q(name, value, dtype=np.int8):
        return numpy_helper.from_array(np.array(value, dtype=dtype), name)

    inits = [
        q("xs", 0.1, np.float32),
        q("xz", 0),
        q("w", np.ones((8, 3, 3, 3))),
        q("ws", 0.1, np.float32),
        q("wz", 0),
        q("ys", 0.1, np.float32),
        q("yz", 0),
        q("w2", np.ones((32, 10))),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="quant"),
        helper.make_node(
            "QLinearConv",
            ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"],
            ["c"],
            name="qconv",
            pads=[1, 1, 1, 1],
            strides=[2, 2],
        ),
        helper.make_node("DequantizeLinear", ["c", "ys", "yz"], ["d"], name="deq"),
        helper.make_node("Relu", ["d"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "ys", "yz"], ["rq"], name="requant"),
        helper.make_node("Flatten", ["rq"], ["f"], name="flat"),
        helper.make_node(
            "QLinearMatMul", ["f", "ys", "yz", "w2", "ws", "wz", "ys", "yz"], ["y"], name="qfc"
        ),
    ]
    net = load_onnx(model(nodes, (1, 3, 4, 4), inits, y_type=TensorProto.INT8))
    assert net.counts() == {"conv": 1, "flatten": 1, "dense": 1}
    assert net.node("qconv").op == Conv2D(
        "qconv", h=4, w=4, cin=3, cout=8, k=3, stride=2, pad=1, act="relu"
    )
    assert net.node("qfc").op == Dense("qfc", m=1, k=32, n=10)


def test_symbolic_batch_and_image_size():
    c, w = conv("x", "c", 3, 8, 3, strides=[2, 2])
    nodes = [c, helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap")]
    nodes += [helper.make_node("Flatten", ["g"], ["f"], name="flat")]
    nodes += [helper.make_node("Gemm", ["f", "fw"], ["y"], name="fc")]
    inits = [w, _init("fw", (8, 10))]
    m = model(nodes, None, inits, x_dims=["N", 3, 9, 9])
    assert load_onnx(m).input_shape == (1, 9, 9, 3)
    net = load_onnx(m, batch=4)
    assert net.node("c").op.batch == 4 and net.node("fc").op.m == 4
    with pytest.raises(ValueError, match=r"fixed dimension 0 of 1, which batch=4 cannot change"):
        load_onnx(model(nodes, (1, 3, 9, 9), inits), batch=4)
    free = model(nodes, None, inits, x_dims=["N", 3, "H", "W"])
    with pytest.raises(ValueError, match=r"dimension 2 is symbolic \('H'\).*input_size="):
        load_onnx(free)
    assert load_onnx(free, input_size=(11, 13)).node("c").op.output_shape == (1, 5, 6, 8)


def test_files_that_are_missing_or_not_onnx(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ONNX model '.*nope.onnx' does not exist"):
        load_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is not a protobuf\n")
    with pytest.raises(ValueError, match=r"is not an ONNX model"):
        load_onnx(bad)
    two = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "two",
        [helper.make_tensor_value_info(t, TensorProto.FLOAT, (1, 2, 2, 2)) for t in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    with pytest.raises(ValueError, match=r"one input tensor, this model has 2 \('a', 'b'\)"):
        load_onnx(helper.make_model(two))


def test_pad_nodes_fold_into_the_convolutions_that_read_them():
    # TensorFlow exports pad explicitly: Pad (opset 11+: pads as an input) then a VALID conv.
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads")
    pad = helper.make_node("Pad", ["x", "pads"], ["p"], name="pad")
    c, w = conv("p", "y", 3, 8, 3, strides=[2, 2])
    net = load_onnx(model([pad, c], (1, 3, 8, 8), [pads, w]))
    assert net.nodes == (Node(Conv2D("y", h=8, w=8, cin=3, cout=8, k=3, stride=2, pad=1)),)
    # Keras' ZeroPadding2D(((0, 1), (0, 1))) before a stride-2 3x3 over 8x8: the extra row is
    # read, so no symmetric padding gives the same windows.
    tf = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int64), "pads")
    with pytest.raises(ValueError, match=r"'y' \(Conv: pads \[0, 0, 1, 1\] are asymmetric"):
        load_onnx(model([pad, c], (1, 3, 8, 8), [tf, w]))
    reflect = helper.make_node("Pad", ["x", "pads"], ["p"], name="pad", mode="reflect")
    with pytest.raises(ValueError, match=r"'pad' \(Pad: mode reflect with value 0; Tandem pads"):
        load_onnx(model([reflect, c], (1, 3, 8, 8), [pads, w]))
    pool = helper.make_node("MaxPool", ["p"], ["y"], name="pool", kernel_shape=[3, 3])
    with pytest.raises(ValueError, match=r"'pad' \(Pad: it feeds other nodes than convolutions"):
        load_onnx(model([pad, pool], (1, 3, 8, 8), [pads]))


def test_an_nhwc_input_transposed_to_nchw_is_read_as_it_is():
    # tf2onnx: the NHWC input goes through Transpose(perm=[0, 3, 1, 2]) to the NCHW graph.
    tr = helper.make_node("Transpose", ["x"], ["t"], name="to_nchw", perm=[0, 3, 1, 2])
    c, w = conv("t", "y", 3, 8, 3)
    net = load_onnx(model([tr, c], (1, 10, 12, 3), [w]))
    assert net.input_shape == (1, 10, 12, 3)
    assert net.nodes == (Node(Conv2D("y", h=10, w=12, cin=3, cout=8, k=3)),)
    free = model([tr, c], None, [w], x_dims=["N", "H", "W", 3])
    assert load_onnx(free, input_size=(10, 12)).input_shape == (1, 10, 12, 3)


def to_onnx(net) -> onnx.ModelProto:
    """``net`` written as the NCHW ONNX graph a PyTorch export would give (opset 13): weights
    as ConstantOfShape nodes like the onnx package's light models, BN already folded, ReLU6
    as Clip with Constant bounds."""
    nodes, inits = [], []

    def const(name, shape):
        inits.append(numpy_helper.from_array(np.array(shape, dtype=np.int64), f"{name}.shape"))
        nodes.append(helper.make_node("ConstantOfShape", [f"{name}.shape"], [name]))
        return name

    def act(name, kind):
        if kind == "relu":
            nodes.append(helper.make_node("Relu", [f"{name}.pre"], [name], name=f"{name}.relu"))
        elif kind == "relu6":
            for tag, value in (("lo", 0.0), ("hi", 6.0)):
                tensor = numpy_helper.from_array(np.array(value, dtype=np.float32))
                nodes.append(helper.make_node("Constant", [], [f"{name}.{tag}"], value=tensor))
            ins = [f"{name}.pre", f"{name}.lo", f"{name}.hi"]
            nodes.append(helper.make_node("Clip", ins, [name], name=f"{name}.clip"))

    for node in net:
        op, name = node.op, node.name
        ins = ["x" if i == "input" else i for i in node.inputs]
        out = name if getattr(op, "act", "none") == "none" else f"{name}.pre"
        if isinstance(op, (Conv2D, DepthwiseConv2D)):
            if isinstance(op, DepthwiseConv2D):
                group, cout, cin = op.c, op.c, 1
            else:  # ONNX weights (cout, cin/group, k, k)
                group, cout, cin = op.groups, op.cout, op.cin // op.groups
            w = const(f"{name}.weight", (cout, cin, op.k, op.k))
            nodes.append(
                helper.make_node(
                    "Conv",
                    [ins[0], w],
                    [out],
                    name=name,
                    group=group,
                    kernel_shape=[op.k] * 2,
                    pads=[op.pad] * 4,
                    strides=[op.stride] * 2,
                )
            )
        elif isinstance(op, Dense):
            w = const(f"{name}.weight", (op.n, op.k))
            nodes.append(helper.make_node("Gemm", [ins[0], w], [out], name=name, transB=1))
        elif isinstance(op, Pool2D) and (op.kh, op.kw) == (op.h, op.w) and op.kind == "avg":
            nodes.append(helper.make_node("GlobalAveragePool", ins, [out], name=name))
        elif isinstance(op, Pool2D):
            kind = "MaxPool" if op.kind == "max" else "AveragePool"
            extra = {"count_include_pad": 1} if op.kind == "avg" else {}
            nodes.append(
                helper.make_node(
                    kind,
                    ins,
                    [out],
                    name=name,
                    kernel_shape=[op.kh, op.kw],
                    pads=[op.pad] * 4,
                    strides=[op.stride] * 2,
                    **extra,
                )
            )
        else:
            onnx_op = {"add": "Add", "concat": "Concat", "flatten": "Flatten"}[node.kind]
            extra = {"axis": 1} if onnx_op == "Concat" else {}
            nodes.append(helper.make_node(onnx_op, ins, [out], name=name, **extra))
        act(name, getattr(op, "act", "none"))
    n, h, w, c = net.input_shape
    graph = helper.make_graph(
        nodes,
        net.name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (n, c, h, w))],
        [helper.make_tensor_value_info(net.output.name, TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_zoo_networks_written_as_onnx_come_back_identical(name):
    # Exercises depthwise (group == c), Clip(0, 6) from Constant nodes, residual adds with and
    # without ReLU, concats, pools and Gemm on every zoo network, names included.
    net = get_network(name, input_size=64)
    assert load_onnx(to_onnx(net)).nodes == net.nodes
