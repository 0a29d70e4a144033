"""Lowering of a layer to a Tandem program (weight-stationary), with its DRAM image.

`lower` turns a `Conv2D` or `Dense` layer and its tensors into the command words of
``docs/isa.md`` and the initial DRAM image (input, pre-arranged weights, output, program).

Scratchpad layout
-----------------
A scratchpad row holds ``rows`` int8 values: one pixel x one chunk of ``rows`` input channels
(chunk ``kc`` covers channels ``kc*rows .. kc*rows + rows - 1``; the DMA zero-pads the rest). The
input tile of an ``oh_t x ow_t`` output tile is ``ih_t = (oh_t-1)*s + k`` by
``iw_t = (ow_t-1)*s + k`` pixels; per chunk it is a block of ``ih_t*iw_t`` rows, pixel
``(iy, ix)`` of chunk ``kc`` at ``base + kc*ih_t*iw_t + iy*iw_t + ix``. Border pixels outside the
image are zero rows (``LOAD zero=1``). A KxK convolution is then ``k*k*nchunks`` MATMULs over
shifted ``a_addr`` with ``a_stride_x = s`` and ``a_stride_y = s*iw_t``.

The weight tile of n-tile ``nt``, chunk ``kc`` and tap ``(ky, kx)`` is ``rows`` weight rows of
``wrows = ceil(cols/rows)`` scratchpad rows each (weight row ``k`` = the ``cols`` weights
``W[ky, kx, kc*rows + k, nt*cols : nt*cols + cols]``, zero past ``cin``/``cout``). The DRAM copy
is pre-arranged in that order, n-tile major, so one LOAD (``len = stride = rows``) brings in a
whole set. Weights stay resident when they fit; otherwise one n-tile's set at a time streams
through a (double-buffered) weight region.

Pipelining
----------
The work is a sequence of *steps*, one per (image, output tile, n-tile). Input tiles, weight sets
and accumulator tiles live in ring buffers (two slots with ``double_buffer``); dependency tokens
let the load unit fill the next slot while the array works on the current one and the store unit
drains the previous accumulator tile:

* l2e: the last LOAD of a step's loads ``+push_next``; the step's first MATMUL ``+pop_prev``;
* e2l: the last MATMUL of the step after which a slot is free ``+push_prev``; the first LOAD that
  refills that slot ``+pop_next``;
* e2s: every step's last MATMUL ``+push_next``; its first store-queue command ``+pop_prev``;
* s2e: a step's last STORE ``+push_prev``; the first MATMUL of the step that reuses its
  accumulator slot ``+pop_next``.

CFG_BIAS and CFG_QUANT are only sent when the n-tile changes (with one n-tile, once); CFG_STORE
once, first.

Every push has exactly one pop (no token is left over), and every pop's push comes earlier in the
program, so no queue depth can deadlock the decoder.

K groups
--------
When one n-tile's weights do not fit the scratchpad, ``TilePlan.k_groups`` splits the reduction:
the chunks run in ``k_groups`` groups of ``ceil(nchunks/k_groups)`` chunks, and the input and
weight slots hold one group's chunks (weights then always stream). Each (image, output tile,
n-tile) becomes ``k_groups`` consecutive steps, one per group: each loads its group's input
chunks and weights (l2e/e2l as above, a slot per group), group 0's first MATMUL starts the
accumulator tile from the bias and pops s2e, the MATMULs of group ``g > 0`` accumulate onto the
tile group ``g - 1`` left (``acc=1``; os: the ``drain=1`` adds onto the rows), and only the last
group's last MATMUL pushes e2s. The tokens keep the invariants above.

Segments
--------
`lower_segments` builds one program for several convolutions of the same geometry (for example
the channels of a depthwise convolution, each a ``cin = cout = 1`` convolution, or the groups of
a grouped convolution, a few side by side per segment: `array_form`). Each `Segment`
says where its input, weights and output are in DRAM and how many bytes separate two pixels, so a
segment can read and write one channel plane of a wider NHWC tensor. The segments' steps run in
order through the same ring buffers with the same tokens, as if they were one layer: the next
segment's loads fill the free slots while the array finishes the previous segment. A later
segment sends CFG_BIAS/CFG_QUANT only for the columns that hold its output channels (the padding
columns, set by the first segment, are never stored). `lower` is the one-segment case.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtl import isa
from rtl.config import HWConfig
from rtl.isa import Op

from .conv import check_tensors
from .layers import Conv2D, Dense, DepthwiseConv2D, Layer
from .requant import RequantParams

__all__ = [
    "ALIGN",
    "ArrayForm",
    "Lowered",
    "Region",
    "Segment",
    "TilePlan",
    "array_form",
    "default_plan",
    "lower",
    "lower_segments",
    "segment_weights",
    "weight_image",
]

ALIGN = 64  # every DRAM region starts on a multiple of this many bytes


@dataclass(frozen=True)
class ArrayForm:
    """How the array runs a layer: the convolution ``conv`` once per segment (`lower_segments`).

    Segment ``i`` reads the input channels from ``i * in_step`` and writes the output channels
    from ``i * out_step`` of the layer's NHWC tensors, with the weights `segment_weights` gives.
    A tile plan tiles ``conv``. ``pack`` groups of a grouped convolution share a segment.
    """

    conv: Conv2D
    segments: int
    in_step: int
    out_step: int
    pack: int = 1


def array_form(layer: Layer, config: HWConfig) -> ArrayForm:
    """The `ArrayForm` of a layer on ``config``'s array.

    A convolution or dense layer is one segment. A depthwise layer on the array is one segment
    per channel (`DepthwiseConv2D.channel_conv`). A grouped convolution packs ``pack`` groups
    into each segment, the largest divisor of ``groups`` whose packed input channels fit one
    scratchpad row (``rows``) and packed output channels one array pass (``cols``): the segment
    is a ``pack*cin/groups -> pack*cout/groups`` convolution with block-diagonal weights (zero
    between groups), so the array runs ``pack`` groups side by side instead of one after the
    other (ResNeXt's 4-channel groups fill a 16x16 array 4 at a time). The zeros change no
    result: each output channel still sums over its own group only.
    """
    if isinstance(layer, DepthwiseConv2D):
        return ArrayForm(layer.channel_conv(), layer.c, 1, 1)
    if not isinstance(layer, Conv2D | Dense):
        raise TypeError(
            f"layer {getattr(layer, 'name', layer)!r}: the array runs Conv2D, Dense and "
            f"DepthwiseConv2D layers, not a {type(layer).__name__}"
        )
    conv = layer.as_conv()
    group = conv.group_conv()
    gin, gout = group.cin, group.cout
    pack = max(
        d
        for d in range(1, conv.groups + 1)
        if conv.groups % d == 0
        and d * gin <= max(config.rows, gin)
        and d * gout <= max(config.cols, gout)
    )
    seg = dataclasses.replace(group, cin=pack * gin, cout=pack * gout)
    return ArrayForm(seg, conv.groups // pack, pack * gin, pack * gout, pack)


def segment_weights(layer: Layer, form: ArrayForm, weights: np.ndarray) -> list[np.ndarray]:
    """Each segment's ``(k, k, cin, cout)`` weights of ``form.conv`` from the layer's weights:
    a depthwise layer's channel filter; a grouped convolution's ``pack`` group filters on the
    diagonal of a block matrix, zero elsewhere."""
    w = np.asarray(weights)
    if isinstance(layer, DepthwiseConv2D):
        return [w[:, :, ch].reshape(form.conv.weight_shape) for ch in range(layer.c)]
    full = layer.as_conv()
    w = w.reshape(full.weight_shape)
    if full.groups == 1:
        return [w]
    k, gin, gout = full.k, full.cin // full.groups, full.cout // full.groups
    out = []
    for i in range(form.segments):
        block = np.zeros((k, k, form.pack * gin, form.pack * gout), dtype=w.dtype)
        for j in range(form.pack):
            g = i * form.pack + j
            block[:, :, j * gin : (j + 1) * gin, j * gout : (j + 1) * gout] = w[
                :, :, :, g * gout : (g + 1) * gout
            ]
        out.append(block)
    return out


# Widths of the ISA fields the lowering fills (rtl/isa.py FIELDS).
_MAX_LEN = (1 << isa.FIELDS[Op.LOAD]["len"][1]) - 1
_MAX_ROWS = (1 << isa.FIELDS[Op.LOAD]["rows"][1]) - 1
_MAX_LOAD_STRIDE = (1 << isa.FIELDS[Op.LOAD]["stride"][1]) - 1
_MAX_STORE_STRIDE = (1 << isa.FIELDS[Op.STORE]["stride"][1]) - 1
_MAX_NXY = (1 << isa.FIELDS[Op.MATMUL]["nx"][1]) - 1
_MAX_SX = (1 << isa.FIELDS[Op.MATMUL]["a_stride_x"][1]) - 1
_MAX_SY = (1 << isa.FIELDS[Op.MATMUL]["a_stride_y"][1]) - 1
_SPAD_SPACE = 1 << isa.FIELDS[Op.LOAD]["spad_addr"][1]
_ACC_SPACE = 1 << isa.FIELDS[Op.MATMUL]["acc_addr"][1]
_DRAM_SPACE = 1 << isa.FIELDS[Op.LOAD]["dram_addr"][1]


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


# -------------------------------------------------------------------- plan


@dataclass(frozen=True)
class TilePlan:
    """How a layer is cut into tiles and buffered.

    Parameters
    ----------
    oh_t, ow_t : int
        Output tile height and width (pixels); the last tiles of a row or column may be smaller.
    double_buffer : bool
        Two slots for input tiles, weight sets and accumulator tiles, so loads and stores
        overlap the array; with ``False`` one slot each and the units take turns.
    resident_weights : bool
        Load all weights once and keep them in the scratchpad; otherwise stream one n-tile's
        weights at a time.
    n_outer : bool
        Loop order: n-tiles outside the spatial tiles (each weight set loaded once, input tiles
        reloaded per n-tile) instead of inside them (each input tile loaded once).
    dataflow : {"ws", "os"}
        ``"ws"``: one weight-stationary MATMUL per (chunk, tap) over the whole tile.
        ``"os"``: the tile is cut into array tiles of at most ``rows`` output pixels (whole tile
        rows when the tile is at most ``rows`` wide, else pieces of one row), each one
        output-stationary MATMUL per (chunk, tap), the last with ``drain=1``. Buffers, loads,
        stores and tokens are the same in both.
    k_groups : int
        Split the reduction: the ``nchunks = ceil(cin/rows)`` input-channel chunks run in
        ``k_groups`` groups of ``ceil(nchunks/k_groups)`` chunks (the last may be smaller, none
        empty). The input slot and the weight slot hold one group's chunks; each group loads its
        own input and weights and accumulates onto the accumulator tile of the previous group.
        For layers whose weights of one n-tile do not fit the scratchpad; needs
        ``resident_weights=False``.
    """

    oh_t: int
    ow_t: int
    double_buffer: bool = True
    resident_weights: bool = True
    n_outer: bool = False
    dataflow: str = "ws"
    k_groups: int = 1

    def __post_init__(self) -> None:
        for name in ("oh_t", "ow_t", "k_groups"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"TilePlan.{name} must be a positive integer, not {v!r}")
        for name in ("double_buffer", "resident_weights", "n_outer"):
            v = getattr(self, name)
            if not isinstance(v, bool):
                raise TypeError(f"TilePlan.{name} must be a bool, not {v!r}")
        if self.dataflow not in ("ws", "os"):
            raise ValueError(f"TilePlan.dataflow must be 'ws' or 'os', not {self.dataflow!r}")
        if self.k_groups > 1 and self.resident_weights:
            raise ValueError(
                f"TilePlan.k_groups={self.k_groups} needs resident_weights=False (each group "
                f"streams its own weights)"
            )

    @property
    def tile(self) -> str:
        """``"OHxOW"``, as errors and reports print it."""
        return f"{self.oh_t}x{self.ow_t}"

    def validate(self, config: HWConfig, layer: Layer) -> None:
        """Raise ``ValueError`` naming the layer, the tile and the limit if the plan cannot run.

        Checks the accumulator and scratchpad capacity (with the buffering), and the ISA field
        widths the program needs (tile width and height, stride, row lengths, strides).
        """
        error = _Geometry(config, array_form(layer, config).conv, self).error
        if error:
            raise ValueError(error)

    def footprint(self, config: HWConfig, layer: Layer) -> tuple[int, int]:
        """(scratchpad rows, accumulator rows) the plan uses, buffering included."""
        g = _Geometry(config, array_form(layer, config).conv, self)
        return g.spad_used, g.acc_used


class _Geometry:
    """Sizes and buffer addresses of one (config, layer, plan); `error` says why it cannot run."""

    def __init__(self, config: HWConfig, conv: Conv2D, plan: TilePlan) -> None:
        self.config, self.conv, self.plan = config, conv, plan
        r, c = config.rows, config.cols
        self.wrows = -(-c // r)
        self.nchunks = -(-conv.cin // r)
        self.k_groups = plan.k_groups
        self.group_chunks = -(-self.nchunks // plan.k_groups)  # chunks per group (the last: fewer)
        self.ntiles = -(-conv.cout // c)
        self.oh_t = min(plan.oh_t, conv.out_h)
        self.ow_t = min(plan.ow_t, conv.out_w)
        self.ih_t = (self.oh_t - 1) * conv.stride + conv.k
        self.iw_t = (self.ow_t - 1) * conv.stride + conv.k
        self.in_rows = self.group_chunks * self.ih_t * self.iw_t  # one input slot
        self.wtile_rows = r * self.wrows  # one (chunk, tap) weight tile
        self.wchunk_rows = conv.k * conv.k * self.wtile_rows  # one chunk's taps
        self.wntile_rows = self.nchunks * self.wchunk_rows  # one n-tile's weights
        self.wset_rows = self.group_chunks * self.wchunk_rows  # one n-tile's, one group's weights
        nbuf = 2 if plan.double_buffer else 1
        self.nin = nbuf
        self.nacc = nbuf
        self.nw = 1 if plan.resident_weights else nbuf
        self.wslot_rows = (
            self.ntiles * self.wntile_rows if plan.resident_weights else self.wset_rows
        )
        self.acc_tile = self.oh_t * self.ow_t
        self.in_base = [i * self.in_rows for i in range(self.nin)]
        wbase = self.nin * self.in_rows
        self.w_base = [wbase + i * self.wslot_rows for i in range(self.nw)]
        self.spad_used = wbase + self.nw * self.wslot_rows
        self.acc_base = [i * self.acc_tile for i in range(self.nacc)]
        self.acc_used = self.nacc * self.acc_tile
        self.error = self._check()

    def _check(self) -> str | None:
        cfg, conv, plan = self.config, self.conv, self.plan
        where = f"layer {conv.name!r}: tile {plan.tile}"
        name = f"config {cfg.name!r}"
        if plan.dataflow == "os" and not cfg.has_os:
            return f"layer {conv.name!r}: {name} has no output-stationary dataflow"
        if plan.dataflow == "ws" and not cfg.has_ws:
            return f"layer {conv.name!r}: {name} has no weight-stationary dataflow"
        if (plan.k_groups - 1) * self.group_chunks >= self.nchunks:
            return (
                f"layer {conv.name!r}: k_groups={plan.k_groups} leaves a group without input "
                f"channels ({self.nchunks} chunk(s) of {cfg.rows} in groups of "
                f"{self.group_chunks}); use k_groups={-(-self.nchunks // self.group_chunks)}"
            )
        if plan.oh_t > conv.out_h or plan.ow_t > conv.out_w:
            return (
                f"{where} is larger than the {conv.out_h}x{conv.out_w} output; use at most "
                f"oh_t={conv.out_h}, ow_t={conv.out_w}"
            )
        if cfg.rows > _MAX_LEN:
            return (
                f"layer {conv.name!r}: {name} has rows={cfg.rows}, but LOAD.len holds at most "
                f"{_MAX_LEN} bytes per scratchpad row"
            )
        if min(cfg.cols, conv.cout) > _MAX_LEN:
            return (
                f"layer {conv.name!r}: {name} has cols={cfg.cols}, but STORE.len holds at most "
                f"{_MAX_LEN} output channels per row"
            )
        if conv.cin > _MAX_LOAD_STRIDE:
            return (
                f"layer {conv.name!r}: cin={conv.cin} exceeds the LOAD.stride field "
                f"({_MAX_LOAD_STRIDE} bytes between pixels)"
            )
        if conv.cout > _MAX_STORE_STRIDE:
            return f"layer {conv.name!r}: cout={conv.cout} exceeds the STORE.stride field"
        if conv.stride > _MAX_SX:
            return (
                f"layer {conv.name!r}: stride {conv.stride} exceeds MATMUL.a_stride_x "
                f"(at most {_MAX_SX})"
            )
        if self.ow_t > _MAX_NXY or self.oh_t > _MAX_NXY:
            return f"{where} exceeds MATMUL.nx/ny (at most {_MAX_NXY} pixels per side)"
        if conv.stride * self.iw_t > _MAX_SY:
            return f"{where} needs a_stride_y={conv.stride * self.iw_t} > {_MAX_SY}"
        buffering = " with double buffering" if plan.double_buffer else ""
        acc_rows = min(cfg.acc_rows, _ACC_SPACE)
        if self.acc_used > acc_rows:
            per = f" ({acc_rows // self.nacc} per buffer{buffering})" if self.nacc > 1 else ""
            fit = acc_rows // self.nacc
            return (
                f"{where} needs {self.acc_used} accumulator rows, {name} has {acc_rows}{per}; "
                f"use a tile of at most {fit} output pixels (oh_t*ow_t)"
            )
        spad_rows = min(cfg.spad_rows, _SPAD_SPACE)
        if self.spad_used > spad_rows:
            kind = (
                "resident weights (all n-tiles)"
                if plan.resident_weights
                else (f"{self.nw} weight buffer(s) of one n-tile")
            )
            need = (
                f"{self.nin} x {self.in_rows} for input tiles ({self.group_chunks} chunk(s) of "
                f"{self.ih_t}x{self.iw_t} pixels) + {self.nw} x {self.wslot_rows} for {kind}"
            )
            min_in = self.nin * self.group_chunks * conv.k * conv.k  # a 1x1 tile's input
            if self.nw * self.wslot_rows + min_in > spad_rows and (
                not plan.resident_weights or self.ntiles == 1
            ):
                return (
                    f"layer {conv.name!r}: the weights of one n-tile ({min(cfg.cols, conv.cout)} "
                    f"output channels x {conv.k}x{conv.k} taps x {self.group_chunks} chunk(s) of "
                    f"{cfg.rows} input channels) need {self.nw} x {self.wset_rows} scratchpad "
                    f"rows, which with even a 1x1 tile's input ({min_in} rows) exceed the "
                    f"{spad_rows} of {name}; "
                    + (
                        "use double_buffer=False (one weight and one input buffer)"
                        if plan.double_buffer and self.wset_rows + min_in // self.nin <= spad_rows
                        else "split the input channels into more groups (a larger k_groups, with "
                        "resident_weights=False)"
                    )
                )
            fix = (
                "use a smaller tile or resident_weights=False"
                if plan.resident_weights and self.ntiles > 1
                else "use a smaller tile"
            )
            return (
                f"{where} needs {self.spad_used} scratchpad rows ({need}), {name} has "
                f"{spad_rows}; {fix}"
            )
        return None


def _largest_tile(config: HWConfig, conv: Conv2D, **opts: bool | int) -> TilePlan | None:
    """Largest fitting tile: full output width if possible, then as many rows as fit."""

    def fits(oh: int, ow: int) -> bool:
        return _Geometry(config, conv, TilePlan(oh, ow, **opts)).error is None

    def largest(lo_ok: int, hi: int, ok) -> int:
        # largest v in lo_ok..hi with ok(v), knowing ok(lo_ok) and ok monotone decreasing
        lo = lo_ok
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if ok(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo

    if fits(1, conv.out_w):
        ow = conv.out_w
    elif fits(1, 1):
        ow = largest(1, conv.out_w, lambda v: fits(1, v))
    else:
        return None
    oh = largest(1, conv.out_h, lambda v: fits(v, ow))
    return TilePlan(oh, ow, **opts)


def _traffic(config: HWConfig, conv: Conv2D, plan: TilePlan) -> int:
    """Rough DRAM bytes moved by the loads of a plan (for choosing the loop order)."""
    g = _Geometry(config, conv, plan)
    ntiles_sp = -(-conv.out_h // g.oh_t) * -(-conv.out_w // g.ow_t) * conv.batch
    inputs = ntiles_sp * g.in_rows * plan.k_groups * config.rows
    weights = g.ntiles * g.wntile_rows * config.rows
    if plan.k_groups > 1:  # every step reloads its group's input and weights
        return g.ntiles * inputs + ntiles_sp * weights
    if plan.resident_weights:
        return inputs + weights
    if plan.n_outer:
        return weights + g.ntiles * inputs
    return inputs + ntiles_sp * weights


def default_plan(config: HWConfig, layer: Layer, dataflow: str | None = None) -> TilePlan:
    """The plan `lower` uses when given none.

    ``dataflow`` (``"ws"`` or ``"os"``) defaults to ``"ws"`` when the config has it, else
    ``"os"``; the tile is chosen the same way for both (their buffers are the same).

    For each mode the tile is the largest that fits: the full output width if one output row
    fits (else the widest partial row), then as many output rows as fit. The modes, in order:

    1. double-buffered, weights resident -- taken if its tile has the full output width;
    2. double-buffered, weights streamed per n-tile (only with several n-tiles), in the loop
       order that moves fewer DRAM bytes; the better of 1 and 2 (full width first, then the
       larger tile) is taken if either fits;
    3. the same with single buffering, when nothing fits double-buffered;
    4. only when none of these fits (one n-tile's weights, or a 1x1 tile's input, exceed the
       scratchpad): the smallest ``k_groups`` for which a streamed mode fits, double-buffered if
       it fits so, with the largest tile of that mode. Plans that fit with ``k_groups=1`` are
       never split.

    Raises
    ------
    ValueError
        Nothing fits even with one chunk per group; the message names the layer and the limit.
    """
    if dataflow is None:
        dataflow = "ws" if config.has_ws else "os"
    plan = _default_plan(config, array_form(layer, config).conv)
    return dataclasses.replace(plan, dataflow=dataflow)


def _default_plan(config: HWConfig, conv: Conv2D) -> TilePlan:
    if not config.has_ws:  # the tile search validates ws plans; the geometry is the same
        config = config.replace(dataflow="both")
    ntiles = -(-conv.cout // config.cols)
    for double in (True, False):
        resident = _largest_tile(config, conv, resident_weights=True, double_buffer=double)
        if resident is not None and resident.ow_t == conv.out_w:
            return resident
        streamed = None
        if ntiles > 1:
            options = [
                p
                for order in (False, True)
                if (
                    p := _largest_tile(
                        config, conv, resident_weights=False, n_outer=order, double_buffer=double
                    )
                )
            ]
            if options:
                streamed = min(options, key=lambda p: _traffic(config, conv, p))
        candidates = [p for p in (resident, streamed) if p is not None]
        if candidates:
            return max(candidates, key=lambda p: (p.ow_t == conv.out_w, p.oh_t * p.ow_t))
    kg = _min_k_groups(config, conv)
    if kg is not None:
        for double in (True, False):
            options = [
                p
                for order in ((False, True) if ntiles > 1 else (False,))
                if (
                    p := _largest_tile(
                        config,
                        conv,
                        resident_weights=False,
                        n_outer=order,
                        double_buffer=double,
                        k_groups=kg,
                    )
                )
            ]
            if options:
                return min(options, key=lambda p: _traffic(config, conv, p))
    # Say why even a 1x1 tile does not fit, in the most permissive weight mode.
    plan = TilePlan(1, 1, double_buffer=False, resident_weights=ntiles == 1)
    raise ValueError(f"no tile fits: {_Geometry(config, conv, plan).error}")


def _min_k_groups(
    config: HWConfig, conv: Conv2D, double_buffer: bool = False, n_outer: bool = False
) -> int | None:
    """The smallest ``k_groups > 1`` with which a 1x1 streamed tile fits (None: none does)."""
    nchunks = -(-conv.cin // config.rows)
    # Only the group size matters: try each size once, largest first (fewest groups).
    sizes = sorted({-(-nchunks // n) for n in range(2, nchunks + 1)}, reverse=True)
    for size in sizes:
        kg = -(-nchunks // size)
        plan = TilePlan(
            1,
            1,
            double_buffer=double_buffer,
            resident_weights=False,
            n_outer=n_outer,
            k_groups=kg,
        )
        if _Geometry(config, conv, plan).error is None:
            return kg
    return None


# -------------------------------------------------------------------- result


@dataclass(frozen=True)
class Region:
    """A named range of the DRAM image.

    Parameters
    ----------
    name : str
        ``program``, ``input``, ``weights`` or ``output``.
    addr, nbytes : int
        Byte address (a multiple of `ALIGN`) and size.
    shape : tuple of int
        Shape of the array it holds (C order).
    dtype : str
        NumPy dtype name of the elements (``int8``, or ``uint8`` for command bytes).
    layout : str
        What the axes mean, e.g. ``"NHWC int8"``.
    """

    name: str
    addr: int
    nbytes: int
    shape: tuple[int, ...]
    dtype: str
    layout: str

    def read(self, dram: bytes | bytearray | np.ndarray) -> np.ndarray:
        """The region's array, read from a DRAM image (e.g. after running the program)."""
        buf = np.frombuffer(bytes(dram[self.addr : self.addr + self.nbytes]), dtype=self.dtype)
        return buf.reshape(self.shape)


@dataclass(frozen=True)
class Lowered:
    """A lowered layer: the program, the DRAM image and where everything is.

    Parameters
    ----------
    program : tuple of int
        128-bit command words, ending with FENCE.
    program_addr : int
        Byte address of the program in `image`.
    image : bytes
        The initial DRAM image: input, pre-arranged weights, zeroed output, program.
    regions : dict of str to Region
        ``input``, ``weights``, ``output``, ``program``.
    output : Region
        Where the int8 output lands (``layer.output_shape``).
    macs : int
        The layer's multiply-accumulates (``layer.macs``).
    plan : TilePlan
    layer : Conv2D or Dense
    config : HWConfig
    """

    program: tuple[int, ...]
    program_addr: int
    image: bytes = field(repr=False)
    regions: dict[str, Region]
    output: Region
    macs: int
    plan: TilePlan
    layer: Layer
    config: HWConfig

    def disassemble(self) -> str:
        """The program as assembly text, one command a line."""
        return isa.disassemble(self.program)

    @property
    def counts(self) -> dict[str, int]:
        """Number of commands of each opcode."""
        ops = [Op(w & 0xF).name for w in self.program]
        return {name: ops.count(name) for name in dict.fromkeys(ops)}


# -------------------------------------------------------------------- program building


@dataclass
class _Cmd:
    op: Op
    fields: dict[str, int]

    def word(self) -> int:
        return isa.encode(self.op, **self.fields)


@dataclass
class _Step:
    b: int
    ty: int
    tx: int
    nt: int
    in_inst: int
    w_inst: int
    seg: int = 0
    kg: int = 0  # the K group (0 .. k_groups-1); one step per group, in order
    acc_inst: int = 0  # the accumulator tile (the same for all groups of a tile)


@dataclass
class _Group:
    """Loads that must land before step `first` runs; `req`: the step that frees their slots."""

    first: int
    loads: list[_Cmd]
    req: int | None


def _cmd(op: Op, **fields: int) -> _Cmd:
    return _Cmd(op, fields)


def _runs(n: int, start: int) -> Iterator[tuple[int, int]]:
    """Split ``n`` rows from ``start`` into pieces that fit the 16-bit ``rows`` field."""
    off = 0
    while off < n:
        cnt = min(_MAX_ROWS, n - off)
        yield start + off, cnt
        off += cnt


class _Builder:
    def __init__(
        self, config: HWConfig, conv: Conv2D, plan: TilePlan, g: _Geometry, segs: list[Segment]
    ) -> None:
        self.config, self.conv, self.plan, self.g, self.segs = config, conv, plan, g, segs

    # ---------------------------------------------------------------- steps and buffers
    def steps(self) -> list[_Step]:
        conv, g = self.conv, self.g
        nty = -(-conv.out_h // g.oh_t)
        ntx = -(-conv.out_w // g.ow_t)
        spatial = [(b, ty, tx) for b in range(conv.batch) for ty in range(nty) for tx in range(ntx)]
        if self.plan.n_outer:
            order = [(sp, nt) for nt in range(g.ntiles) for sp in spatial]
        else:
            order = [(sp, nt) for sp in spatial for nt in range(g.ntiles)]
        steps: list[_Step] = []
        in_inst = w_inst = acc_inst = -1
        for seg in range(len(self.segs)):  # each segment: new input and new weights
            prev_sp = prev_nt = None
            for sp, nt in order:
                acc_inst += 1
                for kg in range(g.k_groups):
                    # With k_groups > 1 the group changes every step: new input and weights.
                    if (sp, kg) != prev_sp:
                        in_inst += 1
                    if prev_nt is None or (not self.plan.resident_weights and (nt, kg) != prev_nt):
                        w_inst += 1
                    steps.append(_Step(*sp, nt, in_inst, w_inst, seg, kg, acc_inst))
                    prev_sp, prev_nt = (sp, kg), (nt, kg)
        return steps

    def chunks(self, kg: int) -> range:
        """The input-channel chunks of K group ``kg``."""
        g = self.g
        return range(kg * g.group_chunks, min(g.nchunks, (kg + 1) * g.group_chunks))

    def tile(self, ty: int, tx: int) -> tuple[int, int, int, int, int, int]:
        """(oy0, ox0, toh, tow, ih, iw) of a spatial tile."""
        conv, g = self.conv, self.g
        oy0, ox0 = ty * g.oh_t, tx * g.ow_t
        toh = min(g.oh_t, conv.out_h - oy0)
        tow = min(g.ow_t, conv.out_w - ox0)
        return (
            oy0,
            ox0,
            toh,
            tow,
            (toh - 1) * conv.stride + conv.k,
            (tow - 1) * conv.stride + conv.k,
        )

    # ---------------------------------------------------------------- loads
    def input_loads(self, st: _Step) -> list[_Cmd]:
        cfg, conv, g = self.config, self.conv, self.g
        r = cfg.rows
        oy0, ox0, _toh, _tow, ih, iw = self.tile(st.ty, st.tx)
        iy0, ix0 = oy0 * conv.stride - conv.pad, ox0 * conv.stride - conv.pad
        base = g.in_base[st.in_inst % g.nin]
        zeros: list[list[int]] = []  # [spad, rows], merged when adjacent
        data: list[list[int]] = []  # [spad, pixel, rows, kc], merged when contiguous

        def zero(spad: int, n: int) -> None:
            if n <= 0:
                return
            if zeros and zeros[-1][0] + zeros[-1][1] == spad:
                zeros[-1][1] += n
            else:
                zeros.append([spad, n])

        xa = min(max(0, -ix0), iw)
        xb = max(min(iw, conv.w - ix0), xa)
        c0 = st.kg * g.group_chunks
        for kc in self.chunks(st.kg):
            cb = base + (kc - c0) * ih * iw
            for iy in range(ih):
                y = iy0 + iy
                row = cb + iy * iw
                if not 0 <= y < conv.h or xb == xa:
                    zero(row, iw)
                    continue
                zero(row, xa)
                pixel = (st.b * conv.h + y) * conv.w + ix0 + xa
                n = xb - xa
                last = data[-1] if data else None
                if (
                    last
                    and last[3] == kc
                    and last[0] + last[2] == row + xa
                    and (last[1] + last[2] == pixel)
                ):
                    last[2] += n
                else:
                    data.append([row + xa, pixel, n, kc])
                zero(row + xb, iw - xb)
        cmds: list[_Cmd] = []
        for spad, n in zeros:
            for s0, cnt in _runs(n, spad):
                cmds.append(_cmd(Op.LOAD, zero=1, spad_addr=s0, rows=cnt, len=r))
        seg = self.segs[st.seg]
        for spad, pixel, n, kc in data:
            ln = min(r, conv.cin - kc * r)
            for s0, cnt in _runs(n, spad):
                dram = seg.input_addr + (pixel + s0 - spad) * seg.input_stride + kc * r
                cmds.append(
                    _cmd(
                        Op.LOAD,
                        dram_addr=dram,
                        spad_addr=s0,
                        rows=cnt,
                        len=ln,
                        stride=seg.input_stride,
                    )
                )
        return cmds

    def weight_loads(self, st: _Step) -> list[_Cmd]:
        g, r = self.g, self.config.rows
        if self.plan.resident_weights:
            first, n = 0, g.ntiles * g.wntile_rows
        else:
            chunks = self.chunks(st.kg)
            first = st.nt * g.wntile_rows + chunks.start * g.wchunk_rows
            n = len(chunks) * g.wchunk_rows
        base = g.w_base[st.w_inst % g.nw]
        dram = self.segs[st.seg].weights_addr + (first - base) * r
        return [
            _cmd(Op.LOAD, dram_addr=dram + s0 * r, spad_addr=s0, rows=cnt, len=r, stride=r)
            for s0, cnt in _runs(n, base)
        ]

    def groups(self, steps: list[_Step]) -> list[_Group]:
        """Load groups in load-queue order, each with the step whose end frees its slots."""
        g = self.g
        last_in: dict[int, int] = {}
        last_w: dict[int, int] = {}
        for i, st in enumerate(steps):
            last_in[st.in_inst] = i
            last_w[st.w_inst] = i
        groups: list[_Group] = []
        seen_in = seen_w = -1
        for i, st in enumerate(steps):
            loads: list[_Cmd] = []
            reqs: list[int] = []
            if st.w_inst > seen_w:
                seen_w = st.w_inst
                loads += self.weight_loads(st)
                if st.w_inst >= g.nw:
                    reqs.append(last_w[st.w_inst - g.nw])
            if st.in_inst > seen_in:
                seen_in = st.in_inst
                loads += self.input_loads(st)
                if st.in_inst >= g.nin:
                    reqs.append(last_in[st.in_inst - g.nin])
            if loads:
                groups.append(_Group(i, loads, max(reqs) if reqs else None))
        # With segments, a group can wait for a step an earlier group already waits for (the
        # weight slot and an input slot freed together): the in-order load queue then orders
        # it, so it needs no token of its own.
        waited = -1
        for grp in groups:
            if grp.req is not None and grp.req <= waited:
                grp.req = None
            elif grp.req is not None:
                waited = grp.req
        reqs = [grp.req for grp in groups if grp.req is not None]
        if any(b <= a for a, b in itertools.pairwise(reqs)) or any(
            grp.req is not None and grp.req >= grp.first for grp in groups
        ):  # pragma: no cover - an internal invariant of the ring buffers
            raise AssertionError(f"layer {self.conv.name!r}: slot releases out of order: {reqs}")
        return groups

    # ---------------------------------------------------------------- exec and store
    def build(self) -> list[_Cmd]:
        cfg, conv, g = self.config, self.conv, self.g
        c, k, s = cfg.cols, conv.k, conv.stride

        steps = self.steps()
        groups = self.groups(steps)
        first_use = {grp.first for grp in groups}
        releases = {grp.req for grp in groups if grp.req is not None}
        ntiles_acc = steps[-1].acc_inst + 1  # accumulator tiles (steps of group 0)
        last_kg = g.k_groups - 1
        params = self.segs[0].requant
        store_cfg = (params.zero_point, params.lo, params.hi)
        prog = [_cmd(Op.CFG_STORE, zero_point=params.zero_point, lo=params.lo, hi=params.hi)]
        emitted = 0
        bias_nt = quant_nt = None
        for i, st in enumerate(steps):
            seg = self.segs[st.seg]
            bias, params = seg.bias, seg.requant
            mult = params.multiplier * (conv.cout if params.channels == 1 else 1)
            shift = params.shift * (conv.cout if params.channels == 1 else 1)
            while emitted < len(groups) and (
                groups[emitted].req is None or groups[emitted].req < i
            ):
                grp = groups[emitted]
                grp.loads[-1].fields["push_next"] = True
                if grp.req is not None:
                    grp.loads[0].fields["pop_next"] = True
                prog += grp.loads
                emitted += 1
            cols = range(st.nt * c, st.nt * c + c)
            if st.seg:  # padding columns were set by the first segment and are never stored
                cols = range(st.nt * c, min(st.nt * c + c, conv.cout))
            # exec: bias, then k*k*nchunks MATMULs into the step's accumulator slot
            exec_cmds: list[_Cmd] = []
            if (st.seg, st.nt) != bias_nt:
                exec_cmds += [
                    _cmd(Op.CFG_BIAS, col=j, bias=bias[ch] if ch < conv.cout else 0)
                    for j, ch in enumerate(cols)
                ]
                bias_nt = (st.seg, st.nt)
            _oy0, _ox0, toh, tow, ih, iw = self.tile(st.ty, st.tx)
            in_base = g.in_base[st.in_inst % g.nin]
            w_base = g.w_base[st.w_inst % g.nw]
            if self.plan.resident_weights:
                w_base += st.nt * g.wntile_rows
            acc_addr = g.acc_base[st.acc_inst % g.nacc]
            chunks = range(len(self.chunks(st.kg)))  # slot-relative chunks of this group
            if self.plan.dataflow == "os":
                exec_cmds += self.os_matmuls(
                    in_base, w_base, acc_addr, toh, tow, ih, iw, chunks, st.kg > 0
                )
            for kc in chunks if self.plan.dataflow == "ws" else ():
                for ky in range(k):
                    for kx in range(k):
                        exec_cmds.append(
                            _cmd(
                                Op.MATMUL,
                                # a later K group adds onto the tile the previous group left
                                acc=int(
                                    st.kg > 0 or (bool(exec_cmds) and exec_cmds[-1].op == Op.MATMUL)
                                ),
                                a_stride_x=s,
                                a_addr=in_base + kc * ih * iw + ky * iw + kx,
                                w_addr=w_base + ((kc * k + ky) * k + kx) * g.wtile_rows,
                                acc_addr=acc_addr,
                                nx=tow,
                                ny=toh,
                                a_stride_y=s * iw,
                            )
                        )
            # Both pops go on the first MATMUL (docs/isa.md lists MATMUL as the s2e popper; the
            # CFG_BIAS before it touches neither the scratchpad nor the accumulator).
            first_mm = next(cmd for cmd in exec_cmds if cmd.op == Op.MATMUL)
            if i in first_use:
                first_mm.fields["pop_prev"] = True
            if st.kg == 0 and st.acc_inst >= g.nacc:
                first_mm.fields["pop_next"] = True
            if st.kg == last_kg:
                exec_cmds[-1].fields["push_next"] = True
            if i in releases:
                exec_cmds[-1].fields["push_prev"] = True
            prog += exec_cmds
            if st.kg != last_kg:  # only the last group's tile is stored
                continue
            # store: requant table, then the tile's rows to the NHWC output
            store_cmds: list[_Cmd] = []
            if (params.zero_point, params.lo, params.hi) != store_cfg:
                store_cfg = (params.zero_point, params.lo, params.hi)
                store_cmds.append(
                    _cmd(Op.CFG_STORE, zero_point=params.zero_point, lo=params.lo, hi=params.hi)
                )
            if (st.seg, st.nt) != quant_nt:
                store_cmds += [
                    _cmd(Op.CFG_QUANT, col=j, multiplier=mult[ch], shift=shift[ch])
                    if ch < conv.cout
                    else _cmd(Op.CFG_QUANT, col=j, multiplier=0, shift=0)
                    for j, ch in enumerate(cols)
                ]
                quant_nt = (st.seg, st.nt)
            store_cmds += self.stores(st, acc_addr)
            store_cmds[0].fields["pop_prev"] = True
            if st.acc_inst + g.nacc < ntiles_acc:
                store_cmds[-1].fields["push_prev"] = True
            prog += store_cmds
        prog.append(_cmd(Op.FENCE))
        return prog

    def os_matmuls(
        self,
        in_base: int,
        w_base: int,
        acc_addr: int,
        toh: int,
        tow: int,
        ih: int,
        iw: int,
        chunks: range,
        acc: bool,
    ) -> list[_Cmd]:
        """Output-stationary MATMULs of one tile: array tiles of <= rows pixels, each one block
        per (chunk, tap) of ``chunks`` (slot-relative), the last with drain=1 (the bias is added
        then, or with ``acc`` the drained sums are added to the accumulator rows)."""
        r, k, s, g = self.config.rows, self.conv.k, self.conv.stride, self.g
        blocks = []  # (oy, ox, ny, nx) within the tile
        if tow <= r:
            per = r // tow
            blocks = [(oy, 0, min(per, toh - oy), tow) for oy in range(0, toh, per)]
        else:
            blocks = [(oy, ox, 1, min(r, tow - ox)) for oy in range(toh) for ox in range(0, tow, r)]
        cmds = []
        taps = [(kc, ky, kx) for kc in chunks for ky in range(k) for kx in range(k)]
        for oy, ox, ny, nx in blocks:
            for t, (kc, ky, kx) in enumerate(taps):
                cmds.append(
                    _cmd(
                        Op.MATMUL,
                        os=1,
                        drain=int(t == len(taps) - 1),
                        **({"acc": 1} if acc else {}),
                        a_stride_x=s,
                        a_addr=in_base + kc * ih * iw + (ky + oy * s) * iw + kx + ox * s,
                        w_addr=w_base + ((kc * k + ky) * k + kx) * g.wtile_rows,
                        acc_addr=acc_addr + oy * tow + ox,
                        nx=nx,
                        ny=ny,
                        a_stride_y=s * iw,
                    )
                )
        return cmds

    def stores(self, st: _Step, acc_addr: int) -> list[_Cmd]:
        cfg, conv = self.config, self.conv
        oy0, ox0, toh, tow, _ih, _iw = self.tile(st.ty, st.tx)
        ln = min(cfg.cols, conv.cout - st.nt * cfg.cols)
        seg = self.segs[st.seg]

        def dram(oy: int) -> int:
            pixel = (st.b * conv.out_h + oy) * conv.out_w + ox0
            return seg.output_addr + pixel * seg.output_stride + st.nt * cfg.cols

        if tow == conv.out_w:
            rows = [(dram(oy0), acc_addr, toh * tow)]
        else:
            rows = [(dram(oy0 + i), acc_addr + i * tow, tow) for i in range(toh)]
        return [
            _cmd(Op.STORE, dram_addr=d, acc_addr=a, rows=n, len=ln, stride=seg.output_stride)
            for d, a, n in rows
        ]


def weight_image(config: HWConfig, conv: Conv2D, weights: np.ndarray) -> np.ndarray:
    """A convolution's weights pre-arranged for the scratchpad, as the program loads them.

    Parameters
    ----------
    config : HWConfig
    conv : Conv2D
    weights : (k, k, cin, cout) int8 array

    Returns
    -------
    (n-tiles, chunks, k, k, rows, wrows*rows) int8 array: the weight tile of each (n-tile, chunk,
    tap), weight row ``k`` padded to ``wrows = ceil(cols/rows)`` scratchpad rows, zero past
    ``cin`` and ``cout``. Its bytes go to a `Segment`'s ``weights_addr``.
    """
    r, c, k = config.rows, config.cols, conv.k
    nchunks, ntiles, wrows = -(-conv.cin // r), -(-conv.cout // c), -(-c // r)
    full = np.zeros((k, k, nchunks * r, ntiles * c), dtype=np.int8)
    full[:, :, : conv.cin, : conv.cout] = np.asarray(weights).reshape(conv.weight_shape)
    tiles = full.reshape(k, k, nchunks, r, ntiles, c).transpose(4, 2, 0, 1, 3, 5)
    out = np.zeros((ntiles, nchunks, k, k, r, wrows * r), dtype=np.int8)
    out[..., :c] = tiles
    return out


@dataclass(frozen=True)
class Segment:
    """One convolution of a `lower_segments` program: where its tensors are, its bias and requant.

    Parameters
    ----------
    input_addr : int
        DRAM byte of input channel 0 of pixel 0; channel ``ci`` of pixel ``p`` (pixels numbered
        ``(b*h + y)*w + x``) is at ``input_addr + p*input_stride + ci``.
    input_stride : int
        Bytes from one input pixel to the next (``cin`` for a packed tensor; the channel count
        of the whole tensor to read one channel plane of a wider NHWC tensor).
    weights_addr : int
        DRAM byte of the segment's `weight_image`.
    output_addr, output_stride : int
        The same for the output (channel ``co`` of output pixel ``p`` at
        ``output_addr + p*output_stride + co``).
    bias : tuple of int
        ``cout`` int32 biases.
    requant : RequantParams
        One channel or ``cout``.
    """

    input_addr: int
    input_stride: int
    weights_addr: int
    output_addr: int
    output_stride: int
    bias: tuple[int, ...]
    requant: RequantParams

    def check(self, conv: Conv2D) -> None:
        """Raise ``ValueError`` naming the layer if the segment does not fit ``conv`` or the ISA."""
        where = f"layer {conv.name!r}: segment"
        if self.input_stride < conv.cin or self.input_stride > _MAX_LOAD_STRIDE:
            raise ValueError(
                f"{where} input_stride={self.input_stride} must be in cin={conv.cin}.."
                f"{_MAX_LOAD_STRIDE} (the LOAD.stride field)"
            )
        if self.output_stride < conv.cout or self.output_stride > _MAX_STORE_STRIDE:
            raise ValueError(
                f"{where} output_stride={self.output_stride} must be in cout={conv.cout}.."
                f"{_MAX_STORE_STRIDE} (the STORE.stride field)"
            )
        for name in ("input_addr", "weights_addr", "output_addr"):
            v = getattr(self, name)
            if not 0 <= v < _DRAM_SPACE:
                raise ValueError(f"{where} {name}={v} is outside the 32-bit DRAM address space")
        if len(self.bias) != conv.cout:
            raise ValueError(f"{where} has {len(self.bias)} biases for cout={conv.cout}")
        if self.requant.channels not in (1, conv.cout):
            raise ValueError(
                f"{where} requant has {self.requant.channels} channels for cout={conv.cout}; "
                f"give one per output channel (or one for all)"
            )


def lower_segments(
    config: HWConfig, conv: Conv2D, plan: TilePlan, segments: list[Segment]
) -> tuple[int, ...]:
    """One program running the convolution ``conv`` once per segment, in order.

    The segments share the geometry, the plan and the buffers: their steps form one sequence
    with the token scheme of `lower` (module docstring), so a segment's first loads overlap the
    previous segment's last MATMULs and stores, and the program ends with a single FENCE.

    Parameters
    ----------
    config : HWConfig
    conv : Conv2D
        The geometry every segment has (its ``cin``, ``cout`` are a segment's own channels).
    plan : TilePlan
        Validated against ``conv``.
    segments : list of Segment
        Where each convolution's tensors are, with its bias and requantization.

    Returns
    -------
    tuple of int
        The 128-bit command words; placed in DRAM and run, segment ``i`` leaves the golden
        output of ``conv`` on its input and weights at its output addresses.
    """
    if not segments:
        raise ValueError(f"layer {conv.name!r}: lower_segments needs at least one segment")
    g = _Geometry(config, conv, plan)
    if g.error:
        raise ValueError(g.error)
    for seg in segments:
        seg.check(conv)
    return tuple(cmd.word() for cmd in _Builder(config, conv, plan, g, list(segments)).build())


def lower(
    config: HWConfig, layer: Layer, tensors: dict[str, Any], plan: TilePlan | None = None
) -> Lowered:
    """Lower a layer and its tensors to a program and DRAM image for ``config``.

    Parameters
    ----------
    config : HWConfig
        The accelerator (array size, scratchpad and accumulator rows).
    layer : Conv2D or Dense
        A dense layer lowers as its 1x1 convolution (`Dense.as_conv`), a grouped convolution as
        one segment per ``pack`` groups (`array_form`).
    tensors : dict
        ``input``, ``weights``, ``bias``, ``requant`` (see `kernels.conv.random_layer_data`).
    plan : TilePlan, optional
        Tiling and buffering; `default_plan` when omitted.

    Returns
    -------
    Lowered
        Running ``program`` on ``image`` leaves ``kernels.conv.layer_golden(layer, tensors)`` in
        the ``output`` region, bit for bit.

    Raises
    ------
    ValueError
        Bad tensors, a plan that does not fit (`TilePlan.validate`), or an image beyond the
        32-bit DRAM address space.
    """
    if not isinstance(config, HWConfig):
        raise TypeError(f"config must be an HWConfig, not {type(config).__name__}")
    if not isinstance(layer, Conv2D | Dense):
        raise TypeError(f"layer must be a Conv2D or Dense, not {type(layer).__name__}")
    t = check_tensors(layer, tensors)
    full = layer.as_conv()
    form = array_form(layer, config)
    conv = form.conv
    if plan is None:
        plan = default_plan(config, layer)
    elif not isinstance(plan, TilePlan):
        raise TypeError(f"plan must be a TilePlan, not {type(plan).__name__}")
    g = _Geometry(config, conv, plan)
    if g.error:
        raise ValueError(g.error)

    x = np.ascontiguousarray(t["input"], dtype=np.int8)
    # a grouped convolution: one weight image per segment, back to back
    wimgs = [weight_image(config, conv, w) for w in segment_weights(layer, form, t["weights"])]
    wimg = np.stack(wimgs) if form.segments > 1 else wimgs[0]
    addr: dict[str, int] = {}
    regions: dict[str, Region] = {}
    cursor = 0
    specs = [
        (
            "input",
            x.nbytes,
            layer.input_shape,
            "NHWC int8" if isinstance(layer, Conv2D) else "MK int8 (row-major x[m, k])",
        ),
        (
            "weights",
            wimg.nbytes,
            wimg.shape,
            "int8 weight tiles [n-tile][chunk][ky][kx][row k][wrows*rows] (pre-arranged)"
            + (" per group: [group][...]" if form.segments > 1 else ""),
        ),
        (
            "output",
            layer.output_bytes,
            layer.output_shape,
            "NHWC int8" if isinstance(layer, Conv2D) else "MN int8 (row-major y[m, n])",
        ),
    ]
    for name, nbytes, shape, layout in specs:
        addr[name] = cursor
        regions[name] = Region(name, cursor, nbytes, tuple(shape), "int8", layout)
        cursor = _align(cursor + nbytes)

    bias = tuple(int(v) for v in np.asarray(t["bias"]).reshape(-1))
    segs = [
        Segment(
            input_addr=addr["input"] + i * form.in_step,
            input_stride=full.cin,
            weights_addr=addr["weights"] + i * wimgs[0].nbytes,
            output_addr=addr["output"] + i * form.out_step,
            output_stride=full.cout,
            bias=bias[i * form.out_step : (i + 1) * form.out_step],
            requant=t["requant"].channel_slice(i * form.out_step, (i + 1) * form.out_step),
        )
        for i in range(form.segments)
    ]
    cmds = _Builder(config, conv, plan, g, segs).build()
    program = tuple(cmd.word() for cmd in cmds)
    prog_bytes = isa.to_bytes(program)
    program_addr = cursor
    regions["program"] = Region(
        "program",
        cursor,
        len(prog_bytes),
        (len(program), isa.CMD_BYTES),
        "uint8",
        "128-bit little-endian command words",
    )
    total = _align(cursor + len(prog_bytes))
    if total > _DRAM_SPACE:
        raise ValueError(
            f"layer {layer.name!r}: the DRAM image needs {total} bytes, beyond the 32-bit "
            f"dram_addr space; split the layer"
        )
    image = bytearray(total)
    image[addr["input"] : addr["input"] + x.nbytes] = x.tobytes()
    image[addr["weights"] : addr["weights"] + wimg.nbytes] = wimg.tobytes()
    image[program_addr : program_addr + len(prog_bytes)] = prog_bytes
    return Lowered(
        program=program,
        program_addr=program_addr,
        image=bytes(image),
        regions=regions,
        output=regions["output"],
        macs=layer.macs,
        plan=plan,
        layer=layer,
        config=config,
    )
