"""Depthwise convolution on the systolic array: the naive baseline the vector unit must beat.

A depthwise layer (``input`` ``(batch, h, w, c)`` NHWC int8, ``weights`` ``(k, k, c)``, ``bias``
``(c,)`` int32, ``requant`` with 1 or ``c`` channels) has no reduction over channels, so it
leaves an array of ``rows x cols`` PEs almost idle. Two ways to run it anyway, each one program
over one DRAM image whose ``input`` and ``output`` regions are the NHWC tensors:

* `lower_depthwise_naive` -- as Gemmini does: one channel at a time, each channel a ``cin = cout
  = 1`` convolution lowered by `kernels.lower` (k*k shifted MATMULs per tile, same tiling and
  double buffering). A channel reads and writes its plane of the NHWC tensors with a pixel
  stride of ``c`` bytes (LOAD ``len=1, stride=c``; STORE ``len=1, stride=c``). The channels are
  the `kernels.lower.Segment`\\ s of one program: their steps share the ring buffers and tokens,
  so the next channel's loads overlap the current channel's MATMULs (no FENCE in between).
* `lower_depthwise_im2col` -- per-channel im2col GEMM: the host writes, per channel, the
  ``(batch*out_h*out_w, k*k)`` patch matrix into an ``im2col`` region of the image (``k*k`` times
  the input, padding included), and each channel is a GEMM with ``K = k*k``, ``N = 1`` (one
  MATMUL per chunk of ``rows`` taps instead of ``k*k``). A LOAD fills a scratchpad row from byte
  0, so the array cannot gather a patch row itself; the copy must exist in DRAM.

`naive_plan_choice` estimates both programs (`estimate_program`: MATMUL rows streamed, array
cycles, DMA beats) and names the faster, reporting the host-side copy the im2col variant needs.

The layer is duck-typed: any object with ``name, batch, h, w, c, k, stride, pad, out_h, out_w,
macs`` (and optionally ``act``, which must then agree with ``requant.act``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtl import isa
from rtl.config import HWConfig
from rtl.isa import Op
from rtl.systolic import SystolicArray

from .conv import TENSOR_KEYS, _int_array
from .layers import Conv2D
from .lower import ALIGN, Lowered, Region, Segment, TilePlan, default_plan, lower_segments
from .lower import weight_image as _weight_image
from .requant import INT8_MAX, INT8_MIN, INT32_MAX, INT32_MIN, RequantParams

__all__ = [
    "NaiveChoice",
    "ProgramEstimate",
    "estimate_program",
    "lower_depthwise_im2col",
    "lower_depthwise_naive",
    "naive_plan_choice",
]

_LAYER_ATTRS = ("name", "batch", "h", "w", "c", "k", "stride", "pad", "out_h", "out_w", "macs")
_DRAM_SPACE = 1 << isa.FIELDS[Op.LOAD]["dram_addr"][1]
_MAX_LOAD_STRIDE = (1 << isa.FIELDS[Op.LOAD]["stride"][1]) - 1
_MAX_STORE_STRIDE = (1 << isa.FIELDS[Op.STORE]["stride"][1]) - 1


# -------------------------------------------------------------------- checks


def _act(layer: Any, params: RequantParams | None) -> str:
    act = getattr(layer, "act", None)
    if params is not None and act is not None and act != params.act:
        raise ValueError(
            f"layer {layer.name!r} has act={act!r} but its requant parameters have "
            f"act={params.act!r}; build them with the layer's activation"
        )
    return act if act is not None else (params.act if params is not None else "none")


def _channel_conv(layer: Any, act: str) -> Conv2D:
    """One channel of the depthwise layer as a ``cin = cout = 1`` convolution."""
    missing = [a for a in _LAYER_ATTRS if not hasattr(layer, a)]
    if missing:
        raise TypeError(
            f"layer must have the attributes {', '.join(_LAYER_ATTRS)} of a depthwise layer; "
            f"{type(layer).__name__} lacks {', '.join(missing)}"
        )
    conv = Conv2D(
        layer.name, h=layer.h, w=layer.w, cin=1, cout=1, k=layer.k, stride=layer.stride,
        pad=layer.pad, batch=layer.batch, act=act,
    )  # fmt: skip
    if not isinstance(layer.c, int) or isinstance(layer.c, bool) or layer.c < 1:
        raise ValueError(f"layer {layer.name!r}: c must be a positive integer, not {layer.c!r}")
    if (layer.out_h, layer.out_w) != (conv.out_h, conv.out_w):
        raise ValueError(
            f"layer {layer.name!r}: out_h x out_w = {layer.out_h}x{layer.out_w}, but "
            f"h={layer.h}, w={layer.w}, k={layer.k}, stride={layer.stride}, pad={layer.pad} give "
            f"{conv.out_h}x{conv.out_w}"
        )
    return conv


def _check_tensors(layer: Any, tensors: dict[str, Any]) -> dict[str, Any]:
    missing = [key for key in TENSOR_KEYS if key not in tensors]
    if missing:
        raise ValueError(
            f"layer {layer.name!r}: tensors lack {', '.join(map(repr, missing))}; give a dict "
            f"with keys {', '.join(TENSOR_KEYS)}"
        )
    c, k = layer.c, layer.k
    specs = {
        "input": ((layer.batch, layer.h, layer.w, c), INT8_MIN, INT8_MAX),
        "weights": ((k, k, c), INT8_MIN, INT8_MAX),
        "bias": ((c,), INT32_MIN, INT32_MAX),
    }
    out: dict[str, Any] = {}
    for key, (shape, lo, hi) in specs.items():
        try:
            arr = _int_array(key, tensors[key], len(shape), lo, hi)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"layer {layer.name!r}: {exc}") from None
        if arr.shape != shape:
            raise ValueError(
                f"layer {layer.name!r}: {key} has shape {arr.shape}, expected {shape} (depthwise)"
            )
        out[key] = arr
    params = tensors["requant"]
    if not isinstance(params, RequantParams):
        raise TypeError(
            f"layer {layer.name!r}: requant must be a RequantParams, not {type(params).__name__}"
        )
    if params.channels not in (1, c):
        raise ValueError(
            f"layer {layer.name!r}: requant has {params.channels} channels, the layer has {c}; "
            f"give one multiplier per channel (or one for all)"
        )
    out["requant"] = params
    return out


def _plan(config: HWConfig, conv: Conv2D, plan: TilePlan | None) -> TilePlan:
    """The given plan, validated; else `default_plan` with weights double-buffered per channel
    (each channel has its own weights, so a second weight slot lets the next channel's load
    while the array finishes this one), falling back to the default if that does not fit."""
    if plan is not None:
        if not isinstance(plan, TilePlan):
            raise TypeError(f"plan must be a TilePlan, not {type(plan).__name__}")
        plan.validate(config, conv)
        return plan
    plan = default_plan(config, conv)
    streamed = dataclasses.replace(plan, resident_weights=False)
    try:
        streamed.validate(config, conv)
    except ValueError:
        return plan
    return streamed if plan.double_buffer else plan


# -------------------------------------------------------------------- lowering


def _lower(
    config: HWConfig,
    layer: Any,
    tensors: dict[str, Any],
    plan: TilePlan | None,
    im2col: bool,
) -> Lowered:
    if not isinstance(config, HWConfig):
        raise TypeError(f"config must be an HWConfig, not {type(config).__name__}")
    act = _act(layer, None)
    conv = _channel_conv(layer, act)
    t = _check_tensors(layer, tensors)
    act = _act(layer, t["requant"])
    conv = dataclasses.replace(conv, act=act)
    c, k, m = layer.c, layer.k, layer.batch * layer.out_h * layer.out_w
    field, limit = ("STORE", _MAX_STORE_STRIDE) if im2col else ("LOAD", _MAX_LOAD_STRIDE)
    if c > limit:
        raise ValueError(
            f"layer {layer.name!r}: c={c} channels: the pixels of a channel plane are c bytes "
            f"apart, beyond the {field}.stride field (at most {limit}); split the channels"
        )
    x = np.ascontiguousarray(t["input"], dtype=np.int8)
    w = t["weights"]
    if im2col:  # the channel as a GEMM: M = batch*out_h*out_w patch rows of K = k*k taps
        gemm = Conv2D(layer.name, h=1, w=m, cin=k * k, cout=1, k=1, act=act)
        plan = _plan(config, gemm, plan)
        wimg = np.stack([_weight_image(config, gemm, w[:, :, ch]) for ch in range(c)])
        patches = _im2col(x, k, layer.stride, layer.pad, layer.out_h, layer.out_w)
    else:
        gemm = conv
        plan = _plan(config, conv, plan)
        wimg = np.stack([_weight_image(config, conv, w[:, :, ch]) for ch in range(c)])
    out_shape = (layer.batch, layer.out_h, layer.out_w, c)
    specs = [
        ("input", x, x.shape, "NHWC int8"),
        ("weights", wimg, wimg.shape, "int8 per channel: kernels.lower.weight_image of its conv"),
    ]
    if im2col:
        specs.append(
            ("im2col", patches, patches.shape, "int8 [channel][b*oy*ox pixel][ky*k + kx] (host)")
        )
    specs.append(("output", None, out_shape, "NHWC int8"))
    regions: dict[str, Region] = {}
    cursor = 0
    for name, _arr, shape, layout in specs:
        nbytes = int(np.prod(shape))
        regions[name] = Region(name, cursor, nbytes, tuple(shape), "int8", layout)
        cursor += -(-nbytes // ALIGN) * ALIGN
    # channel ch reads its patch matrix (im2col) or its plane of the NHWC input (stride c)
    if im2col:
        in_base, in_step, in_stride = regions["im2col"].addr, m * k * k, k * k
    else:
        in_base, in_step, in_stride = regions["input"].addr, 1, c
    segments = [
        Segment(
            input_addr=in_base + ch * in_step,
            input_stride=in_stride,
            weights_addr=regions["weights"].addr + ch * wimg[0].nbytes,
            output_addr=regions["output"].addr + ch,
            output_stride=c,
            bias=(int(t["bias"][ch]),),
            requant=t["requant"].channel_slice(ch, ch + 1),
        )
        for ch in range(c)
    ]
    program = lower_segments(config, gemm, plan, segments)
    prog_bytes = isa.to_bytes(program)
    regions["program"] = Region(
        "program", cursor, len(prog_bytes), (len(program), isa.CMD_BYTES), "uint8",
        "128-bit little-endian command words",
    )  # fmt: skip
    total = -(-(cursor + len(prog_bytes)) // ALIGN) * ALIGN
    if total > _DRAM_SPACE:
        raise ValueError(
            f"layer {layer.name!r}: the DRAM image needs {total} bytes, beyond the 32-bit "
            f"dram_addr space; split the layer"
        )
    image = bytearray(total)
    for name, arr, _shape, _layout in specs:
        if arr is not None:
            image[regions[name].addr : regions[name].addr + arr.nbytes] = arr.tobytes()
    image[cursor : cursor + len(prog_bytes)] = prog_bytes
    return Lowered(
        program=program,
        program_addr=cursor,
        image=bytes(image),
        regions=regions,
        output=regions["output"],
        macs=layer.macs,
        plan=plan,
        layer=layer,
        config=config,
    )


def _im2col(x: np.ndarray, k: int, s: int, pad: int, oh: int, ow: int) -> np.ndarray:
    """(c, batch*oh*ow, k*k) int8: channel ``ch``'s patch row of each output pixel."""
    n, h, w, c = x.shape
    xp = np.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=np.int8)
    xp[:, pad : pad + h, pad : pad + w, :] = x
    taps = [
        xp[:, ky : ky + s * (oh - 1) + 1 : s, kx : kx + s * (ow - 1) + 1 : s, :]
        for ky in range(k)
        for kx in range(k)
    ]
    cols = np.stack(taps, axis=-1)  # (n, oh, ow, c, k*k)
    return np.ascontiguousarray(cols.transpose(3, 0, 1, 2, 4).reshape(c, n * oh * ow, k * k))


def lower_depthwise_naive(
    config: HWConfig, layer: Any, tensors: dict[str, Any], plan: TilePlan | None = None
) -> Lowered:
    """Lower a depthwise layer to the array one channel at a time, as Gemmini does.

    Parameters
    ----------
    config : HWConfig
    layer : depthwise layer
        Any object with ``name, batch, h, w, c, k, stride, pad, out_h, out_w, macs``.
    tensors : dict
        ``input`` ``(batch, h, w, c)`` int8, ``weights`` ``(k, k, c)`` int8, ``bias`` ``(c,)``
        int32, ``requant`` (`RequantParams`, 1 or ``c`` channels).
    plan : TilePlan, optional
        The tiling of every channel's ``cin = cout = 1`` convolution; by default the largest
        double-buffered tile, with each channel's weights double-buffered.

    Returns
    -------
    Lowered
        Regions ``input`` (NHWC), ``weights`` (per channel, pre-arranged), ``output`` (NHWC
        ``(batch, out_h, out_w, c)``) and ``program``: channel ``ch`` is the ``k*k``-MATMUL
        convolution of `kernels.lower` reading and writing the NHWC planes with pixel stride
        ``c``; the channels run back to back in one program with one FENCE.

    Raises
    ------
    TypeError, ValueError
        A layer without the depthwise attributes or with inconsistent sizes, bad tensors, a plan
        that does not fit, more channels than the LOAD.stride field can step over, or an image
        beyond the 32-bit DRAM space; the message names the layer.
    """
    return _lower(config, layer, tensors, plan, im2col=False)


def lower_depthwise_im2col(
    config: HWConfig, layer: Any, tensors: dict[str, Any], plan: TilePlan | None = None
) -> Lowered:
    """Lower a depthwise layer as one im2col GEMM per channel (``K = k*k``, ``N = 1``).

    The host writes an ``im2col`` region of ``c * batch*out_h*out_w * k*k`` bytes (``k*k`` times
    the input, zero padding included) into the image: channel ``ch``'s patch matrix, row
    ``(b*out_h + oy)*out_w + ox`` holding taps ``ky*k + kx``. Each channel then is a Dense-like
    GEMM over its patch matrix (`kernels.lower` on the 1x1 convolution ``h=1, w=M, cin=k*k,
    cout=1``), storing channel ``ch`` of the NHWC output with pixel stride ``c``.

    Parameters and raises are those of `lower_depthwise_naive`; ``plan`` tiles the per-channel
    GEMM. The ``input`` region still holds the NHWC input (the program does not read it).
    """
    return _lower(config, layer, tensors, plan, im2col=True)


# -------------------------------------------------------------------- estimate


@dataclass(frozen=True)
class ProgramEstimate:
    """What a program costs, read from its command words (no simulation).

    Parameters
    ----------
    commands, matmuls : int
        Commands in the program; MATMULs among them.
    rows_streamed : int
        Activation rows the MATMULs stream into the array (ws: ``nx*ny`` each; os: ``rows``
        reduction beats each).
    array_cycles : int
        The array alone, MATMULs back to back: ws ``sum(max(nx*ny, preload)) + ws_latency``
        (the steady state of ``mapping.cost.array_tiles_cycles``); os ``rows`` per block plus
        fill and drain per drained tile.
    load_beats, zero_rows, store_beats, fetch_beats : int
        DRAM beats (``dma_beat_bytes``) the loads, stores and program fetch move (each LOAD or
        STORE row is its own beat-aligned burst); zero-padding rows (a load-unit cycle each, no
        DRAM traffic).
    host_copy_bytes : int
        Bytes the host must write into the image beyond the layer's own tensors (the im2col
        patch matrices).
    """

    commands: int
    matmuls: int
    rows_streamed: int
    array_cycles: int
    load_beats: int
    zero_rows: int
    store_beats: int
    fetch_beats: int
    host_copy_bytes: int = 0

    @property
    def dram_beats(self) -> int:
        """Beats through the one DRAM port (loads, stores and program fetch)."""
        return self.load_beats + self.store_beats + self.fetch_beats

    @property
    def cycles(self) -> int:
        """Estimated run time: the busier of the array, the load unit and the DRAM port (one
        beat a cycle), assuming the tokens let them overlap perfectly; a lower bound."""
        return max(self.array_cycles, self.load_beats + self.zero_rows, self.dram_beats)


def _beats(addr: int, rows: int, stride: int, ln: int, beat: int) -> int:
    start = addr + np.arange(rows, dtype=np.int64) * stride
    return int(((start % beat + ln + beat - 1) // beat).sum())


def estimate_program(config: HWConfig, program: tuple[int, ...] | list[int]) -> ProgramEstimate:
    """`ProgramEstimate` of a program on ``config`` (latencies from `rtl.systolic`)."""
    arr = SystolicArray.timing(config)
    beat = config.dma_beat_bytes
    matmuls = streamed = array = load = zero = store = 0
    ws = False
    for word in program:
        cmd = isa.decode(word)
        if cmd.op == Op.MATMUL:
            matmuls += 1
            if cmd.os:
                streamed += config.rows
                array += config.rows + (arr.os_fill_latency + arr.os_drain_latency) * cmd.drain
            else:
                ws = True
                streamed += cmd.nx * cmd.ny
                array += max(cmd.nx * cmd.ny, arr.preload_latency)
        elif cmd.op == Op.LOAD:
            if cmd.zero:
                zero += cmd.rows
            else:
                load += _beats(cmd.dram_addr, cmd.rows, cmd.stride, cmd.len, beat)
        elif cmd.op == Op.STORE:
            store += _beats(cmd.dram_addr, cmd.rows, cmd.stride, cmd.len, beat)
    if ws:
        array += arr.ws_latency
    fetch = -(-len(program) * isa.CMD_BYTES // beat)
    return ProgramEstimate(len(program), matmuls, streamed, array, load, zero, store, fetch)


@dataclass(frozen=True)
class NaiveChoice:
    """Which array lowering of a depthwise layer is faster, by `ProgramEstimate.cycles`.

    Parameters
    ----------
    best : {"naive", "im2col"}
        The variant with fewer estimated cycles (``"naive"`` on a tie: it needs no host copy).
    naive, im2col : ProgramEstimate
        The two estimates; ``im2col.host_copy_bytes`` is the patch-matrix copy (``k*k`` times
        the input) the host writes before the im2col program can start, which the estimate
        does not charge to the accelerator.
    """

    best: str
    naive: ProgramEstimate
    im2col: ProgramEstimate

    @property
    def speedup(self) -> float:
        """Estimated cycles of the slower variant over the faster one."""
        a, b = self.naive.cycles, self.im2col.cycles
        return max(a, b) / max(1, min(a, b))


def naive_plan_choice(config: HWConfig, layer: Any) -> NaiveChoice:
    """Estimate both array lowerings of a depthwise layer and say which is faster.

    Both programs are built (on zero tensors: the commands do not depend on the values) and
    read by `estimate_program`. The comparison is of accelerator time only: the im2col variant
    also needs the host to write ``c * batch*out_h*out_w * k*k`` bytes of patches into DRAM
    first (``im2col.host_copy_bytes``), and reads them instead of the input.
    """
    act = _act(layer, None)
    _channel_conv(layer, act)
    c, k = layer.c, layer.k
    zeros = {
        "input": np.zeros((layer.batch, layer.h, layer.w, c), dtype=np.int8),
        "weights": np.zeros((k, k, c), dtype=np.int8),
        "bias": np.zeros(c, dtype=np.int32),
        "requant": RequantParams((1,), 0, act=act, six=INT8_MAX if act == "relu6" else None),
    }
    naive = estimate_program(config, lower_depthwise_naive(config, layer, zeros).program)
    low = lower_depthwise_im2col(config, layer, zeros)
    im2col = dataclasses.replace(
        estimate_program(config, low.program), host_copy_bytes=low.regions["im2col"].nbytes
    )
    best = "im2col" if im2col.cycles < naive.cycles else "naive"
    return NaiveChoice(best, naive, im2col)
