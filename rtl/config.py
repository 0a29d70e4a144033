"""The one hardware configuration object that every part of Tandem reads.

``HWConfig`` is frozen and validated at construction. The RTL generators, the kernels (lowering),
the cost model and the benches all take the same object; every derived size is a property here so
no second copy of a derived number exists anywhere else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

__all__ = ["DATAFLOWS", "HWConfig", "load_config"]

DATAFLOWS = ("ws", "os", "both")

Dataflow = Literal["ws", "os", "both"]


def _is_pow2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


@dataclass(frozen=True)
class HWConfig:
    """Configuration of one Tandem accelerator (all cores identical).

    Parameters
    ----------
    name : str
        Label used in reports and build directories.
    rows, cols : int
        Systolic array size. In weight-stationary mode ``rows`` is the reduction (K) depth of one
        pass and ``cols`` the number of output channels (N); in output-stationary mode ``rows``
        output rows (M) by ``cols`` output columns (N).
    dataflow : {"ws", "os", "both"}
        Which dataflows the array is generated with; ``both`` selects at run time.
    input_width, weight_width, acc_width : int
        Signed operand and accumulator widths in bits.
    spad_kib, spad_banks : int
        Scratchpad capacity (KiB, int8 rows of ``rows`` elements) and its number of banks.
    acc_kib, acc_banks : int
        Accumulator capacity (KiB, rows of ``cols`` accumulators) and its number of banks.
    vector_lanes, vector_max_kernel : int
        Vector unit MAC lanes (along channels, at most ``rows``: one scratchpad row holds a
        pixel's lanes; ``None`` means ``rows``) and the largest depthwise kernel size K (KxK).
    dma_beat_bytes : int
        Width of one beat of the external memory port, in bytes.
    load_queue_depth, exec_queue_depth, store_queue_depth, vector_queue_depth : int
        Command queue depths of the decoupled control.
    cores : int
        Number of cores sharing one DRAM port.
    """

    name: str = "custom"
    rows: int = 16
    cols: int = 16
    dataflow: Dataflow = "both"
    input_width: int = 8
    weight_width: int = 8
    acc_width: int = 32
    spad_kib: int = 256
    spad_banks: int = 4
    acc_kib: int = 64
    acc_banks: int = 2
    vector_lanes: int | None = None
    vector_max_kernel: int = 5
    dma_beat_bytes: int = 16
    load_queue_depth: int = 8
    exec_queue_depth: int = 8
    store_queue_depth: int = 8
    vector_queue_depth: int = 8
    cores: int = 1

    # ---------------------------------------------------------------- validation
    def __post_init__(self) -> None:
        if self.vector_lanes is None:
            object.__setattr__(self, "vector_lanes", self.rows)
        if not isinstance(self.name, str) or not self.name or not self.name.isidentifier():
            raise ValueError(
                f"name must be a non-empty identifier (letters, digits, _), not {self.name!r}"
            )
        limits = {
            "rows": (1, 256),
            "cols": (1, 256),
            "input_width": (2, 32),
            "weight_width": (2, 32),
            "acc_width": (4, 64),
            "spad_kib": (1, 1 << 16),
            "spad_banks": (1, 64),
            "acc_kib": (1, 1 << 16),
            "acc_banks": (1, 64),
            "vector_lanes": (1, 256),
            "vector_max_kernel": (1, 15),
            "dma_beat_bytes": (1, 256),
            "load_queue_depth": (1, 1024),
            "exec_queue_depth": (1, 1024),
            "store_queue_depth": (1, 1024),
            "vector_queue_depth": (1, 1024),
            "cores": (1, 64),
        }
        for fname, (lo, hi) in limits.items():
            value = getattr(self, fname)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(
                    f"{fname} must be an integer in {lo}..{hi}, not {value!r} "
                    f"({type(value).__name__})"
                )
            if not lo <= value <= hi:
                raise ValueError(f"{fname} must be in {lo}..{hi}, not {value!r}")
        if self.dataflow not in DATAFLOWS:
            raise ValueError(
                f"dataflow must be one of {', '.join(map(repr, DATAFLOWS))}, not {self.dataflow!r}"
            )
        for fname in ("spad_banks", "acc_banks", "dma_beat_bytes"):
            value = getattr(self, fname)
            if not _is_pow2(value):
                raise ValueError(f"{fname} must be a power of two, not {value!r}")
        if self.acc_width < self.min_acc_width:
            raise ValueError(
                f"acc_width={self.acc_width} is too small to hold a {self.rows}-deep dot product "
                f"of {self.input_width}-bit x {self.weight_width}-bit operands: needs at least "
                f"{self.min_acc_width} bits (input_width + weight_width + ceil(log2(rows)))"
            )
        if self.vector_max_kernel % 2 == 0:
            raise ValueError(
                f"vector_max_kernel must be odd (centred KxK windows), not {self.vector_max_kernel}"
            )
        if self.vector_lanes > self.rows:
            raise ValueError(
                f"vector_lanes={self.vector_lanes} exceeds the scratchpad row of rows={self.rows} "
                f"bytes: the vector unit reads one pixel's lanes channels from one row; use "
                f"vector_lanes <= {self.rows}"
            )
        if self.spad_rows > 1 << 20:
            raise ValueError(
                f"spad_kib={self.spad_kib} gives {self.spad_rows} scratchpad rows, more than the "
                f"2**20 the vector commands can address; use a smaller scratchpad or larger rows"
            )
        if self.spad_rows < self.spad_banks:
            raise ValueError(
                f"spad_kib={self.spad_kib} gives only {self.spad_rows} rows of {self.rows} "
                f"elements, fewer than spad_banks={self.spad_banks}"
            )
        if self.acc_rows < self.acc_banks:
            raise ValueError(
                f"acc_kib={self.acc_kib} gives only {self.acc_rows} rows of {self.cols} "
                f"accumulators, fewer than acc_banks={self.acc_banks}"
            )

    # ---------------------------------------------------------------- derived sizes
    @property
    def min_acc_width(self) -> int:
        """Smallest accumulator width that holds a ``rows``-deep dot product exactly."""
        return self.input_width + self.weight_width + math.ceil(math.log2(self.rows))

    @property
    def pes(self) -> int:
        """Number of processing elements (MACs per cycle at peak)."""
        return self.rows * self.cols

    @property
    def has_ws(self) -> bool:
        return self.dataflow in ("ws", "both")

    @property
    def has_os(self) -> bool:
        return self.dataflow in ("os", "both")

    @property
    def spad_row_bytes(self) -> int:
        """Bytes in one scratchpad row (``rows`` operands)."""
        return self.rows * math.ceil(self.input_width / 8)

    @property
    def spad_rows(self) -> int:
        """Number of scratchpad rows (capacity rounded down to whole rows in every bank)."""
        per_bank = self.spad_kib * 1024 // self.spad_row_bytes // self.spad_banks
        return per_bank * self.spad_banks

    @property
    def acc_row_bytes(self) -> int:
        """Bytes in one accumulator row (``cols`` accumulators)."""
        return self.cols * math.ceil(self.acc_width / 8)

    @property
    def acc_rows(self) -> int:
        """Number of accumulator rows (capacity rounded down to whole rows in every bank)."""
        per_bank = self.acc_kib * 1024 // self.acc_row_bytes // self.acc_banks
        return per_bank * self.acc_banks

    # ---------------------------------------------------------------- round trip
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Resolved configuration as JSON (all fields, stable key order)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def replace(self, **changes: Any) -> HWConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def digest(self) -> str:
        """Short stable hash of all fields, used to key build directories."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> HWConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"valid keys are {', '.join(sorted(known))}"
            )
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{source}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> HWConfig:
        path = Path(path)
        with path.open("rb") as fh:
            try:
                values = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path}: not valid TOML: {exc}") from None
        values.setdefault("name", path.stem)
        return cls.from_dict(values, source=str(path))

    @classmethod
    def from_json(cls, path: str | Path) -> HWConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a JSON object of config fields")
        values.setdefault("name", path.stem)
        return cls.from_dict(values, source=str(path))


PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"


def load_config(spec: str | Path | HWConfig) -> HWConfig:
    """Resolve a config: an ``HWConfig``, a preset name (``tiny``), or a .toml/.json path."""
    if isinstance(spec, HWConfig):
        return spec
    text = str(spec)
    path = Path(text)
    if path.suffix in (".toml", ".json"):
        if not path.exists():
            raise FileNotFoundError(f"config file {text!r} does not exist")
        return HWConfig.from_json(path) if path.suffix == ".json" else HWConfig.from_toml(path)
    preset = PRESET_DIR / f"{text}.toml"
    if preset.exists():
        return HWConfig.from_toml(preset)
    names = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
    raise ValueError(
        f"unknown config {text!r}: give a preset ({', '.join(names)}) or a .toml/.json file"
    )
