"""Lowering to programs, checked bit for bit on the reference interpreter against the golden."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re

import numpy as np
import pytest

from kernels.conv import layer_golden, random_layer_data
from kernels.interp import DeadlockError, HazardError, ProgramError, _decode, _Machine, execute, run
from kernels.layers import Conv2D, Dense, parse_layer_spec
from kernels.lower import (
    ALIGN,
    Segment,
    TilePlan,
    array_form,
    default_plan,
    lower,
    lower_segments,
    segment_weights,
    weight_image,
)
from rtl import isa
from rtl.config import HWConfig, load_config
from rtl.isa import Cause, Op

CONFIGS = {name: load_config(name) for name in ("tiny", "wide", "default")}


def footprint(config, program):
    """Highest scratchpad and accumulator row (+1) any command touches, read from the words."""
    wrows = math.ceil(config.cols / config.rows)
    spad = acc = 0
    for word in program:
        c = isa.decode(word)
        if c.op == Op.LOAD:
            spad = max(spad, c.spad_addr + c.rows)
        elif c.op == Op.MATMUL:
            last_a = c.a_addr + (c.ny - 1) * c.a_stride_y + (c.nx - 1) * c.a_stride_x
            spad = max(spad, c.w_addr + config.rows * wrows, last_a + 1)
            acc = max(acc, c.acc_addr + c.nx * c.ny)
        elif c.op == Op.STORE:
            acc = max(acc, c.acc_addr + c.rows)
    return spad, acc


def token_balance(program):
    """Pushes minus pops per counter, read from the flags."""
    bal = {"l2e": 0, "e2l": 0, "e2s": 0, "s2e": 0}
    for word in program:
        c = isa.decode(word)
        if c.queue == isa.Queue.LOAD:
            bal["l2e"] += c.push_next
            bal["e2l"] -= c.pop_next
        elif c.queue == isa.Queue.EXEC:
            bal["l2e"] -= c.pop_prev
            bal["s2e"] -= c.pop_next
            bal["e2l"] += c.push_prev
            bal["e2s"] += c.push_next
        elif c.queue == isa.Queue.STORE:
            bal["e2s"] -= c.pop_prev
            bal["s2e"] += c.push_prev
    return bal


def check_lowering(config, layer, plan=None, seed=0):
    rng = np.random.default_rng(seed)
    tensors = random_layer_data(layer, rng)
    low = lower(config, layer, tensors, plan)
    want = layer_golden(layer, tensors)
    # Start the output region as the bitwise complement of the answer: every byte must be written.
    image = bytearray(low.image)
    out = low.output
    image[out.addr : out.addr + out.nbytes] = (~want).astype(np.int8).tobytes()
    result = execute(config, low.program, image)
    got = out.read(result.dram)
    assert got.shape == layer.output_shape
    if not np.array_equal(got, want):
        bad = np.argwhere(got != want)
        pytest.fail(f"{len(bad)} outputs differ, first at {bad[0].tolist()}: plan {low.plan}")
    assert all(v == 0 for v in result.tokens_left.values()), result.tokens_left
    assert all(v == 0 for v in token_balance(low.program).values())
    spad, acc = footprint(config, low.program)
    plan_spad, plan_acc = low.plan.footprint(config, layer)
    assert spad <= plan_spad <= config.spad_rows
    assert acc <= plan_acc <= config.acc_rows
    # Everything but the output region is left as it was.
    before, after = np.frombuffer(low.image, np.uint8), np.frombuffer(result.dram, np.uint8)
    mask = np.ones(len(before), bool)
    mask[out.addr : out.addr + out.nbytes] = False
    assert np.array_equal(before[mask], after[mask])
    return low


# (config, layer spec, plan) -- awkward on purpose: channels not multiples of the array, kernels
# 1..7, strides 1..3, paddings 0..3, tiles that do not divide the output, batches, dense layers.
CASES = [
    ("tiny", "conv:h=5,w=5,cin=1,cout=1,k=1", None),
    ("tiny", "conv:h=7,w=9,cin=3,cout=5,k=3,s=1,p=1", None),
    ("tiny", "conv:h=7,w=9,cin=3,cout=5,k=3,s=1,p=1", TilePlan(2, 4)),
    ("tiny", "conv:h=7,w=9,cin=3,cout=5,k=3,s=1,p=1", TilePlan(3, 9, double_buffer=False)),
    ("tiny", "conv:h=9,w=8,cin=17,cout=6,k=3,s=2,p=0,act=relu", None),
    ("tiny", "conv:h=9,w=8,cin=6,cout=9,k=5,s=2,p=2,act=relu6", TilePlan(2, 3)),
    ("tiny", "conv:h=11,w=10,cin=3,cout=4,k=7,s=2,p=3", None),
    ("tiny", "conv:h=6,w=6,cin=5,cout=3,k=3,s=1,p=2,n=2", TilePlan(4, 5)),
    ("tiny", "conv:h=4,w=5,cin=2,cout=3,k=3,s=3,p=3", None),
    ("tiny", "conv:h=8,w=8,cin=8,cout=10,k=1,s=2,n=2,act=relu", TilePlan(3, 4)),
    ("tiny", "gemm:m=10,k=70,n=30", None),
    ("tiny", "gemm:m=13,k=3,n=5,act=relu", TilePlan(1, 4)),
    ("tiny", "conv:h=6,w=7,cin=9,cout=11,k=3,p=1", TilePlan(2, 7, resident_weights=False)),
    ("tiny", "conv:h=6,w=7,cin=9,cout=11,k=3,p=1",
     TilePlan(3, 4, resident_weights=False, n_outer=True)),
    ("tiny", "conv:h=6,w=7,cin=9,cout=11,k=3,p=1",
     TilePlan(4, 3, double_buffer=False, resident_weights=False)),
    ("tiny", "conv:h=6,w=7,cin=9,cout=11,k=3,p=1",
     TilePlan(2, 2, double_buffer=False, resident_weights=False, n_outer=True)),
    ("wide", "conv:h=7,w=7,cin=1,cout=1,k=3,p=1", None),
    ("wide", "conv:h=10,w=11,cin=17,cout=33,k=5,s=2,p=2,act=relu", None),
    ("wide", "conv:h=10,w=11,cin=17,cout=33,k=5,s=2,p=2,act=relu", TilePlan(2, 3)),
    ("wide", "conv:h=9,w=9,cin=12,cout=70,k=3,s=2,p=1,n=2,act=relu6", TilePlan(2, 5)),
    ("wide", "conv:h=12,w=12,cin=8,cout=40,k=1", TilePlan(5, 12, resident_weights=False)),
    ("wide", "gemm:m=37,k=19,n=65,act=relu", None),
    ("wide", "gemm:m=300,k=9,n=7", None),
    ("default", "conv:h=16,w=16,cin=3,cout=16,k=7,s=2,p=3,act=relu", None),
    ("default", "conv:h=14,w=14,cin=40,cout=20,k=3,s=1,p=1", None),
    ("default", "conv:h=14,w=14,cin=40,cout=20,k=3,s=1,p=1", TilePlan(5, 6)),
    ("default", "conv:h=9,w=10,cin=17,cout=33,k=3,s=2,p=0,n=2,act=relu", TilePlan(3, 3)),
    ("default", "conv:h=8,w=8,cin=16,cout=17,k=1", TilePlan(8, 8, double_buffer=False)),
    ("default", "conv:h=5,w=5,cin=33,cout=1,k=5,p=2,act=relu6", None),
    ("default", "gemm:m=100,k=70,n=30,act=relu", None),
    ("default", "gemm:m=1,k=300,n=3", None),
    ("default", "gemm:m=64,k=48,n=48", TilePlan(1, 20, resident_weights=False, n_outer=True)),
    # grouped convolutions: one segment per group, reading and writing channel slices
    ("tiny", "conv:h=6,w=7,cin=6,cout=9,k=3,p=1,g=3", None),
    ("tiny", "conv:h=7,w=6,cin=10,cout=4,k=3,s=2,p=1,g=2,n=2,act=relu", TilePlan(2, 3)),
    ("tiny", "conv:h=5,w=5,cin=12,cout=12,k=1,g=4", TilePlan(3, 5, resident_weights=False)),
    ("tiny", "conv:h=6,w=6,cin=4,cout=8,k=3,p=1,g=4", TilePlan(2, 6, double_buffer=False)),
    ("tiny", "conv:h=7,w=5,cin=8,cout=8,k=3,s=2,p=1,g=4,act=relu", None),
    ("tiny", "conv:h=5,w=5,cin=16,cout=8,k=1,g=8,n=2", TilePlan(2, 5, n_outer=True,
                                                              resident_weights=False)),
    ("wide", "conv:h=8,w=9,cin=40,cout=70,k=3,p=1,g=5,act=relu6", None),
    ("default", "conv:h=7,w=7,cin=64,cout=64,k=3,p=1,g=32", None),
    ("default", "conv:h=5,w=6,cin=8,cout=12,k=3,p=1,g=4", None),  # every group in one segment
    ("default", "conv:h=9,w=9,cin=48,cout=96,k=3,s=2,p=1,g=2", TilePlan(3, 5, n_outer=True,
                                                                     resident_weights=False)),
]  # fmt: skip


def case_id(case):
    config, spec, plan = case
    if plan is None:
        return f"{config}-{spec}-default"
    flags = "".join(
        f"-{name}" for name, on in (("single", not plan.double_buffer),
        ("stream", not plan.resident_weights), ("n_outer", plan.n_outer)) if on
    )  # fmt: skip
    return f"{config}-{spec}-{plan.tile}{flags}"


@pytest.mark.parametrize(("config", "spec", "plan"), CASES, ids=[case_id(c) for c in CASES])
def test_lowered_program_matches_golden(config, spec, plan):
    check_lowering(CONFIGS[config], parse_layer_spec(spec), plan, seed=len(spec))


@pytest.mark.parametrize("seed", range(40))
def test_random_layers_and_plans(seed):
    """Random shapes, strides, paddings, batches and plans on the three presets."""
    rng = np.random.default_rng(1000 + seed)
    config = CONFIGS[("tiny", "wide", "default")[seed % 3]]
    if seed % 5 == 4:
        layer = Dense(
            f"fc{seed}",
            m=int(rng.integers(1, 40)),
            k=int(rng.integers(1, 80)),
            n=int(rng.integers(1, 70)),
            act=str(rng.choice(["none", "relu", "relu6"])),
        )
    else:
        k = int(rng.choice([1, 3, 5, 7]))
        pad = int(rng.integers(0, min(k, 4)))
        layer = Conv2D(
            f"conv{seed}", h=int(rng.integers(max(1, k - 2 * pad), 13)),
            w=int(rng.integers(max(1, k - 2 * pad), 13)), cin=int(rng.integers(1, 40)),
            cout=int(rng.integers(1, 45)), k=k, stride=int(rng.integers(1, 4)), pad=pad,
            batch=int(rng.integers(1, 3)), act=str(rng.choice(["none", "relu", "relu6"])),
        )  # fmt: skip
    plan = None
    if seed % 4:
        plan = TilePlan(
            int(rng.integers(1, layer.out_h + 1)), int(rng.integers(1, layer.out_w + 1)),
            double_buffer=bool(rng.integers(0, 4)), resident_weights=bool(rng.integers(0, 2)),
            n_outer=bool(rng.integers(0, 2)),
        )  # fmt: skip
        try:
            plan.validate(config, layer)
        except ValueError:
            plan = None  # e.g. resident weights too big for tiny: use the default plan
    check_lowering(config, layer, plan, seed=seed)


@pytest.mark.parametrize(
    "config",
    [
        HWConfig(name="tall", rows=16, cols=4, spad_kib=16, acc_kib=4),  # cols < rows
        HWConfig(name="odd", rows=8, cols=12, spad_kib=16, acc_kib=8, spad_banks=1, acc_banks=1),
    ],
    ids=lambda c: c.name,
)
@pytest.mark.parametrize(
    "plan", [None, TilePlan(2, 2, resident_weights=False, n_outer=True)], ids=["default", "2x2"]
)
def test_other_array_shapes(config, plan):
    # "odd": a weight row spans ceil(12/8) = 2 scratchpad rows, the second half used.
    check_lowering(config, parse_layer_spec("conv:h=7,w=6,cin=19,cout=13,k=3,s=2,p=1,n=2"), plan)


def test_weights_stream_when_they_do_not_fit():
    # 5*5*17 inputs x 33 outputs: 4500 weight rows > the 4096 of tiny, so weights stream.
    layer = parse_layer_spec("conv:h=10,w=11,cin=17,cout=33,k=5,s=2,p=2")
    plan = default_plan(CONFIGS["tiny"], layer)
    assert not plan.resident_weights
    check_lowering(CONFIGS["tiny"], layer)


def test_default_plan_prefers_full_width_then_rows():
    cfg = CONFIGS["default"]  # 1024 accumulator rows: 512 per buffer
    layer = Conv2D("c", h=56, w=56, cin=16, cout=16, k=3, pad=1)
    plan = default_plan(cfg, layer)
    assert (plan.oh_t, plan.ow_t) == (512 // 56, 56) and plan.resident_weights
    plan.validate(cfg, layer)
    wide = Dense("fc", m=5000, k=16, n=16)
    plan = default_plan(cfg, wide)
    assert (plan.oh_t, plan.ow_t) == (1, 512)


def test_single_queue_slots_do_not_deadlock():
    # Every pop's push comes earlier in the program, so even 1-deep queues cannot deadlock.
    cfg = CONFIGS["tiny"].replace(load_queue_depth=1, exec_queue_depth=1, store_queue_depth=1)
    layer = parse_layer_spec("conv:h=6,w=7,cin=9,cout=11,k=3,p=1")
    check_lowering(cfg, layer, TilePlan(2, 3, resident_weights=False))
    check_lowering(cfg, layer, TilePlan(2, 3))


def test_lowered_structure():
    cfg = CONFIGS["tiny"]
    layer = parse_layer_spec("conv:h=6,w=6,cin=5,cout=6,k=3,p=1,n=2,act=relu")
    t = random_layer_data(layer, np.random.default_rng(1))
    low = lower(cfg, layer, t, TilePlan(2, 6))
    assert isa.decode(low.program[-1]).op == Op.FENCE
    assert low.macs == layer.macs
    assert set(low.regions) == {"input", "weights", "output", "program"}
    for region in low.regions.values():
        assert region.addr % ALIGN == 0
    regions = sorted(low.regions.values(), key=lambda r: r.addr)
    for a, b in itertools.pairwise(regions):
        assert a.addr + a.nbytes <= b.addr
    assert len(low.image) % ALIGN == 0 and len(low.image) >= regions[-1].addr + regions[-1].nbytes
    prog = low.image[low.program_addr : low.program_addr + 16 * len(low.program)]
    assert isa.from_bytes(prog) == list(low.program)
    assert np.array_equal(low.regions["input"].read(low.image), t["input"])
    assert low.output.layout == "NHWC int8" and low.output.shape == layer.output_shape
    assert isa.assemble(low.disassemble()) == list(low.program)
    counts = low.counts
    # 2 images x 3 tile rows x 2 n-tiles = 12 steps of 9 taps x 2 chunks; config once per n-tile
    # change (every step here), one STORE per step (full-width tiles).
    assert counts["MATMUL"] == 12 * 9 * 2
    assert counts["STORE"] == 12
    assert counts["CFG_BIAS"] == counts["CFG_QUANT"] == 12 * cfg.cols
    assert counts["CFG_STORE"] == 1 and counts["FENCE"] == 1


def test_token_scheme_overlaps_load_exec_and_store():
    cfg = CONFIGS["tiny"]
    layer = parse_layer_spec("conv:h=8,w=8,cin=4,cout=4,k=3,p=1")
    low = lower(cfg, layer, random_layer_data(layer, np.random.default_rng(2)), TilePlan(2, 8))
    cmds = [isa.decode(w) for w in low.program]
    loads = [i for i, c in enumerate(cmds) if c.op == Op.LOAD]
    matmuls = [i for i, c in enumerate(cmds) if c.op == Op.MATMUL]
    # Tile 1's loads come before tile 0's MATMULs in the program (prefetch into the other slot).
    tile1_first_load = [i for i in loads if cmds[i].push_next][1]
    assert tile1_first_load < matmuls[0]
    # The first two tiles' loads wait for nothing; later tiles wait for a free slot.
    assert sum(cmds[i].pop_next for i in loads) == 4 - 2
    assert sum(c.pop_next for c in cmds if c.op == Op.MATMUL) == 4 - 2


# ---------------------------------------------------------------- plan errors
def test_accumulator_overflow_message():
    cfg = CONFIGS["default"]
    layer = Conv2D("conv_3", h=56, w=56, cin=64, cout=64, k=3, pad=1)
    with pytest.raises(ValueError) as info:
        TilePlan(10, 56).validate(cfg, layer)
    assert str(info.value).startswith(
        "layer 'conv_3': tile 10x56 needs 1120 accumulator rows, config 'default' has 1024 "
        "(512 per buffer with double buffering)"
    )
    TilePlan(9, 56).validate(cfg, layer)
    with pytest.raises(ValueError, match="needs 1120 accumulator rows"):
        lower(cfg, layer, random_layer_data(layer, np.random.default_rng(0)), TilePlan(10, 56))


def test_scratchpad_overflow_message():
    cfg = CONFIGS["tiny"]
    layer = Conv2D("big", h=64, w=64, cin=64, cout=4, k=3, pad=1)
    want = r"layer 'big': tile 4x64 needs \d+ scratchpad rows .*config 'tiny' has 4096; use a"
    with pytest.raises(ValueError, match=want):
        TilePlan(4, 64).validate(cfg, layer)
    plan = default_plan(cfg, layer)
    plan.validate(cfg, layer)
    assert plan.footprint(cfg, layer)[0] <= cfg.spad_rows


def test_weights_that_never_fit():
    cfg = CONFIGS["tiny"]
    layer = Conv2D("deep", h=4, w=4, cin=1000, cout=8, k=3, pad=1)
    with pytest.raises(ValueError, match=r"layer 'deep': the weights of one n-tile .* larger k_gr"):
        TilePlan(1, 1, resident_weights=False).validate(cfg, layer)
    # default_plan splits the reduction instead: the smallest k_groups that fits.
    plan = default_plan(cfg, layer)
    assert plan.k_groups > 1 and not plan.resident_weights
    plan.validate(cfg, layer)
    smaller = dataclasses.replace(plan, k_groups=plan.k_groups - 1, double_buffer=False)
    with pytest.raises(ValueError, match="the weights of one n-tile"):
        smaller.validate(cfg, layer)
    # Even one chunk per group cannot fit a scratchpad smaller than one chunk's weights.
    small = cfg.replace(spad_kib=1)  # 256 rows, fewer than one chunk's 9x9 taps (324 rows)
    big = Conv2D("deep9", h=9, w=9, cin=1000, cout=8, k=9)
    with pytest.raises(ValueError, match=r"layer 'deep9': .*weights of one n-tile"):
        default_plan(small, big)


# ---------------------------------------------------------------- K groups (split reduction)

# (config, layer spec, plan): chunk counts that do not divide into equal groups, cin not a
# multiple of rows, both loop orders, single and double buffering, both dataflows.
K_CASES = [
    ("tiny", "gemm:m=5,k=30,n=6", TilePlan(1, 5, resident_weights=False, k_groups=2)),
    ("tiny", "gemm:m=7,k=30,n=6",
     TilePlan(1, 2, double_buffer=False, resident_weights=False, k_groups=3)),
    ("tiny", "gemm:m=3,k=27,n=9", TilePlan(1, 3, resident_weights=False, k_groups=4)),
    ("tiny", "gemm:m=3,k=27,n=9",
     TilePlan(1, 2, resident_weights=False, n_outer=True, k_groups=4, dataflow="os")),
    ("tiny", "conv:h=6,w=7,cin=19,cout=11,k=3,p=1",
     TilePlan(2, 3, resident_weights=False, k_groups=3)),
    ("tiny", "conv:h=6,w=7,cin=19,cout=11,k=3,p=1",
     TilePlan(2, 3, resident_weights=False, n_outer=True, k_groups=2)),
    ("tiny", "conv:h=6,w=7,cin=19,cout=11,k=3,p=1",
     TilePlan(3, 4, double_buffer=False, resident_weights=False, k_groups=2)),
    ("tiny", "conv:h=6,w=7,cin=27,cout=11,k=3,p=1",
     TilePlan(2, 3, resident_weights=False, k_groups=4, dataflow="os")),
    ("tiny", "conv:h=5,w=6,cin=27,cout=5,k=3,s=2,p=1,n=2",
     TilePlan(2, 2, double_buffer=False, resident_weights=False, k_groups=4, dataflow="os")),
    ("default", "conv:h=6,w=7,cin=70,cout=20,k=3,s=2,p=1,n=2",
     TilePlan(2, 3, resident_weights=False, k_groups=3)),
    ("default", "conv:h=5,w=5,cin=100,cout=40,k=3,p=1",
     TilePlan(5, 5, double_buffer=False, resident_weights=False, n_outer=True, k_groups=4)),
    ("default", "gemm:m=9,k=200,n=33,act=relu",
     TilePlan(1, 4, resident_weights=False, k_groups=2)),
    ("default", "gemm:m=9,k=200,n=33,act=relu",
     TilePlan(1, 9, resident_weights=False, k_groups=4, dataflow="os")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("config", "spec", "plan"),
    K_CASES,
    ids=[f"{c}-{s}-{p.tile}-kg{p.k_groups}-{p.dataflow}" for c, s, p in K_CASES],
)
def test_k_groups_match_golden(config, spec, plan):
    cfg = CONFIGS[config]
    if plan.dataflow == "os":
        cfg = cfg.replace(dataflow="both")
    layer = parse_layer_spec(spec)
    low = check_lowering(cfg, layer, plan, seed=len(spec))
    # Each group loads its own weights: one n-tile's set of weight rows, split in k_groups.
    g = -(-layer.as_conv().cin // cfg.rows)
    group_chunks = -(-g // plan.k_groups)
    assert (
        plan.footprint(cfg, layer)[0]
        < dataclasses.replace(plan, k_groups=1).footprint(cfg, layer)[0]
        or group_chunks == g
    )
    mm = [isa.decode(w) for w in low.program if isa.decode(w).op == Op.MATMUL]
    k = layer.as_conv().k
    taps = g * k * k
    # Exactly one MATMUL per step (ws) or array tile (os) starts a tile from the bias.
    first = [c for c in mm if not c.acc and (c.os == 0 or c.drain)]
    assert len(mm) >= taps and len(first) * taps <= len(mm)


def test_k_groups_single_queue_slots_do_not_deadlock():
    cfg = CONFIGS["tiny"].replace(load_queue_depth=1, exec_queue_depth=1, store_queue_depth=1)
    layer = parse_layer_spec("conv:h=6,w=7,cin=19,cout=11,k=3,p=1")
    check_lowering(cfg, layer, TilePlan(2, 3, resident_weights=False, k_groups=3))
    check_lowering(cfg, layer, TilePlan(2, 3, resident_weights=False, k_groups=2, n_outer=True))


def test_k_groups_unchanged_when_one():
    # k_groups=1 is the default: the same plan and the same program as before the field.
    cfg = CONFIGS["tiny"]
    layer = parse_layer_spec("conv:h=6,w=7,cin=19,cout=11,k=3,p=1")
    plan = TilePlan(2, 3, resident_weights=False)
    assert plan == TilePlan(2, 3, resident_weights=False, k_groups=1)
    assert default_plan(cfg, layer).k_groups == 1


def test_default_plan_splits_fc6_and_scaled_fc6():
    # VGG-16 fc6 on default: one n-tile's weights (25088 rows) exceed the 16384-row scratchpad.
    fc6 = Dense("fc6", m=1, k=25088, n=4096)
    cfg = CONFIGS["default"]
    with pytest.raises(ValueError, match="the weights of one n-tile"):
        TilePlan(1, 1, double_buffer=False, resident_weights=False).validate(cfg, fc6)
    plan = default_plan(cfg, fc6)
    assert plan.k_groups == 2 and not plan.resident_weights
    plan.validate(cfg, fc6)
    # The same shape scaled down (k=4000) on a small scratchpad, run bit for bit.
    small = CONFIGS["tiny"].replace(spad_kib=4)  # 1024 rows; one n-tile's weights: 4000
    layer = Dense("fc6s", m=2, k=4000, n=9)
    plan = default_plan(small, layer)
    assert plan.k_groups > 1
    with pytest.raises(ValueError, match="weights of one n-tile"):
        dataclasses.replace(plan, k_groups=plan.k_groups - 1, double_buffer=False).validate(
            small, layer
        )
    check_lowering(small, layer, plan)


@pytest.mark.parametrize(
    ("plan", "match"),
    [
        (dict(k_groups=0), "k_groups must be a positive integer"),
        (dict(k_groups=2), "k_groups=2 needs resident_weights=False"),
        (dict(k_groups=True), "k_groups must be a positive integer"),
    ],
)
def test_k_groups_bad_plans(plan, match):
    with pytest.raises(ValueError, match=match):
        TilePlan(1, 1, **plan)


def test_k_groups_empty_group():
    layer = parse_layer_spec("conv:h=6,w=7,cin=19,cout=11,k=3,p=1")  # 5 chunks on tiny
    with pytest.raises(ValueError, match=r"k_groups=4 leaves a group without .* use k_groups=3"):
        TilePlan(1, 1, resident_weights=False, k_groups=4).validate(CONFIGS["tiny"], layer)
    with pytest.raises(ValueError, match=r"k_groups=6 leaves a group without .* use k_groups=5"):
        TilePlan(1, 1, resident_weights=False, k_groups=6).validate(CONFIGS["tiny"], layer)


@pytest.mark.parametrize(
    ("layer", "plan", "match"),
    [
        (Conv2D("c", h=8, w=8, cin=4, cout=4, k=3), TilePlan(7, 6), "larger than the 6x6 output"),
        (Conv2D("c", h=40, w=40, cin=4, cout=4, k=3, stride=16), TilePlan(1, 1),
         "stride 16 exceeds MATMUL.a_stride_x"),
        (Conv2D("c", h=8, w=8, cin=4, cout=4, k=3), TilePlan(6, 6, double_buffer=False), None),
    ],
)  # fmt: skip
def test_plan_limits(layer, plan, match):
    if match is None:
        plan.validate(CONFIGS["tiny"], layer)
    else:
        with pytest.raises(ValueError, match=match):
            plan.validate(CONFIGS["tiny"], layer)


def test_bad_plans_and_tensors():
    with pytest.raises(ValueError, match="oh_t must be a positive integer"):
        TilePlan(0, 4)
    with pytest.raises(TypeError, match="double_buffer must be a bool"):
        TilePlan(1, 4, double_buffer=1)
    layer = Dense("fc", m=4, k=4, n=4)
    t = random_layer_data(layer, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"layer 'fc': input has shape \(4, 3\)"):
        lower(CONFIGS["tiny"], layer, {**t, "input": t["input"][:, :3]})


# ---------------------------------------------------------------- the interpreter
def gemm_program(cfg, a_rows, *, tokens=True):
    """LOAD weights and activations, one MATMUL, STORE: a hand-written program."""
    r, c = cfg.rows, cfg.cols
    wrows = math.ceil(c / r)
    e = isa.encode
    return [
        e(Op.LOAD, dram_addr=0, spad_addr=0, rows=r * wrows, len=r, stride=r),
        e(Op.LOAD, dram_addr=1024, spad_addr=64, rows=a_rows, len=r, stride=r, push_next=tokens),
        *[e(Op.CFG_BIAS, col=j, bias=j - 2) for j in range(c)],
        e(Op.MATMUL, a_addr=64, a_stride_x=1, a_stride_y=a_rows, w_addr=0, acc_addr=0, nx=a_rows,
          ny=1, pop_prev=tokens, push_next=tokens),
        *[e(Op.CFG_QUANT, col=j, multiplier=1 << 30, shift=31) for j in range(c)],
        e(Op.CFG_STORE, zero_point=1, lo=-100, hi=100),
        e(Op.STORE, dram_addr=4096, acc_addr=0, rows=a_rows, len=c, stride=c, pop_prev=tokens),
        e(Op.FENCE),
    ]  # fmt: skip


def test_interpreter_gemm_by_hand():
    cfg = CONFIGS["wide"]  # 8 rows x 32 cols: each weight row spans 4 scratchpad rows
    r, c, m = cfg.rows, cfg.cols, 5
    rng = np.random.default_rng(4)
    w = rng.integers(-128, 128, size=(r, c), dtype=np.int8)
    a = rng.integers(-128, 128, size=(m, r), dtype=np.int8)
    image = bytearray(8192)
    image[0 : w.size] = w.tobytes()
    image[1024 : 1024 + a.size] = a.tobytes()
    out = np.frombuffer(run(cfg, gemm_program(cfg, m), image), np.int8)[4096 : 4096 + m * c]
    acc = a.astype(np.int64) @ w.astype(np.int64) + (np.arange(c) - 2)
    want = np.clip(np.floor(acc / 2 + 0.5) + 1, -100, 100)  # M = 2**30, S = 31: x0.5, half up
    assert out.reshape(m, c).tolist() == want.astype(int).tolist()


def test_interpreter_reports_races():
    cfg = CONFIGS["tiny"]
    with pytest.raises(HazardError, match=r"command \d+ \(MATMUL .*race: reads"):
        execute(cfg, gemm_program(cfg, 3, tokens=False), bytes(8192), strict=False)
    # Dropping one pop from a lowered program is caught whatever the timing.
    layer = parse_layer_spec("conv:h=6,w=6,cin=4,cout=4,k=3,p=1")
    low = lower(cfg, layer, random_layer_data(layer, np.random.default_rng(0)), TilePlan(2, 6))
    for flag in ("pop_prev", "pop_next"):
        prog = list(low.program)
        i = max(i for i, w in enumerate(prog) if isa.decode(w).op == Op.MATMUL
                and getattr(isa.decode(w), flag))  # fmt: skip
        prog[i] &= ~(1 << (4 + ("pop_prev", "pop_next").index(flag)))
        with pytest.raises(HazardError, match="race"):
            execute(cfg, prog, low.image)


@pytest.mark.parametrize(
    ("op", "flag"),
    [(Op.LOAD, "pop_next"), (Op.LOAD, "push_next"), (Op.MATMUL, "pop_prev"),
     (Op.MATMUL, "pop_next"), (Op.MATMUL, "push_prev"), (Op.MATMUL, "push_next"),
     (Op.STORE, "pop_prev"), (Op.STORE, "push_prev")],
)  # fmt: skip
def test_every_token_of_the_scheme_is_needed(op, flag):
    """Dropping any one token flag from a lowered program is a race or a deadlock."""
    cfg = CONFIGS["tiny"]
    layer = parse_layer_spec("conv:h=6,w=6,cin=4,cout=4,k=3,p=1")
    low = lower(cfg, layer, random_layer_data(layer, np.random.default_rng(0)), TilePlan(2, 6))
    prog = list(low.program)
    bit = 4 + ("pop_prev", "pop_next", "push_prev", "push_next").index(flag)
    marked = [i for i, w in enumerate(prog) if isa.decode(w).op == op and (w >> bit) & 1]
    assert marked, f"{op.name} never carries +{flag}"
    for i in (marked[0], marked[-1]):
        dropped = list(prog)
        dropped[i] &= ~(1 << bit)
        with pytest.raises((HazardError, DeadlockError)):
            execute(cfg, dropped, low.image)


def test_interpreter_reports_deadlock():
    cfg = CONFIGS["tiny"]
    prog = gemm_program(cfg, 3)
    prog[1] = isa.encode(Op.LOAD, dram_addr=1024, spad_addr=64, rows=3, len=4, stride=4)
    with pytest.raises(
        DeadlockError, match=r"exec unit at command \d+ \(MATMUL\) waits for an l2e"
    ):
        execute(cfg, prog, bytes(8192))


@pytest.mark.parametrize(
    ("word", "cause", "match"),
    [
        (isa.encode(Op.LOAD, spad_addr=4095, rows=2, len=4), Cause.SPAD_RANGE, "spad_addr=4095"),
        (isa.encode(Op.LOAD, rows=1, len=5), Cause.BAD_LENGTH, "len=5 must be in 1..4"),
        (isa.encode(Op.LOAD, rows=0, len=4), Cause.BAD_LENGTH, "rows=0"),
        (isa.encode(Op.MATMUL, a_addr=4040, nx=10, ny=2, a_stride_x=1, a_stride_y=50),
         Cause.SPAD_RANGE, "reaches scratchpad row 4099"),
        (isa.encode(Op.MATMUL, w_addr=4093, nx=1, ny=1), Cause.SPAD_RANGE, "w_addr=4093"),
        (isa.encode(Op.MATMUL, acc_addr=500, nx=4, ny=4), Cause.ACC_RANGE, "acc_addr=500"),
        (isa.encode(Op.MATMUL, nx=0, ny=1), Cause.BAD_LENGTH, "nx=0"),
        (isa.encode(Op.STORE, acc_addr=511, rows=2, len=4), Cause.ACC_RANGE, "acc_addr=511"),
        (isa.encode(Op.STORE, rows=1, len=0), Cause.BAD_LENGTH, "len=0"),
        (isa.encode(Op.CFG_BIAS, col=4), Cause.BAD_COLUMN, "col=4 >= cols=4"),
        (isa.encode(Op.CFG_QUANT, col=9), Cause.BAD_COLUMN, "col=9"),
        (isa.encode(Op.LOAD, rows=1, len=4, pop_prev=True), Cause.BAD_TOKEN, r"\+pop_prev"),
        (isa.encode(Op.STORE, rows=1, len=4, push_next=True), Cause.BAD_TOKEN, r"\+push_next"),
        (isa.encode(Op.EWISE, mode=3), Cause.BAD_OPCODE, "mode=3 is reserved"),
        (12, Cause.BAD_OPCODE, "unknown opcode 12"),
    ],
)  # fmt: skip
def test_interpreter_errors_name_command_and_field(word, cause, match):
    cfg = CONFIGS["tiny"]  # 4096 scratchpad rows, 512 accumulator rows, 4x4 array
    prog = [isa.encode(Op.NOP), word, isa.encode(Op.FENCE)]
    with pytest.raises(ProgramError, match=match) as info:
        execute(cfg, prog, bytes(256), strict=False)
    assert info.value.index == 1 and info.value.cause == cause
    assert re.match(r"command 1\b", str(info.value))


def test_interpreter_dram_range_and_undefined_reads():
    cfg = CONFIGS["tiny"]
    with pytest.raises(ProgramError, match="beyond the 256-byte DRAM image"):
        execute(cfg, [isa.encode(Op.LOAD, dram_addr=250, rows=2, len=4, stride=4)], bytes(256))
    with pytest.raises(ProgramError, match="nothing has written"):
        execute(cfg, [isa.encode(Op.STORE, rows=1, len=4)], bytes(256))
    with pytest.raises(ProgramError, match=r"never set by CFG_BIAS"):
        prog = [
            isa.encode(Op.LOAD, zero=1, rows=8, len=4, push_next=True),
            isa.encode(Op.MATMUL, nx=1, ny=1, pop_prev=True),
        ]
        execute(cfg, prog, bytes(256))


# -------------------------------------------------------------------- output-stationary


def os_plan(config, layer, plan):
    return dataclasses.replace(plan, dataflow="os") if plan else default_plan(config, layer, "os")


@pytest.mark.parametrize(("config", "spec", "plan"), CASES, ids=[case_id(c) for c in CASES])
def test_os_lowering_matches_golden(config, spec, plan):
    cfg, layer = CONFIGS[config], parse_layer_spec(spec)
    low = check_lowering(cfg, layer, os_plan(cfg, layer, plan), seed=len(spec) + 1)
    mms = [c for c in map(isa.decode, low.program) if c.op == Op.MATMUL]
    assert all(c.os and c.nx * c.ny <= cfg.rows and not c.acc for c in mms)
    assert mms[-1].drain


@pytest.mark.parametrize("seed", range(24))
def test_os_random_layers_and_plans(seed):
    """Awkward shapes and plans in output-stationary, on the presets and a non-square array."""
    rng = np.random.default_rng(5000 + seed)
    configs = [*CONFIGS.values(), HWConfig(name="odd", rows=8, cols=12, spad_kib=16, acc_kib=8,
                                           spad_banks=1, acc_banks=1)]  # fmt: skip
    config = configs[seed % len(configs)]
    if seed % 5 == 4:
        layer = Dense(f"fc{seed}", m=int(rng.integers(1, 40)), k=int(rng.integers(1, 80)),
                      n=int(rng.integers(1, 70)))  # fmt: skip
    else:
        k = int(rng.choice([1, 3, 5]))
        pad = int(rng.integers(0, min(k, 3)))
        layer = Conv2D(
            f"conv{seed}", h=int(rng.integers(max(1, k - 2 * pad), 12)),
            w=int(rng.integers(max(1, k - 2 * pad), 12)), cin=int(rng.integers(1, 40)),
            cout=int(rng.integers(1, 40)), k=k, stride=int(rng.integers(1, 4)), pad=pad,
            batch=int(rng.integers(1, 3)), act=str(rng.choice(["none", "relu"])),
        )  # fmt: skip
    plan = TilePlan(
        int(rng.integers(1, layer.out_h + 1)), int(rng.integers(1, layer.out_w + 1)),
        double_buffer=bool(rng.integers(0, 4)), resident_weights=bool(rng.integers(0, 2)),
        n_outer=bool(rng.integers(0, 2)), dataflow="os",
    )  # fmt: skip
    try:
        plan.validate(config, layer)
    except ValueError:
        plan = default_plan(config, layer, "os")
    check_lowering(config, layer, plan, seed=seed)


def test_os_plan_checks_and_interpreter_errors():
    ws_only = CONFIGS["tiny"].replace(dataflow="ws")
    layer = parse_layer_spec("conv:h=5,w=5,cin=3,cout=3,k=3,p=1")
    with pytest.raises(ValueError, match="no output-stationary"):
        TilePlan(2, 2, dataflow="os").validate(ws_only, layer)
    with pytest.raises(ValueError, match="dataflow"):
        TilePlan(2, 2, dataflow="xs")
    os_only = CONFIGS["tiny"].replace(dataflow="os")
    assert default_plan(os_only, layer).dataflow == "os"
    check_lowering(os_only, layer)
    cfg = CONFIGS["tiny"]
    load = isa.encode(Op.LOAD, zero=1, rows=16, len=4, push_next=True)
    bias = [isa.encode(Op.CFG_BIAS, col=c) for c in range(4)]
    cases = [
        (cfg, isa.encode(Op.MATMUL, os=1, drain=1, nx=5, ny=1, pop_prev=True), Cause.BAD_LENGTH,
         "exceed the 4 array rows"),
        (ws_only, isa.encode(Op.MATMUL, os=1, drain=1, nx=1, ny=1, pop_prev=True),
         Cause.BAD_OPCODE, "no output-stationary"),
        (os_only, isa.encode(Op.MATMUL, nx=1, ny=1, pop_prev=True), Cause.BAD_OPCODE,
         "no weight-stationary"),
        (cfg, isa.encode(Op.MATMUL, os=1, nx=1, ny=1, pop_prev=True), None, "never drains"),
    ]  # fmt: skip
    for config, word, cause, match in cases:
        with pytest.raises(ProgramError, match=match) as info:
            execute(config, [load, *bias, word], bytes(256))
        assert info.value.index == 5 and info.value.cause == cause
    mixed = [load, *bias, isa.encode(Op.MATMUL, os=1, nx=1, ny=1, pop_prev=True),
             isa.encode(Op.MATMUL, nx=1, ny=1)]  # fmt: skip
    with pytest.raises(ProgramError, match="has not drained"):
        execute(cfg, mixed, bytes(256))


def test_os_interpreter_by_hand():
    """Two os blocks accumulate; the drain writes bias + C for the nx*ny pixels only."""
    cfg = CONFIGS["tiny"]
    rng = np.random.default_rng(9)
    a = rng.integers(-128, 128, (8, 4), dtype=np.int8)  # spad rows 0..7: pixels x channels
    w = rng.integers(-128, 128, (8, 4), dtype=np.int8)  # spad rows 8..15: two weight tiles
    image = bytearray(256)
    image[0:32], image[32:64] = a.tobytes(), w.tobytes()
    prog = [
        isa.encode(Op.LOAD, dram_addr=0, spad_addr=0, rows=16, len=4, stride=4, push_next=True),
        *[isa.encode(Op.CFG_BIAS, col=c, bias=c - 2) for c in range(4)],
        isa.encode(Op.MATMUL, os=1, a_addr=0, a_stride_x=2, a_stride_y=1, w_addr=8, nx=3, ny=1,
                   acc_addr=0, pop_prev=True),
        isa.encode(Op.MATMUL, os=1, drain=1, a_addr=1, a_stride_x=2, a_stride_y=1, w_addr=12,
                   nx=3, ny=1, acc_addr=1),
    ]  # fmt: skip
    mach = _Machine(cfg, _decode(prog), bytes(image), strict=True)
    for i in range(len(prog)):
        mach.step(0 if i == 0 else 1, i)
    x = a.astype(np.int64)
    want = x[[0, 2, 4]] @ w[:4].astype(np.int64) + x[[1, 3, 5]] @ w[4:].astype(np.int64)
    assert np.array_equal(mach.acc[1:4], want + np.arange(4) - 2)


def test_k_groups_with_segments():
    # Two convolutions in one program (lower_segments), each split in K groups, bit for bit.
    cfg = CONFIGS["tiny"]
    conv = Conv2D("seg", h=5, w=6, cin=19, cout=6, k=3, pad=1)
    plan = TilePlan(2, 3, resident_weights=False, k_groups=3)
    tensors = [random_layer_data(conv, np.random.default_rng(s)) for s in (1, 2)]
    blobs, segs, cursor = [], [], 0

    def place(data: bytes) -> int:
        nonlocal cursor
        addr = cursor
        blobs.append((addr, data))
        cursor = -(-(cursor + len(data)) // ALIGN) * ALIGN
        return addr

    outs = []
    for t in tensors:
        x = place(np.asarray(t["input"], np.int8).tobytes())
        w = place(weight_image(cfg, conv, t["weights"]).tobytes())
        o = place(bytes(int(np.prod(conv.output_shape))))
        outs.append(o)
        bias = tuple(int(v) for v in np.asarray(t["bias"]).reshape(-1))
        segs.append(Segment(x, conv.cin, w, o, conv.cout, bias, t["requant"]))
    program = lower_segments(cfg, conv, plan, segs)
    image = bytearray(cursor)
    for addr, data in blobs:
        image[addr : addr + len(data)] = data
    result = execute(cfg, program, image)
    assert all(v == 0 for v in result.tokens_left.values())
    for o, t in zip(outs, tensors, strict=True):
        want = layer_golden(conv, t)
        got = np.frombuffer(bytes(result.dram[o : o + want.nbytes]), np.int8).reshape(want.shape)
        assert np.array_equal(got, want)


# ---------------------------------------------------------------- grouped convolutions
@pytest.mark.parametrize(
    ("config", "spec", "pack", "segments", "cin", "cout"),
    [
        ("default", "conv:h=8,w=8,cin=128,cout=128,k=3,p=1,g=32", 4, 8, 16, 16),  # ResNeXt st. 1
        ("default", "conv:h=8,w=8,cin=256,cout=256,k=3,p=1,g=32", 2, 16, 16, 16),  # stage 2
        ("default", "conv:h=8,w=8,cin=1024,cout=1024,k=3,p=1,g=32", 1, 32, 32, 32),  # stage 4
        ("default", "conv:h=8,w=8,cin=32,cout=96,k=1,g=16", 2, 8, 4, 12),  # columns cap it
        ("tiny", "conv:h=6,w=7,cin=6,cout=9,k=3,p=1,g=3", 1, 3, 2, 3),  # 2 groups overflow
        ("tiny", "conv:h=6,w=7,cin=6,cout=9,k=3,p=1", 1, 1, 6, 9),
        ("tiny", "gemm:m=5,k=7,n=3", 1, 1, 7, 3),
        ("tiny", "dw:h=6,w=6,c=5,k=3", 1, 5, 1, 1),
    ],
)
def test_array_form_packs_groups_side_by_side(config, spec, pack, segments, cin, cout):
    form = array_form(parse_layer_spec(spec), CONFIGS[config])
    assert (form.pack, form.segments, form.conv.cin, form.conv.cout) == (pack, segments, cin, cout)
    assert form.conv.groups == 1
    assert (form.in_step, form.out_step) == ((1, 1) if spec.startswith("dw") else (cin, cout))


def test_segment_weights_are_block_diagonal():
    layer = parse_layer_spec("conv:h=4,w=4,cin=8,cout=8,k=3,g=4")
    form = array_form(layer, CONFIGS["tiny"])  # 4x4 array: 2 groups of 2 -> 2 per segment
    assert (form.pack, form.segments) == (2, 2)
    w = np.random.default_rng(0).integers(-128, 128, size=layer.weight_shape, dtype=np.int8)
    segs = segment_weights(layer, form, w)
    assert [s.shape for s in segs] == [(3, 3, 4, 4)] * 2
    for i, s in enumerate(segs):
        for j in range(2):
            g = 2 * i + j
            np.testing.assert_array_equal(s[:, :, 2 * j : 2 * j + 2, 2 * j : 2 * j + 2],
                                          w[:, :, :, 2 * g : 2 * g + 2])  # fmt: skip
        # nothing couples two groups
        assert not s[:, :, :2, 2:].any() and not s[:, :, 2:, :2].any()
