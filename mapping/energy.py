"""The per-action energy table of the cost model (``configs/energy/default.toml``).

Defaults and their sources are in the TOML comments and ``docs/cost-model.md``: Horowitz,
"Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm at 0.9 V.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_ENERGY_TABLE", "EnergyTable", "load_energy_table"]

DEFAULT_ENERGY_TABLE = Path(__file__).resolve().parents[1] / "configs" / "energy" / "default.toml"


@dataclass(frozen=True)
class EnergyTable:
    """Energy per action, in picojoules (45 nm defaults, `load_energy_table`).

    Parameters
    ----------
    mac_pj : float
        One int8 x int8 multiply with int32 accumulate (array PE or vector lane).
    spad_read_pj_per_byte, spad_write_pj_per_byte : float
        Scratchpad access per byte, for a scratchpad of ``spad_reference_kib``.
    acc_read_pj_per_byte, acc_write_pj_per_byte : float
        Accumulator access per byte (an int32 is 4 bytes), for ``acc_reference_kib``.
    spad_reference_kib, acc_reference_kib : float
        Capacities the SRAM figures are given for.
    sram_scaling_exponent : float
        SRAM energy per byte scales as ``(capacity / reference) ** exponent`` (0: no scaling).
    dram_pj_per_byte : float
        DRAM read or write per byte moved on the port.
    static_pj_per_cycle : float
        Leakage of the core per cycle.
    """

    mac_pj: float = 0.3
    spad_read_pj_per_byte: float = 2.5
    spad_write_pj_per_byte: float = 2.5
    spad_reference_kib: float = 32.0
    acc_read_pj_per_byte: float = 2.5
    acc_write_pj_per_byte: float = 2.5
    acc_reference_kib: float = 32.0
    sram_scaling_exponent: float = 0.5
    dram_pj_per_byte: float = 162.5
    static_pj_per_cycle: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise TypeError(f"energy table: {f.name} must be a number, not {v!r}")
            if v < 0 or v != v:
                raise ValueError(f"energy table: {f.name} must be >= 0, not {v!r}")
        for name in ("spad_reference_kib", "acc_reference_kib"):
            if getattr(self, name) <= 0:
                raise ValueError(f"energy table: {name} must be > 0, not {getattr(self, name)!r}")

    def spad_scale(self, spad_kib: float) -> float:
        """Factor on the scratchpad figures for a scratchpad of ``spad_kib``."""
        return (spad_kib / self.spad_reference_kib) ** self.sram_scaling_exponent

    def acc_scale(self, acc_kib: float) -> float:
        """Factor on the accumulator figures for an accumulator of ``acc_kib``."""
        return (acc_kib / self.acc_reference_kib) ** self.sram_scaling_exponent


def load_energy_table(path: str | Path | None = None) -> EnergyTable:
    """Read an energy table from TOML (``configs/energy/default.toml`` when ``path`` is None).

    Raises
    ------
    ValueError
        An unknown key (the message lists the known ones), a negative or non-numeric value.
    """
    p = Path(path) if path is not None else DEFAULT_ENERGY_TABLE
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"energy table {str(p)!r}: not valid TOML: {exc}") from None
    known = {f.name for f in dataclasses.fields(EnergyTable)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(
            f"energy table {str(p)!r}: unknown key(s) {', '.join(unknown)}; known keys: "
            f"{', '.join(sorted(known))}"
        )
    try:
        return EnergyTable(**raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"energy table {str(p)!r}: {exc}") from None
