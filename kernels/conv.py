"""Exact-integer golden convolution and dense layers, bit-for-bit what the core computes.

A layer's int8 output is::

    acc = wrap32(wrap32(sum over taps and input channels of x * w) + bias)
    y   = requantize(acc, params)            # kernels.requant

The sum is exact in int64 and then wrapped to 32 bits like the accumulator register; wrapping the
exact sum equals wrapping after every addition (modular arithmetic), so the order in which the
hardware adds the partial products does not matter. Zero padding uses the int8 value 0.

Tensors of a layer travel as a dict (`TENSOR_KEYS`): ``input`` (int8), ``weights`` (int8),
``bias`` (int32, one per output channel) and ``requant`` (`RequantParams`). `check_tensors`,
`layer_golden` and `random_layer_data` also take the vector unit's layers (depthwise, add,
pooling), whose golden models and tensor keys are in `kernels.vector`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .gemm import int_array as _int_array
from .gemm import wrap_signed
from .layers import VECTOR_LAYERS, Conv2D, Dense, Layer
from .requant import INT8_MAX, INT8_MIN, INT32_MAX, INT32_MIN, RequantParams, random_requant
from .requant import requantize as _requantize
from .vector import check_vector_tensors, random_vector_data, vector_golden

__all__ = [
    "TENSOR_KEYS",
    "check_tensors",
    "conv2d",
    "conv2d_acc",
    "layer_golden",
    "random_layer_data",
]

TENSOR_KEYS = ("input", "weights", "bias", "requant")

BIAS_RANGE = 1 << 12  # random biases are drawn from -BIAS_RANGE..BIAS_RANGE


def conv2d_acc(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    stride: int = 1,
    pad: int = 0,
    *,
    groups: int = 1,
    acc_width: int = 32,
) -> np.ndarray:
    """Accumulators of a convolution, bias included, wrapped like the accumulator register.

    Parameters
    ----------
    x : (N, H, W, Cin) integer array
        int8-range input, NHWC.
    w : (K, K, Cin/groups, Cout) integer array
        int8-range weights.
    bias : (Cout,) integer array
        int32-range bias.
    stride, pad : int
        Stride (>= 1) and zero padding on every side (>= 0).
    groups : int
        Grouped convolution: output channel ``co`` sums over the input channels of its group
        ``co // (Cout/groups)`` only (`kernels.layers.Conv2D`).
    acc_width : int
        Accumulator width in bits.

    Returns
    -------
    (N, OH, OW, Cout) int64 array of values in the signed ``acc_width`` range.
    """
    x = _int_array("x (input)", x, 4, INT8_MIN, INT8_MAX)
    w = _int_array("w (weights)", w, 4, INT8_MIN, INT8_MAX)
    bias = _int_array("bias", bias, 1, INT32_MIN, INT32_MAX)
    if not isinstance(stride, int | np.integer) or stride < 1:
        raise ValueError(f"stride must be a positive integer, not {stride!r}")
    if not isinstance(pad, int | np.integer) or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, not {pad!r}")
    if not isinstance(groups, int | np.integer) or groups < 1:
        raise ValueError(f"groups must be a positive integer, not {groups!r}")
    k, k2, gcin, cout = w.shape
    if k != k2:
        raise ValueError(f"w must be (K, K, Cin/groups, Cout) with a square kernel, not {w.shape}")
    n, h, wd, cin = x.shape
    if cin != gcin * groups or cout % groups:
        raise ValueError(
            f"x has {cin} channels (shape {x.shape}) but w {w.shape} with groups={groups} "
            f"expects {gcin * groups} (and Cout a multiple of groups)"
        )
    if bias.shape != (cout,):
        raise ValueError(
            f"bias must have shape ({cout},) (one per output channel), not {bias.shape}"
        )
    if k > h + 2 * pad or k > wd + 2 * pad:
        raise ValueError(f"kernel {k}x{k} is larger than the padded input {h}x{wd} + 2*{pad}")
    oh = (h + 2 * pad - k) // stride + 1
    ow = (wd + 2 * pad - k) // stride + 1
    xp = np.zeros((n, h + 2 * pad, wd + 2 * pad, cin), dtype=np.int64)
    xp[:, pad : pad + h, pad : pad + wd, :] = x
    # output channel co of group co // gcout: (K, K, gcin, groups, gcout)
    w64 = w.astype(np.int64).reshape(k, k, gcin, groups, cout // groups)
    acc = np.zeros((n, oh, ow, groups, cout // groups), dtype=np.int64)
    # |x*w| <= 2**14, so any realistic k*k*cin keeps the exact sum far inside int64.
    for ky in range(k):
        for kx in range(k):
            patch = xp[
                :,
                ky : ky + stride * (oh - 1) + 1 : stride,
                kx : kx + stride * (ow - 1) + 1 : stride,
                :,
            ].reshape(n, oh, ow, groups, gcin)
            acc += np.einsum("nyxgc,cgo->nyxgo", patch, w64[ky, kx])
    acc = acc.reshape(n, oh, ow, cout)
    return wrap_signed(wrap_signed(acc, acc_width) + bias.astype(np.int64), acc_width)


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    params: RequantParams,
    stride: int = 1,
    pad: int = 0,
    *,
    groups: int = 1,
) -> np.ndarray:
    """Golden int8 convolution: `conv2d_acc` (32-bit accumulators) then `requantize`.

    Parameters
    ----------
    x, w, bias, stride, pad, groups
        As for `conv2d_acc`.
    params : RequantParams
        Per-output-channel requantization (one channel or ``Cout``) with the activation clamp.

    Returns
    -------
    (N, OH, OW, Cout) int8 array.
    """
    acc = conv2d_acc(x, w, bias, stride, pad, groups=groups, acc_width=32)
    return _requantize(acc, params)


def check_tensors(layer: Layer, tensors: dict[str, Any]) -> dict[str, Any]:
    """Validate a layer's tensors; return them as arrays of the layer's shapes.

    Raises ``ValueError``/``TypeError`` naming the layer and the tensor for a missing key, a wrong
    shape, dtype or range, or requantization parameters whose channels or activation disagree
    with the layer. Vector layers are checked by `kernels.vector.check_vector_tensors`.
    """
    if isinstance(layer, VECTOR_LAYERS):
        return check_vector_tensors(layer, tensors)
    if not isinstance(layer, Conv2D | Dense):
        raise TypeError(f"layer must be a layer of kernels.layers, not {type(layer).__name__}")
    missing = [key for key in TENSOR_KEYS if key not in tensors]
    if missing:
        raise ValueError(
            f"layer {layer.name!r}: tensors lack {', '.join(map(repr, missing))}; give a dict "
            f"with keys {', '.join(TENSOR_KEYS)} (see random_layer_data)"
        )
    out: dict[str, Any] = {}
    shapes = {
        "input": layer.input_shape,
        "weights": layer.weight_shape,
        "bias": (layer.cout if isinstance(layer, Conv2D) else layer.n,),
    }
    ranges = {
        "input": (INT8_MIN, INT8_MAX),
        "weights": (INT8_MIN, INT8_MAX),
        "bias": (INT32_MIN, INT32_MAX),
    }
    for key, shape in shapes.items():
        try:
            arr = _int_array(key, tensors[key], len(shape), *ranges[key])
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"layer {layer.name!r}: {exc}") from None
        if arr.shape != shape:
            raise ValueError(f"layer {layer.name!r}: {key} has shape {arr.shape}, expected {shape}")
        out[key] = arr
    params = tensors["requant"]
    if not isinstance(params, RequantParams):
        raise TypeError(
            f"layer {layer.name!r}: requant must be a RequantParams, not {type(params).__name__}"
        )
    cout = shapes["bias"][0]
    if params.channels not in (1, cout):
        raise ValueError(
            f"layer {layer.name!r}: requant has {params.channels} channels, the layer has "
            f"{cout} output channels; give one multiplier per channel (or one for all)"
        )
    if params.act != layer.act:
        raise ValueError(
            f"layer {layer.name!r} has act={layer.act!r} but its requant parameters have "
            f"act={params.act!r}; build them with the layer's activation"
        )
    out["requant"] = params
    return out


def layer_golden(layer: Layer, tensors: dict[str, Any], *, acc: bool = False) -> np.ndarray:
    """Golden output of a layer.

    Parameters
    ----------
    layer : Conv2D, Dense, DepthwiseConv2D, Add or Pool2D
    tensors : dict
        ``input``, ``weights``, ``bias``, ``requant`` for Conv2D and Dense, the keys of
        `kernels.vector.tensor_keys` for the vector layers (see `random_layer_data`).
    acc : bool
        Return the int32 accumulators (bias included) instead of the int8 output.

    Returns
    -------
    ndarray of ``layer.output_shape``: int8, or int64 holding int32 values with ``acc=True``.
    """
    if isinstance(layer, VECTOR_LAYERS):
        return vector_golden(layer, tensors, acc=acc)
    t = check_tensors(layer, tensors)
    conv = layer.as_conv()
    x = t["input"].reshape(conv.input_shape)
    w = t["weights"].reshape(conv.weight_shape)
    y = conv2d_acc(x, w, t["bias"], conv.stride, conv.pad, groups=conv.groups)
    if not acc:
        y = _requantize(y, t["requant"])
    return y.reshape(layer.output_shape)


def random_layer_data(layer: Layer, rng: np.random.Generator) -> dict[str, Any]:
    """Random tensors for a layer whose outputs spread over the int8 range.

    Inputs and weights are uniform int8, biases uniform in ``-4096..4096`` and the requantization
    `random_requant` sized for the layer's dot-product depth ``k*k*cin``, so that the outputs
    are neither all saturated nor all zero.

    Vector layers get `kernels.vector.random_vector_data`.

    Returns
    -------
    dict with ``input`` (int8, ``layer.input_shape``), ``weights`` (int8, ``(k, k, cin, cout)``
    or ``(k, n)`` for a dense layer), ``bias`` (int32) and ``requant`` (`RequantParams`).
    """
    if isinstance(layer, VECTOR_LAYERS):
        return random_vector_data(layer, rng)
    if not isinstance(layer, Conv2D | Dense):
        raise TypeError(f"layer must be a layer of kernels.layers, not {type(layer).__name__}")
    cout = layer.as_conv().cout
    return {
        "input": rng.integers(INT8_MIN, INT8_MAX + 1, size=layer.input_shape, dtype=np.int8),
        "weights": rng.integers(INT8_MIN, INT8_MAX + 1, size=layer.weight_shape, dtype=np.int8),
        "bias": rng.integers(-BIAS_RANGE, BIAS_RANGE + 1, size=cout, dtype=np.int32),
        "requant": random_requant(rng, cout, k=layer.depth, act=layer.act),
    }
