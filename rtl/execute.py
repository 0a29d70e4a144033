"""The execute unit: MATMUL and CFG_BIAS on the systolic array (weight- or output-stationary).

Three independent engines share one command stream, so consecutive MATMULs overlap in the array
exactly as back-to-back tiles do (``mapping.cost.array_tiles_cycles``):

* the **weight feeder** reads each command's weight tile (``rows`` beats, each from ``wrows``
  scratchpad rows): ws: last row first, into the array's idle weight buffer; os: ``B[c, :]`` in
  reduction order, transferred together with the activation beats;
* the **activation feeder** walks the command's 2-D scratchpad pattern, one row per cycle; for os
  the pixel rows fill one bank of a double-buffered ``rows x rows`` byte transposer while the
  other bank emits ``rows`` column beats (``A[:, c]``), ``last`` on the final beat of a
  ``drain=1`` command;
* the **writeback** accumulates each output row into its accumulator row (bias + product, or
  accumulator + product) and retires the command with its last row (os: the ``rows`` drained rows,
  bottom pixel first, of which pixels ``< nx*ny`` are written; an os command without ``drain``
  retires once its block has entered the array).

The array's mode (``i_os``) follows the commands: both feeders stop at a command of the other
dataflow, and the mode flips once the feeders, the transposer and the array are idle.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .config import HWConfig
from .dma import TokenPort
from .systolic import SystolicArray
from .util import pick

__all__ = ["ExecUnit"]

SKID = 4  # read-data FIFO depth of each feeder (covers the one-cycle memory latency)


class ExecUnit(wiring.Component):
    """Runs MATMUL and CFG_BIAS commands.

    Members
    -------
    i_cmd : In(stream)
        Exec-queue commands (already checked by the decoder).
    spad_act, spad_w : scratchpad read ports (address, enable out; data in one cycle later)
    acc_rd, acc_wr : accumulator read (transparent to ``acc_wr``) and write ports
    tok_prev, tok_next : token ports (prev: l2e pop / e2l push; next: s2e pop / e2s push)
    o_streaming : an activation row entered the array this cycle (MAC-busy cycle)
    o_busy, o_wait_token, o_retired : status for the performance counters
    """

    #: ws: idle cycles of the weight feeder between two tiles (it starts a tile the cycle after
    #: the previous one's last read).
    ws_weight_gap = 1
    #: Cycles from a MATMUL's last output row leaving the array to its retirement (the
    #: writeback's read-modify-write stage, then the token push).
    retire_latency = 2
    #: Cycles from a MATMUL leaving the exec queue to its first weight (ws) or pixel (os) read:
    #: the command FIFOs' registered output.
    issue_latency = 1

    def __init__(self, config: HWConfig, spad_aw: int, acc_aw: int):
        self._cfg = config
        R, C = config.rows, config.cols
        self.wrows = -(-C // R)
        # ws-only configs keep the ws array; with os the array is built with the config's dataflow
        self._array_cfg = config if config.has_os else config.replace(dataflow="ws")
        super().__init__(
            {
                "i_cmd": In(stream.Signature(isa.CMD_BITS)),
                "o_act_addr": Out(spad_aw),
                "o_act_en": Out(1),
                "i_act_data": In(8 * R),
                "o_w_addr": Out(spad_aw),
                "o_w_en": Out(1),
                "i_w_data": In(8 * R),
                "o_accr_addr": Out(acc_aw),
                "o_accr_en": Out(1),
                "i_accr_data": In(data.ArrayLayout(signed(config.acc_width), C)),
                "o_accw_addr": Out(acc_aw),
                "o_accw_en": Out(1),
                "o_accw_data": Out(data.ArrayLayout(signed(config.acc_width), C)),
                "tok_prev": Out(TokenPort()),
                "tok_next": Out(TokenPort()),
                "o_streaming": Out(1),
                "o_busy": Out(1),
                "o_wait_token": Out(1),
                "o_retired": Out(1),
            }
        )

    @property
    def array(self) -> SystolicArray:
        """The array instance (for its timing properties)."""
        return SystolicArray.timing(self._array_cfg)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C, AW = cfg.rows, cfg.cols, cfg.acc_width
        wrows = self.wrows

        def mm(word, name):
            return isa.hw_field(word, isa.Op.MATMUL, name)

        m.submodules.array = array = SystolicArray(self._array_cfg)
        has_os = cfg.has_os
        # the array's mode: 1 = output-stationary; switched only while everything is idle
        if cfg.dataflow == "both":
            mode = Signal(name="ex_mode_os")
            m.d.comb += array.i_os.eq(mode)
        else:
            mode = Const(int(cfg.dataflow == "os"), 1)

        # ------------------------------------------------------------ issue
        cmd = self.i_cmd.payload
        op = cmd[0:4]
        pop_prev, pop_next, push_prev, push_next = cmd[4], cmd[5], cmd[6], cmd[7]
        wcmd_layout = data.StructLayout({"w_addr": 24, "os": 1})
        acmd_layout = data.StructLayout(
            {"a_addr": 24, "sx": 4, "sy": 24, "nx": 12, "ny": 12, "os": 1, "drain": 1}
        )
        dcmd_layout = data.StructLayout(
            {"acc_addr": 16, "count": 24, "acc": 1, "push_prev": 1, "push_next": 1, "os": 1,
             "drain": 1}
        )  # fmt: skip
        wq = fifo.SyncFIFOBuffered(width=wcmd_layout.size, depth=4)
        aq = fifo.SyncFIFOBuffered(width=acmd_layout.size, depth=4)
        dq = fifo.SyncFIFOBuffered(width=dcmd_layout.size, depth=4)
        m.submodules.wq, m.submodules.aq, m.submodules.dq = wq, aq, dq

        bias = [Signal(signed(AW), name=f"bias_{c}") for c in range(C)]
        pipeline_empty = Signal(name="ex_pipeline_empty")
        tokens_ok = (~pop_prev | self.tok_prev.avail) & (~pop_next | self.tok_next.avail)
        is_mm = op == isa.Op.MATMUL
        room = wq.w_rdy & aq.w_rdy & dq.w_rdy
        # CFG_BIAS changes the bias under the writeback, so it waits for an empty pipeline
        ready = self.i_cmd.valid & tokens_ok & Mux(is_mm, room, pipeline_empty)
        m.d.comb += [
            self.i_cmd.ready.eq(ready),
            self.o_wait_token.eq(self.i_cmd.valid & ~tokens_ok),
        ]
        take = self.i_cmd.valid & self.i_cmd.ready
        m.d.comb += [
            self.tok_prev.take.eq(take & pop_prev),
            self.tok_next.take.eq(take & pop_next),
        ]
        wentry, aentry, dentry = (
            Signal(wcmd_layout), Signal(acmd_layout), Signal(dcmd_layout)
        )  # fmt: skip
        nx, ny = mm(cmd, "nx"), mm(cmd, "ny")
        c_os, c_drain = mm(cmd, "os"), mm(cmd, "drain")
        m.d.comb += [
            wentry.os.eq(c_os),
            aentry.os.eq(c_os),
            aentry.drain.eq(c_drain),
            dentry.os.eq(c_os),
            dentry.drain.eq(c_drain),
            wentry.w_addr.eq(mm(cmd, "w_addr")),
            aentry.a_addr.eq(mm(cmd, "a_addr")),
            aentry.sx.eq(mm(cmd, "a_stride_x")),
            aentry.sy.eq(mm(cmd, "a_stride_y")),
            aentry.nx.eq(nx),
            aentry.ny.eq(ny),
            dentry.acc_addr.eq(mm(cmd, "acc_addr")),
            dentry.count.eq(nx * ny),
            dentry.acc.eq(mm(cmd, "acc")),
            dentry.push_prev.eq(push_prev),
            dentry.push_next.eq(push_next),
            wq.w_data.eq(wentry.as_value()),
            aq.w_data.eq(aentry.as_value()),
            dq.w_data.eq(dentry.as_value()),
            wq.w_en.eq(take & is_mm),
            aq.w_en.eq(take & is_mm),
            dq.w_en.eq(take & is_mm),
        ]
        bias_take = take & (op == isa.Op.CFG_BIAS)
        col = isa.hw_field(cmd, isa.Op.CFG_BIAS, "col")
        for c in range(C):
            with m.If(bias_take & (col == c)):
                m.d.sync += bias[c].eq(isa.hw_field(cmd, isa.Op.CFG_BIAS, "bias"))
        cfg_push_prev = bias_take & push_prev
        cfg_push_next = bias_take & push_next

        # ------------------------------------------------------------ weight feeder
        w_head = data.View(wcmd_layout, wq.r_data)
        w_active = Signal(name="wf_active")
        w_base = Signal(24, name="wf_base")
        w_beat = Signal(range(R + 1), name="wf_beat")  # beats issued (reads grouped per beat)
        w_part = Signal(range(wrows + 1), name="wf_part")
        w_skid = fifo.SyncFIFOBuffered(width=8 * R, depth=SKID)
        m.submodules.w_skid = w_skid
        w_inflight = Signal(range(SKID + 1), name="wf_inflight")
        w_os = Signal(name="wf_os")
        w_issue = Signal(name="wf_issue")
        m.d.comb += w_issue.eq(w_active & (w_skid.level + w_inflight < SKID))
        # ws: beat j is weight row k = R-1-j (last row first); os: k = j (reduction order);
        # row k is at w_base + k*wrows + part
        k = Signal(range(R), name="wf_k")
        m.d.comb += k.eq(Mux(w_os, w_beat, R - 1 - w_beat))
        m.d.comb += [self.o_w_addr.eq(w_base + k * wrows + w_part), self.o_w_en.eq(w_issue)]
        w_end = w_issue & (w_part == wrows - 1) & (w_beat == R - 1)
        # os commands follow each other without a gap (ws keeps its one-cycle gap)
        w_next = Signal(name="wf_next")
        m.d.comb += w_next.eq(
            wq.r_rdy & (w_head.os == mode) & (~w_active | (w_end & w_os & w_head.os))
        )
        with m.If(w_issue):
            with m.If(w_part == wrows - 1):
                m.d.sync += [w_part.eq(0), w_beat.eq(w_beat + 1)]
                with m.If(w_beat == R - 1):
                    m.d.sync += w_active.eq(0)
            with m.Else():
                m.d.sync += w_part.eq(w_part + 1)
        with m.If(w_next):
            m.d.comb += wq.r_en.eq(1)
            m.d.sync += [
                w_active.eq(1),
                w_base.eq(w_head.w_addr),
                w_beat.eq(0),
                w_part.eq(0),
                w_os.eq(w_head.os),
            ]
        w_got = Signal(name="wf_got")
        m.d.sync += w_got.eq(w_issue)
        m.d.comb += [w_skid.w_en.eq(w_got), w_skid.w_data.eq(self.i_w_data)]
        m.d.sync += w_inflight.eq(w_inflight + w_issue - w_got)
        # assemble a beat of C weights from wrows scratchpad rows
        if wrows == 1:
            m.d.comb += [
                array.i_weight.valid.eq(w_skid.r_rdy),
                array.i_weight.payload.as_value().eq(w_skid.r_data[: 8 * C]),
                w_skid.r_en.eq(array.i_weight.ready),
            ]
        else:
            parts = Signal(8 * R * (wrows - 1), name="wf_parts")
            have = Signal(range(wrows), name="wf_have")
            full = have == wrows - 1
            m.d.comb += [
                array.i_weight.valid.eq(w_skid.r_rdy & full),
                array.i_weight.payload.as_value().eq(Cat(parts, w_skid.r_data)[: 8 * C]),
                w_skid.r_en.eq(Mux(full, array.i_weight.ready, 1)),
            ]
            with m.If(w_skid.r_rdy & w_skid.r_en):
                with m.If(full):
                    m.d.sync += have.eq(0)
                with m.Else():
                    m.d.sync += [
                        have.eq(have + 1),
                        parts.eq(Cat(parts[8 * R :], w_skid.r_data)),
                    ]

        # ------------------------------------------------------------ activation feeder
        a_head = data.View(acmd_layout, aq.r_data)
        a_active = Signal(name="af_active")
        a_cmd = Signal(acmd_layout, name="af_cmd")
        a_row = Signal(24, name="af_row")  # address of the current output row's first pixel
        a_addr = Signal(24, name="af_addr")
        ox = Signal(12, name="af_ox")
        oy = Signal(12, name="af_oy")
        a_skid = fifo.SyncFIFOBuffered(width=8 * R + 1, depth=SKID)
        m.submodules.a_skid = a_skid
        a_inflight = Signal(range(SKID + 1), name="af_inflight")
        a_issue = Signal(name="af_issue")
        tp_free = Signal(name="tp_free")  # os: the transposer bank being filled is free
        m.d.comb += a_issue.eq(a_active & Mux(a_cmd.os, tp_free, a_skid.level + a_inflight < SKID))
        a_last = Signal(name="af_last")
        m.d.comb += a_last.eq((ox == a_cmd.nx - 1) & (oy == a_cmd.ny - 1))
        m.d.comb += [self.o_act_addr.eq(a_addr), self.o_act_en.eq(a_issue)]
        a_next = Signal(name="af_next")
        m.d.comb += a_next.eq(
            aq.r_rdy & (a_head.os == mode) & (~a_active | (a_issue & a_last & a_cmd.os & a_head.os))
        )
        a_j = Signal(range(R + 1), name="af_pixel")  # os: pixel index within the command
        with m.If(a_issue):
            m.d.sync += a_j.eq(a_j + 1)
            with m.If(ox == a_cmd.nx - 1):
                m.d.sync += [
                    ox.eq(0),
                    oy.eq(oy + 1),
                    a_row.eq(a_row + a_cmd.sy),
                    a_addr.eq(a_row + a_cmd.sy),
                ]
                with m.If(a_last):
                    m.d.sync += a_active.eq(0)
            with m.Else():
                m.d.sync += [ox.eq(ox + 1), a_addr.eq(a_addr + a_cmd.sx)]
        with m.If(a_next):
            m.d.comb += aq.r_en.eq(1)
            m.d.sync += [
                a_active.eq(1),
                a_cmd.eq(a_head),
                a_row.eq(a_head.a_addr),
                a_addr.eq(a_head.a_addr),
                ox.eq(0),
                oy.eq(0),
                a_j.eq(0),
            ]
        a_got = Signal(name="af_got")
        a_got_last = Signal(name="af_got_last")
        a_got_os = Signal(name="af_got_os")
        m.d.sync += [a_got.eq(a_issue), a_got_last.eq(a_last), a_got_os.eq(a_cmd.os)]
        m.d.comb += [
            a_skid.w_en.eq(a_got & ~a_got_os),
            a_skid.w_data.eq(Cat(self.i_act_data, a_got_last)),
        ]
        m.d.sync += a_inflight.eq(a_inflight + a_issue - a_got)

        # ------------------------------------------------------------ os transposer
        # Two banks of R pixel rows (R bytes each). The walker fills one bank with the
        # command's nx*ny pixel rows while the other emits R beats column-wise: beat c is byte
        # c of every pixel row. A bank is cleared as its last beat is emitted, so pixels >=
        # nx*ny read zero. (Emitting by shifting each row down a byte instead made Verilator
        # keep a shadow copy of all 2*R rows, copied in and out every cycle: a register that is
        # reset and updated from its own value, like an accumulator.)
        tp_valid = Signal(name="tp_valid")
        tp_data = Signal(8 * R, name="tp_data")
        tp_last = Signal(name="tp_last")
        tp_fire = Signal(name="tp_fire")
        tp_end = Signal(name="tp_end")  # the final beat of a block is accepted
        tp_idle = Signal(name="tp_idle")
        if has_os:
            bank = [
                [[Signal(8, name=f"tp_b{b}_r{j}_c{k}") for k in range(R)] for j in range(R)]
                for b in range(2)
            ]
            claimed = Signal(2, name="tp_claimed")  # bank filled (last pixel issued), not emitted
            full = Signal(2, name="tp_full")  # bank's data landed
            bdrain = Signal(2, name="tp_drain")
            iss_b = Signal(name="tp_fill_bank")
            got_b = Signal(name="tp_got_bank")
            got_j = Signal(range(R + 1), name="tp_got_pixel")
            e_b = Signal(name="tp_emit_bank")
            e_c = Signal(range(R), name="tp_emit_beat")
            m.d.sync += [got_b.eq(iss_b), got_j.eq(a_j)]
            m.d.comb += [
                tp_valid.eq(full.bit_select(e_b, 1)),
                tp_last.eq((e_c == R - 1) & bdrain.bit_select(e_b, 1)),
                tp_fire.eq(tp_valid & array.i_act.ready & mode),
                tp_end.eq(tp_fire & (e_c == R - 1)),
                tp_free.eq(~claimed.bit_select(iss_b, 1) | (tp_end & (e_b == iss_b))),
                tp_idle.eq(claimed == 0),
            ]
            for j in range(R):
                m.d.comb += tp_data[8 * j : 8 * j + 8].eq(
                    Mux(e_b, pick(bank[1][j], e_c), pick(bank[0][j], e_c))
                )
            for b in range(2):
                for j in range(R):
                    with m.If(tp_end & (e_b == b)):
                        m.d.sync += [byte.eq(0) for byte in bank[b][j]]
                    with m.If(a_got & a_got_os & (got_b == b) & (got_j == j)):
                        m.d.sync += [
                            byte.eq(self.i_act_data[8 * k : 8 * k + 8])
                            for k, byte in enumerate(bank[b][j])
                        ]
            with m.If(tp_fire):
                m.d.sync += e_c.eq(e_c + 1)
                with m.If(e_c == R - 1):
                    m.d.sync += [
                        e_c.eq(0),
                        e_b.eq(~e_b),
                        claimed.bit_select(e_b, 1).eq(0),
                        full.bit_select(e_b, 1).eq(0),
                    ]
            with m.If(a_issue & a_cmd.os & a_last):
                m.d.sync += [
                    claimed.bit_select(iss_b, 1).eq(1),
                    bdrain.bit_select(iss_b, 1).eq(a_cmd.drain),
                    iss_b.eq(~iss_b),
                ]
            with m.If(a_got & a_got_os & a_got_last):
                m.d.sync += full.bit_select(got_b, 1).eq(1)
        else:
            m.d.comb += [tp_free.eq(0), tp_idle.eq(1)]

        m.d.comb += [
            array.i_act.valid.eq(Mux(mode, tp_valid, a_skid.r_rdy)),
            array.i_act.payload.data.as_value().eq(Mux(mode, tp_data, a_skid.r_data[: 8 * R])),
            array.i_act.payload.last.eq(Mux(mode, tp_last, a_skid.r_data[8 * R])),
            a_skid.r_en.eq(array.i_act.ready & ~mode),
            self.o_streaming.eq(array.i_act.valid & array.i_act.ready),
        ]

        # ------------------------------------------------------------ mode switch
        if cfg.dataflow == "both":
            # both feeders stop at a command of the other mode; once nothing is left in the
            # feeders, the transposer or the array, the mode flips
            switch = (
                ~w_active & ~a_active & wq.r_rdy & aq.r_rdy
                & (w_head.os != mode) & (a_head.os != mode)
                & (w_skid.level == 0) & (a_skid.level == 0)
                & (w_inflight == 0) & (a_inflight == 0) & ~a_got & ~w_got
                & tp_idle & array.o_idle
            )  # fmt: skip
            with m.If(switch):
                m.d.sync += mode.eq(~mode)

        # ------------------------------------------------------------ writeback (RMW)
        d_head = data.View(dcmd_layout, dq.r_data)
        wb_count = Signal(24, name="wb_count")
        # os: blocks whose R beats entered the array and whose command has not retired
        blocks = Signal(8, name="wb_os_blocks")
        # an os command without drain retires once its block has entered the array
        nd_head = dq.r_rdy & d_head.os & ~d_head.drain
        nd_retire = Signal(name="wb_os_retire")
        m.d.comb += nd_retire.eq(nd_head & (blocks != 0))
        m.d.comb += array.o_out.ready.eq(~nd_head)
        out_fire = array.o_out.valid & array.o_out.ready
        # os: drained row j is pixel R-1-j; only pixels < nx*ny are written
        pixel = Signal(24, name="wb_pixel")
        m.d.comb += pixel.eq(Mux(d_head.os, R - 1 - wb_count, wb_count))
        write = Signal(name="wb_write")
        m.d.comb += write.eq(~d_head.os | (pixel < d_head.count))
        row_addr = Signal(16, name="wb_row_addr")
        m.d.comb += row_addr.eq(d_head.acc_addr + pixel)
        m.d.comb += [self.o_accr_addr.eq(row_addr), self.o_accr_en.eq(out_fire & write)]
        s1 = Signal(name="wb_s1")
        s1_write = Signal(name="wb_s1_write")
        s1_addr = Signal(16, name="wb_s1_addr")
        s1_acc = Signal(name="wb_s1_acc")
        s1_out = Signal(data.ArrayLayout(signed(AW), C), name="wb_s1_out")
        s1_done = Signal(name="wb_s1_done")
        s1_pp = Signal(name="wb_s1_push_prev")
        s1_pn = Signal(name="wb_s1_push_next")
        last_row = Mux(d_head.os, wb_count == R - 1, wb_count == d_head.count - 1)
        m.d.sync += [s1.eq(out_fire | nd_retire), s1_write.eq(out_fire & write)]
        blk_dec = (out_fire & d_head.os & last_row) | nd_retire
        m.d.sync += blocks.eq(blocks + tp_end - blk_dec)
        with m.If(nd_retire):
            m.d.comb += dq.r_en.eq(1)
            m.d.sync += [s1_done.eq(1), s1_pp.eq(d_head.push_prev), s1_pn.eq(d_head.push_next)]
        with m.If(out_fire):
            m.d.sync += [
                s1_addr.eq(row_addr),
                s1_acc.eq(d_head.acc),
                s1_out.eq(array.o_out.payload.data),
                s1_done.eq(last_row),
                s1_pp.eq(d_head.push_prev),
                s1_pn.eq(d_head.push_next),
            ]
            with m.If(last_row):
                m.d.sync += wb_count.eq(0)
                m.d.comb += dq.r_en.eq(1)
            with m.Else():
                m.d.sync += wb_count.eq(wb_count + 1)
        for c in range(C):
            base = Mux(s1_acc, self.i_accr_data[c], bias[c])
            m.d.comb += self.o_accw_data[c].eq((base + s1_out[c])[:AW])
        m.d.comb += [self.o_accw_addr.eq(s1_addr), self.o_accw_en.eq(s1 & s1_write)]
        done = s1 & s1_done
        m.d.comb += [
            self.tok_prev.give.eq((done & s1_pp) | cfg_push_prev),
            self.tok_next.give.eq((done & s1_pn) | cfg_push_next),
            self.o_retired.eq(done | bias_take),
        ]
        # MATMULs taken but not yet retired (the FIFOs' flags lag a write by a cycle)
        outstanding = Signal(8, name="ex_outstanding")
        m.d.sync += outstanding.eq(outstanding + (take & is_mm) - done)
        m.d.comb += pipeline_empty.eq((outstanding == 0) & ~s1)
        m.d.comb += self.o_busy.eq(~pipeline_empty)
        return m
