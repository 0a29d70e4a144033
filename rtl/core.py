"""The Tandem core: program fetch, decoder, decoupled queues, memories, DMA and the array.

```
 program (DRAM) -> fetch -> decoder -> load queue   -> LoadUnit   --> scratchpad
                                    |-> exec queue   -> ExecUnit   <-- scratchpad, --> accumulator
                                    |-> vector queue -> VectorUnit <-- scratchpad, --> scratchpad
                                    '-> store queue  -> StoreUnit  <-- accumulator or scratchpad
 memory port <-> MemArbiter <-> fetch, LoadUnit (reads), StoreUnit (writes)
```

A host (or bench) sets ``i_prog_addr``/``i_prog_len`` and pulses ``i_start``; ``o_done`` rises once
every command has retired, or ``o_error`` with a cause (``rtl.isa.Cause``) and the index of the
offending command. Errors are sticky until the next ``i_start``; a core in error stops fetching.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .config import HWConfig
from .dma import Fetch, LoadUnit, MemArbiter, MemPort, StoreUnit, TokenPort
from .execute import ExecUnit
from .memories import BankedMemory
from .vector import VectorUnit

__all__ = ["COUNTERS", "QUEUES", "TOKENS", "TandemCore"]

#: Performance counters, in port order (``o_cnt_<name>``), each ``COUNTER_WIDTH`` bits.
COUNTERS = (
    "cycles",  # cycles from start to done
    "load_busy",  # load unit has work
    "exec_busy",  # exec unit has work
    "exec_streaming",  # an activation row entered the array (all PEs doing MACs)
    "exec_wait_token",  # exec queue head waiting for a dependency token
    "store_busy",  # store unit has work
    "vec_busy",  # vector unit runs a command (VectorTiming.command_cycles each)
    "vec_taps",  # vector unit issued a tap (lanes MACs)
    "vec_wait_token",  # vector queue head waiting for a dependency token
    "overlap",  # the array streams and the vector unit issues taps in the same cycle
    "rd_bytes",  # bytes read from DRAM (program included)
    "wr_bytes",  # bytes written to DRAM (strobed bytes)
    "retired",  # commands retired
)
COUNTER_WIDTH = 48

#: Dependency-token counters, in ``o_dbg_tokens`` order (16 bits each).
TOKENS = ("l2e", "e2l", "e2s", "s2e", "l2v", "v2l", "v2s", "s2v")
#: Command queues, in ``o_dbg_queues`` order (16-bit levels).
QUEUES = ("load", "exec", "store", "vector")


class TokenCounter(wiring.Component):
    """A semaphore between two units: ``give`` adds one, ``take`` removes one."""

    def __init__(self, width: int = 16):
        self._w = width
        super().__init__(
            {"port_a": In(TokenPort()), "port_b": In(TokenPort()), "count": Out(width)}
        )

    def elaborate(self, platform):
        m = Module()
        # producer gives through one port, consumer takes through the other
        give = self.port_a.give | self.port_b.give
        take = self.port_a.take | self.port_b.take
        m.d.comb += [self.port_a.avail.eq(self.count != 0), self.port_b.avail.eq(self.count != 0)]
        m.d.sync += self.count.eq(self.count + give - take)
        return m


class TandemCore(wiring.Component):
    """One accelerator core (systolic array, ws and/or os) with its memories and DMA.

    Members
    -------
    i_start, i_prog_addr, i_prog_len : In
        Start a program of ``i_prog_len`` 16-byte commands at DRAM byte address ``i_prog_addr``.
    o_busy, o_done, o_error, o_error_cause, o_error_pc : Out
        Status; ``o_done`` and ``o_error`` are sticky until the next start.
    mem : Out(MemPort)
        The DRAM port.
    o_cnt_* : Out
        Performance counters (``COUNTERS``), cleared by ``i_start``.
    o_dbg_decoded : Out
        Commands decoded so far (for watchdog dumps).
    """

    def __init__(self, config: HWConfig):
        if not isinstance(config, HWConfig):
            raise TypeError(f"config must be an HWConfig, not {config!r}")
        self._cfg = config
        members = {
            "i_start": In(1),
            "i_prog_addr": In(32),
            "i_prog_len": In(32),
            "o_busy": Out(1),
            "o_done": Out(1),
            "o_error": Out(1),
            "o_error_cause": Out(8),
            "o_error_pc": Out(32),
            "mem": Out(MemPort(config.dma_beat_bytes)),
            "o_dbg_decoded": Out(32),
            "o_dbg_tokens": Out(128),
            "o_dbg_queues": Out(4 * 16),
        }
        for name in COUNTERS:
            members[f"o_cnt_{name}"] = Out(COUNTER_WIDTH)
        super().__init__(members)

    @property
    def config(self) -> HWConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C, W = cfg.rows, cfg.cols, cfg.dma_beat_bytes
        spad = BankedMemory(shape=unsigned(8 * R), depth=cfg.spad_rows, banks=cfg.spad_banks,
                            read_ports=4, write_ports=2, name="spad")  # fmt: skip
        acc = BankedMemory(shape=unsigned(cfg.acc_width * C), depth=cfg.acc_rows,
                           banks=cfg.acc_banks, read_ports=2, name="acc")  # fmt: skip
        m.submodules.spad, m.submodules.acc = spad, acc
        m.submodules.fetch = fetch = Fetch(W)
        m.submodules.load = load = LoadUnit(cfg, spad.addr_width)
        m.submodules.exec = ex = ExecUnit(cfg, spad.addr_width, acc.addr_width)
        m.submodules.store = store = StoreUnit(cfg, acc.addr_width, spad.addr_width)
        m.submodules.vector = vec = VectorUnit(cfg, spad.addr_width)
        m.submodules.arbiter = arb = MemArbiter(W, n_read=2)
        wiring.connect(m, wiring.flipped(self.mem), arb.mem)
        wiring.connect(m, fetch.mem, arb.rd0)
        wiring.connect(m, load.mem, arb.rd1)
        wiring.connect(m, store.req, arb.writer_req)
        wiring.connect(m, store.wdata, arb.writer_wdata)

        # memories <-> units
        m.d.comb += [
            spad.w.addr.eq(load.o_spad_addr),
            spad.w.data.eq(load.o_spad_data),
            spad.w.en.eq(load.o_spad_en),
            spad.r0.addr.eq(ex.o_act_addr),
            spad.r0.en.eq(ex.o_act_en),
            ex.i_act_data.eq(spad.r0.data),
            spad.r1.addr.eq(ex.o_w_addr),
            spad.r1.en.eq(ex.o_w_en),
            ex.i_w_data.eq(spad.r1.data),
            acc.r0.addr.eq(ex.o_accr_addr),
            acc.r0.en.eq(ex.o_accr_en),
            ex.i_accr_data.as_value().eq(acc.r0.data),
            acc.w.addr.eq(ex.o_accw_addr),
            acc.w.en.eq(ex.o_accw_en),
            acc.w.data.eq(ex.o_accw_data.as_value()),
            acc.r1.addr.eq(store.o_acc_addr),
            acc.r1.en.eq(store.o_acc_en),
            store.i_acc_data.as_value().eq(acc.r1.data),
            spad.r2.addr.eq(vec.o_rd_addr),
            spad.r2.en.eq(vec.o_rd_en),
            vec.i_rd_data.eq(spad.r2.data),
            spad.w1.addr.eq(vec.o_wr_addr),
            spad.w1.en.eq(vec.o_wr_en),
            spad.w1.data.eq(vec.o_wr_data),
            spad.r3.addr.eq(store.o_spad_addr),
            spad.r3.en.eq(store.o_spad_en),
            store.i_spad_data.eq(spad.r3.data),
        ]

        # dependency tokens: l2e, e2l, e2s, s2e, and the same four with the vector unit
        tok = {n: TokenCounter() for n in TOKENS}
        for n, t in tok.items():
            m.submodules[f"tok_{n}"] = t
        # each counter: one unit gives, the other takes (TokenPort avail/take/give)
        self._tie_token(m, giver=load.tok_next, taker=ex.tok_prev, counter=tok["l2e"])
        self._tie_token(m, giver=ex.tok_prev, taker=load.tok_next, counter=tok["e2l"])
        self._tie_token(m, giver=ex.tok_next, taker=store.tok_prev, counter=tok["e2s"])
        self._tie_token(m, giver=store.tok_prev, taker=ex.tok_next, counter=tok["s2e"])
        self._tie_token(m, giver=load.tok_vec, taker=vec.tok_prev, counter=tok["l2v"])
        self._tie_token(m, giver=vec.tok_prev, taker=load.tok_vec, counter=tok["v2l"])
        self._tie_token(m, giver=vec.tok_next, taker=store.tok_vec, counter=tok["v2s"])
        self._tie_token(m, giver=store.tok_vec, taker=vec.tok_next, counter=tok["s2v"])
        m.d.comb += self.o_dbg_tokens.eq(Cat(*(t.count for t in tok.values())))

        # queues
        queues = {
            isa.Queue.LOAD: (fifo.SyncFIFOBuffered(width=isa.CMD_BITS,
                                                   depth=cfg.load_queue_depth), load),
            isa.Queue.EXEC: (fifo.SyncFIFOBuffered(width=isa.CMD_BITS,
                                                   depth=cfg.exec_queue_depth), ex),
            isa.Queue.STORE: (fifo.SyncFIFOBuffered(width=isa.CMD_BITS,
                                                    depth=cfg.store_queue_depth), store),
            isa.Queue.VECTOR: (fifo.SyncFIFOBuffered(width=isa.CMD_BITS,
                                                     depth=cfg.vector_queue_depth), vec),
        }  # fmt: skip
        for q, (f, unit) in queues.items():
            m.submodules[f"q_{q.name.lower()}"] = f
            m.d.comb += [
                unit.i_cmd.valid.eq(f.r_rdy),
                unit.i_cmd.payload.eq(f.r_data),
                f.r_en.eq(unit.i_cmd.ready),
            ]
        levels = []
        for q, (f, _) in queues.items():
            level = Signal(16, name=f"dbg_level_{q.name.lower()}")
            m.d.comb += level.eq(f.level)
            levels.append(level)
        m.d.comb += self.o_dbg_queues.eq(Cat(*levels))

        # ------------------------------------------------------------ control and decoder
        busy = Signal(name="core_busy")
        done = Signal(name="core_done")
        error = Signal(name="core_error")
        cause = Signal(8, name="core_cause")
        err_pc = Signal(32, name="core_err_pc")
        decoded = Signal(32, name="core_decoded")
        length = Signal(32, name="core_length")
        start = self.i_start & ~busy
        m.d.comb += [
            fetch.i_start.eq(start),
            fetch.i_addr.eq(self.i_prog_addr),
            fetch.i_length.eq(self.i_prog_len),
        ]
        with m.If(start):
            m.d.sync += [busy.eq(1), done.eq(0), error.eq(0), cause.eq(0), decoded.eq(0),
                         length.eq(self.i_prog_len)]  # fmt: skip

        word = fetch.o_cmd.payload
        op = word[0:4]
        checks = self._checks(m, word, op, spad.addr_width)
        bad = Signal(name="dec_bad")
        bad_cause = Signal(8, name="dec_cause")
        m.d.comb += [bad.eq(checks != 0), bad_cause.eq(0)]
        for code in reversed(isa.Cause):
            if code:
                with m.If(checks[code]):
                    m.d.comb += bad_cause.eq(code)

        # write bursts sent but not yet acknowledged by the memory count as busy
        writes_open = Signal(16, name="core_writes_open")
        w_sent = self.mem.req.valid & self.mem.req.ready & self.mem.req.payload.write
        m.d.sync += writes_open.eq(writes_open + w_sent - self.mem.wack)
        units_idle = ~load.o_busy & ~ex.o_busy & ~store.o_busy & ~vec.o_busy & (writes_open == 0)
        queues_empty = Cat(*(~f.r_rdy & (f.level == 0) for f, _ in queues.values())).all()
        dispatch_ok = Signal(name="dec_ok")
        target = Signal(3, name="dec_target")
        for o, q in isa.QUEUE_OF.items():
            with m.If(op == o):
                m.d.comb += target.eq(q)
        is_fence = op == isa.Op.FENCE
        room = Mux(target == isa.Queue.NONE, Mux(is_fence, queues_empty & units_idle, 1), 0)
        for q, (f, _) in queues.items():
            room = Mux(target == q, f.w_rdy, room)
        m.d.comb += dispatch_ok.eq(busy & ~error & fetch.o_cmd.valid & ~bad & room)
        m.d.comb += fetch.o_cmd.ready.eq(dispatch_ok | (busy & error))  # drain after an error
        for q, (f, _) in queues.items():
            m.d.comb += [f.w_data.eq(word), f.w_en.eq(dispatch_ok & (target == q))]
        with m.If(dispatch_ok):
            m.d.sync += decoded.eq(decoded + 1)
        with m.If(busy & ~error & fetch.o_cmd.valid & bad):
            m.d.sync += [error.eq(1), cause.eq(bad_cause), err_pc.eq(decoded)]
        finished = busy & (decoded == length) & queues_empty & units_idle & fetch.o_fetched_all
        with m.If(finished | (busy & error & units_idle & queues_empty & fetch.o_fetched_all)):
            m.d.sync += [busy.eq(0), done.eq(~error)]
        m.d.comb += [
            self.o_busy.eq(busy),
            self.o_done.eq(done),
            self.o_error.eq(error),
            self.o_error_cause.eq(cause),
            self.o_error_pc.eq(err_pc),
            self.o_dbg_decoded.eq(decoded),
        ]

        # ------------------------------------------------------------ performance counters
        nop_retire = dispatch_ok & (target == isa.Queue.NONE)
        rd_beat = self.mem.rdata.valid & self.mem.rdata.ready
        wr_beat = self.mem.wdata.valid & self.mem.wdata.ready
        strb_count = Signal(range(W + 1), name="wr_strb_count")
        m.d.comb += strb_count.eq(sum(self.mem.wdata.payload.strb[i] for i in range(W)))
        events = {
            "cycles": busy,
            "load_busy": load.o_busy,
            "exec_busy": ex.o_busy,
            "exec_streaming": ex.o_streaming,
            "exec_wait_token": ex.o_wait_token,
            "store_busy": store.o_busy,
            "vec_busy": vec.o_busy,
            "vec_taps": vec.o_tap,
            "vec_wait_token": vec.o_wait_token,
            "overlap": ex.o_streaming & vec.o_tap,
            "rd_bytes": Mux(rd_beat, W, 0),
            "wr_bytes": Mux(wr_beat, strb_count, 0),
            "retired": load.o_retired + ex.o_retired + store.o_retired + vec.o_retired + nop_retire,
        }
        for name in COUNTERS:
            cnt = Signal(COUNTER_WIDTH, name=f"cnt_{name}")
            with m.If(start):
                m.d.sync += cnt.eq(0)
            with m.Elif(busy):
                m.d.sync += cnt.eq(cnt + events[name])
            m.d.comb += getattr(self, f"o_cnt_{name}").eq(cnt)
        return m

    @staticmethod
    def _tie_token(m, *, giver, taker, counter):
        # giver.give -> counter; taker.take/avail <- counter. Ports carry both directions, so
        # each counter listens to exactly one give and one take.
        m.d.comb += [
            counter.port_a.give.eq(giver.give),
            counter.port_b.take.eq(taker.take),
            taker.avail.eq(counter.port_b.avail),
        ]

    def _checks(self, m, word, op, spad_aw):
        """A bit per ``isa.Cause``: set if the command at the decoder is invalid."""
        cfg = self._cfg
        R, C = cfg.rows, cfg.cols
        wrows = -(-C // R)
        checks = Signal(len(isa.Cause), name="dec_checks")

        def f(o, name):
            return isa.hw_field(word, o, name)

        known = Cat(*(op == o for o in isa.QUEUE_OF)).any()
        pop_prev, pop_next, push_prev, push_next = word[4], word[5], word[6], word[7]
        L, MM, ST = isa.Op.LOAD, isa.Op.MATMUL, isa.Op.STORE
        ld_len = f(L, "len")
        ld_bad_len = (f(L, "rows") == 0) | (~f(L, "zero") & ((ld_len == 0) | (ld_len > R)))
        ld_range = (f(L, "spad_addr") + f(L, "rows")) > cfg.spad_rows
        nx, ny = f(MM, "nx"), f(MM, "ny")
        mm_os = f(MM, "os")
        # os: at most R output pixels per array tile
        mm_bad_len = (nx == 0) | (ny == 0) | (mm_os & (nx * ny > R))
        # a MATMUL in a dataflow the array was not generated with
        mm_bad_flow = mm_os if not cfg.has_os else (~mm_os if not cfg.has_ws else 0)
        mm_acc = (f(MM, "acc_addr") + nx * ny) > cfg.acc_rows
        a_max = Signal(48, name="dec_a_max")
        m.d.comb += a_max.eq(
            f(MM, "a_addr") + (ny - 1) * f(MM, "a_stride_y") + (nx - 1) * f(MM, "a_stride_x")
        )
        mm_spad = (a_max >= cfg.spad_rows) | ((f(MM, "w_addr") + R * wrows) > cfg.spad_rows)
        st_len = f(ST, "len")
        st_vec = f(ST, "vec")
        st_bad_len = (f(ST, "rows") == 0) | (st_len == 0) | (st_len > Mux(st_vec, R, C))
        st_acc = ~st_vec & ((f(ST, "acc_addr") + f(ST, "rows")) > cfg.acc_rows)
        st_spad = st_vec & ((f(ST, "spad_addr") + f(ST, "rows")) > cfg.spad_rows)
        # vector commands (DWCONV and EWISE share the field layout)
        EW, KM = isa.Op.EWISE, cfg.vector_max_kernel
        is_vec = (op == isa.Op.DWCONV) | (op == EW)
        v_dw = op == isa.Op.DWCONV
        v_mode = f(EW, "mode")
        v_add = ~v_dw & (v_mode == isa.EwiseMode.ADD)
        kh, kw, v_s = f(EW, "kh"), f(EW, "kw"), f(EW, "stride")
        in_w, in_h, out_w, out_h = f(EW, "in_w"), f(EW, "in_h"), f(EW, "out_w"), f(EW, "out_h")
        v_zero = (Cat(kh == 0, kw == 0, v_s == 0, in_w == 0, in_h == 0, out_w == 0,
                      out_h == 0)).any()  # fmt: skip
        v_add_bad = (kh != 1) | (kw != 1) | (v_s != 1) | (f(EW, "pad_t") != 0)
        v_add_bad |= (f(EW, "pad_l") != 0) | (out_w != in_w) | (out_h != in_h)
        v_bad_len = v_zero | (v_dw & ((kh > KM) | (kw > KM))) | (v_add & v_add_bad)
        nparams = isa.VEC_PARAM_ROWS + Mux(v_dw, kh * kw, Mux(v_add, isa.VEC_ADD_ROWS, 0))
        v_in = Signal(24, name="dec_v_in")
        m.d.comb += v_in.eq(f(EW, "in_addr") + Mux(v_add, 2, 1) * in_w * in_h)
        v_spad = (
            (f(EW, "param_addr") + nparams > cfg.spad_rows)
            | (v_in > cfg.spad_rows)
            | (f(EW, "out_addr") + out_w * out_h > cfg.spad_rows)
        )
        b_col = f(isa.Op.CFG_BIAS, "col")
        q_col = f(isa.Op.CFG_QUANT, "col")
        is_store_q = (op == ST) | (op == isa.Op.CFG_QUANT) | (op == isa.Op.CFG_STORE)
        m.d.comb += [
            checks[isa.Cause.BAD_OPCODE].eq(
                ~known | ((op == MM) & mm_bad_flow) | ((op == EW) & (v_mode == 3))
            ),
            checks[isa.Cause.SPAD_RANGE].eq(
                ((op == L) & ld_range)
                | ((op == MM) & mm_spad)
                | ((op == ST) & st_spad)
                | (is_vec & v_spad)
            ),
            checks[isa.Cause.ACC_RANGE].eq(((op == MM) & mm_acc) | ((op == ST) & st_acc)),
            checks[isa.Cause.BAD_LENGTH].eq(
                ((op == L) & ld_bad_len)
                | ((op == MM) & mm_bad_len)
                | ((op == ST) & st_bad_len)
                | (is_vec & v_bad_len)
            ),
            checks[isa.Cause.BAD_COLUMN].eq(
                ((op == isa.Op.CFG_BIAS) & (b_col >= C)) | ((op == isa.Op.CFG_QUANT) & (q_col >= C))
            ),
            checks[isa.Cause.BAD_TOKEN].eq(
                ((op == L) & (pop_prev | push_prev)) | (is_store_q & (pop_next | push_next))
            ),
        ]
        return checks
