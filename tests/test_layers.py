"""Layers, layer specs and the golden convolution / dense models."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kernels.conv import check_tensors, conv2d, conv2d_acc, layer_golden, random_layer_data
from kernels.gemm import matmul
from kernels.layers import LAYER_SPEC_HELP, Conv2D, Dense, parse_layer_spec
from kernels.requant import RequantParams, random_requant


# ---------------------------------------------------------------- pure-Python reference
def naive_conv_acc(x, w, bias, stride, pad, groups=1):
    """Direct convolution in Python integers, wrapped to int32 at the end; output channel ``co``
    of a grouped convolution reads the input channels of group ``co // (cout/groups)``."""
    n, h, wd, _ = x.shape
    k, _, cin, cout = w.shape
    oh = (h + 2 * pad - k) // stride + 1
    ow = (wd + 2 * pad - k) // stride + 1
    out = np.zeros((n, oh, ow, cout), dtype=object)
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                for co in range(cout):
                    s = int(bias[co])
                    for ky in range(k):
                        for kx in range(k):
                            y, xx = oy * stride + ky - pad, ox * stride + kx - pad
                            if 0 <= y < h and 0 <= xx < wd:
                                first = co // (cout // groups) * cin
                                for ci in range(cin):
                                    s += int(x[b, y, xx, first + ci]) * int(w[ky, kx, ci, co])
                    out[b, oy, ox, co] = (s + 2**31) % 2**32 - 2**31
    return out


def naive_requant(acc, p: RequantParams):
    mult = p.multiplier * (acc.shape[-1] if p.channels == 1 else 1)
    shift = p.shift * (acc.shape[-1] if p.channels == 1 else 1)
    out = np.zeros(acc.shape, dtype=np.int64)
    for idx in np.ndindex(acc.shape):
        c = idx[-1]
        r = 1 << (shift[c] - 1) if shift[c] else 0
        v = ((int(acc[idx]) * mult[c] + r) >> shift[c]) + p.zero_point
        out[idx] = min(max(v, p.lo), p.hi)
    return out


# ---------------------------------------------------------------- layer specs
def test_parse_conv_with_every_key():
    layer = parse_layer_spec("conv:h=56,w=57,cin=64,cout=32,k=3,s=2,p=1,n=4,act=relu6,name=c3")
    assert layer == Conv2D("c3", h=56, w=57, cin=64, cout=32, k=3, stride=2, pad=1, batch=4,
                           act="relu6")  # fmt: skip


def test_parse_conv_defaults_order_and_spaces():
    layer = parse_layer_spec("  conv: k=1 , cout=3,cin=2,w=5,h=4 ")
    assert layer == Conv2D("conv", h=4, w=5, cin=2, cout=3, k=1)
    assert (layer.stride, layer.pad, layer.batch, layer.act) == (1, 0, 1, "none")


@pytest.mark.parametrize("kind", ["gemm", "dense", "GEMM"])
def test_parse_gemm(kind):
    layer = parse_layer_spec(f"{kind}:m=100,k=70,n=30,act=relu")
    assert layer == Dense("gemm", m=100, k=70, n=30, act="relu")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("conv:h=5,w=5,cin=3,cout=4,k=3,q=1", r"unknown key\(s\) 'q'"),
        ("conv:h=5,w=5,cin=3,k=3", r"missing key\(s\) 'cout'"),
        ("conv:h=5,cin=3,k=3", r"missing key\(s\) 'w', 'cout'"),
        ("gemm:m=1,k=2", r"missing key\(s\) 'n'"),
        ("gemm:m=1,k=2,n=3,s=1", r"unknown key\(s\) 's' for gemm"),
        ("pool:h=1", "unknown layer kind 'pool'"),
        ("h=1,w=2", "unknown layer kind"),
        ("conv:h=5,w=five,cin=3,cout=4,k=3", "w='five' is not an integer"),
        ("conv:h=5,w=5,cin=3,cout=4,k=3,h=6", "key 'h' given twice"),
        ("conv:h=5,w=5,cin=3,cout=4,k=3,,", "empty item"),
        ("conv:h=5,w=5,cin=3,cout=4,k", "'k' is not key=value"),
        ("conv:h=5,w=5,cin=3,cout=4,k=7", "kernel k=7 is larger than the padded input"),
        ("conv:h=5,w=5,cin=0,cout=4,k=3", "cin must be >= 1"),
        ("conv:h=5,w=5,cin=3,cout=4,k=3,act=gelu", "act must be one of"),
        ("gemm:m=4,k=4,n=4,name=a b", "layer name must be"),
    ],
)
def test_parse_errors_name_the_problem_and_show_the_syntax(spec, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_layer_spec(spec)
    assert LAYER_SPEC_HELP in str(info.value)
    assert repr(spec) in str(info.value)


def test_help_quotes_both_kinds():
    assert "conv:h=" in LAYER_SPEC_HELP and "gemm:m=" in LAYER_SPEC_HELP
    assert "relu6" in LAYER_SPEC_HELP


# ---------------------------------------------------------------- layer values
def test_conv_properties():
    layer = Conv2D("c", h=10, w=11, cin=3, cout=5, k=3, stride=2, pad=1, batch=2)
    assert (layer.out_h, layer.out_w) == (5, 6)
    assert layer.macs == 2 * 5 * 6 * 5 * 3 * 3 * 3
    assert layer.input_bytes == 2 * 10 * 11 * 3
    assert layer.weight_bytes == 3 * 3 * 3 * 5
    assert layer.output_bytes == 2 * 5 * 6 * 5
    assert layer.output_shape == (2, 5, 6, 5)
    assert layer.as_conv() is layer


def test_dense_properties_and_conv_view():
    layer = Dense("fc", m=7, k=70, n=30, act="relu")
    assert layer.macs == 7 * 70 * 30
    assert (layer.input_bytes, layer.weight_bytes, layer.output_bytes) == (490, 2100, 210)
    conv = layer.as_conv()
    assert conv == Conv2D("fc", h=1, w=7, cin=70, cout=30, k=1, act="relu")
    assert conv.macs == layer.macs and conv.output_bytes == layer.output_bytes


def test_layers_are_frozen_and_validated():
    layer = Conv2D("c", h=4, w=4, cin=1, cout=1, k=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        layer.h = 5  # type: ignore[misc]
    with pytest.raises(TypeError, match="stride must be an integer"):
        Conv2D("c", h=4, w=4, cin=1, cout=1, k=1, stride=True)
    with pytest.raises(ValueError, match="pad must be >= 0"):
        Conv2D("c", h=4, w=4, cin=1, cout=1, k=1, pad=-1)
    with pytest.raises(ValueError, match="'c': kernel k=5 is larger than the padded input h=2"):
        Conv2D("c", h=2, w=9, cin=1, cout=1, k=5, pad=1)
    with pytest.raises(ValueError, match="'fc': n must be >= 1"):
        Dense("fc", m=1, k=1, n=0)


# ---------------------------------------------------------------- golden models
@pytest.mark.parametrize(
    ("n", "h", "w", "cin", "cout", "k", "stride", "pad"),
    [
        (1, 5, 5, 1, 1, 1, 1, 0),
        (1, 5, 6, 2, 3, 3, 1, 1),
        (2, 6, 5, 3, 2, 3, 2, 0),
        (1, 7, 7, 2, 2, 5, 2, 2),
        (1, 4, 3, 1, 2, 3, 3, 3),
        (1, 2, 2, 3, 1, 3, 1, 1),
    ],
)
def test_conv2d_matches_a_naive_loop(n, h, w, cin, cout, k, stride, pad):
    rng = np.random.default_rng(h * 100 + w * 10 + k)
    x = rng.integers(-128, 128, size=(n, h, w, cin), dtype=np.int8)
    wt = rng.integers(-128, 128, size=(k, k, cin, cout), dtype=np.int8)
    bias = rng.integers(-5000, 5000, size=cout, dtype=np.int32)
    acc = conv2d_acc(x, wt, bias, stride, pad)
    want = naive_conv_acc(x, wt, bias, stride, pad)
    assert acc.tolist() == want.tolist()
    for act in ("none", "relu", "relu6"):
        p = random_requant(rng, cout, k=k * k * cin, act=act)
        y = conv2d(x, wt, bias, p, stride, pad)
        assert y.dtype == np.int8
        assert y.tolist() == naive_requant(want, p).tolist()


@pytest.mark.parametrize(
    ("h", "w", "cin", "cout", "k", "stride", "pad", "groups"),
    [(5, 6, 4, 6, 3, 1, 1, 2), (6, 5, 6, 3, 3, 2, 0, 3), (4, 4, 8, 16, 1, 1, 0, 8)],
)
def test_grouped_conv2d_matches_a_naive_loop(h, w, cin, cout, k, stride, pad, groups):
    rng = np.random.default_rng(groups)
    x = rng.integers(-128, 128, size=(2, h, w, cin), dtype=np.int8)
    wt = rng.integers(-128, 128, size=(k, k, cin // groups, cout), dtype=np.int8)
    bias = rng.integers(-5000, 5000, size=cout, dtype=np.int32)
    acc = conv2d_acc(x, wt, bias, stride, pad, groups=groups)
    assert acc.tolist() == naive_conv_acc(x, wt, bias, stride, pad, groups).tolist()
    layer = Conv2D("g", h, w, cin, cout, k, stride, pad, batch=2, groups=groups)
    t = random_layer_data(layer, rng)
    assert t["weights"].shape == layer.weight_shape == (k, k, cin // groups, cout)
    want = naive_conv_acc(t["input"], t["weights"], t["bias"], stride, pad, groups)
    assert layer_golden(layer, t, acc=True).tolist() == want.tolist()
    other = 2 if groups != 2 else 4
    with pytest.raises(ValueError, match=f"with groups={other} expects {cin // groups * other}"):
        conv2d_acc(x, wt, bias, stride, pad, groups=other)


def test_grouped_conv_layer():
    layer = parse_layer_spec("conv:h=8,w=8,cin=128,cout=256,k=3,p=1,g=32")
    assert layer == Conv2D("conv", h=8, w=8, cin=128, cout=256, k=3, pad=1, groups=32)
    assert layer.depth == 9 * 4 and layer.macs == 8 * 8 * 256 * 9 * 4
    assert layer.weight_bytes == 9 * 4 * 256
    group = layer.group_conv()
    assert (group.cin, group.cout, group.groups, group.k) == (4, 8, 1, 3)
    assert Conv2D("c", h=4, w=4, cin=3, cout=5, k=1).group_conv().groups == 1
    with pytest.raises(ValueError, match="'c': groups=3 must divide both cin=4 and cout=6"):
        Conv2D("c", h=4, w=4, cin=4, cout=6, k=1, groups=3)
    with pytest.raises(ValueError, match="'c': groups must be >= 1"):
        Conv2D("c", h=4, w=4, cin=4, cout=6, k=1, groups=0)


def test_conv2d_acc_wraps_at_32_bits():
    x = np.full((1, 1, 1, 4), 127, dtype=np.int8)
    w = np.full((1, 1, 4, 1), 127, dtype=np.int8)
    bias = np.array([2**31 - 10], dtype=np.int32)
    got = conv2d_acc(x, w, bias).item()
    assert got == (4 * 127 * 127 + 2**31 - 10) - 2**32
    assert got == naive_conv_acc(x, w, bias, 1, 0).item()


def test_conv2d_errors_name_the_input():
    x = np.zeros((1, 4, 4, 3), dtype=np.int8)
    w = np.zeros((3, 3, 3, 2), dtype=np.int8)
    b = np.zeros(2, dtype=np.int32)
    with pytest.raises(ValueError, match="x has 2 channels"):
        conv2d_acc(x[..., :2], w, b)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        conv2d_acc(x, w, np.zeros(3, dtype=np.int32))
    with pytest.raises(ValueError, match=r"x \(input\) holds values outside -128..127"):
        conv2d_acc(x.astype(np.int32) + 200, w, b)
    with pytest.raises(TypeError, match="must hold integers"):
        conv2d_acc(x.astype(np.float32), w, b)
    with pytest.raises(ValueError, match="square kernel"):
        conv2d_acc(x, np.zeros((3, 2, 3, 2), dtype=np.int8), b)


def test_dense_golden_is_a_gemm():
    rng = np.random.default_rng(5)
    layer = Dense("fc", m=9, k=37, n=11, act="relu")
    t = random_layer_data(layer, rng)
    assert t["weights"].shape == (37, 11) and t["input"].shape == (9, 37)
    acc = matmul(t["input"], t["weights"]) + t["bias"]
    assert layer_golden(layer, t, acc=True).tolist() == acc.tolist()
    assert layer_golden(layer, t).tolist() == naive_requant(acc, t["requant"]).tolist()


@pytest.mark.parametrize(
    "layer",
    [
        Conv2D("c3", h=12, w=12, cin=16, cout=24, k=3, pad=1),
        Conv2D("c1", h=9, w=9, cin=3, cout=8, k=1, batch=2, act="relu"),
        Conv2D("c7", h=16, w=16, cin=3, cout=16, k=7, stride=2, pad=3, act="relu6"),
        Dense("fc", m=32, k=200, n=40),
        Dense("fc_relu", m=32, k=20, n=40, act="relu"),
    ],
    ids=lambda layer: layer.name,
)
def test_random_data_spreads_over_the_int8_range(layer):
    rng = np.random.default_rng(11)
    t = random_layer_data(layer, rng)
    assert t["input"].dtype == np.int8 and t["weights"].dtype == np.int8
    assert t["bias"].dtype == np.int32 and np.abs(t["bias"]).max() <= 1 << 12
    assert t["weights"].shape == layer.weight_shape
    y = layer_golden(layer, t).astype(np.int64)
    p = t["requant"]
    at_lo, at_hi = np.mean(y == p.lo), np.mean(y == p.hi)
    # ReLU clips about half the outputs at the zero point; nothing should pile up at the top.
    assert at_hi < 0.1, at_hi
    assert at_lo < (0.7 if layer.act != "none" else 0.1), at_lo
    assert len(np.unique(y)) >= 20
    assert y.std() > 4


def test_check_tensors_names_the_layer_and_tensor():
    layer = Conv2D("c", h=4, w=4, cin=2, cout=3, k=3, pad=1, act="relu")
    t = random_layer_data(layer, np.random.default_rng(0))
    with pytest.raises(ValueError, match="layer 'c': tensors lack 'bias'"):
        check_tensors(layer, {k: v for k, v in t.items() if k != "bias"})
    with pytest.raises(ValueError, match=r"layer 'c': weights has shape \(3, 3, 3, 2\)"):
        check_tensors(layer, {**t, "weights": t["weights"].transpose(0, 1, 3, 2)})
    with pytest.raises(ValueError, match="act='relu' but its requant parameters have act='none'"):
        check_tensors(layer, {**t, "requant": random_requant(np.random.default_rng(0), 3)})
    with pytest.raises(ValueError, match="requant has 2 channels"):
        check_tensors(layer, {**t, "requant": RequantParams((1, 2), (3, 3), act="relu")})
