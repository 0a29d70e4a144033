"""Count the simulator's instructions per simulated cycle with callgrind (deterministic, unlike
wall-clock speed on a shared machine).

    python -m tb.profile [--config default] [--layer SPEC] [--top N]

Runs one layer on the Verilator build under ``valgrind --tool=callgrind`` (through
``TANDEM_SIM_WRAPPER``, see :mod:`tb.runner`) and prints the instructions spent in the model's
``eval`` (the design) and in the whole simulator process per simulated cycle, with the
functions that cost most. Use it to compare RTL or build changes for simulation speed: a
change that lowers the instructions per cycle is faster on any machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

#: a smaller cousin of the benchmark conv (tb.bench.BENCH_LAYER): same channels and kernel, so
#: the same steady state, in about a tenth of the cycles
PROFILE_LAYER = "conv:h=16,w=16,cin=64,cout=64,k=3,s=1,p=1,name=profile"


def _inclusive(annotate: str, symbol: str) -> int:
    """Inclusive instruction count of ``symbol`` from ``callgrind_annotate --inclusive=yes``."""
    for line in annotate.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)", line)
        if m and re.search(rf"(^|[:\s]){re.escape(symbol)}(\(|\s|$)", m.group(2)):
            return int(m.group(1).replace(",", ""))
    raise SystemExit(f"callgrind_annotate lists no {symbol!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tb.profile", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="default", help="hardware config (default: default)")
    ap.add_argument("--layer", default=PROFILE_LAYER, help=f"layer spec (default: {PROFILE_LAYER})")
    ap.add_argument("--top", type=int, default=12, help="functions to list (default 12)")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not on PATH: install it with `sudo apt-get install valgrind`")

    from kernels.layers import parse_layer_spec
    from rtl.config import load_config
    from tb.bench import BENCH_DRAM
    from tb.sim_layer import run_layer

    cfg = load_config(args.config)
    layer = parse_layer_spec(args.layer)
    out_dir = Path("build/profile").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("callgrind.out.*"):
        old.unlink()
    os.environ["TANDEM_SIM_WRAPPER"] = (
        f"valgrind --tool=callgrind --callgrind-out-file={out_dir}/callgrind.out.%p"
    )
    try:
        report, *_ = run_layer(cfg, layer, sim="verilator", seed=0, **BENCH_DRAM)
    finally:
        del os.environ["TANDEM_SIM_WRAPPER"]
    if not report.bit_exact:
        raise SystemExit(f"{layer.name} is not bit-exact under the profiler: {report.error}")
    (out,) = sorted(out_dir.glob("callgrind.out.*"))
    annotate = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", str(out)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    cycles = report.cycles
    design = _inclusive(annotate, "Vtop___024root___eval")
    loop = _inclusive(annotate, "Vtop::eval_step")
    sched = loop - design
    total = _inclusive(annotate, "PROGRAM TOTALS")
    print(f"{args.config}: {layer.name}, {cycles:,} cycles, utilization {report.utilization:.1%}")
    print(f"  design eval      {design / cycles:10,.0f} instructions/cycle (with the image load)")
    print(f"  eval_step        {loop / cycles:10,.0f} instructions/cycle "
          f"(design + {sched / cycles:,.0f} scheduler)")  # fmt: skip
    print(f"  process          {total / cycles:10,.0f} instructions/cycle (with Python start-up)")
    print(f"  callgrind file   {out}")
    flat = subprocess.run(
        ["callgrind_annotate", str(out)], check=True, capture_output=True, text=True
    ).stdout
    rows = [ln for ln in flat.splitlines() if re.match(r"\s*[\d,]+\s+\(", ln)]
    print("  top functions (self):")
    for ln in rows[1 : args.top + 1]:
        print("   ", ln.strip()[:120])
    return 0


if __name__ == "__main__":
    sys.exit(main())
