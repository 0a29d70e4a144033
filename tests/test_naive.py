"""Depthwise convolution on the array (naive per-channel and per-channel im2col), checked bit for
bit on the reference interpreter against a per-channel golden; and `lower` left unchanged."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import pytest

from kernels.conv import conv2d, layer_golden, random_layer_data
from kernels.interp import HazardError, execute
from kernels.layers import DepthwiseConv2D, parse_layer_spec
from kernels.lower import Segment, TilePlan, lower, lower_segments, weight_image
from kernels.naive import (
    estimate_program,
    lower_depthwise_im2col,
    lower_depthwise_naive,
    naive_plan_choice,
)
from kernels.requant import RequantParams, random_requant
from rtl import isa
from rtl.config import load_config
from rtl.isa import Op

CONFIGS = {name: load_config(name) for name in ("tiny", "wide", "default")}
LOWERINGS = {"naive": lower_depthwise_naive, "im2col": lower_depthwise_im2col}


@dataclass(frozen=True)
class DW:
    """A depthwise layer, until kernels.layers has its own (duck-typed by kernels.naive)."""

    name: str
    h: int
    w: int
    c: int
    k: int
    stride: int = 1
    pad: int = 0
    batch: int = 1
    act: str = "none"

    @property
    def out_h(self) -> int:
        return (self.h + 2 * self.pad - self.k) // self.stride + 1

    @property
    def out_w(self) -> int:
        return (self.w + 2 * self.pad - self.k) // self.stride + 1

    @property
    def macs(self) -> int:
        return self.batch * self.out_h * self.out_w * self.c * self.k * self.k


def random_tensors(layer: DW, rng: np.random.Generator, per_channel: bool = True) -> dict:
    c, k = layer.c, layer.k
    return {
        "input": rng.integers(-128, 128, (layer.batch, layer.h, layer.w, c), dtype=np.int8),
        "weights": rng.integers(-128, 128, (k, k, c), dtype=np.int8),
        "bias": rng.integers(-4096, 4097, c, dtype=np.int32),
        "requant": random_requant(rng, c if per_channel else 1, k=k * k, act=layer.act),
    }


def golden(layer: DW, t: dict) -> np.ndarray:
    """Depthwise golden: kernels.conv.conv2d per channel (cin = cout = 1)."""
    params = t["requant"]
    outs = []
    for ch in range(layer.c):
        p = params
        if params.channels > 1:
            p = dataclasses.replace(
                params, multiplier=(params.multiplier[ch],), shift=(params.shift[ch],)
            )
        w = t["weights"][:, :, ch].reshape(layer.k, layer.k, 1, 1)
        x = t["input"][..., ch : ch + 1]
        outs.append(conv2d(x, w, t["bias"][ch : ch + 1], p, layer.stride, layer.pad))
    return np.concatenate(outs, axis=-1)


def run_lowered(config, low, want):
    """Run on the interpreter (races checked) with the output region pre-set to ~want; return
    the output and check that tokens balance and nothing but the output is written."""
    image = bytearray(low.image)
    out = low.output
    image[out.addr : out.addr + out.nbytes] = (~want).astype(np.int8).tobytes()
    result = execute(config, low.program, image)
    assert all(v == 0 for v in result.tokens_left.values()), result.tokens_left
    before, after = np.frombuffer(low.image, np.uint8), np.frombuffer(result.dram, np.uint8)
    mask = np.ones(len(before), bool)
    mask[out.addr : out.addr + out.nbytes] = False
    assert np.array_equal(before[mask], after[mask])
    return out.read(result.dram)


def wrong_channels(got, want) -> list[int]:
    return sorted({int(i) for i in np.argwhere(got != want)[:, -1]})


def check(config, layer, variant, seed=0, plan=None, per_channel=True):
    t = random_tensors(layer, np.random.default_rng(seed), per_channel)
    low = LOWERINGS[variant](config, layer, t, plan)
    want = golden(layer, t)
    assert low.output.shape == want.shape == (layer.batch, layer.out_h, layer.out_w, layer.c)
    assert low.output.layout == "NHWC int8" and low.macs == layer.macs
    assert np.array_equal(low.regions["input"].read(low.image), t["input"])
    got = run_lowered(config, low, want)
    assert wrong_channels(got, want) == [], f"plan {low.plan}"
    return low


# (config, layer) -- 1 channel, odd channel counts, stride 2, padding, K=5, batch 2, activations.
CASES = [
    ("tiny", DW("dw_c1", h=5, w=6, c=1, k=3, pad=1)),
    ("tiny", DW("dw_s2", h=9, w=8, c=5, k=3, stride=2, pad=1, batch=2, act="relu")),
    ("tiny", DW("dw_k5", h=7, w=9, c=3, k=5, pad=2, act="relu6")),
    ("tiny", DW("dw_k5s2", h=10, w=7, c=7, k=5, stride=2, pad=2)),
    ("wide", DW("dw_wide", h=6, w=6, c=9, k=3, pad=1, batch=2)),
    ("default", DW("dw_def", h=12, w=11, c=17, k=3, pad=1, act="relu6")),
    ("default", DW("dw_def_s2", h=9, w=9, c=3, k=5, stride=2, pad=2, batch=2)),
    ("default", DW("dw_nopad", h=6, w=5, c=1, k=3)),
]


@pytest.mark.parametrize("variant", LOWERINGS)
@pytest.mark.parametrize(("config", "layer"), CASES, ids=[f"{c}-{lay.name}" for c, lay in CASES])
def test_depthwise_matches_golden(config, layer, variant):
    check(CONFIGS[config], layer, variant, seed=len(layer.name))


@pytest.mark.parametrize("variant", LOWERINGS)
@pytest.mark.parametrize("seed", range(12))
def test_random_depthwise(seed, variant):
    """Seeded random shapes and tile plans on tiny and default."""
    rng = np.random.default_rng(300 + seed)
    config = CONFIGS[("tiny", "default")[seed % 2]]
    k = int(rng.choice([1, 3, 5]))
    pad = int(rng.integers(0, k // 2 + 1))
    layer = DW(
        f"dw{seed}", h=int(rng.integers(max(1, k - 2 * pad), 11)),
        w=int(rng.integers(max(1, k - 2 * pad), 11)), c=int(rng.integers(1, 12)), k=k,
        stride=int(rng.integers(1, 3)), pad=pad, batch=int(rng.integers(1, 3)),
        act=str(rng.choice(["none", "relu", "relu6"])),
    )  # fmt: skip
    plan = None
    if seed % 3:  # small tiles: several steps per channel, so the ring slots cross channels
        if variant == "im2col":  # a GEMM of batch*out_h*out_w rows: tiles of one row
            oh, ow = 1, int(rng.integers(1, layer.batch * layer.out_h * layer.out_w + 1))
        else:
            oh, ow = int(rng.integers(1, layer.out_h + 1)), int(rng.integers(1, layer.out_w + 1))
        plan = TilePlan(oh, ow, double_buffer=bool(rng.integers(0, 4)),
                        resident_weights=bool(rng.integers(0, 2)))  # fmt: skip
    check(config, layer, variant, seed=seed, plan=plan, per_channel=bool(seed % 4))


@pytest.mark.parametrize("variant", LOWERINGS)
def test_queues_of_one_and_os_only_array(variant):
    layer = DW("dw", h=7, w=6, c=4, k=3, stride=2, pad=1, batch=2)
    one = CONFIGS["tiny"].replace(load_queue_depth=1, exec_queue_depth=1, store_queue_depth=1)
    check(one, layer, variant, plan=TilePlan(1, 3) if variant == "naive" else TilePlan(1, 5))
    low = check(CONFIGS["tiny"].replace(dataflow="os"), layer, variant)
    assert low.plan.dataflow == "os"


def test_channels_chain_without_fences():
    """One FENCE at the end; channel 1's first input load is issued before channel 0's last
    MATMUL (it prefetches into the free slot), and that overlap is what the tokens order."""
    cfg = CONFIGS["tiny"]
    layer = DW("dw", h=6, w=6, c=3, k=3, pad=1)
    low = check(cfg, layer, "naive", plan=TilePlan(2, 6, resident_weights=False))
    cmds = [isa.decode(w) for w in low.program]
    assert [c.op for c in cmds].count(Op.FENCE) == 1 and cmds[-1].op == Op.FENCE
    base = low.regions["input"].addr

    def loads_of(ch):
        return [i for i, c in enumerate(cmds) if c.op == Op.LOAD and not c.zero
                and c.len == 1 and (c.dram_addr - base) % layer.c == ch]  # fmt: skip

    matmuls = [i for i, c in enumerate(cmds) if c.op == Op.MATMUL]
    assert loads_of(1)[0] < matmuls[len(matmuls) // layer.c - 1]
    assert all(c.stride == layer.c for c in cmds if c.op in (Op.LOAD, Op.STORE) and c.len == 1)
    # Channel 1's first input tile refills the slot channel 0's second tile read: dropping the
    # pop that orders it is a race.
    head = max(i for i in range(loads_of(1)[0] + 1) if cmds[i].op == Op.LOAD and cmds[i].pop_next)
    prog = list(low.program)
    prog[head] &= ~(1 << 5)  # pop_next
    with pytest.raises(HazardError, match="race"):
        execute(cfg, prog, low.image)


@pytest.mark.parametrize("variant", LOWERINGS)
def test_a_skipped_channel_is_caught(variant):
    """Redirect channel 1's stores onto channel 0 (a well-formed program that never writes
    channel 1): the check names channel 1, left as it was before the run."""
    cfg = CONFIGS["tiny"]
    layer = DW("dw", h=5, w=5, c=3, k=3, pad=1)
    t = random_tensors(layer, np.random.default_rng(1))
    low = LOWERINGS[variant](cfg, layer, t)
    out = low.output.addr
    prog = []
    for word in low.program:
        c = isa.decode(word)
        if c.op == Op.STORE and (c.dram_addr - out) % layer.c == 1:
            fields = {**c.fields, "dram_addr": c.dram_addr - 1}
            flags = {f: getattr(c, f) for f in ("pop_prev", "pop_next", "push_prev", "push_next")}
            word = isa.encode(Op.STORE, **fields, **flags)
        prog.append(word)
    want = golden(layer, t)
    got = run_lowered(cfg, dataclasses.replace(low, program=tuple(prog)), want)
    assert 1 in wrong_channels(got, want)
    assert np.array_equal(got[..., 1], ~want[..., 1])


# ---------------------------------------------------------------- estimate


def test_estimate_and_choice():
    cfg = CONFIGS["default"]
    layer = DW("mbv2_dw1", h=112, w=112, c=32, k=3, pad=1)  # MobileNetV2's first depthwise
    choice = naive_plan_choice(cfg, layer)
    m = layer.out_h * layer.out_w
    assert choice.naive.rows_streamed == 9 * m * layer.c  # k*k shifted MATMULs per pixel
    assert choice.im2col.rows_streamed == 1 * m * layer.c  # one chunk of k*k <= 16 taps
    assert choice.im2col.host_copy_bytes == 9 * m * layer.c and choice.naive.host_copy_bytes == 0
    assert choice.best == "im2col" and choice.speedup > 2
    # the estimate reads the program: a tiny layer's numbers by hand
    tiny = CONFIGS["tiny"]
    small = DW("dw", h=4, w=4, c=2, k=3, pad=1)
    low = lower_depthwise_naive(tiny, small, random_tensors(small, np.random.default_rng(0)))
    est = estimate_program(tiny, low.program)
    assert est.commands == len(low.program) and est.matmuls == low.counts["MATMUL"] == 2 * 9
    assert est.rows_streamed == 2 * 9 * 16 and est.store_beats == 2 * 16
    assert est.array_cycles == 2 * 9 * 16 + tiny.rows + tiny.cols
    assert est.cycles >= est.array_cycles


# ---------------------------------------------------------------- errors


def test_errors_name_the_layer_and_the_fix():
    cfg = CONFIGS["tiny"]
    layer = DW("dw_e", h=5, w=5, c=3, k=3, pad=1)
    t = random_tensors(layer, np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"Dense lacks batch, h, w, c, stride, pad"):
        lower_depthwise_naive(cfg, parse_layer_spec("gemm:m=4,k=4,n=4"), t)
    with pytest.raises(ValueError, match=r"layer 'dw_e': weights has shape \(3, 3, 2\), expect"):
        lower_depthwise_naive(cfg, layer, {**t, "weights": t["weights"][:, :, :2]})
    with pytest.raises(ValueError, match=r"layer 'dw_e': requant has 2 channels, the layer has 3"):
        two = random_requant(np.random.default_rng(0), 2)
        lower_depthwise_im2col(cfg, layer, {**t, "requant": two})
    with pytest.raises(ValueError, match=r"tensors lack 'bias'"):
        lower_depthwise_naive(cfg, layer, {k: v for k, v in t.items() if k != "bias"})
    relu = RequantParams((1 << 30,), 31, act="relu")
    with pytest.raises(ValueError, match=r"act='none' but its requant parameters have act='relu'"):
        lower_depthwise_naive(cfg, layer, {**t, "requant": relu})

    @dataclass(frozen=True)
    class Liar(DW):
        @property
        def out_h(self) -> int:
            return 99

    with pytest.raises(ValueError, match=r"out_h x out_w = 99x5, but .* give 5x5"):
        lower_depthwise_naive(cfg, Liar("liar", h=5, w=5, c=3, k=3, pad=1), t)
    with pytest.raises(ValueError, match=r"layer 'dw_e': tile 9x9 is larger than the 5x5 output"):
        lower_depthwise_naive(cfg, layer, t, TilePlan(9, 9))
    strided = DW("dw_s16", h=40, w=40, c=1, k=3, stride=16)
    with pytest.raises(ValueError, match=r"stride 16 exceeds MATMUL.a_stride_x"):
        naive_plan_choice(cfg, strided)
    wide = DW("dw_wide", h=3, w=3, c=70000, k=3)
    with pytest.raises(ValueError, match=r"layer 'dw_wide': c=70000 .* LOAD.stride .*65535"):
        naive_plan_choice(cfg, wide)


# ---------------------------------------------------------------- lower is unchanged

# sha256 (first 16 hex digits) of `lower`'s DRAM image (input, weights, output, program) for these
# cases, computed before segments were added to kernels/lower.py: every existing program byte is
# the same.
UNCHANGED = [
    ("tiny", "conv:h=7,w=9,cin=3,cout=5,k=3,s=1,p=1", None, "2d78aadc0d2fec4e"),
    ("tiny", "conv:h=6,w=7,cin=9,cout=11,k=3,p=1",
     TilePlan(3, 4, resident_weights=False, n_outer=True), "fc3304b0140b1a7c"),
    ("tiny", "conv:h=9,w=8,cin=6,cout=9,k=5,s=2,p=2,n=2,act=relu6",
     TilePlan(2, 3, double_buffer=False), "7819e01b82cd9417"),
    ("wide", "conv:h=9,w=9,cin=12,cout=70,k=3,s=2,p=1,n=2,act=relu6", TilePlan(2, 5),
     "44f34f032fe96251"),
    ("default", "conv:h=14,w=14,cin=40,cout=20,k=3,s=1,p=1", TilePlan(5, 6, dataflow="os"),
     "4c2fe4a7e7f51c5f"),
    ("default", "gemm:m=100,k=70,n=30,act=relu", None, "9d3815da42f1734d"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "spec", "plan", "digest"), UNCHANGED)
def test_lower_is_unchanged(config, spec, plan, digest):
    cfg, layer = CONFIGS[config], parse_layer_spec(spec)
    t = random_layer_data(layer, np.random.default_rng(7))
    low = lower(cfg, layer, t, plan)
    assert hashlib.sha256(low.image).hexdigest()[:16] == digest
    # lower is lower_segments with one segment placed where lower puts the tensors
    conv, r = layer.as_conv(), low.regions
    seg = Segment(r["input"].addr, conv.cin, r["weights"].addr, r["output"].addr, conv.cout,
                  tuple(int(b) for b in t["bias"]), t["requant"])  # fmt: skip
    assert lower_segments(cfg, conv, low.plan, [seg]) == low.program
    assert weight_image(cfg, conv, t["weights"]).tobytes() == r["weights"].read(low.image).tobytes()


def test_segment_errors():
    cfg = CONFIGS["tiny"]
    conv = parse_layer_spec("conv:h=4,w=4,cin=2,cout=3,k=3,p=1,name=c")
    ok = Segment(0, 2, 64, 128, 3, (0, 0, 0), RequantParams((1,), 0))
    plan = TilePlan(4, 4)
    with pytest.raises(ValueError, match=r"layer 'c': segment input_stride=1 must be in cin=2"):
        lower_segments(cfg, conv, plan, [dataclasses.replace(ok, input_stride=1)])
    with pytest.raises(ValueError, match=r"output_stride=16777216 must be in cout=3\.\.16777215"):
        lower_segments(cfg, conv, plan, [dataclasses.replace(ok, output_stride=1 << 24)])
    with pytest.raises(ValueError, match=r"has 2 biases for cout=3"):
        lower_segments(cfg, conv, plan, [dataclasses.replace(ok, bias=(0, 0))])
    with pytest.raises(ValueError, match=r"requant has 2 channels for cout=3"):
        lower_segments(cfg, conv, plan, [dataclasses.replace(ok, requant=RequantParams((1, 1), 0))])
    with pytest.raises(ValueError, match=r"weights_addr=-1 is outside"):
        lower_segments(cfg, conv, plan, [dataclasses.replace(ok, weights_addr=-1)])
    with pytest.raises(ValueError, match="at least one segment"):
        lower_segments(cfg, conv, plan, [])


@pytest.mark.parametrize("variant", LOWERINGS)
def test_the_depthwise_layer_of_kernels_layers(variant):
    """kernels.layers.DepthwiseConv2D lowers as the duck-typed stand-in does, to its golden."""
    cfg = CONFIGS["tiny"]
    layer = DepthwiseConv2D("dw", h=7, w=6, c=5, k=3, stride=2, pad=1, batch=2, act="relu")
    t = random_layer_data(layer, np.random.default_rng(3))
    low = LOWERINGS[variant](cfg, layer, t)
    want = layer_golden(layer, t)
    assert np.array_equal(want, golden(DW("dw", 7, 6, 5, 3, 2, 1, 2, "relu"), t))
    assert wrong_channels(run_lowered(cfg, low, want), want) == []
