"""Run one layer on the RTL: random data, lowering, simulation, bit-exact check, report, save.

Used by ``tandem sim --layer``. The saved directory holds every tensor as ``.npy``, a
``manifest.json`` naming the layer, each file and its layout, and ``recheck.py``: a NumPy-only
script that recomputes the layer from the saved tensors and compares it with the RTL output.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kernels.conv import layer_golden, random_layer_data
from kernels.layers import VECTOR_LAYERS, Add, Conv2D, Dense, DepthwiseConv2D, Layer, Pool2D
from kernels.lower import TilePlan, default_plan
from kernels.lower_vector import VectorPlan, default_vector_plan, lower_layer
from rtl.config import HWConfig
from tb.core_sim import CoreJob, run_programs

__all__ = ["LayerRun", "run_layer", "save_layer_run"]


@dataclass(frozen=True)
class LayerRun:
    """The outcome of one layer on the RTL."""

    layer: str
    config: str
    sim: str
    seed: int
    plan: dict
    status: str
    error: str | None
    bit_exact: bool
    mismatches: int
    cycles: int
    macs: int
    engine: str  # array | vector
    utilization: float  # MACs / (cycles * peak MACs per cycle of the engine)
    bytes_read: int
    bytes_written: int
    counters: dict
    commands: int
    wall_seconds: float
    sim_cycles_per_second: float
    dram_latency: int
    dram_bandwidth: int

    def summary(self) -> str:
        lines = [
            f"layer      {self.layer}",
            f"config     {self.config} on {self.sim}, seed {self.seed}, DRAM latency "
            f"{self.dram_latency} cycles, {self.dram_bandwidth} B/cycle",
            f"plan       {self.plan}  ({self.commands} commands)",
            f"result     {'BIT-EXACT' if self.bit_exact else 'MISMATCH'} vs golden"
            + (f" ({self.mismatches} values differ)" if self.mismatches else "")
            + (f"; {self.error}" if self.error else ""),
            f"cycles     {self.cycles:,}",
            f"MACs       {self.macs:,}  utilization {100 * self.utilization:.1f}% of the "
            f"{self.engine}'s peak",
            f"DRAM       read {self.bytes_read:,} B, written {self.bytes_written:,} B",
            "counters   " + ", ".join(f"{k} {v:,}" for k, v in self.counters.items()),
            f"simulation {self.sim_cycles_per_second:,.0f} cycles/s "
            f"({self.wall_seconds:.1f} s wall including build, lowering and start-up)",
        ]
        return "\n".join(lines)


def run_layer(
    config: HWConfig,
    layer: Layer,
    *,
    sim: str = "verilator",
    seed: int = 0,
    plan: TilePlan | VectorPlan | None = None,
    latency: int = 20,
    bandwidth: int = 16,
) -> tuple[LayerRun, dict, np.ndarray | None, np.ndarray]:
    """Run ``layer`` with random data; return (report, tensors, RTL output, golden output).

    Convolutions and dense layers run on the array (``TilePlan``), depthwise, add and pooling
    layers on the vector unit (``VectorPlan``)."""
    tensors = random_layer_data(layer, np.random.default_rng(seed))
    vector = isinstance(layer, VECTOR_LAYERS)
    if plan is None:
        plan = default_vector_plan(config, layer) if vector else default_plan(config, layer)
    low = lower_layer(config, layer, tensors, plan)
    golden = layer_golden(layer, tensors)
    job = CoreJob.from_lowered(low, latency=latency, bandwidth=bandwidth)
    t0 = time.perf_counter()
    (res,) = run_programs(config, [job], sim=sim, name=f"layer-{layer.name}")
    wall = time.perf_counter() - t0
    out = None
    mismatches = golden.size
    if res.status == "done":
        out = np.frombuffer(res.output, dtype=np.int8).reshape(golden.shape).copy()
        mismatches = int((out != golden).sum())
    cycles = res.cycles
    peak = config.vector_lanes if vector else config.pes
    report = LayerRun(
        layer=_describe(layer),
        config=config.name,
        sim=sim,
        seed=seed,
        plan=asdict(plan),
        status=res.status,
        error=res.error,
        bit_exact=res.status == "done" and mismatches == 0,
        mismatches=mismatches if res.status == "done" else 0,
        cycles=cycles,
        macs=low.macs,
        engine="vector" if vector else "array",
        utilization=low.macs / (cycles * peak) if cycles else 0.0,
        bytes_read=res.counters["rd_bytes"],
        bytes_written=res.counters["wr_bytes"],
        counters=res.counters,
        commands=len(low.program),
        wall_seconds=wall,
        sim_cycles_per_second=cycles / res.sim_seconds if res.sim_seconds else 0.0,
        dram_latency=latency,
        dram_bandwidth=bandwidth,
    )
    return report, tensors, out, golden


def _describe(layer: Layer) -> str:
    if isinstance(layer, Dense):
        return f"{layer.name}: dense {layer.m}x{layer.k} @ {layer.k}x{layer.n}, act {layer.act}"
    if isinstance(layer, VECTOR_LAYERS):
        shape = f"{layer.batch}x{layer.h}x{layer.w}x{layer.c}"
        if isinstance(layer, Add):
            return f"{layer.name}: add {shape} + {shape}, act {layer.act}"
        if isinstance(layer, DepthwiseConv2D):
            return (
                f"{layer.name}: depthwise {shape}, {layer.k}x{layer.k} stride {layer.stride} "
                f"pad {layer.pad}, act {layer.act}"
            )
        return (
            f"{layer.name}: {layer.kind}pool {shape}, {layer.kh}x{layer.kw} stride "
            f"{layer.stride} pad {layer.pad}"
        )
    c = layer
    groups = f", {c.groups} groups" if c.groups > 1 else ""
    return (
        f"{c.name}: conv {c.batch}x{c.h}x{c.w}x{c.cin} -> {c.cout}, {c.k}x{c.k} stride {c.stride} "
        f"pad {c.pad}{groups}, act {c.act}"
    )


_RECHECK = '''"""Recheck a Tandem RTL run from the saved tensors (NumPy only): python recheck.py"""
import json
from pathlib import Path

import numpy as np

here = Path(__file__).resolve().parent
man = json.loads((here / "manifest.json").read_text())
t = {k: np.load(here / v["file"]).astype(np.int64) for k, v in man["files"].items()}
L = man["layer"]
kind = L["kind"]


def windows(x, kh, kw, s, p, fill):
    """(n, oh, ow, kh*kw, c) windows of an NHWC tensor padded with ``fill``."""
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=fill)
    oh, ow = (xp.shape[1] - kh) // s + 1, (xp.shape[2] - kw) // s + 1
    taps = [xp[:, ky : ky + s * (oh - 1) + 1 : s, kx : kx + s * (ow - 1) + 1 : s, :]
            for ky in range(kh) for kx in range(kw)]
    return np.stack(taps, axis=3)


if kind == "dense":  # (m, k) @ (k, n)
    acc = t["input"] @ t["weights"] + t["bias"]
elif kind == "conv2d":  # NHWC input, HWIO weights (kh, kw, cin/groups, cout)
    k, g = L["kernel"], L["groups"]
    win = windows(t["input"], k, k, L["stride"], L["padding"], 0)
    n, oh, ow, taps, cin = win.shape
    win = win.reshape(n, oh, ow, taps, g, cin // g)  # group j: input channels j*cin/g...
    w = t["weights"].reshape(taps, cin // g, g, -1)  # and output channels j*cout/g...
    acc = np.einsum("nyxtgc,tcgo->nyxgo", win, w).reshape(n, oh, ow, -1) + t["bias"]
elif kind == "depthwise":  # NHWC input, (kh, kw, c) weights, one filter per channel
    k = L["kernel"]
    win = windows(t["input"], k, k, L["stride"], L["padding"], 0)
    acc = (win * t["weights"].reshape(k * k, -1)).sum(axis=3) + t["bias"]
elif kind == "add":  # (a - za) * ma + (b - zb) * mb + bias
    acc = (t["a"] - t["za"]) * t["ma"] + (t["b"] - t["zb"]) * t["mb"] + t["bias"]
elif kind == "maxpool":  # padding never wins
    acc = windows(t["input"], L["kernel"], L["kernel_w"], L["stride"], L["padding"], -128)
    acc = acc.max(axis=3)
else:  # avgpool: window sum (padding counts 0), then requantized
    win = windows(t["input"], L["kernel"], L["kernel_w"], L["stride"], L["padding"], 0)
    acc = win.sum(axis=3) + t["bias"]
if kind == "maxpool":
    y = acc.astype(np.int8)
else:
    acc = ((acc + 2**31) % 2**32) - 2**31  # int32 accumulator (wrapping)
    q = man["requant"]
    M, S = t["multiplier"].astype(object), t["shift"].astype(object)
    R = np.array([1 << (int(v) - 1) if v > 0 else 0 for v in S], dtype=object)
    y = (acc.astype(object) * M + R) // np.array([1 << int(v) for v in S], dtype=object)
    y = np.clip(y + q["zero_point"], q["lo"], q["hi"]).astype(np.int8)
rtl = t["output_rtl"].astype(np.int8)
print("bit-exact" if np.array_equal(y, rtl) else f"MISMATCH in {(y != rtl).sum()} values")
'''


def save_layer_run(
    out_dir: str | Path, report: LayerRun, layer: Layer, tensors: dict, rtl_out: np.ndarray | None
) -> Path:
    """Write the tensors, the RTL output, ``manifest.json`` and ``recheck.py`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = _arrays(layer, tensors)
    if rtl_out is not None:
        arrays["output_rtl"] = (rtl_out, arrays["_out_layout"][1])
    arrays.pop("_out_layout")
    files = {}
    for name, (arr, layout) in arrays.items():
        arr = np.asarray(arr)
        np.save(out / f"{name}.npy", arr)
        files[name] = {
            "file": f"{name}.npy",
            "dtype": str(arr.dtype),
            "shape": list(arr.shape),
            "layout": layout,
        }
    desc = _layer_desc(layer)
    rq = tensors.get("requant")
    manifest = {
        "tandem": "layer run",
        "layer": desc,
        "requant": None
        if rq is None
        else {
            "formula": "acc (int32, wrapping, bias included; see layer.accumulate); "
            "y = clamp(((acc * M + R) >> S) + zero_point, lo, hi), R = 1 << (S-1) if S > 0 "
            "else 0, >> arithmetic (floor)",
            "zero_point": rq.zero_point,
            "lo": rq.lo,
            "hi": rq.hi,
            "act": rq.act,
        },
        "files": files,
        "result": asdict(report),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "recheck.py").write_text(_RECHECK)
    return out


def _per_channel(values, channels: int, what: str) -> tuple[np.ndarray, str]:
    return np.broadcast_to(np.array(values, dtype=np.int64), (channels,)).copy(), what


def _arrays(layer: Layer, tensors: dict) -> dict[str, tuple]:
    """Every tensor to save as ``name: (array, layout)``; ``_out_layout`` names the output's."""
    nhwc = "NHWC (batch, height, width, channels)"
    if isinstance(layer, Dense):
        arrays = {
            "input": (tensors["input"], "MK (rows, features)"),
            "weights": (tensors["weights"], "KN (features, outputs)"),
        }
        channels, out_layout = layer.n, "MN (rows, outputs)"
    elif isinstance(layer, Conv2D):
        arrays = {
            "input": (tensors["input"], nhwc),
            "weights": (tensors["weights"], "HWIO (kh, kw, cin/groups, cout)"),
        }
        channels, out_layout = layer.cout, nhwc
    elif isinstance(layer, DepthwiseConv2D):
        arrays = {
            "input": (tensors["input"], nhwc),
            "weights": (tensors["weights"], "HWC (kh, kw, channels): one filter per channel"),
        }
        channels, out_layout = layer.c, nhwc
    elif isinstance(layer, Add):
        arrays = {"a": (tensors["a"], nhwc), "b": (tensors["b"], nhwc)}
        for key, what in (
            ("za", "zero point of a"),
            ("zb", "zero point of b"),
            ("ma", "int16 multiplier of a"),
            ("mb", "int16 multiplier of b"),
        ):
            arrays[key] = _per_channel(tensors[key], layer.c, f"per channel: {what}")
        channels, out_layout = layer.c, nhwc
    else:
        arrays = {"input": (tensors["input"], nhwc)}
        channels, out_layout = layer.c, nhwc
    if "bias" in tensors:
        arrays["bias"] = (tensors["bias"], "per output channel (int32)")
    if "requant" in tensors:
        rq = tensors["requant"]
        arrays["multiplier"] = _per_channel(
            rq.multiplier, channels, "per output channel (signed 32-bit M)"
        )
        arrays["shift"] = _per_channel(rq.shift, channels, "per output channel (S, 0..63)")
    arrays["_out_layout"] = (None, out_layout)
    return arrays


def _layer_desc(layer: Layer) -> dict:
    """The manifest's description of the layer (kind, shape, window, groups)."""
    if isinstance(layer, Dense):
        return {
            "kind": "dense",
            "name": layer.name,
            "m": layer.m,
            "k": layer.k,
            "n": layer.n,
            "kernel": 1,
            "stride": 1,
            "padding": 0,
            "groups": 1,
            "act": layer.act,
            "accumulate": "x @ w + bias",
        }
    base = {"name": layer.name, "batch": layer.batch, "height": layer.h, "width": layer.w}
    if isinstance(layer, Conv2D):
        return base | {
            "kind": "conv2d",
            "in_channels": layer.cin,
            "out_channels": layer.cout,
            "kernel": layer.k,
            "stride": layer.stride,
            "padding": layer.pad,
            "groups": layer.groups,
            "act": layer.act,
            "accumulate": (
                "sum over taps and cin of x * w + bias, zero padding"
                if layer.groups == 1
                else "sum over taps and the cin/groups input channels of the output channel's "
                "group (consecutive slices of cin and cout) of x * w + bias, zero padding"
            ),
        }
    base |= {"in_channels": layer.c, "out_channels": layer.c, "groups": layer.c}
    if isinstance(layer, DepthwiseConv2D):
        return base | {
            "kind": "depthwise",
            "kernel": layer.k,
            "stride": layer.stride,
            "padding": layer.pad,
            "act": layer.act,
            "accumulate": "per channel: sum over taps of x * w + bias, zero padding",
        }
    if isinstance(layer, Add):
        return base | {
            "kind": "add",
            "kernel": 1,
            "stride": 1,
            "padding": 0,
            "act": layer.act,
            "accumulate": "(a - za) * ma + (b - zb) * mb + bias",
        }
    assert isinstance(layer, Pool2D)
    how = (
        "max over the window, padding never wins (no requantization)"
        if layer.kind == "max"
        else "sum over the window (padding counts 0) + bias"
    )
    return base | {
        "kind": f"{layer.kind}pool",
        "kernel": layer.kh,
        "kernel_w": layer.kw,
        "stride": layer.stride,
        "padding": layer.pad,
        "act": "none",
        "accumulate": how,
    }
