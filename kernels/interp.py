"""Reference interpreter of the Tandem ISA, for testing programs without the RTL.

`run` executes a program on a DRAM image exactly as ``docs/isa.md`` specifies LOAD, MATMUL,
STORE, the CFG commands and the vector unit's DWCONV and EWISE, on NumPy state: scratchpad rows
of ``rows`` int8, accumulator rows of ``cols`` int32 (wrapping at ``acc_width`` bits), the bias,
requantization and store tables.

Control is modelled like the core: a decoder dispatches commands in program order into the load,
exec, store and vector queues (depths from the config; FENCE waits until every queue is empty,
after which every unit knows every earlier command to have finished: programs concatenated with
FENCEs in between need no tokens across them);
the four in-order units take turns (round robin), each running its head command once the
dependency tokens it pops are available. A command pops before it starts and pushes when it has
finished. LOAD and STORE with ``vec=1`` exchange their tokens with the vector unit (counters
l2v, v2l, v2s, s2v) instead of the exec unit (l2e, e2l, e2s, s2e).

Beyond the ISA's own errors (`isa.Cause`, raised as `ProgramError` naming the command index and
field), the interpreter checks what the hardware cannot see:

* deadlock -- every unit waits for a token with commands left (`DeadlockError`);
* races -- with vector clocks carried by the tokens it checks that every scratchpad or
  accumulator row is written and read in an order the tokens guarantee, whatever the relative
  speed of the units (`HazardError`); a program that passes is correct on any timing. A vector
  command reads its parameter block and the input pixels its windows touch, and writes its
  output rows;
* reads of scratchpad or accumulator rows, biases or requantization columns never written
  (``strict=True``; the hardware's reset contents are undefined).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from rtl import isa
from rtl.config import HWConfig
from rtl.isa import Cause, Op
from rtl.vector import VectorUnit

from .gemm import wrap_signed
from .requant import RequantParams, requantize

__all__ = ["DeadlockError", "HazardError", "ProgramError", "RunResult", "execute", "run"]

_LOAD, _EXEC, _STORE, _VECTOR = 0, 1, 2, 3
_UNITS = ("load", "exec", "store", "vector")
_UNIT_OF = {
    Op.LOAD: _LOAD,
    Op.MATMUL: _EXEC,
    Op.CFG_BIAS: _EXEC,
    Op.STORE: _STORE,
    Op.CFG_QUANT: _STORE,
    Op.CFG_STORE: _STORE,
    Op.DWCONV: _VECTOR,
    Op.EWISE: _VECTOR,
}
# (unit, flag, vec) -> token counter; a flag missing here is BAD_TOKEN for that unit. ``vec`` is
# the LOAD/STORE vec bit (0 for the other commands).
_POPS = {
    (_LOAD, "pop_next", 0): "e2l",
    (_LOAD, "pop_next", 1): "v2l",
    (_EXEC, "pop_prev", 0): "l2e",
    (_EXEC, "pop_next", 0): "s2e",
    (_STORE, "pop_prev", 0): "e2s",
    (_STORE, "pop_prev", 1): "v2s",
    (_VECTOR, "pop_prev", 0): "l2v",
    (_VECTOR, "pop_next", 0): "s2v",
}
_PUSHES = {
    (_LOAD, "push_next", 0): "l2e",
    (_LOAD, "push_next", 1): "l2v",
    (_EXEC, "push_prev", 0): "e2l",
    (_EXEC, "push_next", 0): "e2s",
    (_STORE, "push_prev", 0): "s2e",
    (_STORE, "push_prev", 1): "s2v",
    (_VECTOR, "push_prev", 0): "v2l",
    (_VECTOR, "push_next", 0): "v2s",
}
_COUNTERS = ("l2e", "e2l", "e2s", "s2e", "l2v", "v2l", "v2s", "s2v")
_FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")


class ProgramError(ValueError):
    """A command that cannot run.

    Attributes
    ----------
    index : int or None
        Index of the offending command in the program.
    cause : isa.Cause or None
        The core's error cause, or None for what only the interpreter detects (DRAM range,
        races, uninitialized reads, deadlock).
    """

    def __init__(self, message: str, *, index: int | None = None, cause: Cause | None = None):
        super().__init__(message)
        self.index = index
        self.cause = cause


class DeadlockError(ProgramError):
    """Every unit is blocked on a dependency token (or the decoder on a full queue) forever."""


class HazardError(ProgramError):
    """Two units touch the same row in an order the dependency tokens do not guarantee."""


@dataclass(frozen=True)
class RunResult:
    """What `execute` leaves behind.

    Parameters
    ----------
    dram : bytes
        The final DRAM image.
    commands : dict of str to int
        Commands run by each unit (``load``, ``exec``, ``store``, ``vector``).
    tokens_left : dict of str to int
        Tokens pushed but never popped, per counter (``l2e``, ``e2l``, ``e2s``, ``s2e``,
        ``l2v``, ``v2l``, ``v2s``, ``s2v``).
    rounds : int
        Scheduling rounds (a rough measure of how well the units overlapped).
    """

    dram: bytes
    commands: dict[str, int]
    tokens_left: dict[str, int]
    rounds: int


class _Machine:
    def __init__(self, config: HWConfig, program: list[isa.Command], image: bytes, strict: bool):
        self.cfg = config
        self.prog = program
        self.strict = strict
        r, c = config.rows, config.cols
        self.r, self.c, self.wrows = r, c, math.ceil(c / r)
        self.spad = np.zeros((config.spad_rows, r), dtype=np.int8)
        self.acc = np.zeros((config.acc_rows, c), dtype=np.int64)
        self.bias = np.zeros(c, dtype=np.int64)
        self.mult = [0] * c
        self.shift = [0] * c
        self.bias_set = np.zeros(c, dtype=bool)
        self.quant_set = np.zeros(c, dtype=bool)
        self.zp, self.lo, self.hi = 0, -128, 127
        # output-stationary: the array's accumulators (rows pixels x cols), open between the
        # first os MATMUL of an output tile and its drain=1 command
        self.os_acc = np.zeros((r, c), dtype=np.int64)
        self.os_open: int | None = None  # index of the first os MATMUL of the open tile
        self.dram = np.frombuffer(bytearray(image), dtype=np.uint8)
        # Race tracking: per row, the unit and sequence number (1-based, per unit) of the last
        # writer and each unit's last read; clock[u][v] = how many commands of unit v unit u
        # knows to have finished.
        n = len(_UNITS)
        self.spad_wu = np.full(config.spad_rows, -1, dtype=np.int64)  # writer unit
        self.spad_w = np.zeros(config.spad_rows, dtype=np.int64)  # writer seq (0: never)
        self.spad_r = np.zeros((n, config.spad_rows), dtype=np.int64)  # per reader unit
        self.acc_w = np.zeros(config.acc_rows, dtype=np.int64)  # exec seq
        self.acc_r = np.zeros(config.acc_rows, dtype=np.int64)  # store seq
        self.clock = np.zeros((n, n), dtype=np.int64)
        self.ran: tuple[list[int], ...] = tuple([] for _ in range(n))  # each unit's commands
        self.tokens: dict[str, deque[np.ndarray]] = {k: deque() for k in _COUNTERS}

    # ---------------------------------------------------------------- helpers
    def error(
        self,
        idx: int,
        msg: str,
        cause: Cause | None = None,
        kind: type[ProgramError] = ProgramError,
    ) -> ProgramError:
        cmd = self.prog[idx]
        text = isa.disassemble(
            isa.encode(cmd.op, **cmd.fields, **{f: getattr(cmd, f) for f in _FLAGS})
        )
        return kind(f"command {idx} ({text}): {msg}", index=idx, cause=cause)

    def pops(self, u: int, idx: int) -> list[str]:
        cmd = self.prog[idx]
        vec = cmd.fields.get("vec", 0)
        return [_POPS[(u, f, vec)] for f in ("pop_prev", "pop_next") if getattr(cmd, f)]

    def ready(self, u: int, idx: int) -> bool:
        return all(self.tokens[t] for t in self.pops(u, idx))

    def check_dram(self, idx: int, addr: int, rows: int, stride: int, ln: int, what: str) -> None:
        end = addr + (rows - 1) * stride + ln
        if end > self.dram.size:
            raise self.error(
                idx,
                f"{what} DRAM bytes up to {end - 1} (dram_addr={addr}, rows={rows}, "
                f"stride={stride}, len={ln}), beyond the {self.dram.size}-byte DRAM image",
            )

    def hazard(self, idx: int, u: int, seqs: np.ndarray, other: int, what: str) -> None:
        """Raise unless every command of unit `other` numbered in `seqs` happens-before us."""
        if seqs.size and int(seqs.max()) > self.clock[u][other]:
            last = self.ran[other][int(seqs.max()) - 1]
            raise self.error(
                idx,
                f"race: {what} command {last} ({self.prog[last].op.name}), which no dependency "
                f"token orders before this one; add a push/pop token pair between the "
                f"{_UNITS[other]} and {_UNITS[u]} units",
                kind=HazardError,
            )

    def uninit(self, idx: int, seqs: np.ndarray, what: str) -> None:
        if self.strict and seqs.size and int(seqs.min()) == 0:
            raise self.error(idx, f"reads {what} that nothing has written (undefined after reset)")

    def spad_read(self, idx: int, u: int, rows: np.ndarray | slice, what: str) -> None:
        """Check a read of scratchpad rows by unit ``u`` (call `spad_mark_read` after it)."""
        self.uninit(idx, self.spad_w[rows], f"scratchpad {what}")
        writers = self.spad_wu[rows]
        for v in range(len(_UNITS)):
            if v != u:
                self.hazard(idx, u, self.spad_w[rows][writers == v], v, f"reads {what} written by")

    def spad_write(self, idx: int, u: int, rows: np.ndarray | slice, seq: int) -> None:
        """Check and record a write of scratchpad rows by unit ``u``."""
        writers = self.spad_wu[rows]
        for v in range(len(_UNITS)):
            if v != u:
                self.hazard(idx, u, self.spad_r[v][rows], v, "overwrites scratchpad rows read by")
                self.hazard(idx, u, self.spad_w[rows][writers == v], v,
                            "overwrites scratchpad rows written by")  # fmt: skip
        self.spad_wu[rows] = u
        self.spad_w[rows] = seq

    # ---------------------------------------------------------------- one command
    def step(self, u: int, idx: int) -> None:
        cmd = self.prog[idx]
        for t in self.pops(u, idx):
            self.clock[u] = np.maximum(self.clock[u], self.tokens[t].popleft())
        seq = int(self.clock[u][u]) + 1
        getattr(self, f"_{cmd.op.name.lower()}")(idx, cmd.fields, seq)
        self.clock[u][u] = seq
        self.ran[u].append(idx)
        vec = cmd.fields.get("vec", 0)
        for f in ("push_prev", "push_next"):
            if getattr(cmd, f):
                self.tokens[_PUSHES[(u, f, vec)]].append(self.clock[u].copy())

    def _load(self, idx: int, f: dict[str, int], seq: int) -> None:
        rows, ln, sa = f["rows"], f["len"], f["spad_addr"]
        if rows == 0:
            raise self.error(idx, "rows=0: a LOAD moves at least one row", Cause.BAD_LENGTH)
        if not 1 <= ln <= self.r:
            raise self.error(
                idx, f"len={ln} must be in 1..{self.r} (one scratchpad row)", Cause.BAD_LENGTH
            )
        if sa + rows > self.cfg.spad_rows:
            raise self.error(
                idx,
                f"spad_addr={sa} + rows={rows} touches scratchpad row {sa + rows - 1} >= "
                f"spad_rows={self.cfg.spad_rows}",
                Cause.SPAD_RANGE,
            )
        tgt = slice(sa, sa + rows)
        self.spad_write(idx, _LOAD, tgt, seq)
        self.spad[tgt] = 0
        if not f["zero"]:
            da, stride = f["dram_addr"], f["stride"]
            self.check_dram(idx, da, rows, stride, ln, "reads")
            src = da + np.arange(rows)[:, None] * stride + np.arange(ln)
            self.spad[tgt, :ln] = self.dram[src].view(np.int8)

    def _matmul(self, idx: int, f: dict[str, int], seq: int) -> None:
        nx, ny = f["nx"], f["ny"]
        os_ = bool(f.get("os", 0))
        if os_ and not self.cfg.has_os:
            raise self.error(
                idx, f"os=1, but config {self.cfg.name!r} has no output-stationary dataflow",
                Cause.BAD_OPCODE,
            )  # fmt: skip
        if not os_ and not self.cfg.has_ws:
            raise self.error(
                idx, f"os=0, but config {self.cfg.name!r} has no weight-stationary dataflow",
                Cause.BAD_OPCODE,
            )  # fmt: skip
        if nx == 0 or ny == 0:
            raise self.error(idx, f"nx={nx}, ny={ny}: both must be >= 1", Cause.BAD_LENGTH)
        if os_ and nx * ny > self.r:
            raise self.error(
                idx, f"os: nx*ny={nx * ny} pixels exceed the {self.r} array rows", Cause.BAD_LENGTH
            )
        if not os_ and self.os_open is not None:
            raise self.error(
                idx,
                f"a weight-stationary MATMUL while the output-stationary tile opened by command "
                f"{self.os_open} has not drained (end it with drain=1)",
            )
        spad_rows, acc_rows = self.cfg.spad_rows, self.cfg.acc_rows
        wa, wn = f["w_addr"], self.r * self.wrows
        if wa + wn > spad_rows:
            raise self.error(
                idx,
                f"w_addr={wa}: the weight tile ({self.r} x {self.wrows} rows) reaches scratchpad "
                f"row {wa + wn - 1} >= spad_rows={spad_rows}",
                Cause.SPAD_RANGE,
            )
        aa, sx, sy = f["a_addr"], f["a_stride_x"], f["a_stride_y"]
        last = aa + (ny - 1) * sy + (nx - 1) * sx
        if last >= spad_rows:
            raise self.error(
                idx,
                f"a_addr={aa} + (ny-1)*a_stride_y + (nx-1)*a_stride_x reaches scratchpad row "
                f"{last} >= spad_rows={spad_rows}",
                Cause.SPAD_RANGE,
            )
        ra = f["acc_addr"]
        if ra + nx * ny > acc_rows:
            raise self.error(
                idx,
                f"acc_addr={ra} + nx*ny={nx * ny} touches accumulator row {ra + nx * ny - 1} >= "
                f"acc_rows={acc_rows}",
                Cause.ACC_RANGE,
            )
        wrows = slice(wa, wa + wn)
        arows = (aa + np.arange(ny)[:, None] * sy + np.arange(nx) * sx).reshape(-1)
        out_rows = slice(ra, ra + nx * ny)
        for rows, what in ((wrows, "weight rows (w_addr)"), (arows, "activation rows (a_addr)")):
            self.spad_read(idx, _EXEC, rows, what)
        w = self.spad[wrows].reshape(self.r, self.wrows * self.r)[:, : self.c]
        # |a*w| <= 2**14 and rows <= 256 terms: the float64 product is exact.
        prod = (self.spad[arows].astype(np.float64) @ w.astype(np.float64)).astype(np.int64)
        if os_:
            # one reduction block: pixel j's row of channels is A[j, :]; rows >= nx*ny are zero
            if self.os_open is None:
                self.os_open = idx
                self.os_acc[:] = 0
            self.os_acc[: nx * ny] = wrap_signed(self.os_acc[: nx * ny] + prod, self.cfg.acc_width)
            self.spad_r[_EXEC][wrows] = seq
            self.spad_r[_EXEC][arows] = seq
            if not f.get("drain", 0):
                return
            prod = self.os_acc[: nx * ny].copy()
            self.os_open = None
        self.hazard(idx, _EXEC, self.acc_r[out_rows], _STORE, "overwrites accumulator rows read by")
        if f["acc"]:
            self.uninit(idx, self.acc_w[out_rows], "accumulator rows (acc=1)")
            base = self.acc[out_rows]
        else:
            if self.strict and not self.bias_set.all():
                missing = np.flatnonzero(~self.bias_set).tolist()
                raise self.error(
                    idx, f"acc=0 adds the bias of columns {missing}, never set by CFG_BIAS"
                )
            base = self.bias[None, :]
        self.acc[out_rows] = wrap_signed(base + prod, self.cfg.acc_width)
        self.spad_r[_EXEC][wrows] = seq
        self.spad_r[_EXEC][arows] = seq
        self.acc_w[out_rows] = seq

    def _store_rows(
        self, idx: int, f: dict[str, int], addr: int, row_len: int, depth: int, memory: str,
        cause: Cause,
    ) -> tuple[slice, np.ndarray, int]:  # fmt: skip
        """Check a STORE's rows and length against its source memory; return the source rows,
        the DRAM byte indices and ``len``."""
        rows, ln = f["rows"], f["len"]
        if rows == 0:
            raise self.error(idx, "rows=0: a STORE moves at least one row", Cause.BAD_LENGTH)
        if not 1 <= ln <= row_len:
            raise self.error(
                idx, f"len={ln} must be in 1..{row_len} (one {memory} row)", Cause.BAD_LENGTH
            )
        name = "acc_addr" if memory == "accumulator" else "spad_addr"
        if addr + rows > depth:
            raise self.error(
                idx,
                f"{name}={addr} + rows={rows} touches {memory} row {addr + rows - 1} >= "
                f"{'acc' if memory == 'accumulator' else 'spad'}_rows={depth}",
                cause,
            )
        da, stride = f["dram_addr"], f["stride"]
        self.check_dram(idx, da, rows, stride, ln, "writes")
        dst = da + np.arange(rows)[:, None] * stride + np.arange(ln)
        return slice(addr, addr + rows), dst, ln

    def _store(self, idx: int, f: dict[str, int], seq: int) -> None:
        if f["vec"]:
            self._store_vec(idx, f, seq)
            return
        src, dst, ln = self._store_rows(idx, f, f["acc_addr"], self.c, self.cfg.acc_rows,
                                        "accumulator", Cause.ACC_RANGE)  # fmt: skip
        self.uninit(idx, self.acc_w[src], "accumulator rows")
        self.hazard(idx, _STORE, self.acc_w[src], _EXEC, "reads accumulator rows written by")
        if self.strict and not self.quant_set[:ln].all():
            missing = np.flatnonzero(~self.quant_set[:ln]).tolist()
            raise self.error(idx, f"requantizes columns {missing}, never set by CFG_QUANT")
        params = RequantParams(tuple(self.mult[:ln]), tuple(self.shift[:ln]), zero_point=self.zp)
        y = np.clip(requantize(self.acc[src, :ln], params), self.lo, self.hi).astype(np.int8)
        self.dram[dst] = y.view(np.uint8)
        self.acc_r[src] = seq

    def _store_vec(self, idx: int, f: dict[str, int], seq: int) -> None:
        src, dst, ln = self._store_rows(idx, f, f["spad_addr"], self.r, self.cfg.spad_rows,
                                        "scratchpad", Cause.SPAD_RANGE)  # fmt: skip
        self.spad_read(idx, _STORE, src, "rows (spad_addr)")
        self.dram[dst] = self.spad[src, :ln].view(np.uint8)
        self.spad_r[_STORE][src] = seq

    # ---------------------------------------------------------------- the vector unit
    def _dwconv(self, idx: int, f: dict[str, int], seq: int) -> None:
        self._vector(idx, Op.DWCONV, 0, f, seq)

    def _ewise(self, idx: int, f: dict[str, int], seq: int) -> None:
        self._vector(idx, Op.EWISE, f["mode"], f, seq)

    def vector_check(self, idx: int, op: Op, mode: int, f: dict[str, int]) -> None:
        """BAD_LENGTH and SPAD_RANGE of a DWCONV / EWISE (docs/isa.md, Errors)."""
        dims = ("in_w", "in_h", "out_w", "out_h", "kh", "kw", "stride")
        zero = [d for d in dims if f[d] == 0]
        if zero:
            raise self.error(idx, f"{', '.join(zero)} = 0: must be >= 1", Cause.BAD_LENGTH)
        kmax = self.cfg.vector_max_kernel
        if op == Op.DWCONV and max(f["kh"], f["kw"]) > kmax:
            raise self.error(
                idx,
                f"kh={f['kh']}, kw={f['kw']}: a DWCONV kernel is at most vector_max_kernel={kmax}",
                Cause.BAD_LENGTH,
            )
        add = op == Op.EWISE and mode == isa.EwiseMode.ADD
        if add and (
            (f["kh"], f["kw"], f["stride"], f["pad_t"], f["pad_l"]) != (1, 1, 1, 0, 0)
            or (f["out_h"], f["out_w"]) != (f["in_h"], f["in_w"])
        ):
            raise self.error(
                idx,
                "EWISE ADD needs kh = kw = stride = 1, pad_t = pad_l = 0 and out_h x out_w = "
                "in_h x in_w",
                Cause.BAD_LENGTH,
            )
        nparam = VectorUnit.timing(self.cfg).param_rows(op, mode, f["kh"], f["kw"])
        ntile = f["in_h"] * f["in_w"] * (2 if add else 1)
        blocks = (
            ("param_addr", f["param_addr"], nparam, "parameter block"),
            ("in_addr", f["in_addr"], ntile, "input tile" + ("s (a, b)" if add else "")),
            ("out_addr", f["out_addr"], f["out_h"] * f["out_w"], "output tile"),
        )
        for name, addr, n, what in blocks:
            if addr + n > self.cfg.spad_rows:
                raise self.error(
                    idx,
                    f"{name}={addr}: the {what} ({n} rows) reaches scratchpad row {addr + n - 1} "
                    f">= spad_rows={self.cfg.spad_rows}",
                    Cause.SPAD_RANGE,
                )

    def vector_params(self, idx: int, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Decode a parameter block (``rows``: its rows x lanes bytes as uint8)."""
        p = {"bias": _planes(rows, 0, 4), "M": _planes(rows, 4, 4), "S": rows[8].astype(np.int64)}
        p.update(zp=_planes(rows, 9, 1), lo=_planes(rows, 10, 1), hi=_planes(rows, 11, 1))
        if len(rows) == isa.VEC_PARAM_ROWS + isa.VEC_ADD_ROWS:  # EWISE ADD
            p.update(za=_planes(rows, 12, 1), zb=_planes(rows, 13, 1), ma=_planes(rows, 14, 2),
                     mb=_planes(rows, 16, 2))  # fmt: skip
        if int(p["S"].max()) > 63:
            lane = int(np.argmax(p["S"] > 63))
            raise self.error(
                idx,
                f"parameter row 8 (S) of lane {lane} holds {int(p['S'][lane])}; a shift is "
                f"0..63 (larger values are undefined)",
            )
        return p

    def _vector(self, idx: int, op: Op, mode: int, f: dict[str, int], seq: int) -> None:
        self.vector_check(idx, op, mode, f)
        lanes = self.cfg.vector_lanes
        kh, kw = f["kh"], f["kw"]
        ih, iw, oh, ow = f["in_h"], f["in_w"], f["out_h"], f["out_w"]
        nparam = VectorUnit.timing(self.cfg).param_rows(op, mode, kh, kw)
        prow = slice(f["param_addr"], f["param_addr"] + nparam)
        self.spad_read(idx, _VECTOR, prow, "parameter rows (param_addr)")
        raw = self.spad[prow, :lanes].view(np.uint8)
        p = self.vector_params(idx, raw)
        x = self.spad[f["in_addr"] : f["in_addr"] + ih * iw, :lanes].astype(np.int64)
        if op == Op.EWISE and mode == isa.EwiseMode.ADD:
            tile = np.arange(f["in_addr"], f["in_addr"] + 2 * ih * iw)
            self.spad_read(idx, _VECTOR, tile, "input rows (in_addr, two tiles)")
            b = self.spad[f["in_addr"] + ih * iw : f["in_addr"] + 2 * ih * iw, :lanes]
            acc = p["bias"] + (x - p["za"]) * p["ma"] + (b.astype(np.int64) - p["zb"]) * p["mb"]
        else:
            acc, touched = self.window(op, mode, f, x.reshape(ih, iw, lanes), p, raw)
            tile = f["in_addr"] + np.flatnonzero(touched)
            self.spad_read(idx, _VECTOR, tile, "input rows (in_addr)")
        acc = wrap_signed(acc, 32)
        y = np.zeros((oh * ow, self.r), dtype=np.int8)
        y[:, :lanes] = self.requant_lanes(acc.reshape(oh * ow, lanes), p)
        out = slice(f["out_addr"], f["out_addr"] + oh * ow)
        self.spad_write(idx, _VECTOR, out, seq)
        self.spad[out] = y
        self.spad_r[_VECTOR][prow] = seq
        self.spad_r[_VECTOR][tile] = seq

    @staticmethod
    def window(
        op: Op, mode: int, f: dict[str, int], x: np.ndarray, p: dict[str, np.ndarray],
        raw: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Accumulators of a windowed command (DWCONV, pools) and the input pixels it reads."""
        ih, iw, _lanes = x.shape
        oh, ow, s = f["out_h"], f["out_w"], f["stride"]
        touched = np.zeros((ih, iw), dtype=bool)
        acc = np.broadcast_to(p["bias"], (oh, ow, x.shape[2])).copy()
        for ky in range(f["kh"]):
            iy = np.arange(oh) * s + ky - f["pad_t"]
            for kx in range(f["kw"]):
                ix = np.arange(ow) * s + kx - f["pad_l"]
                valid = ((iy >= 0) & (iy < ih))[:, None] & ((ix >= 0) & (ix < iw))[None, :]
                vals = x[np.clip(iy, 0, ih - 1)][:, np.clip(ix, 0, iw - 1)]
                touched[np.ix_(iy[(iy >= 0) & (iy < ih)], ix[(ix >= 0) & (ix < iw)])] = True
                if op == Op.DWCONV:
                    w = raw[isa.VEC_PARAM_ROWS + ky * f["kw"] + kx].view(np.int8).astype(np.int64)
                    acc += np.where(valid[..., None], vals * w, 0)
                elif mode == isa.EwiseMode.AVGPOOL:
                    acc += np.where(valid[..., None], vals, 0)
                else:
                    acc = np.where(valid[..., None], np.maximum(acc, vals), acc)
        return acc, touched

    @staticmethod
    def requant_lanes(acc: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
        """``clamp(((acc * M + R) >> S) + zp, lo, hi)`` per lane (zp, lo, hi per lane too)."""
        out = np.zeros(acc.shape, dtype=np.int64)
        for zp in np.unique(p["zp"]):
            lanes = p["zp"] == zp
            params = RequantParams(tuple(p["M"][lanes].tolist()), tuple(p["S"][lanes].tolist()),
                                   zero_point=int(zp))  # fmt: skip
            out[:, lanes] = requantize(acc[:, lanes], params)
        return np.minimum(np.maximum(out, p["lo"]), p["hi"]).astype(np.int8)

    def _cfg_bias(self, idx: int, f: dict[str, int], seq: int) -> None:
        col = self.column(idx, f)
        self.bias[col] = f["bias"]
        self.bias_set[col] = True

    def _cfg_quant(self, idx: int, f: dict[str, int], seq: int) -> None:
        col = self.column(idx, f)
        if f["shift"] > 63:  # pragma: no cover - the 6-bit field cannot hold more
            raise self.error(idx, f"shift={f['shift']} > 63", Cause.BAD_COLUMN)
        self.mult[col], self.shift[col] = f["multiplier"], f["shift"]
        self.quant_set[col] = True

    def _cfg_store(self, idx: int, f: dict[str, int], seq: int) -> None:
        self.zp, self.lo, self.hi = f["zero_point"], f["lo"], f["hi"]

    def column(self, idx: int, f: dict[str, int]) -> int:
        if f["col"] >= self.c:
            raise self.error(idx, f"col={f['col']} >= cols={self.c}", Cause.BAD_COLUMN)
        return f["col"]


def _planes(rows: np.ndarray, first: int, nbytes: int) -> np.ndarray:
    """Signed values held as byte planes (least significant first) in ``rows[first:]``."""
    u = sum(rows[first + i].astype(np.int64) << (8 * i) for i in range(nbytes))
    half = 1 << (8 * nbytes - 1)
    return (u ^ half) - half


def _decode(program: Iterable[int]) -> list[isa.Command]:
    cmds = []
    for idx, word in enumerate(program):
        try:
            cmd = isa.decode(int(word))
        except ValueError as exc:
            raise ProgramError(f"command {idx}: {exc}", index=idx, cause=Cause.BAD_OPCODE) from None
        if cmd.op == Op.EWISE and cmd.mode not in set(isa.EwiseMode):
            raise ProgramError(
                f"command {idx} (EWISE): mode={cmd.mode} is reserved (0 ADD, 1 MAXPOOL, 2 AVGPOOL)",
                index=idx,
                cause=Cause.BAD_OPCODE,
            )
        unit = _UNIT_OF.get(cmd.op)
        vec = cmd.fields.get("vec", 0)
        for flag in _FLAGS:
            if getattr(cmd, flag) and (
                unit is None
                or ((unit, flag, vec) not in _POPS and (unit, flag, vec) not in _PUSHES)
            ):
                where = f"the {_UNITS[unit]} unit" if unit is not None else "the decoder"
                raise ProgramError(
                    f"command {idx} ({cmd.op.name}): +{flag} is not a token {where} can "
                    f"exchange (see the table in docs/isa.md)",
                    index=idx,
                    cause=Cause.BAD_TOKEN,
                )
        cmds.append(cmd)
    return cmds


def execute(
    config: HWConfig, program: Iterable[int], image: bytes | bytearray, *, strict: bool = True
) -> RunResult:
    """Run a program on a DRAM image; return the final image and statistics.

    Parameters
    ----------
    config : HWConfig
        Array size, scratchpad and accumulator rows, accumulator width, queue depths.
    program : iterable of int
        128-bit command words (the program is taken from here, not fetched from ``image``).
    image : bytes
        The initial DRAM image; it is not modified.
    strict : bool
        Also reject reads of rows, biases or requantization columns never written.

    Raises
    ------
    ProgramError
        An ISA error (with its `isa.Cause`), a DRAM access beyond the image, or a read of
        undefined state; `DeadlockError` and `HazardError` for token problems. The message names
        the command index, the command and the field.
    """
    cmds = _decode(program)
    m = _Machine(config, cmds, bytes(image), strict)
    depth = (config.load_queue_depth, config.exec_queue_depth, config.store_queue_depth,
             config.vector_queue_depth)  # fmt: skip
    queues: tuple[deque[int], ...] = tuple(deque() for _ in _UNITS)
    done = [0] * len(_UNITS)
    pc, rounds = 0, 0
    while True:
        rounds += 1
        progress = False
        while pc < len(cmds):  # the decoder, in program order
            op = cmds[pc].op
            if op == Op.NOP or (op == Op.FENCE and not any(queues)):
                if op == Op.FENCE:  # every unit has finished everything before the FENCE
                    m.clock[:] = m.clock.max(axis=0)
                pc += 1
            elif op == Op.FENCE:
                break
            else:
                u = _UNIT_OF[op]
                if len(queues[u]) >= depth[u]:
                    break
                queues[u].append(pc)
                pc += 1
            progress = True
        for u in range(len(_UNITS)):  # each unit runs at most one command per round
            if queues[u] and m.ready(u, queues[u][0]):
                m.step(u, queues[u].popleft())
                done[u] += 1
                progress = True
        if progress:
            continue
        if pc >= len(cmds) and not any(queues):
            break
        waits = []
        for u in range(len(_UNITS)):
            if queues[u]:
                idx = queues[u][0]
                empty = [t for t in m.pops(u, idx) if not m.tokens[t]]
                waits.append(
                    f"{_UNITS[u]} unit at command {idx} ({cmds[idx].op.name}) waits "
                    f"for an {'/'.join(empty)} token"
                )
        if pc < len(cmds):
            why = "FENCE" if cmds[pc].op == Op.FENCE else "a full queue"
            waits.append(f"the decoder at command {pc} waits on {why}")
        raise DeadlockError(
            f"deadlock: {'; '.join(waits)}; every token popped must be pushed by an earlier "
            f"command of the neighbouring unit",
            index=pc if pc < len(cmds) else None,
        )
    if m.os_open is not None:
        raise m.error(
            m.os_open, "the output-stationary tile this command opens never drains (no drain=1)"
        )
    return RunResult(
        dram=m.dram.tobytes(),
        commands=dict(zip(_UNITS, done, strict=True)),
        tokens_left={k: len(v) for k, v in m.tokens.items()},
        rounds=rounds,
    )


def run(config: HWConfig, program: Iterable[int], image: bytes | bytearray) -> bytes:
    """Run a program on a DRAM image and return the final image (see `execute`)."""
    return execute(config, program, image).dram
