"""The Tandem instruction set: 128-bit commands, one module for the RTL, the kernels and benches.

Every command is a 128-bit little-endian word. Bits ``[3:0]`` hold the opcode, ``[7:4]`` the
dependency-token flags, the rest the opcode's fields (``FIELDS``). The RTL decoder slices the
same bit ranges (:func:`field_slices`), the kernels build commands with :func:`encode`, and the
benches and ``docs/isa.md`` use :func:`disassemble`.

Dependency tokens (after VTA): three in-order units (load -> exec -> store) exchange tokens
through four counters. ``pop_prev``/``pop_next`` wait for (and consume) a token from the previous /
next unit before the command starts; ``push_prev``/``push_next`` give one to the previous / next
unit when the command has completely finished. The load unit's "previous" and the store unit's
"next" do not exist; setting those flags is an error.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "CMD_BITS",
    "CMD_BYTES",
    "FIELDS",
    "Cause",
    "Command",
    "Op",
    "Queue",
    "assemble",
    "decode",
    "disassemble",
    "encode",
    "field_slices",
    "from_bytes",
    "hw_field",
    "to_bytes",
    "verilog_header",
]

CMD_BITS = 128
CMD_BYTES = CMD_BITS // 8


class Op(enum.IntEnum):
    """Opcodes (bits ``[3:0]``)."""

    NOP = 0
    CFG_BIAS = 1  # exec queue: bias of one array column, added by the first (non-accumulating) pass
    CFG_QUANT = 2  # store queue: requant multiplier and shift of one column
    CFG_STORE = 3  # store queue: output zero point and clamp bounds
    LOAD = 4  # load queue: DRAM rows -> scratchpad rows (or zero-fill)
    MATMUL = 5  # exec queue: ws: preload weights, stream a 2-D pattern of rows; os: one K block
    STORE = 6  # store queue: accumulator rows -> requantize -> DRAM rows
    FENCE = 7  # decoder waits until every queue is empty and every unit idle
    DWCONV = 8  # vector queue: depthwise KxK convolution of one channel group (lanes channels)
    EWISE = 9  # vector queue: residual add or pooling of one channel group


class Queue(enum.IntEnum):
    """Which unit runs a command."""

    NONE = 0
    LOAD = 1
    EXEC = 2
    STORE = 3
    VECTOR = 4


class EwiseMode(enum.IntEnum):
    """EWISE ``mode`` field."""

    ADD = 0  # two int8 tensors, each (x - z) * m, plus bias, requantized
    MAXPOOL = 1  # max over the window (padding never wins)
    AVGPOOL = 2  # sum over the window (padding counts as 0), requantized (M/2^S ~ 1/count)


#: Rows of the vector parameter block common to every vector command (``docs/isa.md``):
#: bias (4 byte planes), multiplier (4), shift, zero point, lo, hi.
VEC_PARAM_ROWS = 12
#: Extra parameter rows of EWISE ADD: za, zb, ma (2 byte planes), mb (2 byte planes).
VEC_ADD_ROWS = 6

QUEUE_OF = {
    Op.NOP: Queue.NONE,
    Op.FENCE: Queue.NONE,
    Op.CFG_BIAS: Queue.EXEC,
    Op.MATMUL: Queue.EXEC,
    Op.CFG_QUANT: Queue.STORE,
    Op.CFG_STORE: Queue.STORE,
    Op.STORE: Queue.STORE,
    Op.LOAD: Queue.LOAD,
    Op.DWCONV: Queue.VECTOR,
    Op.EWISE: Queue.VECTOR,
}


class Cause(enum.IntEnum):
    """Sticky error cause codes reported by the core (``o_error_cause``)."""

    NONE = 0
    BAD_OPCODE = 1  # reserved or unknown opcode
    SPAD_RANGE = 2  # scratchpad rows out of range
    ACC_RANGE = 3  # accumulator rows out of range
    BAD_LENGTH = 4  # zero rows, or row length zero / longer than the on-chip row
    BAD_COLUMN = 5  # CFG_BIAS/CFG_QUANT column >= cols, or shift > 63
    BAD_TOKEN = 6  # a dependency flag the unit cannot have (load pop_prev, store pop_next...)


# name: (lsb, width, signed). Common fields first.
_COMMON = {"op": (0, 4, False), "pop_prev": (4, 1, False), "pop_next": (5, 1, False),
           "push_prev": (6, 1, False), "push_next": (7, 1, False)}  # fmt: skip

# Vector commands work on one channel group (the first `lanes` bytes of scratchpad rows).
# Output pixel (oy, ox) < (out_h, out_w) reads input pixel (oy*stride + ky - pad_t,
# ox*stride + kx - pad_l) of the in_h x in_w tile at spad row in_addr + iy*in_w + ix for every
# tap (ky, kx) < (kh, kw); pixels outside the tile are padding. The result row goes to
# out_addr + oy*out_w + ox. Per-lane parameters come from the block at param_addr.
_VEC = {
    "stride": (10, 2, False),
    "pad_t": (12, 3, False),
    "pad_l": (15, 3, False),
    "kh": (18, 4, False),
    "kw": (22, 4, False),
    "param_addr": (26, 20, False),
    "in_addr": (46, 20, False),
    "out_addr": (66, 20, False),
    "in_w": (86, 10, False),
    "in_h": (96, 10, False),
    "out_w": (106, 10, False),
    "out_h": (116, 10, False),
}

FIELDS: dict[Op, dict[str, tuple[int, int, bool]]] = {
    Op.NOP: {},
    Op.FENCE: {},
    Op.CFG_BIAS: {"col": (16, 16, False), "bias": (32, 32, True)},
    Op.CFG_QUANT: {"col": (16, 16, False), "multiplier": (32, 32, True), "shift": (64, 6, False)},
    Op.CFG_STORE: {"zero_point": (16, 8, True), "lo": (24, 8, True), "hi": (32, 8, True)},
    # rows x len bytes from dram_addr + i*stride into spad rows spad_addr + i (zero-padded);
    # zero=1 writes zero rows without reading DRAM. vec=1: tokens go to / come from the vector
    # unit instead of the exec unit.
    Op.LOAD: {
        "zero": (8, 1, False),
        "vec": (9, 1, False),
        "dram_addr": (32, 32, False),
        "spad_addr": (64, 24, False),
        "rows": (88, 16, False),
        "len": (104, 8, False),
        "stride": (112, 16, False),
    },
    # Weights: rows x wrows spad rows from w_addr (weight row k at w_addr + k*wrows, wrows =
    # ceil(cols/rows)). Activations: for oy < ny, ox < nx: spad row
    # a_addr + oy*a_stride_y + ox*a_stride_x -> accumulator row acc_addr + oy*nx + ox.
    # acc=0: write bias + product; acc=1: add the product to the accumulator.
    # os=1 (output-stationary): one reduction block of rows steps over the nx*ny <= rows pixels;
    # consecutive os MATMULs accumulate in the array until one with drain=1 writes the results.
    Op.MATMUL: {
        "acc": (8, 1, False),
        "os": (9, 1, False),
        "drain": (10, 1, False),
        "a_stride_x": (12, 4, False),
        "a_addr": (16, 24, False),
        "w_addr": (40, 24, False),
        "acc_addr": (64, 16, False),
        "nx": (80, 12, False),
        "ny": (92, 12, False),
        "a_stride_y": (104, 24, False),
    },
    # rows accumulator rows from acc_addr, requantized, len bytes each to dram_addr + i*stride.
    # vec=1: the rows are int8 scratchpad rows from spad_addr (the vector unit's results), stored
    # as they are, and the tokens go to / come from the vector unit instead of the exec unit.
    Op.STORE: {
        "vec": (8, 1, False),
        "spad_addr": (12, 20, False),
        "dram_addr": (32, 32, False),
        "acc_addr": (64, 16, False),
        "rows": (80, 16, False),
        "len": (96, 8, False),
        "stride": (104, 24, False),
    },
    Op.DWCONV: dict(_VEC),
    Op.EWISE: {"mode": (8, 2, False), **_VEC},
}


def field_slices(op: Op) -> dict[str, tuple[int, int, bool]]:
    """All fields of ``op`` (common ones included) as ``name: (lsb, width, signed)``."""
    return {**_COMMON, **FIELDS[Op(op)]}


def hw_field(word, op: Op, name: str):
    """Field ``name`` of an ``op`` command held in the Amaranth value ``word`` (signed if the
    field is). The RTL units slice commands with this, from the same table as :func:`encode`."""
    lsb, width, signed = field_slices(op)[name]
    value = word[lsb : lsb + width]
    return value.as_signed() if signed else value


def _check_layout() -> None:
    for op, fields in FIELDS.items():
        used = 0
        for name, (lsb, width, _signed) in field_slices(op).items():
            mask = ((1 << width) - 1) << lsb
            if used & mask or lsb + width > CMD_BITS:
                raise AssertionError(f"ISA field {op.name}.{name} overlaps or overflows")
            used |= mask
        del fields


_check_layout()


@dataclass(frozen=True)
class Command:
    """One decoded command: opcode, token flags and the opcode's fields."""

    op: Op
    fields: Mapping[str, int]
    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False

    @property
    def queue(self) -> Queue:
        return QUEUE_OF.get(self.op, Queue.NONE)

    def __getattr__(self, name: str) -> int:
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None


def encode(op: Op, *, pop_prev=False, pop_next=False, push_prev=False, push_next=False,
           **fields: int) -> int:  # fmt: skip
    """Encode one command as a 128-bit integer; every field of ``op`` defaults to 0.

    Raises ``ValueError`` naming the field for an unknown field or a value that does not fit.
    """
    op = Op(op)
    layout = FIELDS[op]
    unknown = sorted(set(fields) - set(layout))
    if unknown:
        raise ValueError(
            f"{op.name} has no field(s) {', '.join(unknown)}; its fields are "
            f"{', '.join(layout) or '(none)'}"
        )
    values = {"op": int(op), "pop_prev": int(pop_prev), "pop_next": int(pop_next),
              "push_prev": int(push_prev), "push_next": int(push_next), **fields}  # fmt: skip
    word = 0
    for name, (lsb, width, signed) in field_slices(op).items():
        v = int(values.get(name, 0))
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
        if not lo <= v <= hi:
            raise ValueError(f"{op.name}.{name}={v} does not fit {width} bits ({lo}..{hi})")
        word |= (v & ((1 << width) - 1)) << lsb
    return word


def decode(word: int) -> Command:
    """Decode a 128-bit integer; raises ``ValueError`` for an unknown opcode."""
    code = word & 0xF
    try:
        op = Op(code)
    except ValueError:
        raise ValueError(f"unknown opcode {code} in command 0x{word:032x}") from None
    vals = {}
    for name, (lsb, width, signed) in field_slices(op).items():
        v = (word >> lsb) & ((1 << width) - 1)
        if signed and v >> (width - 1):
            v -= 1 << width
        vals[name] = v
    flags = {k: bool(vals.pop(k)) for k in ("pop_prev", "pop_next", "push_prev", "push_next")}
    vals.pop("op")
    return Command(op, vals, **flags)


def to_bytes(words: Iterable[int]) -> bytes:
    """Program image: commands as consecutive 16-byte little-endian words."""
    return b"".join(int(w).to_bytes(CMD_BYTES, "little") for w in words)


def from_bytes(data: bytes) -> list[int]:
    if len(data) % CMD_BYTES:
        raise ValueError(f"program image of {len(data)} bytes is not a multiple of {CMD_BYTES}")
    return [int.from_bytes(data[i : i + CMD_BYTES], "little") for i in range(0, len(data), 16)]


def verilog_header() -> str:
    """A Verilog header of opcode and field-position ``localparam``s (``tandem_isa.vh``)."""
    lines = ["// Tandem ISA: generated from rtl/isa.py, do not edit.",
             f"localparam TANDEM_CMD_BITS = {CMD_BITS};"]  # fmt: skip
    lines += [f"localparam TANDEM_OP_{op.name} = {int(op)};" for op in Op]
    lines += [f"localparam TANDEM_CAUSE_{c.name} = {int(c)};" for c in Cause]
    for op in Op:
        for name, (lsb, width, _signed) in field_slices(op).items():
            key = f"TANDEM_{op.name}_{name.upper()}"
            lines += [f"localparam {key}_LSB = {lsb};", f"localparam {key}_WIDTH = {width};"]
    return "\n".join(lines) + "\n"


_FLAG_NAMES = ("pop_prev", "pop_next", "push_prev", "push_next")


def disassemble(words: int | Iterable[int]) -> str:
    """Assembly text, one command a line: ``MATMUL acc=1 a_addr=40 ... +push_next``."""
    if isinstance(words, int):
        words = [words]
    lines = []
    for w in words:
        c = decode(w)
        parts = [c.op.name] + [f"{k}={v}" for k, v in c.fields.items()]
        parts += [f"+{f}" for f in _FLAG_NAMES if getattr(c, f)]
        lines.append(" ".join(parts))
    return "\n".join(lines)


_LINE = re.compile(r"^\s*([A-Z_]+)((?:\s+\S+)*)\s*$")


def assemble(text: str) -> list[int]:
    """Inverse of :func:`disassemble`; ``#`` starts a comment. Errors name the line."""
    words = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _LINE.match(line)
        if not m or m.group(1) not in Op.__members__:
            raise ValueError(f"line {n}: unknown command {line.split()[0]!r}")
        op = Op[m.group(1)]
        kwargs: dict[str, int | bool] = {}
        for tok in m.group(2).split():
            if tok.startswith("+") and tok[1:] in _FLAG_NAMES:
                kwargs[tok[1:]] = True
            elif "=" in tok:
                k, v = tok.split("=", 1)
                try:
                    kwargs[k] = int(v, 0)
                except ValueError:
                    raise ValueError(f"line {n}: {k}={v!r} is not an integer") from None
            else:
                raise ValueError(f"line {n}: cannot read {tok!r} (want name=value or +flag)")
        try:
            words.append(encode(op, **kwargs))
        except ValueError as exc:
            raise ValueError(f"line {n}: {exc}") from None
    return words
