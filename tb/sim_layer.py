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
from kernels.layers import Conv2D, Dense, Layer
from kernels.lower import TilePlan, default_plan, lower
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
    utilization: float  # MACs / (cycles * rows * cols)
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
            f"MACs       {self.macs:,}  utilization {100 * self.utilization:.1f}% of peak",
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
    plan: TilePlan | None = None,
    latency: int = 20,
    bandwidth: int = 16,
) -> tuple[LayerRun, dict, np.ndarray | None, np.ndarray]:
    """Run ``layer`` with random data; return (report, tensors, RTL output, golden output)."""
    tensors = random_layer_data(layer, np.random.default_rng(seed))
    plan = plan or default_plan(config, layer)
    low = lower(config, layer, tensors, plan)
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
        utilization=low.macs / (cycles * config.pes) if cycles else 0.0,
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
    c = layer
    return (
        f"{c.name}: conv {c.batch}x{c.h}x{c.w}x{c.cin} -> {c.cout}, {c.k}x{c.k} stride {c.stride} "
        f"pad {c.pad}, act {c.act}"
    )


_RECHECK = '''"""Recheck a Tandem RTL run from the saved tensors (NumPy only): python recheck.py"""
import json
from pathlib import Path

import numpy as np

here = Path(__file__).resolve().parent
man = json.loads((here / "manifest.json").read_text())
load = {k: np.load(here / v["file"]) for k, v in man["files"].items()}
x, w, b = load["input"].astype(np.int64), load["weights"].astype(np.int64), load["bias"]
L = man["layer"]
s, p, k = L["stride"], L["padding"], L["kernel"]
if L["kind"] == "dense":  # (m, k) @ (k, n)
    acc = x @ w
else:  # NHWC input, HWIO weights (kh, kw, cin, cout)
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    n, hp, wp, _ = xp.shape
    oh, ow = (hp - k) // s + 1, (wp - k) // s + 1
    acc = np.zeros((n, oh, ow, w.shape[3]), dtype=np.int64)
    for ky in range(k):
        for kx in range(k):
            patch = xp[:, ky : ky + s * (oh - 1) + 1 : s, kx : kx + s * (ow - 1) + 1 : s, :]
            acc += patch @ w[ky, kx]
acc = ((acc + b + 2**31) % 2**32) - 2**31  # int32 accumulator, bias included (wrapping)
q = man["requant"]
M, S = load["multiplier"].astype(object), load["shift"].astype(object)
R = np.array([1 << (int(v) - 1) if v > 0 else 0 for v in S], dtype=object)
y = (acc.astype(object) * M + R) // np.array([1 << int(v) for v in S], dtype=object)
y = np.clip(y + q["zero_point"], q["lo"], q["hi"]).astype(np.int8)
rtl = load["output_rtl"]
print("bit-exact" if np.array_equal(y, rtl) else f"MISMATCH in {(y != rtl).sum()} values")
'''


def save_layer_run(
    out_dir: str | Path, report: LayerRun, layer: Layer, tensors: dict, rtl_out: np.ndarray | None
) -> Path:
    """Write the tensors, the RTL output, ``manifest.json`` and ``recheck.py`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rq = tensors["requant"]
    cout = layer.n if isinstance(layer, Dense) else layer.cout
    arrays = {
        "input": (tensors["input"], "NHWC" if isinstance(layer, Conv2D) else "MK (rows, features)"),
        "weights": (
            tensors["weights"],
            "HWIO (kh, kw, cin, cout)" if isinstance(layer, Conv2D) else "KN (features, outputs)",
        ),
        "bias": (tensors["bias"], "per output channel"),
        "multiplier": (
            np.broadcast_to(np.array(rq.multiplier, dtype=np.int64), (cout,)).copy(),
            "per output channel (signed 32-bit M)",
        ),
        "shift": (
            np.broadcast_to(np.array(rq.shift, dtype=np.int64), (cout,)).copy(),
            "per output channel (S, 0..63)",
        ),
    }
    if rtl_out is not None:
        arrays["output_rtl"] = (rtl_out, "NHWC" if isinstance(layer, Conv2D) else "MN")
    files = {}
    for name, (arr, layout) in arrays.items():
        np.save(out / f"{name}.npy", arr)
        files[name] = {
            "file": f"{name}.npy",
            "dtype": str(arr.dtype),
            "shape": list(arr.shape),
            "layout": layout,
        }
    if isinstance(layer, Conv2D):
        desc = {
            "kind": "conv2d",
            "name": layer.name,
            "batch": layer.batch,
            "height": layer.h,
            "width": layer.w,
            "in_channels": layer.cin,
            "out_channels": layer.cout,
            "kernel": layer.k,
            "stride": layer.stride,
            "padding": layer.pad,
            "groups": 1,
            "act": layer.act,
        }
    else:
        desc = {
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
        }
    manifest = {
        "tandem": "layer run",
        "layer": desc,
        "requant": {
            "formula": "acc = sum(x*w) + bias (int32, wrapping); "
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
