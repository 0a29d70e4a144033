"""The vector unit: depthwise convolution, residual add and pooling along the channel axis.

``lanes`` lanes work on one *channel group* (byte ``l`` of every scratchpad row is lane ``l``).
Every lane does one multiply-accumulate per cycle; an output pixel takes one cycle per window tap
(``kh*kw``; two for ADD). Taps run column by column and the window slides along ``x``: the
columns an output shares with its left neighbour come from the lane's window registers, so only
the ``stride`` new columns are read from the scratchpad (``docs/vector.md``).

Timing of one command (accepted at cycle ``A``; ``docs/vector.md``)::

    A+1 .. A+P            read the P parameter rows (param_rows)
    A+P+1 .. A+P+N*T      issue one tap a cycle (N = out_h*out_w outputs, T taps each)
    +1                    multiply-accumulate
    +2                    requantize (registered)
    +3                    write the output row        -> busy for P + N*T + latency cycles

The unit takes its next command the cycle after the last write.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .config import HWConfig
from .dma import REQUANT_STAGES, TokenPort, _requant_lane
from .util import pick

__all__ = ["VectorUnit"]


class VectorTiming:
    """The vector unit's timing properties (read by the cost model)."""

    #: cycles from the last tap's scratchpad read to its output row written: the read, the MAC,
    #: the requantization's registers (``rtl.dma.REQUANT_STAGES``), the output row
    latency = 3 + REQUANT_STAGES

    def __init__(self, config: HWConfig):
        self.config = config

    @property
    def lanes(self) -> int:
        return self.config.vector_lanes

    @property
    def peak_macs_per_cycle(self) -> int:
        """One MAC per lane per cycle."""
        return self.config.vector_lanes

    @staticmethod
    def param_rows(op: isa.Op, mode: int, kh: int, kw: int) -> int:
        """Parameter-block rows a command reads before its first tap."""
        if isa.Op(op) == isa.Op.DWCONV:
            return isa.VEC_PARAM_ROWS + kh * kw
        if mode == isa.EwiseMode.ADD:
            return isa.VEC_PARAM_ROWS + isa.VEC_ADD_ROWS
        return isa.VEC_PARAM_ROWS

    @staticmethod
    def taps(op: isa.Op, mode: int, kh: int, kw: int) -> int:
        """Cycles per output pixel."""
        if isa.Op(op) == isa.Op.EWISE and mode == isa.EwiseMode.ADD:
            return 2
        return kh * kw

    def command_cycles(self, op: isa.Op, mode: int, kh: int, kw: int, out_h: int,
                       out_w: int) -> int:  # fmt: skip
        """Busy cycles of one command (the ``vec_busy`` counter's share)."""
        return (
            self.param_rows(op, mode, kh, kw)
            + out_h * out_w * self.taps(op, mode, kh, kw)
            + self.latency
        )


class VectorUnit(wiring.Component):
    """Runs DWCONV and EWISE commands (``docs/isa.md``) on ``vector_lanes`` lanes.

    Members
    -------
    i_cmd : In(stream)
        Vector-queue commands (already checked by the decoder).
    o_rd_addr, o_rd_en, i_rd_data : scratchpad read port (data one cycle after ``en``)
    o_wr_addr, o_wr_en, o_wr_data : scratchpad write port (the vector unit's own)
    tok_prev, tok_next : token ports (prev: l2v pop / v2l push; next: s2v pop / v2s push)
    o_busy : a command is running (``command_cycles`` per command)
    o_tap : a tap was issued this cycle (``lanes`` MACs)
    o_wait_token : the queue head waits for a dependency token
    o_retired : a command finished this cycle
    """

    def __init__(self, config: HWConfig, spad_aw: int):
        self._cfg = config
        R = config.rows
        super().__init__(
            {
                "i_cmd": In(stream.Signature(isa.CMD_BITS)),
                "o_rd_addr": Out(spad_aw),
                "o_rd_en": Out(1),
                "i_rd_data": In(8 * R),
                "o_wr_addr": Out(spad_aw),
                "o_wr_en": Out(1),
                "o_wr_data": Out(8 * R),
                "tok_prev": Out(TokenPort()),
                "tok_next": Out(TokenPort()),
                "o_busy": Out(1),
                "o_tap": Out(1),
                "o_wait_token": Out(1),
                "o_retired": Out(1),
            }
        )

    @staticmethod
    def timing(config: HWConfig) -> VectorTiming:
        return VectorTiming(config)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        L, KM = cfg.vector_lanes, cfg.vector_max_kernel
        NW = KM * KM

        # ------------------------------------------------------------ command front end
        cmd = self.i_cmd.payload
        op = cmd[0:4]
        pop_prev, pop_next = cmd[4], cmd[5]

        def fld(word, name):
            return isa.hw_field(word, isa.Op.EWISE, name)

        IDLE, PARAM, TAPS, DRAIN = range(4)
        state = Signal(2, name="vu_state")
        idle = state == IDLE
        ok = (~pop_prev | self.tok_prev.avail) & (~pop_next | self.tok_next.avail)
        take = Signal(name="vu_take")
        m.d.comb += [
            take.eq(idle & self.i_cmd.valid & ok),
            self.i_cmd.ready.eq(take),
            self.o_wait_token.eq(idle & self.i_cmd.valid & ~ok),
            self.tok_prev.take.eq(take & pop_prev),
            self.tok_next.take.eq(take & pop_next),
        ]
        # the running command
        is_dw = Signal(name="vu_dw")
        mode = Signal(2, name="vu_mode")
        push_prev = Signal(name="vu_push_prev")
        push_next = Signal(name="vu_push_next")
        stride = Signal(2, name="vu_stride")
        pad_t = Signal(3, name="vu_pad_t")
        pad_l = Signal(3, name="vu_pad_l")
        kh = Signal(5, name="vu_kh")  # ADD runs as a 2x1 window: tap ky=0 reads a, ky=1 reads b
        kw = Signal(4, name="vu_kw")
        param_addr = Signal(20, name="vu_param_addr")
        in_addr = Signal(20, name="vu_in_addr")
        out_addr = Signal(20, name="vu_out_addr")
        in_w, in_h = Signal(10, name="vu_in_w"), Signal(10, name="vu_in_h")
        out_w, out_h = Signal(10, name="vu_out_w"), Signal(10, name="vu_out_h")
        plane = Signal(20, name="vu_plane")  # ADD: rows of one input tile
        nparams = Signal(8, name="vu_nparams")
        is_add = ~is_dw & (mode == isa.EwiseMode.ADD)
        is_max = ~is_dw & (mode == isa.EwiseMode.MAXPOOL)
        # window registers hold the previous output's taps when the window fits them
        reuse_ok = Signal(name="vu_reuse_ok")

        c_dw = op == isa.Op.DWCONV
        c_add = ~c_dw & (fld(cmd, "mode") == isa.EwiseMode.ADD)
        c_kh, c_kw = fld(cmd, "kh"), fld(cmd, "kw")
        with m.If(take):
            m.d.sync += [
                is_dw.eq(c_dw),
                mode.eq(Mux(c_dw, 0, fld(cmd, "mode"))),
                push_prev.eq(cmd[6]),
                push_next.eq(cmd[7]),
                stride.eq(fld(cmd, "stride")),
                pad_t.eq(fld(cmd, "pad_t")),
                pad_l.eq(fld(cmd, "pad_l")),
                kh.eq(Mux(c_add, 2, c_kh)),
                kw.eq(c_kw),
                param_addr.eq(fld(cmd, "param_addr")),
                in_addr.eq(fld(cmd, "in_addr")),
                out_addr.eq(fld(cmd, "out_addr")),
                in_w.eq(fld(cmd, "in_w")),
                in_h.eq(fld(cmd, "in_h")),
                out_w.eq(fld(cmd, "out_w")),
                out_h.eq(fld(cmd, "out_h")),
                plane.eq(fld(cmd, "in_w") * fld(cmd, "in_h")),
                nparams.eq(
                    isa.VEC_PARAM_ROWS + Mux(c_dw, c_kh * c_kw, Mux(c_add, isa.VEC_ADD_ROWS, 0))
                ),
                reuse_ok.eq(~c_add & (c_kh <= KM) & (c_kw <= KM)),
                state.eq(PARAM),
            ]

        # ------------------------------------------------------------ stage 0: issue
        p_idx = Signal(8, name="vu_p_idx")
        ky = Signal(5, name="vu_ky")
        kx = Signal(4, name="vu_kx")
        ox = Signal(10, name="vu_ox")
        oy = Signal(10, name="vu_oy")
        drain = Signal(range(VectorTiming.latency), name="vu_drain")
        with m.If(take):
            m.d.sync += [p_idx.eq(0), ky.eq(0), kx.eq(0), ox.eq(0), oy.eq(0)]

        in_param = state == PARAM
        in_taps = state == TAPS
        last_ky = ky == kh - 1
        last_kx = kx == kw - 1
        last_ox = ox == out_w - 1
        last_oy = oy == out_h - 1
        first_tap = (kx == 0) & (ky == 0)
        last_tap = last_kx & last_ky
        with m.If(in_param):
            m.d.sync += p_idx.eq(p_idx + 1)
            with m.If(p_idx == nparams - 1):
                m.d.sync += state.eq(TAPS)
        with m.If(in_taps):
            m.d.sync += ky.eq(Mux(last_ky, 0, ky + 1))
            with m.If(last_ky):
                m.d.sync += kx.eq(Mux(last_kx, 0, kx + 1))
                with m.If(last_kx):
                    m.d.sync += ox.eq(Mux(last_ox, 0, ox + 1))
                    with m.If(last_ox):
                        m.d.sync += oy.eq(oy + 1)
                        with m.If(last_oy):
                            m.d.sync += [state.eq(DRAIN), drain.eq(0)]
        with m.If(state == DRAIN):
            m.d.sync += drain.eq(drain + 1)
            with m.If(drain == VectorTiming.latency - 1):
                m.d.sync += state.eq(IDLE)

        # input pixel of this tap; ADD: row ky*plane + oy*in_w + ox
        iy = Signal(signed(13), name="vu_iy")
        ix = Signal(signed(13), name="vu_ix")
        m.d.comb += [
            iy.eq(Mux(is_add, oy, oy * stride + ky - pad_t)),
            ix.eq(ox * stride + kx - pad_l),
        ]
        pad = Signal(name="vu_pad")
        m.d.comb += pad.eq((iy < 0) | (iy >= in_h) | (ix < 0) | (ix >= in_w))
        reuse = Signal(name="vu_reuse")
        m.d.comb += reuse.eq(reuse_ok & (ox != 0) & (kx + stride < kw))
        tap_addr = Signal(unsigned(32), name="vu_tap_addr")
        m.d.comb += tap_addr.eq(
            in_addr
            + Mux(is_add, ky * plane, 0)
            + iy.as_unsigned()[:12] * in_w
            + ix.as_unsigned()[:12]
        )
        m.d.comb += [
            self.o_rd_addr.eq(Mux(in_param, param_addr + p_idx, tap_addr)),
            self.o_rd_en.eq(in_param | (in_taps & ~pad & ~reuse)),
            self.o_tap.eq(in_taps),
            self.o_busy.eq(~idle),
        ]

        # ------------------------------------------------------------ stage 1: params, MAC
        p1_valid = Signal(name="vu_p1_valid")
        p1_idx = Signal(8, name="vu_p1_idx")
        m.d.sync += p1_valid.eq(in_param)
        with m.If(in_param):
            m.d.sync += p1_idx.eq(p_idx)
        t1_valid = Signal(name="vu_t1_valid")
        t1_src = Signal(2, name="vu_t1_src")  # 0 spad, 1 window, 2 padding
        t1_first = Signal(name="vu_t1_first")
        t1_last = Signal(name="vu_t1_last")
        t1_b = Signal(name="vu_t1_b")  # ADD: the b operand
        t1_win_rd = Signal(range(NW + KM + 4), name="vu_t1_win_rd")
        t1_win_wr = Signal(range(NW + KM + 4), name="vu_t1_win_wr")
        t1_win_we = Signal(name="vu_t1_win_we")
        t1_widx = Signal(range(max(NW, 2)), name="vu_t1_widx")
        t1_out = Signal(20, name="vu_t1_out")
        m.d.sync += t1_valid.eq(in_taps)
        # the rest is read only with t1_valid: held while idle, so simulators skip it
        with m.If(in_taps):
            m.d.sync += [
                t1_src.eq(Mux(reuse, 1, Mux(pad, 2, 0))),
                t1_first.eq(first_tap),
                t1_last.eq(last_tap),
                t1_b.eq(ky[0]),
                t1_win_rd.eq(ky * KM + kx + stride),
                t1_win_wr.eq(ky * KM + kx),
                t1_win_we.eq(reuse_ok),
                t1_widx.eq((ky * kw + kx)[: len(t1_widx)]),
                t1_out.eq(out_addr + oy * out_w + ox),
            ]
        row = self.i_rd_data

        def plane_byte(r, lane):
            return r[8 * lane : 8 * lane + 8]

        # output pixels through the requantization: t2 (the accumulators are final), one valid
        # bit per requantization register, then the output row (t3)
        t2_valid = Signal(name="vu_t2_valid")
        rq_valid = [t2_valid] + [Signal(name=f"vu_rq_valid_{k}") for k in range(REQUANT_STAGES)]
        ys = []
        for lane in range(L):
            byte = plane_byte(row, lane)
            bias = Signal(signed(32), name=f"vu_bias_{lane}")
            mult = Signal(signed(32), name=f"vu_mult_{lane}")
            shift = Signal(6, name=f"vu_shift_{lane}")
            zp = Signal(signed(8), name=f"vu_zp_{lane}")
            lo = Signal(signed(8), name=f"vu_lo_{lane}")
            hi = Signal(signed(8), name=f"vu_hi_{lane}")
            za = Signal(signed(8), name=f"vu_za_{lane}")
            zb = Signal(signed(8), name=f"vu_zb_{lane}")
            ma = Signal(signed(16), name=f"vu_ma_{lane}")
            mb = Signal(signed(16), name=f"vu_mb_{lane}")
            wts = [Signal(signed(8), name=f"vu_w{t}_{lane}") for t in range(NW)]
            win = [Signal(signed(8), name=f"vu_win{t}_{lane}") for t in range(NW)]
            # parameter rows: plain Ifs (no Switch: Icarus cannot read yosys' parallel muxes)
            planes = {0: bias, 4: mult}
            for base_row, reg in planes.items():
                for j in range(4):
                    with m.If(p1_valid & (p1_idx == base_row + j)):
                        m.d.sync += reg[8 * j : 8 * j + 8].eq(byte)
            singles = {8: shift, 9: zp, 10: lo, 11: hi}
            for idx, reg in singles.items():
                with m.If(p1_valid & (p1_idx == idx)):
                    m.d.sync += reg.eq(byte[: len(reg)])
            add_rows = {12: za, 13: zb}
            for idx, reg in add_rows.items():
                with m.If(p1_valid & ~is_dw & (p1_idx == idx)):
                    m.d.sync += reg.eq(byte)
            for j, reg in enumerate((ma, mb)):
                for b in range(2):
                    with m.If(p1_valid & ~is_dw & (p1_idx == 14 + 2 * j + b)):
                        m.d.sync += reg[8 * b : 8 * b + 8].eq(byte)
            for t in range(NW):
                with m.If(p1_valid & is_dw & (p1_idx == isa.VEC_PARAM_ROWS + t)):
                    m.d.sync += wts[t].eq(byte)
            # the tap's input value
            x = Signal(signed(8), name=f"vu_x_{lane}")
            m.d.comb += x.eq(
                Mux(
                    t1_src == 0,
                    byte.as_signed(),
                    Mux(t1_src == 1, pick(win, t1_win_rd), Mux(is_max, -128, 0)),
                )
            )
            for t in range(NW):
                with m.If(t1_valid & t1_win_we & (t1_win_wr == t)):
                    m.d.sync += win[t].eq(x)
            z = Signal(signed(8), name=f"vu_z_{lane}")
            w = Signal(signed(16), name=f"vu_wt_{lane}")
            m.d.comb += [
                z.eq(Mux(is_add, Mux(t1_b, zb, za), 0)),
                w.eq(Mux(is_dw, pick(wts, t1_widx), Mux(is_add, Mux(t1_b, mb, ma), 1))),
            ]
            prod = Signal(signed(25), name=f"vu_prod_{lane}")
            m.d.comb += prod.eq((x - z) * w)
            acc = Signal(signed(32), name=f"vu_acc_{lane}")
            base = Signal(signed(32), name=f"vu_base_{lane}")
            m.d.comb += base.eq(Mux(t1_first, bias, acc))
            with m.If(t1_valid):
                with m.If(is_max):
                    m.d.sync += acc.eq(Mux(x > base, x, base))
                with m.Else():
                    m.d.sync += acc.eq(base + prod)
            # ---------------------------------------------------- stage 2: requantize
            ys.append(
                _requant_lane(m, acc, mult, shift, zp, lo, hi, f"v{lane}", stages=rq_valid[:-1])
            )

        m.d.sync += t2_valid.eq(t1_valid & t1_last)
        out = Signal(20, name="vu_t2_out")
        with m.If(t1_valid & t1_last):
            m.d.sync += out.eq(t1_out)
        for k in range(REQUANT_STAGES):
            m.d.sync += rq_valid[k + 1].eq(rq_valid[k])
            nxt = Signal(20, name=f"vu_rq_out_{k}")
            with m.If(rq_valid[k]):
                m.d.sync += nxt.eq(out)
            out = nxt
        # ------------------------------------------------------------ stage 3: write
        t3_valid = Signal(name="vu_t3_valid")
        t3_out = Signal(20, name="vu_t3_out")
        t3_data = Signal(8 * L, name="vu_t3_data")
        m.d.sync += t3_valid.eq(rq_valid[-1])
        with m.If(rq_valid[-1]):
            m.d.sync += [t3_out.eq(out), t3_data.eq(Cat(*ys))]
        done = Signal(name="vu_done")
        m.d.comb += [
            self.o_wr_addr.eq(t3_out),
            self.o_wr_en.eq(t3_valid),
            self.o_wr_data.eq(t3_data),
            done.eq((state == DRAIN) & (drain == VectorTiming.latency - 1)),
            self.o_retired.eq(done),
            self.tok_prev.give.eq(done & push_prev),
            self.tok_next.give.eq(done & push_next),
        ]
        return m
