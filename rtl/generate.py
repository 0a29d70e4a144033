"""Verilog generation for a configuration: the single entry point used by the CLI and benches."""

from __future__ import annotations

from pathlib import Path

from amaranth._toolchain.yosys import find_yosys
from amaranth.back import rtlil
from amaranth.lib import wiring

from . import isa
from .config import HWConfig
from .core import TandemCore
from .systolic import SystolicArray

__all__ = ["TOPS", "build_top", "generate_verilog", "top_name", "top_ports", "write_verilog"]

#: Generated tops: ``core`` (the accelerator, the default) and ``array`` (the systolic array).
TOPS = {"core": ("tandem_core", TandemCore), "array": ("tandem_array", SystolicArray)}


def top_name(top: str = "core") -> str:
    """Verilog module name of a top."""
    if top not in TOPS:
        raise ValueError(f"top must be one of {', '.join(TOPS)}, not {top!r}")
    return TOPS[top][0]


def build_top(config: HWConfig, top: str = "core"):
    """The top-level component ``top`` for ``config``."""
    top_name(top)
    return TOPS[top][1](config)


def top_ports(config: HWConfig, top: str = "core") -> dict[str, tuple[str, int]]:
    """Top-level ports: ``name: (direction "in"/"out", width)``, ``clk`` and ``rst`` first."""
    comp = build_top(config, top)
    comp._MustUse__silence = True  # read for its signature only
    ports = {"clk": ("in", 1), "rst": ("in", 1)}
    for path, member, value in comp.signature.flatten(comp):
        width = len(value.as_value()) if hasattr(value, "as_value") else len(value)
        ports["__".join(map(str, path))] = ("in" if member.flow == wiring.In else "out", width)
    return ports


_STRIP = (
    "-remove generator -remove top -remove src -remove amaranth.hierarchy -remove amaranth.decoding"
)
#: Yosys turns Amaranth's next-state ``always @*`` blocks into plain clocked registers and flattens
#: the hierarchy. Measured on a 16x16 array: Verilator converts in ~3 s instead of ~30 s and the
#: model simulates ~5x faster (logic no longer re-evaluated on every input change).
_YOSYS_SCRIPT = (
    "proc",
    "flatten",
    "opt_clean",
    "opt_dff",
    "opt_clean",
    # drop unused result MSBs (e.g. the 33rd bit of each PE's 32-bit accumulate), so Verilator
    # evaluates them with 32-bit instead of 64-bit arithmetic. The PEs' multipliers are left
    # alone: they are built at the accumulator's width (rtl/systolic.py), and wreduce would
    # narrow them back to 16 bits, which Verilator sign-extends three times per product (about
    # 15% more instructions per simulated cycle of the core)
    "wreduce t:$mul c:*pe_* %i %n",
    "opt_clean",
    "memory_collect",
    f"attrmap {_STRIP}",
    f"attrmap -modattr {_STRIP}",
    "write_verilog -norename -noattr",
)


def generate_verilog(config: HWConfig, top: str = "core") -> str:
    """Verilog text of the top for ``config``.

    Source locations and tool attributes are stripped, so the same config always gives
    byte-identical text on any machine and from any checkout path.
    """
    text = rtlil.convert(build_top(config, top), name=top_name(top), emit_src=False)
    yosys = find_yosys(lambda ver: ver >= (0, 40))
    script = "\n".join([f"read_rtlil <<rtlil\n{text}\nrtlil", *_YOSYS_SCRIPT])
    return yosys.run(["-q", "-"], script, ignore_warnings=True)


def write_verilog(config: HWConfig, out_dir: str | Path, top: str = "core") -> dict[str, Path]:
    """Write ``<top>.v``, the resolved ``config.json`` and the ISA header ``tandem_isa.vh``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "verilog": out / f"{top_name(top)}.v",
        "config": out / "config.json",
        "isa": out / "tandem_isa.vh",
    }
    paths["verilog"].write_text(generate_verilog(config, top))
    paths["isa"].write_text(isa.verilog_header())
    paths["config"].write_text(config.to_json())
    return paths
