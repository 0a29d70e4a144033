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
* the program fetch keeps at most its buffer's beats requested (one DRAM round trip per buffer),
  waits behind queued load beats, and stops with a full buffer while the decoder is held;
* CFG_BIAS (on an n-tile change) waits for the array to drain; CFG_QUANT waits for the store
  pipeline to drain.

A plan with K groups (``TilePlan.k_groups > 1``) is one step per group, each with its own load
group, CFG_BIAS before the first and the stores after the last: the counts are exact; the cycles
are within 2% of the RTL on VGG-16 fc6's reduction (scaled to 64 outputs) but over-predict small
streamed layers on tiny by up to 15% (docs/cost-model.md "K groups").

Every latency is read from the RTL components (`rtl.systolic.SystolicArray`,
`rtl.execute.ExecUnit`, `rtl.dma.LoadUnit`, `rtl.dma.StoreUnit`); the DRAM's ``latency`` and
``bandwidth`` are the bench's parameters.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from kernels.layers import Add, Conv2D, Dense, DepthwiseConv2D, Pool2D
from kernels.lower import _MAX_ROWS, TilePlan, _Geometry, array_form
from kernels.lower_vector import VectorGeometry, VectorPlan
from rtl import isa
from rtl.config import HWConfig
from rtl.dma import Fetch, LoadUnit, StoreUnit
from rtl.execute import ExecUnit
from rtl.vector import VectorUnit

from .cost import _array, vector_layer_cycles
from .energy import EnergyTable, load_energy_table

__all__ = [
    "ArrayLayerCycles",
    "LayerCost",
    "array_layer_cycles",
    "depthwise_array_cycles",
    "layer_cost",
]

# How many segments, n-tiles and images the step recurrence visits before extrapolating (the
# extra ones repeat the same steps; the first and the last differ).
_SEGMENTS_SIMULATED = 6
_NTILES_SIMULATED = 5
_IMAGES_SIMULATED = 3

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


@lru_cache(maxsize=4096)
def _period_beats(stride: int, length: int, beat: int, offset: int) -> tuple[int, ...]:
    """Prefix sums of the beats of rows ``p = 0, 1, ...`` over one period of pixels."""
    period = beat // math.gcd(stride, beat)
    acc, out = 0, [0]
    for p in range(period):
        acc += ((offset + p * stride) % beat + length + beat - 1) // beat
        out.append(acc)
    return tuple(out)


def _run_beats(stride: int, length: int, beat: int, offset: int, n: int) -> int:
    """Exact DRAM beats of ``n`` rows of ``length`` bytes at ``offset + p*stride``."""
    pre = _period_beats(stride, length, beat, offset % beat)
    period = len(pre) - 1
    return (n // period) * pre[-1] + pre[n % period]


def _axis(size: int, out: int, tile: int, k: int, s: int, pad: int) -> list[tuple[int, int, int]]:
    """Tiles along one axis as (output pixels, input pixels, input pixels inside the image),
    with the zero rows before the image, grouped: ``[(count, (on, in_n, lo, inside))]``."""
    kinds: dict[tuple[int, int, int, int], int] = {}
    for key in _axis_seq(size, out, tile, k, s, pad):
        kinds[key] = kinds.get(key, 0) + 1
    return [(cnt, key) for key, cnt in kinds.items()]


def _extrapolate(f, n: int, few: int) -> dict[str, float]:
    """``f(n)`` for a quantity that grows by the same terms with every unit of ``n`` once the
    pipeline is in its steady state: ``f(few) + (n - few) * (f(few) - f(few - 1))`` when the
    last two increments agree (the steady state is reached), else ``f(n)`` itself."""
    if n <= few:
        return f(n)
    a, b, c = f(few - 2), f(few - 1), f(few)
    if abs(sum(c.values()) - 2 * sum(b.values()) + sum(a.values())) > 0.5:
        return f(n)
    return {k: c[k] + (n - few) * (c[k] - b[k]) for k in c}


def _axis_seq(size: int, out: int, tile: int, k: int, s: int, pad: int) -> list[tuple]:
    """The tiles along one axis in order, as (output pixels, input pixels, zero pixels before
    the image, input pixels inside it)."""
    seq = []
    for o0 in range(0, out, tile):
        on = min(tile, out - o0)
        i0 = o0 * s - pad
        n = (on - 1) * s + k
        a = min(max(0, -i0), n)
        b = max(min(n, size - i0), a)
        seq.append((on, n, a, b - a))
    return seq


def _zero_cmds(nch: int, ih: int, iw: int, ya: int, yin: int, xa: int, xin: int) -> int:
    """Zero-fill LOADs of one input tile (adjacent zero rows merge, across chunks too)."""
    if yin == 0 or xin == 0:
        return -(-(nch * ih * iw) // _MAX_ROWS)
    xr, yb = iw - xa - xin, ih - ya - yin
    start, end = ya > 0 or xa > 0, yb > 0 or xr > 0
    per = int(start) + (yin - 1) * int(xa + xr > 0) + int(end)
    return nch * per - (nch - 1) * int(start and end)


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
    bound_only: bool = False,
    *,
    in_step: int = 1,
    out_step: int = 1,
) -> tuple[ArrayLayerCycles, dict[str, float]] | tuple[float, float]:
    """The model of `lower_segments` running ``conv`` once per segment; segment ``i`` reads its
    input channels from byte ``i * in_step`` of a pixel (``in_stride`` bytes apart) and writes
    its output channels from byte ``i * out_step`` (`kernels.lower.ArrayForm`)."""
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
    fetch_rate = min(rate, depth / (latency + burst + Fetch.request_overhead))
    L = arr.ws_latency
    preload = max(arr.preload_latency, r * wrows) + ExecUnit.ws_weight_gap
    nch, nt_n, taps = g.nchunks, g.ntiles, g.nchunks * k * k
    os_flow = plan.dataflow == "os"
    # K groups (`TilePlan.k_groups`): each (image, tile, n-tile) is one step per group, each
    # with its own load group (the group's input chunks and weights); a tile's groups
    # accumulate and only the last one stores. With one group, that is the whole reduction.
    kgs = plan.k_groups
    split = kgs > 1
    group_nch = [min(nch, (kg + 1) * g.group_chunks) - kg * g.group_chunks for kg in range(kgs)]
    group_c0 = [kg * g.group_chunks for kg in range(kgs)]

    # ---- per input tile: loads; per tile x n-tile: MATMULs and stores
    # (the segments' rows start at different offsets in a beat: their mean)
    in_offsets = Counter(i * in_step % beat for i in range(segments))
    out_offsets = Counter(i * out_step % beat for i in range(segments))

    def seg_beats(stride: int, length: int, at: int, offsets: Counter) -> float:
        return (
            sum(
                n * _mean_beats(stride, length, beat, (off + at) % beat)
                for off, n in offsets.items()
            )
            / segments
        )

    group_chunk_beats = [
        sum(
            seg_beats(in_stride, min(r, conv.cin - kc * r), kc * r, in_offsets)
            for kc in range(group_c0[kg], group_c0[kg] + group_nch[kg])
        )
        for kg in range(kgs)
    ]
    chunk_beats = sum(group_chunk_beats)
    out_len = [min(c, conv.cout - nt * c) for nt in range(nt_n)]
    out_beats = [seg_beats(out_stride, ln, nt * c, out_offsets) for nt, ln in enumerate(out_len)]
    w_rows = g.wntile_rows * (nt_n if plan.resident_weights else 1)
    w_row_beats = _mean_beats(r, r, beat, 0)
    # each group's weights are their own LOADs
    group_w_rows = [n * g.wchunk_rows for n in group_nch] if split else [w_rows]
    w_cmds = sum(-(-n // _MAX_ROWS) for n in group_w_rows)
    w_beats = w_rows * w_row_beats
    rows_ax = _axis(conv.h, conv.out_h, g.oh_t, k, s, conv.pad)
    cols_ax = _axis(conv.w, conv.out_w, g.ow_t, k, s, conv.pad)

    # a weight set in every step's group (with K groups: every step loads its group's weights)
    streamed_inner = split or (not plan.resident_weights and not plan.n_outer and nt_n > 1)
    streamed_cfg = nt_n > 1 and not plan.n_outer  # CFG_BIAS/CFG_QUANT every step
    # Totals over the kinds of spatial tile (each kind's tiles cost the same).
    spatial_tiles = conv.batch * sum(n for n, _ in rows_ax) * sum(n for n, _ in cols_ax)
    pixels = conv.batch * conv.out_h * conv.out_w
    # input tiles are loaded once per spatial tile (n inner), or once per step (n outer)
    # (with K groups, in every step: the group changes from one step to the next)
    in_loads = nt_n if (split or (plan.n_outer and spatial_tiles > 1)) else 1
    tot = dict.fromkeys(
        ("steps", "load_cmds", "load_rows", "load_beats", "store_cmds", "pixels", "matmuls",
         "streamed", "acc_write_rows"), 0.0
    )  # fmt: skip
    sum_out_beats = sum(out_beats)
    for ny_, (toh, ih, ya, yin) in rows_ax:
        for nx_, (tow, iw, xa, xin) in cols_ax:
            n_sp = ny_ * nx_ * conv.batch * segments
            data_rows = yin * xin if xin and yin else 0
            merged = xa == 0 and xin == iw and iw == conv.w
            data_cmds = nch * ((-(-data_rows // _MAX_ROWS)) if merged else yin) if data_rows else 0
            in_cmds = data_cmds + sum(_zero_cmds(n, ih, iw, ya, yin, xa, xin) for n in group_nch)
            m = toh * tow
            mms = taps * (_os_blocks(m, tow, toh, r) if os_flow else 1)
            tot["steps"] += n_sp * nt_n
            tot["load_cmds"] += n_sp * in_loads * in_cmds
            tot["load_rows"] += n_sp * in_loads * nch * ih * iw
            tot["load_beats"] += n_sp * in_loads * data_rows * chunk_beats
            tot["store_cmds"] += n_sp * nt_n * (1 if tow == conv.out_w else toh)
            tot["pixels"] += n_sp * m
            tot["matmuls"] += n_sp * nt_n * mms
            tot["streamed"] += n_sp * nt_n * (mms * r if os_flow else taps * m)
            tot["acc_write_rows"] += n_sp * nt_n * m * (kgs if os_flow else taps)
    nsteps = round(tot["steps"])
    if streamed_inner:  # a weight set in every step's group
        tot["load_cmds"] += nsteps * w_cmds
        tot["load_rows"] += nsteps * w_rows
        tot["load_beats"] += nsteps * w_beats
        n_wloads, wc, wr, wb = 0, 0, 0, 0.0
    elif plan.n_outer and not plan.resident_weights:
        n_wloads, wc, wr, wb = nt_n * segments, w_cmds, w_rows, w_beats  # once per n-tile
    else:
        n_wloads, wc, wr, wb = segments, w_cmds, w_rows, w_beats  # once per segment
    # CFG_BIAS / CFG_QUANT: every (segment, n-tile) change; the first segment sets all columns
    if streamed_cfg:
        rare_cmds = 0
        total_cfg = nsteps * c
    else:
        rare_cmds = c * nt_n + (segments - 1) * sum(min(c, ln) for ln in out_len)
        total_cfg = rare_cmds

    # program fetch: every command (CFG_STORE first, FENCE last), one beat share each
    n_cmds = round(
        2 + tot["load_cmds"] + n_wloads * wc + tot["matmuls"] + tot["store_cmds"]
        + 2 * (total_cfg if streamed_cfg else rare_cmds)
    )  # fmt: skip
    fetch_beats = n_cmds * cmd_beats
    load_beats = tot["load_beats"] + n_wloads * wb
    store_beats = tot["pixels"] * sum_out_beats
    if bound_only:  # floors of the total (the DRAM port's, the array's), without the steps
        return (fetch_beats + load_beats + store_beats) / rate + latency, tot["streamed"]
    # ---- the steps in program order, and the recurrence over them
    row_seq = _axis_seq(conv.h, conv.out_h, g.oh_t, k, s, conv.pad)
    col_seq = _axis_seq(conv.w, conv.out_w, g.ow_t, k, s, conv.pad)
    image = [(ty, tx) for ty in row_seq for tx in col_seq]
    input_cache: dict[tuple, tuple[int, int, int, float]] = {}

    def input_group(ty: tuple, tx: tuple, kg: int) -> tuple[int, int, int, float]:
        """(commands, rows, zero rows, beats) of one spatial tile's input loads (K group kg)."""
        hit = input_cache.get((ty, tx, kg))
        if hit is None:
            (_toh, ih, ya, yin), (_tow, iw, xa, xin) = ty, tx
            n = group_nch[kg]
            data_rows = yin * xin
            merged = xa == 0 and xin == iw and iw == conv.w
            data_cmds = (n * (-(-data_rows // _MAX_ROWS) if merged else yin)) if data_rows else 0
            cmds = _zero_cmds(n, ih, iw, ya, yin, xa, xin) + data_cmds
            rows = n * ih * iw
            hit = (cmds, rows, rows - n * data_rows, data_rows * group_chunk_beats[kg])
            input_cache[(ty, tx, kg)] = hit
        return hit

    t = _Recurrence(config, plan, latency, rate, fetch_rate, preload, os_flow, conv.out_w)

    def simulate(nseg: int, ntv: int, nbatch: int) -> dict[str, float]:
        """The recurrence over the steps of ``nseg`` segments of ``nbatch`` images with the
        first ``ntv - 1`` n-tiles and the last one."""
        spatial = image * nbatch
        nts = [*range(ntv - 1), nt_n - 1]
        order = (
            [(sp, nt) for nt in nts for sp in range(len(spatial))]
            if plan.n_outer
            else [(sp, nt) for sp in range(len(spatial)) for nt in nts]
        )
        w_rows = group_w_rows  # all n-tiles' (resident) or one n-tile's, per K group
        w_cmds = [-(-n // _MAX_ROWS) for n in w_rows]
        in_inst = w_inst = -1
        last_in: list[int] = []  # last step of each input instance
        last_w: list[int] = []
        step = 0
        pending: list[tuple[int, int | None, int, int, int, float]] = []
        # (first step, req, commands, rows, zero rows, beats) of the load groups
        steps_info = []
        acc_i = 0
        for seg in range(nseg):
            prev_sp = prev_nt = None
            for sp, nt in order:
                ty, tx = spatial[sp]
                # CFG_BIAS/CFG_QUANT when (segment, n-tile) changes; later segments set only
                # the columns they store
                cfg_change = prev_nt is None or nt != prev_nt[0]
                ncfg = (c if seg == 0 else min(c, out_len[nt])) if cfg_change else 0
                for kg in range(kgs):
                    cmds = rows = zero = 0
                    beats = 0.0
                    reqs = []
                    new_w = prev_nt is None or (not plan.resident_weights and (nt, kg) != prev_nt)
                    if new_w:
                        w_inst += 1
                        last_w.append(step)
                        if w_inst >= g.nw:
                            reqs.append(last_w[w_inst - g.nw])
                        cmds, rows, beats = w_cmds[kg], w_rows[kg], w_rows[kg] * w_row_beats
                    else:
                        last_w[-1] = step
                    if (sp, kg) != prev_sp:
                        in_inst += 1
                        last_in.append(step)
                        if in_inst >= g.nin:
                            reqs.append(last_in[in_inst - g.nin])
                        ic, ir, iz, ib = input_group(ty, tx, kg)
                        cmds, rows, zero, beats = cmds + ic, rows + ir, zero + iz, beats + ib
                    else:
                        last_in[-1] = step
                    if cmds:
                        pending.append((step, reqs, cmds, rows, zero, beats))
                    # CFG_BIAS before the tile's first group, CFG_QUANT and the stores after
                    # its last
                    steps_info.append(
                        (
                            ty,
                            tx,
                            nt,
                            ncfg if kg == 0 else 0,
                            ncfg if kg == kgs - 1 else 0,
                            group_nch[kg] * k * k,
                            kg == kgs - 1,
                            kg == 0,
                            acc_i,
                        )
                    )
                    prev_sp, prev_nt = (sp, kg), (nt, kg)
                    step += 1
                acc_i += 1
        # a group waits for the last step still using either of its slots (known only now)
        groups = []
        for first, reqs, cmds, rows, zero, beats in pending:
            req = max((last_in_or_w for last_in_or_w in reqs), default=None)
            groups.append((first, req, cmds, rows, zero, beats))
        return t.run(steps_info, groups, out_beats, L, arr, r)

    # Segments (the channels of a depthwise layer), images and middle n-tiles repeat the same
    # steps: past the first few, each adds the same cycles to every term, so the recurrence
    # runs over a few of them and the rest are extrapolated.
    terms = _extrapolate(
        lambda nb: _extrapolate(
            lambda nt: _extrapolate(lambda ns: simulate(ns, nt, nb), segments, _SEGMENTS_SIMULATED),
            nt_n,
            _NTILES_SIMULATED,
        ),
        conv.batch,
        _IMAGES_SIMULATED,
    )
    ints = {name: round(max(0.0, v)) for name, v in terms.items()}
    out = ArrayLayerCycles(**ints, macs=macs, pes=config.pes)
    total_port = (fetch_beats + load_beats + store_beats) / rate + latency
    if out.total < total_port:  # the DRAM port is the bottleneck of the whole layer
        out = dataclasses.replace(out, stall=out.stall + math.ceil(total_port - out.total))
    counts = {
        "load_beats": load_beats,
        # exact: every n-tile stores every output pixel once (a segment's plane at its offset)
        "store_beats": sum(
            n * _run_beats(out_stride, ln, beat, seg_off + nt * c, pixels)
            for seg_off, n in out_offsets.items()
            for nt, ln in enumerate(out_len)
        ),
        "fetch_beats": fetch_beats,
        "commands": n_cmds,
        "steps": nsteps,
        "spatial_tiles": spatial_tiles,
        "spad_write_rows": round(tot["load_rows"]) + n_wloads * wr,
        "stored_bytes": round(tot["pixels"]) * conv.cout,
        "stored_rows": round(tot["pixels"]) * nt_n,
        "streamed": round(tot["streamed"]),
        "pixels_read": round(tot["pixels"]) * nt_n * taps,
        # ws: every MATMUL writes its rows, all but a step's first read them first (RMW);
        # os: the drain writes each pixel once (bias added then)
        "acc_write_rows": round(tot["acc_write_rows"]),
        # (os with K groups: the drains of groups after the first add onto the rows)
        "acc_rmw_rows": round(tot["pixels"]) * nt_n * ((kgs - 1) if os_flow else (taps - 1)),
        "matmuls": round(tot["matmuls"]),
        "cfg": total_cfg,
    }
    return out, counts


class _Recurrence:
    """When each unit starts and ends each step (module docstring), and the array's time by term.

    Times are cycles from start. Program order per step ``i``: the load groups whose slots step
    ``i - 1`` (or earlier) frees, then step ``i``'s CFG_BIAS and MATMULs, then its CFG_QUANT and
    STOREs. The decoder dispatches them in that order: a command waits until it is fetched and
    until the commands before it found room in their queues.
    """

    def __init__(self, config, plan, latency, rate, fetch_rate, preload, os_flow, full_w) -> None:
        self.cfg, self.plan, self.full_w = config, plan, full_w
        self.latency, self.rate, self.fetch_rate = latency, rate, fetch_rate
        self.preload, self.os_flow = preload, os_flow
        self.wrows = -(-config.cols // config.rows)
        self.cmd_beats = isa.CMD_BYTES / config.dma_beat_bytes
        self.fetch0 = latency + Fetch.max_burst(config.dma_beat_bytes) / rate
        self.depth = Fetch.buffer_depth(config.dma_beat_bytes)
        self.row_ahead = LoadUnit.row_queue_depth
        self.row_trip = latency + LoadUnit.request_overhead
        self.queue_wait = max(0.0, self.row_ahead / rate - latency)
        self.round_trip = latency + Fetch.max_burst(config.dma_beat_bytes) + Fetch.request_overhead
        self.hold = (0.0, 0.0)

    def run(self, steps, groups, out_beats, L, arr, r) -> dict[str, float]:
        """``steps``: (row tile, column tile, n-tile, CFG_BIAS commands, CFG_QUANT commands,
        (chunk, tap) pairs, stores, opens its accumulator tile, accumulator tile) each;
        ``groups``: (first step, step that frees the slots, commands, rows, zero rows, beats)."""
        cfg, plan = self.cfg, self.plan
        ql, qs, qe = cfg.load_queue_depth, cfg.store_queue_depth, cfg.exec_queue_depth
        gap_ld, gap_st = LoadUnit.command_gap, StoreUnit.command_gap
        retire, issue = ExecUnit.retire_latency, ExecUnit.issue_latency
        receive, st_pipe = LoadUnit.receive_latency, StoreUnit.pipeline_latency
        nacc = 2 if plan.double_buffer else 1
        rate, fetch_rate, cmd_beats, depth = self.rate, self.fetch_rate, self.cmd_beats, self.depth
        latency, row_trip, row_ahead = self.latency, self.row_trip, self.row_ahead
        queue_wait, fetch0, rt, full_w = self.queue_wait, self.fetch0, self.round_trip, self.full_w
        per_cmd = cmd_beats / fetch_rate  # fetch cycles per command
        terms = dict.fromkeys(TERMS, 0.0)
        n = len(steps)
        ex_ret = [0.0] * n
        st_end = [0.0] * n  # by accumulator tile
        group_done: dict[int, float] = {}
        gi, ng = 0, len(groups)
        cum = 1  # commands in program order so far (CFG_STORE first)
        ahead = 0.0  # fetch delay behind load beats queued in the DRAM
        hold_at, hold_t = 0.0, 0.0  # the decoder could not pass command hold_at before hold_t
        ld_free = 0.0  # the load unit has issued everything before
        disp = 0.0  # the decoder has dispatched every command before
        ex_end = 0.0
        st_free = st_begin = st_beats = 0.0
        compute = preload = fill_drain = 0.0

        def fetched(k: float) -> float:
            """Cycle by which the first ``k`` commands have been fetched: the fetch keeps at
            most its buffer's beats requested; while the decoder was held, it stopped with
            its buffer full, and the commands past it wait a DRAM round trip."""
            t = fetch0 + k * per_cmd + ahead
            past = (k - hold_at) * cmd_beats - depth
            if past > 0:
                t = max(t, hold_t + rt + past / fetch_rate)
            return t

        def fetched_by(t: float) -> float:
            """Commands fetched by cycle ``t`` (the inverse of `fetched`)."""
            k = (t - fetch0 - ahead) / per_cmd
            if t >= hold_t + rt:
                return min(k, hold_at + (depth + (t - hold_t - rt) * fetch_rate) / cmd_beats)
            return min(k, hold_at + depth / cmd_beats)

        kinds: dict[tuple, tuple] = {}
        for i, (ty, tx, nt, ncfg, ncfg_q, taps, stores, opens, acc_i) in enumerate(steps):
            key = (ty, tx, nt, ncfg, ncfg_q, taps, stores)
            kd = kinds.get(key)
            if kd is None:
                toh, tow = ty[0], tx[0]
                m = toh * tow
                if self.os_flow:
                    # each os MATMUL streams rows beats, each with a weight beat assembled
                    # from wrows scratchpad rows (one read a cycle)
                    blocks = _os_blocks(m, tow, toh, r)
                    mms, comp = taps * blocks, taps * blocks * r
                    pre = comp * (self.wrows - 1)
                    fd = blocks * (arr.os_fill_latency + arr.os_drain_latency)
                    tail, lead, first = retire, issue, r * self.wrows
                else:
                    per = max(m, self.preload, -(-(L + self.preload + m) // 2))
                    mms, comp, pre, fd = taps, taps * m, taps * (per - m), 0
                    tail, lead, first = L + retire - (per - m), issue + self.preload, m
                st_cmds = (1 if tow == full_w else toh) if stores else 0
                sb = m * out_beats[nt] if stores else 0.0
                work = max(m + st_cmds * gap_st, sb / rate)
                kd = (mms, comp, pre, fd, tail, lead, first + fd / mms, st_cmds + ncfg_q, sb, work)
                kinds[key] = kd
            mms, comp, pre, fd, tail, lead, last_lead, st_i, sb, work = kd
            step_cmds = ncfg + mms + st_i
            # the load groups emitted before this step's MATMULs
            while gi < ng and (groups[gi][1] is None or groups[gi][1] < i):
                first_step, req, cmds, rows, zero, beats = groups[gi]
                tok = ex_ret[req] + 1 if req is not None else 0.0
                start = max(ld_free, tok, fetched(cum + 1), disp)
                issue_cycles = rows + cmds * gap_ld
                ld_free = start + issue_cycles
                # the DRAM port also moves the beats of a store running at the same time ...
                shared = 0.0
                if st_free > start and st_beats:
                    shared = st_beats * min(1.0, (st_free - start) / max(1.0, st_free - st_begin))
                # ... and the fetch of the commands that follow the group, as much of it as
                # the fetch moves meanwhile
                alone = (beats + shared) / rate
                shared += min(cmd_beats * step_cmds, alone * fetch_rate)
                # the unit keeps at most row_queue_depth rows requested: under a long DRAM
                # latency that window, not the port, paces the data rows
                data = max((beats + shared) / rate, (rows - zero) * row_trip / row_ahead)
                group_done[first_step] = max(ld_free, start + latency + data + zero) + receive
                if cmds > ql:  # the decoder waits until the unit has taken all but ql
                    # (the unit takes a command once its previous one's rows are requested,
                    # which the returning beats pace once its row FIFO is full)
                    pace = max(issue_cycles, beats / rate + zero)
                    disp = max(disp, start + pace * (cmds - ql) / cmds)
                    if start > hold_t and fetched_by(start) >= cum + ql:
                        hold_at, hold_t = cum + ql, start
                # the fetch bursts of the commands around the group wait behind its beats
                # (at most the load unit's row window) in the in-order DRAM queue, which
                # overlaps each burst's own latency
                trips = (cmds + step_cmds) * cmd_beats / depth + 1
                ahead += min(beats / rate, trips * queue_wait)
                cum += cmds
                gi += 1
            # the step's MATMULs
            ready = max(disp, fetched(cum + ncfg + 1)) + lead
            why = "stall"
            done = group_done.get(i)
            if done is not None and done + lead > ready:
                ready, why = done + lead, "dma_load"
            if opens and acc_i >= nacc and st_end[acc_i - nacc] + 1 + lead > ready:
                ready, why = st_end[acc_i - nacc] + 1 + lead, "dma_store"
            if ncfg and i > 0:  # CFG_BIAS waits for the array to drain
                t = ex_ret[i - 1] + 1 + ncfg + lead
                if t > ready:
                    ready, why = t, "overhead"
            h = cum + qe + st_i
            if ready - lead > hold_t and fetched_by(ready - lead) >= h:
                # the step's first command waits (a token, its own CFG_BIAS): the exec queue
                # fills up behind it and holds the decoder (store commands go past it), and
                # the fetch stops once its buffer is full
                hold_at, hold_t = h, ready - lead
            cum += ncfg + mms
            start = max(ex_end, ready)
            if i == 0:
                terms["prologue"] += start
            else:
                terms[why] += start - ex_end
            ex_end = start + comp + pre + fd
            # the commands reach the array no faster than the fetch brings them
            fed = fetched(cum) + lead + last_lead
            if fed > ex_end:
                terms["stall"] += fed - ex_end
                ex_end = fed
            ex_ret[i] = ex_end + tail
            compute += comp
            preload += pre
            fill_drain += fd
            if not stores:  # a K group before the tile's last: its sums stay in the tile
                continue
            # the step's stores (CFG_QUANT on an n-tile or segment change, then the STOREs)
            s_start = max(st_free, ex_ret[i] + 1)
            st_begin, st_beats = s_start, sb
            st_free = s_start + ncfg_q + st_pipe + work
            st_end[acc_i] = st_free
            if st_i > qs:
                st_cmds = st_i - ncfg_q
                disp = max(disp, s_start + (st_i - qs) * (work / st_cmds if ncfg_q == 0 else 1))
                if s_start > hold_t and fetched_by(s_start) >= cum + qs:
                    hold_at, hold_t = cum + qs, s_start
            cum += st_i
        terms["compute"], terms["preload"], terms["fill_drain"] = compute, preload, fill_drain
        total = max(st_free, ex_ret[-1]) + 1  # the last write acknowledged
        terms["epilogue"] = total - ex_end
        return terms


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
    return _array_run(config, layer, plan, bandwidth, latency)[0]


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
    return _array_run(config, layer, plan, bandwidth, latency)[0]


def _array_run(
    config: HWConfig,
    layer: Conv2D | Dense | DepthwiseConv2D,
    plan: TilePlan,
    bandwidth: float,
    latency: int,
    bound_only: bool = False,
):
    """`_array_model` of the program `kernels.lower` builds for ``layer``: its `array_form`'s
    segments over the layer's whole NHWC tensors."""
    form = array_form(layer, config)
    if isinstance(layer, DepthwiseConv2D):
        in_stride = out_stride = layer.c
    else:
        in_stride, out_stride = layer.as_conv().cin, layer.as_conv().cout
    return _array_model(config, form.conv, plan, form.segments, in_stride, out_stride, bandwidth,
                        latency, layer.macs, bound_only, in_step=form.in_step,
                        out_step=form.out_step)  # fmt: skip


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
        ``configs/energy/default.toml`` when omitted.

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
        if isinstance(layer, Conv2D | Dense | DepthwiseConv2D):
            cyc, n = _array_run(config, layer, plan, bandwidth, latency)
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


def array_cycles_floor(
    config: HWConfig,
    layer: Conv2D | Dense | DepthwiseConv2D,
    plan: TilePlan,
    *,
    bandwidth: float = 16,
    latency: int = 20,
) -> float:
    """A lower bound of ``layer_cost(config, layer, plan).cycles`` for an array plan, from the
    counts alone: the larger of the rows the array streams (one a cycle at most) and every beat
    through the DRAM port plus one latency (the floor the model holds its total to). A few
    times cheaper than the model, so the mapper can skip plans that cannot win."""
    _bandwidth(bandwidth, latency)
    _check_array(layer, plan, (Conv2D, Dense, DepthwiseConv2D))
    port, streamed = _array_run(config, layer, plan, bandwidth, latency, bound_only=True)
    return max(port, streamed)


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
    terms = {
        k: round(max(0.0, x)) for k, x in _vector_model(config, geo, bandwidth, latency).items()
    }
    terms["compute"] = v.busy  # exact (the sum of the commands' cycles)
    cycles = sum(terms.values())
    loaded, stored = geo.dma_bytes()
    taps = out_px = params = 0
    for (oh, ow), cnt in geo.command_shapes().items():
        taps += cnt * oh * ow * geo.kh * geo.kw * geo.operands
        out_px += cnt * oh * ow
        params += cnt * geo.param_rows
    spad_read = (taps + params) * r + out_px * r  # taps and parameters; the stores read outputs
    spad_write = loaded + out_px * r
    dram_read = -(-loaded // beat) * beat
    e = _energy(config, table, cycles, v.macs, dram_read + stored, spad_read, spad_write, 0, 0)
    return LayerCost(
        engine="vector", cycles=cycles, **terms, dram_read=dram_read, dram_write=stored,
        spad_read=spad_read, spad_write=spad_write, acc_read=0, acc_write=0, macs=v.macs,
        peak=v.lanes, **e,
    )  # fmt: skip


# -------------------------------------------------------------------- vector unit

# Channel groups the vector recurrence visits before extrapolating (every full group repeats
# the same steps; the last one may be partial).
_GROUPS_SIMULATED = 4


def _vector_steps(geo: VectorGeometry, ngroups: int) -> list[tuple]:
    """Per step of the first ``ngroups - 1`` channel groups and the last one, in program order:
    (load commands, load rows, load beats, vector cycles, store commands, store rows, store
    beats, first step of its group). Beats are counted per row with its misalignment: the
    tensors lie at `ALIGN`-ed addresses with a pixel stride of ``c`` bytes (`lower_vector`)."""
    layer, cfg = geo.layer, geo.config
    beat, c = cfg.dma_beat_bytes, layer.c
    timing = VectorUnit.timing(cfg)
    full_in = [t.in_n == layer.w for t in geo.col_tiles]
    full_out = [t.out_n == layer.out_w for t in geo.col_tiles]
    groups = [*range(min(ngroups, geo.groups) - 1), geo.groups - 1]
    steps = []
    for g in groups:
        ln, off = geo.group_len(g), g * geo.lanes
        for b in range(layer.batch):
            for ty, rt in enumerate(geo.row_tiles):
                for tx, ct in enumerate(geo.col_tiles):
                    first = ty == 0 and tx == 0 and b == 0
                    cmds = rows = 0
                    beats = 0.0
                    if first:  # the group's parameter block (aligned rows of `rows` bytes)
                        cmds, rows = 1, geo.param_rows
                        beats = _run_beats(cfg.rows, cfg.rows, beat, 0, geo.param_rows)
                    if full_in[tx]:
                        n = rt.in_n * layer.w
                        p0 = (b * layer.h + rt.in0) * layer.w
                        in_cmds = -(-n // _MAX_ROWS)
                        in_beats = _run_beats(c, ln, beat, p0 * c + off, n)
                    else:
                        n = rt.in_n * ct.in_n
                        in_cmds = rt.in_n * -(-ct.in_n // _MAX_ROWS)
                        in_beats = sum(
                            _run_beats(c, ln, beat,
                                       ((b * layer.h + rt.in0 + y) * layer.w + ct.in0) * c + off,
                                       ct.in_n)
                            for y in range(rt.in_n)
                        )  # fmt: skip
                    cmds += geo.operands * in_cmds
                    rows += geo.operands * n
                    beats += geo.operands * in_beats
                    vec = timing.command_cycles(geo.op, geo.mode, geo.kh, geo.kw, rt.out_n,
                                                ct.out_n)  # fmt: skip
                    m = rt.out_n * ct.out_n
                    if full_out[tx]:
                        p0 = (b * layer.out_h + rt.out0) * layer.out_w
                        st_cmds = -(-m // _MAX_ROWS)
                        st_beats = _run_beats(c, ln, beat, p0 * c + off, m)
                    else:
                        st_cmds = rt.out_n * -(-ct.out_n // _MAX_ROWS)
                        st_beats = sum(
                            _run_beats(c, ln, beat, ((b * layer.out_h + rt.out0 + y)
                                                     * layer.out_w + ct.out0) * c + off, ct.out_n)
                            for y in range(rt.out_n)
                        )  # fmt: skip
                    steps.append((cmds, rows, beats, vec, st_cmds, m, st_beats, first))
    return steps


def _vector_model(config: HWConfig, geo: VectorGeometry, bandwidth: float, latency: int) -> dict:
    """Cycles of a vector layer by term: a recurrence over its steps (`kernels.lower_vector`
    program order: the load group of step ``i + nbuf - 1``, then step ``i``'s vector command
    and its STOREs), following the mechanisms of the RTL:

    * the load unit issues one row a cycle with `LoadUnit.command_gap` between commands; its
      beats return ``latency`` cycles later, with at most `LoadUnit.row_queue_depth` rows in
      flight;
    * the store unit takes a row a cycle with `StoreUnit.command_gap` between commands;
    * one DRAM port (``bandwidth``) moves the loads' beats, the program's commands and the
      stores' beats: a transfer ends no earlier than the port has moved every beat asked for
      before it and its own (a row costs ``ceil((addr % beat + len) / beat)`` beats);
    * tokens: a vector command waits for its loads (l2v), for the previous command and for the
      stores that free its output slot (s2v); a load group waits for the vector command that
      frees its slots (v2l); the stores wait for their vector command (v2s);
    * the decoder dispatches in program order into queues of ``*_queue_depth`` commands: a load
      group or a store run longer than its queue holds every command behind it until the unit
      has taken all but a queue's worth.
    """
    beat = config.dma_beat_bytes
    rate = min(bandwidth, beat) / beat
    cmd_beats = isa.CMD_BYTES / beat
    ql, qs = config.load_queue_depth, config.store_queue_depth
    gap_ld, gap_st = LoadUnit.command_gap, StoreUnit.command_gap
    receive, st_pipe = LoadUnit.receive_latency, StoreUnit.pipeline_latency
    row_trip, row_ahead = latency + LoadUnit.request_overhead, LoadUnit.row_queue_depth
    fetch0 = latency + Fetch.max_burst(beat) / rate
    nbuf = geo.nbuf
    per_group = geo.steps_per_group

    def simulate(ngroups: int) -> dict[str, float]:
        steps = _vector_steps(geo, ngroups)
        n = len(steps)
        v_end = [0.0] * n
        s_end = [0.0] * n
        l_done = [0.0] * n
        terms = dict.fromkeys(TERMS, 0.0)
        ld_free = st_free = disp = 0.0
        port = [0.0]  # the DRAM port has moved every beat asked for before
        busiest = [-1]  # the last load group, if the port paces it
        emitted = 0

        def load(j: int) -> None:
            nonlocal ld_free, disp
            cmds, rows, beats, _v, _sc, _sr, _sb, first = steps[j]
            tok = 0.0
            if j >= nbuf:
                tok = v_end[j - nbuf] + 1
            if first and j >= nbuf * per_group:  # the parameter slot of group g - nbuf
                tok = max(tok, v_end[j - (nbuf - 1) * per_group - 1] + 1)
            start = max(ld_free, tok, disp, fetch0 if j == 0 else 0.0)
            issue = rows + cmds * gap_ld
            own = (beats + cmds * cmd_beats) / rate
            data = max(own, rows * row_trip / row_ahead)
            port_end = port[0] + own
            end = max(start + issue, start + latency + data, port_end)
            # a row is requested once the row row_queue_depth before it is written: the last
            # requests wait for the last window of rows to arrive
            window = min(rows, row_ahead) * (end - start) / rows
            ld_free = max(start + issue, end - window)
            l_done[j] = end + receive
            port[0] = end
            # the group moves its beats as fast as the port allows: a store running meanwhile
            # takes turns with it (round-robin arbiter) and delays its end
            busiest[0] = j if end in (port_end, start + latency + own) else -1
            if cmds > ql:
                # the decoder passes the group's last command once the unit has taken the one
                # ql before it, i.e. requested every row of the commands before that one; a row
                # is requested one a cycle, and no sooner than row_queue_depth rows before it
                # are written (the rows arrive evenly from start + latency to the end)
                k = (cmds - 1 - ql) * rows / cmds
                t = start + k * issue / rows
                if k > row_ahead:
                    t = max(t, start + latency + (k - row_ahead) * (end - start - latency) / rows)
                disp = max(disp, t)

        prev_v = 0.0
        for i in range(n):
            while emitted < n and emitted <= i + nbuf - 1:
                load(emitted)
                emitted += 1
            _c, _r, _b, vec, st_cmds, st_rows, sb, _f = steps[i]
            ready = max(disp, prev_v)
            why = "stall"
            if l_done[i] > ready:
                ready, why = l_done[i], "dma_load"
            if i >= nbuf and s_end[i - nbuf] + 1 > ready:
                ready, why = s_end[i - nbuf] + 1, "dma_store"
            if i == 0:
                terms["prologue"] += ready
            else:
                terms[why] += ready - prev_v
            v_end[i] = ready + vec
            terms["compute"] += vec
            prev_v = v_end[i]
            # the stores
            s_start = max(st_free, v_end[i] + 1, disp)
            own = sb / rate
            j = busiest[0]
            if j > i and l_done[j] - receive > s_start:
                # the port alternates between the store and a load group still moving its beats:
                # both progress at half rate while both have beats left
                rest = l_done[j] - receive - s_start
                share = min(own, rest)
                l_done[j] += share
                data_end = s_start + own + share
                port[0] = max(port[0], s_start + rest + own)
            else:
                data_end = max(port[0], s_start) + own
                port[0] = data_end
            st_free = max(s_start + st_pipe + st_rows + st_cmds * gap_st, data_end)
            s_end[i] = st_free
            if st_cmds > qs:  # the unit takes a STORE once it has read the previous one's rows
                disp = max(disp, s_start + (st_free - s_start) * (st_cmds - qs) / st_cmds)
        total = max(st_free, prev_v) + 1
        terms["epilogue"] = total - prev_v
        return terms

    return _extrapolate(simulate, geo.groups, _GROUPS_SIMULATED)
