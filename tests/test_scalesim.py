"""SCALE-Sim topology CSV import and export (mapping.scalesim)."""

from __future__ import annotations

import math

import pytest

from kernels.layers import Conv2D, Dense, DepthwiseConv2D
from mapping import load_csv, write_csv
from mapping.workloads import INPUT, Network, Node, Source
from mapping.zoo import NETWORKS, get_network

# The first rows of SCALE-Sim v2's topologies/conv_nets/Resnet50.csv, as that file has them: a
# header with note columns after the stride, an empty row, notes on the first layer. SCALE-Sim
# has no padding: its IFMAP is what the filter slides over (here unpadded, as the file has it).
SCALESIM_RESNET50 = """\
Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, \
Strides,,,Eh,Ew,e2
,,,,,,,,,,,,
Conv1,224,224,7,7,3,64,2,,,110,110,12100
CB2a_1,56,56,1,1,64,64,1,,,,,
CB2a_2,56,56,3,3,64,64,1,,,,,
CB2a_3,56,56,1,1,64,256,1,,,,,
CB2s,56,56,1,1,64,256,1,,,,,
CB3a_1,56,56,1,1,256,128,2,,,,,
FC6,1,1,1,1,2048,1000,1,,,,,
"""

# SCALE-Sim v2's topologies/GEMM_mnk/gpt2.csv (no trailing commas).
SCALESIM_GPT2 = """\
Layer,M,N,K
QKT,1024,1024,64
QKTV,1024,64,1024
Linear1,1024,4800,1600
Linear2,1024,1600,1600
PW-FF-L1,1024,3072,1600
PW-FF-L2,1024,1600,3072
"""


def scalesim_macs(h, w, fh, fw, c, nf, s):
    """SCALE-Sim's own count (topology_utils.topo_calc_hyperparams)."""
    oh, ow = math.ceil((h - fh + s) / s), math.ceil((w - fw + s) / s)
    return oh * ow * fh * fw * c * nf


def test_load_scalesim_conv_topology(tmp_path):
    path = tmp_path / "Resnet50.csv"
    path.write_text(SCALESIM_RESNET50)
    net = load_csv(path)
    assert net.name == "Resnet50"
    convs = net.layers("conv")
    rows = [line.split(",") for line in SCALESIM_RESNET50.splitlines()[2:]]
    assert [c.name for c in convs] == [r[0] for r in rows]
    for conv, row in zip(convs, rows, strict=True):
        h, w, fh, fw, c, nf, s = map(int, row[1:8])
        assert (conv.cin, conv.cout, conv.k, conv.stride, conv.pad) == (c, nf, fh, s, 0)
        assert conv.macs == scalesim_macs(h, w, fh, fw, c, nf, s)
    # Conv1: SCALE-Sim's 224 - 7 is odd with stride 2, its output 110 (the file's own note,
    # Eh = 110) where a floor would give 109: Tandem's layer covers 225 rows.
    assert net.node("Conv1").op.h == 225 and net.node("Conv1").op.out_h == 110
    assert [c.h for c in convs] == [225, 56, 56, 56, 56, 57, 1]
    assert net.input_shape == (1, 225, 225, 3)
    # A chain: CB2a_2 reads CB2a_1 (56x56x64 both); where shapes do not connect, a Source.
    assert net.node("CB2a_2").inputs == ("CB2a_1",)
    assert net.node("CB2a_1").inputs == ("CB2a_1.ifmap",)
    assert net.node("CB2a_1.ifmap").op == Source("CB2a_1.ifmap", (1, 56, 56, 64))
    # CB3a_1: SCALE-Sim's ceil((56 - 1) / 2) + 1 = 29 outputs over 57 rows (the floor, as in
    # ResNet-50 itself, gives 28).
    assert net.node("CB3a_1").op.output_shape == (1, 29, 29, 128)
    assert net.node("Conv1").inputs == (INPUT,)


def test_load_scalesim_gemm_topology(tmp_path):
    path = tmp_path / "gpt2.csv"
    path.write_text(SCALESIM_GPT2)
    net = load_csv(path, name="gpt2")
    dense = net.layers("dense")
    assert [(d.m, d.n, d.k) for d in dense] == [
        tuple(map(int, line.split(",")[1:])) for line in SCALESIM_GPT2.splitlines()[1:]
    ]
    assert net.node("QKTV").inputs == ("QKT",)  # (1024, 1024) feeds (M=1024, K=1024)
    assert net.macs == sum(d.m * d.n * d.k for d in dense)


def test_depthwise_rows(tmp_path):
    # SCALE-Sim runs a layer whose name contains DP as Channels single-channel convolutions.
    path = tmp_path / "dw.csv"
    path.write_text(
        "Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,"
        "Num Filter,Strides,\nDP1,114,114,3,3,32,1,1,\n"
    )
    (op,) = load_csv(path).layers()
    assert op == DepthwiseConv2D("DP1", h=114, w=114, c=32, k=3)
    path.write_text(path.read_text().replace("32,1,1,", "32,32,1,"))
    with pytest.raises(ValueError, match=r"line 2: a DP \(depthwise\) row with Num Filter 32"):
        load_csv(path)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_zoo_round_trip_keeps_every_array_layer_s_macs(tmp_path, name):
    net = get_network(name)
    path = tmp_path / f"{name}.csv"
    rows = write_csv(net, path)
    back = load_csv(path)
    # one row per array layer, per group of a grouped convolution (ResNeXt)
    groups = {s.name: getattr(net.node(s.name).op, "groups", 1) for s in net.stats}
    array = [
        (f"{s.name}.g{i}" if groups[s.name] > 1 else s.name, s.macs // groups[s.name])
        for s in net.stats
        if s.engine == "array"
        for i in range(groups[s.name])
    ]
    assert rows == len(array) == len(back.layers("conv"))
    assert array == [(c.name, c.macs) for c in back.layers("conv")]
    assert back.macs == sum(macs for _, macs in array)
    # SCALE-Sim's own formula on the written rows gives the same MACs.
    lines = path.read_text().splitlines()
    assert lines[0] == (
        "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
        "Num Filter, Strides,"
    )
    for line, (_, macs) in zip(lines[1:], array, strict=True):
        assert line.endswith(",")
        assert scalesim_macs(*map(int, line.split(",")[1:8])) == macs


def test_written_rows(tmp_path):
    net = Network(
        "n",
        (1, 8, 8, 3),
        (
            Node(Conv2D("c1", h=8, w=8, cin=3, cout=4, k=3, stride=2, pad=1)),
            Node(DepthwiseConv2D("dw", h=4, w=4, c=4, k=3, pad=1), "c1"),
            Node(Source("flat", (5, 64))),
            Node(Dense("DPfc", m=5, k=64, n=10), "flat"),
        ),
    )
    path = tmp_path / "n.csv"
    assert write_csv(net, path) == 2  # the depthwise layer is skipped
    # c1: 8 + 2*1 = 10 padded rows, of which the 4 stride-2 windows cover 9.
    assert path.read_text().splitlines()[1:] == ["c1,9,9,3,3,3,4,2,", "Dpfc,1,5,1,1,64,10,1,"]


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"SCALE-Sim topology '.*none.csv' does not"):
        load_csv(tmp_path / "none.csv")
    path = tmp_path / "t.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match=r"header \['a', 'b', 'c'\] is neither the convolution"):
        load_csv(path)
    head = SCALESIM_RESNET50.splitlines()[0] + "\n"
    for row, why in [
        ("c,8,8,3,1,3,4,1,", r"line 2: filter 3x1, strides 1x1: Tandem convolutions are square"),
        ("c,8,8,3,3,3,4,1,2,", r"line 2: filter 3x3, strides 1x2"),
        ("c,8,x,3,3,3,4,1,", r"line 2: fields 2 to 8 .* must be integers"),
        ("c,8,8,3,3,3,", r"line 2: 6 fields, want at least 8"),
        ("c,2,2,3,3,3,4,1,", r"line 2: layer 'c': kernel k=3 is larger than the padded input"),
    ]:
        path.write_text(head + row + "\n")
        with pytest.raises(ValueError, match=why):
            load_csv(path)
    big = Network("b", (2, 8, 8, 3), (Node(Conv2D("c", h=8, w=8, cin=3, cout=4, k=3, batch=2)),))
    with pytest.raises(ValueError, match=r"layer 'c': batch 2; a SCALE-Sim topology holds one"):
        write_csv(big, path)
    dw = Network("d", (1, 8, 8, 3), (Node(DepthwiseConv2D("dw", h=8, w=8, c=3, k=3)),))
    with pytest.raises(ValueError, match=r"network 'd' has no array layers"):
        write_csv(dw, path)
