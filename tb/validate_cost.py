"""The layer cost model against the RTL: run varied layers on Verilator, compare the cycles.

``python -m tb.validate_cost [--config tiny,default]`` runs every case of `CASES` for the named
configs (one simulator process per config, all its layers as jobs of one run; ``--vector`` adds
the vector-unit cases `VECTOR_CASES`) and prints the
validation table ``layer | plan | RTL | model | error`` with the model's terms;
``tests/test_layer_cost_sim.py`` asserts the tolerance on the same cases.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import numpy as np

from kernels.conv import random_layer_data
from kernels.layers import Add, Conv2D, Dense, DepthwiseConv2D, Layer, Pool2D
from kernels.lower import TilePlan, default_plan, lower
from kernels.lower_vector import VectorPlan, lower_vector
from kernels.naive import lower_depthwise_naive
from mapping.layer_cost import LayerCost, layer_cost
from rtl.config import HWConfig, load_config
from tb.core_sim import CoreJob, run_programs

__all__ = ["CASES", "VECTOR_CASES", "Case", "Row", "validate", "validate_vector"]


@dataclass(frozen=True)
class Case:
    """One validation layer: the layer, and how its default plan is changed (`TilePlan` fields)."""

    layer: Layer
    plan: dict = dataclasses.field(default_factory=dict)
    slow: bool = False

    def tile_plan(self, config: HWConfig) -> TilePlan:
        """The default plan of the layer's `kernels.lower.array_form` (a depthwise layer: one
        channel's convolution), changed by ``plan``."""
        plan = dataclasses.replace(default_plan(config, self.layer), **self.plan)
        plan.validate(config, self.layer)
        return plan


def _conv(name: str, h: int, w: int, cin: int, cout: int, k: int, s: int = 1, **kw) -> Conv2D:
    return Conv2D(name, h=h, w=w, cin=cin, cout=cout, k=k, stride=s, pad=kw.pop("pad", k // 2),
                  **kw)  # fmt: skip


#: Validation cases per config: conv 1x1/3x3/5x5, stride 1/2, awkward channel counts, dense,
#: ws and os, single buffering, streamed weights, n_outer, depthwise on the array, grouped
#: convolutions (one segment per group).
CASES: dict[str, list[Case]] = {
    "tiny": [
        Case(_conv("t_c3", 8, 8, 5, 6, 3)),
        Case(_conv("t_c5s2", 12, 12, 7, 9, 5, 2)),
        Case(_conv("t_c1_os", 10, 10, 9, 10, 1), {"dataflow": "os"}),
        Case(Dense("t_dense", m=40, k=20, n=10)),
        Case(_conv("t_c3_single", 12, 12, 8, 8, 3), {"double_buffer": False}),
        Case(_conv("t_c3_stream", 10, 10, 6, 11, 3), {"resident_weights": False, "oh_t": 4}),
        Case(
            _conv("t_c3_nouter", 10, 10, 6, 11, 3),
            {"resident_weights": False, "n_outer": True, "oh_t": 4},
        ),
        Case(_conv("t_c3_os", 9, 9, 5, 7, 3, 2), {"dataflow": "os"}),
        Case(DepthwiseConv2D("t_dw", h=10, w=10, c=6, k=3, pad=1)),
        Case(_conv("t_g3", 8, 8, 6, 9, 3, groups=3)),
        Case(_conv("t_g4_packed", 9, 8, 8, 8, 3, 2, groups=4)),  # 2 groups per segment
    ],
    "wide": [
        Case(_conv("w_c5_os", 13, 6, 21, 25, 5), {"dataflow": "os"}),
        Case(_conv("w_c5", 21, 9, 32, 28, 5, batch=2)),
        Case(_conv("w_c3s2_stream", 17, 19, 29, 70, 3, 2), {"resident_weights": False}),
        Case(_conv("w_g4", 12, 10, 32, 64, 3, groups=4)),
    ],
    "default": [
        Case(_conv("d_c3", 28, 28, 32, 64, 3), slow=True),
        Case(_conv("d_c1", 28, 28, 64, 48, 1)),
        Case(_conv("d_c3s2_os", 30, 30, 24, 40, 3, 2), {"dataflow": "os"}, slow=True),
        Case(Dense("d_dense", m=64, k=200, n=100)),
        Case(_conv("d_c5_single", 16, 16, 20, 30, 5), {"double_buffer": False}),
        Case(
            _conv("d_c3_nouter", 20, 20, 48, 96, 3),
            {"resident_weights": False, "n_outer": True},
            slow=True,
        ),
        Case(_conv("d_c3_stream", 14, 14, 40, 80, 3), {"resident_weights": False}),
        Case(DepthwiseConv2D("d_dw", h=14, w=14, c=8, k=3, pad=1)),
        Case(_conv("d_g32", 14, 14, 128, 128, 3, groups=32)),
        Case(_conv("d_g2s2", 28, 28, 64, 128, 3, 2, groups=2)),
    ],
}


#: Vector-unit cases on config default (layer, plan): residual adds at 24/32/96 channels, the
#: depthwise layers of MobileNetV2 (k3 s1/s2, 24/96/144 channels) with full-width and narrow
#: tiles, single buffering, max pooling and global average pooling.
VECTOR_CASES: list[tuple[Layer, VectorPlan]] = [
    (Add("v_add24", h=56, w=56, c=24), VectorPlan(48, 56)),
    (Add("v_add24_narrow", h=56, w=56, c=24), VectorPlan(56, 14)),
    (Add("v_add32", h=28, w=28, c=32), VectorPlan(28, 28)),
    (Add("v_add32_narrow", h=28, w=28, c=32), VectorPlan(28, 7)),
    (Add("v_add96", h=14, w=14, c=96), VectorPlan(14, 14)),
    (DepthwiseConv2D("v_dw96s2", h=112, w=112, c=96, k=3, stride=2, pad=1), VectorPlan(56, 14)),
    (DepthwiseConv2D("v_dw144", h=56, w=56, c=144, k=3, pad=1), VectorPlan(56, 14)),
    (DepthwiseConv2D("v_dw144_full", h=56, w=56, c=144, k=3, pad=1), VectorPlan(20, 56)),
    (DepthwiseConv2D("v_dw24", h=28, w=28, c=24, k=3, pad=1), VectorPlan(28, 28)),
    (DepthwiseConv2D("v_dw24_narrow", h=28, w=28, c=24, k=3, pad=1), VectorPlan(14, 7)),
    (DepthwiseConv2D("v_dw32_single", h=28, w=28, c=32, k=3, pad=1),
     VectorPlan(28, 28, double_buffer=False)),
    (Pool2D("v_maxpool", h=56, w=56, c=64, k=3, stride=2, pad=1), VectorPlan(28, 28)),
    (Pool2D("v_gap", h=7, w=7, c=160, k=7, kind="avg"), VectorPlan(1, 1)),
]  # fmt: skip


def validate_vector(*, latency: int = 20, bandwidth: int = 16, sim: str = "verilator") -> list[Row]:
    """Run `VECTOR_CASES` on config default's RTL (one process) and the model; one row each."""
    cfg = load_config("default")
    jobs = []
    for i, (layer, plan) in enumerate(VECTOR_CASES):
        t = random_layer_data(layer, np.random.default_rng(300 + i))
        low = lower_vector(cfg, layer, t, plan)
        jobs.append(CoreJob.from_lowered(low, latency=latency, bandwidth=bandwidth))
    results = run_programs(cfg, jobs, sim=sim, name="cost-vector")
    rows = []
    for (layer, plan), res in zip(VECTOR_CASES, results, strict=True):
        if res.status != "done":
            raise RuntimeError(f"{layer.name}: {res.error}")
        model = layer_cost(cfg, layer, plan, bandwidth=bandwidth, latency=latency)
        text = plan.tile + ("" if plan.double_buffer else " single")
        rows.append(Row("default", layer.name, text, res.cycles, model))
    return rows


#: DRAM settings (latency cycles, bytes per cycle) the sweep runs some default cases at.
DRAM_SWEEP = ((1, 16), (100, 16), (20, 8), (20, 4))
SWEEP_LAYERS = ("d_c1", "d_c3_stream", "d_dw")


@dataclass(frozen=True)
class Row:
    """One line of the validation table."""

    config: str
    layer: str
    plan: str
    rtl: int
    model: LayerCost
    dram: str = "20 cycles, 16 B/cycle"

    @property
    def error(self) -> float:
        """Relative error of the model's total, ``(model - rtl) / rtl``."""
        return (self.model.cycles - self.rtl) / self.rtl

    def line(self) -> str:
        terms = ", ".join(f"{k} {v}" for k, v in self.model.terms.items() if v)
        return (
            f"| {self.config} | {self.layer} | {self.plan} | {self.dram} | {self.rtl} | "
            f"{self.model.cycles} | "
            f"{100 * self.error:+.1f}% | {terms} |"
        )


def _plan_text(plan: TilePlan) -> str:
    bits = [plan.tile, plan.dataflow]
    if not plan.double_buffer:
        bits.append("single")
    if not plan.resident_weights:
        bits.append("streamed" + (" n_outer" if plan.n_outer else ""))
    return " ".join(bits)


def validate(
    name: str,
    *,
    which: str = "all",
    latency: int = 20,
    bandwidth: int = 16,
    sim: str = "verilator",
) -> list[Row]:
    """Run the cases of config ``name`` on the RTL (one process) and the model; one row each.

    ``which``: ``"fast"`` (the cases not marked slow), ``"slow"`` or ``"all"``.
    """
    if which not in ("fast", "slow", "all"):
        raise ValueError(f"which must be 'fast', 'slow' or 'all', not {which!r}")
    cfg = load_config(name)
    cases = [c for c in CASES[name] if which == "all" or c.slow == (which == "slow")]
    jobs, plans = [], []
    for i, case in enumerate(cases):
        plan = case.tile_plan(cfg)
        t = random_layer_data(case.layer, np.random.default_rng(100 + i))
        if isinstance(case.layer, DepthwiseConv2D):
            low = lower_depthwise_naive(cfg, case.layer, t, plan)
        else:
            low = lower(cfg, case.layer, t, plan)
        jobs.append(CoreJob.from_lowered(low, latency=latency, bandwidth=bandwidth))
        plans.append(plan)
    results = run_programs(cfg, jobs, sim=sim, name=f"cost-{name}-{which}")
    rows = []
    for case, plan, res in zip(cases, plans, results, strict=True):
        if res.status != "done":
            raise RuntimeError(f"{case.layer.name}: {res.error}")
        model = layer_cost(cfg, case.layer, plan, bandwidth=bandwidth, latency=latency)
        rows.append(Row(name, case.layer.name, _plan_text(plan), res.cycles, model))
    return rows


def sweep(name: str = "default", *, sim: str = "verilator") -> list[Row]:
    """The `SWEEP_LAYERS` of config ``name`` at every `DRAM_SWEEP` setting (one process)."""
    cfg = load_config(name)
    jobs, meta = [], []
    for i, case in enumerate(c for c in CASES[name] if c.layer.name in SWEEP_LAYERS):
        plan = case.tile_plan(cfg)
        t = random_layer_data(case.layer, np.random.default_rng(200 + i))
        lowering = lower_depthwise_naive if isinstance(case.layer, DepthwiseConv2D) else lower
        low = lowering(cfg, case.layer, t, plan)
        for lat, bw in DRAM_SWEEP:
            jobs.append(CoreJob.from_lowered(low, latency=lat, bandwidth=bw))
            meta.append((case, plan, lat, bw))
    results = run_programs(cfg, jobs, sim=sim, name=f"cost-sweep-{name}")
    rows = []
    for (case, plan, lat, bw), res in zip(meta, results, strict=True):
        if res.status != "done":
            raise RuntimeError(f"{case.layer.name}: {res.error}")
        model = layer_cost(cfg, case.layer, plan, bandwidth=bw, latency=lat)
        dram = f"{lat} cycles, {bw} B/cycle"
        rows.append(Row(name, case.layer.name, _plan_text(plan), res.cycles, model, dram))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="tiny,wide,default")
    ap.add_argument("--fast", action="store_true", help="skip the slow (large) cases")
    ap.add_argument("--sweep", action="store_true", help="also the DRAM latency/bandwidth sweep")
    ap.add_argument("--vector", action="store_true", help="also the vector-unit cases")
    args = ap.parse_args()
    print("| config | layer | plan | DRAM | RTL | model | error | model terms |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.config.split(","):
        for row in validate(name, which="fast" if args.fast else "all"):
            print(row.line(), flush=True)
    if args.vector:
        for row in validate_vector():
            print(row.line(), flush=True)
    if args.sweep:
        for row in sweep():
            print(row.line(), flush=True)


if __name__ == "__main__":
    main()
