"""``make bench``: generation time, Verilator build time and simulation speed per array size.

All figures come from one run on this machine; medians where repeated. Build times are for a
fresh build directory (nothing reused).
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time

from rtl.config import load_config
from rtl.generate import generate_verilog
from tb import runner

SIZES = (8, 16, 32)
GEN_REPEATS = 3


def bench_size(n: int, sims: tuple[str, ...]) -> dict:
    cfg = load_config("default").replace(name=f"bench{n}x{n}", rows=n, cols=n)
    gen = []
    for _ in range(GEN_REPEATS):
        t0 = time.perf_counter()
        generate_verilog(cfg, "array")
        gen.append(time.perf_counter() - t0)
    row = {"size": f"{n}x{n}", "gen_s": statistics.median(gen)}
    for sim in sims:
        b = runner.build(cfg, sim, top="array", force=True)
        cycles = 200_000 if sim == "verilator" else max(2_000, 200_000 // (n * n))
        out = b.build_dir / "bench.json"
        runner.run_bench(
            b,
            "tb.tb_throughput",
            env={"TANDEM_BENCH_OUT": str(out), "TANDEM_BENCH_CYCLES": str(cycles)},
            name="bench",
        )
        rates = json.loads(out.read_text())["cycles_per_s"]
        row[f"{sim}_build_s"] = b.build_seconds
        row[f"{sim}_cycles_per_s"] = statistics.median(rates)
        row[f"{sim}_mac_per_s"] = statistics.median(rates) * n * n
        shutil.rmtree(b.build_dir / "runs", ignore_errors=True)
    return row


BENCH_LAYER = "conv:h=56,w=56,cin=64,cout=64,k=3,s=1,p=1,name=conv56"


def bench_core() -> dict:
    """The core on ``default`` with 16 B/cycle DRAM running the 56x56x64 -> 64 3x3 conv."""
    from kernels.layers import parse_layer_spec
    from tb.sim_layer import run_layer

    cfg = load_config("default")
    layer = parse_layer_spec(BENCH_LAYER)
    report, *_ = run_layer(cfg, layer, sim="verilator", seed=0, latency=20, bandwidth=16)
    if not report.bit_exact:
        raise SystemExit(f"benchmark layer is not bit-exact: {report.error}")
    return {
        "layer": BENCH_LAYER,
        "cycles": report.cycles,
        "ideal_cycles": report.macs // cfg.pes,
        "utilization": report.utilization,
        "sim_cycles_per_s": report.sim_cycles_per_second,
        "bytes_read": report.bytes_read,
        "bytes_written": report.bytes_written,
    }


def main(argv: list[str]) -> int:
    sims = ("verilator", "icarus")
    print("Tandem bench: core on default (16x16), DRAM 16 B/cycle, latency 20")
    c = bench_core()
    print(
        f"  {c['layer']}: {c['cycles']:,} cycles (ideal {c['ideal_cycles']:,}), "
        f"MAC utilization {100 * c['utilization']:.1f}% (target >= 90%), "
        f"Verilator {c['sim_cycles_per_s']:,.0f} cycles/s (target >= 500k), "
        f"DRAM read {c['bytes_read']:,} B, written {c['bytes_written']:,} B",
        flush=True,
    )
    print()
    print("Tandem bench: systolic array alone, fully busy (every PE a MAC per cycle)")
    print(
        f"{'size':>6} | {'gen (s)':>7} | {'verilator build (s)':>19} | "
        f"{'verilator cyc/s':>15} | {'icarus build (s)':>16} | {'icarus cyc/s':>12}"
    )
    rows = []
    for n in SIZES:
        r = bench_size(n, sims)
        rows.append(r)
        print(
            f"{r['size']:>6} | {r['gen_s']:7.2f} | {r['verilator_build_s']:19.1f} | "
            f"{r['verilator_cycles_per_s']:15,.0f} | {r['icarus_build_s']:16.1f} | "
            f"{r['icarus_cycles_per_s']:12,.0f}",
            flush=True,
        )
    out = runner.BUILD_ROOT / "bench" / "array.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"core": c, "array": rows}, indent=2))
    print(
        f"(generation: median of {GEN_REPEATS}; simulation: median of 3 windows; written to {out})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
