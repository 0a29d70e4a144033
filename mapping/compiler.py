"""The network compiler: a whole `Network` as ONE program over ONE DRAM image, with its goldens.

`compile_network(config, network, plans)` lowers every layer with its plan, places every tensor
in DRAM, draws seeded random data, calibrates each layer's requantization on that data, and
computes the golden int8 tensor of every node with the `kernels` golden models (there is no
second functional model). Running ``program`` on ``image`` must leave every golden tensor in its
region, bit for bit: `tb.sim_network` checks that on the RTL, the tests on `kernels.interp`.

Layout (addresses in bytes, every region `kernels.lower.ALIGN`-ed)::

    0            activation arena: the network input, then every node's output in node order
    weights      per layer: `kernels.lower.weight_image` (array) or the vector parameter blocks
    program      the layers' programs back to back, 128-bit command words

* Every node's output is an NHWC int8 tensor (``(m, n)`` for a dense layer) with its own region
  in the arena (`TensorRegion`), so one dump of the arena checks every intermediate tensor.
* A layer reads its producers' regions where they lie: a convolution through its `Segment`'s
  input address and pixel stride, a vector layer through `kernels.lower_vector.vector_program`'s.
* `Concat` has one region of ``c1 + c2 + ...`` channels; its producers write straight into their
  channel slices (output pixel stride = the concat's channels), so a concat costs nothing. A
  producer's region is then strided (``pixel_stride > channels``). Supported: convolutions,
  depthwise, add and pool layers feeding one concat; the network input, a view, another
  concat, or one node feeding two concats is a ``ValueError`` naming the nodes.
* `Flatten` and `Reshape` are views of their producer's region (same address). The flatten
  order is NHWC C-order: ``(n, h, w, c)`` flattens to ``(n, (y*w + x)*c + ch)``, so a dense
  layer after global pooling reads the pooled ``(1, 1, 1, c)`` tensor directly, and its weight
  row ``(y*w + x)*c + ch`` multiplies channel ``ch`` of pixel ``(y, x)``. A view of a strided
  (concat slice) tensor is a ``ValueError``.

Program: per compute node, in network order, its program (`kernels.lower.lower_segments` for
convolutions and dense layers; the same with one `Segment` per channel for a depthwise layer on
the array, the naive/Gemmini way of `kernels.naive`; `vector_program` on the vector unit). Each
ends with FENCE, which waits for every queue and unit, so a layer never starts before its
producers' stores have landed, and the program ends with one FENCE. `CompiledNetwork.commands`
gives each node's command range.

Data and quantization (seeded by ``seed``): the network input and every weight are uniform int8,
biases uniform in ``-4096..4096`` (`kernels.conv.BIAS_RANGE`). Every zero point is 0. The
requantization of a layer with weights is *calibrated* on its actual int32 accumulators (bias
included, computed by the golden): per output channel, the 99.9th percentile ``p`` of ``|acc|``
maps to `TARGET` (96) output steps, ``M * 2**-S ~= TARGET / p`` (`RequantParams.from_scale`);
when a channel has fewer than `MIN_SAMPLES` values (1x1 feature maps, a dense layer of one row)
``p`` is taken over the whole tensor instead. So the values of every layer spread over about
+-96 whatever the depth, neither saturating nor vanishing. ReLU clamps at 0; ReLU6 places 6.0 at
`SIX` (120) steps, so its clamp cuts only the far tail. An add scales its operands to a common
range, ``ma * p(|a|) ~= mb * p(|b|)`` (the larger multiplier ``2**14``, `ADD_MULT_BITS`), then
calibrates its requantization the same way. An average pool keeps its input's scale
(`kernels.vector.avg_pool_requant`, bias 0); a max pool has no parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels.conv import BIAS_RANGE, layer_golden
from kernels.layers import Add, Conv2D, Dense, DepthwiseConv2D, Layer, Pool2D
from kernels.lower import (
    ALIGN,
    Region,
    Segment,
    TilePlan,
    array_form,
    default_plan,
    lower_segments,
    segment_weights,
)
from kernels.lower import weight_image as _weight_image
from kernels.lower_vector import (
    VectorPlan,
    default_vector_plan,
    vector_inputs,
    vector_param_image,
    vector_program,
)
from kernels.requant import INT8_MAX, INT8_MIN, RequantParams, requantize
from kernels.vector import ADD_MULT_BITS, avg_pool_requant
from rtl import isa
from rtl.config import HWConfig
from rtl.isa import Op

from .layer_cost import layer_cost
from .mapper import naive_plan
from .workloads import INPUT, Concat, Flatten, Network, Node, Reshape

__all__ = [
    "MIN_SAMPLES",
    "PERCENTILE",
    "SIX",
    "TARGET",
    "CompiledNetwork",
    "TensorRegion",
    "calibrate_requant",
    "channel_conv",
    "compile_network",
    "default_plans",
    "naive_plans",
]

#: Output steps the calibration maps the `PERCENTILE` of ``|acc|`` to.
TARGET = 96
#: Percentile of ``|acc|`` the calibration reads (per channel, or per tensor).
PERCENTILE = 99.9
#: Fewer values per channel than this and the percentile is taken over the whole tensor.
MIN_SAMPLES = 32
#: The quantized 6.0 of ReLU6 layers.
SIX = 120

_DRAM_SPACE = 1 << isa.FIELDS[Op.LOAD]["dram_addr"][1]

Plan = TilePlan | VectorPlan


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


# -------------------------------------------------------------------- regions


@dataclass(frozen=True)
class TensorRegion:
    """Where a node's output tensor lies in DRAM.

    Parameters
    ----------
    name : str
        The node (or ``"input"``).
    addr : int
        DRAM byte of element 0.
    shape : tuple of int
        The tensor's shape, channels (or features) last.
    pixel_stride : int
        Bytes from one pixel (one index of all but the last axis, in C order) to the next:
        ``shape[-1]`` for a packed tensor, the concat's channel count for a concat slice.
    """

    name: str
    addr: int
    shape: tuple[int, ...]
    pixel_stride: int

    @property
    def channels(self) -> int:
        return self.shape[-1]

    @property
    def pixels(self) -> int:
        return int(np.prod(self.shape[:-1], dtype=np.int64))

    @property
    def packed(self) -> bool:
        """True if the tensor is C-contiguous (not a slice of a wider tensor)."""
        return self.pixel_stride == self.channels

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's elements."""
        return self.pixels * self.channels

    @property
    def end(self) -> int:
        """One past the last byte the tensor touches."""
        return self.addr + (self.pixels - 1) * self.pixel_stride + self.channels

    def read(self, dram: bytes | bytearray | np.ndarray, base: int = 0) -> np.ndarray:
        """The int8 tensor, read from ``dram`` whose first byte is DRAM address ``base``."""
        if isinstance(dram, np.ndarray):
            buf = dram.reshape(-1).view(np.int8)
        else:
            buf = np.frombuffer(bytes(dram), dtype=np.int8)
        start = self.addr - base
        idx = start + np.arange(self.pixels)[:, None] * self.pixel_stride + np.arange(self.channels)
        if start < 0 or self.end - base > buf.size:
            raise ValueError(
                f"tensor {self.name!r} at bytes {self.addr}..{self.end - 1} is outside the "
                f"{buf.size} bytes read from address {base}"
            )
        return buf[idx].reshape(self.shape)


@dataclass(frozen=True)
class CompiledNetwork:
    """A network compiled to one program and one DRAM image, with the golden of every node.

    Parameters
    ----------
    config : HWConfig
    network : Network
    plans : dict of str to TilePlan or VectorPlan
        The plan of every node with work (convolutions, dense, depthwise, add, pool).
    engines : dict of str to str
        Per node: ``array``, ``vector``, ``array-naive`` (depthwise one channel at a time on
        the array) or ``view`` (concat, flatten, reshape: no commands).
    program : tuple of int
        The 128-bit command words of the whole network, ending with FENCE.
    program_addr : int
        Byte address of the program in `image`.
    image : bytes
        The initial DRAM image: input, zeroed activations, weights and parameters, program.
    regions : dict of str to TensorRegion
        The output tensor of every node, and ``"input"``.
    goldens : dict of str to ndarray
        The golden int8 tensor of every node, and ``"input"`` (exact integer NumPy).
    commands : dict of str to (int, int)
        Per node, its ``[start, stop)`` command indices in `program` (empty for views).
    arena : Region
        The activation arena: every tensor of `regions` lies inside; dump it to check them all.
    weights : Region
        Weight images and parameter blocks of every layer.
    macs : int
        The network's multiply-accumulates (``network.macs``).
    seed : int
        The data seed.
    tensors : dict of str to dict
        Per compute node, the tensors its golden was computed from (``kernels.conv.layer_golden``
        keys: weights, bias, requant; the inputs are the producers' goldens).
    """

    config: HWConfig
    network: Network
    plans: dict[str, Plan]
    engines: dict[str, str]
    program: tuple[int, ...] = field(repr=False)
    program_addr: int
    image: bytes = field(repr=False, compare=False)
    regions: dict[str, TensorRegion] = field(repr=False)
    goldens: dict[str, np.ndarray] = field(repr=False, compare=False)
    commands: dict[str, tuple[int, int]] = field(repr=False)
    arena: Region
    weights: Region
    macs: int
    seed: int
    tensors: dict[str, dict[str, Any]] = field(repr=False, compare=False)

    @property
    def nodes(self) -> list[str]:
        """Node names in network order (without ``"input"``)."""
        return [node.name for node in self.network]

    def check(self, arena: bytes | bytearray | np.ndarray) -> dict[str, int]:
        """Per node, how many values of ``arena`` (the dumped arena) differ from the golden."""
        return {
            name: int((self.regions[name].read(arena, self.arena.addr) != self.goldens[name]).sum())
            for name in self.nodes
        }

    def disassemble(self) -> str:
        """The program as assembly text, one command a line."""
        return isa.disassemble(self.program)

    def model_cycles(self, *, bandwidth: float = 16, latency: int = 20) -> dict[str, int]:
        """Per node, the cycles `mapping.layer_cost.layer_cost` predicts for its plan (0 for
        views); the layers run one after another, so the network's prediction is their sum."""
        return {
            node.name: layer_cost(
                self.config, node.op, self.plans[node.name], bandwidth=bandwidth, latency=latency
            ).cycles
            if node.name in self.plans
            else 0
            for node in self.network
        }


# -------------------------------------------------------------------- plans


def channel_conv(layer: DepthwiseConv2D) -> Conv2D:
    """One channel of a depthwise layer as the ``cin = cout = 1`` convolution the array runs
    (a `TilePlan` for a depthwise layer tiles this convolution)."""
    return layer.channel_conv()


def _array_layer(layer: Layer) -> Conv2D | Dense:
    return channel_conv(layer) if isinstance(layer, DepthwiseConv2D) else layer


def default_plans(config: HWConfig, network: Network) -> dict[str, Plan]:
    """`kernels.lower.default_plan` for every convolution and dense layer, `default_vector_plan`
    for every depthwise, add and pool layer (they run on the vector unit)."""
    plans: dict[str, Plan] = {}
    for node in network:
        op = node.op
        if isinstance(op, Conv2D | Dense):
            plans[node.name] = default_plan(config, op)
        elif isinstance(op, DepthwiseConv2D | Add | Pool2D):
            plans[node.name] = default_vector_plan(config, op)
    return plans


def naive_plans(config: HWConfig, network: Network) -> dict[str, Plan]:
    """The naive baseline, `mapping.mapper.naive_plan` for every node with work.

    What an accelerator without a vector unit or a mapper does: every convolution, dense and
    depthwise layer on the array (depthwise one channel at a time, Gemmini's way,
    `kernels.naive`) with the largest single-buffered tile (loads, compute and stores take
    turns); adds and pools single-buffered on the vector unit (the array cannot do them). The
    same plans as ``map_network(config, network, naive=True).plans``.
    """
    return {node.name: naive_plan(config, node.op) for node in network if node.engine != "none"}


def _resolve_plans(
    config: HWConfig, network: Network, plans: dict[str, Plan] | None
) -> tuple[dict[str, Plan], dict[str, str]]:
    """Validate ``plans`` against the layer kinds; fill in the defaults; engines per node."""
    given = dict(plans or {})
    names = {node.name for node in network}
    unknown = [name for name in given if name not in names]
    if unknown:
        raise ValueError(
            f"network {network.name!r}: plans name node(s) {', '.join(map(repr, unknown))} that "
            f"it does not have"
        )
    out: dict[str, Plan] = {}
    engines: dict[str, str] = {}
    for node in network:
        op, name, plan = node.op, node.name, given.get(node.name)
        where = f"node {name!r} ({node.kind})"
        if isinstance(op, Concat | Flatten | Reshape):
            if plan is not None:
                raise ValueError(f"{where} is a view with no work of its own: drop its plan")
            engines[name] = "view"
            continue
        if plan is not None and not isinstance(plan, TilePlan | VectorPlan):
            raise TypeError(
                f"{where}: a plan must be a TilePlan or a VectorPlan, not {type(plan).__name__}"
            )
        if isinstance(op, Conv2D | Dense):
            if isinstance(plan, VectorPlan):
                raise ValueError(
                    f"{where} runs on the systolic array: give it a TilePlan, not a VectorPlan"
                )
            plan = plan or default_plan(config, op)
            engines[name] = "array"
        elif isinstance(op, DepthwiseConv2D):
            if plan is None:
                plan = default_vector_plan(config, op)
            engines[name] = "array-naive" if isinstance(plan, TilePlan) else "vector"
        else:
            if isinstance(plan, TilePlan):
                raise ValueError(
                    f"{where} runs on the vector unit only (the array cannot {node.kind}): give "
                    f"it a VectorPlan, not a TilePlan"
                )
            plan = plan or default_vector_plan(config, op)
            engines[name] = "vector"
        try:
            if isinstance(plan, TilePlan):
                plan.validate(config, _array_layer(op))
            else:
                plan.validate(config, op)
        except ValueError as exc:
            raise ValueError(f"{where}: plan {plan} does not fit: {exc}") from None
        out[name] = plan
    return out, engines


# -------------------------------------------------------------------- layout


def _layout(network: Network) -> tuple[dict[str, TensorRegion], int]:
    """Every node's `TensorRegion` in the arena from address 0; the arena's size."""
    shapes = {INPUT: network.input_shape} | {s.name: s.output_shape for s in network.stats}
    kinds = {node.name: node.kind for node in network}
    # producers that write into a concat's buffer: name -> (concat, channel offset)
    slot: dict[str, tuple[str, int]] = {}
    for node in network:
        if not isinstance(node.op, Concat):
            continue
        offset = 0
        for src in node.inputs:
            what = f"concat {node.name!r} reads {src!r}"
            if src == INPUT or kinds[src] in ("concat", "flatten", "reshape"):
                kind = "the network input" if src == INPUT else f"a {kinds[src]}"
                raise ValueError(
                    f"{what}, {kind}: a concat's producers must be layers that write into its "
                    f"buffer (convolutions, depthwise, add, pool); the compiler does not copy "
                    f"tensors"
                )
            if src in slot:
                raise ValueError(
                    f"{what}, which already writes into concat {slot[src][0]!r}: a tensor can "
                    f"lie in one concat buffer only; the compiler does not copy tensors"
                )
            slot[src] = (node.name, offset)
            offset += shapes[src][-1]
    regions: dict[str, TensorRegion] = {}
    cursor = 0
    for name in [INPUT, *(node.name for node in network)]:
        if name in slot or kinds.get(name) in ("flatten", "reshape"):
            continue
        shape = shapes[name]
        regions[name] = TensorRegion(name, cursor, shape, shape[-1])
        cursor = _align(cursor + int(np.prod(shape)))
    for node in network:
        name = node.name
        if name in slot:
            concat, offset = slot[name]
            buf = regions[concat]
            regions[name] = TensorRegion(name, buf.addr + offset, shapes[name], buf.channels)
        elif isinstance(node.op, Flatten | Reshape):
            src = regions[node.inputs[0]]
            if not src.packed:
                raise ValueError(
                    f"node {name!r} ({node.kind}) views {src.name!r}, which is a channel slice of "
                    f"a concat's buffer (not contiguous); view the concat instead"
                )
            shape = shapes[name]
            regions[name] = TensorRegion(name, src.addr, shape, shape[-1])
    return {name: regions[name] for name in [INPUT, *(n.name for n in network)]}, cursor


# -------------------------------------------------------------------- data and quantization


def _percentile(values: np.ndarray, axis: int | None) -> np.ndarray:
    return np.maximum(np.percentile(np.abs(values.astype(np.float64)), PERCENTILE, axis=axis), 1.0)


def calibrate_requant(acc: np.ndarray, act: str) -> RequantParams:
    """Requantization mapping the `PERCENTILE` of ``|acc|`` to `TARGET` steps (module docstring).

    Parameters
    ----------
    acc : integer array, channels last
        A layer's int32 accumulators (bias included).
    act : {"none", "relu", "relu6"}
        The layer's activation (ReLU6 puts 6.0 at `SIX`).

    Returns
    -------
    RequantParams
        One multiplier and shift per channel, zero point 0.
    """
    c = acc.shape[-1]
    flat = acc.reshape(-1, c)
    if flat.shape[0] >= MIN_SAMPLES:
        p = _percentile(flat, axis=0)
    else:
        p = np.full(c, float(_percentile(flat, axis=None)))
    return RequantParams.from_scale(
        (TARGET / p).tolist(),
        zero_point=0,
        act=act,
        out_scale=6.0 / SIX if act == "relu6" else None,
    )


def _placeholder(act: str) -> RequantParams:
    """Any requantization with the layer's activation (for computing accumulators only)."""
    return RequantParams((1,), (0,), act=act, six=SIX if act == "relu6" else None)


def _layer_data(
    layer: Layer, inputs: list[np.ndarray], rng: np.random.Generator
) -> tuple[dict[str, Any], np.ndarray]:
    """Random weights and bias, calibrated requantization; (tensors, golden int8 output)."""

    def int8(shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(INT8_MIN, INT8_MAX + 1, size=shape, dtype=np.int8)

    if isinstance(layer, Pool2D):
        t: dict[str, Any] = {"input": inputs[0]}
        if layer.kind == "avg":
            t["bias"] = np.zeros(layer.c, np.int32)
            t["requant"] = avg_pool_requant(layer.kh, layer.kw)
        return t, layer_golden(layer, t)
    if isinstance(layer, Add):
        pa, pb = (float(_percentile(x, axis=None)) for x in inputs)
        top = 1 << ADD_MULT_BITS
        ma, mb = (max(1, round(top * min(pa, pb) / p)) for p in (pa, pb))
        t = {"a": inputs[0], "b": inputs[1], "za": 0, "zb": 0, "ma": ma, "mb": mb,
             "bias": np.zeros(layer.c, np.int32)}  # fmt: skip
    else:
        cout = layer.c if isinstance(layer, DepthwiseConv2D) else layer.as_conv().cout
        x = inputs[0].reshape(layer.input_shape)
        t = {
            "input": x,
            "weights": int8(layer.weight_shape),
            "bias": rng.integers(-BIAS_RANGE, BIAS_RANGE + 1, size=cout, dtype=np.int32),
        }
    acc = layer_golden(layer, t | {"requant": _placeholder(layer.act)}, acc=True)
    t["requant"] = calibrate_requant(acc, layer.act)
    return t, requantize(acc, t["requant"])


# -------------------------------------------------------------------- programs


class _Weights:
    """Appends aligned blobs to the weights region."""

    def __init__(self, base: int) -> None:
        self.base, self.cursor, self.blobs = base, base, []

    def add(self, data: np.ndarray) -> int:
        addr = self.cursor
        self.blobs.append((addr, np.ascontiguousarray(data).tobytes()))
        self.cursor = _align(addr + data.nbytes)
        return addr


def _node_program(
    config: HWConfig,
    node: Node,
    plan: Plan,
    t: dict[str, Any],
    regions: dict[str, TensorRegion],
    weights: _Weights,
) -> tuple[int, ...]:
    layer = node.op
    out = regions[node.name]
    src = [regions[name] for name in node.inputs]
    if isinstance(plan, VectorPlan):
        names = vector_inputs(layer)
        return vector_program(
            config, layer, plan,
            inputs={n: r.addr for n, r in zip(names, src, strict=True)},
            params_addr=weights.add(vector_param_image(config, layer, t)),
            output_addr=out.addr,
            input_strides={n: r.pixel_stride for n, r in zip(names, src, strict=True)},
            output_stride=out.pixel_stride,
        )  # fmt: skip
    (x,) = src
    bias = [int(v) for v in np.asarray(t["bias"]).reshape(-1)]
    # one segment per channel of a depthwise layer, per `pack` groups of a grouped convolution
    form = array_form(layer, config)
    seg_weights = segment_weights(layer, form, t["weights"])
    segments = [
        Segment(
            input_addr=x.addr + i * form.in_step,
            input_stride=x.pixel_stride,
            weights_addr=weights.add(_weight_image(config, form.conv, seg_weights[i])),
            output_addr=out.addr + i * form.out_step,
            output_stride=out.pixel_stride,
            bias=tuple(bias[i * form.out_step : (i + 1) * form.out_step]),
            requant=t["requant"].channel_slice(i * form.out_step, (i + 1) * form.out_step),
        )
        for i in range(form.segments)
    ]
    return lower_segments(config, form.conv, plan, segments)


# -------------------------------------------------------------------- entry point


def compile_network(
    config: HWConfig,
    network: Network,
    plans: dict[str, Plan] | None = None,
    *,
    seed: int = 0,
) -> CompiledNetwork:
    """Compile ``network`` for ``config`` into one program and one DRAM image.

    Parameters
    ----------
    config : HWConfig
    network : Network
    plans : dict of str to TilePlan or VectorPlan, optional
        Per node name: a `TilePlan` runs a convolution or dense layer on the array, and a
        depthwise layer on the array one channel at a time (the plan tiles `channel_conv`); a
        `VectorPlan` runs a depthwise, add or pool layer on the vector unit. Missing nodes get
        `default_plan` (convolutions, dense) or `default_vector_plan` (the others, on the vector
        unit). `naive_plans` gives the naive baseline; a mapper's plans go here too.
    seed : int
        Seed of the random input, weights and biases.

    Returns
    -------
    CompiledNetwork

    Raises
    ------
    ValueError
        A plan for an unknown node, a plan of the wrong kind for its node (a `TilePlan` for an
        add or pool, a `VectorPlan` for a convolution, any plan for a view), a plan that does
        not fit its layer, an unsupported concat or view (module docstring), or an image beyond
        the 32-bit DRAM address space; the message names the node.
    """
    if not isinstance(config, HWConfig):
        raise TypeError(f"config must be an HWConfig, not {type(config).__name__}")
    if not isinstance(network, Network):
        raise TypeError(f"network must be a Network, not {type(network).__name__}")
    resolved, engines = _resolve_plans(config, network, plans)
    regions, arena_bytes = _layout(network)

    rng = np.random.default_rng(seed)
    goldens: dict[str, np.ndarray] = {
        INPUT: rng.integers(INT8_MIN, INT8_MAX + 1, size=network.input_shape, dtype=np.int8)
    }
    tensors: dict[str, dict[str, Any]] = {}
    weights = _Weights(_align(arena_bytes))
    program: list[int] = []
    commands: dict[str, tuple[int, int]] = {}
    for node in network:
        name, op = node.name, node.op
        inputs = [goldens[src] for src in node.inputs]
        start = len(program)
        if isinstance(op, Concat):
            goldens[name] = np.concatenate(inputs, axis=-1)
        elif isinstance(op, Flatten | Reshape):
            goldens[name] = inputs[0].reshape(regions[name].shape)
        else:
            t, goldens[name] = _layer_data(op, inputs, rng)
            tensors[name] = {k: v for k, v in t.items() if k not in ("input", "a", "b")}
            try:
                program += _node_program(config, node, resolved[name], t, regions, weights)
            except ValueError as exc:
                msg = str(exc)
                raise ValueError(msg if name in msg else f"node {name!r}: {msg}") from None
        commands[name] = (start, len(program))
    program_t = tuple(program)
    if not program_t:
        raise ValueError(f"network {network.name!r} has no layer with work to compile")

    prog_bytes = isa.to_bytes(program_t)
    program_addr = _align(weights.cursor)
    total = _align(program_addr + len(prog_bytes))
    if total > _DRAM_SPACE:
        raise ValueError(
            f"network {network.name!r}: the DRAM image needs {total:,} bytes, beyond the 32-bit "
            f"dram_addr space; use a smaller input size"
        )
    image = bytearray(total)
    x = regions[INPUT]
    image[x.addr : x.addr + x.nbytes] = goldens[INPUT].tobytes()
    for addr, blob in weights.blobs:
        image[addr : addr + len(blob)] = blob
    image[program_addr : program_addr + len(prog_bytes)] = prog_bytes
    arena = Region(
        "arena", 0, arena_bytes, (arena_bytes,), "int8",
        "every node's output tensor (CompiledNetwork.regions)",
    )  # fmt: skip
    wbytes = weights.cursor - weights.base
    wregion = Region(
        "weights", weights.base, wbytes, (wbytes,), "uint8",
        "per layer: kernels.lower.weight_image or vector parameter blocks",
    )  # fmt: skip
    return CompiledNetwork(
        config=config,
        network=network,
        plans=resolved,
        engines=engines,
        program=program_t,
        program_addr=program_addr,
        image=bytes(image),
        regions=regions,
        goldens=goldens,
        commands=commands,
        arena=arena,
        weights=wregion,
        macs=network.macs,
        seed=seed,
        tensors=tensors,
    )
