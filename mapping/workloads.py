"""Workloads: a network as a graph of layers, with shapes, MAC, parameter and byte counts.

A `Network` is a name, an input shape (NHWC, batch first) and a tuple of `Node` in topological
order. A node wraps one operation and names the nodes it reads (``"input"`` is the network's
input); a residual add reads two nodes, a concat two or more. Operations are

* the layers of `kernels.layers`: `Conv2D` and `Dense` run on the systolic array;
  `DepthwiseConv2D`, `Add` and `Pool2D` on the vector unit;
* shape-only operations defined here, which carry no MACs and move no data: `Concat` (along
  channels; the producers write into channel slices of one buffer), `Flatten` and `Reshape`
  (views of a C-contiguous tensor), and `Source`, a tensor of a given shape that a layer reads
  from memory when the graph does not say who produced it (the layer lists of a SCALE-Sim
  topology, `mapping.scalesim`).

`conv2d` turns a convolution with ``groups`` into the layer kind that runs it (``groups == cin
== cout``: a `DepthwiseConv2D`, for the vector unit; any other: a `Conv2D` with those groups, on
the array one group at a time). `NetworkBuilder` infers every layer's input size from its
producer, which is how `mapping.zoo` writes its networks.

Counting conventions (`NodeStats`):

* ``macs``: multiply-accumulates of the layers with weights (convolutions, depthwise, dense),
  every kernel tap counted, the figure papers publish as "multiply-adds";
* ``vector_ops``: the element-wise work of adds (two multiplies per element) and pools (one
  compare or add per window tap), not included in ``macs``;
* ``params``: weights plus one bias per output channel (batch norm folded into the bias);
* bytes: int8 tensors, ``input_bytes`` counting every operand, ``weight_bytes`` the int8
  weights (the int32 bias not included); shape operations count no bytes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from kernels.layers import (
    Activation,
    Add,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    Pool2D,
    _check_name,
    global_avg_pool,
)

__all__ = [
    "INPUT",
    "Concat",
    "Flatten",
    "Network",
    "NetworkBuilder",
    "Node",
    "NodeStats",
    "Reshape",
    "Source",
    "Totals",
    "conv2d",
]

#: The name by which nodes read the network's input.
INPUT = "input"

Shape = tuple[int, ...]
Engine = Literal["array", "vector", "none"]


@dataclass(frozen=True)
class Concat:
    """Concatenation of two or more NHWC tensors along the channel axis (no MACs, no bytes)."""

    name: str

    def __post_init__(self) -> None:
        _check_name(self.name)


@dataclass(frozen=True)
class Flatten:
    """``(n, d1, d2, ...)`` to ``(n, d1*d2*...)``, a view of a C-contiguous tensor."""

    name: str

    def __post_init__(self) -> None:
        _check_name(self.name)


@dataclass(frozen=True)
class Reshape:
    """A view of the input with another shape of the same size (one ``-1`` allowed).

    Parameters
    ----------
    name : str
        Label used in errors and reports.
    shape : tuple of int
        The output shape, batch included; at most one entry may be ``-1`` (inferred).
    """

    name: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_name(self.name)
        shape = tuple(self.shape)
        if (
            not shape
            or any(not isinstance(d, int) or isinstance(d, bool) or d == 0 or d < -1 for d in shape)
            or shape.count(-1) > 1
        ):
            raise ValueError(
                f"node {self.name!r}: shape must be positive integers with at most one -1, "
                f"not {self.shape!r}"
            )
        object.__setattr__(self, "shape", shape)


@dataclass(frozen=True)
class Source:
    """A tensor of ``shape`` read from memory, produced outside the graph (no MACs, no bytes).

    Layer lists that do not say where each layer's input comes from (SCALE-Sim topologies,
    `mapping.scalesim.load_csv`) give such a layer a `Source` of its input shape. The node reads
    `INPUT` for its place in the graph, whatever the input's shape; the layer reading it counts
    the input bytes.

    Parameters
    ----------
    name : str
        Label used in errors and reports.
    shape : tuple of int
        The tensor's shape, batch included.
    """

    name: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_name(self.name)
        shape = tuple(self.shape)
        if not shape or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in shape):
            raise ValueError(
                f"node {self.name!r}: shape must be positive integers, not {self.shape!r}"
            )
        object.__setattr__(self, "shape", shape)


SHAPE_OPS = (Concat, Flatten, Reshape, Source)
ARRAY_LAYERS = (Conv2D, Dense)
VECTOR_OPS = (DepthwiseConv2D, Add, Pool2D)
Op = Conv2D | Dense | DepthwiseConv2D | Add | Pool2D | Concat | Flatten | Reshape | Source

_KIND = {
    Conv2D: "conv",
    Dense: "dense",
    DepthwiseConv2D: "depthwise",
    Add: "add",
    Concat: "concat",
    Flatten: "flatten",
    Reshape: "reshape",
    Source: "source",
}


def _kind(op: Op) -> str:
    if isinstance(op, Pool2D):
        return f"{op.kind}pool"
    return _KIND[type(op)]


def conv2d(
    name: str,
    h: int,
    w: int,
    cin: int,
    cout: int,
    k: int,
    stride: int = 1,
    pad: int = 0,
    groups: int = 1,
    act: Activation = "none",
) -> Conv2D | DepthwiseConv2D:
    """A KxK convolution with ``groups``, as the layer kind that runs it.

    Parameters
    ----------
    name, h, w, cin, cout, k, stride, pad, act
        As in `kernels.layers.Conv2D` (batch 1).
    groups : int
        ``cin`` (with ``cout == cin``) gives a `DepthwiseConv2D`; any other divisor of ``cin``
        and ``cout`` a `Conv2D` with ``groups`` (1: an ordinary convolution).

    Raises
    ------
    ValueError
        ``groups`` that does not divide ``cin`` and ``cout``, or a layer that fails its own
        validation.
    """
    if groups == cin and cout == cin and groups > 1:
        return DepthwiseConv2D(name, h=h, w=w, c=cin, k=k, stride=stride, pad=pad, act=act)
    return Conv2D(
        name, h=h, w=w, cin=cin, cout=cout, k=k, stride=stride, pad=pad, act=act, groups=groups
    )


@dataclass(frozen=True)
class Node:
    """One operation of a `Network` and the names of the nodes it reads.

    Parameters
    ----------
    op : Conv2D, Dense, DepthwiseConv2D, Add, Pool2D, Concat, Flatten, Reshape or Source
        The operation; its ``name`` is the node's name.
    inputs : tuple of str
        Producers, in operand order: `INPUT` (``"input"``) or earlier nodes. `Add` reads two,
        `Concat` two or more, everything else one.
    """

    op: Op
    inputs: tuple[str, ...] = (INPUT,)

    def __post_init__(self) -> None:
        if not isinstance(self.op, (*ARRAY_LAYERS, *VECTOR_OPS, *SHAPE_OPS)):
            raise TypeError(
                "node op must be a Conv2D, Dense, DepthwiseConv2D, Add, Pool2D, Concat, "
                f"Flatten, Reshape or Source, not {type(self.op).__name__}"
            )
        inputs = (self.inputs,) if isinstance(self.inputs, str) else tuple(self.inputs)
        object.__setattr__(self, "inputs", inputs)
        want = {Add: "2", Concat: ">= 2"}.get(type(self.op), "1")
        if not {"1": len(inputs) == 1, "2": len(inputs) == 2, ">= 2": len(inputs) >= 2}[want]:
            raise ValueError(
                f"node {self.name!r} ({self.kind}) reads {want} input(s), not {len(inputs)}: "
                f"{inputs!r}"
            )

    @property
    def name(self) -> str:
        return self.op.name

    @property
    def kind(self) -> str:
        """``conv``, ``dense``, ``depthwise``, ``add``, ``maxpool``, ``avgpool``, ``concat``,
        ``flatten``, ``reshape`` or ``source``."""
        return _kind(self.op)

    @property
    def engine(self) -> Engine:
        """``"array"`` (Conv2D, Dense), ``"vector"`` (depthwise, add, pool) or ``"none"``."""
        if isinstance(self.op, ARRAY_LAYERS):
            return "array"
        if isinstance(self.op, VECTOR_OPS):
            return "vector"
        return "none"


@dataclass(frozen=True)
class Totals:
    """Sums over nodes; ``a + b`` adds field by field."""

    macs: int = 0
    vector_ops: int = 0
    params: int = 0
    input_bytes: int = 0
    weight_bytes: int = 0
    output_bytes: int = 0

    def __add__(self, other: Totals) -> Totals:
        if not isinstance(other, Totals):
            return NotImplemented
        return Totals(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))

    @property
    def bytes(self) -> int:
        """Input + weight + output bytes."""
        return self.input_bytes + self.weight_bytes + self.output_bytes


@dataclass(frozen=True)
class NodeStats:
    """Shapes and counts of one node (see the module docstring for the conventions)."""

    name: str
    kind: str
    engine: Engine
    inputs: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    macs: int
    vector_ops: int
    params: int
    input_bytes: int
    weight_bytes: int
    output_bytes: int

    @property
    def bytes(self) -> int:
        """Input + weight + output bytes."""
        return self.input_bytes + self.weight_bytes + self.output_bytes

    @property
    def totals(self) -> Totals:
        """The counts alone, to add up."""
        return Totals(
            self.macs,
            self.vector_ops,
            self.params,
            self.input_bytes,
            self.weight_bytes,
            self.output_bytes,
        )


def _params(op: Op) -> int:
    if isinstance(op, Conv2D):
        return op.weight_bytes + op.cout
    if isinstance(op, Dense):
        return op.weight_bytes + op.n
    if isinstance(op, DepthwiseConv2D):
        return op.weight_bytes + op.c
    return 0


def _output_shape(node: Node, shapes: list[Shape]) -> Shape:
    """Check the operand shapes of ``node`` and return its output shape."""
    op = node.op

    def mismatch(i: int, want: object) -> ValueError:
        return ValueError(
            f"node {node.name!r} ({node.kind}) expects input {i} of shape {want}, but its "
            f"producer {node.inputs[i]!r} gives {shapes[i]}"
        )

    if isinstance(op, Concat):
        first = shapes[0]
        for i, shape in enumerate(shapes):
            if len(shape) != 4 or shape[:3] != first[:3]:
                raise mismatch(i, f"(n, h, w, c) with (n, h, w) = {first[:3]}")
        return (*first[:3], sum(s[3] for s in shapes))
    if isinstance(op, Flatten):
        return (shapes[0][0], math.prod(shapes[0][1:]))
    if isinstance(op, Source):
        return op.shape
    if isinstance(op, Reshape):
        size = math.prod(shapes[0])
        known = math.prod(d for d in op.shape if d != -1)
        if -1 in op.shape and size % known == 0:
            return tuple(size // known if d == -1 else d for d in op.shape)
        if known != size:
            raise ValueError(
                f"node {op.name!r} (reshape) cannot view input {shapes[0]} from "
                f"{node.inputs[0]!r} ({size} elements) as {op.shape}"
            )
        return op.shape
    for i, shape in enumerate(shapes):
        if shape != op.input_shape:
            raise mismatch(i, op.input_shape)
    return op.output_shape


def _stats(node: Node, shapes: tuple[Shape, ...], out: Shape) -> NodeStats:
    op = node.op
    shape_op = isinstance(op, SHAPE_OPS)
    weighted = isinstance(op, (Conv2D, Dense, DepthwiseConv2D))
    return NodeStats(
        macs=op.macs if weighted else 0,
        vector_ops=0 if shape_op or weighted else op.macs,
        params=_params(op),
        input_bytes=0 if shape_op else op.input_bytes,
        weight_bytes=0 if shape_op else op.weight_bytes,
        output_bytes=0 if shape_op else op.output_bytes,
        name=node.name,
        kind=node.kind,
        engine=node.engine,
        inputs=node.inputs,
        input_shapes=shapes,
        output_shape=out,
    )


@dataclass(frozen=True)
class Network:
    """A layer graph in topological order, validated at construction.

    Parameters
    ----------
    name : str
        Label used in errors and reports.
    input_shape : tuple of int
        Shape of the network's input, ``(n, h, w, c)`` for images; nodes read it as `INPUT`.
    nodes : tuple of Node
        In topological order: every node reads only `INPUT` and nodes before it. Names are
        unique and not ``"input"``.

    Raises
    ------
    ValueError
        A repeated name, a node reading a node that is not before it, or an operand whose shape
        differs from its producer's output (the message names both nodes and both shapes).

    Notes
    -----
    `stats` gives one `NodeStats` per node (output shape, MACs, bytes, engine); `totals`,
    `macs`, `params` and the byte properties sum them. `output` is the last node.
    """

    name: str
    input_shape: tuple[int, ...]
    nodes: tuple[Node, ...]
    stats: tuple[NodeStats, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"network name must be a non-empty string, not {self.name!r}")
        shape = tuple(self.input_shape)
        if not shape or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in shape):
            raise ValueError(
                f"network {self.name!r}: input_shape must be positive integers, "
                f"not {self.input_shape!r}"
            )
        object.__setattr__(self, "input_shape", shape)
        nodes = tuple(self.nodes)
        if not nodes:
            raise ValueError(f"network {self.name!r} has no nodes")
        object.__setattr__(self, "nodes", nodes)
        out: dict[str, Shape] = {INPUT: shape}
        later = {node.name for node in nodes}
        stats = []
        for node in nodes:
            if not isinstance(node, Node):
                raise TypeError(
                    f"network {self.name!r}: nodes must be Node, not {type(node).__name__}"
                )
            if node.name in out:
                what = "the network input's name" if node.name == INPUT else "used twice"
                raise ValueError(f"network {self.name!r}: node name {node.name!r} is {what}")
            for src in node.inputs:
                if src not in out:
                    where = "comes after it" if src in later else "does not exist"
                    raise ValueError(
                        f"network {self.name!r}: node {node.name!r} reads {src!r}, which {where}; "
                        f"nodes must be in topological order and read {INPUT!r} or earlier nodes"
                    )
            shapes = tuple(out[src] for src in node.inputs)
            out[node.name] = _output_shape(node, list(shapes))
            stats.append(_stats(node, shapes, out[node.name]))
        object.__setattr__(self, "stats", tuple(stats))

    # ------------------------------------------------------------------ access
    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"network {self.name!r} has no node {name!r}")

    def stat(self, name: str) -> NodeStats:
        """The `NodeStats` of the node called ``name``."""
        return self.stats[self.nodes.index(self.node(name))]

    def layers(self, *kinds: str) -> list[Op]:
        """The operations in order, only those of the given kinds (see `Node.kind`) if any."""
        return [node.op for node in self.nodes if not kinds or node.kind in kinds]

    @property
    def output(self) -> Node:
        """The last node."""
        return self.nodes[-1]

    @property
    def output_shape(self) -> Shape:
        return self.stats[-1].output_shape

    def counts(self) -> Counter[str]:
        """Number of nodes of each kind."""
        return Counter(node.kind for node in self.nodes)

    # ------------------------------------------------------------------ totals
    @property
    def totals(self) -> Totals:
        return sum((s.totals for s in self.stats), Totals())

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the layers with weights (convolutions, depthwise, dense)."""
        return self.totals.macs

    @property
    def params(self) -> int:
        """Weights plus one bias per output channel."""
        return self.totals.params

    @property
    def bytes(self) -> int:
        """Input + weight + output bytes of every node (each tensor once per reader)."""
        return self.totals.bytes

    def summary(self) -> str:
        """A per-node table and the totals, as text."""
        head = f"{'node':<28} {'kind':<9} {'engine':<6} {'output':<20} {'MACs':>13} {'params':>10}"
        rows = [head]
        for s in self.stats:
            rows.append(
                f"{s.name:<28} {s.kind:<9} {s.engine:<6} {'x'.join(map(str, s.output_shape)):<20} "
                f"{s.macs:>13,} {s.params:>10,}"
            )
        t = self.totals
        rows.append(
            f"{self.name}: {len(self)} nodes, {t.macs:,} MACs, {t.vector_ops:,} vector ops, "
            f"{t.params:,} params, {t.bytes:,} bytes"
        )
        return "\n".join(rows)


class NetworkBuilder:
    """Appends nodes to a network, taking each layer's input size from its producer.

    Every method takes the node's name and its producer(s) and returns the name, so a network
    reads as a chain::

        b = NetworkBuilder("tiny", (1, 32, 32, 3))
        x = b.conv("conv1", b.input, 16, 3, pad=1, act="relu")
        y = b.conv("conv2", x, 16, 3, pad=1)
        x = b.add("add", x, y, act="relu")
        x = b.flatten("flatten", b.gap("pool", x))
        b.dense("fc", x, 10)
        net = b.build()

    Layer validation errors (a kernel larger than its padded input, ...) surface unchanged.
    """

    input = INPUT

    def __init__(self, name: str, input_shape: tuple[int, ...]) -> None:
        self.name = name
        self.input_shape = tuple(input_shape)
        self.nodes: list[Node] = []
        self._shapes: dict[str, Shape] = {INPUT: self.input_shape}

    def shape(self, src: str) -> Shape:
        """Output shape of node ``src`` (or of the input)."""
        try:
            return self._shapes[src]
        except KeyError:
            raise KeyError(f"network {self.name!r} has no node {src!r} yet") from None

    def _image(self, src: str, name: str) -> Shape:
        shape = self.shape(src)
        if len(shape) != 4:
            raise ValueError(f"node {name!r}: input {src!r} is {shape}, not an NHWC image")
        return shape

    def node(self, op: Op, *inputs: str) -> str:
        """Append ``op`` reading ``inputs`` and return its name."""
        node = Node(op, inputs)
        shapes = [self.shape(src) for src in node.inputs]
        self._shapes[node.name] = _output_shape(node, shapes)
        self.nodes.append(node)
        return node.name

    def conv(
        self,
        name: str,
        src: str,
        cout: int,
        k: int,
        stride: int = 1,
        pad: int = 0,
        groups: int = 1,
        act: Activation = "none",
    ) -> str:
        """A KxK convolution (`conv2d`: grouped with ``groups``, depthwise when it is ``cin``)."""
        _, h, w, cin = self._image(src, name)
        return self.node(conv2d(name, h, w, cin, cout, k, stride, pad, groups, act), src)

    def depthwise(
        self, name: str, src: str, k: int, stride: int = 1, pad: int = 0, act: Activation = "none"
    ) -> str:
        """A depthwise KxK convolution."""
        c = self._image(src, name)[3]
        return self.conv(name, src, c, k, stride, pad, groups=c, act=act)

    def dense(self, name: str, src: str, n: int, act: Activation = "none") -> str:
        """A fully connected layer over a ``(m, k)`` input."""
        shape = self.shape(src)
        if len(shape) != 2:
            raise ValueError(f"node {name!r}: dense reads (m, k), but {src!r} gives {shape}")
        return self.node(Dense(name, m=shape[0], k=shape[1], n=n, act=act), src)

    def add(self, name: str, a: str, b: str, act: Activation = "none") -> str:
        """The element-wise add of two tensors."""
        _, h, w, c = self._image(a, name)
        return self.node(Add(name, h=h, w=w, c=c, act=act), a, b)

    def pool(
        self,
        name: str,
        src: str,
        k: int,
        stride: int = 1,
        pad: int = 0,
        kind: Literal["max", "avg"] = "max",
    ) -> str:
        """A KxK max or average pool."""
        _, h, w, c = self._image(src, name)
        return self.node(Pool2D(name, h=h, w=w, c=c, k=k, stride=stride, pad=pad, kind=kind), src)

    def gap(self, name: str, src: str) -> str:
        """A global average pool to ``(n, 1, 1, c)``."""
        _, h, w, c = self._image(src, name)
        return self.node(global_avg_pool(name, h=h, w=w, c=c), src)

    def concat(self, name: str, *srcs: str) -> str:
        """Channel concatenation."""
        return self.node(Concat(name), *srcs)

    def flatten(self, name: str, src: str) -> str:
        return self.node(Flatten(name), src)

    def reshape(self, name: str, src: str, shape: tuple[int, ...]) -> str:
        return self.node(Reshape(name, shape), src)

    def source(self, name: str, shape: tuple[int, ...]) -> str:
        """A tensor of ``shape`` produced outside the graph (`Source`)."""
        return self.node(Source(name, shape), INPUT)

    def build(self) -> Network:
        return Network(self.name, self.input_shape, tuple(self.nodes))
