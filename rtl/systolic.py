"""Processing element and systolic array generators.

The array computes ``C = A @ B`` on signed integers in two dataflows:

**Weight-stationary (ws).** A tile of weights ``B[k, n]`` (``k < rows``, ``n < cols``) is preloaded
into the PEs; activation rows ``A[m, :]`` then stream in, one row of ``rows`` operands per cycle,
and each cycle one output row ``C[m, :]`` of ``cols`` accumulators leaves the bottom. Every PE holds
two weight buffers: the next tile preloads while the current one streams, and the buffer select
travels with each activation through the skew, so consecutive tiles need no idle cycle between them.

**Output-stationary (os).** Every cycle one column of ``A`` (``A[:, k]``, ``rows`` operands) and one
row of ``B`` (``B[k, :]``, ``cols`` operands) enter; PE ``(r, c)`` accumulates ``C[r, c]`` over a
reduction of any length ``K``. After the tile's last beat the array waits for the last products to
land and reads the accumulators out one row per cycle, bottom row first, through a row-select
multiplexer per column.

Inside the mesh data moves in lockstep; all flow control lives at the edges (a single mesh enable
drops when the output is back-pressured).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import HWConfig
from .util import pick

__all__ = ["PE", "SystolicArray"]


class PE(wiring.Component):
    """One multiply-accumulate processing element.

    Parameters
    ----------
    input_width, weight_width, acc_width : int
        Signed operand and accumulator widths.
    ws, os : bool
        Which dataflows to generate hardware for.

    Members
    -------
    i_a, i_sel, i_first : In
        Activation entering from the left with its weight-buffer select (ws) and first-of-tile
        flag (os). Registered to ``o_a``, ``o_sel``, ``o_first`` for the PE on the right.
    i_b : In
        Weight operand entering from above (os), registered to ``o_b``.
    i_psum : In
        Partial sum from above (ws).
    o_psum : Out
        This PE's ws accumulator register, passed down the column.
    o_acc : Out
        This PE's os accumulator register, read out by the array.
    i_w0, i_w1, i_shift0, i_shift1 : In
        Weight preload chains: when ``i_shiftN`` is high, buffer N takes ``i_wN`` (from above).
    o_w0, o_w1 : Out
        Weight buffers, passed to the PE below.
    i_en : In
        Mesh enable (all data registers hold while low).
    i_ws_en, i_os_en : In
        ``i_en`` gated by the dataflow (ws or os), formed once by the array: each
        mode's registers and accumulator update sit behind their own enable, so the other
        mode's datapath is not evaluated at all in simulation.

    The PE has one cycle of latency in each direction: an operand entering at cycle t leaves
    at t + 1, and the sum ``i_psum + i_a * w`` is visible on ``o_psum`` at t + 1.

    In ``dataflow="both"`` each mode has its own accumulator, behind its own enable and with its
    own product (a product shared by the two modes is a combinational node, which Verilator
    evaluates every cycle whatever the mode). The ws accumulator adds the partial sum from above
    (``acc <= i_psum + a * w``) and is read only by the PE below; the os accumulator adds to
    itself (``acc_os <= (first ? 0 : acc_os) + a * b``, no reset) and is read only by the
    array's read-out multiplexer, which is combinational (``os_out_*``, kept as a variable in
    Verilator builds by ``tb/runner.py``). Neither register is then both read by another
    register and updated from its own value, which is what makes Verilator keep a shadow copy of
    a register (copied in and out every cycle) instead of updating it in place. With one
    accumulator serving both modes (os self-accumulation plus the ws partial-sum chain, and an
    os drain shifting down the columns) every one of the 256 accumulators of ``default`` was
    shadowed: about 2k simulator instructions per cycle (``python -m tb.profile``).
    """

    latency = 1

    def __init__(self, *, input_width: int, weight_width: int, acc_width: int, ws: bool, os: bool):
        self._iw, self._ww, self._aw = input_width, weight_width, acc_width
        self._ws, self._os = ws, os
        super().__init__(
            {
                "i_a": In(signed(input_width)),
                "i_sel": In(1),
                "i_first": In(1),
                "o_a": Out(signed(input_width)),
                "o_sel": Out(1),
                "o_first": Out(1),
                "i_b": In(signed(weight_width)),
                "o_b": Out(signed(weight_width)),
                "i_psum": In(signed(acc_width)),
                "o_psum": Out(signed(acc_width)),
                "o_acc": Out(signed(acc_width)),
                "i_w0": In(signed(weight_width)),
                "i_w1": In(signed(weight_width)),
                "i_shift0": In(1),
                "i_shift1": In(1),
                "o_w0": Out(signed(weight_width)),
                "o_w1": Out(signed(weight_width)),
                "i_en": In(1),
                "i_ws_en": In(1),
                "i_os_en": In(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        aw = self._aw
        a = Signal(signed(self._iw), name="a")
        sel = Signal(name="sel")
        first = Signal(name="first")
        m.d.comb += [self.o_a.eq(a), self.o_sel.eq(sel), self.o_first.eq(first)]
        with m.If(self.i_en):
            m.d.sync += a.eq(self.i_a)

        def product(rhs, name):
            # Formed at the accumulator's width (the activation sign-extended first): the same
            # multiplier, but simulators compute one full-width signed multiply instead of a
            # narrow one whose result is sign-extended again for the accumulate.
            a_wide = Signal(signed(aw - self._ww), name=f"a_wide_{name}")
            prod = Signal(signed(aw), name=f"prod_{name}")
            m.d.comb += [a_wide.eq(self.i_a), prod.eq(a_wide * rhs)]
            return prod

        both = self._ws and self._os
        ws_en = self.i_ws_en if both else self.i_en
        os_en = self.i_os_en if both else self.i_en
        if self._ws:
            acc = Signal(signed(aw), name="acc")
            m.d.comb += self.o_psum.eq(acc)
            w0 = Signal(signed(self._ww), name="w0")
            w1 = Signal(signed(self._ww), name="w1")
            m.d.comb += [self.o_w0.eq(w0), self.o_w1.eq(w1)]
            with m.If(self.i_shift0):
                m.d.sync += w0.eq(self.i_w0)
            with m.If(self.i_shift1):
                m.d.sync += w1.eq(self.i_w1)
            prod_ws = product(Mux(self.i_sel, w1, w0), "ws")
            # sel only matters in ws (first and b only in os): each holds in the other mode,
            # where the array's edges feed it a constant it already holds (use_buf; zeros)
            with m.If(ws_en):
                m.d.sync += [sel.eq(self.i_sel), acc.eq((self.i_psum + prod_ws)[:aw])]
        if self._os:
            # no reset: the first beat of every tile starts it afresh (and Verilator would
            # otherwise have to keep a shadow copy of it, see above)
            acc_os = Signal(signed(aw), name="acc_os", reset_less=True)
            m.d.comb += self.o_acc.eq(acc_os)
            b = Signal(signed(self._ww), name="b")
            m.d.comb += self.o_b.eq(b)
            prod_os = product(self.i_b, "os")
            with m.If(os_en):
                m.d.sync += [
                    first.eq(self.i_first),
                    b.eq(self.i_b),
                    acc_os.eq((Mux(self.i_first, 0, acc_os) + prod_os)[:aw]),
                ]
        return m


def _delay(m: Module, sig, depth: int, en, name: str):
    """``depth`` enabled registers after ``sig``; returns the last one (or ``sig`` if 0)."""
    cur = sig
    for i in range(depth):
        reg = Signal.like(sig, name=f"{name}_d{i}")
        with m.If(en):
            m.d.sync += reg.eq(cur)
        cur = reg
    return cur


class SystolicArray(wiring.Component):
    """A ``rows`` x ``cols`` systolic array of :class:`PE` with stream ports.

    Parameters
    ----------
    config : HWConfig
        Array size, operand and accumulator widths and dataflow(s).

    Members
    -------
    i_weight : In(stream.Signature(ArrayLayout(signed(weight_width), cols)))
        ws: a weight tile, ``rows`` beats, **last row first** (beat j carries ``B[rows-1-j, :]``;
        pad unused rows and columns with zeros). Preloads into the idle buffer while the other one
        computes. os: ``B[k, :]``, one beat per reduction step, transferred together with
        ``i_act``.
    i_act : In(stream.Signature(StructLayout({"data": ArrayLayout(signed(input_width), rows),
    "last": 1})))
        ws: activation rows ``A[m, :]`` (any number); ``last`` ends the tile and releases its
        weight buffer. os: ``A[:, k]`` columns; ``last`` marks the final reduction step.
    o_out : Out(stream.Signature(StructLayout({"data": ArrayLayout(signed(acc_width), cols),
    "last": 1})))
        ws: ``C[m, :]`` in input order. os: ``rows`` beats, ``C[rows-1, :]`` first.
        Back-pressure stalls the whole mesh.
    i_os : In(1)
        Present only for ``dataflow="both"``: 1 selects output-stationary. Change it only while
        ``o_idle`` is high.
    o_idle : Out(1)
        No tile is loaded, in flight or draining.

    Timing (every figure is a property, read by the cost model):

    * ws: the first activation of a tile is accepted ``preload_latency`` cycles after the first
      weight beat; an activation accepted at cycle t leaves ``ws_latency`` cycles later
      (``ws_fill_latency + ws_drain_latency``); one row per cycle.
    * os: after the tile's last beat the array waits ``os_fill_latency`` cycles, then drains
      ``os_drain_latency`` rows, one per cycle; the next tile is accepted on the cycle after.
    """

    def __init__(self, config: HWConfig):
        if not isinstance(config, HWConfig):
            raise TypeError(f"config must be an HWConfig, not {config!r}")
        self._cfg = config
        R, C = config.rows, config.cols
        act_layout = data.StructLayout(
            {"data": data.ArrayLayout(signed(config.input_width), R), "last": 1}
        )
        out_layout = data.StructLayout(
            {"data": data.ArrayLayout(signed(config.acc_width), C), "last": 1}
        )
        members = {
            "i_weight": In(stream.Signature(data.ArrayLayout(signed(config.weight_width), C))),
            "i_act": In(stream.Signature(act_layout)),
            "o_out": Out(stream.Signature(out_layout)),
            "o_idle": Out(1),
        }
        if config.dataflow == "both":
            members["i_os"] = In(1)
        super().__init__(members)

    @classmethod
    def timing(cls, config: HWConfig) -> SystolicArray:
        """An instance used only to read its timing properties (never elaborated)."""
        arr = cls(config)
        arr._MustUse__silence = True  # Amaranth: not a forgotten elaboratable
        return arr

    # ------------------------------------------------------------------ timing API
    @property
    def config(self) -> HWConfig:
        return self._cfg

    @property
    def rows(self) -> int:
        return self._cfg.rows

    @property
    def cols(self) -> int:
        return self._cfg.cols

    @property
    def preload_latency(self) -> int:
        """ws: cycles from the first weight beat of a tile until its first activation can enter."""
        return self.rows

    @property
    def ws_fill_latency(self) -> int:
        """ws: input register + skew + column of PEs: cycles for a row to reach the bottom row."""
        return self.rows * PE.latency

    @property
    def ws_drain_latency(self) -> int:
        """ws: cycles to cross the columns and the output de-skew."""
        return self.cols * PE.latency

    @property
    def ws_latency(self) -> int:
        """ws: cycles from an activation's acceptance to its output row being valid."""
        return self.ws_fill_latency + self.ws_drain_latency

    @property
    def os_fill_latency(self) -> int:
        """os: cycles after the tile's last beat before the first output row is valid."""
        return (self.rows + self.cols) * PE.latency - 1

    @property
    def os_drain_latency(self) -> int:
        """os: output rows drained per tile (one per cycle)."""
        return self.rows

    # ------------------------------------------------------------------ hardware
    def elaborate(self, platform):
        cfg = self._cfg
        R, C = cfg.rows, cfg.cols
        ws_hw, os_hw = cfg.has_ws, cfg.has_os
        m = Module()

        if cfg.dataflow == "both":
            mode_os = self.i_os
        else:
            mode_os = Const(int(cfg.dataflow == "os"), 1)

        # The PEs read the mode from a register, so their datapath depends on state only
        # (Verilator re-evaluates logic fed by top-level inputs on every eval); i_os may only
        # change while o_idle is high, so the one-cycle lag is not observable.
        if cfg.dataflow == "both":
            mesh_os = Signal(name="mesh_os")
            m.d.sync += mesh_os.eq(mode_os)
        else:
            mesh_os = mode_os
        en = Signal(name="mesh_en")
        ws_en = Signal(name="mesh_ws_en")
        os_en = Signal(name="mesh_os_en")
        m.d.comb += [ws_en.eq(en & ~mesh_os), os_en.eq(en & mesh_os)]
        pes = [
            [
                PE(
                    input_width=cfg.input_width,
                    weight_width=cfg.weight_width,
                    acc_width=cfg.acc_width,
                    ws=ws_hw,
                    os=os_hw,
                )
                for c in range(C)
            ]
            for r in range(R)
        ]
        for r in range(R):
            for c in range(C):
                m.submodules[f"pe_{r}_{c}"] = pe = pes[r][c]
                m.d.comb += [
                    pe.i_en.eq(en),
                    pe.i_ws_en.eq(ws_en),
                    pe.i_os_en.eq(os_en),
                ]
                if c > 0:
                    left = pes[r][c - 1]
                    m.d.comb += [
                        pe.i_a.eq(left.o_a),
                        pe.i_sel.eq(left.o_sel),
                        pe.i_first.eq(left.o_first),
                    ]
                if r > 0:
                    up = pes[r - 1][c]
                    m.d.comb += [pe.i_psum.eq(up.o_psum), pe.i_b.eq(up.o_b)]
                    m.d.comb += [pe.i_w0.eq(up.o_w0), pe.i_w1.eq(up.o_w1)]

        # ---------------------------------------------------------- control state
        load_buf = Signal(name="ws_load_buf")  # buffer the next preload writes
        use_buf = Signal(name="ws_use_buf")  # buffer the next activation tile reads
        loaded = Signal(2, name="ws_loaded")
        inflight_w = (R + C + 2).bit_length()
        inflight = [Signal(inflight_w, name=f"ws_inflight_{b}") for b in range(2)]
        wcount = Signal(range(max(R, 2)), name="ws_preload_count")
        first_pending = Signal(init=1, name="os_first_pending")

        # ---------------------------------------------------------- input edge
        # Row r of the accepted activations enters PE (r, 0) through r + 1 skew registers.
        # Cycles without a transfer inject zeros, which leave os accumulators unchanged.
        take = Signal(name="act_take")
        m.d.comb += take.eq(self.i_act.valid & self.i_act.ready)
        entry_sel = Signal(name="entry_sel")
        entry_first = Signal(name="entry_first")
        m.d.comb += [entry_sel.eq(use_buf), entry_first.eq(take & mode_os & first_pending)]
        for r in range(R):
            entry_a = Signal(signed(cfg.input_width), name=f"entry_a_{r}")
            m.d.comb += entry_a.eq(Mux(take, self.i_act.payload.data[r], 0))
            skewed = _delay(m, Cat(entry_a, entry_sel, entry_first), r + 1, en, f"skew_a_{r}")
            m.d.comb += [
                pes[r][0].i_a.eq(skewed[: cfg.input_width]),
                pes[r][0].i_sel.eq(skewed[cfg.input_width]),
                pes[r][0].i_first.eq(skewed[cfg.input_width + 1]),
            ]

        # token pipeline: (valid, last, sel), ws_latency stages, moves with the mesh
        tok_in = Signal(3, name="tok_in")
        m.d.comb += tok_in.eq(Cat(take & ~mode_os, self.i_act.payload.last, use_buf))
        tok_out = _delay(m, tok_in, self.ws_latency, en, "tok") if ws_hw else Const(0, 3)
        tok_valid, tok_last, tok_sel = tok_out[0], tok_out[1], tok_out[2]

        # output de-skew (ws): column c waits cols-1-c cycles so a row leaves at once
        deskewed = []
        for c in range(C):
            if ws_hw:
                deskewed.append(_delay(m, pes[R - 1][c].o_psum, C - 1 - c, en, f"deskew_{c}"))
            else:
                deskewed.append(pes[R - 1][c].o_psum)

        # ---------------------------------------------------------- os control
        RUN, WAIT, DRAIN = 0, 1, 2
        os_state = Signal(2, name="os_state")
        os_count = Signal(
            range(max(self.os_fill_latency, self.os_drain_latency) + 1), name="os_count"
        )

        out_fire = Signal(name="out_fire")
        m.d.comb += out_fire.eq(self.o_out.valid & self.o_out.ready)

        with m.If(mode_os):
            # ------------------------------------------------ output-stationary
            m.d.comb += [
                self.i_act.ready.eq((os_state == RUN) & self.i_weight.valid),
                self.i_weight.ready.eq((os_state == RUN) & self.i_act.valid),
                self.o_out.valid.eq(os_state == DRAIN),
                self.o_out.payload.last.eq(os_count == self.os_drain_latency - 1),
                en.eq((os_state != DRAIN) | self.o_out.ready),
                self.o_idle.eq((os_state == RUN) & first_pending),
            ]
            # read-out: row R-1-os_count of the os accumulators (only zeros move through the
            # mesh while it drains, which leave the accumulators unchanged)
            for c in range(C):
                rows = [pes[R - 1 - k][c].o_acc for k in range(R)]
                os_out = Signal(signed(cfg.acc_width), name=f"os_out_{c}")
                m.d.comb += os_out.eq(pick(rows, os_count))
                m.d.comb += self.o_out.payload.data[c].eq(os_out)
            with m.If(os_state == RUN):
                with m.If(take):
                    m.d.sync += first_pending.eq(self.i_act.payload.last)
                    with m.If(self.i_act.payload.last):
                        m.d.sync += [os_state.eq(WAIT), os_count.eq(self.os_fill_latency)]
            with m.Elif(os_state == WAIT):
                with m.If(os_count == 1):
                    m.d.sync += [os_state.eq(DRAIN), os_count.eq(0)]
                with m.Else():
                    m.d.sync += os_count.eq(os_count - 1)
            with m.Elif(out_fire):  # DRAIN
                with m.If(os_count == self.os_drain_latency - 1):
                    m.d.sync += [os_state.eq(RUN), os_count.eq(0)]
                with m.Else():
                    m.d.sync += os_count.eq(os_count + 1)
        with m.Else():
            # ------------------------------------------------ weight-stationary
            can_preload = ~loaded.bit_select(load_buf, 1) & (
                Mux(load_buf, inflight[1], inflight[0]) == 0
            )
            m.d.comb += [
                self.i_weight.ready.eq(can_preload),
                self.i_act.ready.eq(loaded.bit_select(use_buf, 1) & en),
                self.o_out.valid.eq(tok_valid),
                self.o_out.payload.last.eq(tok_last),
                en.eq(~(self.o_out.valid & ~self.o_out.ready)),
                self.o_idle.eq((loaded == 0) & (inflight[0] == 0) & (inflight[1] == 0)),
            ]
            for c in range(C):
                m.d.comb += self.o_out.payload.data[c].eq(deskewed[c])

            w_fire = Signal(name="w_fire")
            m.d.comb += w_fire.eq(self.i_weight.valid & self.i_weight.ready)
            for c in range(C):
                m.d.comb += [
                    pes[0][c].i_w0.eq(self.i_weight.payload[c]),
                    pes[0][c].i_w1.eq(self.i_weight.payload[c]),
                ]
            for r in range(R):
                for c in range(C):
                    m.d.comb += [
                        pes[r][c].i_shift0.eq(w_fire & (load_buf == 0)),
                        pes[r][c].i_shift1.eq(w_fire & (load_buf == 1)),
                    ]
            with m.If(w_fire):
                with m.If(wcount == R - 1):
                    m.d.sync += [
                        wcount.eq(0),
                        load_buf.eq(~load_buf),
                        loaded.bit_select(load_buf, 1).eq(1),
                    ]
                with m.Else():
                    m.d.sync += wcount.eq(wcount + 1)
            with m.If(take & self.i_act.payload.last):
                m.d.sync += [loaded.bit_select(use_buf, 1).eq(0), use_buf.eq(~use_buf)]
            for b in range(2):
                inc = take & (use_buf == b)
                dec = out_fire & (tok_sel == b)
                with m.If(inc & ~dec):
                    m.d.sync += inflight[b].eq(inflight[b] + 1)
                with m.Elif(dec & ~inc):
                    m.d.sync += inflight[b].eq(inflight[b] - 1)

        if os_hw:
            # os: B[k, :] enters column c through c + 1 skew registers (like row r of A)
            # in ws the skew holds its zeros instead of shifting them (see PE)
            b_en = en & mode_os if cfg.dataflow == "both" else en
            w_take = Signal(name="os_w_take")
            m.d.comb += w_take.eq(self.i_weight.valid & self.i_weight.ready & mode_os)
            for c in range(C):
                entry_b = Signal(signed(cfg.weight_width), name=f"entry_b_{c}")
                m.d.comb += entry_b.eq(Mux(w_take, self.i_weight.payload[c], 0))
                m.d.comb += pes[0][c].i_b.eq(_delay(m, entry_b, c + 1, b_en, f"skew_b_{c}"))
        if not ws_hw:
            # ws-only signals still exist in the PE ports; tie them off
            for r in range(R):
                for c in range(C):
                    m.d.comb += [pes[r][c].i_shift0.eq(0), pes[r][c].i_shift1.eq(0)]
        return m
