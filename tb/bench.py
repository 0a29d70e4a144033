"""``make bench``: the core benchmark, the depthwise benchmark, and per array size the generation
time, Verilator build time and simulation speed.

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
    base = load_config("default")
    # the array alone: only rows/cols matter, but the config must stay valid (the vector unit
    # reads its lanes from one scratchpad row of `rows` bytes)
    cfg = base.replace(name=f"bench{n}x{n}", rows=n, cols=n, vector_lanes=min(base.vector_lanes, n))
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
#: the simulated DRAM of the core benchmark (issue 3: 16 B/cycle), also used by tb.profile
BENCH_DRAM = {"latency": 20, "bandwidth": 16}


def bench_core(repeats: int = 5) -> dict:
    """The core on ``default`` with 16 B/cycle DRAM running the 56x56x64 -> 64 3x3 conv,
    ``repeats`` times: the speed is the median (a shared machine's speed drifts by tens of
    per cent from one run to the next)."""
    from kernels.layers import parse_layer_spec
    from tb.sim_layer import run_layer

    cfg = load_config("default")
    layer = parse_layer_spec(BENCH_LAYER)
    rates = []
    for _ in range(repeats):
        report, *_ = run_layer(cfg, layer, sim="verilator", seed=0, **BENCH_DRAM)
        if not report.bit_exact:
            raise SystemExit(f"benchmark layer is not bit-exact: {report.error}")
        rates.append(report.sim_cycles_per_second)
    return {
        "layer": BENCH_LAYER,
        "cycles": report.cycles,
        "ideal_cycles": report.macs // cfg.pes,
        "utilization": report.utilization,
        "sim_cycles_per_s": statistics.median(rates),
        "sim_cycles_per_s_runs": rates,
        "bytes_read": report.bytes_read,
        "bytes_written": report.bytes_written,
    }


def _run_lowered(cfg, low, golden, name: str):
    """One lowered program on the RTL (16 B/cycle, latency 20); exits if not bit-exact."""
    import numpy as np

    from tb.core_sim import CoreJob, run_programs

    (r,) = run_programs(cfg, [CoreJob.from_lowered(low, bandwidth=16)], name=name)
    got = np.frombuffer(r.output, np.int8).reshape(golden.shape) if r.status == "done" else None
    if got is None or not np.array_equal(got, golden):
        raise SystemExit(f"{name}: {low.layer.name} is not bit-exact on the RTL: {r.error}")
    return r


def bench_depthwise(naive: bool = True, input_size: int = 224) -> list[dict]:
    """The 17 MobileNetV2 depthwise layers on ``default`` (16 lanes, 16 B/cycle DRAM): the vector
    unit against the two array mappings of ``kernels.naive`` (one channel at a time, as Gemmini
    does; and per-channel im2col GEMMs over a host-made patch copy), all on the RTL."""
    import numpy as np

    from kernels.conv import layer_golden, random_layer_data
    from kernels.lower_vector import lower_layer
    from kernels.naive import lower_depthwise_im2col, lower_depthwise_naive
    from mapping.cost import vector_layer_cycles
    from mapping.zoo import mobilenet_v2_depthwise

    cfg = load_config("default")
    lanes = cfg.vector_lanes
    print(
        f"{'layer':<10} {'input':>12} {'s':>2} {'MACs':>10} | {'vector':>8} {'util':>6} "
        f"{'model':>8} | {'per-chan':>10} {'x':>5} | {'im2col':>9} {'x':>5} {'host copy':>10}",
        flush=True,
    )
    rows = []
    for i, layer in enumerate(mobilenet_v2_depthwise(input_size)):
        t = random_layer_data(layer, np.random.default_rng(i))
        golden = layer_golden(layer, t)
        low = lower_layer(cfg, layer, t)
        r = _run_lowered(cfg, low, golden, f"bench-dw-{i}")
        model = vector_layer_cycles(cfg, layer, low.plan)
        if r.counters["vec_busy"] != model.busy:
            raise SystemExit(f"{layer.name}: vector busy cycles {r.counters['vec_busy']:,} on "
                             f"the RTL, {model.busy:,} in the model")  # fmt: skip
        row = {
            "layer": layer.name,
            "input": f"{layer.h}x{layer.w}x{layer.c}",
            "stride": layer.stride,
            "macs": layer.macs,
            "cycles": r.cycles,
            "utilization": layer.macs / (r.cycles * lanes),
            "model_cycles": model.total,
            "sim_cycles_per_s": r.cycles / r.sim_seconds if r.sim_seconds else 0.0,
        }
        text = f"{'-':>10} {'-':>5} | {'-':>9} {'-':>5} {'-':>10}"
        if naive:
            per_channel = _run_lowered(cfg, lower_depthwise_naive(cfg, layer, t), golden,
                                       f"bench-dw-naive-{i}")  # fmt: skip
            im2col_low = lower_depthwise_im2col(cfg, layer, t)
            im2col = _run_lowered(cfg, im2col_low, golden, f"bench-dw-im2col-{i}")
            row |= {
                "per_channel_cycles": per_channel.cycles,
                "per_channel_speedup": per_channel.cycles / r.cycles,
                "im2col_cycles": im2col.cycles,
                "im2col_speedup": im2col.cycles / r.cycles,
                "im2col_host_copy_bytes": im2col_low.regions["im2col"].nbytes,
            }
            text = (
                f"{row['per_channel_cycles']:>10,} {row['per_channel_speedup']:>4.1f}x | "
                f"{row['im2col_cycles']:>9,} {row['im2col_speedup']:>4.1f}x "
                f"{row['im2col_host_copy_bytes'] / 1e6:>8.2f}MB"
            )
        rows.append(row)
        print(
            f"{row['layer']:<10} {row['input']:>12} {row['stride']:>2} {row['macs']:>10,} | "
            f"{row['cycles']:>8,} {100 * row['utilization']:>5.1f}% {row['model_cycles']:>8,} | "
            f"{text}",
            flush=True,
        )
    macs = sum(r["macs"] for r in rows)
    cycles = sum(r["cycles"] for r in rows)
    mean = statistics.mean(r["utilization"] for r in rows)
    print(
        f"all {len(rows)}: {cycles:,} vector cycles; utilization mean {100 * mean:.1f}% of peak "
        f"({lanes} MACs/cycle; target >= 85%), overall {100 * macs / (cycles * lanes):.1f}%",
        flush=True,
    )
    if naive:
        for key, what in (("per_channel", "one channel at a time"), ("im2col", "im2col GEMMs")):
            total = sum(r[f"{key}_cycles"] for r in rows)
            print(
                f"  vs {what} on the array: {total:,} cycles, {total / cycles:.1f}x in all; "
                f"per layer min {min(r[f'{key}_speedup'] for r in rows):.1f}x, "
                f"max {max(r[f'{key}_speedup'] for r in rows):.1f}x (target >= 10x each)",
                flush=True,
            )
    return rows


MAP_NETWORKS = ("mobilenetv2", "resnet50", "resnext50", "vgg16", "googlenet", "alexnet")
MAP_REPEATS = 5


def bench_map() -> list[dict]:
    """`tandem map` speed: each zoo network at 224x224 on ``default``, the median of repeated
    mappings in one process (one core)."""
    from mapping.mapper import map_network
    from mapping.zoo import get_network

    cfg = load_config("default")
    rows = []
    for name in MAP_NETWORKS:
        net = get_network(name)
        times, result = [], None
        for _ in range(MAP_REPEATS):
            t0 = time.perf_counter()
            result = map_network(cfg, net)
            times.append(time.perf_counter() - t0)
        naive = map_network(cfg, net, naive=True)
        seconds = statistics.median(times)
        rows.append({
            "network": name,
            "layers": sum(1 for lm in result.layers if lm.cost is not None),
            "seconds": seconds,
            "evaluations": result.evaluations,
            "evaluations_per_s": result.evaluations / seconds,
            "cycles": result.cycles,
            "naive_cycles": naive.cycles,
            "utilization": result.utilization,
        })  # fmt: skip
    return rows


def bench_network(name: str = "mobilenetv2", input_size: int = 224) -> dict:
    """A zoo network on ``default`` (DRAM 16 B/cycle, latency 20) on Verilator, bit-exact in
    every tensor, with the mapper's plans and with the naive baseline: RTL cycles, the model's
    prediction, and the speedup."""
    from mapping.compiler import compile_network
    from mapping.mapper import map_network
    from mapping.zoo import get_network
    from tb.sim_network import run_network

    cfg = load_config("default")
    net = get_network(name, input_size=input_size)
    out = {"network": net.name, "input_size": input_size}
    for key, naive in (("mapped", False), ("naive", True)):
        mapping = map_network(cfg, net, naive=naive)
        t0 = time.perf_counter()
        compiled = compile_network(cfg, net, mapping.plans)
        compile_s = time.perf_counter() - t0
        run = run_network(cfg, compiled)
        if not run.bit_exact:
            raise RuntimeError(f"{net.name} ({key}) is not bit-exact on the RTL: {run.error}; "
                               f"first mismatch in {run.first_mismatch!r}")  # fmt: skip
        out[key] = {
            "rtl_cycles": run.cycles,
            "model_cycles": mapping.cycles,
            "model_error": mapping.cycles / run.cycles - 1,
            "utilization": run.utilization,
            "commands": run.commands,
            "compile_s": compile_s,
            "wall_s": run.wall_seconds,
            "sim_cycles_per_s": run.sim_cycles_per_second,
        }
    out["speedup"] = out["naive"]["rtl_cycles"] / out["mapped"]["rtl_cycles"]
    return out


def main(argv: list[str]) -> int:
    sims = ("verilator", "icarus")
    print(f"Tandem bench: tandem map, zoo networks at 224x224 on default (median of {MAP_REPEATS})")
    maps = bench_map()
    for r in maps:
        print(
            f"  {r['network']:<12} {r['layers']:>3} layers mapped in {r['seconds']:.3f} s "
            f"({r['evaluations']:,} plans, {r['evaluations_per_s']:,.0f} per s); predicted "
            f"{r['cycles']:,} cycles, {100 * r['utilization']:.1f}% of peak; naive "
            f"{r['naive_cycles']:,} ({r['naive_cycles'] / r['cycles']:.2f}x)",
            flush=True,
        )
    print("  (target: MobileNetV2 in <= 2 s on one core; ZigZag takes 329 s for the same network)")
    print()
    print("Tandem bench: MobileNetV2 224x224 on default, RTL (Verilator), mapped vs naive")
    net = bench_network()
    for key in ("mapped", "naive"):
        r = net[key]
        print(
            f"  {key:<6} {r['rtl_cycles']:>12,} RTL cycles (model {r['model_cycles']:,}, "
            f"{100 * r['model_error']:+.1f}%), {100 * r['utilization']:.1f}% of the array's peak, "
            f"{r['commands']:,} commands; bit-exact in every tensor; compile {r['compile_s']:.1f} "
            f"s, simulation {r['wall_s']:.0f} s wall ({r['sim_cycles_per_s']:,.0f} cycles/s)",
            flush=True,
        )
    print(f"  speedup of the mapped plan over the naive plan on the RTL: {net['speedup']:.2f}x "
          "(target >= 2.0x; the Berkeley study reports 1.4x)")  # fmt: skip
    print()
    print("Tandem bench: core on default (16x16), DRAM 16 B/cycle, latency 20")
    c = bench_core()
    print(
        f"  {c['layer']}: {c['cycles']:,} cycles (ideal {c['ideal_cycles']:,}), "
        f"MAC utilization {100 * c['utilization']:.1f}% (target >= 90%), "
        f"Verilator {c['sim_cycles_per_s']:,.0f} cycles/s median of "
        f"{len(c['sim_cycles_per_s_runs'])} runs (target >= 500k; runs "
        + ", ".join(f"{r / 1e3:.0f}k" for r in c["sim_cycles_per_s_runs"])
        + "), "
        f"DRAM read {c['bytes_read']:,} B, written {c['bytes_written']:,} B",
        flush=True,
    )
    print()
    print("Tandem bench: MobileNetV2 depthwise layers (224x224) on default, vector unit vs naive")
    dw = bench_depthwise(naive="--no-naive" not in argv)
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
    out.write_text(
        json.dumps(
            {"map": maps, "network": net, "core": c, "depthwise": dw, "array": rows}, indent=2
        )
    )
    print(
        f"(generation: median of {GEN_REPEATS}; simulation: median of 3 windows; written to {out})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
