"""Verilog generation for a configuration: the single entry point used by the CLI and benches."""

from __future__ import annotations

from pathlib import Path

from amaranth.back import verilog

from .config import HWConfig
from .systolic import SystolicArray

__all__ = ["TOP_NAME", "build_top", "generate_verilog", "top_ports", "write_verilog"]

#: Verilog module name of the current top-level design.
TOP_NAME = "tandem_array"


def build_top(config: HWConfig) -> SystolicArray:
    """The current top-level component for ``config``."""
    return SystolicArray(config)


def top_ports(config: HWConfig) -> list[str]:
    """Verilog names of the top-level ports (``clk``, ``rst`` and the flattened signature)."""
    top = build_top(config)
    top._MustUse__silence = True  # read for its signature only
    return ["clk", "rst"] + [
        "__".join(map(str, path)) for path, _member, _value in top.signature.flatten(top)
    ]


def generate_verilog(config: HWConfig) -> str:
    """Verilog text of the top for ``config``.

    Source locations and tool attributes are stripped, so the same config always gives
    byte-identical text on any machine and from any checkout path.
    """
    return verilog.convert(
        build_top(config), name=TOP_NAME, emit_src=False, strip_internal_attrs=True
    )


def write_verilog(config: HWConfig, out_dir: str | Path) -> dict[str, Path]:
    """Write ``<top>.v`` and the resolved ``config.json`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"verilog": out / f"{TOP_NAME}.v", "config": out / "config.json"}
    paths["verilog"].write_text(generate_verilog(config))
    paths["config"].write_text(config.to_json())
    return paths
