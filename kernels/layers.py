"""Layer descriptions: what the lowering, the golden models and the cost model agree on.

Two layer kinds, both frozen dataclasses validated at construction:

* `Conv2D` -- a square KxK convolution over NHWC int8 activations with HWIO weights
  (``(k, k, cin, cout)``), an int32 bias per output channel and a requantized int8 output;
* `Dense` -- a GEMM ``y[m, n] = x[m, k] @ W[k, n] + bias[n]``, lowered as a 1x1 convolution over
  an image of height 1 and width ``m`` (`Dense.as_conv`).

Layer spec syntax (the ``tandem`` command line quotes `LAYER_SPEC_HELP`)::

    conv:h=H,w=W,cin=CIN,cout=COUT,k=K[,s=1][,p=0][,n=1][,act=none][,name=NAME]
    gemm:m=M,k=K,n=N[,act=none][,name=NAME]          (dense: is an alias of gemm:)

``s`` is the stride, ``p`` the zero padding on every side, ``n`` the batch; ``act`` is one of
``none``, ``relu``, ``relu6``. Keys may come in any order; spaces around items are ignored.
Examples: ``conv:h=56,w=56,cin=64,cout=64,k=3,s=1,p=1,act=relu`` and ``gemm:m=100,k=70,n=30``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .requant import ACTIVATIONS

__all__ = ["LAYER_SPEC_HELP", "Conv2D", "Dense", "Layer", "parse_layer_spec"]

Activation = Literal["none", "relu", "relu6"]

LAYER_SPEC_HELP = (
    "conv:h=H,w=W,cin=CIN,cout=COUT,k=K[,s=1][,p=0][,n=1][,act=none|relu|relu6][,name=NAME] "
    "(KxK convolution, NHWC int8; s stride, p zero padding, n batch) or "
    "gemm:m=M,k=K,n=N[,act=none|relu|relu6][,name=NAME] (y[m,n] = x[m,k] @ W[k,n] + bias); "
    "e.g. conv:h=56,w=56,cin=64,cout=64,k=3,s=1,p=1,act=relu or gemm:m=100,k=70,n=30"
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

    Notes
    -----
    Tensors: input ``(batch, h, w, cin)``, weights ``(k, k, cin, cout)``, bias ``(cout,)``,
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

    def __post_init__(self) -> None:
        _check_name(self.name)
        for field in ("h", "w", "cin", "cout", "k", "stride", "batch"):
            _check_int(self.name, field, getattr(self, field), 1)
        _check_int(self.name, "pad", self.pad, 0)
        _check_act(self.name, self.act)
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
        """Dot-product length of one output, ``k*k*cin``."""
        return self.k * self.k * self.cin

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the layer, ``batch*out_h*out_w*cout*k*k*cin``.

        Every kernel tap counts (taps over the zero border too), but not the lanes the array
        wastes when ``cin`` or ``cout`` is not a multiple of its size.
        """
        return self.batch * self.out_h * self.out_w * self.cout * self.depth

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.h, self.w, self.cin)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.k, self.k, self.cin, self.cout)

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
        return self.k * self.k * self.cin * self.cout

    @property
    def output_bytes(self) -> int:
        """Bytes of the int8 output tensor."""
        return self.batch * self.out_h * self.out_w * self.cout

    def as_conv(self) -> Conv2D:
        """The layer as a convolution (itself)."""
        return self


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


Layer = Conv2D | Dense

# kind: (class, {spec key: field}, required spec keys)
_SPEC_KEYS: dict[str, tuple[type, dict[str, str], tuple[str, ...]]] = {
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
    Conv2D or Dense
        Named after ``name=`` if given, else after the kind (``conv``, ``gemm``).

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
        raise fail(f"unknown layer kind {kind if sep else spec!r} (want conv:, gemm: or dense:)")
    cls, keys, required = _SPEC_KEYS[kind]
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
    kwargs: dict[str, object] = {"name": values.pop("name", "gemm" if cls is Dense else kind)}
    if "act" in values:
        kwargs["act"] = values.pop("act").lower()
    for key, value in values.items():
        try:
            kwargs[keys[key]] = int(value, 10)
        except ValueError:
            raise fail(f"{key}={value!r} is not an integer") from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise fail(str(exc)) from None
