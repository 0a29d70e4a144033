"""Verilator ``--lint-only`` pass over the generated Verilog of every preset and dataflow variant.

Two warnings are waived: ``WIDTH`` (Amaranth's Verilog relies on implicit width extension) and
``CASEOVERLAP`` (yosys writes its parallel muxes as ``casez ... parallel_case`` over one-hot
selects, whose ``?`` patterns overlap only for select values that cannot occur). Every other
Verilator lint warning fails. Run with ``python -m tb.lint [CONFIG ...]``.
"""

from __future__ import annotations

import subprocess
import sys

from rtl.config import HWConfig, load_config
from rtl.generate import TOPS, top_name, write_verilog
from tb.runner import BUILD_ROOT, toolchain_env

DEFAULT_TARGETS = ("tiny", "wide", "default")


def lint_config(cfg: HWConfig, top: str = "core") -> tuple[bool, str]:
    """Lint the Verilog of ``top`` for ``cfg``; return (clean, Verilator's output)."""
    out = BUILD_ROOT / "lint" / f"{cfg.name}-{cfg.dataflow}-{top}"
    paths = write_verilog(cfg, out, top)
    env = dict(__import__("os").environ, **toolchain_env())
    proc = subprocess.run(
        [
            "verilator",
            "--lint-only",
            "-Wno-WIDTH",
            "-Wno-CASEOVERLAP",
            "--top-module",
            top_name(top),
            str(paths["verilog"]),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    return proc.returncode == 0, proc.stdout + proc.stderr


def main(argv: list[str]) -> int:
    targets = argv or list(DEFAULT_TARGETS)
    configs = [load_config(t) for t in targets]
    tiny = load_config("tiny")
    if not argv:  # the single-dataflow variants generate different hardware
        configs += [tiny.replace(dataflow="ws"), tiny.replace(dataflow="os")]
    failed = 0
    for cfg in configs:
        for top in TOPS:
            ok, text = lint_config(cfg, top)
            print(
                f"verilator lint {top_name(top)} {cfg.name} ({cfg.rows}x{cfg.cols}, "
                f"{cfg.dataflow}): {'clean' if ok else 'FAILED'}"
            )
            if not ok:
                failed += 1
                print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
