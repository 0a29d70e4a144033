"""The external memory port, its arbiter, program fetch, and the load and store DMA units.

The memory port is three ``lib.stream`` streams (byte addresses, ``beat`` = ``dma_beat_bytes``):

* ``req``: ``{addr, len, write}`` - a burst of ``len + 1`` beats at the beat-aligned ``addr``;
* ``wdata``: ``{data, strb}`` - write beats, in request order, with byte strobes;
* ``rdata``: read beats, in request order;
* ``wack``: a one-cycle pulse for every write burst committed to memory (the core's ``done``
  waits for all of them, so results are in DRAM when it rises).

Transfers of any byte address and length are split per row into beat-aligned bursts and realigned
on chip, so DRAM tensors need no padding or alignment.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .config import HWConfig

__all__ = ["Fetch", "LoadUnit", "MemArbiter", "MemPort", "StoreUnit", "TokenPort"]

ADDR_WIDTH = 32
MAX_BURST = 256  # beats (len is 8 bits)


def mem_req_layout():
    return data.StructLayout({"addr": ADDR_WIDTH, "len": 8, "write": 1})


def mem_w_layout(beat: int):
    return data.StructLayout({"data": 8 * beat, "strb": beat})


class MemPort(wiring.Signature):
    """Initiator side of the memory port."""

    def __init__(self, beat: int):
        super().__init__(
            {
                "req": Out(stream.Signature(mem_req_layout())),
                "wdata": Out(stream.Signature(mem_w_layout(beat))),
                "rdata": In(stream.Signature(8 * beat)),
                "wack": In(1),  # one pulse per write burst committed to memory
            }
        )


class ReadClient(wiring.Signature):
    """A read-only client of the arbiter: requests out, beats in."""

    def __init__(self, beat: int):
        super().__init__(
            {
                "req": Out(stream.Signature(mem_req_layout())),
                "rdata": In(stream.Signature(8 * beat)),
            }
        )


class TokenPort(wiring.Signature):
    """A unit's view of one token counter: ``avail`` in, ``take``/``give`` pulses out."""

    def __init__(self):
        super().__init__({"avail": In(1), "take": Out(1), "give": Out(1)})


def _beats_for(offset, length, beat: int):
    """Beats covering ``length`` bytes starting ``offset`` bytes into a beat (Amaranth exprs)."""
    return (offset + length + (beat - 1)) >> (beat.bit_length() - 1)


class MemArbiter(wiring.Component):
    """Round-robin arbiter of read clients and one writer onto the memory port.

    Read responses come back in request order; a FIFO of (client, beats) routes them. A client must
    accept its beats whenever they arrive (the fetch unit only asks for what it has room for).
    """

    def __init__(self, beat: int, n_read: int, outstanding: int = 32):
        self._beat, self._n, self._outstanding = beat, n_read, outstanding
        members = {"mem": Out(MemPort(beat)), "writer_req": In(stream.Signature(mem_req_layout()))}
        members["writer_wdata"] = In(stream.Signature(mem_w_layout(beat)))
        for i in range(n_read):
            members[f"rd{i}"] = In(ReadClient(beat))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        n = self._n
        clients = [getattr(self, f"rd{i}") for i in range(n)]
        route = fifo.SyncFIFOBuffered(width=max(1, (n - 1).bit_length()) + 8,
                                      depth=self._outstanding)  # fmt: skip
        m.submodules.route = route

        # request arbitration: readers round-robin, writer when no reader asks (writes are
        # never starved: readers only ask while they have work, and the writer's requests are
        # bounded by its data)
        sources = [*[c.req for c in clients], self.writer_req]
        last = Signal(range(len(sources)), name="arb_last")
        grant = Signal(range(len(sources)), name="arb_grant")
        any_valid = Signal(name="arb_any")
        m.d.comb += any_valid.eq(Cat(s.valid for s in sources).any())
        # priority rotates: start after the last granted source
        for lst in range(len(sources)):
            with m.If(last == lst):
                order = [(lst + 1 + j) % len(sources) for j in range(len(sources))]
                for j in reversed(order):  # later assignments win: first in order has priority
                    with m.If(sources[j].valid):
                        m.d.comb += grant.eq(j)
        req_ok = Signal(name="arb_req_ok")
        is_read = Signal(name="arb_is_read")
        m.d.comb += is_read.eq(grant < n)
        m.d.comb += req_ok.eq(any_valid & (~is_read | route.w_rdy))
        for j, s in enumerate(sources):
            with m.If(grant == j):
                m.d.comb += self.mem.req.payload.eq(s.payload)
                m.d.comb += s.ready.eq(req_ok & self.mem.req.ready)
        m.d.comb += self.mem.req.valid.eq(req_ok)
        with m.If(self.mem.req.valid & self.mem.req.ready):
            m.d.sync += last.eq(grant)
        m.d.comb += [
            route.w_en.eq(self.mem.req.valid & self.mem.req.ready & is_read),
            route.w_data.eq(Cat(self.mem.req.payload.len, grant)),
        ]

        # write data passes straight through (one writer)
        m.d.comb += [
            self.mem.wdata.valid.eq(self.writer_wdata.valid),
            self.mem.wdata.payload.eq(self.writer_wdata.payload),
            self.writer_wdata.ready.eq(self.mem.wdata.ready),
        ]

        # read responses: route to the client at the head of the FIFO
        head_len = route.r_data[:8]
        head_client = route.r_data[8:]
        count = Signal(8, name="rsp_count")
        for i, c in enumerate(clients):
            m.d.comb += c.rdata.payload.eq(self.mem.rdata.payload)
            m.d.comb += c.rdata.valid.eq(self.mem.rdata.valid & route.r_rdy & (head_client == i))
        m.d.comb += self.mem.rdata.ready.eq(
            route.r_rdy
            & Mux(head_client < n, Cat(c.rdata.ready for c in clients).bit_select(head_client, 1),
                  0)
        )  # fmt: skip
        with m.If(self.mem.rdata.valid & self.mem.rdata.ready):
            with m.If(count == head_len):
                m.d.sync += count.eq(0)
                m.d.comb += route.r_en.eq(1)
            with m.Else():
                m.d.sync += count.eq(count + 1)
        return m


class Fetch(wiring.Component):
    """Reads ``length`` commands from ``addr`` and streams them out in order.

    Bursts are asked for only when the beat buffer has room for them, so the fetch unit never
    blocks the shared read-response stream.
    """

    def __init__(self, beat: int, buffer_beats: int = 16):
        self._beat = beat
        self._depth = self.buffer_depth(beat, buffer_beats)
        super().__init__(
            {
                "i_start": In(1),
                "i_addr": In(ADDR_WIDTH),
                "i_length": In(32),
                "mem": Out(ReadClient(beat)),
                "o_cmd": Out(stream.Signature(isa.CMD_BITS)),
                "o_fetched_all": Out(1),
            }
        )

    @staticmethod
    def buffer_depth(beat: int, buffer_beats: int = 16) -> int:
        """Beats of the command buffer; at most this many beats are requested and not yet
        consumed, so the fetch moves at most ``depth`` beats per DRAM round trip."""
        return max(buffer_beats, 2 * max(1, isa.CMD_BYTES // beat))

    #: Cycles a fetch burst's round trip takes beyond the DRAM latency and its beats: the
    #: request enters the DRAM queue at the clock edge, and a consumed beat frees buffer room
    #: one cycle later (the buffer's registered level).
    request_overhead = 2

    @staticmethod
    def max_burst(beat: int, buffer_beats: int = 16) -> int:
        """Beats of one fetch request (half the buffer, at most `MAX_BURST`)."""
        return min(Fetch.buffer_depth(beat, buffer_beats) // 2, MAX_BURST)

    def elaborate(self, platform):
        m = Module()
        W = self._beat
        buf = fifo.SyncFIFOBuffered(width=8 * W, depth=self._depth)
        m.submodules.buf = buf
        total_beats = Signal(32 + 4, name="fetch_total_beats")
        issued = Signal(32 + 4, name="fetch_issued")
        addr = Signal(ADDR_WIDTH, name="fetch_addr")
        inflight = Signal(range(self._depth + MAX_BURST + 1), name="fetch_inflight")
        cmd_bytes = isa.CMD_BYTES
        with m.If(self.i_start):
            beats = (self.i_length * cmd_bytes + (W - 1)) >> (W.bit_length() - 1)
            m.d.sync += [total_beats.eq(beats), issued.eq(0), addr.eq(self.i_addr)]
        remaining = Signal.like(total_beats)
        m.d.comb += remaining.eq(total_beats - issued)
        room = Signal(range(self._depth + 1))
        m.d.comb += room.eq(self._depth - buf.level - inflight)
        burst = Signal(9)
        max_burst = self.max_burst(W, self._depth)
        m.d.comb += burst.eq(Mux(remaining < max_burst, remaining, max_burst))
        m.d.comb += [
            self.mem.req.valid.eq((remaining != 0) & (room >= burst) & ~self.i_start),
            self.mem.req.payload.addr.eq(addr),
            self.mem.req.payload.len.eq(burst - 1),
            self.mem.req.payload.write.eq(0),
        ]
        got = self.mem.rdata.valid & self.mem.rdata.ready
        sent = self.mem.req.valid & self.mem.req.ready
        m.d.sync += inflight.eq(inflight + Mux(sent, burst, 0) - got)
        with m.If(sent):
            m.d.sync += [issued.eq(issued + burst), addr.eq(addr + burst * W)]
        m.d.comb += [
            buf.w_data.eq(self.mem.rdata.payload),
            buf.w_en.eq(self.mem.rdata.valid),
            self.mem.rdata.ready.eq(buf.w_rdy),
        ]
        m.d.comb += self.o_fetched_all.eq((remaining == 0) & (inflight == 0))

        # beats -> 128-bit commands
        if cmd_bytes <= W:
            per = W // cmd_bytes
            idx = Signal(range(max(per, 2)), name="fetch_split")
            m.d.comb += [
                self.o_cmd.valid.eq(buf.r_rdy),
                self.o_cmd.payload.eq(buf.r_data.word_select(idx, isa.CMD_BITS)),
            ]
            with m.If(self.o_cmd.valid & self.o_cmd.ready):
                if per == 1:
                    m.d.comb += buf.r_en.eq(1)
                else:
                    with m.If(idx == per - 1):
                        m.d.sync += idx.eq(0)
                        m.d.comb += buf.r_en.eq(1)
                    with m.Else():
                        m.d.sync += idx.eq(idx + 1)
            with m.If(self.i_start):
                m.d.sync += idx.eq(0)
        else:
            per = cmd_bytes // W
            parts = Signal(isa.CMD_BITS, name="fetch_parts")
            have = Signal(range(per + 1), name="fetch_have")
            m.d.comb += [self.o_cmd.valid.eq(have == per), self.o_cmd.payload.eq(parts)]
            with m.If(self.o_cmd.valid & self.o_cmd.ready):
                m.d.sync += have.eq(0)
            with m.Elif((have < per) & buf.r_rdy):
                m.d.comb += buf.r_en.eq(1)
                m.d.sync += [
                    parts.eq(Cat(parts[8 * W :], buf.r_data)),
                    have.eq(have + 1),
                ]
            with m.If(self.i_start):
                m.d.sync += have.eq(0)
        return m


class LoadUnit(wiring.Component):
    """Runs LOAD commands: DRAM rows (any address and length) -> zero-padded scratchpad rows.

    Requests are issued per row (a beat-aligned burst covering the row) while earlier rows'
    beats are still arriving; the beats of a row are realigned and written as one scratchpad row.
    A row costs ``ceil((addr % beat + len) / beat)`` beats; aligned rows of one beat run at one
    row per cycle. Zero rows cost one cycle each and no DRAM traffic.
    """

    #: Idle cycles between two commands (a command is taken the cycle after the previous one's
    #: last row request).
    command_gap = 1
    #: Cycles from a row's last beat to the scratchpad write and the token (the row is written
    #: in the cycle its last beat arrives; the token counter sees the push one cycle later).
    receive_latency = 1
    #: Rows requested but not yet written (the descriptor FIFO): how far requests run ahead
    #: of the returning beats.
    row_queue_depth = 32
    #: Cycles a row's round trip takes beyond the DRAM latency: the request enters the DRAM
    #: queue at the clock edge, and a written row frees its descriptor one cycle later.
    request_overhead = 2

    def __init__(self, config: HWConfig, spad_addr_width: int):
        self._cfg = config
        R, W = config.rows, config.dma_beat_bytes
        self._max_beats = (W - 1 + R + W - 1) // W
        super().__init__(
            {
                "i_cmd": In(stream.Signature(isa.CMD_BITS)),
                "mem": Out(ReadClient(W)),
                "o_spad_addr": Out(spad_addr_width),
                "o_spad_data": Out(8 * R),
                "o_spad_en": Out(1),
                "tok_next": Out(TokenPort()),  # pop: e2l (buffer free); push: l2e (loaded)
                "tok_vec": Out(TokenPort()),  # vec=1: pop v2l, push l2v
                "o_busy": Out(1),
                "o_retired": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, W = cfg.rows, cfg.dma_beat_bytes

        def fld(name):
            return isa.hw_field(self.i_cmd.payload, isa.Op.LOAD, name)

        # ---------------------------------------------------- issue: one request per row
        desc_layout = data.StructLayout(
            {"spad": len(self.o_spad_addr), "off": max(1, (W - 1).bit_length()), "len": 8,
             "beats": 3, "zero": 1, "last": 1, "push": 1, "vec": 1}
        )  # fmt: skip
        desc = fifo.SyncFIFOBuffered(width=desc_layout.size, depth=self.row_queue_depth)
        m.submodules.desc = desc
        active = Signal(name="ld_active")
        row = Signal(16, name="ld_row")
        cur = Signal(isa.CMD_BITS, name="ld_cmd")
        dram = Signal(ADDR_WIDTH, name="ld_dram")
        spad = Signal(len(self.o_spad_addr), name="ld_spad")

        def cfld(name):
            return isa.hw_field(cur, isa.Op.LOAD, name)

        avail = Mux(fld("vec"), self.tok_vec.avail, self.tok_next.avail)
        can_start = ~active & self.i_cmd.valid & (~fld("pop_next") | avail)
        m.d.comb += self.i_cmd.ready.eq(can_start)
        with m.If(can_start):
            m.d.comb += [
                self.tok_next.take.eq(fld("pop_next") & ~fld("vec")),
                self.tok_vec.take.eq(fld("pop_next") & fld("vec")),
            ]
            m.d.sync += [
                active.eq(1),
                cur.eq(self.i_cmd.payload),
                row.eq(0),
                dram.eq(fld("dram_addr")),
                spad.eq(fld("spad_addr")),
            ]
        off = Signal(max(1, (W - 1).bit_length()), name="ld_off")
        m.d.comb += off.eq(dram[: max(1, (W - 1).bit_length())] if W > 1 else 0)
        nbeats = Signal(4, name="ld_nbeats")
        m.d.comb += nbeats.eq(_beats_for(off, cfld("len"), W))
        last_row = Signal(name="ld_last_row")
        m.d.comb += last_row.eq(row == cfld("rows") - 1)
        entry = Signal(desc_layout)
        m.d.comb += [
            entry.spad.eq(spad), entry.off.eq(off), entry.len.eq(cfld("len")),
            entry.beats.eq(Mux(cfld("zero"), 0, nbeats)), entry.zero.eq(cfld("zero")),
            entry.last.eq(last_row), entry.push.eq(cfld("push_next")), entry.vec.eq(cfld("vec")),
        ]  # fmt: skip
        need_req = ~cfld("zero")
        m.d.comb += [
            self.mem.req.payload.addr.eq(Cat(Const(0, max(0, (W - 1).bit_length())),
                                             dram[(W - 1).bit_length():])),
            self.mem.req.payload.len.eq(nbeats - 1),
            self.mem.req.payload.write.eq(0),
        ]  # fmt: skip
        step = Signal(name="ld_step")
        m.d.comb += [
            self.mem.req.valid.eq(active & need_req & desc.w_rdy),
            step.eq(active & desc.w_rdy & (~need_req | self.mem.req.ready)),
            desc.w_en.eq(step),
            desc.w_data.eq(entry.as_value()),
        ]
        with m.If(step):
            m.d.sync += [
                row.eq(row + 1),
                dram.eq(dram + cfld("stride")),
                spad.eq(spad + 1),
            ]
            with m.If(last_row):
                m.d.sync += active.eq(0)

        # ---------------------------------------------------- receive: realign, write a row
        head = data.View(desc_layout, desc.r_data)
        got = Signal(3, name="ld_got")
        beats_buf = [Signal(8 * W, name=f"ld_beat{j}") for j in range(self._max_beats)]
        beat_in = self.mem.rdata.valid & desc.r_rdy & ~head.zero
        m.d.comb += self.mem.rdata.ready.eq(desc.r_rdy & ~head.zero)
        row_done = Signal(name="ld_row_done")
        m.d.comb += row_done.eq(desc.r_rdy & (head.zero | (beat_in & (got == head.beats - 1))))
        with m.If(beat_in):
            for j in range(self._max_beats):
                with m.If(got == j):
                    m.d.sync += beats_buf[j].eq(self.mem.rdata.payload)
            m.d.sync += got.eq(Mux(row_done, 0, got + 1))
        # the full window including the beat arriving this cycle
        window = Signal(8 * W * self._max_beats, name="ld_window")
        parts = []
        for j in range(self._max_beats):
            parts.append(Mux((got == j) & beat_in, self.mem.rdata.payload, beats_buf[j]))
        m.d.comb += window.eq(Cat(*parts))
        shifted = Signal(8 * R, name="ld_shifted")
        m.d.comb += shifted.eq(window >> (head.off * 8))
        mask = Signal(8 * R, name="ld_mask")
        for b in range(R):
            m.d.comb += mask[8 * b : 8 * b + 8].eq(Mux(b < head.len, 0xFF, 0))
        m.d.comb += [
            self.o_spad_en.eq(row_done),
            self.o_spad_addr.eq(head.spad),
            self.o_spad_data.eq(Mux(head.zero, 0, shifted & mask)),
            desc.r_en.eq(row_done),
            self.tok_next.give.eq(row_done & head.last & head.push & ~head.vec),
            self.tok_vec.give.eq(row_done & head.last & head.push & head.vec),
            self.o_retired.eq(row_done & head.last),
            self.o_busy.eq(active | desc.r_rdy),
        ]
        return m


def _requant_lane(m: Module, acc, mult, shift, zp, lo, hi, c, stages=None):
    """``clamp(((acc * mult + R) >> shift) + zp, lo, hi)``, ``R = 1 << (shift - 1)`` (0 if 0).

    Every intermediate fits 64 bits, so Verilator evaluates it with scalar arithmetic:

    * ``P = acc * mult`` (signed 32 x 32, ``|P| <= 2**62``).
    * ``shift == 0``: ``P``. For ``shift >= 1``, with ``P = 2q + b``, ``(P + 2**(S-1)) >> S ==
      (q + R') >> (S - 1)`` where ``R' = b`` for ``S == 1`` and ``2**(S-2)`` for ``S >= 2``
      (adding ``b < 2`` to an even number does not cross a multiple of ``2**S``);
      ``|q + R'| < 2**62``.
    * The shifted value is saturated to 11 bits before adding ``zp``: any value beyond the
      int8 range of ``lo``/``hi`` clamps to the same bound either way.

    ``stages``: ``None`` for one combinational lane; or the three enables of a pipelined lane
    (``REQUANT_STAGES`` registers: the product, the shifted value, the value before the
    clamp, each loaded when its enable is high). Besides cutting the multiply-shift-clamp path,
    registers let a simulator skip the lane while it is idle: Verilator evaluates every
    combinational node every cycle.
    """

    def point(name, shape, value, k):
        sig = Signal(shape, name=f"{name}_{c}")
        if stages is None:
            m.d.comb += sig.eq(value)
        else:
            with m.If(stages[k]):
                m.d.sync += sig.eq(value)
        return sig

    prod = point("rq_prod", signed(64), acc * mult, 0)
    half = prod >> 1
    # 2**(S-2) for S >= 2, P[0] for S == 1
    rnd = Mux(shift == 1, prod[0], Const(1 << 62, 63) >> (64 - shift)[:6])
    sum_ = (half + rnd)[:64].as_signed()
    sh = point("rq_sh", signed(64), Mux(shift == 0, prod, sum_ >> (shift - 1)[:6]), 1)
    sat = Mux(sh > 1023, 1023, Mux(sh < -1024, -1024, sh[:11].as_signed()))
    v = point("rq_v", signed(12), sat + zp, 2)
    y = Signal(signed(8), name=f"rq_y_{c}")
    m.d.comb += y.eq(Mux(v < lo, lo, Mux(v > hi, hi, v)))
    return y


#: Registers of a pipelined requantization lane (see `_requant_lane`).
REQUANT_STAGES = 3


class StoreUnit(wiring.Component):
    """Runs STORE, CFG_QUANT and CFG_STORE: accumulator rows -> requantize -> DRAM rows.

    ``y = clamp(((acc * M + R) >> S) + zp, lo, hi)`` per column (``docs/requant.md``). Rows are
    written as beat-aligned bursts with byte strobes, one request per row, pipelined. A STORE with
    ``vec=1`` reads int8 scratchpad rows (the vector unit's results) and writes them unchanged.
    """

    #: Idle cycles between two STOREs (a STORE is taken the cycle after the previous one's
    #: last accumulator read).
    command_gap = 1
    #: Stages between an accumulator read and its row's write request (the read, the
    #: requantization's registers, the row register).
    pipeline_latency = 2 + REQUANT_STAGES

    def __init__(self, config: HWConfig, acc_addr_width: int, spad_addr_width: int = 1):
        self._cfg = config
        C, W = config.cols, config.dma_beat_bytes
        self._row_bytes = max(C, config.rows)
        self._max_beats = (W - 1 + self._row_bytes + W - 1) // W
        super().__init__(
            {
                "i_cmd": In(stream.Signature(isa.CMD_BITS)),
                "req": Out(stream.Signature(mem_req_layout())),
                "wdata": Out(stream.Signature(mem_w_layout(W))),
                "o_acc_addr": Out(acc_addr_width),
                "o_acc_en": Out(1),
                "i_acc_data": In(data.ArrayLayout(signed(config.acc_width), C)),
                "o_spad_addr": Out(spad_addr_width),
                "o_spad_en": Out(1),
                "i_spad_data": In(8 * config.rows),
                "tok_prev": Out(TokenPort()),  # pop: e2s (results ready); push: s2e (acc free)
                "tok_vec": Out(TokenPort()),  # STORE vec=1: pop v2s, push s2v
                "o_busy": Out(1),
                "o_retired": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        C, W = cfg.cols, cfg.dma_beat_bytes
        RB = self._row_bytes
        Q, CS, ST = isa.Op.CFG_QUANT, isa.Op.CFG_STORE, isa.Op.STORE
        get = isa.hw_field

        # requant tables
        mult = [Signal(signed(32), name=f"rq_mult_{c}") for c in range(C)]
        shift = [Signal(6, name=f"rq_shift_{c}") for c in range(C)]
        zp = Signal(signed(8), name="rq_zp")
        lo = Signal(signed(8), init=-128, name="rq_lo")
        hi = Signal(signed(8), init=127, name="rq_hi")

        # ---------------------------------------------------- command front end
        cmd = self.i_cmd.payload
        op = get(cmd, isa.Op.NOP, "op")
        pop = cmd[4]
        active = Signal(name="st_active")
        c_vec = (op == ST) & get(cmd, ST, "vec")
        can_take = (
            ~active
            & self.i_cmd.valid
            & (~pop | Mux(c_vec, self.tok_vec.avail, self.tok_prev.avail))
        )
        cur = Signal(isa.CMD_BITS, name="st_cmd")
        row = Signal(16, name="st_row")
        is_store = op == isa.Op.STORE
        # config commands wait for the store pipeline to drain (they change the tables)
        idle_pipe = Signal(name="st_idle_pipe")
        m.d.comb += self.i_cmd.ready.eq(can_take & (is_store | idle_pipe))
        take = self.i_cmd.valid & self.i_cmd.ready
        with m.If(take):
            m.d.comb += [self.tok_prev.take.eq(pop & ~c_vec), self.tok_vec.take.eq(pop & c_vec)]
            with m.If(op == isa.Op.CFG_QUANT):
                col = get(cmd, Q, "col")
                for c in range(C):
                    with m.If(col == c):
                        m.d.sync += [mult[c].eq(get(cmd, Q, "multiplier")),
                                     shift[c].eq(get(cmd, Q, "shift"))]  # fmt: skip
            with m.Elif(op == isa.Op.CFG_STORE):
                m.d.sync += [zp.eq(get(cmd, CS, "zero_point")), lo.eq(get(cmd, CS, "lo")),
                             hi.eq(get(cmd, CS, "hi"))]  # fmt: skip
            with m.Elif(is_store):
                m.d.sync += [active.eq(1), cur.eq(cmd), row.eq(0)]
        cfg_push = Signal(name="st_cfg_push")
        m.d.comb += cfg_push.eq(take & ~is_store & cmd[6])

        # ---------------------------------------------------- stage 0: read accumulator row
        acc_base = get(cur, ST, "acc_addr")
        rows = get(cur, ST, "rows")
        # row FIFO after requant holds the bytes; keep reads bounded by its free space
        out_layout = data.StructLayout(
            {"bytes": 8 * RB, "addr": ADDR_WIDTH, "len": 8, "last": 1, "push": 1, "vec": 1}
        )
        rowq = fifo.SyncFIFOBuffered(width=out_layout.size, depth=6 + self.pipeline_latency)
        m.submodules.rowq = rowq
        in_pipe = Signal(range(self.pipeline_latency + 1), name="st_in_pipe")  # rows in flight
        read_ok = active & (rowq.level + in_pipe < rowq.depth - 1)
        cur_vec = get(cur, ST, "vec")
        m.d.comb += [
            self.o_acc_addr.eq(acc_base + row),
            self.o_acc_en.eq(read_ok & ~cur_vec),
            self.o_spad_addr.eq(get(cur, ST, "spad_addr") + row),
            self.o_spad_en.eq(read_ok & cur_vec),
        ]
        dram_row = Signal(ADDR_WIDTH, name="st_dram_row")
        with m.If(take & is_store):
            m.d.sync += dram_row.eq(get(cmd, ST, "dram_addr"))
        s1_valid = Signal(name="st_s1_valid")
        s1_addr = Signal(ADDR_WIDTH, name="st_s1_addr")
        s1_last = Signal(name="st_s1_last")
        m.d.sync += s1_valid.eq(read_ok)
        with m.If(read_ok):
            m.d.sync += [
                row.eq(row + 1),
                dram_row.eq(dram_row + get(cur, ST, "stride")),
                s1_addr.eq(dram_row),
                s1_last.eq(row == rows - 1),
            ]
            with m.If(row == rows - 1):
                m.d.sync += active.eq(0)
        s1_len = Signal(8, name="st_s1_len")
        s1_push = Signal(name="st_s1_push")
        s1_vec = Signal(name="st_s1_vec")
        with m.If(read_ok):
            m.d.sync += [s1_len.eq(get(cur, ST, "len")), s1_push.eq(cur[6]), s1_vec.eq(cur_vec)]

        # ---------------------------------------------------- stage 1: requantize (pipelined)
        # the row's fields (and a vec row's bytes) travel beside the requantization registers
        meta_layout = data.StructLayout(
            {"spad": 8 * cfg.rows, "addr": ADDR_WIDTH, "len": 8, "last": 1, "push": 1, "vec": 1}
        )
        meta = Signal(meta_layout, name="st_rq_meta_in")
        m.d.comb += [
            meta.spad.eq(self.i_spad_data),
            meta.addr.eq(s1_addr),
            meta.len.eq(s1_len),
            meta.last.eq(s1_last),
            meta.push.eq(s1_push),
            meta.vec.eq(s1_vec),
        ]
        valid = [s1_valid]
        for k in range(REQUANT_STAGES):
            v_next = Signal(name=f"st_rq_valid_{k}")
            meta_next = Signal(meta_layout, name=f"st_rq_meta_{k}")
            m.d.sync += v_next.eq(valid[-1])
            with m.If(valid[-1]):
                m.d.sync += meta_next.eq(meta)
            valid.append(v_next)
            meta = meta_next
        ys = []
        for c in range(C):
            ys.append(
                _requant_lane(
                    m, self.i_acc_data[c], mult[c], shift[c], zp, lo, hi, c, stages=valid[:-1]
                )
            )
        s2 = Signal(out_layout, name="st_s2")
        s2_valid = Signal(name="st_s2_valid")
        m.d.sync += s2_valid.eq(valid[-1])
        with m.If(valid[-1]):
            m.d.sync += [
                s2.bytes.eq(Mux(meta.vec, meta.spad, Cat(*ys))),
                s2.addr.eq(meta.addr),
                s2.len.eq(meta.len),
                s2.last.eq(meta.last),
                s2.push.eq(meta.push),
                s2.vec.eq(meta.vec),
            ]
        m.d.comb += [rowq.w_en.eq(s2_valid), rowq.w_data.eq(s2.as_value())]
        m.d.comb += in_pipe.eq(sum(valid) + s2_valid)

        # ---------------------------------------------------- stage 2: request + beats
        head = data.View(out_layout, rowq.r_data)
        obits = max(1, (W - 1).bit_length())
        off = head.addr[:obits] if W > 1 else Const(0, 1)
        nbeats = Signal(4, name="st_nbeats")
        m.d.comb += nbeats.eq(_beats_for(off, head.len, W))
        req_sent = Signal(name="st_req_sent")
        beat = Signal(3, name="st_beat")
        window = Signal(8 * W * self._max_beats, name="st_window")
        m.d.comb += window.eq(head.bytes << (off * 8))
        strb_all = Signal(W * self._max_beats, name="st_strb")
        lenmask = Signal(W * self._max_beats, name="st_lenmask")
        for b in range(W * self._max_beats):
            m.d.comb += lenmask[b].eq(b < head.len)
        m.d.comb += strb_all.eq(lenmask << off)
        # completion tracking: beats of rows whose request was sent
        m.d.comb += [
            self.req.valid.eq(rowq.r_rdy & ~req_sent),
            self.req.payload.addr.eq(Cat(Const(0, obits) if W > 1 else Const(0, 0),
                                         head.addr[obits if W > 1 else 0:])),
            self.req.payload.len.eq(nbeats - 1),
            self.req.payload.write.eq(1),
        ]  # fmt: skip
        req_now = self.req.valid & self.req.ready
        m.d.comb += [
            self.wdata.valid.eq(rowq.r_rdy & (req_sent | req_now)),
            self.wdata.payload.data.eq(window.word_select(beat, 8 * W)),
            self.wdata.payload.strb.eq(strb_all.word_select(beat, W)),
        ]
        beat_fire = self.wdata.valid & self.wdata.ready
        row_written = beat_fire & (beat == nbeats - 1)
        with m.If(req_now):
            m.d.sync += req_sent.eq(1)
        with m.If(beat_fire):
            m.d.sync += beat.eq(Mux(row_written, 0, beat + 1))
        with m.If(row_written):
            m.d.sync += req_sent.eq(0)
        m.d.comb += rowq.r_en.eq(row_written)
        m.d.comb += [
            self.tok_prev.give.eq((row_written & head.last & head.push & ~head.vec) | cfg_push),
            self.tok_vec.give.eq(row_written & head.last & head.push & head.vec),
            self.o_retired.eq((row_written & head.last) | take & ~is_store),
        ]
        m.d.comb += idle_pipe.eq(~active & ~in_pipe.any() & ~rowq.r_rdy)
        m.d.comb += self.o_busy.eq(~idle_pipe)
        return m
