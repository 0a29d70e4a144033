"""Requantization on store: the int32 -> int8 formula the RTL implements bit for bit."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from kernels.gemm import matmul
from kernels.requant import RequantParams, random_requant, requantize

I32_MIN, I32_MAX = -(2**31), 2**31 - 1
ACC_EDGES = [I32_MIN, I32_MIN + 1, -(2**30), -3, -1, 0, 1, 3, 2**30, I32_MAX - 1, I32_MAX]
M_EDGES = [I32_MIN, I32_MIN + 1, -(2**30), -1, 0, 1, 2**30, I32_MAX - 1, I32_MAX]
S_EDGES = [0, 1, 2, 31, 32, 62, 63]


# ---------------------------------------------------------------- pure-Python reference
def ref_clamp_bounds(zp: int, act: str, six: int | None) -> tuple[int, int]:
    """The clamp table of the spec, written out independently of RequantParams.lo/hi."""
    if act == "none":
        return -128, 127
    if act == "relu":
        return max(zp, -128), 127
    assert six is not None
    return max(zp, -128), min(six, 127)


def ref_requant_one(acc: int, m: int, s: int, zp: int, lo: int, hi: int) -> int:
    """``clamp(((acc * M + R) >> S) + zp, lo, hi)`` in unbounded Python integers."""
    r = 1 << (s - 1) if s > 0 else 0
    return min(max(((acc * m + r) >> s) + zp, lo), hi)


def ref_requantize(acc: np.ndarray, p: RequantParams, channel_axis: int = -1) -> list:
    lo, hi = ref_clamp_bounds(p.zero_point, p.act, p.six)
    moved = np.moveaxis(np.asarray(acc), channel_axis, -1)
    out = np.empty(moved.shape, dtype=object)
    for idx in np.ndindex(moved.shape):
        c = idx[-1] if p.channels > 1 else 0
        out[idx] = ref_requant_one(
            int(moved[idx]), p.multiplier[c], p.shift[c], p.zero_point, lo, hi
        )
    return np.moveaxis(out, -1, channel_axis).tolist()


def random_params(rng: np.random.Generator, channels: int, act: str) -> RequantParams:
    """Arbitrary (not realistic) parameters: full-range M, any S, including the edges."""
    m = rng.integers(I32_MIN, I32_MAX, size=channels, endpoint=True)
    s = rng.integers(0, 63, size=channels, endpoint=True)
    edge = rng.random(channels) < 0.3
    m[edge] = rng.choice(M_EDGES, size=int(edge.sum()))
    s[edge] = rng.choice(S_EDGES, size=int(edge.sum()))
    zp = int(rng.integers(-128, 128))
    six = zp + int(rng.integers(0, 300)) if act == "relu6" else None
    return RequantParams(m, s, zero_point=zp, act=act, six=six)


def random_acc(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    acc = rng.integers(I32_MIN, I32_MAX, size=shape, endpoint=True)
    small = rng.random(shape) < 0.3
    acc[small] = rng.integers(-5000, 5000, size=int(small.sum()))
    edge = rng.random(shape) < 0.15
    acc[edge] = rng.choice(ACC_EDGES, size=int(edge.sum()))
    return acc


# ---------------------------------------------------------------- exactness
def test_public_import():
    from kernels.requant import RequantParams as P
    from kernels.requant import requantize as rq

    assert P is RequantParams and rq is requantize


@pytest.mark.parametrize("act", ["none", "relu", "relu6"])
@pytest.mark.parametrize("seed", range(4))
def test_matches_python_integers_on_random_data(act, seed):
    rng = np.random.default_rng(seed)
    p = random_params(rng, 7, act)
    acc = random_acc(rng, (5, 3, 7))
    got = requantize(acc, p)
    assert got.dtype == np.int8 and got.shape == acc.shape
    assert got.tolist() == ref_requantize(acc, p)


def test_matches_python_integers_on_every_edge_combination():
    pairs = list(itertools.product(M_EDGES, S_EDGES))
    p = RequantParams([m for m, _ in pairs], [s for _, s in pairs], zero_point=-7)
    acc = np.array([[a] * len(pairs) for a in ACC_EDGES], dtype=np.int64)
    assert requantize(acc, p).tolist() == ref_requantize(acc, p)
    # the same with the unclamped value visible: shifts large enough to land in int8
    for act, six in (("relu", None), ("relu6", 40)):
        q = dataclasses.replace(p, act=act, six=six)
        assert requantize(acc, q).tolist() == ref_requantize(acc, q)


def test_int64_overflow_corner_is_exact():
    # acc * M = 2**62 and R = 2**62: the sum 2**63 overflows int64, the answer is exactly 1.
    acc = np.array([I32_MIN, I32_MIN, I32_MIN, I32_MAX])
    p = RequantParams([I32_MIN, I32_MIN, I32_MAX, I32_MIN], [63, 62, 63, 63])
    assert (I32_MIN * I32_MIN + 2**62) >> 63 == 1
    # (2**62 + 2**62) >> 63, (2**62 + 2**61) >> 62, (-2**62 + 2**31 + 2**62) >> 63 twice
    assert requantize(acc, p).tolist() == [1, 1, 0, 0] == ref_requantize(acc, p)
    # identity mantissa keeps the full 64-bit value visible before the clamp
    big = RequantParams([I32_MIN], [63], zero_point=100)
    assert requantize(np.array([I32_MIN]), big).item() == 101


def test_unclamped_value_matches_across_the_shift_range():
    # choose acc, M, S so the exact shifted value lands inside int8: checks the shift itself,
    # not only the clamp, for every S in 0..63
    rng = np.random.default_rng(11)
    for s in range(64):
        m = int(rng.integers(I32_MIN, I32_MAX, endpoint=True)) | 1
        target = int(rng.integers(-100, 100))
        acc = max(min(round(target * 2**s / m), I32_MAX), I32_MIN)
        p = RequantParams([m], [s])
        want = ref_requant_one(acc, m, s, 0, -128, 127)
        assert requantize(np.array([acc]), p).item() == want


@pytest.mark.parametrize(
    ("prod", "shift", "want"),
    [
        (3, 1, 2),  # 1.5 -> 2
        (-3, 1, -1),  # -1.5 -> -1: floor((-3 + 1) / 2)
        (1, 1, 1),  # 0.5 -> 1
        (-1, 1, 0),  # -0.5 -> 0
        (5, 2, 1),  # 1.25 -> 1
        (6, 2, 2),  # 1.5 -> 2
        (-6, 2, -1),  # -1.5 -> -1
        (-7, 2, -2),  # -1.75 -> -2
        (7, 0, 7),  # S = 0: no rounding
        (-7, 0, -7),
    ],
)
def test_rounds_half_up(prod, shift, want):
    p = RequantParams([1], [shift])
    assert requantize(np.array([prod]), p).item() == want
    q = RequantParams([prod], [shift])  # the same product with acc = 1
    assert requantize(np.array([1]), q).item() == want


def test_rounding_half_up_with_large_shift():
    p = RequantParams([2**30], [40])  # x * 2**-10
    acc = np.array([512, -512, 511, -513, 1536, -1536])  # +-0.5, ~0.499, ~-0.501, +-1.5
    assert requantize(acc, p).tolist() == [1, 0, 0, -1, 2, -1]


# ---------------------------------------------------------------- clamps
def identity(act: str, zp: int, six: int | None = None) -> RequantParams:
    return RequantParams([1], [0], zero_point=zp, act=act, six=six)


def test_clamp_none():
    p = identity("none", 5)
    assert (p.lo, p.hi) == (-128, 127)
    acc = np.array([-1000, -133, -132, 0, 122, 123, 1000])
    assert requantize(acc, p).tolist() == [-128, -128, -127, 5, 127, 127, 127]


def test_clamp_relu():
    p = identity("relu", -20)
    assert (p.lo, p.hi) == (-20, 127)
    acc = np.array([-1000, -1, 0, 1, 147, 148])
    assert requantize(acc, p).tolist() == [-20, -20, -20, -19, 127, 127]
    assert (identity("relu", -128).lo, identity("relu", 127).lo) == (-128, 127)


def test_clamp_relu6():
    p = identity("relu6", -128, six=-128 + 100)
    assert (p.lo, p.hi) == (-128, -28)
    acc = np.array([-5, 0, 99, 100, 101, 10**6])
    assert requantize(acc, p).tolist() == [-128, -128, -29, -28, -28, -28]
    # six beyond int8 clamps at 127
    q = identity("relu6", 10, six=10 + 200)
    assert (q.lo, q.hi) == (10, 127)
    assert requantize(np.array([-50, 0, 117, 118, 500]), q).tolist() == [10, 10, 127, 127, 127]
    # six == zero_point (6.0 rounds to zero steps) pins everything to zero_point
    assert requantize(np.array([-9, 9]), identity("relu6", 3, six=3)).tolist() == [3, 3]


# ---------------------------------------------------------------- channels and axes
def test_per_channel_along_any_axis():
    rng = np.random.default_rng(5)
    p = random_params(rng, 4, "relu")
    acc = random_acc(rng, (3, 4, 2))
    got = requantize(acc, p, channel_axis=1)
    assert got.tolist() == ref_requantize(acc, p, channel_axis=1)
    assert (requantize(np.moveaxis(acc, 1, -1), p) == np.moveaxis(got, 1, -1)).all()
    assert (requantize(acc, p, channel_axis=-2) == got).all()


def test_per_tensor_params_apply_to_every_channel():
    rng = np.random.default_rng(6)
    acc = random_acc(rng, (6, 9))
    p = RequantParams(1234567, 20, zero_point=3)
    assert p.channels == 1 and p.shift == (20,)
    wide = RequantParams([1234567] * 9, [20] * 9, zero_point=3)
    assert (requantize(acc, p) == requantize(acc, wide)).all()


def test_accepts_any_integer_dtype_and_empty_arrays():
    p = RequantParams([3, -5], [1, 2])
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32):
        acc = np.array([[7, 100], [0, 1]], dtype=dtype)
        assert requantize(acc, p).tolist() == ref_requantize(acc, p)
    assert requantize(np.zeros((0, 2), np.int32), p).shape == (0, 2)


def test_scalar_shift_broadcasts_and_arrays_become_tuples():
    p = RequantParams(np.array([1, 2, 3], dtype=np.int32), 7)
    assert p.multiplier == (1, 2, 3) and p.shift == (7, 7, 7)
    assert all(type(v) is int for v in (*p.multiplier, *p.shift))
    assert hash(p) == hash(RequantParams((1, 2, 3), (7, 7, 7)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.zero_point = 1  # type: ignore[misc]
    assert p.rounding == (64, 64, 64)
    assert RequantParams([1, 1], [0, 1]).rounding == (0, 1)


# ---------------------------------------------------------------- from_scale
@pytest.mark.parametrize(
    "reals",
    [
        np.logspace(-10, 9, 200),
        np.random.default_rng(7).uniform(1e-5, 1e-2, 300),
        [1.0, 0.5, 0.75, 2.0**-33, 2.0**30, 2.0**31 - 1, 1e-3 / 3],
    ],
)
def test_from_scale_reproduces_the_real_multiplier(reals):
    p = RequantParams.from_scale(reals)
    assert p.channels == len(reals)
    for r, m, s, back in zip(reals, p.multiplier, p.shift, p.real_multiplier, strict=True):
        assert 0 <= s <= 63
        if r >= 2.0**-33:  # a full Q31 mantissa
            assert 2**30 <= m < 2**31
        assert math.isclose(m * 2.0**-s, r, rel_tol=1e-9, abs_tol=0.0)
        assert back == m * 2.0**-s


def test_from_scale_exact_cases():
    p = RequantParams.from_scale([1.0, 0.5, 3.0, 2.0**-33, 2.0**-40, 2.0**31 - 1, 1 - 2.0**-40])
    assert list(zip(p.multiplier, p.shift, strict=True)) == [
        (2**30, 30),
        (2**30, 31),
        (3 * 2**29, 29),
        (2**30, 63),
        (2**23, 63),  # S clipped at 63: fewer mantissa bits
        (2**31 - 1, 0),
        (2**30, 30),  # mantissa rounds up to 2**31: halved, S one smaller
    ]
    # TFLite-style rounding of the mantissa is half up
    half = 2**30 + 0.5  # mantissa exactly between two Q31 integers
    q = RequantParams.from_scale(half * 2.0**-31)
    assert (q.multiplier, q.shift) == ((2**30 + 1,), (31,))
    # far below 2**-33 the mantissa shrinks to nothing
    assert RequantParams.from_scale(1e-30).multiplier == (0,)


def test_from_scale_end_to_end_against_float():
    rng = np.random.default_rng(8)
    reals = rng.uniform(1e-4, 1e-2, size=8)
    p = RequantParams.from_scale(reals, zero_point=-3)
    acc = rng.integers(-20000, 20000, size=(50, 8))
    want = np.clip(np.floor(acc * reals + 0.5) - 3, -128, 127)
    assert (requantize(acc, p) == want).all()  # no .5 ties at these magnitudes


def test_from_scale_relu6_six():
    p = RequantParams.from_scale([0.01], zero_point=-128, act="relu6", out_scale=6 / 255)
    assert (p.six, p.lo, p.hi) == (127, -128, 127)
    q = RequantParams.from_scale([0.01], zero_point=5, act="relu6", out_scale=0.05)
    assert (q.six, q.lo, q.hi) == (125, 5, 125)
    r = RequantParams.from_scale([0.01], zero_point=0, act="relu6", out_scale=0.016)
    assert r.six == 375 and r.hi == 127  # 6 / 0.016 = 375
    assert RequantParams.from_scale([0.01], zero_point=0, act="relu6", out_scale=0.48).six == 13
    # 6 / 0.48 = 12.5 rounds half up
    assert RequantParams.from_scale([0.01], act="relu", out_scale=0.1).six is None


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"multiplier": [2**31], "shift": [0]}, ValueError, r"multiplier\[0\] = 2147483648"),
        ({"multiplier": [0, -(2**31) - 1], "shift": 0}, ValueError, r"multiplier\[1\].*32-bit"),
        ({"multiplier": [], "shift": []}, ValueError, "multiplier is empty"),
        ({"multiplier": [[1, 2]], "shift": 0}, ValueError, "1-D sequence"),
        ({"multiplier": [1.5], "shift": [0]}, TypeError, r"multiplier\[0\] must be an integer"),
        ({"multiplier": [1], "shift": [64]}, ValueError, r"shift\[0\] = 64 must be in 0..63"),
        ({"multiplier": [1], "shift": [-1]}, ValueError, r"shift\[0\] = -1 must be in 0..63"),
        ({"multiplier": [1, 2], "shift": [1, 2, 3]}, ValueError, "shift has 3 entries"),
        ({"multiplier": [1], "shift": 0, "zero_point": 128}, ValueError, "zero_point must be"),
        ({"multiplier": [1], "shift": 0, "zero_point": -129}, ValueError, "int8 range"),
        ({"multiplier": [1], "shift": 0, "zero_point": 1.0}, TypeError, "zero_point must be an"),
        ({"multiplier": [1], "shift": 0, "act": "gelu"}, ValueError, "act must be one of"),
        ({"multiplier": [1], "shift": 0, "act": "relu6"}, ValueError, "needs six"),
        (
            {"multiplier": [1], "shift": 0, "act": "relu6", "zero_point": 5, "six": 4},
            ValueError,
            "six = 4 is below zero_point = 5",
        ),
        ({"multiplier": [1], "shift": 0, "act": "relu", "six": 100}, ValueError, "leave six"),
        ({"multiplier": [1], "shift": 0, "act": "relu6", "six": 6.0}, TypeError, "six must be"),
    ],
)
def test_param_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        RequantParams(**kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ([0.0], {}, ValueError, "positive and finite"),
        ([[1.0, -0.5]], {}, ValueError, r"real_multipliers\[1\] = -0.5"),
        ([float("nan")], {}, ValueError, "positive and finite"),
        ([float("inf")], {}, ValueError, "positive and finite"),
        ([2.0**31], {}, ValueError, "too large"),
        ([2.0**31 - 0.5], {}, ValueError, "too large"),
        (["0.5"], {}, TypeError, "must be a real number"),
        ([[[0.5]]], {}, ValueError, "1-D sequence"),
        ([0.5], {"act": "relu6"}, ValueError, "needs out_scale"),
        ([0.5], {"act": "relu6", "out_scale": 0.0}, ValueError, "out_scale = 0.0"),
        ([0.5], {"zero_point": 300}, ValueError, "zero_point must be"),
    ],
)
def test_from_scale_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        RequantParams.from_scale(*args, **kwargs)


def test_requantize_errors():
    p = RequantParams([1, 2, 3], 0)
    with pytest.raises(ValueError, match=r"acc has 4 channels along axis -1.*params has 3"):
        requantize(np.zeros((2, 4), np.int32), p)
    with pytest.raises(ValueError, match="channel_axis = 2 is out of range"):
        requantize(np.zeros((2, 3), np.int32), p, channel_axis=2)
    with pytest.raises(ValueError, match=r"outside the int32 range.*wrap_signed"):
        requantize(np.array([0, 2**31, 0]), p)
    with pytest.raises(ValueError, match="outside the int32 range"):
        requantize(np.array([0, -(2**31) - 1, 0]), p)
    with pytest.raises(TypeError, match="acc must hold integers"):
        requantize(np.zeros(3), p)
    with pytest.raises(TypeError, match="acc must hold integers"):
        requantize(np.zeros(3, bool), p)
    with pytest.raises(ValueError, match="at least 1-D"):
        requantize(np.int32(5), RequantParams(1, 0))
    with pytest.raises(TypeError, match="params must be a RequantParams"):
        requantize(np.zeros(3, np.int32), (1, 2, 3))  # type: ignore[arg-type]


# ---------------------------------------------------------------- random_requant
@pytest.mark.parametrize("act", ["none", "relu", "relu6"])
@pytest.mark.parametrize("k", [16, 256, 2048])
def test_random_requant_is_realistic(act, k):
    rng = np.random.default_rng(k)
    p = random_requant(rng, 8, k=k, act=act)
    assert p.channels == 8 and p.act == act
    a = rng.integers(-128, 128, size=(256, k))
    b = rng.integers(-128, 128, size=(k, 8))
    y = requantize(matmul(a, b), p).astype(int)
    positive = y > p.lo  # ReLU outputs of negative accumulators legitimately sit at lo
    assert (y == 127).mean() < 0.02 and (y == -128).mean() < (0.02 if act == "none" else 0.6)
    assert positive.mean() > 0.3
    assert y[positive].std() > 4  # uses many int8 levels, not a handful
    if act == "relu6":
        assert p.six is not None and p.zero_point + 48 <= p.six <= p.zero_point + 255


def test_random_requant_is_reproducible_and_validates():
    a = random_requant(np.random.default_rng(1), 5, k=64, act="relu6")
    b = random_requant(np.random.default_rng(1), 5, k=64, act="relu6")
    assert a == b
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        random_requant(np.random.default_rng(1), 0)
    with pytest.raises(ValueError, match=r"k \(dot-product depth\) must be"):
        random_requant(np.random.default_rng(1), 4, k=0)
    with pytest.raises(ValueError, match="act must be one of"):
        random_requant(np.random.default_rng(1), 4, act="tanh")  # type: ignore[arg-type]
