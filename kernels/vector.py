"""Exact-integer golden models of the vector unit's layers: depthwise convolution, add, pooling.

Per channel, bit for bit what the vector unit computes (``docs/isa.md``, DWCONV / EWISE)::

    depthwise  acc = wrap32(bias + sum over taps of x * w[ky, kx])      (padding x = 0)
    add        acc = wrap32(bias + (a - za) * ma + (b - zb) * mb)
    avg pool   acc = wrap32(bias + sum over taps of x)                  (padding x = 0)
    max pool   y   = max over the in-image taps of x                    (padding never wins)
    y = requantize(acc, params)                                          (kernels.requant)

The sums are exact in int64 and then wrapped to 32 bits like the lane's accumulator; wrapping
the exact sum equals wrapping after every addition. A max pool is the lowering's
``max(-128, taps)`` with the identity requantization ``M = 2**30, S = 30`` (exact: ``(acc *
2**30 + 2**29) >> 30 == acc``).

Tensors travel as a dict whose keys depend on the layer (`tensor_keys`); `check_vector_tensors`
validates them and `random_vector_data` draws realistic ones. `kernels.conv.check_tensors`,
``layer_golden`` and ``random_layer_data`` dispatch here for the vector layers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from .gemm import int_array, wrap_signed
from .layers import Activation, Add, DepthwiseConv2D, Pool2D
from .requant import (
    INT8_MAX,
    INT8_MIN,
    INT32_MAX,
    INT32_MIN,
    RequantParams,
    random_requant,
    requantize,
)

__all__ = [
    "ADD_MULT_BITS",
    "INT16_MAX",
    "INT16_MIN",
    "MAXPOOL_REQUANT",
    "VectorLayer",
    "add",
    "add_acc",
    "add_quant_params",
    "avg_pool",
    "avg_pool_acc",
    "avg_pool_requant",
    "check_vector_tensors",
    "depthwise_acc",
    "depthwise_conv2d",
    "max_pool",
    "random_vector_data",
    "tensor_keys",
    "vector_golden",
]

VectorLayer = DepthwiseConv2D | Add | Pool2D

INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1

#: ``add_quant_params`` scales the larger operand scale to ``2**ADD_MULT_BITS`` (int16 ``ma``/``mb``
#: with room for rounding); ``|acc| <= 2 * 255 * 2**14`` stays far inside int32.
ADD_MULT_BITS = 14

#: The identity requantization of a max pool: ``(acc * 2**30 + 2**29) >> 30 == acc``.
MAXPOOL_REQUANT = RequantParams((1 << 30,), (30,), zero_point=0)

BIAS_RANGE = 1 << 12  # random depthwise biases are drawn from -BIAS_RANGE..BIAS_RANGE


# -------------------------------------------------------------------- argument checks
def _image(name: str, x: Any) -> np.ndarray:
    return int_array(name, x, 4, INT8_MIN, INT8_MAX).astype(np.int64)


def _channels(name: str, value: Any, c: int, lo: int, hi: int) -> np.ndarray:
    """One value or one per channel, as a ``(c,)`` int64 array."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    arr = int_array(name, arr, 1, lo, hi)
    if arr.shape not in ((1,), (c,)):
        raise ValueError(f"{name} must hold one value or one per channel ({c}), not {arr.shape}")
    return np.broadcast_to(arr.astype(np.int64), (c,)).copy()


def _window(name: str, h: int, w: int, kh: int, kw: int, stride: int, pad: int) -> None:
    for what, v, lo in (("kh", kh, 1), ("kw", kw, 1), ("stride", stride, 1), ("pad", pad, 0)):
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{what} must be an integer >= {lo}, not {v!r}")
    if kh > h + 2 * pad or kw > w + 2 * pad:
        raise ValueError(
            f"{name}: window {kh}x{kw} is larger than the padded input {h}x{w} + 2*{pad}"
        )


def _taps(
    x: np.ndarray, kh: int, kw: int, stride: int, pad: int, fill: int
) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(ky, kx, x at that tap for every output)`` over ``x`` padded with ``fill``."""
    n, h, w, c = x.shape
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (w + 2 * pad - kw) // stride + 1
    xp = np.full((n, h + 2 * pad, w + 2 * pad, c), fill, dtype=np.int64)
    xp[:, pad : pad + h, pad : pad + w, :] = x
    for ky in range(kh):
        for kx in range(kw):
            yield ky, kx, xp[:, ky : ky + stride * (oh - 1) + 1 : stride,
                             kx : kx + stride * (ow - 1) + 1 : stride]  # fmt: skip


# -------------------------------------------------------------------- golden operations
def depthwise_acc(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, stride: int = 1, pad: int = 0
) -> np.ndarray:
    """Accumulators of a depthwise convolution, bias included, wrapped to 32 bits.

    Parameters
    ----------
    x : (N, H, W, C) integer array
        int8-range input, NHWC.
    w : (K, K, C) integer array
        int8-range filter of every channel.
    bias : (C,) integer array
        int32-range bias.
    stride, pad : int
        Stride (>= 1) and zero padding on every side (>= 0).

    Returns
    -------
    (N, OH, OW, C) int64 array of int32 values.
    """
    x = _image("x (input)", x)
    w = int_array("w (weights)", w, 3, INT8_MIN, INT8_MAX).astype(np.int64)
    k, k2, c = w.shape
    if k != k2 or c != x.shape[3]:
        raise ValueError(f"w must be (K, K, C) with C = {x.shape[3]} channels, not {w.shape}")
    bias = _channels("bias", bias, c, INT32_MIN, INT32_MAX)
    _window("depthwise", x.shape[1], x.shape[2], k, k, stride, pad)
    acc = sum(t * w[ky, kx] for ky, kx, t in _taps(x, k, k, stride, pad, 0))
    return wrap_signed(acc + bias, 32)


def depthwise_conv2d(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    params: RequantParams,
    stride: int = 1,
    pad: int = 0,
) -> np.ndarray:
    """Golden int8 depthwise convolution: `depthwise_acc` then `requantize` (per channel)."""
    return requantize(depthwise_acc(x, w, bias, stride, pad), params)


def add_acc(
    a: np.ndarray,
    b: np.ndarray,
    za: Any,
    zb: Any,
    ma: Any,
    mb: Any,
    bias: np.ndarray,
) -> np.ndarray:
    """Accumulators of a quantized add: ``wrap32(bias + (a - za) * ma + (b - zb) * mb)``.

    Parameters
    ----------
    a, b : (N, H, W, C) integer arrays
        int8-range operands of the same shape.
    za, zb : int or (C,) integer array
        int8 zero points, per tensor or per channel.
    ma, mb : int or (C,) integer array
        int16 multipliers, per tensor or per channel.
    bias : int or (C,) integer array
        int32 bias.

    Returns
    -------
    (N, H, W, C) int64 array of int32 values.
    """
    a, b = _image("a", a), _image("b", b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, not {a.shape} and {b.shape}")
    c = a.shape[3]
    za, zb = (_channels(n, v, c, INT8_MIN, INT8_MAX) for n, v in (("za", za), ("zb", zb)))
    ma, mb = (_channels(n, v, c, INT16_MIN, INT16_MAX) for n, v in (("ma", ma), ("mb", mb)))
    bias = _channels("bias", bias, c, INT32_MIN, INT32_MAX)
    return wrap_signed(bias + (a - za) * ma + (b - zb) * mb, 32)


def add(
    a: np.ndarray,
    b: np.ndarray,
    za: Any,
    zb: Any,
    ma: Any,
    mb: Any,
    bias: np.ndarray,
    params: RequantParams,
) -> np.ndarray:
    """Golden int8 add: `add_acc` then `requantize`."""
    return requantize(add_acc(a, b, za, zb, ma, mb, bias), params)


def max_pool(x: np.ndarray, kh: int, kw: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """Golden int8 max pool: the maximum over the in-image taps of each window.

    Padding never wins; a window entirely in the padding gives -128 (the lowering's bias).

    Returns
    -------
    (N, OH, OW, C) int8 array.
    """
    x = _image("x (input)", x)
    _window("max pool", x.shape[1], x.shape[2], kh, kw, stride, pad)
    out = None
    for _ky, _kx, t in _taps(x, kh, kw, stride, pad, INT8_MIN):
        out = t if out is None else np.maximum(out, t)
    assert out is not None  # kh, kw >= 1
    return out.astype(np.int8)


def avg_pool_acc(
    x: np.ndarray, bias: np.ndarray, kh: int, kw: int, stride: int = 1, pad: int = 0
) -> np.ndarray:
    """Accumulators of an average pool: ``wrap32(bias + sum over taps of x)``, padding 0.

    Returns
    -------
    (N, OH, OW, C) int64 array of int32 values.
    """
    x = _image("x (input)", x)
    bias = _channels("bias", bias, x.shape[3], INT32_MIN, INT32_MAX)
    _window("average pool", x.shape[1], x.shape[2], kh, kw, stride, pad)
    acc = sum(t for _ky, _kx, t in _taps(x, kh, kw, stride, pad, 0))
    return wrap_signed(acc + bias, 32)


def avg_pool(
    x: np.ndarray,
    bias: np.ndarray,
    params: RequantParams,
    kh: int,
    kw: int,
    stride: int = 1,
    pad: int = 0,
) -> np.ndarray:
    """Golden int8 average pool: `avg_pool_acc` then `requantize` (``M/2**S ~ 1/(kh*kw)``)."""
    return requantize(avg_pool_acc(x, bias, kh, kw, stride, pad), params)


# -------------------------------------------------------------------- quantization helpers
def add_quant_params(
    a_scale: float,
    b_scale: float,
    out_scale: float,
    *,
    za: int = 0,
    zb: int = 0,
    zero_point: int = 0,
    act: Activation = "none",
) -> dict[str, Any]:
    """Integer parameters of ``y = (a_scale*(a - za) + b_scale*(b - zb)) / out_scale + zp``.

    The larger operand scale becomes the multiplier ``2**ADD_MULT_BITS`` and the other its
    rounded fraction of it, so ``acc = (a - za)*ma + (b - zb)*mb`` is the real sum in units of
    ``max(a_scale, b_scale) / 2**ADD_MULT_BITS``; the requantization multiplies by
    ``max(a_scale, b_scale) / (2**ADD_MULT_BITS * out_scale)`` (`RequantParams.from_scale`).

    Parameters
    ----------
    a_scale, b_scale, out_scale : float
        Positive real value of one int8 step of ``a``, ``b`` and the output.
    za, zb, zero_point : int
        int8 zero points of ``a``, ``b`` and the output.
    act : {"none", "relu", "relu6"}
        Activation folded into the clamp.

    Returns
    -------
    dict
        ``za``, ``zb`` (int), ``ma``, ``mb`` (int16 ints), ``bias`` (0) and ``requant``.

    Raises
    ------
    ValueError
        A scale that is not positive and finite, a zero point outside int8, or operand scales
        more than ``2**(ADD_MULT_BITS + 1)`` apart (the smaller multiplier would round to 0).
    """
    for name, v in (("a_scale", a_scale), ("b_scale", b_scale), ("out_scale", out_scale)):
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number, not {v!r}")
    for name, v in (("za", za), ("zb", zb)):
        if not INT8_MIN <= v <= INT8_MAX:
            raise ValueError(f"{name} must be an int8 zero point (-128..127), not {v!r}")
    top = max(a_scale, b_scale)
    ma, mb = (round(s / top * (1 << ADD_MULT_BITS)) for s in (a_scale, b_scale))
    if min(ma, mb) == 0:
        raise ValueError(
            f"a_scale={a_scale} and b_scale={b_scale} differ by more than 2**{ADD_MULT_BITS + 1}:"
            f" the smaller operand would vanish; requantize it first"
        )
    requant = RequantParams.from_scale(
        top / ((1 << ADD_MULT_BITS) * out_scale),
        zero_point=zero_point,
        act=act,
        out_scale=out_scale,
    )
    return {"za": int(za), "zb": int(zb), "ma": ma, "mb": mb, "bias": 0, "requant": requant}


def avg_pool_requant(kh: int, kw: int, *, zero_point: int = 0) -> RequantParams:
    """Requantization of an average pool: the real multiplier ``1 / (kh*kw)``."""
    return RequantParams.from_scale(1.0 / (kh * kw), zero_point=zero_point)


# -------------------------------------------------------------------- layer tensors
def tensor_keys(layer: VectorLayer) -> tuple[str, ...]:
    """The keys of a vector layer's tensor dict."""
    if isinstance(layer, DepthwiseConv2D):
        return ("input", "weights", "bias", "requant")
    if isinstance(layer, Add):
        return ("a", "b", "za", "zb", "ma", "mb", "bias", "requant")
    if isinstance(layer, Pool2D):
        return ("input",) if layer.kind == "max" else ("input", "bias", "requant")
    raise TypeError(f"layer must be a DepthwiseConv2D, Add or Pool2D, not {type(layer).__name__}")


def _check_requant(layer: VectorLayer, params: Any) -> RequantParams:
    if not isinstance(params, RequantParams):
        raise TypeError(
            f"layer {layer.name!r}: requant must be a RequantParams, not {type(params).__name__}"
        )
    if params.channels not in (1, layer.c):
        raise ValueError(
            f"layer {layer.name!r}: requant has {params.channels} channels, the layer has "
            f"{layer.c}; give one multiplier per channel (or one for all)"
        )
    if params.act != layer.act:
        raise ValueError(
            f"layer {layer.name!r} has act={layer.act!r} but its requant parameters have "
            f"act={params.act!r}; build them with the layer's activation"
        )
    return params


def check_vector_tensors(layer: VectorLayer, tensors: dict[str, Any]) -> dict[str, Any]:
    """Validate a vector layer's tensors; return them as arrays of the layer's shapes.

    Per-channel values (``bias``, ``za``, ``zb``, ``ma``, ``mb``) come back as ``(c,)`` int64
    arrays even when given as one value. Raises ``ValueError``/``TypeError`` naming the layer
    and the tensor for a missing key, a wrong shape, dtype or range, or requantization
    parameters whose channels or activation disagree with the layer.
    """
    keys = tensor_keys(layer)
    missing = [key for key in keys if key not in tensors]
    if missing:
        raise ValueError(
            f"layer {layer.name!r}: tensors lack {', '.join(map(repr, missing))}; give a dict "
            f"with keys {', '.join(keys)} (see random_layer_data)"
        )
    shapes = {
        "input": layer.input_shape,
        "a": layer.input_shape,
        "b": layer.input_shape,
        "weights": getattr(layer, "weight_shape", None),
    }
    ranges = {
        "za": (INT8_MIN, INT8_MAX),
        "zb": (INT8_MIN, INT8_MAX),
        "ma": (INT16_MIN, INT16_MAX),
        "mb": (INT16_MIN, INT16_MAX),
        "bias": (INT32_MIN, INT32_MAX),
    }
    out: dict[str, Any] = {}
    for key in keys:
        try:
            if key == "requant":
                out[key] = _check_requant(layer, tensors[key])
            elif key in ranges:
                out[key] = _channels(key, tensors[key], layer.c, *ranges[key])
            else:
                shape = shapes[key]
                arr = int_array(key, tensors[key], len(shape), INT8_MIN, INT8_MAX)
                if arr.shape != shape:
                    raise ValueError(f"{key} has shape {arr.shape}, expected {shape}")
                out[key] = arr
        except (TypeError, ValueError) as exc:
            msg = str(exc)
            prefix = f"layer {layer.name!r}"
            raise type(exc)(msg if msg.startswith(prefix) else f"{prefix}: {msg}") from None
    return out


def vector_golden(layer: VectorLayer, tensors: dict[str, Any], *, acc: bool = False) -> np.ndarray:
    """Golden output of a vector layer (int8), or its int32 accumulators with ``acc=True``.

    A max pool has no accumulator beyond its output; ``acc=True`` returns the maxima as int64.
    """
    t = check_vector_tensors(layer, tensors)
    if isinstance(layer, DepthwiseConv2D):
        y = depthwise_acc(t["input"], t["weights"], t["bias"], layer.stride, layer.pad)
    elif isinstance(layer, Add):
        y = add_acc(t["a"], t["b"], t["za"], t["zb"], t["ma"], t["mb"], t["bias"])
    elif layer.kind == "max":
        y = max_pool(t["input"], layer.kh, layer.kw, layer.stride, layer.pad)
        return y.astype(np.int64) if acc else y
    else:
        y = avg_pool_acc(t["input"], t["bias"], layer.kh, layer.kw, layer.stride, layer.pad)
    return y if acc else requantize(y, t["requant"])


def random_vector_data(layer: VectorLayer, rng: np.random.Generator) -> dict[str, Any]:
    """Random tensors for a vector layer whose outputs spread over the int8 range.

    * depthwise: uniform int8 input and weights, biases in ``-4096..4096`` and `random_requant`
      sized for ``k*k`` taps;
    * add: uniform int8 operands with zero points in ``-20..20``, operand scales up to 4x apart
      and an output scale of about 1/40 of the sum's standard deviation (`add_quant_params`),
      plus a small bias;
    * average pool: a bias of at most half a step per tap and `avg_pool_requant` with a zero
      point in ``-16..16``; a max pool has only its input.
    """
    keys = tensor_keys(layer)  # also rejects other layer types

    def int8(shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(INT8_MIN, INT8_MAX + 1, size=shape, dtype=np.int8)

    c = layer.c
    if isinstance(layer, DepthwiseConv2D):
        return {
            "input": int8(layer.input_shape),
            "weights": int8(layer.weight_shape),
            "bias": rng.integers(-BIAS_RANGE, BIAS_RANGE + 1, size=c, dtype=np.int32),
            "requant": random_requant(rng, c, k=layer.depth, act=layer.act),
        }
    if isinstance(layer, Add):
        a_scale = float(np.exp2(rng.uniform(-8, -4)))
        b_scale = a_scale * float(np.exp2(rng.uniform(-2, 2)))
        spread = 74.0 * math.hypot(a_scale, b_scale)  # std of the real sum of uniform int8
        zero_point = int(rng.integers(-16, 17) if layer.act == "none" else rng.integers(-128, -99))
        params = add_quant_params(
            a_scale, b_scale, spread / 40.0,
            za=int(rng.integers(-20, 21)), zb=int(rng.integers(-20, 21)),
            zero_point=zero_point, act=layer.act,
        )  # fmt: skip
        bias = rng.integers(-(1 << ADD_MULT_BITS), (1 << ADD_MULT_BITS) + 1, size=c)
        return {"a": int8(layer.input_shape), "b": int8(layer.input_shape), **params,
                "bias": bias.astype(np.int32)}  # fmt: skip
    taps = layer.kh * layer.kw
    tensors: dict[str, Any] = {"input": int8(layer.input_shape)}
    if "bias" in keys:
        tensors["bias"] = rng.integers(-(taps // 2), taps // 2 + 1, size=c, dtype=np.int32)
        zero_point = int(rng.integers(-16, 17))
        tensors["requant"] = avg_pool_requant(layer.kh, layer.kw, zero_point=zero_point)
    return tensors
