"""Lowering of the vector unit's layers (depthwise, add, pooling) to Tandem programs.

`lower_vector` turns a `DepthwiseConv2D`, `Add` or `Pool2D` and its tensors into LOAD ``vec=1``,
DWCONV / EWISE and STORE ``vec=1`` commands (``docs/isa.md``) and the DRAM image; `lower_layer`
dispatches between it and `kernels.lower.lower` (convolutions and dense layers).
`vector_program` builds the program alone for tensors that lie at given DRAM addresses, with
given pixel strides (how ``mapping.compiler`` places a layer in a whole network's image), and
`vector_param_image` the parameter blocks it reads.

Work and layout
---------------
The vector unit works on one *channel group* of ``lanes = vector_lanes`` channels at a time
(the last group may be partial: its LOADs and STOREs move only the remaining channels, and its
parameter lanes past ``c`` are 0). The output of each (group, image) is cut into tiles of
``oh_t x ow_t`` pixels (`VectorPlan`); one vector command computes one tile. Its input tile holds
only in-image pixels: the unit itself supplies the padding (``pad_t``/``pad_l`` and the tile
bounds), so no zero-fill loads are needed. Scratchpad row = one pixel of one channel group.

DRAM holds the NHWC input(s) and output as they are, and the parameters pre-arranged as one
*parameter block* per group (``params`` region, ``(groups, param_rows, rows)`` bytes: lane ``l``
in byte ``l``, wider values as byte planes, least significant first), so one LOAD brings in a
group's block.

Pipelining
----------
One *step* per (group, image, tile), in that order. The scratchpad has ``nbuf`` (2 with
``double_buffer``) input slots, output slots and parameter slots; step ``i`` uses input and output
slot ``i % nbuf`` and group ``g`` parameter slot ``g % nbuf``. Tokens, as in `kernels.lower`:

* l2v: the last LOAD of a step's loads (its input tile, and the parameter block when the group
  starts) ``+push_next``; the step's vector command ``+pop_prev``;
* v2l: the vector command after which a slot is free ``+push_prev``; the first LOAD that refills
  it ``+pop_next`` (step ``i``'s loads wait for step ``i - nbuf``, and for the last step of group
  ``g - nbuf`` when they bring a parameter block);
* v2s: every vector command ``+push_next``; its first STORE ``+pop_prev``;
* s2v: a step's last STORE ``+push_prev``; the vector command of step ``i + nbuf``, which
  overwrites the same output slot, ``+pop_next``.

A step's loads are emitted as soon as the step that frees their slots has been emitted, so the
next tile's LOADs and the previous tile's STOREs overlap the current vector command. Every push
has exactly one pop and every pop's push comes earlier in the program, so no queue depth can
deadlock the decoder. The program ends with FENCE.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtl import isa
from rtl.config import HWConfig
from rtl.isa import EwiseMode, Op
from rtl.vector import VectorUnit

from .conv import check_tensors
from .layers import VECTOR_LAYERS, Add, Conv2D, Dense, DepthwiseConv2D, Layer, Pool2D
from .lower import ALIGN, Lowered, Region, TilePlan, _align, _Cmd, _cmd, _runs, lower
from .requant import RequantParams
from .vector import MAXPOOL_REQUANT, VectorLayer

__all__ = [
    "AxisTile",
    "VectorGeometry",
    "VectorPlan",
    "default_vector_plan",
    "lower_layer",
    "lower_vector",
    "vector_inputs",
    "vector_param_image",
    "vector_program",
]

# Widths of the ISA fields the lowering fills (rtl/isa.py FIELDS).
_MAX_DIM = (1 << isa.FIELDS[Op.DWCONV]["in_w"][1]) - 1
_MAX_WINDOW = (1 << isa.FIELDS[Op.DWCONV]["kh"][1]) - 1
_MAX_LEN = (1 << isa.FIELDS[Op.LOAD]["len"][1]) - 1
_MAX_LOAD_STRIDE = (1 << isa.FIELDS[Op.LOAD]["stride"][1]) - 1
_MAX_STORE_STRIDE = (1 << isa.FIELDS[Op.STORE]["stride"][1]) - 1
_VEC_SPACE = 1 << isa.FIELDS[Op.DWCONV]["in_addr"][1]
_DRAM_SPACE = 1 << isa.FIELDS[Op.LOAD]["dram_addr"][1]


# -------------------------------------------------------------------- plan


@dataclass(frozen=True)
class VectorPlan:
    """How a vector layer is cut into tiles and buffered.

    Parameters
    ----------
    oh_t, ow_t : int
        Output tile height and width (pixels); the last tiles of a column or row may be smaller.
    double_buffer : bool
        Two input, output and parameter slots, so loads and stores overlap the vector unit;
        with ``False`` one slot each and the units take turns.
    """

    oh_t: int
    ow_t: int
    double_buffer: bool = True

    def __post_init__(self) -> None:
        for name in ("oh_t", "ow_t"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"VectorPlan.{name} must be a positive integer, not {v!r}")
        if not isinstance(self.double_buffer, bool):
            raise TypeError(f"VectorPlan.double_buffer must be a bool, not {self.double_buffer!r}")

    @property
    def tile(self) -> str:
        """``"OHxOW"``, as errors and reports print it."""
        return f"{self.oh_t}x{self.ow_t}"

    def validate(self, config: HWConfig, layer: VectorLayer) -> None:
        """Raise ``ValueError`` naming the layer, the tile and the limit if the plan cannot run.

        Checks the kernel size against the config, the scratchpad capacity (with the
        buffering) and the ISA field widths (tile sides, window, strides, row lengths).
        """
        error = VectorGeometry(config, layer, self).error
        if error:
            raise ValueError(error)

    def footprint(self, config: HWConfig, layer: VectorLayer) -> int:
        """Scratchpad rows the plan uses, buffering included."""
        return VectorGeometry(config, layer, self).spad_used


@dataclass(frozen=True)
class AxisTile:
    """One tile along an axis (rows or columns) of the output and its input.

    ``out0, out_n``: the tile's first output index and size; ``in0, in_n``: the in-image input
    pixels it reads (``in_n >= 1``); ``pad``: how far the first window starts before ``in0``
    (``pad_t`` or ``pad_l``).
    """

    out0: int
    out_n: int
    in0: int
    in_n: int
    pad: int


def _axis_tiles(size: int, out: int, k: int, stride: int, pad: int, tile: int) -> list[AxisTile]:
    tiles = []
    for o0 in range(0, out, tile):
        n = min(tile, out - o0)
        first = o0 * stride - pad
        start, end = max(0, first), min(size, first + (n - 1) * stride + k)
        tiles.append(AxisTile(o0, n, start, end - start, start - first))
    return tiles


class VectorGeometry:
    """Command, tiles, slot sizes and scratchpad addresses of one (config, layer, plan).

    `error` says why the plan cannot run (None if it can). The cost model reads the command
    shapes and DMA bytes from here, so it counts exactly what `lower_vector` emits.
    """

    def __init__(self, config: HWConfig, layer: VectorLayer, plan: VectorPlan) -> None:
        if not isinstance(layer, VECTOR_LAYERS):
            raise TypeError(
                f"layer must be a DepthwiseConv2D, Add or Pool2D, not {type(layer).__name__}"
            )
        self.config, self.layer, self.plan = config, layer, plan
        self.op, self.mode = _opcode(layer)
        self.kh, self.kw = (1, 1) if isinstance(layer, Add) else (layer.kh, layer.kw)
        self.stride = 1 if isinstance(layer, Add) else layer.stride
        pad = 0 if isinstance(layer, Add) else layer.pad
        self.operands = 2 if isinstance(layer, Add) else 1
        self.lanes = config.vector_lanes
        self.groups = -(-layer.c // self.lanes)
        self.param_rows = VectorUnit.timing(config).param_rows(self.op, self.mode, self.kh, self.kw)
        oh_t, ow_t = min(plan.oh_t, layer.out_h), min(plan.ow_t, layer.out_w)
        self.row_tiles = _axis_tiles(layer.h, layer.out_h, self.kh, self.stride, pad, oh_t)
        self.col_tiles = _axis_tiles(layer.w, layer.out_w, self.kw, self.stride, pad, ow_t)
        self.in_h = max(t.in_n for t in self.row_tiles)
        self.in_w = max(t.in_n for t in self.col_tiles)
        self.nbuf = 2 if plan.double_buffer else 1
        self.in_slot = self.operands * self.in_h * self.in_w
        self.out_slot = oh_t * ow_t
        n = self.nbuf
        self.in_base = [i * self.in_slot for i in range(n)]
        self.out_base = [n * self.in_slot + i * self.out_slot for i in range(n)]
        params = n * (self.in_slot + self.out_slot)
        self.param_base = [params + i * self.param_rows for i in range(n)]
        self.spad_used = n * (self.in_slot + self.out_slot + self.param_rows)
        self.error = self._check()

    def group_len(self, g: int) -> int:
        """Channels of group ``g`` (``lanes``, fewer for the last group)."""
        return min(self.lanes, self.layer.c - g * self.lanes)

    @property
    def steps_per_group(self) -> int:
        return self.layer.batch * len(self.row_tiles) * len(self.col_tiles)

    def command_shapes(self) -> Counter[tuple[int, int]]:
        """``(out_h, out_w)`` of every vector command of the program, with multiplicity."""
        shapes: Counter[tuple[int, int]] = Counter()
        for r in self.row_tiles:
            for c in self.col_tiles:
                shapes[r.out_n, c.out_n] += self.groups * self.layer.batch
        return shapes

    def dma_bytes(self) -> tuple[int, int]:
        """(bytes loaded, bytes stored) by the whole program: tiles, halos, parameter blocks."""
        layer = self.layer
        pixels_in = sum(t.in_n for t in self.row_tiles) * sum(t.in_n for t in self.col_tiles)
        loaded = layer.batch * self.operands * pixels_in * layer.c
        loaded += self.groups * self.param_rows * self.config.rows
        stored = layer.batch * layer.out_h * layer.out_w * layer.c
        return loaded, stored

    def first_load_bytes(self) -> int:
        """Bytes of the first step's loads (parameter block and input tile): the prologue."""
        r, c = self.row_tiles[0], self.col_tiles[0]
        tile = self.operands * r.in_n * c.in_n * self.group_len(0)
        return tile + self.param_rows * self.config.rows

    def last_store_bytes(self) -> int:
        """Bytes of the last step's stores: the epilogue."""
        r, c = self.row_tiles[-1], self.col_tiles[-1]
        return r.out_n * c.out_n * self.group_len(self.groups - 1)

    def _check(self) -> str | None:
        cfg, layer, plan = self.config, self.layer, self.plan
        where = f"layer {layer.name!r}: tile {plan.tile}"
        name = f"config {cfg.name!r}"
        if plan.oh_t > layer.out_h or plan.ow_t > layer.out_w:
            return (
                f"{where} is larger than the {layer.out_h}x{layer.out_w} output; use at most "
                f"oh_t={layer.out_h}, ow_t={layer.out_w}"
            )
        if self.op == Op.DWCONV and max(self.kh, self.kw) > cfg.vector_max_kernel:
            return (
                f"layer {layer.name!r}: the {self.kh}x{self.kw} depthwise kernel exceeds "
                f"vector_max_kernel={cfg.vector_max_kernel} of {name}; use a config with a "
                f"larger vector_max_kernel"
            )
        if max(self.kh, self.kw) > _MAX_WINDOW:
            return (
                f"layer {layer.name!r}: the {self.kh}x{self.kw} window exceeds the EWISE kh/kw "
                f"fields (at most {_MAX_WINDOW}); split the pool"
            )
        if cfg.rows > _MAX_LEN:
            return (
                f"layer {layer.name!r}: {name} has rows={cfg.rows}, but LOAD.len holds at most "
                f"{_MAX_LEN} bytes per scratchpad row"
            )
        if layer.c > min(_MAX_LOAD_STRIDE, _MAX_STORE_STRIDE):
            return (
                f"layer {layer.name!r}: c={layer.c} exceeds the LOAD.stride field "
                f"({_MAX_LOAD_STRIDE} bytes between pixels)"
            )
        sides = {"in_h": self.in_h, "in_w": self.in_w, "out_h": min(plan.oh_t, layer.out_h),
                 "out_w": min(plan.ow_t, layer.out_w)}  # fmt: skip
        for field, v in sides.items():
            if v > _MAX_DIM:
                axis = "oh_t" if field.endswith("_h") else "ow_t"
                return (
                    f"{where} needs {field}={v}, beyond the {_MAX_DIM} of the vector command's "
                    f"10-bit field; use a smaller {axis}"
                )
        spad_rows = min(cfg.spad_rows, _VEC_SPACE)
        if self.spad_used > spad_rows:
            n = self.nbuf
            return (
                f"{where} needs {self.spad_used} scratchpad rows ({n} x {self.in_slot} input + "
                f"{n} x {self.out_slot} output + {n} x {self.param_rows} parameter rows), {name} "
                f"has {spad_rows}; use a smaller tile"
                + (" or double_buffer=False" if plan.double_buffer else "")
            )
        return None


def _opcode(layer: VectorLayer) -> tuple[Op, int]:
    if isinstance(layer, DepthwiseConv2D):
        return Op.DWCONV, 0
    if isinstance(layer, Add):
        return Op.EWISE, int(EwiseMode.ADD)
    return Op.EWISE, int(EwiseMode.MAXPOOL if layer.kind == "max" else EwiseMode.AVGPOOL)


def _largest(lo_ok: int, hi: int, ok) -> int:
    """Largest v in lo_ok..hi with ok(v), knowing ok(lo_ok) and ok monotone decreasing."""
    lo = lo_ok
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def default_vector_plan(config: HWConfig, layer: VectorLayer) -> VectorPlan:
    """The plan `lower_vector` uses when given none: the largest tile that fits.

    Double-buffered if even a 1x1 tile fits that way, else single-buffered. The tile has the
    full output width if one output row fits (else the widest part of a row), then as many
    output rows as fit: few, large commands keep the per-command parameter reads and pipeline
    latency small, and few tiles keep the re-loaded input halos small.

    Raises
    ------
    ValueError
        Nothing fits (the kernel exceeds the config, or even a 1x1 tile overflows the
        scratchpad); the message names the layer and the limit.
    """

    def fits(oh: int, ow: int, double: bool) -> bool:
        return VectorGeometry(config, layer, VectorPlan(oh, ow, double)).error is None

    for double in (True, False):
        if not fits(1, 1, double):
            continue
        ow = _largest(1, layer.out_w, lambda v, d=double: fits(1, v, d))
        oh = _largest(1, layer.out_h, lambda v, d=double, w=ow: fits(v, w, d))
        return VectorPlan(oh, ow, double)
    smallest = VectorGeometry(config, layer, VectorPlan(1, 1, double_buffer=False))
    raise ValueError(f"no tile fits: {smallest.error}")


# -------------------------------------------------------------------- parameter blocks


def _planes(values: np.ndarray, nbytes: int) -> list[np.ndarray]:
    """Byte planes, least significant first, of two's-complement ``values``."""
    u = values.astype(np.int64) & ((1 << (8 * nbytes)) - 1)
    return [(u >> (8 * i)) & 0xFF for i in range(nbytes)]


def _param_image(geo: VectorGeometry, t: dict[str, Any]) -> np.ndarray:
    """The parameter blocks, ``(groups, param_rows, rows)`` uint8 (``docs/isa.md``)."""
    layer, lanes, groups = geo.layer, geo.lanes, geo.groups
    c = layer.c

    def per_channel(values: Any) -> np.ndarray:
        full = np.zeros(groups * lanes, dtype=np.int64)
        full[:c] = np.broadcast_to(np.asarray(values, dtype=np.int64), (c,))
        return full

    if isinstance(layer, Pool2D) and layer.kind == "max":
        bias, requant = np.full(c, -128), MAXPOOL_REQUANT
    else:
        bias, requant = t["bias"], t["requant"]
    assert isinstance(requant, RequantParams)
    rows = [
        *_planes(per_channel(bias), 4),
        *_planes(per_channel(requant.multiplier), 4),
        per_channel(requant.shift),
        *(_planes(per_channel(v), 1)[0] for v in (requant.zero_point, requant.lo, requant.hi)),
    ]
    if isinstance(layer, DepthwiseConv2D):
        w = np.asarray(t["weights"]).reshape(layer.k * layer.k, c)
        rows += [_planes(per_channel(tap), 1)[0] for tap in w]
    elif isinstance(layer, Add):
        rows += [_planes(per_channel(t[z]), 1)[0] for z in ("za", "zb")]
        rows += [*_planes(per_channel(t["ma"]), 2), *_planes(per_channel(t["mb"]), 2)]
    assert len(rows) == geo.param_rows
    block = np.stack(rows).reshape(geo.param_rows, groups, lanes).transpose(1, 0, 2)
    image = np.zeros((groups, geo.param_rows, geo.config.rows), dtype=np.uint8)
    image[:, :, :lanes] = block
    return image


# -------------------------------------------------------------------- program building


@dataclass(frozen=True)
class _Step:
    g: int
    b: int
    ty: int
    tx: int


class _Builder:
    def __init__(self, geo: VectorGeometry, addr: dict[str, int], stride: dict[str, int]) -> None:
        self.geo, self.layer, self.addr, self.stride = geo, geo.layer, addr, stride

    def steps(self) -> list[_Step]:
        geo = self.geo
        return [
            _Step(g, b, ty, tx)
            for g in range(geo.groups)
            for b in range(self.layer.batch)
            for ty in range(len(geo.row_tiles))
            for tx in range(len(geo.col_tiles))
        ]

    def input_loads(self, i: int, st: _Step) -> list[_Cmd]:
        geo, layer = self.geo, self.layer
        r, c = geo.row_tiles[st.ty], geo.col_tiles[st.tx]
        ln = geo.group_len(st.g)
        names = ("a", "b") if isinstance(layer, Add) else ("input",)
        cmds = []
        for k, name in enumerate(names):
            base = geo.in_base[i % geo.nbuf] + k * r.in_n * c.in_n
            # (spad row, first pixel, pixels): the whole tile when it spans the image width
            if c.in_n == layer.w:
                pieces = [(base, (st.b * layer.h + r.in0) * layer.w, r.in_n * layer.w)]
            else:
                pieces = [
                    (base + y * c.in_n, (st.b * layer.h + r.in0 + y) * layer.w + c.in0, c.in_n)
                    for y in range(r.in_n)
                ]
            for spad, pixel, n in pieces:
                for s0, cnt in _runs(n, spad):
                    step = self.stride[name]
                    dram = self.addr[name] + (pixel + s0 - spad) * step + st.g * geo.lanes
                    cmds.append(_cmd(Op.LOAD, vec=1, dram_addr=dram, spad_addr=s0, rows=cnt,
                                     len=ln, stride=step))  # fmt: skip
        return cmds

    def param_loads(self, st: _Step) -> list[_Cmd]:
        geo, rows = self.geo, self.geo.config.rows
        dram = self.addr["params"] + st.g * geo.param_rows * rows
        spad = geo.param_base[st.g % geo.nbuf]
        return [_cmd(Op.LOAD, vec=1, dram_addr=dram, spad_addr=spad, rows=geo.param_rows,
                     len=rows, stride=rows)]  # fmt: skip

    def vector(self, i: int, st: _Step) -> _Cmd:
        geo = self.geo
        r, c = geo.row_tiles[st.ty], geo.col_tiles[st.tx]
        fields = {"mode": geo.mode} if geo.op == Op.EWISE else {}
        return _cmd(
            geo.op, **fields, stride=geo.stride, pad_t=r.pad, pad_l=c.pad, kh=geo.kh, kw=geo.kw,
            param_addr=geo.param_base[st.g % geo.nbuf], in_addr=geo.in_base[i % geo.nbuf],
            out_addr=geo.out_base[i % geo.nbuf], in_w=c.in_n, in_h=r.in_n, out_w=c.out_n,
            out_h=r.out_n,
        )  # fmt: skip

    def stores(self, i: int, st: _Step) -> list[_Cmd]:
        geo, layer = self.geo, self.layer
        r, c = geo.row_tiles[st.ty], geo.col_tiles[st.tx]
        base = geo.out_base[i % geo.nbuf]
        step = self.stride["output"]

        def dram(oy: int) -> int:
            pixel = (st.b * layer.out_h + oy) * layer.out_w + c.out0
            return self.addr["output"] + pixel * step + st.g * geo.lanes

        if c.out_n == layer.out_w:
            pieces = [(base, dram(r.out0), r.out_n * c.out_n)]
        else:
            pieces = [(base + y * c.out_n, dram(r.out0 + y), c.out_n) for y in range(r.out_n)]
        return [
            _cmd(Op.STORE, vec=1, spad_addr=s0, dram_addr=d + (s0 - spad) * step, rows=cnt,
                 len=geo.group_len(st.g), stride=step)
            for spad, d, n in pieces
            for s0, cnt in _runs(n, spad)
        ]  # fmt: skip

    def load_groups(self, steps: list[_Step]) -> list[tuple[list[_Cmd], int | None]]:
        """Per step: its loads and the step whose vector command frees their slots (or None)."""
        nbuf = self.geo.nbuf
        last_of_group: dict[int, int] = {st.g: i for i, st in enumerate(steps)}
        groups = []
        for i, st in enumerate(steps):
            loads, reqs = [], []
            if i == 0 or steps[i - 1].g != st.g:
                loads += self.param_loads(st)
                if st.g >= nbuf:
                    reqs.append(last_of_group[st.g - nbuf])
            loads += self.input_loads(i, st)
            if i >= nbuf:
                reqs.append(i - nbuf)
            groups.append((loads, max(reqs) if reqs else None))
        return groups

    def build(self) -> list[_Cmd]:
        nbuf = self.geo.nbuf
        steps = self.steps()
        groups = self.load_groups(steps)
        releases = {req for _loads, req in groups if req is not None}
        prog: list[_Cmd] = []
        emitted = 0
        for i, st in enumerate(steps):
            # every load group whose slots are free by now (step i's own, and step i+1's when
            # double-buffered: it waits for step i-1 only)
            while emitted < len(groups) and (groups[emitted][1] is None or groups[emitted][1] < i):
                loads, req = groups[emitted]
                loads[-1].fields["push_next"] = True
                if req is not None:
                    loads[0].fields["pop_next"] = True
                prog += loads
                emitted += 1
            vec = self.vector(i, st)
            vec.fields["pop_prev"] = True
            vec.fields["push_next"] = True
            if i >= nbuf:
                vec.fields["pop_next"] = True
            if i in releases:
                vec.fields["push_prev"] = True
            prog.append(vec)
            stores = self.stores(i, st)
            stores[0].fields["pop_prev"] = True
            if i + nbuf < len(steps):
                stores[-1].fields["push_prev"] = True
            prog += stores
        prog.append(_cmd(Op.FENCE))
        return prog


# -------------------------------------------------------------------- entry points


def vector_inputs(layer: VectorLayer) -> tuple[str, ...]:
    """Names of a vector layer's input tensors: ``("a", "b")`` for an add, else ``("input",)``."""
    return ("a", "b") if isinstance(layer, Add) else ("input",)


def vector_param_image(config: HWConfig, layer: VectorLayer, tensors: dict[str, Any]) -> np.ndarray:
    """The parameter blocks of a vector layer, ``(groups, param_rows, rows)`` uint8.

    The bytes a `vector_program` reads at ``params_addr`` (module docstring, ``docs/isa.md``):
    bias, requantization and weights (depthwise) or zero points and multipliers (add), one block
    per channel group. They do not depend on the plan.
    """
    if not isinstance(config, HWConfig):
        raise TypeError(f"config must be an HWConfig, not {type(config).__name__}")
    t = check_tensors(layer, tensors)
    return _param_image(VectorGeometry(config, layer, VectorPlan(1, 1, False)), t)


def vector_program(
    config: HWConfig,
    layer: VectorLayer,
    plan: VectorPlan,
    *,
    inputs: dict[str, int],
    params_addr: int,
    output_addr: int,
    input_strides: dict[str, int] | None = None,
    output_stride: int | None = None,
) -> tuple[int, ...]:
    """The program of a vector layer whose tensors lie at given DRAM addresses.

    Parameters
    ----------
    config : HWConfig
    layer : DepthwiseConv2D, Add or Pool2D
    plan : VectorPlan
        Validated against the layer (`VectorPlan.validate`).
    inputs : dict of str to int
        DRAM byte of channel 0 of pixel 0 of each input (`vector_inputs`: ``input``, or ``a``
        and ``b``); channel ``ch`` of pixel ``p`` (``(b*h + y)*w + x``) is at
        ``addr + p*stride + ch``.
    params_addr : int
        DRAM byte of the `vector_param_image`.
    output_addr : int
        DRAM byte of channel 0 of output pixel 0.
    input_strides, output_stride : int, optional
        Bytes from one pixel to the next (default ``c``, a packed NHWC tensor; more to read or
        write a channel slice of a wider tensor, e.g. a concatenation's buffer).

    Returns
    -------
    tuple of int
        The 128-bit command words, ending with FENCE.

    Raises
    ------
    ValueError
        A plan that does not fit, a missing input, a stride below ``c`` or beyond the LOAD /
        STORE stride fields, or an address outside the 32-bit DRAM space.
    """
    if not isinstance(plan, VectorPlan):
        raise TypeError(f"plan must be a VectorPlan, not {type(plan).__name__}")
    geo = VectorGeometry(config, layer, plan)
    if geo.error:
        raise ValueError(geo.error)
    names = vector_inputs(layer)
    if set(inputs) != set(names):
        raise ValueError(
            f"layer {layer.name!r}: inputs must give the addresses of {', '.join(names)}, "
            f"not {', '.join(inputs) or 'nothing'}"
        )
    strides = {name: layer.c for name in names} | dict(input_strides or {})
    strides["output"] = layer.c if output_stride is None else output_stride
    addr = {**inputs, "params": params_addr, "output": output_addr}
    for name, step in strides.items():
        limit = _MAX_STORE_STRIDE if name == "output" else _MAX_LOAD_STRIDE
        if not isinstance(step, int) or not layer.c <= step <= limit:
            raise ValueError(
                f"layer {layer.name!r}: the {name} stride {step!r} must be in c={layer.c}.."
                f"{limit} bytes between pixels"
            )
    for name, a in addr.items():
        if not isinstance(a, int) or not 0 <= a < _DRAM_SPACE:
            raise ValueError(
                f"layer {layer.name!r}: {name} address {a!r} is outside the 32-bit DRAM space"
            )
    return tuple(cmd.word() for cmd in _Builder(geo, addr, strides).build())


def lower_vector(
    config: HWConfig, layer: VectorLayer, tensors: dict[str, Any], plan: VectorPlan | None = None
) -> Lowered:
    """Lower a vector layer and its tensors to a program and DRAM image for ``config``.

    Lays out its own image (inputs, parameter blocks, output, program, each `ALIGN`-ed from
    address 0) and builds the program with `vector_program`.

    Parameters
    ----------
    config : HWConfig
        The accelerator (vector lanes and maximum kernel, scratchpad rows).
    layer : DepthwiseConv2D, Add or Pool2D
    tensors : dict
        The layer's tensors (`kernels.vector.tensor_keys`; see `kernels.conv.random_layer_data`).
    plan : VectorPlan, optional
        Tiling and buffering; `default_vector_plan` when omitted.

    Returns
    -------
    Lowered
        Regions ``input`` (``a`` and ``b`` for an add), ``params``, ``output`` and ``program``.
        Running ``program`` on ``image`` leaves ``kernels.conv.layer_golden(layer, tensors)`` in
        the ``output`` region, bit for bit.

    Raises
    ------
    ValueError
        Bad tensors, a plan that does not fit (`VectorPlan.validate`), or an image beyond the
        32-bit DRAM address space.
    """
    if not isinstance(config, HWConfig):
        raise TypeError(f"config must be an HWConfig, not {type(config).__name__}")
    if not isinstance(layer, VECTOR_LAYERS):
        raise TypeError(
            f"layer must be a DepthwiseConv2D, Add or Pool2D, not {type(layer).__name__}"
        )
    t = check_tensors(layer, tensors)
    if plan is None:
        plan = default_vector_plan(config, layer)
    elif not isinstance(plan, VectorPlan):
        raise TypeError(f"plan must be a VectorPlan, not {type(plan).__name__}")
    geo = VectorGeometry(config, layer, plan)
    if geo.error:
        raise ValueError(geo.error)

    params = _param_image(geo, t)
    inputs = vector_inputs(layer)
    arrays = {name: np.ascontiguousarray(t[name], dtype=np.int8) for name in inputs}
    specs = [(name, arrays[name].nbytes, layer.input_shape, "int8", "NHWC int8") for name in inputs]
    specs += [
        ("params", params.nbytes, params.shape, "uint8",
         "parameter blocks [group][row][byte]: lane l in byte l, values as byte planes (LSB "
         "first): bias, M, S, zp, lo, hi, then weights or za, zb, ma, mb (docs/isa.md)"),
        ("output", layer.output_bytes, layer.output_shape, "int8", "NHWC int8"),
    ]  # fmt: skip
    addr: dict[str, int] = {}
    regions: dict[str, Region] = {}
    cursor = 0
    for name, nbytes, shape, dtype, layout in specs:
        addr[name] = cursor
        regions[name] = Region(name, cursor, nbytes, tuple(shape), dtype, layout)
        cursor = _align(cursor + nbytes)

    program = vector_program(
        config,
        layer,
        plan,
        inputs={name: addr[name] for name in inputs},
        params_addr=addr["params"],
        output_addr=addr["output"],
    )
    prog_bytes = isa.to_bytes(program)
    regions["program"] = Region("program", cursor, len(prog_bytes), (len(program), isa.CMD_BYTES),
                                "uint8", "128-bit little-endian command words")  # fmt: skip
    total = _align(cursor + len(prog_bytes))
    if total > _DRAM_SPACE:
        raise ValueError(
            f"layer {layer.name!r}: the DRAM image needs {total} bytes, beyond the 32-bit "
            f"dram_addr space; split the layer"
        )
    image = bytearray(total)
    for name, arr in [*arrays.items(), ("params", params)]:
        image[addr[name] : addr[name] + arr.nbytes] = arr.tobytes()
    image[cursor : cursor + len(prog_bytes)] = prog_bytes
    assert cursor % ALIGN == 0
    return Lowered(
        program=program,
        program_addr=cursor,
        image=bytes(image),
        regions=regions,
        output=regions["output"],
        macs=layer.macs,
        plan=plan,  # type: ignore[arg-type]  # a VectorPlan for vector layers
        layer=layer,
        config=config,
    )


def lower_layer(
    config: HWConfig,
    layer: Layer,
    tensors: dict[str, Any],
    plan: TilePlan | VectorPlan | None = None,
) -> Lowered:
    """Lower any layer: `kernels.lower.lower` for Conv2D and Dense (with a `TilePlan`),
    `lower_vector` for DepthwiseConv2D, Add and Pool2D (with a `VectorPlan`)."""
    if isinstance(layer, Conv2D | Dense):
        if plan is not None and not isinstance(plan, TilePlan):
            raise TypeError(
                f"layer {layer.name!r} runs on the array: give a TilePlan, not {plan!r}"
            )
        return lower(config, layer, tensors, plan)
    if isinstance(layer, VECTOR_LAYERS):
        if plan is not None and not isinstance(plan, VectorPlan):
            raise TypeError(
                f"layer {layer.name!r} runs on the vector unit: give a VectorPlan, not {plan!r}"
            )
        return lower_vector(config, layer, tensors, plan)
    raise TypeError(f"layer must be a layer of kernels.layers, not {type(layer).__name__}")
