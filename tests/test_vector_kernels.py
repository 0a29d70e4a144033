"""Vector-unit layers: golden models vs naive loops, lowering on the interpreter, errors, model."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import vector as vec
from kernels.conv import check_tensors, layer_golden, random_layer_data
from kernels.gemm import wrap_signed
from kernels.interp import DeadlockError, HazardError, ProgramError, execute
from kernels.layers import (
    Add,
    Conv2D,
    DepthwiseConv2D,
    Pool2D,
    global_avg_pool,
    parse_layer_spec,
)
from kernels.lower import TilePlan
from kernels.lower_vector import (
    VectorGeometry,
    VectorPlan,
    default_vector_plan,
    lower_layer,
    lower_vector,
)
from kernels.requant import RequantParams, requantize
from mapping import cost
from mapping.cost import vector_command_cycles, vector_layer_cycles
from rtl import isa
from rtl.config import load_config
from rtl.isa import Cause, Op
from rtl.vector import VectorTiming

CONFIGS = {name: load_config(name) for name in ("tiny", "default", "wide", "large")}
FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")


# ---------------------------------------------------------------- naive references
def wrap32(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def naive_window(x, kh, kw, stride, pad, per_tap, start):
    """Direct loops over outputs, channels and in-image taps: acc = per_tap(acc, x, ky, kx, c)."""
    n, h, w, c = x.shape
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = np.zeros((n, oh, ow, c), dtype=object)
    for b, oy, ox, ch in np.ndindex(n, oh, ow, c):
        acc = start(ch)
        for ky in range(kh):
            for kx in range(kw):
                y, xx = oy * stride + ky - pad, ox * stride + kx - pad
                if 0 <= y < h and 0 <= xx < w:
                    acc = per_tap(acc, int(x[b, y, xx, ch]), ky, kx, ch)
        out[b, oy, ox, ch] = acc
    return out


def random_image(rng, n, h, w, c):
    return rng.integers(-128, 128, size=(n, h, w, c), dtype=np.int8)


SHAPES = [  # (n, h, w, c, k, stride, pad)
    (1, 7, 7, 3, 3, 2, 1),
    (1, 7, 7, 1, 5, 2, 2),
    (2, 5, 6, 7, 1, 1, 0),
    (1, 9, 4, 5, 5, 1, 4),
    (1, 6, 9, 2, 3, 3, 0),
    (1, 1, 1, 4, 1, 1, 0),
    (1, 3, 8, 17, 4, 2, 3),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_depthwise_golden_matches_loops(shape):
    n, h, w, c, k, s, p = shape
    rng = np.random.default_rng(sum(shape))
    x, wt = random_image(rng, n, h, w, c), rng.integers(-128, 128, (k, k, c), dtype=np.int8)
    bias = rng.integers(-(2**31), 2**31, c, dtype=np.int64)  # wraps in some lanes
    want = naive_window(x, k, k, s, p, lambda a, v, ky, kx, ch: a + v * int(wt[ky, kx, ch]),
                        lambda ch: int(bias[ch]))  # fmt: skip
    got = vec.depthwise_acc(x, wt, bias, s, p)
    assert got.tolist() == np.vectorize(wrap32)(want).tolist()
    params = RequantParams.from_scale([0.01] * c, zero_point=3)
    assert np.array_equal(vec.depthwise_conv2d(x, wt, bias, params, s, p), requantize(got, params))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_pool_goldens_match_loops(shape):
    n, h, w, c, k, s, p = shape
    kw = max(1, k - 1) if p < k - 1 else k  # a non-square window where the padding allows
    rng = np.random.default_rng(sum(shape) + 1)
    x = random_image(rng, n, h, w, c)
    want = naive_window(x, k, kw, s, p, lambda a, v, *_: max(a, v), lambda ch: -128)
    assert vec.max_pool(x, k, kw, s, p).tolist() == want.tolist()
    bias = rng.integers(-50, 50, c)
    want = naive_window(x, k, kw, s, p, lambda a, v, *_: a + v, lambda ch: int(bias[ch]))
    assert vec.avg_pool_acc(x, bias, k, kw, s, p).tolist() == want.tolist()


def test_add_golden_matches_loops_and_wraps():
    rng = np.random.default_rng(3)
    a, b = random_image(rng, 2, 3, 4, 5), random_image(rng, 2, 3, 4, 5)
    za, zb = rng.integers(-128, 128, 5), -7
    ma, mb = rng.integers(-(2**15), 2**15, 5), 2**15 - 1
    bias = np.array([2**31 - 1, -(2**31), 0, 5, -5])  # the first two wrap
    got = vec.add_acc(a, b, za, zb, ma, mb, bias)
    for idx in np.ndindex(a.shape):
        ch = idx[-1]
        v = int(bias[ch]) + (int(a[idx]) - int(za[ch])) * int(ma[ch]) + (int(b[idx]) + 7) * mb
        assert got[idx] == wrap32(v)


def test_add_quant_params_track_the_real_sum():
    q = vec.add_quant_params(0.02, 0.05, 0.1, za=3, zb=-4, zero_point=5)
    assert (q["ma"], q["mb"]) == (round(0.4 * 2**14), 2**14)
    rng = np.random.default_rng(0)
    a, b = random_image(rng, 1, 4, 4, 8), random_image(rng, 1, 4, 4, 8)
    y = vec.add(a, b, q["za"], q["zb"], q["ma"], q["mb"], q["bias"], q["requant"])
    real = (0.02 * (a.astype(float) - 3) + 0.05 * (b.astype(float) + 4)) / 0.1 + 5
    assert np.abs(y - np.clip(np.round(real), -128, 127)).max() <= 1
    with pytest.raises(ValueError, match="differ by more than"):
        vec.add_quant_params(1.0, 1e-6, 1.0)
    with pytest.raises(ValueError, match="out_scale must be a positive"):
        vec.add_quant_params(1.0, 1.0, 0.0)


def test_avg_pool_requant_averages():
    x = np.full((1, 4, 4, 2), 100, dtype=np.int8)
    y = vec.avg_pool(x, [0, 0], vec.avg_pool_requant(2, 2), 2, 2, 2)
    assert (y == 100).all()
    x[0, 0, 0, 0] = 1  # (1 + 300) / 4 = 75.25
    assert vec.avg_pool(x, [0, 0], vec.avg_pool_requant(2, 2), 2, 2, 2)[0, 0, 0, 0] == 75


def test_maxpool_identity_requant_is_exact():
    acc = np.arange(-128, 128).reshape(-1, 1)
    assert np.array_equal(requantize(acc, vec.MAXPOOL_REQUANT), acc)


@pytest.mark.parametrize(
    "spec", ["dw:h=9,w=7,c=5,k=3,s=2,p=1", "dw:h=12,w=12,c=40,k=5,p=2", "add:h=6,w=5,c=20",
             "add:h=4,w=4,c=30", "avgpool:h=8,w=8,c=16,k=3,p=1", "gap:h=7,w=7,c=64"],
)  # fmt: skip
def test_random_data_spreads_outputs(spec):
    layer = parse_layer_spec(spec)
    y = layer_golden(layer, random_layer_data(layer, np.random.default_rng(0))).astype(int)
    assert y.std() > 4 and np.mean(np.abs(y) == 127) < 0.25 and np.mean(y == -128) < 0.25


# ---------------------------------------------------------------- layers and specs
def test_parse_vector_specs():
    assert parse_layer_spec("dw:h=7,w=7,c=3,k=5,s=2,p=2,b=1,name=d1") == DepthwiseConv2D(
        "d1", 7, 7, 3, 5, stride=2, pad=2
    )
    assert parse_layer_spec("add:c=4,h=2,w=3,n=2,act=relu") == Add("add", 2, 3, 4, 2, "relu")
    mp = parse_layer_spec("maxpool:h=8,w=9,c=3,k=3,kw=2,s=2,p=1")
    assert mp == Pool2D("maxpool", 8, 9, 3, 3, stride=2, pad=1, kind="max", kw=2)
    assert (mp.kh, mp.kw, mp.out_h, mp.out_w) == (3, 2, 4, 5)
    assert parse_layer_spec("avgpool:h=4,w=4,c=3,k=2,s=2").kind == "avg"
    gap = parse_layer_spec("gap:h=7,w=5,c=9,n=2")
    assert gap == global_avg_pool("gap", 7, 5, 9, batch=2)
    assert (gap.kh, gap.kw, gap.out_h, gap.out_w, gap.kind) == (7, 5, 1, 1, "avg")
    assert parse_layer_spec("conv:h=5,w=5,cin=1,cout=1,k=1") == Conv2D("conv", 5, 5, 1, 1, 1)


@pytest.mark.parametrize(
    ("spec", "match"),
    [("dw:h=7,w=7,c=3,k=3,s=4", "stride must be in 1..3, not 4"),
     ("dw:h=7,w=7,c=3,k=9,p=8", "pad must be in 0..7, not 8"),
     ("dw:h=7,w=7,c=3,k=1,p=1", "pad=1 must be below the kernel size 1x1"),
     ("dw:h=3,w=7,c=3,k=7,p=1", "kernel 7 is larger than the padded input h=3"),
     ("dw:h=7,w=7,c=0,k=3", "c must be >= 1"),
     ("dw:h=7,w=7,c=3,k=3,n=1,b=2", "n and b set the same field"),
     ("add:h=2,w=2,c=2,k=3", "unknown key"),
     ("maxpool:h=4,w=4,c=2,k=2,act=relu", "unknown key"),
     ("gap:h=4,w=4", "missing key"),
     ("pool:h=4,w=4,c=2,k=2", "unknown layer kind 'pool'")],
)  # fmt: skip
def test_bad_vector_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_layer_spec(spec)


def test_layer_sizes_and_validation():
    dw = DepthwiseConv2D("d", h=7, w=8, c=3, k=3, stride=2, pad=1, batch=2)
    assert (dw.out_h, dw.out_w, dw.macs) == (4, 4, 2 * 4 * 4 * 3 * 9)
    assert (dw.input_bytes, dw.weight_bytes, dw.output_bytes) == (2 * 56 * 3, 27, 2 * 16 * 3)
    add = Add("a", h=3, w=4, c=5)
    assert (add.macs, add.input_bytes, add.output_bytes) == (120, 120, 60)
    pool = Pool2D("p", h=8, w=8, c=2, k=2, stride=2)
    assert (pool.kw, pool.out_h, pool.macs) == (2, 4, 4 * 4 * 2 * 4)
    with pytest.raises(ValueError, match="kind must be one of 'max', 'avg'"):
        Pool2D("p", h=8, w=8, c=2, k=2, kind="min")
    with pytest.raises(TypeError, match="layer 'p': kw must be an integer"):
        Pool2D("p", h=8, w=8, c=2, k=2, kw=2.0)
    with pytest.raises(ValueError, match="act must be one of"):
        Add("a", 1, 1, 1, act="gelu")


def test_tensor_checks_name_layer_and_key():
    layer = Add("res", h=2, w=2, c=3)
    t = random_layer_data(layer, np.random.default_rng(0))
    checked = check_tensors(layer, {**t, "za": 5})
    assert checked["za"].tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match="layer 'res': tensors lack 'mb'"):
        check_tensors(layer, {k: v for k, v in t.items() if k != "mb"})
    with pytest.raises(ValueError, match=r"layer 'res': ma holds values outside -32768..32767"):
        check_tensors(layer, {**t, "ma": 40000})
    with pytest.raises(ValueError, match=r"layer 'res': zb must hold one value or one per"):
        check_tensors(layer, {**t, "zb": [1, 2]})
    with pytest.raises(ValueError, match=r"layer 'res': b has shape \(1, 2, 3, 3\)"):
        check_tensors(layer, {**t, "b": np.zeros((1, 2, 3, 3), np.int8)})
    dw = DepthwiseConv2D("d", h=4, w=4, c=3, k=3, act="relu")
    t = random_layer_data(dw, np.random.default_rng(0))
    with pytest.raises(ValueError, match="layer 'd' has act='relu' but its requant"):
        check_tensors(dw, {**t, "requant": RequantParams.from_scale(0.1)})
    mp = Pool2D("m", h=4, w=4, c=3, k=2)
    assert set(random_layer_data(mp, np.random.default_rng(0))) == {"input"}


# ---------------------------------------------------------------- lowering on the interpreter
def token_balance(program):
    bal = dict.fromkeys(("l2v", "v2l", "v2s", "s2v"), 0)
    for c in map(isa.decode, program):
        if c.op == Op.LOAD:
            assert c.vec
            bal["l2v"] += c.push_next
            bal["v2l"] -= c.pop_next
        elif c.op in (Op.DWCONV, Op.EWISE):
            bal["l2v"] -= c.pop_prev
            bal["s2v"] -= c.pop_next
            bal["v2l"] += c.push_prev
            bal["v2s"] += c.push_next
        elif c.op == Op.STORE:
            assert c.vec
            bal["v2s"] -= c.pop_prev
            bal["s2v"] += c.push_prev
    return bal


def footprint(config, program):
    """Highest scratchpad row (+1) the program's commands touch."""
    timing = VectorTiming(config)
    top = 0
    for c in map(isa.decode, program):
        if c.op in (Op.LOAD, Op.STORE):
            top = max(top, c.spad_addr + c.rows)
        elif c.op in (Op.DWCONV, Op.EWISE):
            mode = c.fields.get("mode", 0)
            tiles = 2 if c.op == Op.EWISE and mode == isa.EwiseMode.ADD else 1
            top = max(
                top,
                c.param_addr + timing.param_rows(c.op, mode, c.kh, c.kw),
                c.in_addr + tiles * c.in_h * c.in_w,
                c.out_addr + c.out_h * c.out_w,
            )
    return top  # fmt: skip


def check_lowering(config, layer, plan=None, seed=0):
    tensors = random_layer_data(layer, np.random.default_rng(seed))
    low = lower_vector(config, layer, tensors, plan)
    want = layer_golden(layer, tensors)
    image = bytearray(low.image)  # the output starts as the complement of the answer
    out = low.output
    image[out.addr : out.addr + out.nbytes] = (~want).astype(np.int8).tobytes()
    result = execute(config, low.program, image)
    got = out.read(result.dram)
    if not np.array_equal(got, want):
        bad = np.argwhere(got != want)
        pytest.fail(f"{len(bad)} outputs differ, first at {bad[0].tolist()}: plan {low.plan}")
    assert not any(result.tokens_left.values()), result.tokens_left
    assert not any(token_balance(low.program).values())
    assert footprint(config, low.program) <= low.plan.footprint(config, layer) <= config.spad_rows
    before, after = np.frombuffer(low.image, np.uint8), np.frombuffer(result.dram, np.uint8)
    mask = np.ones(len(before), bool)
    mask[out.addr : out.addr + out.nbytes] = False
    assert np.array_equal(before[mask], after[mask])
    assert isa.decode(low.program[-1]).op == Op.FENCE
    return low


CASES = [
    ("tiny", "dw:h=7,w=7,c=3,k=5,s=2,p=2", None),
    ("tiny", "dw:h=7,w=7,c=1,k=3,s=2,p=1", VectorPlan(2, 3)),
    ("tiny", "dw:h=9,w=8,c=9,k=3,s=1,p=1,act=relu6", VectorPlan(1, 8, double_buffer=False)),
    ("tiny", "dw:h=6,w=5,c=5,k=1,s=3,n=2", VectorPlan(1, 1)),
    ("tiny", "dw:h=5,w=9,c=6,k=4,s=2,p=3", VectorPlan(3, 2)),
    ("tiny", "add:h=5,w=6,c=7,n=2,act=relu", VectorPlan(2, 4)),
    ("tiny", "maxpool:h=9,w=9,c=5,k=3,s=2,p=1", None),
    ("tiny", "avgpool:h=8,w=7,c=6,k=2,kw=3,s=2,p=1", VectorPlan(2, 2, double_buffer=False)),
    ("tiny", "gap:h=7,w=5,c=9,n=2", None),
    ("default", "dw:h=14,w=14,c=40,k=3,s=1,p=1,act=relu6", None),
    ("default", "dw:h=14,w=14,c=40,k=5,s=2,p=2", VectorPlan(3, 5)),
    ("default", "add:h=7,w=7,c=33", None),
    ("default", "gap:h=7,w=7,c=20", None),
    ("wide", "dw:h=11,w=10,c=17,k=3,s=2,p=1,n=2", VectorPlan(2, 3)),
    ("wide", "maxpool:h=10,w=10,c=9,k=2,s=2", None),
    ("large", "dw:h=9,w=9,c=70,k=7,s=1,p=3,act=relu", None),
    ("large", "avgpool:h=9,w=9,c=33,k=3,s=3", VectorPlan(2, 1)),
]


@pytest.mark.parametrize(("config", "spec", "plan"), CASES, ids=[f"{c}-{s}" for c, s, _ in CASES])
def test_lowered_vector_program_matches_golden(config, spec, plan):
    check_lowering(CONFIGS[config], parse_layer_spec(spec), plan, seed=len(spec))


def random_vector_layer(rng, config, name):
    kind = str(rng.choice(["dw", "dw", "add", "max", "avg", "gap"]))
    h, w = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    c, batch = int(rng.integers(1, 40)), int(rng.integers(1, 3))
    act = str(rng.choice(["none", "relu", "relu6"]))
    if kind == "add":
        return Add(name, h, w, c, batch, act)
    if kind == "gap":
        return global_avg_pool(name, h, w, c, batch)
    kmax = config.vector_max_kernel if kind == "dw" else 4
    kh = int(rng.integers(1, kmax + 1))
    kw = kh if kind == "dw" else int(rng.integers(1, kmax + 1))
    pad = int(rng.integers(0, min(kh, kw)))
    h, w = max(h, kh - 2 * pad), max(w, kw - 2 * pad)
    stride = int(rng.integers(1, 4))
    if kind == "dw":
        return DepthwiseConv2D(name, h, w, c, kh, stride, pad, batch, act)
    return Pool2D(name, h, w, c, kh, stride, pad, kind, batch, kw)


@pytest.mark.parametrize("seed", range(40))
def test_random_vector_layers_and_plans(seed):
    """Random kinds, shapes, kernels, strides, paddings, batches and plans on four presets."""
    rng = np.random.default_rng(7000 + seed)
    config = list(CONFIGS.values())[seed % 4]
    layer = random_vector_layer(rng, config, f"v{seed}")
    plan = None
    if seed % 3:
        oh_t, ow_t = (int(rng.integers(1, n + 1)) for n in (layer.out_h, layer.out_w))
        plan = VectorPlan(oh_t, ow_t, double_buffer=bool(rng.integers(0, 4)))
    check_lowering(config, layer, plan, seed=seed)


def test_one_deep_queues_do_not_deadlock():
    cfg = CONFIGS["tiny"].replace(load_queue_depth=1, store_queue_depth=1, vector_queue_depth=1)
    check_lowering(cfg, parse_layer_spec("dw:h=6,w=7,c=9,k=3,p=1"), VectorPlan(2, 3))
    check_lowering(cfg, parse_layer_spec("add:h=6,w=7,c=9"), VectorPlan(2, 7))


def test_wide_images_are_cut_into_columns():
    """A row wider than the 10-bit in_w field is tiled along x too."""
    cfg = CONFIGS["tiny"]
    layer = DepthwiseConv2D("wide", h=3, w=1500, c=1, k=3, pad=1)
    plan = default_vector_plan(cfg, layer)
    geo = VectorGeometry(cfg, layer, plan)
    assert plan.ow_t < layer.out_w and geo.in_w <= 1023
    check_lowering(cfg, layer)
    with pytest.raises(ValueError, match=r"needs in_w=1024, beyond the 1023 .* smaller ow_t"):
        VectorPlan(1, 1023).validate(cfg, layer)


def test_lowered_structure_and_regions():
    cfg = CONFIGS["tiny"]  # 4 lanes: 9 channels are groups of 4, 4 and 1
    layer = DepthwiseConv2D("d", h=6, w=6, c=9, k=3, pad=1, batch=2)
    t = random_layer_data(layer, np.random.default_rng(0))
    low = lower_vector(cfg, layer, t, VectorPlan(3, 6))
    assert set(low.regions) == {"input", "params", "output", "program"}
    assert low.regions["params"].shape == (3, 12 + 9, cfg.rows)
    assert low.counts["DWCONV"] == 3 * 2 * 2  # groups x images x tiles
    assert low.macs == layer.macs
    params = low.regions["params"].read(low.image)
    bias = t["bias"].astype(np.int64)
    planes = sum(params[:, i, :].astype(np.int64).reshape(-1)[:9] << (8 * i) for i in range(4))
    assert (((planes + 2**31) % 2**32) - 2**31).tolist() == bias.tolist()
    assert params[2, 12:, 1:].max() == 0  # lanes past c are 0
    assert params[:, 12:, :].view(np.int8).reshape(3, 9, 4).transpose(1, 0, 2).reshape(
        9, 12)[:, :9].tolist() == t["weights"].reshape(9, 9).tolist()  # fmt: skip
    cmds = [isa.decode(w) for w in low.program]
    loads = [c for c in cmds if c.op == Op.LOAD]
    assert {c.len for c in loads if c.rows != 21} == {4, 1}  # the last group loads 1 channel
    add = lower_vector(cfg, Add("r", 2, 2, 2), random_layer_data(Add("r", 2, 2, 2),
                       np.random.default_rng(0)))  # fmt: skip
    assert set(add.regions) == {"a", "b", "params", "output", "program"}


def test_token_scheme_overlaps_loads_and_stores():
    cfg = CONFIGS["tiny"]
    layer = DepthwiseConv2D("d", h=8, w=8, c=4, k=3, pad=1)
    low = lower_vector(cfg, layer, random_layer_data(layer, np.random.default_rng(0)),
                       VectorPlan(2, 8))  # fmt: skip
    cmds = [isa.decode(w) for w in low.program]
    vecs = [i for i, c in enumerate(cmds) if c.op == Op.DWCONV]
    pushes = [i for i, c in enumerate(cmds) if c.op == Op.LOAD and c.push_next]
    assert pushes[1] < vecs[0]  # tile 1 is prefetched before tile 0 runs
    stores = [i for i, c in enumerate(cmds) if c.op == Op.STORE]
    assert stores[0] < vecs[1]  # tile 0 is stored while tile 1 runs
    assert sum(cmds[i].pop_next for i in vecs) == len(vecs) - 2


@pytest.mark.parametrize(
    ("op", "flag"),
    [(Op.LOAD, "pop_next"), (Op.LOAD, "push_next"), (Op.DWCONV, "pop_prev"),
     (Op.DWCONV, "pop_next"), (Op.DWCONV, "push_prev"), (Op.DWCONV, "push_next"),
     (Op.STORE, "pop_prev"), (Op.STORE, "push_prev")],
)  # fmt: skip
def test_every_vector_token_is_needed(op, flag):
    """Dropping any one token flag from a lowered program is a race or a deadlock.

    (Not strict: a STORE that runs before its vector command would first be an uninitialized
    read; without that check the race itself is reported.)"""
    cfg = CONFIGS["tiny"]
    layer = DepthwiseConv2D("d", h=6, w=6, c=6, k=3, pad=1)
    low = lower_vector(cfg, layer, random_layer_data(layer, np.random.default_rng(0)),
                       VectorPlan(2, 6))  # fmt: skip
    bit = 4 + FLAGS.index(flag)
    marked = [i for i, w in enumerate(low.program) if w & 0xF == op and (w >> bit) & 1]
    assert marked, f"{op.name} never carries +{flag}"
    for i in (marked[0], marked[len(marked) // 2], marked[-1]):
        prog = list(low.program)
        prog[i] &= ~(1 << bit)
        with pytest.raises((HazardError, DeadlockError)):
            execute(cfg, prog, low.image, strict=False)


def test_removed_pop_is_reported_as_a_race():
    cfg = CONFIGS["tiny"]
    layer = Add("r", h=4, w=4, c=4)
    low = lower_vector(cfg, layer, random_layer_data(layer, np.random.default_rng(1)),
                       VectorPlan(1, 4))  # fmt: skip
    prog = list(low.program)
    i = next(i for i, w in enumerate(prog) if w & 0xF == Op.EWISE and (w >> 4) & 1)
    prog[i] &= ~(1 << 4)  # the first EWISE no longer waits for its loads
    with pytest.raises(HazardError, match=r"command \d+ \(EWISE .*race: reads"):
        execute(cfg, prog, low.image)


# ---------------------------------------------------------------- plans
def test_default_plan_uses_big_tiles():
    cfg = CONFIGS["default"]
    layer = DepthwiseConv2D("dw", h=112, w=112, c=32, k=3, pad=1)
    plan = default_vector_plan(cfg, layer)
    assert plan.ow_t == 112 and plan.double_buffer
    assert VectorPlan(plan.oh_t, 112).footprint(cfg, layer) <= cfg.spad_rows
    with pytest.raises(ValueError, match="scratchpad rows"):
        VectorPlan(plan.oh_t + 1, 112).validate(cfg, layer)


@pytest.mark.parametrize(
    ("config", "layer", "plan", "match"),
    [("default", DepthwiseConv2D("d", 9, 9, 4, 7, pad=3), VectorPlan(1, 1),
      "layer 'd': the 7x7 depthwise kernel exceeds vector_max_kernel=5 of config 'default'"),
     ("default", Pool2D("p", 20, 20, 4, 16), VectorPlan(1, 1), "exceeds the EWISE kh/kw fields"),
     ("tiny", DepthwiseConv2D("d", 9, 9, 4, 3), VectorPlan(8, 7), "larger than the 7x7 output"),
     ("tiny", DepthwiseConv2D("d", 200, 200, 4, 3, pad=1), VectorPlan(20, 200),
      r"layer 'd': tile 20x200 needs \d+ scratchpad rows \(2 x 4400 input \+ 2 x 4000 output "
      r"\+ 2 x 21 parameter rows\), config 'tiny' has 4096; use a smaller tile or double_buffer"),
     ],
)  # fmt: skip
def test_plan_errors(config, layer, plan, match):
    with pytest.raises(ValueError, match=match):
        plan.validate(CONFIGS[config], layer)
    with pytest.raises(ValueError, match=match):
        lower_vector(CONFIGS[config], layer, random_layer_data(layer, np.random.default_rng(0)),
                     plan)  # fmt: skip


def test_bad_plans_and_dispatch():
    with pytest.raises(ValueError, match=r"VectorPlan\.oh_t must be a positive integer"):
        VectorPlan(0, 1)
    with pytest.raises(TypeError, match="double_buffer must be a bool"):
        VectorPlan(1, 1, double_buffer=1)
    with pytest.raises(ValueError, match="no tile fits: layer 'd': the 7x7 depthwise kernel"):
        default_vector_plan(CONFIGS["default"], DepthwiseConv2D("d", 9, 9, 4, 7))
    cfg = CONFIGS["tiny"]
    conv = Conv2D("c", h=5, w=5, cin=3, cout=4, k=3, pad=1)
    dw = DepthwiseConv2D("d", h=5, w=5, c=3, k=3, pad=1)
    for layer in (conv, dw):
        t = random_layer_data(layer, np.random.default_rng(0))
        low = lower_layer(cfg, layer, t)
        got = low.output.read(execute(cfg, low.program, low.image).dram)
        assert np.array_equal(got, layer_golden(layer, t))
    with pytest.raises(TypeError, match="runs on the vector unit: give a VectorPlan"):
        lower_layer(cfg, dw, random_layer_data(dw, np.random.default_rng(0)), TilePlan(1, 1))
    with pytest.raises(TypeError, match="runs on the array: give a TilePlan"):
        lower_layer(cfg, conv, random_layer_data(conv, np.random.default_rng(0)), VectorPlan(1, 1))


# ---------------------------------------------------------------- interpreter: vector commands
def param_block(lanes, rows, bias, m, s, zp, lo, hi, extra=()):
    """A parameter block as scratchpad rows (lane l in byte l; values as byte planes)."""

    def planes(values, n):
        u = np.asarray(values, dtype=np.int64) & ((1 << (8 * n)) - 1)
        return [(u >> (8 * i)) & 0xFF for i in range(n)]

    out = [*planes(bias, 4), *planes(m, 4), *planes(s, 1), *planes(zp, 1), *planes(lo, 1),
           *planes(hi, 1)]  # fmt: skip
    for values, n in extra:
        out += planes(values, n)
    block = np.zeros((len(out), rows), dtype=np.uint8)
    block[:, :lanes] = np.stack(out)
    return block


def run_by_hand(cfg, spad_rows_bytes, cmd, out_rows):
    """LOAD vec rows to spad 0.., run one vector command, STORE vec its output; return it."""
    n, r = spad_rows_bytes.shape
    image = bytearray(spad_rows_bytes.tobytes() + bytes(out_rows * r + 64))
    prog = [
        isa.encode(Op.LOAD, vec=1, dram_addr=0, spad_addr=0, rows=n, len=r, stride=r,
                   push_next=True),
        cmd,
        isa.encode(Op.STORE, vec=1, spad_addr=cmd >> 66 & 0xFFFFF, dram_addr=n * r,
                   rows=out_rows, len=r, stride=r, pop_prev=True),
    ]  # fmt: skip
    dram = execute(cfg, prog, image).dram
    return np.frombuffer(dram, np.int8)[n * r : n * r + out_rows * r].reshape(out_rows, r)


def test_dwconv_by_hand_per_lane_parameters():
    cfg = CONFIGS["wide"]  # 8 lanes, 8-byte rows
    lanes, r = 8, 8
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (3, 4, lanes), dtype=np.int8)  # 3x4 tile
    w = rng.integers(-128, 128, (2, 3, lanes), dtype=np.int8)  # kh=2, kw=3
    bias = rng.integers(-1000, 1000, lanes)
    m, s = rng.integers(1 << 20, 1 << 30, lanes), rng.integers(20, 40, lanes)
    zp, lo, hi = np.arange(lanes) - 4, np.full(lanes, -100), np.arange(lanes) * 10 + 20
    block = param_block(lanes, r, bias, m, s, zp, lo, hi, [(w.reshape(6, lanes)[t], 1)
                                                            for t in range(6)])  # fmt: skip
    tile = np.zeros((12, r), np.uint8)
    tile[:, :lanes] = x.reshape(12, lanes).view(np.uint8)
    rows = np.concatenate([block, tile])
    cmd = isa.encode(Op.DWCONV, stride=2, pad_t=1, pad_l=2, kh=2, kw=3, param_addr=0,
                     in_addr=18, out_addr=40, in_w=4, in_h=3, out_w=3, out_h=2,
                     pop_prev=True, push_next=True)  # fmt: skip
    got = run_by_hand(cfg, rows, cmd, 6)
    for oy, ox, lane in np.ndindex(2, 3, lanes):
        acc = int(bias[lane])
        for ky, kx in np.ndindex(2, 3):
            iy, ix = oy * 2 + ky - 1, ox * 2 + kx - 2
            if 0 <= iy < 3 and 0 <= ix < 4:
                acc += int(x[iy, ix, lane]) * int(w[ky, kx, lane])
        v = ((acc * int(m[lane]) + (1 << int(s[lane] - 1))) >> int(s[lane])) + int(zp[lane])
        assert got[oy * 3 + ox, lane] == min(max(v, -100), int(hi[lane])), (oy, ox, lane)


def test_ewise_add_and_pools_by_hand():
    cfg = CONFIGS["tiny"]  # 4 lanes, 4-byte rows
    rng = np.random.default_rng(6)
    a, b = (rng.integers(-128, 128, (6, 4), dtype=np.int8) for _ in range(2))
    za, zb, ma, mb = [3, -3, 0, 127], [-128, 5, 1, 0], [1, -2, 300, -32768], [2, 7, -1, 32767]
    block = param_block(4, 4, [10, 0, -5, 1 << 30], [1 << 30] * 4, [30] * 4, [0] * 4, [-128] * 4,
                        [127] * 4, [(za, 1), (zb, 1), (ma, 2), (mb, 2)])  # fmt: skip
    rows = np.concatenate([block, a.view(np.uint8), b.view(np.uint8)])
    cmd = isa.encode(Op.EWISE, mode=0, stride=1, kh=1, kw=1, in_addr=18, out_addr=40, in_w=3,
                     in_h=2, out_w=3, out_h=2, pop_prev=True, push_next=True)  # fmt: skip
    got = run_by_hand(cfg, rows, cmd, 6)
    bias = np.array([10, 0, -5, 1 << 30])
    acc = bias + (a.astype(np.int64) - za) * ma + (b.astype(np.int64) - zb) * mb
    assert got.tolist() == np.clip(wrap_signed(acc, 32), -128, 127).tolist()
    # max pool over a 2x3 window with padding never winning; avg pool sums (padding 0)
    x = rng.integers(-128, 128, (2, 3, 4), dtype=np.int8)
    for mode, want in ((1, x.max(axis=(0, 1))), (2, x.astype(int).sum(axis=(0, 1)))):
        block = param_block(4, 4, [-128] * 4 if mode == 1 else [0] * 4, [1 << 30] * 4, [30] * 4,
                            [0] * 4, [-128] * 4, [127] * 4)  # fmt: skip
        rows = np.concatenate([block, x.reshape(6, 4).view(np.uint8)])
        cmd = isa.encode(Op.EWISE, mode=mode, stride=1, pad_t=1, pad_l=1, kh=4, kw=5,
                         in_addr=12, out_addr=30, in_w=3, in_h=2, out_w=1, out_h=1,
                         pop_prev=True, push_next=True)  # fmt: skip
        assert got_pool(cfg, rows, cmd) == np.clip(want, -128, 127).tolist()


def got_pool(cfg, rows, cmd):
    return run_by_hand(cfg, rows, cmd, 1)[0].tolist()


VEC = dict(stride=1, kh=1, kw=1, in_w=2, in_h=2, out_w=2, out_h=2)


@pytest.mark.parametrize(
    ("word", "cause", "match"),
    [(isa.encode(Op.EWISE, mode=3, **VEC), Cause.BAD_OPCODE, "mode=3 is reserved"),
     (isa.encode(Op.DWCONV, **{**VEC, "in_w": 0}), Cause.BAD_LENGTH, "in_w = 0"),
     (isa.encode(Op.EWISE, mode=1, **{**VEC, "stride": 0}), Cause.BAD_LENGTH, "stride = 0"),
     (isa.encode(Op.DWCONV, **{**VEC, "kh": 7}), Cause.BAD_LENGTH, "vector_max_kernel=5"),
     (isa.encode(Op.EWISE, mode=0, **{**VEC, "kw": 2}), Cause.BAD_LENGTH, "EWISE ADD needs"),
     (isa.encode(Op.EWISE, mode=0, **{**VEC, "pad_t": 1}), Cause.BAD_LENGTH, "EWISE ADD needs"),
     (isa.encode(Op.EWISE, mode=0, **{**VEC, "out_h": 1}), Cause.BAD_LENGTH, "EWISE ADD needs"),
     (isa.encode(Op.DWCONV, **{**VEC, "param_addr": 4084}), Cause.SPAD_RANGE,
      r"param_addr=4084: the parameter block \(13 rows\) reaches scratchpad row 4096"),
     (isa.encode(Op.EWISE, mode=0, **{**VEC, "in_addr": 4090}), Cause.SPAD_RANGE,
      r"input tiles \(a, b\) \(8 rows\)"),
     (isa.encode(Op.EWISE, mode=2, **{**VEC, "in_addr": 4093}), Cause.SPAD_RANGE,
      r"in_addr=4093: the input tile \(4 rows\)"),
     (isa.encode(Op.DWCONV, **{**VEC, "out_addr": 4095}), Cause.SPAD_RANGE, "output tile"),
     (isa.encode(Op.STORE, vec=1, rows=1, len=5), Cause.BAD_LENGTH, "len=5 must be in 1..4"),
     (isa.encode(Op.STORE, vec=1, rows=0, len=4), Cause.BAD_LENGTH, "rows=0"),
     (isa.encode(Op.STORE, vec=1, spad_addr=4095, rows=2, len=4), Cause.SPAD_RANGE,
      "spad_addr=4095"),
     (isa.encode(Op.LOAD, vec=1, rows=1, len=4, pop_prev=True), Cause.BAD_TOKEN, r"\+pop_prev"),
     (isa.encode(Op.STORE, vec=1, rows=1, len=4, pop_next=True), Cause.BAD_TOKEN, r"\+pop_next"),
     ],
)  # fmt: skip
def test_vector_errors_name_command_and_cause(word, cause, match):
    cfg = CONFIGS["tiny"]  # 4096 scratchpad rows, 4 lanes, vector_max_kernel 5
    prog = [isa.encode(Op.NOP), word, isa.encode(Op.FENCE)]
    with pytest.raises(ProgramError, match=match) as info:
        execute(cfg, prog, bytes(256), strict=False)
    assert info.value.index == 1 and info.value.cause == cause


def test_vector_unit_may_use_all_four_flags_and_rejects_bad_shift():
    cfg = CONFIGS["tiny"]
    block = param_block(4, 4, [0] * 4, [1] * 4, [64, 0, 0, 0], [0] * 4, [-128] * 4, [127] * 4)
    image = block.tobytes() + bytes(64)
    prog = [
        isa.encode(Op.LOAD, vec=1, rows=12, len=4, stride=4),
        isa.encode(Op.LOAD, vec=1, dram_addr=48, spad_addr=12, rows=1, len=4, push_next=True),
        isa.encode(Op.EWISE, mode=1, pop_prev=True, **{**VEC, "in_w": 1, "in_h": 1, "out_w": 1,
                   "out_h": 1, "in_addr": 12, "out_addr": 20}),
    ]  # fmt: skip
    with pytest.raises(ProgramError, match=r"parameter row 8 \(S\) of lane 0 holds 64"):
        execute(cfg, prog, image)
    flags = dict.fromkeys(FLAGS, True)
    word = isa.encode(Op.DWCONV, **VEC, **flags)
    # all four flags decode (no BAD_TOKEN); the command then waits for l2v forever
    with pytest.raises(DeadlockError, match=r"vector unit at command 0 \(DWCONV\) waits for an "
                                            r"l2v/s2v token"):  # fmt: skip
        execute(cfg, [word], bytes(64))


# ---------------------------------------------------------------- the cycle model
@pytest.mark.parametrize(
    ("config", "spec", "plan"),
    [("tiny", "dw:h=9,w=8,c=9,k=3,s=2,p=1", VectorPlan(2, 3)),
     ("default", "dw:h=14,w=14,c=40,k=5,s=1,p=2", None),
     ("default", "add:h=7,w=9,c=33,n=2", VectorPlan(3, 4, double_buffer=False)),
     ("wide", "maxpool:h=10,w=11,c=9,k=3,s=2,p=1", VectorPlan(2, 2)),
     ("large", "gap:h=7,w=7,c=70", None)],
)  # fmt: skip
def test_model_busy_is_the_sum_of_command_cycles(config, spec, plan):
    cfg, layer = CONFIGS[config], parse_layer_spec(spec)
    low = lower_vector(cfg, layer, random_layer_data(layer, np.random.default_rng(0)), plan)
    cmds = [isa.decode(w) for w in low.program]
    model = vector_layer_cycles(cfg, layer, low.plan)
    assert model.busy == sum(
        vector_command_cycles(cfg, c) for c in cmds if c.op in (Op.DWCONV, Op.EWISE)
    )
    moved = sum(c.rows * c.len for c in cmds if c.op in (Op.LOAD, Op.STORE))
    assert model.dma >= moved / cfg.dma_beat_bytes
    assert model.dma <= moved / cfg.dma_beat_bytes + 2
    assert model.macs == layer.macs
    if low.plan.double_buffer:
        assert max(model.busy, model.dma) <= model.total <= model.busy + model.dma
    else:
        assert model.total == model.busy + model.dma
    assert model.utilization == pytest.approx(layer.macs / (model.total * cfg.vector_lanes))


def test_model_follows_the_vector_timing(monkeypatch):
    """If the vector unit gained a pipeline stage the model must change with it."""
    cfg, layer = CONFIGS["default"], DepthwiseConv2D("d", 14, 14, 32, 3, pad=1)
    before = vector_layer_cycles(cfg, layer, VectorPlan(7, 14))
    monkeypatch.setattr(VectorTiming, "latency", VectorTiming.latency + 1)
    after = vector_layer_cycles(cfg, layer, VectorPlan(7, 14))
    assert after.busy == before.busy + 2 * 2  # 2 groups x 2 tiles


MOBILENET_V2_DW = [  # (input size, channels, stride) of the 17 depthwise layers at 224x224
    (112, 32, 1), (112, 96, 2), (56, 144, 1), (56, 144, 2), (28, 192, 1), (28, 192, 1),
    (28, 192, 2), (14, 384, 1), (14, 384, 1), (14, 384, 1), (14, 384, 1), (14, 576, 1),
    (14, 576, 1), (14, 576, 2), (7, 960, 1), (7, 960, 1), (7, 960, 1),
]  # fmt: skip


def test_mobilenet_v2_depthwise_layers_reach_85_percent_of_peak():
    cfg = CONFIGS["default"]
    layers = [DepthwiseConv2D(f"dw{i}", h, h, c, 3, s, 1, act="relu6")
              for i, (h, c, s) in enumerate(MOBILENET_V2_DW)]  # fmt: skip
    results = [vector_layer_cycles(cfg, layer) for layer in layers]
    for layer, r in zip(layers, results, strict=True):
        assert r.utilization >= 0.85, (layer, r)
    total = sum(results[1:], results[0])
    assert total.utilization >= 0.9
    assert total.macs == sum(layer.macs for layer in layers)


def test_model_sum_and_errors():
    cfg = CONFIGS["tiny"]
    a = vector_layer_cycles(cfg, Add("a", 4, 4, 4))
    b = vector_layer_cycles(cfg, Pool2D("p", 4, 4, 4, 2, 2))
    s = a + b
    terms = ("busy", "dma", "prologue", "epilogue", "total", "macs")
    assert all(getattr(s, f) == getattr(a, f) + getattr(b, f) for f in terms)
    assert s.lanes == a.lanes
    with pytest.raises(ValueError, match="not a vector command"):
        vector_command_cycles(cfg, isa.decode(isa.encode(Op.FENCE)))
    with pytest.raises(TypeError, match="DepthwiseConv2D, Add or Pool2D"):
        vector_layer_cycles(cfg, Conv2D("c", 4, 4, 1, 1, 1))
    with pytest.raises(ValueError, match="larger than the 4x4 output"):
        vector_layer_cycles(cfg, Add("a", 4, 4, 4), VectorPlan(5, 1))
    assert cost.VectorLayerCycles(1, 0, 0, 0, 0, 0, 4).utilization == 0.0


def test_zoo_lists_the_17_mobilenet_v2_depthwise_layers():
    from mapping.zoo import mobilenet_v2_depthwise

    layers = mobilenet_v2_depthwise(224)
    assert [(layer.h, layer.c, layer.stride) for layer in layers] == MOBILENET_V2_DW
    assert all(layer.k == 3 and layer.pad == 1 and layer.act == "relu6" for layer in layers)
    assert [layer.h for layer in mobilenet_v2_depthwise(96)][:3] == [48, 48, 24]
