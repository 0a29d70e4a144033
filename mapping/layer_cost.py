"""Cost of whole layers: cycles by named term, bytes per memory level, energy.

`array_layer_cycles` models a convolution or dense layer lowered by `kernels.lower` with a
`TilePlan`, without building the program: the program is a sequence of *steps* (one per image,
output tile and n-tile, module docstring of `kernels.lower`), and each step's load group, MATMULs
and stores are sized in closed form from `kernels.lower._Geometry`. A recurrence over the steps
then follows the mechanisms of the RTL that decide when each unit may start:

* the load unit issues one scratchpad row a cycle (zero rows included) with a bubble between
  commands; its beats come back ``latency`` cycles after the request, one beat a cycle at most,
  sharing the DRAM port with the program fetch and the stores (``bandwidth`` bytes a cycle);
* the array streams one activation row a cycle; a ws MATMUL of ``m`` rows occupies it for
  ``max(m, preload, (ws_latency + preload + m) / 2)`` cycles once the pipeline is full (the
  weight preload and the wait for the other weight buffer, `mapping.cost.array_tiles_cycles`);
  an os array tile streams ``rows`` beats per (chunk, tap) and then fills and drains;
* dependency tokens: a step's MATMULs wait for its loads (l2e) and for the store that frees its
  accumulator slot (s2e); a load group waits for the MATMULs that free its slots (e2l); a step's
  stores wait for its last MATMUL to retire (e2s);
* the decoder dispatches in program order into queues of ``*_queue_depth`` commands: a load
  group longer than the load queue holds the MATMULs behind it until the load unit has taken
  enough of it, and the same for the store queue;
* CFG_BIAS (on an n-tile change) waits for the array to drain; CFG_QUANT waits for the store
  pipeline to drain.

Every latency is read from the RTL components (`rtl.systolic.SystolicArray`,
`rtl.execute.ExecUnit`, `rtl.dma.LoadUnit`, `rtl.dma.StoreUnit`); the DRAM's ``latency`` and
``bandwidth`` are the bench's parameters.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

from kernels.layers import Add, Conv2D, Dense, DepthwiseConv2D, Pool2D
from kernels.lower import _MAX_ROWS, TilePlan, _Geometry
from kernels.lower_vector import VectorGeometry, VectorPlan
from rtl import isa
from rtl.config import HWConfig
from rtl.dma import Fetch, LoadUnit, StoreUnit
from rtl.execute import ExecUnit

from .cost import _array, vector_layer_cycles
from .energy import EnergyTable, load_energy_table

__all__ = [
    "ArrayLayerCycles",
    "LayerCost",
    "array_layer_cycles",
    "depthwise_array_cycles",
    "layer_cost",
]

TERMS = (
    "compute",
    "preload",
    "fill_drain",
    "dma_load",
    "dma_store",
    "stall",
    "overhead",
    "prologue",
    "epilogue",
)


@dataclass(frozen=True)
class ArrayLayerCycles:
    """Cycles of one layer on the array, split into named terms that add up to `total`.

    The terms partition the layer's time as the array sees it, from ``start`` to ``done``:

    Parameters
    ----------
    compute : int
        Cycles an activation row (ws) or a reduction beat (os) enters the array.
    preload : int
        ws: cycles the array waits, with its pipeline full, for the next weight tile (preload
        longer than a short MATMUL, or the other weight buffer still in use).
    fill_drain : int
        Pipeline fill and drain exposed: the os drain of every array tile, and the ws fill and
        drain when the array restarts empty (after a CFG_BIAS, a token wait or at the start).
    dma_load, dma_store : int
        Cycles the array waits for a load group (l2e token) or for the store that frees its
        accumulator slot (s2e token).
    stall : int
        Cycles the array waits for its commands: the decoder is held by a full load or store
        queue, or the DRAM port (loads, stores and program fetch) is the bottleneck.
    overhead : int
        Per-command costs: CFG_BIAS commands and the array drain they wait for.
    prologue : int
        From start to the first activation: the program fetch and the first step's loads.
    epilogue : int
        From the last activation to done: the array latency, the last stores and their acks.
    total : int
        Sum of the terms: the layer's cycles.
    macs : int
        The layer's multiply-accumulates.
    pes : int
        PEs of the array (MACs per cycle at peak).
    """

    compute: int = 0
    preload: int = 0
    fill_drain: int = 0
    dma_load: int = 0
    dma_store: int = 0
    stall: int = 0
    overhead: int = 0
    prologue: int = 0
    epilogue: int = 0
    macs: int = 0
    pes: int = 1

    @property
    def total(self) -> int:
        return sum(getattr(self, t) for t in TERMS)

    @property
    def terms(self) -> dict[str, int]:
        """The named terms, in order."""
        return {t: getattr(self, t) for t in TERMS}

    @property
    def utilization(self) -> float:
        """``macs / (total * pes)``."""
        return self.macs / (self.total * self.pes) if self.total else 0.0

    def __add__(self, other: ArrayLayerCycles) -> ArrayLayerCycles:
        if not isinstance(other, ArrayLayerCycles):
            return NotImplemented
        if other.pes != self.pes:
            raise ValueError(f"cannot add results of arrays of {self.pes} and {other.pes} PEs")
        return ArrayLayerCycles(
            *(getattr(self, t) + getattr(other, t) for t in (*TERMS, "macs")), pes=self.pes
        )


# -------------------------------------------------------------------- closed-form geometry


@lru_cache(maxsize=4096)
def _mean_beats(stride: int, length: int, beat: int, offset: int) -> float:
    """Mean DRAM beats of a row of ``length`` bytes at ``offset + p*stride`` over pixels ``p``:
    ``ceil((address % beat + length) / beat)`` averaged over one period of ``beat /
    gcd(stride, beat)`` pixels (exact over whole periods)."""
    period = beat // math.gcd(stride, beat)
    total = sum(((offset + p * stride) % beat + length + beat - 1) // beat for p in range(period))
    return total / period


def _axis(size: int, out: int, tile: int, k: int, s: int, pad: int) -> list[tuple[int, int, int]]:
    """Tiles along one axis as (output pixels, input pixels, input pixels inside the image),
    with the zero rows before the image, grouped: ``[(count, (on, in_n, lo, inside))]``."""
    kinds: dict[tuple[int, int, int, int], int] = {}
    for o0 in range(0, out, tile):
        on = min(tile, out - o0)
        i0 = o0 * s - pad
        n = (on - 1) * s + k
        a = min(max(0, -i0), n)
        b = max(min(n, size - i0), a)
        key = (on, n, a, b - a)
        kinds[key] = kinds.get(key, 0) + 1
    return [(cnt, key) for key, cnt in kinds.items()]


def _zero_cmds(nch: int, ih: int, iw: int, ya: int, yin: int, xa: int, xin: int) -> int:
    """Zero-fill LOADs of one input tile (adjacent zero rows merge, across chunks too)."""
    if yin == 0 or xin == 0:
        return -(-(nch * ih * iw) // _MAX_ROWS)
    xr, yb = iw - xa - xin, ih - ya - yin
    start, end = ya > 0 or xa > 0, yb > 0 or xr > 0
    per = int(start) + (yin - 1) * int(xa + xr > 0) + int(end)
    return nch * per - (nch - 1) * int(start and end)


@dataclass
class _Kind:
    """One kind of step, and how many steps of the layer are of that kind."""

    count: int
    m: int  # output pixels of the tile
    tow: int
    load_cmds: int = 0
    load_rows: int = 0  # scratchpad rows written (data + zero)
    load_zero: int = 0
    load_beats: float = 0.0
    store_cmds: int = 0
    store_rows: int = 0
    store_beats: float = 0.0
    store_bytes: int = 0
    cfg_cmds: int = 0  # CFG_BIAS (exec) = CFG_QUANT (store) commands
    exec_cmds: int = 0


def _array_model(
    config: HWConfig,
    conv: Conv2D,
    plan: TilePlan,
    segments: int,
    in_stride: int,
    out_stride: int,
    bandwidth: float,
    latency: int,
    macs: int,
) -> tuple[ArrayLayerCycles, dict[str, float]]:
    g = _Geometry(config, conv, plan)
    if g.error:
        raise ValueError(g.error)
    arr = _array(config)
    r, c, k, s, beat = config.rows, config.cols, conv.k, conv.stride, config.dma_beat_bytes
    wrows = -(-c // r)
    rate = min(bandwidth, beat) / beat  # DRAM beats per cycle
    cmd_beats = isa.CMD_BYTES / beat
    # the fetch keeps at most its buffer's beats requested: that many per DRAM round trip
    depth, burst = Fetch.buffer_depth(beat), Fetch.max_burst(beat)
    fetch_rate = min(rate, depth / (latency + burst))
    L = arr.ws_latency
    preload = max(arr.preload_latency, r * wrows) + ExecUnit.ws_weight_gap
    nch, nt_n, taps = g.nchunks, g.ntiles, g.nchunks * k * k
    os_flow = plan.dataflow == "os"
    gap_ld, gap_st = LoadUnit.command_gap, StoreUnit.command_gap
    nbuf = 2 if plan.double_buffer else 1

    # ---- per input tile: loads; per tile x n-tile: MATMULs and stores
    chunk_beats = sum(
        _mean_beats(in_stride, min(r, conv.cin - kc * r), beat, (kc * r) % beat)
        for kc in range(nch)
    )
    out_len = [min(c, conv.cout - nt * c) for nt in range(nt_n)]
    out_beats = [
        _mean_beats(out_stride, ln, beat, (nt * c) % beat) for nt, ln in enumerate(out_len)
    ]
    w_rows = g.wset_rows * (nt_n if plan.resident_weights else 1)
    w_cmds = -(-w_rows // _MAX_ROWS)
    w_beats = w_rows * _mean_beats(r, r, beat, 0)
    rows_ax = _axis(conv.h, conv.out_h, g.oh_t, k, s, conv.pad)
    cols_ax = _axis(conv.w, conv.out_w, g.ow_t, k, s, conv.pad)

    streamed_inner = not plan.resident_weights and not plan.n_outer and nt_n > 1
    streamed_cfg = nt_n > 1 and not plan.n_outer  # CFG_BIAS/CFG_QUANT every step
    # Walk the step kinds: (tile kind) x (n-tile); steps of one kind cost the same.
    kinds: list[_Kind] = []
    spatial_tiles = conv.batch * sum(n for n, _ in rows_ax) * sum(n for n, _ in cols_ax)
    for ny_, (toh, ih, ya, yin) in rows_ax:
        for nx_, (tow, iw, xa, xin) in cols_ax:
            n_sp = ny_ * nx_ * conv.batch * segments
            data_rows = yin * xin if xin and yin else 0
            merged = xa == 0 and xin == iw and iw == conv.w
            data_cmds = nch * ((-(-data_rows // _MAX_ROWS)) if merged else yin) if data_rows else 0
            in_cmds = _zero_cmds(nch, ih, iw, ya, yin, xa, xin) + data_cmds
            in_rows = nch * ih * iw
            m = toh * tow
            st_cmds = 1 if tow == conv.out_w else toh
            for nt in range(nt_n):
                kd = _Kind(n_sp, m, tow)
                # input loads once per spatial tile (n inner: with the first n-tile; n outer:
                # every step), weights with every n-tile change when streamed
                new_input = plan.n_outer or nt == 0 or nt_n == 1
                if new_input:
                    kd.load_cmds += in_cmds
                    kd.load_rows += in_rows
                    kd.load_zero += in_rows - nch * data_rows
                    kd.load_beats += nch and data_rows * chunk_beats
                if streamed_inner:
                    kd.load_cmds += w_cmds
                    kd.load_rows += w_rows
                    kd.load_beats += w_beats
                kd.store_cmds = st_cmds
                kd.store_rows = m
                kd.store_beats = m * out_beats[nt]
                kd.store_bytes = m * out_len[nt]
                kd.cfg_cmds = c if streamed_cfg else 0
                kd.exec_cmds = taps * (_os_blocks(m, tow, toh, r) if os_flow else 1)
                kinds.append(kd)
    nsteps = sum(kd.count for kd in kinds)
    if streamed_inner:
        n_wloads, wc, wr, wb = 0, 0, 0, 0.0  # in every step's group
    elif plan.n_outer and not plan.resident_weights:
        n_wloads, wc, wr, wb = nt_n * segments, w_cmds, w_rows, w_beats  # once per n-tile
    else:
        n_wloads, wc, wr, wb = segments, w_cmds, w_rows, w_beats  # once per segment
    # CFG_BIAS / CFG_QUANT: every (segment, n-tile) change; the first segment sets all columns
    if streamed_cfg:
        rare_changes, rare_cmds = 0, 0
        total_cfg = nsteps * c
    else:
        rare_changes = nt_n * segments
        rare_cmds = c * nt_n + (segments - 1) * sum(min(c, ln) for ln in out_len)
        total_cfg = rare_cmds

    # ---- per-step unit times
    def exec_time(kd: _Kind) -> tuple[int, int, int]:
        """(compute, preload-or-fill_drain, exposed-fill) of one step in steady state."""
        m = kd.m
        if os_flow:
            blocks = kd.exec_cmds // taps
            return taps * blocks * r, 0, blocks * (arr.os_fill_latency + arr.os_drain_latency)
        per = max(m, preload, -(-(L + preload + m) // 2))
        return taps * m, taps * (per - m), 0

    def load_time(cmds: int, rows: int, zero: int, beats: float) -> float:
        issue = rows + cmds * gap_ld
        return max(issue, beats / rate + zero)

    def store_time(kd: _Kind) -> float:
        return max(kd.store_rows + kd.store_cmds * gap_st, kd.store_beats / rate)

    terms = dict.fromkeys(TERMS, 0.0)
    # program fetch: every command, one beat share each
    n_cmds = (
        1  # CFG_STORE
        + sum(
            kd.count * (kd.load_cmds + kd.exec_cmds + kd.store_cmds + 2 * kd.cfg_cmds)
            for kd in kinds
        )
        + n_wloads * wc
        + 1  # FENCE
    )
    n_cmds += 2 * rare_cmds
    fetch_beats = n_cmds * cmd_beats
    load_beats = sum(kd.count * kd.load_beats for kd in kinds) + n_wloads * wb
    store_beats = sum(kd.count * kd.store_beats for kd in kinds)
    # the first step's loads are exposed (and the fetch of the commands before its MATMULs)
    first = kinds[0]
    head_cmds = 1 + c + first.load_cmds + (wc if n_wloads else 0)
    first_load = load_time(head_cmds - 1 - c, first.load_rows + (wr if n_wloads else 0),
                           first.load_zero, first.load_beats + (wb if n_wloads else 0))  # fmt: skip
    terms["prologue"] = latency + head_cmds * cmd_beats / fetch_rate + first_load + preload
    last = kinds[-1]
    terms["epilogue"] = (
        (0 if os_flow else L)
        + ExecUnit.retire_latency
        + StoreUnit.pipeline_latency
        + store_time(last)
        + 1
    )
    # steady state: per step the array, the load unit, the store unit and the DRAM port
    step_fetch = (n_cmds / nsteps) * cmd_beats
    for kd in kinds:
        comp, pre, fd = exec_time(kd)
        x = comp + pre + fd
        over = 0
        if kd.cfg_cmds:
            over = L + ExecUnit.retire_latency + kd.cfg_cmds + preload
        ld = load_time(kd.load_cmds, kd.load_rows, kd.load_zero, kd.load_beats)
        st = store_time(kd)
        port = (kd.load_beats + kd.store_beats) / rate + step_fetch / rate
        port = max(port, step_fetch / fetch_rate)
        if plan.double_buffer:
            busy = x + over
            wait = max(ld, st, port) - busy
            dma = max(0.0, wait)
            which = "dma_load" if ld >= max(st, port) else ("dma_store" if st >= port else "stall")
        else:
            # one slot each: the array waits for the loads of its step and the stores of the
            # previous one, and restarts empty every step
            busy = x + over
            dma = 0.0
            which = "dma_load"
            terms["fill_drain"] += kd.count * (L + preload)
            terms["dma_store"] += kd.count * st
            dma = ld + latency
        terms["compute"] += kd.count * comp
        terms["preload"] += kd.count * pre
        terms["fill_drain"] += kd.count * fd
        terms["overhead"] += kd.count * over
        terms[which] += kd.count * dma
    # the first step's load and the last step's store are in the prologue and epilogue
    if not plan.double_buffer:
        terms["dma_load"] -= load_time(first.load_cmds, first.load_rows, first.load_zero,
                                       first.load_beats) + latency  # fmt: skip
        terms["dma_store"] -= store_time(last)
        terms["fill_drain"] -= L + preload
    # CFG_BIAS on a rare (segment, n-tile) change: the array drains first, then restarts
    if rare_changes > 1:
        per = (rare_cmds - c) / (rare_changes - 1)
        terms["overhead"] += (rare_changes - 1) * (L + ExecUnit.retire_latency + per + preload)
    # weight sets loaded again (n outer: per n-tile; per segment): exposed when not overlapped
    if n_wloads > 1:
        terms["dma_load"] += (n_wloads - 1) * load_time(wc, wr, 0, wb) / nbuf
    total_port = (fetch_beats + load_beats + store_beats) / rate
    ints = {t: round(max(0.0, v)) for t, v in terms.items()}
    out = ArrayLayerCycles(**ints, macs=macs, pes=config.pes)
    if out.total < total_port:  # the DRAM port is the bottleneck of the whole layer
        out = dataclasses.replace(out, stall=out.stall + math.ceil(total_port - out.total))
    counts = {
        "load_beats": load_beats,
        "store_beats": store_beats,
        "fetch_beats": fetch_beats,
        "commands": n_cmds,
        "steps": nsteps,
        "spatial_tiles": spatial_tiles,
        "spad_write_rows": sum(kd.count * kd.load_rows for kd in kinds) + n_wloads * wr,
        "stored_bytes": sum(kd.count * kd.store_bytes for kd in kinds),
        "stored_rows": sum(kd.count * kd.store_rows for kd in kinds),
        "streamed": sum(kd.count * exec_time(kd)[0] for kd in kinds),
        "pixels_read": sum(kd.count * taps * kd.m for kd in kinds),
        # ws: every MATMUL writes its rows, all but a step's first read them first (RMW);
        # os: the drain writes each pixel once (bias added then)
        "acc_write_rows": sum(kd.count * kd.m * (1 if os_flow else taps) for kd in kinds),
        "acc_rmw_rows": 0 if os_flow else sum(kd.count * kd.m * (taps - 1) for kd in kinds),
        "matmuls": sum(kd.count * kd.exec_cmds for kd in kinds),
        "cfg": total_cfg,
    }
    return out, counts


def _os_blocks(m: int, tow: int, toh: int, r: int) -> int:
    """Array tiles (blocks of at most ``rows`` pixels) of an os tile (`_Builder.os_matmuls`)."""
    if tow <= r:
        return -(-toh // (r // tow))
    return toh * -(-tow // r)


# -------------------------------------------------------------------- public entry points


def _bandwidth(bandwidth: float, latency: int) -> None:
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, int | float) or bandwidth <= 0:
        raise ValueError(
            f"bandwidth must be a positive number of bytes per cycle, not {bandwidth!r}"
        )
    if isinstance(latency, bool) or not isinstance(latency, int) or latency < 0:
        raise ValueError(f"latency must be a non-negative integer of cycles, not {latency!r}")


def array_layer_cycles(
    config: HWConfig,
    layer: Conv2D | Dense,
    plan: TilePlan,
    *,
    bandwidth: float = 16,
    latency: int = 20,
) -> ArrayLayerCycles:
    """Cycles of a conv or dense layer lowered by `kernels.lower.lower` with ``plan``.

    Closed form over the kinds of step (module docstring); the program is not built.

    Parameters
    ----------
    config : HWConfig
    layer : Conv2D or Dense
    plan : TilePlan
    bandwidth : float
        DRAM bytes per cycle (the port moves at most one ``dma_beat_bytes`` beat a cycle).
    latency : int
        DRAM cycles from a read request to its first beat.

    Raises
    ------
    ValueError
        The plan does not fit (the message names the layer and the limit).
    """
    _check_array(layer, plan, (Conv2D, Dense))
    _bandwidth(bandwidth, latency)
    conv = layer.as_conv()
    out, _ = _array_model(config, conv, plan, 1, conv.cin, conv.cout, bandwidth, latency,
                          layer.macs)  # fmt: skip
    return out


def _channel_conv(layer: DepthwiseConv2D) -> Conv2D:
    return Conv2D(layer.name, h=layer.h, w=layer.w, cin=1, cout=1, k=layer.k, stride=layer.stride,
                  pad=layer.pad, batch=layer.batch)  # fmt: skip


def depthwise_array_cycles(
    config: HWConfig,
    layer: DepthwiseConv2D,
    plan: TilePlan,
    *,
    bandwidth: float = 16,
    latency: int = 20,
) -> ArrayLayerCycles:
    """Cycles of a depthwise layer on the array, one channel at a time
    (`kernels.naive.lower_depthwise_naive`: ``c`` segments of a ``cin = cout = 1`` convolution
    tiled by ``plan``, reading and writing channel planes with a pixel stride of ``c`` bytes).
    Parameters and errors as `array_layer_cycles`."""
    _check_array(layer, plan, (DepthwiseConv2D,))
    _bandwidth(bandwidth, latency)
    out, _ = _array_model(config, _channel_conv(layer), plan, layer.c, layer.c, layer.c,
                          bandwidth, latency, layer.macs)  # fmt: skip
    return out


def _check_array(layer, plan, kinds) -> None:
    if not isinstance(layer, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"layer must be a {names}, not {type(layer).__name__}")
    if not isinstance(plan, TilePlan):
        raise TypeError(f"layer {layer.name!r}: plan must be a TilePlan, not {type(plan).__name__}")


ENERGY_TERMS = ("mac", "spad", "acc", "dram", "static")


@dataclass(frozen=True)
class LayerCost:
    """What one layer costs on one engine: cycles by term, bytes per memory level, energy.

    ``+`` adds layers (of either engine) into network totals; ``engine`` becomes ``"mixed"``
    and `utilization` is then over the array's peak.

    Parameters
    ----------
    engine : {"array", "vector", "mixed"}
    cycles : int
        Total cycles (the sum of the terms).
    compute, preload, fill_drain, dma_load, dma_store, stall, overhead, prologue, epilogue : int
        The terms (`ArrayLayerCycles`; for the vector unit ``compute`` is its busy cycles,
        ``stall`` the DMA beyond them, ``dma_load`` the single-buffered DMA).
    dram_read, dram_write : int
        Bytes on the DRAM port: reads in whole beats (loads and program fetch), writes as the
        bytes stored.
    spad_read, spad_write, acc_read, acc_write : int
        On-chip accesses in bytes (a scratchpad row is ``rows`` bytes, an accumulator row
        ``cols`` int32).
    macs : int
    peak : int
        MACs per cycle of the engine at peak (PEs or vector lanes).
    energy_mac_pj, energy_spad_pj, energy_acc_pj, energy_dram_pj, energy_static_pj : float
        Energy by component (`EnergyTable`).
    """

    engine: str
    cycles: int
    compute: int
    preload: int
    fill_drain: int
    dma_load: int
    dma_store: int
    stall: int
    overhead: int
    prologue: int
    epilogue: int
    dram_read: int
    dram_write: int
    spad_read: int
    spad_write: int
    acc_read: int
    acc_write: int
    macs: int
    peak: int
    energy_mac_pj: float
    energy_spad_pj: float
    energy_acc_pj: float
    energy_dram_pj: float
    energy_static_pj: float

    @property
    def terms(self) -> dict[str, int]:
        """The cycle terms by name (they add up to `cycles`)."""
        return {t: getattr(self, t) for t in TERMS}

    @property
    def energy(self) -> dict[str, float]:
        """Energy by component, pJ."""
        return {e: getattr(self, f"energy_{e}_pj") for e in ENERGY_TERMS}

    @property
    def energy_pj(self) -> float:
        """Total energy, pJ."""
        return sum(self.energy.values())

    @property
    def dram_bytes(self) -> int:
        return self.dram_read + self.dram_write

    @property
    def utilization(self) -> float:
        """``macs / (cycles * peak)``."""
        return self.macs / (self.cycles * self.peak) if self.cycles else 0.0

    @property
    def edp(self) -> float:
        """Energy-delay product, pJ x cycles."""
        return self.energy_pj * self.cycles

    def __add__(self, other: LayerCost) -> LayerCost:
        if not isinstance(other, LayerCost):
            return NotImplemented
        vals = {}
        for f in dataclasses.fields(self):
            if f.name == "engine":
                vals[f.name] = self.engine if self.engine == other.engine else "mixed"
            elif f.name == "peak":
                vals[f.name] = max(self.peak, other.peak)
            else:
                vals[f.name] = getattr(self, f.name) + getattr(other, f.name)
        return LayerCost(**vals)


@lru_cache(maxsize=8)
def _default_table() -> EnergyTable:
    return load_energy_table()


def layer_cost(
    config: HWConfig,
    layer: Conv2D | Dense | DepthwiseConv2D | Add | Pool2D,
    plan: TilePlan | VectorPlan,
    *,
    bandwidth: float = 16,
    latency: int = 20,
    energy: EnergyTable | None = None,
) -> LayerCost:
    """Cycles, traffic and energy of one layer with one plan, on the engine the plan picks.

    ``TilePlan`` with ``Conv2D``/``Dense``: the array (`array_layer_cycles`). ``TilePlan`` with
    ``DepthwiseConv2D``: the array, one channel at a time (`depthwise_array_cycles`).
    ``VectorPlan`` with ``DepthwiseConv2D``/``Add``/``Pool2D``: the vector unit
    (`mapping.cost.vector_layer_cycles`). Deterministic and pure.

    Parameters
    ----------
    config : HWConfig
    layer : Conv2D, Dense, DepthwiseConv2D, Add or Pool2D
    plan : TilePlan or VectorPlan
    bandwidth : float
        DRAM bytes per cycle (benches: 16).
    latency : int
        DRAM read latency in cycles (benches: 20).
    energy : EnergyTable, optional
        ``configs/energy.toml`` when omitted.

    Raises
    ------
    ValueError
        The plan does not fit the config (the message names the layer and the limit), or a bad
        bandwidth or latency.
    TypeError
        A layer and plan that no engine runs together.
    """
    _bandwidth(bandwidth, latency)
    table = energy if energy is not None else _default_table()
    if isinstance(plan, TilePlan):
        if isinstance(layer, Conv2D | Dense):
            conv = layer.as_conv()
            cyc, n = _array_model(config, conv, plan, 1, conv.cin, conv.cout, bandwidth,
                                  latency, layer.macs)  # fmt: skip
        elif isinstance(layer, DepthwiseConv2D):
            conv = _channel_conv(layer)
            cyc, n = _array_model(config, conv, plan, layer.c, layer.c, layer.c, bandwidth,
                                  latency, layer.macs)  # fmt: skip
        else:
            raise TypeError(
                f"layer {getattr(layer, 'name', layer)!r}: a TilePlan runs a Conv2D, Dense or "
                f"DepthwiseConv2D on the array, not a {type(layer).__name__}; give a VectorPlan"
            )
        return _array_cost(config, cyc, n, table)
    if isinstance(plan, VectorPlan):
        if not isinstance(layer, DepthwiseConv2D | Add | Pool2D):
            raise TypeError(
                f"layer {getattr(layer, 'name', layer)!r}: a VectorPlan runs a DepthwiseConv2D, "
                f"Add or Pool2D on the vector unit, not a {type(layer).__name__}; give a TilePlan"
            )
        return _vector_cost(config, layer, plan, latency, bandwidth, table)
    raise TypeError(f"plan must be a TilePlan or VectorPlan, not {type(plan).__name__}")


def _energy(config: HWConfig, table: EnergyTable, cycles: int, macs: int, dram: int,
            spad_r: int, spad_w: int, acc_r: int, acc_w: int) -> dict[str, float]:  # fmt: skip
    sp = table.spad_scale(config.spad_kib)
    ac = table.acc_scale(config.acc_kib)
    return {
        "energy_mac_pj": macs * table.mac_pj,
        "energy_spad_pj": sp * (spad_r * table.spad_read_pj_per_byte
                                + spad_w * table.spad_write_pj_per_byte),
        "energy_acc_pj": ac * (acc_r * table.acc_read_pj_per_byte
                               + acc_w * table.acc_write_pj_per_byte),
        "energy_dram_pj": dram * table.dram_pj_per_byte,
        "energy_static_pj": cycles * table.static_pj_per_cycle,
    }  # fmt: skip


def _array_cost(config: HWConfig, cyc: ArrayLayerCycles, n: dict, table: EnergyTable) -> LayerCost:
    r, c = config.rows, config.cols
    wrows = -(-c // r)
    acc_row = c * config.acc_width // 8
    dram_read = round((n["load_beats"] + n["fetch_beats"]) * config.dma_beat_bytes)
    dram_write = n["stored_bytes"]
    # activation rows read by the feeders (ws and os alike: every (chunk, tap) reads the tile's
    # pixels once) and weight rows (rows*wrows per MATMUL)
    spad_read = (n["pixels_read"] + n["matmuls"] * r * wrows) * r
    spad_write = n["spad_write_rows"] * r
    acc_write = n["acc_write_rows"] * acc_row
    acc_read = (n["acc_rmw_rows"] + n["stored_rows"]) * acc_row
    e = _energy(config, table, cyc.total, cyc.macs, dram_read + dram_write, spad_read,
                spad_write, acc_read, acc_write)  # fmt: skip
    return LayerCost(
        engine="array", cycles=cyc.total, **cyc.terms, dram_read=dram_read,
        dram_write=dram_write, spad_read=spad_read, spad_write=spad_write, acc_read=acc_read,
        acc_write=acc_write, macs=cyc.macs, peak=cyc.pes, **e,
    )  # fmt: skip


def _vector_cost(config, layer, plan, latency, bandwidth, table) -> LayerCost:
    v = vector_layer_cycles(config, layer, plan)
    geo = VectorGeometry(config, layer, plan)
    r, beat = config.rows, config.dma_beat_bytes
    terms = dict.fromkeys(TERMS, 0)
    terms["compute"] = v.busy
    terms["prologue"], terms["epilogue"] = v.prologue, v.epilogue
    if plan.double_buffer:
        terms["stall"] = v.total - v.busy - v.prologue - v.epilogue
    else:
        terms["dma_load"] = v.total - v.busy - v.prologue - v.epilogue
    loaded, stored = geo.dma_bytes()
    taps = out_px = params = 0
    for (oh, ow), cnt in geo.command_shapes().items():
        taps += cnt * oh * ow * geo.kh * geo.kw * geo.operands
        out_px += cnt * oh * ow
        params += cnt * geo.param_rows
    spad_read = (taps + params) * r + out_px * r  # taps and parameters; the stores read outputs
    spad_write = loaded + out_px * r
    dram_read = -(-loaded // beat) * beat
    e = _energy(config, table, v.total, v.macs, dram_read + stored, spad_read, spad_write, 0, 0)
    return LayerCost(
        engine="vector", cycles=v.total, **terms, dram_read=dram_read, dram_write=stored,
        spad_read=spad_read, spad_write=spad_write, acc_read=0, acc_write=0, macs=v.macs,
        peak=v.lanes, **e,
    )  # fmt: skip
