"""Layer descriptions: what the lowering, the golden models and the cost model agree on.

Layer kinds, all frozen dataclasses validated at construction. For the systolic array:

* `Conv2D` -- a square KxK convolution over NHWC int8 activations with HWIO weights
  (``(k, k, cin/groups, cout)``), an int32 bias per output channel and a requantized int8
  output; ``groups > 1`` makes a grouped convolution (ResNeXt, RegNet), run on the array a few
  groups at a time (`kernels.lower.array_form`);
* `Dense` -- a GEMM ``y[m, n] = x[m, k] @ W[k, n] + bias[n]``, lowered as a 1x1 convolution over
  an image of height 1 and width ``m`` (`Dense.as_conv`).

For the vector unit (`VECTOR_LAYERS`; golden models in `kernels.vector`):

* `DepthwiseConv2D` -- a KxK convolution of every channel with its own ``(k, k)`` filter;
* `Add` -- the residual add of two quantized tensors, each ``(x - z) * m``, requantized;
* `Pool2D` -- max or average pooling over ``kh x kw`` windows (`global_avg_pool` for a whole
  feature map).

Layer spec syntax (the ``tandem`` command line quotes `LAYER_SPEC_HELP`)::

    conv:h=H,w=W,cin=CIN,cout=COUT,k=K[,s=1][,p=0][,g=1][,n=1][,act=none][,name=NAME]
    gemm:m=M,k=K,n=N[,act=none][,name=NAME]          (dense: is an alias of gemm:)
    dw:h=H,w=W,c=C,k=K[,s=1][,p=0][,n=1][,act=none][,name=NAME]
    add:h=H,w=W,c=C[,n=1][,act=none][,name=NAME]
    maxpool:h=H,w=W,c=C,k=K[,kw=K][,s=1][,p=0][,n=1][,name=NAME]    (avgpool: the same keys)
    gap:h=H,w=W,c=C[,n=1][,name=NAME]                (global average pool)

``s`` is the stride, ``p`` the zero padding on every side, ``g`` the groups (a grouped
convolution), ``n`` the batch (``b`` is an alias in the vector kinds); ``act`` is one of ``none``,
``relu``, ``relu6``. Keys may come in any order; spaces around items are ignored. Examples:
``conv:h=56,w=56,cin=64,cout=64,k=3,s=1,p=1,act=relu``, ``conv:h=28,w=28,cin=128,cout=128,k=3,
p=1,g=32`` (a ResNeXt group convolution), ``gemm:m=100,k=70,n=30``, ``dw:h=7,w=7,c=3,k=5,s=2,p=2``
and ``maxpool:h=8,w=8,c=16,k=2,s=2``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .requant import ACTIVATIONS

__all__ = [
    "LAYER_SPEC_HELP",
    "VECTOR_LAYERS",
    "Add",
    "Conv2D",
    "Dense",
    "DepthwiseConv2D",
    "Layer",
    "Pool2D",
    "global_avg_pool",
    "parse_layer_spec",
]

Activation = Literal["none", "relu", "relu6"]

LAYER_SPEC_HELP = (
    "conv:h=H,w=W,cin=CIN,cout=COUT,k=K[,s=1][,p=0][,g=1][,n=1][,act=none|relu|relu6]"
    "[,name=NAME] (KxK convolution, NHWC int8; s stride, p zero padding, g groups, n batch) or "
    "gemm:m=M,k=K,n=N[,act=none|relu|relu6][,name=NAME] (y[m,n] = x[m,k] @ W[k,n] + bias) or "
    "dw:h=H,w=W,c=C,k=K[,s=1][,p=0][,n=1][,act=none|relu|relu6][,name=NAME] (depthwise KxK) or "
    "add:h=H,w=W,c=C[,n=1][,act=none|relu|relu6][,name=NAME] (residual add of two tensors) or "
    "maxpool:h=H,w=W,c=C,k=K[,kw=K][,s=1][,p=0][,n=1][,name=NAME] (avgpool: the same keys) or "
    "gap:h=H,w=W,c=C[,n=1][,name=NAME] (global average pool); "
    "e.g. conv:h=56,w=56,cin=64,cout=64,k=3,s=1,p=1,act=relu or gemm:m=100,k=70,n=30 or "
    "dw:h=112,w=112,c=32,k=3,s=1,p=1,act=relu6"
)


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name or any(ch.isspace() or ch in ",=:" for ch in name):
        raise ValueError(
            f"layer name must be a non-empty string without spaces, ',', '=' or ':', not {name!r}"
        )


def _check_int(layer: str, field: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(
            f"layer {layer!r}: {field} must be an integer >= {minimum}, not {value!r} "
            f"({type(value).__name__})"
        )
    if value < minimum:
        raise ValueError(f"layer {layer!r}: {field} must be >= {minimum}, not {value}")


def _check_act(layer: str, act: object) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(
            f"layer {layer!r}: act must be one of {', '.join(map(repr, ACTIVATIONS))}, not {act!r}"
        )


@dataclass(frozen=True)
class Conv2D:
    """A square KxK 2-D convolution, NHWC int8 in and out, int32 bias, requantized output.

    Parameters
    ----------
    name : str
        Label used in errors and reports.
    h, w : int
        Input height and width (pixels).
    cin, cout : int
        Input and output channels.
    k : int
        Kernel size (KxK).
    stride : int
        Stride in both directions.
    pad : int
        Zero padding on every side (the padding value is the int8 ``0``).
    batch : int
        Number of images.
    act : {"none", "relu", "relu6"}
        Activation folded into the requantization clamp.
    groups : int
        Grouped convolution: input channels ``[g*cin/groups, (g+1)*cin/groups)`` feed only
        output channels ``[g*cout/groups, (g+1)*cout/groups)``. Both channel counts must be
        multiples of it. A depthwise convolution (``groups == cin == cout``) is a
        `DepthwiseConv2D`, which the vector unit runs.

    Notes
    -----
    Tensors: input ``(batch, h, w, cin)``, weights ``(k, k, cin/groups, cout)`` (output channel
    ``co`` of group ``co // (cout/groups)`` reads that group's input channels), bias ``(cout,)``,
    output ``(batch, out_h, out_w, cout)``, all C-contiguous.
    """

    name: str
    h: int
    w: int
    cin: int
    cout: int
    k: int
    stride: int = 1
    pad: int = 0
    batch: int = 1
    act: Activation = "none"
    groups: int = 1

    def __post_init__(self) -> None:
        _check_name(self.name)
        for field in ("h", "w", "cin", "cout", "k", "stride", "batch", "groups"):
            _check_int(self.name, field, getattr(self, field), 1)
        _check_int(self.name, "pad", self.pad, 0)
        _check_act(self.name, self.act)
        if self.cin % self.groups or self.cout % self.groups:
            raise ValueError(
                f"layer {self.name!r}: groups={self.groups} must divide both cin={self.cin} "
                f"and cout={self.cout}"
            )
        for dim in ("h", "w"):
            size = getattr(self, dim)
            if self.k > size + 2 * self.pad:
                raise ValueError(
                    f"layer {self.name!r}: kernel k={self.k} is larger than the padded input "
                    f"{dim}={size} + 2*pad={2 * self.pad}; use a smaller k or more padding"
                )

    # ---------------------------------------------------------------- derived sizes
    @property
    def out_h(self) -> int:
        """Output height, ``(h + 2*pad - k) // stride + 1``."""
        return (self.h + 2 * self.pad - self.k) // self.stride + 1

    @property
    def out_w(self) -> int:
        """Output width, ``(w + 2*pad - k) // stride + 1``."""
        return (self.w + 2 * self.pad - self.k) // self.stride + 1

    @property
    def depth(self) -> int:
        """Dot-product length of one output, ``k*k*cin/groups``."""
        return self.k * self.k * self.cin // self.groups

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the layer, ``batch*out_h*out_w*cout*k*k*cin/groups``.

        Every kernel tap counts (taps over the zero border too), but not the lanes the array
        wastes when ``cin`` or ``cout`` is not a multiple of its size.
        """
        return self.batch * self.out_h * self.out_w * self.cout * self.depth

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.h, self.w, self.cin)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.k, self.k, self.cin // self.groups, self.cout)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_h, self.out_w, self.cout)

    @property
    def input_bytes(self) -> int:
        """Bytes of the int8 input tensor."""
        return self.batch * self.h * self.w * self.cin

    @property
    def weight_bytes(self) -> int:
        """Bytes of the int8 weights (the int32 bias not included)."""
        return self.k * self.k * self.cin // self.groups * self.cout

    @property
    def output_bytes(self) -> int:
        """Bytes of the int8 output tensor."""
        return self.batch * self.out_h * self.out_w * self.cout

    def as_conv(self) -> Conv2D:
        """The layer as a convolution (itself)."""
        return self

    def group_conv(self) -> Conv2D:
        """The convolution of one group (``cin/groups -> cout/groups``, same window and name):
        what the array runs ``groups`` times. Itself when ``groups == 1``."""
        if self.groups == 1:
            return self
        return dataclasses.replace(
            self, cin=self.cin // self.groups, cout=self.cout // self.groups, groups=1
        )


@dataclass(frozen=True)
class Dense:
    """A fully connected layer (GEMM): ``y[m, n] = x[m, k] @ W[k, n] + bias[n]``, requantized.

    Parameters
    ----------
    name : str
        Label used in errors and reports.
    m : int
        Rows of ``x`` and ``y`` (tokens, or the batch).
    k : int
        Reduction length (input features).
    n : int
        Output features.
    act : {"none", "relu", "relu6"}
        Activation folded into the requantization clamp.

    Notes
    -----
    Tensors: input ``(m, k)``, weights ``(k, n)``, bias ``(n,)``, output ``(m, n)``. It lowers as
    the 1x1 convolution `as_conv` (``h=1, w=m, cin=k, cout=n``), whose NHWC tensors have the
    same bytes.
    """

    name: str
    m: int
    k: int
    n: int
    act: Activation = "none"

    def __post_init__(self) -> None:
        _check_name(self.name)
        for field in ("m", "k", "n"):
            _check_int(self.name, field, getattr(self, field), 1)
        _check_act(self.name, self.act)

    @property
    def out_h(self) -> int:
        """Output height of the equivalent convolution (1)."""
        return 1

    @property
    def out_w(self) -> int:
        """Output width of the equivalent convolution (``m``)."""
        return self.m

    @property
    def depth(self) -> int:
        """Dot-product length of one output (``k``)."""
        return self.k

    @property
    def macs(self) -> int:
        """Multiply-accumulates, ``m*k*n``."""
        return self.m * self.k * self.n

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.m, self.k)

    @property
    def weight_shape(self) -> tuple[int, int]:
        return (self.k, self.n)

    @property
    def output_shape(self) -> tuple[int, int]:
        return (self.m, self.n)

    @property
    def input_bytes(self) -> int:
        return self.m * self.k

    @property
    def weight_bytes(self) -> int:
        return self.k * self.n

    @property
    def output_bytes(self) -> int:
        return self.m * self.n

    def as_conv(self) -> Conv2D:
        """The equivalent 1x1 convolution: ``h=1, w=m, cin=k, cout=n``."""
        return Conv2D(self.name, h=1, w=self.m, cin=self.k, cout=self.n, k=1, act=self.act)


# Limits of the vector unit's window fields (rtl/isa.py: stride 2 bits, pad_t/pad_l 3 bits).
MAX_VECTOR_STRIDE = 3
MAX_VECTOR_PAD = 7


def _check_window(layer: str, kh: int, kw: int, stride: int, pad: int, h: int, w: int) -> None:
    """Stride 1..3, pad 0..7 and below the kernel, kernel no larger than the padded input."""
    if not 1 <= stride <= MAX_VECTOR_STRIDE:
        raise ValueError(f"layer {layer!r}: stride must be in 1..{MAX_VECTOR_STRIDE}, not {stride}")
    if pad > MAX_VECTOR_PAD:
        raise ValueError(f"layer {layer!r}: pad must be in 0..{MAX_VECTOR_PAD}, not {pad}")
    if pad >= min(kh, kw):
        raise ValueError(
            f"layer {layer!r}: pad={pad} must be below the kernel size {kh}x{kw}: with more "
            f"padding some outputs see only padding; use pad <= {min(kh, kw) - 1}"
        )
    for dim, size, k in (("h", h, kh), ("w", w, kw)):
        if k > size + 2 * pad:
            raise ValueError(
                f"layer {layer!r}: kernel {k} is larger than the padded input {dim}={size} + "
                f"2*pad={2 * pad}; use a smaller kernel or more padding"
            )


def _window_out(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


class _ChannelwiseShapes:
    """Shapes and int8 byte counts of a layer that keeps its ``c`` channels (NHWC), from
    ``batch, h, w, c, out_h, out_w``; ``OPERANDS`` input tensors of the same shape."""

    OPERANDS = 1

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Shape of each input tensor."""
        return (self.batch, self.h, self.w, self.c)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_h, self.out_w, self.c)

    @property
    def input_bytes(self) -> int:
        """Bytes of all int8 input tensors."""
        return self.OPERANDS * self.batch * self.h * self.w * self.c

    @property
    def weight_bytes(self) -> int:
        return 0

    @property
    def output_bytes(self) -> int:
        return self.batch * self.out_h * self.out_w * self.c


@dataclass(frozen=True)
class DepthwiseConv2D(_ChannelwiseShapes):
    """A depthwise KxK convolution: every channel convolved with its own filter, requantized.

    Parameters
    ----------
    name : str
        Label used in errors and reports.
    h, w : int
        Input height and width (pixels).
    c : int
        Channels (input and output).
    k : int
        Kernel size (KxK), any size >= 1 (the vector unit takes up to ``vector_max_kernel``).
    stride : int
        Stride in both directions, 1..3.
    pad : int
        Zero padding on every side, 0..7 and below ``k`` (the padding value is the int8 ``0``).
    batch : int
        Number of images.
    act : {"none", "relu", "relu6"}
        Activation folded into the requantization clamp.

    Notes
    -----
    Tensors: input ``(batch, h, w, c)``, weights ``(k, k, c)``, bias ``(c,)`` int32, requant
    (one channel or ``c``), output ``(batch, out_h, out_w, c)``.
    """

    name: str
    h: int
    w: int
    c: int
    k: int
    stride: int = 1
    pad: int = 0
    batch: int = 1
    act: Activation = "none"

    def __post_init__(self) -> None:
        _check_name(self.name)
        for field in ("h", "w", "c", "k", "stride", "batch"):
            _check_int(self.name, field, getattr(self, field), 1)
        _check_int(self.name, "pad", self.pad, 0)
        _check_act(self.name, self.act)
        _check_window(self.name, self.k, self.k, self.stride, self.pad, self.h, self.w)

    @property
    def kh(self) -> int:
        return self.k

    @property
    def kw(self) -> int:
        return self.k

    @property
    def out_h(self) -> int:
        """Output height, ``(h + 2*pad - k) // stride + 1``."""
        return _window_out(self.h, self.k, self.stride, self.pad)

    @property
    def out_w(self) -> int:
        """Output width, ``(w + 2*pad - k) // stride + 1``."""
        return _window_out(self.w, self.k, self.stride, self.pad)

    @property
    def depth(self) -> int:
        """Dot-product length of one output, ``k*k``."""
        return self.k * self.k

    @property
    def macs(self) -> int:
        """Multiply-accumulates, ``batch*out_h*out_w*c*k*k`` (taps over padding included)."""
        return self.batch * self.out_h * self.out_w * self.c * self.depth

    def channel_conv(self) -> Conv2D:
        """One channel as the ``cin = cout = 1`` convolution the array runs when it maps the
        layer one channel at a time (same window, batch and activation)."""
        return Conv2D(self.name, h=self.h, w=self.w, cin=1, cout=1, k=self.k, stride=self.stride,
                      pad=self.pad, batch=self.batch, act=self.act)  # fmt: skip

    @property
    def weight_shape(self) -> tuple[int, int, int]:
        return (self.k, self.k, self.c)

    @property
    def weight_bytes(self) -> int:
        """Bytes of the int8 weights (the int32 bias not included)."""
        return self.k * self.k * self.c


@dataclass(frozen=True)
class Add(_ChannelwiseShapes):
    """Element-wise add of two quantized tensors (a residual connection), requantized.

    ``acc = wrap32(bias + (a - za) * ma + (b - zb) * mb)`` then ``y = requantize(acc)``, per
    channel; `kernels.vector.add_quant_params` picks ``ma, mb`` and the requantization from the
    tensors' real scales.

    Parameters
    ----------
    name : str
        Label used in errors and reports.
    h, w, c : int
        Height, width and channels of each operand and of the output.
    batch : int
        Number of images.
    act : {"none", "relu", "relu6"}
        Activation folded into the requantization clamp.

    Notes
    -----
    Tensors: ``a``, ``b`` ``(batch, h, w, c)`` int8; zero points ``za``, ``zb`` (int8) and
    multipliers ``ma``, ``mb`` (int16), each one value or one per channel; ``bias`` ``(c,)``
    int32; ``requant`` (one channel or ``c``).
    """

    name: str
    h: int
    w: int
    c: int
    batch: int = 1
    act: Activation = "none"

    OPERANDS = 2  # a and b

    def __post_init__(self) -> None:
        _check_name(self.name)
        for field in ("h", "w", "c", "batch"):
            _check_int(self.name, field, getattr(self, field), 1)
        _check_act(self.name, self.act)

    @property
    def out_h(self) -> int:
        return self.h

    @property
    def out_w(self) -> int:
        return self.w

    @property
    def macs(self) -> int:
        """Multiplies, two per output element (``(a - za) * ma`` and ``(b - zb) * mb``)."""
        return 2 * self.batch * self.h * self.w * self.c


POOL_KINDS = ("max", "avg")


@dataclass(frozen=True)
class Pool2D(_ChannelwiseShapes):
    """Max or average pooling over ``kh x kw`` windows of every channel.

    * ``kind="max"``: ``y = max over the in-image taps`` (padding never wins; an output whose
      window is all padding would be -128, which ``pad < k`` rules out);
    * ``kind="avg"``: ``acc = bias + sum over taps`` (padding counts 0), requantized with
      ``M / 2**S ~ 1 / (kh*kw)`` (`kernels.vector.avg_pool_requant`).

    Parameters
    ----------
    name : str
        Label used in errors and reports.
    h, w, c : int
        Input height, width and channels.
    k : int
        Window height ``kh`` (and width, unless ``kw`` is given).
    stride : int
        Stride in both directions, 1..3.
    pad : int
        Padding on every side, 0..7 and below the window size.
    kind : {"max", "avg"}
    batch : int
        Number of images.
    kw : int, optional
        Window width when it differs from ``k`` (a global pool of a non-square map).

    Notes
    -----
    Tensors: max: ``input`` ``(batch, h, w, c)`` only. avg: ``input``, ``bias`` ``(c,)`` int32
    and ``requant`` (one channel or ``c``, ``act="none"``).
    """

    name: str
    h: int
    w: int
    c: int
    k: int
    stride: int = 1
    pad: int = 0
    kind: Literal["max", "avg"] = "max"
    batch: int = 1
    kw: int | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.kw is None:
            object.__setattr__(self, "kw", self.k)
        for field in ("h", "w", "c", "k", "kw", "stride", "batch"):
            _check_int(self.name, field, getattr(self, field), 1)
        _check_int(self.name, "pad", self.pad, 0)
        if self.kind not in POOL_KINDS:
            raise ValueError(
                f"layer {self.name!r}: kind must be one of {', '.join(map(repr, POOL_KINDS))}, "
                f"not {self.kind!r}"
            )
        _check_window(self.name, self.kh, self.kw, self.stride, self.pad, self.h, self.w)

    @property
    def kh(self) -> int:
        return self.k

    @property
    def act(self) -> str:
        """Pools have no activation clamp of their own."""
        return "none"

    @property
    def out_h(self) -> int:
        return _window_out(self.h, self.kh, self.stride, self.pad)

    @property
    def out_w(self) -> int:
        return _window_out(self.w, self.kw, self.stride, self.pad)

    @property
    def macs(self) -> int:
        """Window taps, ``batch*out_h*out_w*c*kh*kw`` (one compare or add each)."""
        return self.batch * self.out_h * self.out_w * self.c * self.kh * self.kw


def global_avg_pool(name: str, h: int, w: int, c: int, batch: int = 1) -> Pool2D:
    """Average over the whole ``h x w`` map of every channel: a `Pool2D` with ``kh=h, kw=w``."""
    return Pool2D(name, h=h, w=w, c=c, k=h, kw=w, stride=1, pad=0, kind="avg", batch=batch)


VECTOR_LAYERS = (DepthwiseConv2D, Add, Pool2D)

Layer = Conv2D | Dense | DepthwiseConv2D | Add | Pool2D

_WINDOW_KEYS = {"s": "stride", "p": "pad", "n": "batch", "b": "batch", "name": "name"}

# kind: (constructor, {spec key: field}, required spec keys)
_SPEC_KEYS: dict[str, tuple[Callable[..., Layer], dict[str, str], tuple[str, ...]]] = {
    "conv": (
        Conv2D,
        {
            "h": "h",
            "w": "w",
            "cin": "cin",
            "cout": "cout",
            "k": "k",
            "s": "stride",
            "p": "pad",
            "g": "groups",
            "n": "batch",
            "act": "act",
            "name": "name",
        },
        ("h", "w", "cin", "cout", "k"),
    ),
    "gemm": (
        Dense,
        {"m": "m", "k": "k", "n": "n", "act": "act", "name": "name"},
        ("m", "k", "n"),
    ),
    "dw": (
        DepthwiseConv2D,
        {"h": "h", "w": "w", "c": "c", "k": "k", "act": "act", **_WINDOW_KEYS},
        ("h", "w", "c", "k"),
    ),
    "add": (
        Add,
        {"h": "h", "w": "w", "c": "c", "n": "batch", "b": "batch", "act": "act", "name": "name"},
        ("h", "w", "c"),
    ),
    "maxpool": (
        functools.partial(Pool2D, kind="max"),
        {"h": "h", "w": "w", "c": "c", "k": "k", "kw": "kw", **_WINDOW_KEYS},
        ("h", "w", "c", "k"),
    ),
    "avgpool": (
        functools.partial(Pool2D, kind="avg"),
        {"h": "h", "w": "w", "c": "c", "k": "k", "kw": "kw", **_WINDOW_KEYS},
        ("h", "w", "c", "k"),
    ),
    "gap": (
        global_avg_pool,
        {"h": "h", "w": "w", "c": "c", "n": "batch", "b": "batch", "name": "name"},
        ("h", "w", "c"),
    ),
}
_SPEC_KEYS["dense"] = _SPEC_KEYS["gemm"]


def parse_layer_spec(text: str) -> Layer:
    """Parse a layer spec such as ``conv:h=56,w=56,cin=64,cout=64,k=3,s=1,p=1``.

    Parameters
    ----------
    text : str
        ``KIND:key=value,...``; see the module docstring or `LAYER_SPEC_HELP` for the keys.

    Returns
    -------
    Conv2D, Dense, DepthwiseConv2D, Add or Pool2D
        Named after ``name=`` if given, else after the kind (``conv``, ``gemm``, ``dw``, ...).

    Raises
    ------
    ValueError
        Unknown kind, unknown, repeated or missing keys, a value that is not an integer, or a
        layer that fails validation; the message quotes the spec and shows the syntax.
    """
    if not isinstance(text, str):
        raise TypeError(f"layer spec must be a string, not {type(text).__name__}")
    spec = text.strip()

    def fail(why: str) -> ValueError:
        return ValueError(f"layer spec {text!r}: {why}; syntax: {LAYER_SPEC_HELP}")

    kind, sep, rest = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in _SPEC_KEYS:
        kinds = ", ".join(f"{k}:" for k in _SPEC_KEYS)
        raise fail(f"unknown layer kind {kind if sep else spec!r} (want one of {kinds})")
    make, keys, required = _SPEC_KEYS[kind]
    values: dict[str, str] = {}
    for item in rest.split(","):
        item = item.strip()
        if not item:
            raise fail("empty item (a stray ',')")
        key, eq, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not eq or not value:
            raise fail(f"item {item!r} is not key=value")
        if key in values:
            raise fail(f"key {key!r} given twice")
        values[key] = value
    unknown = [k for k in values if k not in keys]
    if unknown:
        raise fail(
            f"unknown key(s) {', '.join(map(repr, unknown))} for {kind}: (valid: {', '.join(keys)})"
        )
    missing = [k for k in required if k not in values]
    if missing:
        raise fail(f"missing key(s) {', '.join(map(repr, missing))} for {kind}:")
    aliased = [f for f in set(keys.values()) if sum(keys[k] == f for k in values) > 1]
    if aliased:
        raise fail(f"{' and '.join(k for k in values if keys[k] in aliased)} set the same field")
    kwargs: dict[str, object] = {"name": values.pop("name", "gemm" if make is Dense else kind)}
    if "act" in values:
        kwargs["act"] = values.pop("act").lower()
    for key, value in values.items():
        try:
            kwargs[keys[key]] = int(value, 10)
        except ValueError:
            raise fail(f"{key}={value!r} is not an integer") from None
    try:
        return make(**kwargs)
    except (TypeError, ValueError) as exc:
        raise fail(str(exc)) from None
