"""Import an ONNX model as a Tandem `Network`: the layer graph with its shapes (weights not read).

`load_onnx` reads any model of opset 9 or later, runs `onnx.shape_inference.infer_shapes` and maps
each node to the Tandem operation that runs it, NCHW shapes turned into NHWC:

* ``Conv`` and ``QLinearConv`` -> `DepthwiseConv2D` (``group == cin == cout``) or `Conv2D`
  (with its ``group``: a grouped convolution runs on the array a few groups at a time); ``Gemm``,
  ``MatMul`` and ``QLinearMatMul`` with constant weights -> `Dense` (a MatMul over more than two
  dimensions gets a `Reshape` on either side);
* ``Add`` / ``Sum`` of two activations of one shape -> `Add`; ``MaxPool``, ``AveragePool`` ->
  `Pool2D`; ``GlobalAveragePool``, ``GlobalMaxPool`` -> a pool over the whole map;
* ``Concat`` (channels) -> `Concat`; ``Flatten``, ``Reshape``, ``Squeeze``, ``Unsqueeze`` ->
  `Flatten` or `Reshape` (or nothing when the shape does not change);
* folded into the producer, no node: ``Relu`` and ``Clip(0, 6)`` become its ``act`` (``relu``,
  ``relu6``); ``BatchNormalization`` and an ``Add``, ``Sub``, ``Mul`` or ``Div`` of a per-channel
  (or scalar) constant fold into its requantization (scale and bias). Where the producer cannot
  take them (it feeds other nodes too, it is a concat, a max pool or the network input, or its
  activation is already applied), the per-channel affine becomes a 1x1 `DepthwiseConv2D` on the
  vector unit, which computes exactly that;
* a zero ``Pad`` of height and width read only by convolutions adds to their padding; a
  ``Transpose(perm=[0, 3, 1, 2])`` of an NHWC network input (tf2onnx) leaves the input as it is;
* no-ops, which carry no MACs: ``Dropout``, ``Softmax``, ``LRN``, ``Identity``,
  ``QuantizeLinear``, ``DequantizeLinear``; nodes whose inputs are all constant (``Constant``,
  ``ConstantOfShape``, ``Shape`` of a static tensor, weight reshapes) fold away.

Everything else, and any attribute Tandem cannot honour exactly (dilations, non-square kernels,
unequal strides, asymmetric padding or ``ceil_mode`` that change the output size, ...), is
collected, and one `ValueError` lists every such node by name and op type with the reason.
Padding: Tandem pads every side alike, so a node's begin pads become ``pad``; end pads that
differ are accepted only where they leave the output size unchanged (the extra rows are never
read, so the result is exact).

Conventions: images are NCHW in ONNX and NHWC in Tandem; a flatten of an image lists its
elements in NHWC order, which differs from ONNX's by a fixed permutation of the next dense
layer's weight rows (the graph holds no weights, so only the shapes matter). Symbolic batch
dimensions become ``batch`` (default 1) and symbolic image sizes ``input_size``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kernels.layers import Add, Conv2D, Dense, DepthwiseConv2D, Pool2D, global_avg_pool

from .workloads import INPUT, Concat, Flatten, Network, Node, Op, Reshape, conv2d

if TYPE_CHECKING:  # onnx takes most of a second to import: only load_onnx imports it
    import onnx

__all__ = ["MIN_OPSET", "SUPPORTED_OPS", "load_onnx"]

#: The oldest default-domain opset `load_onnx` reads.
MIN_OPSET = 9

_NO_OPS = ("Dropout", "Softmax", "LRN", "Identity", "QuantizeLinear", "DequantizeLinear")
_VIEWS = ("Flatten", "Reshape", "Squeeze", "Unsqueeze")
_ELEMENTWISE = ("Add", "Sum", "Sub", "Mul", "Div")
#: Op types `load_onnx` maps (others are listed as unsupported).
SUPPORTED_OPS = (
    "Conv",
    "QLinearConv",
    "Gemm",
    "MatMul",
    "QLinearMatMul",
    *_ELEMENTWISE,
    "Relu",
    "Clip",
    "BatchNormalization",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Concat",
    *_VIEWS,
    "Pad",
    "Transpose",
    *_NO_OPS,
    "Constant",
    "ConstantOfShape",
    "Shape",
)
_REQUANTIZED = (Conv2D, Dense, DepthwiseConv2D, Add)  # ops with an act and a requantization
_FLOAT_MAX = 3.0e38  # Clip's opset-6 default max is FLT_MAX


class _Unsupported(Exception):
    """A node Tandem cannot run exactly; the message is the reason (may be empty)."""


@dataclass
class _Rec:
    """A Tandem node under construction; ``tail`` is the ONNX tensor its output currently is."""

    op: Op
    inputs: tuple[str, ...]
    tail: str


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    import onnx

    out = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _fmt(values: object) -> str:
    return str([int(v) for v in values]) if isinstance(values, (list, tuple)) else str(values)


class _Importer:
    def __init__(self, model: onnx.ModelProto, label: str, name: str) -> None:
        import onnx
        from onnx import numpy_helper

        self.model = model
        self.label = label
        self.name = name
        graph = model.graph
        self.shapes: dict[str, tuple[int, ...] | None] = {}
        for vi in (*graph.input, *graph.value_info, *graph.output):
            self.shapes[vi.name] = self._vi_shape(vi)
        # Constants, with their value where it is small (Clip bounds); weights stay unread.
        self.values: dict[str, np.ndarray | None] = {}
        for init in graph.initializer:
            self.shapes[init.name] = tuple(init.dims)
            small = init.data_location != onnx.TensorProto.EXTERNAL and math.prod(init.dims) <= 16
            self.values[init.name] = numpy_helper.to_array(init) if small else None
        self.uses: dict[str, int] = {}
        for node in graph.node:
            for t in node.input:
                self.uses[t] = self.uses.get(t, 0) + 1
        for out in graph.output:
            self.uses[out.name] = self.uses.get(out.name, 0) + 1
        self.src: dict[str, str] = {}  # ONNX activation tensor -> Tandem node (or INPUT)
        self.poisoned: set[str] = set()
        self.recs: dict[str, _Rec] = {}
        self.names: set[str] = {INPUT}
        self.problems: list[str] = []
        self.checking = False  # downstream of an unsupported node: check, do not build
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for t in node.input:
                self.consumers.setdefault(t, []).append(node)
        self.padded: dict[str, list[int]] = {}  # Pad output -> (top, left, bottom, right)
        self.sources: dict[str, str] = {}  # Pad output -> Pad input
        self.input_nhwc = False  # the input is NHWC, transposed to NCHW by its one reader

    # ------------------------------------------------------------------ tensors
    @staticmethod
    def _vi_shape(vi: onnx.ValueInfoProto) -> tuple[int, ...] | None:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            return None
        dims = tuple(d.dim_value if d.HasField("dim_value") else 0 for d in t.shape.dim)
        return None if any(d <= 0 for d in dims) else dims

    def shape(self, t: str) -> tuple[int, ...]:
        s = self.shapes.get(t)
        if s is None:
            raise _Unsupported(f"shape inference gave no static shape for tensor {t!r}")
        return s

    @staticmethod
    def nhwc(s: tuple[int, ...]) -> tuple[int, ...]:
        return (s[0], s[2], s[3], s[1]) if len(s) == 4 else s

    def const(self, t: str) -> bool:
        return t in self.values

    def value(self, t: str) -> np.ndarray | None:
        return self.values.get(t)

    def unique(self, node: onnx.NodeProto, suffix: str = "") -> str:
        base = re.sub(r"[\s,=:]+", "_", (node.name or node.output[0]) + suffix) or "node"
        name, i = base, 2
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    # ------------------------------------------------------------------ graph edits
    def add(self, op: Op, inputs: tuple[str, ...], out: str) -> str:
        """Append ``op`` reading ONNX tensors ``inputs``; its output is tensor ``out``."""
        if self.checking:
            return self.put(op, (), out)
        return self.put(op, tuple(self.src[t] for t in inputs), out)

    def put(self, op: Op, srcs: tuple[str, ...], out: str) -> str:
        """Append ``op`` reading Tandem nodes ``srcs``; its output is tensor ``out``."""
        if self.checking:
            self.poisoned.add(out)
            return op.name
        self.recs[op.name] = _Rec(op, srcs, out)
        self.src[out] = op.name
        return op.name

    def producer(self, t: str) -> tuple[str, _Rec | None, bool]:
        """(Tandem source, its record, whether ``t`` is its output alone)."""
        p = self.src[t]
        rec = self.recs.get(p)
        alone = rec is not None and rec.tail == t and self.uses.get(t, 0) == 1
        return p, rec, alone

    def alias(self, t: str, out: str) -> None:
        if self.checking:
            self.poisoned.add(out)
            return
        self.src[out] = self.src[t]
        _, rec, alone = self.producer(t)
        if alone:
            rec.tail = out

    def fold_act(self, node: onnx.NodeProto, act: str, t: str, out: str) -> None:
        if self.checking:
            self.poisoned.add(out)
            return
        p, rec, alone = self.producer(t)
        if rec is None or not isinstance(rec.op, _REQUANTIZED) or not alone:
            what = "the network input" if p == INPUT else f"{p!r} ({type(rec.op).__name__})"
            why = "" if rec is None or alone else ", which feeds other nodes too"
            raise _Unsupported(
                f"reads {what}{why}: Tandem applies ReLU/ReLU6 in the requantization clamp of "
                "the conv, dense, depthwise or add that produces the tensor"
            )
        old = rec.op.act
        new = "relu6" if "relu6" in (old, act) else "relu"
        rec.op = dataclasses.replace(rec.op, act=new)
        rec.tail = out
        self.src[out] = p

    def fold_affine(self, node: onnx.NodeProto, t: str, out: str) -> None:
        if self.checking:
            self.poisoned.add(out)
            return
        p, rec, alone = self.producer(t)
        foldable = rec is not None and alone
        if foldable and isinstance(rec.op, _REQUANTIZED):
            foldable = rec.op.act == "none"
        elif foldable:
            foldable = isinstance(rec.op, Pool2D) and rec.op.kind == "avg"
        if foldable:
            rec.tail = out
            self.src[out] = p
            return
        s = self.shape(t)
        if len(s) != 4:
            raise _Unsupported(
                f"a per-channel affine of {p!r}, which cannot take it into its requantization, "
                f"on a rank-{len(s)} tensor (a 1x1 depthwise needs an image)"
            )
        n, c, h, w = s
        op = DepthwiseConv2D(self.unique(node), h=h, w=w, c=c, k=1, batch=n)
        self.add(op, (t,), out)

    # ------------------------------------------------------------------ node handlers
    def window(
        self,
        node: onnx.NodeProto,
        a: dict,
        kernel: tuple[int, int],
        x: tuple[int, ...],
        extra: list[int] | None = None,
    ) -> tuple[int, list[int], list[str], str]:
        """(stride, pads, reasons, what a size mismatch means) of a conv or pool window.

        ``extra`` are the (top, left, bottom, right) pads of a ``Pad`` node before it."""
        reasons = []
        strides = list(a.get("strides", [1, 1]))
        if len(set(strides)) != 1:
            reasons.append(f"strides {_fmt(strides)}; Tandem strides both directions alike")
        dil = list(a.get("dilations", [1, 1]))
        if any(d != 1 for d in dil):
            kind = "convolutions" if "Conv" in node.op_type else "pools"
            reasons.append(f"dilations {_fmt(dil)}; Tandem {kind} are not dilated")
        auto = a.get("auto_pad", "NOTSET")
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0] * 4
            for i in range(2):
                size, s = x[2 + i], strides[i]
                total = max((math.ceil(size / s) - 1) * s + kernel[i] - size, 0)
                small, big = total // 2, total - total // 2
                pads[i], pads[2 + i] = (small, big) if auto == "SAME_UPPER" else (big, small)
        elif auto == "VALID":
            pads = [0] * 4
        else:
            pads = list(a.get("pads", [0, 0, 0, 0]))
        if extra:
            pads = [p + e for p, e in zip(pads, extra, strict=True)]
        if pads[0] != pads[1]:
            reasons.append(
                f"pads {_fmt(pads)} differ between height and width; Tandem pads all sides alike"
            )
        mismatch = []
        if pads[:2] != pads[2:]:
            origin = f" (auto_pad {auto})" if auto != "NOTSET" else ""
            mismatch.append(f"pads {_fmt(pads)}{origin} are asymmetric")
        if a.get("ceil_mode", 0):
            mismatch.append("ceil_mode=1 rounds the output size up")
        why = " and ".join(mismatch) or "its output size differs from Tandem's"
        why += "; Tandem pads all sides alike and rounds down, which changes the output size"
        return strides[0], pads, reasons, why

    def conv(self, node: onnx.NodeProto, quantized: bool) -> None:
        x, w = (node.input[0], node.input[3]) if quantized else (node.input[0], node.input[1])
        out = node.output[0]
        if not self.const(w) or self.const(x):
            raise _Unsupported("weights are not a constant; Tandem convolutions have weights")
        xs, ys, ws = self.shape(x), self.shape(out), self.shape(w)
        if len(xs) != 4:
            raise _Unsupported(f"a {len(xs) - 2}-D convolution; Tandem convolutions are 2-D")
        a = _attrs(node)
        kernel = tuple(a.get("kernel_shape", ws[2:]))
        stride, pads, reasons, why = self.window(node, a, kernel, xs, self.padded.get(x))
        if x in self.padded:  # the layer reads the tensor before the Pad node
            xs = self.shape(self.sources[x])
        pad = pads[0]
        if kernel[0] != kernel[1]:
            reasons.append(f"kernel_shape {_fmt(kernel)}; Tandem convolutions are square")
        n, cin, h, wd = xs
        cout, g = ys[1], a.get("group", 1)
        if reasons:
            raise _Unsupported("; ".join(reasons))
        try:
            op = conv2d(self.unique(node), h, wd, cin, cout, kernel[0], stride, pad, g)
            op = dataclasses.replace(op, batch=n)
        except ValueError as exc:
            raise _Unsupported(str(exc)) from None
        if op.output_shape != self.nhwc(ys):
            raise _Unsupported(why)
        self.add(op, (x,), out)

    def pool(self, node: onnx.NodeProto) -> None:
        x, out = node.input[0], node.output[0]
        xs, ys = self.shape(x), self.shape(out)
        if len(xs) != 4:
            raise _Unsupported(f"a {len(xs) - 2}-D pool; Tandem pools are 2-D")
        if len(node.output) > 1 and self.uses.get(node.output[1], 0):
            raise _Unsupported("its indices output is used; Tandem pools return values only")
        a = _attrs(node)
        kind = "max" if node.op_type == "MaxPool" else "avg"
        n, c, h, w = xs
        kh, kw = a["kernel_shape"]
        stride, pads, reasons, why = self.window(node, a, (kh, kw), xs)
        pad = pads[0]
        include_pad = a.get("count_include_pad", 0)
        # A single window from the top-left corner that covers the map is a global pool
        # (for an average, when the padding it covers does not count).
        one_window = (
            ys[2:] == (1, 1)
            and pads[:2] == [0, 0]
            and kh >= h
            and kw >= w
            and all(d == 1 for d in a.get("dilations", [1, 1]))
            and (kind == "max" or not include_pad or (kh, kw) == (h, w))
        )
        if kind == "avg" and pad and not include_pad:
            reasons.append(
                f"count_include_pad=0 with pads {_fmt(pads)}: border windows average fewer taps; "
                f"Tandem divides every window by {kh}x{kw}"
            )
        op = None
        if not reasons:
            try:
                op = Pool2D(
                    "pool",  # named below, once it fits
                    h=h,
                    w=w,
                    c=c,
                    k=kh,
                    kw=kw,
                    stride=stride,
                    pad=pad,
                    kind=kind,
                    batch=n,
                )
            except ValueError as exc:
                reasons.append(str(exc).removeprefix("layer 'pool': "))
        if op is not None and op.output_shape == self.nhwc(ys):
            self.add(dataclasses.replace(op, name=self.unique(node)), (x,), out)
        elif one_window:
            self.global_pool(node, kind)
        else:
            raise _Unsupported("; ".join(reasons) or why)

    def global_pool(self, node: onnx.NodeProto, kind: str) -> None:
        x, out = node.input[0], node.output[0]
        xs = self.shape(x)
        if len(xs) != 4:
            raise _Unsupported(f"a global pool over rank {len(xs)}; Tandem pools images")
        n, c, h, w = xs
        name = self.unique(node)
        if kind == "avg":
            op = global_avg_pool(name, h=h, w=w, c=c, batch=n)
        else:
            op = Pool2D(name, h=h, w=w, c=c, k=h, kw=w, kind="max", batch=n)
        self.add(op, (x,), out)

    def dense(self, node: onnx.NodeProto) -> None:
        t = node.op_type
        a = _attrs(node) if t == "Gemm" else {}
        x, w = (node.input[0], node.input[3]) if t == "QLinearMatMul" else node.input[:2]
        out = node.output[0]
        if self.const(x) or not self.const(w):
            what = "two activations" if not self.const(w) else "a constant by an activation"
            raise _Unsupported(
                f"multiplies {what}; Tandem's dense layer multiplies an activation by constant "
                "weights on its right"
            )
        if a.get("transA", 0):
            raise _Unsupported("transA=1; Tandem's dense layer reads its input as (m, k)")
        xs, ws = self.shape(x), self.shape(w)
        if len(ws) != 2 or len(xs) < 2:
            raise _Unsupported(
                f"a product of shapes {list(xs)} and {list(ws)}; Tandem's dense layer "
                "multiplies (m, k) by (k, n)"
            )
        k, n = (ws[1], ws[0]) if a.get("transB", 0) else ws
        m = math.prod(xs[:-1])
        name = self.unique(node)
        if len(xs) == 2:
            self.add(Dense(name, m=m, k=k, n=n), (x,), out)
            return
        flat = self.add(Reshape(self.unique(node, ".in"), (m, k)), (x,), out)
        y = self.put(Dense(name, m=m, k=k, n=n), (flat,), out)
        self.put(Reshape(self.unique(node, ".out"), (*xs[:-1], n)), (y,), out)

    def elementwise(self, node: onnx.NodeProto) -> None:
        t, out = node.op_type, node.output[0]
        acts = [i for i in node.input if i and not self.const(i)]
        consts = [i for i in node.input if i and self.const(i)]
        if len(acts) == 1 and not consts:  # a Sum of one tensor
            self.alias(acts[0], out)
            return
        if len(acts) == 2 and not consts:
            if t not in ("Add", "Sum"):
                raise _Unsupported(
                    f"an element-wise {t} of two activations; Tandem's vector unit adds tensors, "
                    "it does not subtract, multiply or divide them"
                )
            sa, sb = self.shape(acts[0]), self.shape(acts[1])
            if sa != sb:
                raise _Unsupported(
                    f"broadcasts {list(sa)} with {list(sb)}; Tandem adds tensors of one shape"
                )
            if len(sa) != 4:
                raise _Unsupported(f"adds rank-{len(sa)} tensors; Tandem's add reads images")
            n, c, h, w = sa
            self.add(Add(self.unique(node), h=h, w=w, c=c, batch=n), tuple(acts), out)
            return
        if len(acts) != 1:
            raise _Unsupported(f"{len(acts)} activation operands; Tandem adds two")
        x = acts[0]
        if t in ("Sub", "Div") and node.input[0] != x:
            raise _Unsupported(f"a constant {t.lower()}ided by the activation; not an affine map")
        xs = self.shape(x)
        for ci in consts:
            cs = self.shape(ci) if self.shapes.get(ci) is not None else ()
            if len(cs) > len(xs):
                raise _Unsupported(f"constant {ci!r} {list(cs)} has more dimensions than {xs}")
            aligned = (1,) * (len(xs) - len(cs)) + tuple(cs)
            axis = 1 if len(xs) == 4 else len(xs) - 1
            if any(d != 1 for i, d in enumerate(aligned) if i != axis):
                raise _Unsupported(
                    f"constant {ci!r} of shape {list(cs)} is not per-channel; Tandem folds a "
                    "scalar or per-channel constant into a requantization"
                )
        self.fold_affine(node, x, out)

    def batchnorm(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        if self.const(x) or not all(self.const(i) for i in node.input[1:] if i):
            raise _Unsupported("its scale, bias, mean and variance are not all constants")
        if any(self.uses.get(o, 0) for o in node.output[1:] if o):
            raise _Unsupported("its running statistics are used (training mode)")
        self.fold_affine(node, x, node.output[0])

    def clip(self, node: onnx.NodeProto) -> None:
        a = _attrs(node)
        lo, hi = a.get("min", -_FLOAT_MAX), a.get("max", _FLOAT_MAX)
        for i, attr in ((1, "min"), (2, "max")):
            if len(node.input) > i and node.input[i]:
                value = self.value(node.input[i])
                if value is None:
                    raise _Unsupported(f"its {attr} is not a constant; Tandem clamps to constants")
                if attr == "min":
                    lo = float(np.asarray(value).reshape(-1)[0])
                else:
                    hi = float(np.asarray(value).reshape(-1)[0])
        if lo == 0 and hi == 6:
            act = "relu6"
        elif lo == 0 and hi >= _FLOAT_MAX:
            act = "relu"
        else:
            bounds = f"{lo:g}, {'inf' if hi >= _FLOAT_MAX else f'{hi:g}'}"
            raise _Unsupported(f"Clip({bounds}); Tandem clamps as ReLU (0, inf) or ReLU6 (0, 6)")
        self.fold_act(node, act, node.input[0], node.output[0])

    def concat(self, node: onnx.NodeProto) -> None:
        ins, out = list(node.input), node.output[0]
        if any(self.const(i) for i in ins):
            raise _Unsupported("one operand is a constant; Tandem concatenates activations")
        if len(ins) == 1:
            self.alias(ins[0], out)
            return
        rank = len(self.shape(ins[0]))
        axis = _attrs(node).get("axis", 1)
        if rank != 4 or axis % rank != 1:
            raise _Unsupported(
                f"axis {axis} of rank-{rank} tensors; Tandem concatenates images along channels"
            )
        self.add(Concat(self.unique(node)), tuple(ins), out)

    def view(self, node: onnx.NodeProto) -> None:
        x, out = node.input[0], node.output[0]
        xs, ys = self.shape(x), self.shape(out)
        if xs == ys:
            self.alias(x, out)
            return
        if len(xs) == 4 and len(ys) == 2 and ys[0] == xs[0]:
            self.add(Flatten(self.unique(node)), (x,), out)
            return

        def plain(s: tuple[int, ...]) -> bool:  # same element order in NCHW and NHWC
            return len(s) != 4 or s[1] == 1 or s[2] * s[3] == 1

        into_image = len(xs) == 2 and len(ys) == 4 and xs[0] == ys[0]
        if not (plain(xs) and plain(ys)) and not into_image:
            raise _Unsupported(
                f"views the NCHW tensor {list(xs)} as {list(ys)}, whose element order differs "
                "in Tandem's NHWC layout"
            )
        self.add(Reshape(self.unique(node), self.nhwc(ys)), (x,), out)

    def pad(self, node: onnx.NodeProto) -> None:
        """A zero ``Pad`` of the spatial axes, folded into the convolutions that read it."""
        x, out = node.input[0], node.output[0]
        a = _attrs(node)
        xs = self.shape(x)
        mode = a.get("mode", "constant")
        if "pads" in a:  # before opset 11
            pads, value = list(a["pads"]), a.get("value", 0.0)
        else:
            pads = self.value(node.input[1]) if len(node.input) > 1 else None
            value = 0.0
            if len(node.input) > 2 and node.input[2]:
                value = self.value(node.input[2])
                value = None if value is None else float(np.asarray(value).reshape(-1)[0])
            if pads is not None and len(node.input) > 3 and node.input[3]:
                axes = self.value(node.input[3])
                if axes is None:
                    raise _Unsupported("its axes are not a constant")
                full = [0] * (2 * len(xs))
                for i, ax in enumerate(int(v) % len(xs) for v in np.asarray(axes).reshape(-1)):
                    full[ax], full[len(xs) + ax] = int(pads[i]), int(pads[len(pads) // 2 + i])
                pads = full
        if pads is None or value is None:
            raise _Unsupported("its pads or value are not constants")
        pads = [int(p) for p in np.asarray(pads).reshape(-1)]
        reasons = []
        if mode != "constant" or value != 0:
            reasons.append(f"mode {mode} with value {value:g}; Tandem pads with zeros")
        if len(xs) != 4 or any(pads[i] for i in (0, 1, 4, 5)):
            reasons.append(f"pads {pads} pad other axes than height and width")
        readers = self.consumers.get(out, [])
        if not readers or any(
            r.op_type not in ("Conv", "QLinearConv") or r.input[0] != out for r in readers
        ):
            reasons.append("it feeds other nodes than convolutions, which alone pad in Tandem")
        if reasons:
            raise _Unsupported("; ".join(reasons))
        self.padded[out] = [pads[2], pads[3], pads[6], pads[7]]
        self.sources[out] = x
        self.alias(x, out)

    def transpose(self, node: onnx.NodeProto) -> None:
        x, out = node.input[0], node.output[0]
        perm = list(_attrs(node).get("perm", []))
        if x == self.input and perm == [0, 3, 1, 2] and self.uses.get(x) == 1:
            self.input_nhwc = True  # an NHWC input made NCHW: Tandem reads it as it is
            self.alias(x, out)
            return
        raise _Unsupported(
            f"perm {perm}; Tandem transposes nothing but an NHWC network input to NCHW"
        )

    def handle(self, node: onnx.NodeProto) -> None:
        t = node.op_type
        if t in ("Conv", "QLinearConv"):
            self.conv(node, quantized=t == "QLinearConv")
        elif t in ("Gemm", "MatMul", "QLinearMatMul"):
            self.dense(node)
        elif t in _ELEMENTWISE:
            self.elementwise(node)
        elif t == "BatchNormalization":
            self.batchnorm(node)
        elif t == "Relu":
            self.fold_act(node, "relu", node.input[0], node.output[0])
        elif t == "Clip":
            self.clip(node)
        elif t in ("MaxPool", "AveragePool"):
            self.pool(node)
        elif t in ("GlobalAveragePool", "GlobalMaxPool"):
            self.global_pool(node, "avg" if t == "GlobalAveragePool" else "max")
        elif t == "Concat":
            self.concat(node)
        elif t in _VIEWS:
            self.view(node)
        elif t == "Pad":
            self.pad(node)
        elif t == "Transpose":
            self.transpose(node)
        elif t in _NO_OPS:
            if t == "Dropout" and len(node.output) > 1 and self.uses.get(node.output[1], 0):
                raise _Unsupported("its mask output is used")
            self.alias(node.input[0], node.output[0])
        else:
            raise _Unsupported("")

    # ------------------------------------------------------------------ driver
    def run(self) -> Network:
        graph = self.model.graph
        inits = {i.name for i in graph.initializer}
        data = [i for i in graph.input if i.name not in inits]
        if len(data) != 1:
            names = ", ".join(repr(i.name) for i in data) or "none"
            raise ValueError(
                f"model {self.label!r}: Tandem networks read one input tensor, this model has "
                f"{len(data)} ({names})"
            )
        x = self.input = data[0].name
        self.src[x] = INPUT
        for node in graph.node:
            self.visit(node)
        input_shape = self.shapes[x] if self.input_nhwc else self.nhwc(self.shapes[x])
        if self.problems:
            n = len(self.problems)
            raise ValueError(
                f"model {self.label!r}: {n} unsupported node{'s' if n > 1 else ''}: "
                f"{', '.join(self.problems)}. Tandem imports the ops and attributes listed in "
                "docs/workloads.md (mapping.onnx_import.SUPPORTED_OPS)"
            )
        if not self.recs:
            raise ValueError(f"model {self.label!r} has no layer Tandem runs (no conv, dense, ...)")
        nodes = tuple(Node(r.op, r.inputs) for r in self.recs.values())
        return Network(self.name, input_shape, nodes)

    def visit(self, node: onnx.NodeProto) -> None:
        t = node.op_type
        label = f"{node.name or node.output[0]!r} ({t}"
        if node.domain not in ("", "ai.onnx"):
            self.problems.append(f"{label} in domain {node.domain!r})")
            return
        ins = [i for i in node.input if i]
        if (
            t == "Constant"
            or all(self.const(i) for i in ins)
            or (t == "Shape" and self.shapes.get(ins[0]) is not None)
        ):
            value = None
            if t == "Constant":
                import onnx
                from onnx import numpy_helper

                try:
                    value = numpy_helper.to_array(node.attribute[0].t)
                except Exception:  # value_float(s), value_int(s): numbers, not tensors
                    value = np.asarray(onnx.helper.get_attribute_value(node.attribute[0]))
            for o in node.output:
                self.values[o] = value
            return
        missing = [i for i in ins if not self.const(i) and i not in self.src]
        if missing and not all(i in self.poisoned for i in missing):
            unknown = [i for i in missing if i not in self.poisoned]
            raise ValueError(
                f"model {self.label!r}: node {node.name!r} reads {unknown}, which no earlier "
                "node produces; the graph must be in topological order"
            )
        self.checking = bool(missing)  # downstream of an unsupported node: check, do not build
        try:
            self.handle(node)
        except _Unsupported as exc:
            self.problems.append(f"{label}: {exc})" if str(exc) else f"{label})")
            self.poisoned.update(node.output)


def _fix_input(
    model: onnx.ModelProto, label: str, batch: int | None, size: tuple[int, int] | None
) -> None:
    """Give the input's symbolic dimensions their values: batch (default 1) and image size."""
    inits = {i.name for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        if not vi.type.tensor_type.HasField("shape") or not dims:
            raise ValueError(
                f"model {label!r}: input {vi.name!r} has no shape; Tandem needs a static input "
                "shape such as (batch, channels, height, width)"
            )
        want = {0: ("batch", batch, 1)}
        if len(dims) == 4:
            readers = [n for n in model.graph.node if vi.name in n.input]
            nhwc = len(readers) == 1 and readers[0].op_type == "Transpose"
            nhwc = nhwc and list(_attrs(readers[0]).get("perm", [])) == [0, 3, 1, 2]
            hw = (1, 2) if nhwc else (2, 3)
            for axis, i in zip(hw, (0, 1), strict=True):
                want[axis] = ("input_size", None if size is None else size[i], None)
        for i, d in enumerate(dims):
            what, given, default = want.get(i, (None, None, None))
            if d.HasField("dim_value") and d.dim_value > 0:
                if given is not None and d.dim_value != given:
                    raise ValueError(
                        f"model {label!r}: input {vi.name!r} has a fixed dimension {i} of "
                        f"{d.dim_value}, which {what}={given} cannot change; leave {what} unset"
                    )
                continue
            value = given if given is not None else default
            if value is None:
                hint = "pass input_size=(height, width)" if what else "export the model static"
                raise ValueError(
                    f"model {label!r}: input {vi.name!r} dimension {i} is symbolic "
                    f"({d.dim_param or '?'!r}); Tandem needs a static shape: {hint}"
                )
            d.Clear()
            d.dim_value = value


def load_onnx(
    path_or_modelproto: str | os.PathLike | onnx.ModelProto,
    *,
    batch: int | None = None,
    input_size: int | tuple[int, int] | None = None,
    name: str | None = None,
) -> Network:
    """Read an ONNX model as a `Network` of Tandem layers (shapes only, weights are not read).

    Parameters
    ----------
    path_or_modelproto : str, path or onnx.ModelProto
        An ``.onnx`` file (external weight files need not be present) or a loaded model.
    batch : int, optional
        The batch for a symbolic batch dimension (default 1). A model whose batch is fixed
        keeps it; a different ``batch`` is an error.
    input_size : int or (int, int), optional
        Height and width for symbolic image dimensions of an NCHW input.
    name : str, optional
        The network's name; default the file's stem, else the graph's name.

    Returns
    -------
    Network
        Nodes in the model's order, NHWC shapes; see the module docstring for the mapping.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Not an ONNX model, an opset below 9, an input that is missing, not single or not
        static, or unsupported nodes: one error lists them all, each with its name, op type and
        reason.
    """
    import onnx
    from onnx import shape_inference

    if isinstance(path_or_modelproto, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(path_or_modelproto)
        label = name or model.graph.name or "model"
        default_name = model.graph.name or "onnx"
    else:
        path = Path(path_or_modelproto)
        label, default_name = str(path), path.stem
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {str(path)!r} does not exist")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ValueError(
                f"{str(path)!r} is not an ONNX model ({type(exc).__name__}: {exc}); give a "
                ".onnx file written by onnx.save or an exporter"
            ) from None
    if model.ir_version < 1 or not model.graph.node:
        raise ValueError(
            f"{label!r} is not an ONNX model (no IR version or no nodes); give a .onnx file "
            "written by onnx.save or an exporter"
        )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    if opset < MIN_OPSET:
        raise ValueError(
            f"model {label!r}: opset {opset} is older than {MIN_OPSET}; convert it first with "
            "onnx.version_converter.convert_version(model, 13)"
        )
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise ValueError(f"batch must be a positive integer, not {batch!r}")
    if input_size is not None:
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        if len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(
                f"input_size must be a positive integer or (height, width), not {input_size!r}"
            )
        input_size = size
    _fix_input(model, label, batch, input_size)
    try:
        model = shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:
        raise ValueError(f"model {label!r}: ONNX shape inference failed: {exc}") from None
    return _Importer(model, label, name or default_name).run()
