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
    p.add_argument(
        "--config",
        required=True,
        metavar="CFG",
        help="preset name (tiny, default, wide, large) or a .toml/.json file",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--top",
        choices=["core", "array"],
        default="core",
        help="core: the whole accelerator (default); array: the systolic array alone",
    )
    p.set_defaults(func=_cmd_verilog)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"tandem {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
