"""The ``tandem`` command line."""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["main"]


def _cmd_verilog(args: argparse.Namespace) -> int:
    from rtl.config import load_config
    from rtl.generate import write_verilog

    cfg = load_config(args.config)
    t0 = time.perf_counter()
    paths = write_verilog(cfg, args.out, args.top)
    dt = time.perf_counter() - t0
    print(
        f"config {cfg.name}: {cfg.rows}x{cfg.cols} array, dataflow {cfg.dataflow}, top {args.top}"
    )
    for kind, path in paths.items():
        print(f"  {kind:8s} {path}")
    print(f"generated in {dt:.2f} s")
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    if args.network:
        return _sim_network(args)
    given = {
        "--input-size": args.input_size,
        "--naive": args.naive,
        "--mapped": args.mapped,
        "--default-plans": args.default_plans,
    }
    network_only = [flag for flag, value in given.items() if value]
    if network_only:
        raise ValueError(f"{', '.join(network_only)} apply only to --network, not --layer")
    return _sim_layer(args)


def _sim_network(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from mapping.compiler import compile_network, naive_plans
    from mapping.zoo import get_network
    from rtl.config import load_config
    from tb.sim_network import run_network

    layer_only = [f"--{k}" for k in ("tile", "dataflow", "save") if getattr(args, k)]
    if layer_only:
        raise ValueError(f"{', '.join(layer_only)} apply only to --layer, not --network")
    cfg = load_config(args.config)
    network = get_network(args.network, input_size=args.input_size or 224)
    if args.naive:
        plans, mapping = naive_plans(cfg, network), "naive plans"
    elif args.default_plans:
        plans, mapping = None, "default plans"
    else:
        from mapping.mapper import map_network

        plans = map_network(cfg, network, bandwidth=args.dram_bw, latency=args.dram_latency).plans
        mapping = "the mapper's plans (objective cycles)"
    if not args.json:
        print(
            f"compiling {network.name} ({network.input_shape[1]}x{network.input_shape[2]}, "
            f"{len(network)} nodes, {network.macs:,} MACs) for {cfg.name} with {mapping}...",
            flush=True,
        )
    compiled = compile_network(cfg, network, plans, seed=args.seed)
    if not args.json:
        print(
            f"simulating {len(compiled.program):,} commands over a {len(compiled.image):,}-byte "
            f"image ({args.sim}); building the core if needed...",
            flush=True,
        )
    report = run_network(
        cfg, compiled, sim=args.sim, latency=args.dram_latency, bandwidth=args.dram_bw
    )
    if args.json:
        print(json.dumps(asdict(report) | {"plans": mapping}, indent=2))
    else:
        print(report.summary())
    return 0 if report.bit_exact else 1


def _sim_layer(args: argparse.Namespace) -> int:
    import json

    from kernels.layers import VECTOR_LAYERS, parse_layer_spec
    from kernels.lower import TilePlan, default_plan
    from kernels.lower_vector import VectorPlan
    from rtl.config import load_config
    from tb.sim_layer import run_layer, save_layer_run

    cfg = load_config(args.config)
    layer = parse_layer_spec(args.layer)
    plan = None
    if args.tile:
        try:
            oh, ow = (int(v) for v in args.tile.lower().split("x"))
        except ValueError:
            raise ValueError(  # noqa: B904 - the parse error itself says nothing useful
                f"--tile must look like 8x56 (output rows x columns), not {args.tile!r}"
            )
        if isinstance(layer, VECTOR_LAYERS):
            plan = VectorPlan(oh_t=oh, ow_t=ow)
        else:
            plan = TilePlan(oh_t=oh, ow_t=ow, dataflow=args.dataflow or "ws")
        plan.validate(cfg, layer)
    if args.dataflow and isinstance(layer, VECTOR_LAYERS):
        raise ValueError(
            f"--dataflow chooses the array's dataflow; layer {layer.name!r} runs on the vector "
            "unit: drop --dataflow"
        )
    if args.dataflow and not args.tile:
        plan = default_plan(cfg, layer, args.dataflow)
    if not args.json:
        print(
            f"simulating {args.layer} on {cfg.name} ({args.sim}); building the core if needed...",
            flush=True,
        )
    report, tensors, out, _golden = run_layer(
        cfg,
        layer,
        sim=args.sim,
        seed=args.seed,
        plan=plan,
        latency=args.dram_latency,
        bandwidth=args.dram_bw,
    )
    if args.save:
        save_layer_run(args.save, report, layer, tensors, out)
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(report), indent=2))
    else:
        print(report.summary())
        if args.save:
            print(
                f"saved      {args.save}/ (manifest.json, *.npy; check with: python "
                f"{args.save}/recheck.py)"
            )
    return 0 if report.bit_exact else 1


def _load_network(args: argparse.Namespace):
    """The network named by --network, --onnx or --csv (with --input-size / --batch)."""
    from pathlib import Path

    if args.network:
        from mapping.zoo import get_network

        kwargs = {"input_size": args.input_size} if args.input_size else {}
        return get_network(args.network, **kwargs)
    if args.input_size:
        raise ValueError("--input-size applies to --network (the zoo); an ONNX or CSV file "
                         "fixes its own input size")  # fmt: skip
    path = Path(args.onnx or args.csv)
    if not path.is_file():
        raise FileNotFoundError(f"{'--onnx' if args.onnx else '--csv'} {path}: no such file")
    if args.onnx:
        from mapping.onnx_import import load_onnx

        return load_onnx(path)
    from mapping.scalesim import load_csv

    return load_csv(path)


def _mapping(args: argparse.Namespace, cfg, network, naive: bool):
    from mapping.mapper import map_network

    return map_network(
        cfg,
        network,
        objective=args.objective,
        naive=naive,
        overrides=args.override or None,
        bandwidth=args.dram_bw,
        progress=not getattr(args, "json", False) and sys.stderr.isatty(),
    )


def _cmd_map(args: argparse.Namespace) -> int:
    import json

    from rtl.config import load_config

    cfg = load_config(args.config)
    network = _load_network(args)
    result = _mapping(args, cfg, network, args.naive)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"network {network.name}: {len(network)} nodes, {network.macs:,} MACs; "
          f"config {cfg.name} ({cfg.rows}x{cfg.cols} array, {cfg.vector_lanes} vector lanes), "
          f"DRAM {args.dram_bw} B/cycle")  # fmt: skip
    print(result.table())
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from mapping.report import write_report
    from rtl.config import load_config

    cfg = load_config(args.config)
    network = _load_network(args)
    mapped = _mapping(args, cfg, network, False)
    naive = _mapping(args, cfg, network, True)
    paths = write_report(mapped, naive, args.out)
    print(f"{network.name} on {cfg.name}: mapped {mapped.cycles:,} cycles, naive "
          f"{naive.cycles:,} ({naive.cycles / max(mapped.cycles, 1):.2f}x)")  # fmt: skip
    for kind, path in paths.items():
        print(f"  {kind:8s} {path}")
    return 0


def _add_network_source(p: argparse.ArgumentParser) -> None:
    from mapping.zoo import NETWORKS

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--network", metavar="NAME", choices=sorted(NETWORKS),
                     help=f"a network of the zoo: {', '.join(sorted(NETWORKS))}")  # fmt: skip
    src.add_argument("--onnx", metavar="FILE", help="an ONNX model file")
    src.add_argument("--csv", metavar="FILE", help="a SCALE-Sim topology CSV file")
    p.add_argument("--input-size", type=int, metavar="N",
                   help="input height and width for --network (default: the network's own, "
                   "224 for the ImageNet networks)")  # fmt: skip


def _add_mapping_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--objective", choices=["cycles", "energy", "edp"], default="cycles",
                   help="what the mapper minimizes per layer (default cycles)")  # fmt: skip
    p.add_argument("--override", action="append", metavar="KEY=VALUE",
                   help="restrict a layer (by name) or a kind (conv, depthwise, ...): values "
                   "array|vector, ws|os, OHxOW, single|double; e.g. --override depthwise=array "
                   "--override conv_3=os,8x56 (repeatable)")  # fmt: skip
    p.add_argument(
        "--dram-bw",
        type=int,
        default=16,
        metavar="BYTES",
        help="DRAM bandwidth in bytes per cycle the model assumes (default 16)",
    )


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        required=True,
        metavar="CFG",
        help="preset name (tiny, default, wide, large) or a .toml/.json file",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tandem",
        description="Generate, verify and model the Tandem DNN accelerator.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "verilog",
        help="write the Verilog of a configuration and its resolved config JSON",
        description="Write <out>/tandem_core.v (or tandem_array.v), <out>/config.json and "
        "<out>/tandem_isa.vh for a configuration. "
        "The same config always gives byte-identical Verilog.",
    )
    _add_config(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--top",
        choices=["core", "array"],
        default="core",
        help="core: the whole accelerator (default); array: the systolic array alone",
    )
    p.set_defaults(func=_cmd_verilog)

    p = sub.add_parser(
        "map",
        help="map a network onto a configuration and predict its cycles, bytes and energy",
        description="Choose, for every layer, the engine (array or vector unit), dataflow, tile, "
        "loop order and buffering that minimize the analytical cost model's objective under the "
        "configuration's capacities, and print the per-layer table (name, kind, engine, output "
        "shape, MACs, DRAM bytes, plan, predicted cycles, utilization) and the network totals. "
        "Plans read: 'ws 9x56 db res' = weight-stationary, 9x56 output tiles, double-buffered, "
        "weights resident (n-in / n-out: weights streamed, n-tiles inside / outside the "
        "spatial tiles; sb = single-buffered; k4 = the reduction split into 4 groups that "
        "accumulate, for weights that do not fit the scratchpad).",
    )
    _add_config(p)
    _add_network_source(p)
    _add_mapping_options(p)
    p.add_argument("--naive", action="store_true",
                   help="the baseline instead: every layer with MACs on the array (depthwise one "
                   "channel at a time), largest single-buffered tile, no overlap")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the same data as JSON")
    p.set_defaults(func=_cmd_map)

    p = sub.add_parser(
        "report",
        help="write a per-layer Markdown table and PNG plot of a mapped network vs the naive plan",
        description="Map the network (as tandem map) and with the naive baseline, and write "
        "OUT/<network>-<config>.md (per-layer table, totals, speedup) and OUT/<network>-<config>"
        ".png (per-layer cycles by engine against the baseline; utilization).",
    )
    _add_config(p)
    _add_network_source(p)
    _add_mapping_options(p)
    p.add_argument("--out", default="build/reports", metavar="DIR",
                   help="output directory (default build/reports)")  # fmt: skip
    p.set_defaults(func=_cmd_report)

    from kernels.layers import LAYER_SPEC_HELP
    from mapping.zoo import NETWORKS

    p = sub.add_parser(
        "sim",
        help="run one layer or a whole network on the RTL with random data, checked bit-exact",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="--layer: lower one layer (random int8 data, realistic requantization) into "
        "a program (convolutions and dense layers on the systolic array; depthwise, add and "
        "pooling on the vector unit), run it on the generated core in Verilator or Icarus against "
        "the simulated DRAM, compare every output with the golden model, and report cycles, MAC "
        "utilization, DRAM bytes and the performance counters.\n\n"
        "--network: compile a whole network (mapping.compiler: one program, one DRAM image, "
        "requantization calibrated on random data) and run it as one job; every node's tensor "
        "is compared with its golden (docs/networks.md).\n\n"
        "Exit status 1 if the RTL output differs.\n\n" + LAYER_SPEC_HELP,
    )
    _add_config(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--layer", metavar="SPEC", help="layer spec (see above)")
    what.add_argument(
        "--network",
        metavar="NAME",
        help=f"a built-in network: {', '.join(NETWORKS)}",
    )
    p.add_argument(
        "--input-size",
        type=int,
        metavar="N",
        help="--network: N x N input image (default 224; 32 is the smallest for most)",
    )
    plans = p.add_mutually_exclusive_group()
    plans.add_argument(
        "--naive",
        action="store_true",
        help="--network: the naive baseline (mapping.compiler.naive_plans: no double "
        "buffering, depthwise on the array one channel at a time) instead of the mapper's plans",
    )
    plans.add_argument(
        "--mapped",
        action="store_true",
        help="--network: the mapper's plans (mapping.mapper.map_network, objective cycles); "
        "the default",
    )
    plans.add_argument(
        "--default-plans",
        action="store_true",
        help="--network: each layer's default plan (kernels.lower.default_plan, "
        "default_vector_plan: the largest tile) instead of the mapper's plans",
    )
    p.add_argument("--sim", choices=["verilator", "icarus"], default="verilator")
    p.add_argument("--seed", type=int, default=0, help="random data seed (default 0)")
    p.add_argument(
        "--tile", metavar="OHxOW", help="--layer: output tile, e.g. 8x56 (default: chosen)"
    )
    p.add_argument(
        "--dataflow",
        choices=["ws", "os"],
        help="--layer: lower weight- or output-stationary (default: ws when the config has it)",
    )
    p.add_argument(
        "--dram-latency",
        type=int,
        default=20,
        metavar="CYCLES",
        help="DRAM read latency in cycles (default 20)",
    )
    p.add_argument(
        "--dram-bw",
        type=int,
        default=16,
        metavar="BYTES",
        help="DRAM bandwidth in bytes per cycle (default 16)",
    )
    p.add_argument(
        "--save",
        metavar="DIR",
        help="--layer: write inputs, weights, bias, requant parameters and the RTL output as "
        ".npy with manifest.json and a NumPy-only recheck.py",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_sim)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:  # bad input: name it, exit 2
        print(f"tandem {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
