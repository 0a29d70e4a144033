"""The mapper: a plan for every layer of a network that minimizes the cost model's objective.

For each layer `map_network` enumerates a pruned space of plans, asks the analytical model
(`mapping.cost.layer_cost`) for each, and keeps the best by the chosen objective:

* **engine**: convolutions and dense layers run on the array; depthwise convolutions on the
  vector unit or on the array one channel at a time (as Gemmini does); adds and pools on the
  vector unit (the array has no element-wise datapath);
* **dataflow**: ``ws`` and ``os`` where the config has them;
* **buffering and loop order**: double or single buffering; weights resident or streamed one
  n-tile at a time, with the n-tiles outside or inside the spatial tiles;
* **tile**: for each output width split in ``1..4`` balanced pieces that fits, the tallest
  fitting tile and the balanced height with the same number of tiles (so the last tile is not a
  sliver). Capacity limits come from the lowering's own geometry (`kernels.lower._Geometry`,
  `kernels.lower_vector.VectorGeometry`), so a plan the mapper returns always lowers.

The search is exhaustive over that space and deterministic: ties go to the first candidate in a
fixed order. Objectives: ``cycles``, ``energy`` (pJ) or ``edp`` (energy x cycles, per layer).
Per-layer *overrides*, by node name or by kind (``conv``, ``depthwise``, ...), restrict the
space: an engine, a dataflow, a tile or the buffering (`parse_override`).

``naive=True`` gives the baseline the paper-style comparisons use: every layer with MACs on the
array (depthwise one channel at a time), the largest tile that fits single-buffered, no
overlap of loads, compute and stores (`naive_plan`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kernels.layers import Add, Conv2D, Dense, DepthwiseConv2D, Pool2D
from kernels.lower import TilePlan, _Geometry, _min_k_groups, array_form
from kernels.lower_vector import VectorGeometry, VectorPlan, _largest
from rtl.config import HWConfig

from .layer_cost import LayerCost, array_cycles_floor, layer_cost
from .workloads import Network, Node

__all__ = [
    "OBJECTIVES",
    "LayerMapping",
    "NetworkMapping",
    "Override",
    "candidate_plans",
    "map_layer",
    "map_network",
    "naive_plan",
    "parse_override",
]

Objective = Literal["cycles", "energy", "edp"]
OBJECTIVES: tuple[str, ...] = ("cycles", "energy", "edp")
Plan = TilePlan | VectorPlan

#: Output-width splits tried per buffering mode (1 = whole rows).
MAX_WIDTH_SPLITS = 4


# -------------------------------------------------------------------- overrides


@dataclass(frozen=True)
class Override:
    """Restrictions on one layer's (or one kind's) plans; ``None`` leaves a choice free.

    Parameters
    ----------
    engine : {"array", "vector"}, optional
    dataflow : {"ws", "os"}, optional
        Array plans only.
    tile : (int, int), optional
        Output tile ``(oh_t, ow_t)``.
    double_buffer : bool, optional
    """

    engine: str | None = None
    dataflow: str | None = None
    tile: tuple[int, int] | None = None
    double_buffer: bool | None = None

    def allows(self, plan: Plan) -> bool:
        """Whether ``plan`` obeys every restriction."""
        engine = "vector" if isinstance(plan, VectorPlan) else "array"
        if self.engine is not None and engine != self.engine:
            return False
        if self.dataflow is not None and (
            isinstance(plan, VectorPlan) or plan.dataflow != self.dataflow
        ):
            return False
        if self.tile is not None and (plan.oh_t, plan.ow_t) != self.tile:
            return False
        return self.double_buffer is None or plan.double_buffer == self.double_buffer

    def __str__(self) -> str:
        parts = [p for p in (self.engine, self.dataflow) if p]
        if self.tile:
            parts.append(f"{self.tile[0]}x{self.tile[1]}")
        if self.double_buffer is not None:
            parts.append("double" if self.double_buffer else "single")
        return ",".join(parts) or "(none)"


_OVERRIDE_HELP = (
    "an override looks like NAME_OR_KIND=VALUE[,VALUE...] with values array|vector (engine), "
    "ws|os (dataflow), OHxOW (tile, e.g. 8x56), single|double (buffering); e.g. "
    "depthwise=array or conv_3=os,8x56"
)


def parse_override(text: str) -> tuple[str, Override]:
    """Parse ``"KEY=VALUE[,VALUE...]"`` into ``(key, Override)``.

    ``KEY`` is a node name or a kind (``conv``, ``dense``, ``depthwise``, ``add``, ``maxpool``,
    ``avgpool``). Raises ``ValueError`` with the accepted syntax for anything else.
    """
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise ValueError(f"override {text!r} is malformed: {_OVERRIDE_HELP}")
    fields: dict[str, Any] = {}
    for raw in values.split(","):
        v = raw.strip().lower()
        if v in ("array", "vector"):
            name, val = "engine", v
        elif v in ("ws", "os"):
            name, val = "dataflow", v
        elif v in ("single", "double"):
            name, val = "double_buffer", v == "double"
        elif "x" in v and all(p.isdigit() and int(p) > 0 for p in v.split("x", 1)):
            oh, ow = v.split("x", 1)
            name, val = "tile", (int(oh), int(ow))
        else:
            raise ValueError(f"override {text!r}: unknown value {raw.strip()!r}; {_OVERRIDE_HELP}")
        if name in fields:
            raise ValueError(f"override {text!r} sets the {name} twice")
        fields[name] = val
    if fields.get("engine") == "vector" and "dataflow" in fields:
        raise ValueError(f"override {text!r}: a dataflow applies to the array, not the vector unit")
    return key, Override(**fields)


# -------------------------------------------------------------------- candidates


def _splits(size: int, most: int) -> list[int]:
    """Balanced tile sizes that cut ``size`` into 1..most pieces, largest first, distinct."""
    out: list[int] = []
    for pieces in range(1, min(most, size) + 1):
        t = -(-size // pieces)
        if t not in out:
            out.append(t)
    return out


def _tiles(out_h: int, out_w: int, fits) -> Iterator[tuple[int, int]]:
    """Tiles ``(oh, ow)`` worth evaluating for one buffering mode: see the module docstring."""
    if not fits(1, 1):
        return
    widest = _largest(1, out_w, lambda v: fits(1, v))
    seen = set()
    for ow in _splits(out_w, MAX_WIDTH_SPLITS):
        if ow > widest:
            continue
        tallest = _largest(1, out_h, lambda v, w=ow: fits(v, w))
        balanced = -(-out_h // -(-out_h // tallest))
        for oh in (tallest, balanced):
            if (oh, ow) not in seen:
                seen.add((oh, ow))
                yield oh, ow
    if widest not in {ow for _, ow in seen}:  # not even a whole row fits: the widest piece
        yield _largest(1, out_h, lambda v: fits(v, widest)), widest


def _array_modes(config: HWConfig, conv: Conv2D) -> Iterator[dict[str, bool | int]]:
    """The buffering modes, each as `TilePlan` keywords. A streamed mode in which not even a 1x1
    tile fits (one n-tile's weights exceed the scratchpad) is split along the reduction
    instead: the smallest ``k_groups`` that fits, and the next power of two above it."""
    geo = config if config.has_ws else config.replace(dataflow="both")
    ntiles = -(-conv.cout // config.cols)
    nchunks = -(-conv.cin // config.rows)
    for double in (True, False):
        yield {"double_buffer": double, "resident_weights": True, "n_outer": False}
        for n_outer in (False, True) if ntiles > 1 else (False,):
            mode = {"double_buffer": double, "resident_weights": False, "n_outer": n_outer}
            if _Geometry(geo, conv, TilePlan(1, 1, **mode)).error is None:
                if ntiles > 1:  # one n-tile: the same as resident
                    yield mode
                continue
            kg = _min_k_groups(geo, conv, double_buffer=double, n_outer=n_outer)
            if kg is None:
                continue
            yield {**mode, "k_groups": kg}
            more = 1 << kg.bit_length()  # the next power of two above kg
            size = -(-nchunks // more)
            if more <= nchunks and -(-nchunks // size) == more:  # no empty group
                yield {**mode, "k_groups": more}


def _array_plans(config: HWConfig, conv: Conv2D) -> Iterator[TilePlan]:
    geo_config = config if config.has_ws else config.replace(dataflow="both")
    dataflows = [d for d, ok in (("ws", config.has_ws), ("os", config.has_os)) if ok]
    for mode in _array_modes(config, conv):

        def fits(oh: int, ow: int, mode=mode) -> bool:
            return _Geometry(geo_config, conv, TilePlan(oh, ow, **mode)).error is None

        for oh, ow in _tiles(conv.out_h, conv.out_w, fits):
            for dataflow in dataflows:
                yield TilePlan(oh, ow, dataflow=dataflow, **mode)


def _vector_plans(config: HWConfig, layer: Any) -> Iterator[VectorPlan]:
    for double in (True, False):

        def fits(oh: int, ow: int, double=double) -> bool:
            return VectorGeometry(config, layer, VectorPlan(oh, ow, double)).error is None

        for oh, ow in _tiles(layer.out_h, layer.out_w, fits):
            yield VectorPlan(oh, ow, double)


def candidate_plans(config: HWConfig, layer: Any) -> list[Plan]:
    """Every plan the mapper evaluates for ``layer``, in the tie-breaking order.

    Array layers: `TilePlan`; depthwise: `VectorPlan` (vector unit) then `TilePlan` (array, one
    channel at a time); adds and pools: `VectorPlan`.
    """
    if isinstance(layer, Conv2D | Dense):
        return list(_array_plans(config, array_form(layer, config).conv))
    if isinstance(layer, DepthwiseConv2D):
        vector = list(_vector_plans(config, layer)) if layer.k <= config.vector_max_kernel else []
        return vector + list(_array_plans(config, array_form(layer, config).conv))
    if isinstance(layer, Add | Pool2D):
        return list(_vector_plans(config, layer))
    raise TypeError(f"layer must be a layer of kernels.layers, not {type(layer).__name__}")


def naive_plan(config: HWConfig, layer: Any) -> Plan:
    """The baseline plan: on the array where the layer has MACs (depthwise one channel at a
    time), the largest single-buffered tile (full rows first), no overlap; adds and pools on the
    vector unit, single-buffered."""
    if isinstance(layer, Conv2D | Dense | DepthwiseConv2D):
        conv = array_form(layer, config).conv
        geo_config = config if config.has_ws else config.replace(dataflow="both")
        dataflow = "ws" if config.has_ws else "os"
        # resident weights first, then streamed n-tiles (n-tiles inside, then outside)
        modes = [m for m in _array_modes(config, conv) if not m["double_buffer"]]
        single = modes[0]
        for mode in modes:

            def fits(oh: int, ow: int, mode=mode) -> bool:
                return _Geometry(geo_config, conv, TilePlan(oh, ow, **mode)).error is None

            if not fits(1, 1):
                continue
            ow = _largest(1, conv.out_w, lambda v, f=fits: f(1, v))
            oh = _largest(1, conv.out_h, lambda v, f=fits, w=ow: f(v, w))
            return TilePlan(oh, ow, dataflow=dataflow, **mode)
        raise ValueError(
            f"layer {layer.name!r}: no single-buffered tile fits on config {config.name!r}: "
            f"{_Geometry(geo_config, conv, TilePlan(1, 1, **single)).error}"
        )
    if isinstance(layer, Add | Pool2D):
        plans = [p for p in _vector_plans(config, layer) if not p.double_buffer]
        if not plans:
            raise ValueError(f"layer {layer.name!r}: no vector tile fits on config {config.name!r}")
        return plans[0]
    raise TypeError(f"layer must be a layer of kernels.layers, not {type(layer).__name__}")


# -------------------------------------------------------------------- results


def _score(cost: LayerCost, objective: str) -> float:
    if objective == "cycles":
        return cost.cycles
    if objective == "energy":
        return cost.energy_pj
    return cost.energy_pj * cost.cycles


def _plan_text(plan: Plan | None) -> str:
    if plan is None:
        return "-"
    buf = "db" if plan.double_buffer else "sb"
    if isinstance(plan, VectorPlan):
        return f"{plan.tile} {buf}"
    weights = "res" if plan.resident_weights else ("n-out" if plan.n_outer else "n-in")
    split = f" k{plan.k_groups}" if plan.k_groups > 1 else ""  # the reduction in k_groups groups
    return f"{plan.dataflow} {plan.tile} {buf} {weights}{split}"


@dataclass(frozen=True)
class LayerMapping:
    """The mapper's choice for one node.

    Parameters
    ----------
    name, kind : str
        The node's name and kind (``conv``, ``depthwise``, ``flatten``, ...).
    engine : {"array", "vector", "none"}
        Where it runs (``none``: shape operations, which cost nothing).
    output_shape : tuple of int
    macs : int
    plan : TilePlan, VectorPlan or None
    cost : LayerCost or None
        The model's prediction for ``plan``.
    candidates : int
        Candidate plans of the search (0 where an identical layer's search was reused).
    groups : tuple of int
        A grouped convolution's ``(groups per segment, groups)`` (`kernels.lower.array_form`),
        else ``(1, 1)``.
    """

    name: str
    kind: str
    engine: str
    output_shape: tuple[int, ...]
    macs: int
    plan: Plan | None
    cost: LayerCost | None
    candidates: int = 0
    groups: tuple[int, int] = (1, 1)

    @property
    def cycles(self) -> int:
        return self.cost.cycles if self.cost else 0

    @property
    def dram_bytes(self) -> int:
        return self.cost.dram_read + self.cost.dram_write if self.cost else 0

    @property
    def plan_text(self) -> str:
        """The plan in a few characters: ``ws 9x56 db res``, ``28x28 db``, ``-``; a grouped
        convolution adds its groups per segment: ``ws 9x56 db res 4/32g``."""
        pack, groups = self.groups
        return _plan_text(self.plan) + (f" {pack}/{groups}g" if groups > 1 else "")

    def to_dict(self) -> dict[str, Any]:
        c = self.cost
        return {
            "name": self.name,
            "kind": self.kind,
            "engine": self.engine,
            "output_shape": list(self.output_shape),
            "macs": self.macs,
            "plan": None if self.plan is None else
            {"type": type(self.plan).__name__, **dataclasses.asdict(self.plan)},
            "plan_text": self.plan_text,
            "cycles": self.cycles,
            "dram_read": c.dram_read if c else 0,
            "dram_write": c.dram_write if c else 0,
            "energy_pj": c.energy_pj if c else 0.0,
            "utilization": c.utilization if c else 0.0,
            "candidates": self.candidates,
            "groups_per_segment": self.groups[0],
            "groups": self.groups[1],
        }  # fmt: skip


@dataclass(frozen=True)
class NetworkMapping:
    """A plan and a predicted cost for every node of a network.

    ``plans`` is what `mapping.compiler.compile_network` takes; ``cycles``, ``energy_pj`` and
    ``dram_bytes`` are network totals (layers run one after another).
    """

    network: str
    config: str
    objective: str
    naive: bool
    layers: tuple[LayerMapping, ...]
    evaluations: int
    seconds: float
    peak_macs_per_cycle: int = field(default=0)
    candidates: int = 0

    @property
    def plans(self) -> dict[str, Plan]:
        return {lm.name: lm.plan for lm in self.layers if lm.plan is not None}

    @property
    def cycles(self) -> int:
        return sum(lm.cycles for lm in self.layers)

    @property
    def macs(self) -> int:
        return sum(lm.macs for lm in self.layers)

    @property
    def energy_pj(self) -> float:
        return sum(lm.cost.energy_pj for lm in self.layers if lm.cost)

    @property
    def dram_bytes(self) -> int:
        return sum(lm.dram_bytes for lm in self.layers)

    @property
    def utilization(self) -> float:
        """Network MACs over (cycles x the array's peak MACs per cycle)."""
        peak = self.peak_macs_per_cycle
        return self.macs / (self.cycles * peak) if self.cycles and peak else 0.0

    def layer(self, name: str) -> LayerMapping:
        for lm in self.layers:
            if lm.name == name:
                return lm
        raise KeyError(f"network {self.network!r} has no node {name!r}")

    def table(self) -> str:
        """The per-layer table and the totals, as `tandem map` prints them."""
        head = (f"{'layer':<22} {'kind':<9} {'engine':<6} {'output':<16} {'MACs':>12} "
                f"{'DRAM B':>11} {'plan':<22} {'cycles':>11} {'util':>6}")  # fmt: skip
        lines = [head, "-" * len(head)]
        for lm in self.layers:
            if lm.cost is None:
                continue
            shape = "x".join(str(d) for d in lm.output_shape)
            lines.append(
                f"{lm.name[:22]:<22} {lm.kind:<9} {lm.engine:<6} {shape:<16} {lm.macs:>12,} "
                f"{lm.dram_bytes:>11,} {lm.plan_text:<22} {lm.cycles:>11,} "
                f"{100 * lm.cost.utilization:>5.1f}%"
            )
        lines.append("-" * len(head))
        by_engine: dict[str, int] = {}
        for lm in self.layers:
            if lm.cost is not None:
                by_engine[lm.engine] = by_engine.get(lm.engine, 0) + lm.cycles
        split = ", ".join(f"{e} {c:,}" for e, c in sorted(by_engine.items()))
        lines += [
            f"total      {self.cycles:,} cycles ({split}); {self.macs:,} MACs, "
            f"{100 * self.utilization:.1f}% of the array's peak",
            f"           {self.dram_bytes:,} DRAM bytes, {self.energy_pj / 1e6:,.3f} uJ",
            f"mapping    {'naive' if self.naive else 'objective ' + self.objective}: "
            f"{self.candidates:,} candidate plans, {self.evaluations:,} evaluated by the model "
            f"in {self.seconds:.2f} s ({self.evaluations / max(self.seconds, 1e-9):,.0f} per "
            "second)",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "config": self.config,
            "objective": self.objective,
            "naive": self.naive,
            "layers": [lm.to_dict() for lm in self.layers],
            "totals": {
                "cycles": self.cycles,
                "macs": self.macs,
                "dram_bytes": self.dram_bytes,
                "energy_pj": self.energy_pj,
                "utilization": self.utilization,
            },
            "candidates": self.candidates,
            "evaluations": self.evaluations,
            "seconds": self.seconds,
        }


# -------------------------------------------------------------------- search


def map_layer(
    config: HWConfig,
    layer: Any,
    *,
    objective: Objective = "cycles",
    override: Override | None = None,
    **model: Any,
) -> tuple[Plan, LayerCost, int, int]:
    """The best plan for one layer: ``(plan, cost, plans evaluated by the model, candidates)``.

    ``model`` reaches `mapping.cost.layer_cost` (``bandwidth``, ``latency``, ``energy``).
    Raises ``ValueError`` naming the layer when no plan fits, or none obeys ``override``.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    plans = candidate_plans(config, layer)
    if not plans:
        raise ValueError(
            f"layer {layer.name!r}: no plan fits config {config.name!r} (scratchpad "
            f"{config.spad_rows} rows, accumulator {config.acc_rows} rows)"
        )
    if override is not None:
        plans = [p for p in plans if override.allows(p)]
        if not plans:
            raise ValueError(
                f"layer {layer.name!r}: no plan obeys the override {override} on config "
                f"{config.name!r}"
            )
    # Minimize (score, index). For cycles, array plans go in order of a cheap lower bound
    # (`array_cycles_floor`) after the vector plans, and a plan whose bound cannot beat the best
    # so far is not evaluated: the result is the exhaustive search's, found sooner.
    order: list[tuple[float, int, Plan]] = []
    for i, plan in enumerate(plans):
        floor = 0.0
        if objective == "cycles" and isinstance(plan, TilePlan):
            floor = array_cycles_floor(config, layer, plan, **_bound_args(model))
        order.append((floor, i, plan))
    order.sort(key=lambda t: (t[0], t[1]))
    best: tuple[float, int, Plan, LayerCost] | None = None
    evaluated = 0
    for floor, i, plan in order:
        if best is not None and (floor, i) > best[:2]:
            if floor > best[0]:
                break  # sorted: no later plan can win either
            continue
        cost = layer_cost(config, layer, plan, **model)
        evaluated += 1
        key = (_score(cost, objective), i)
        if best is None or key < best[:2]:
            best = (*key, plan, cost)
    assert best is not None
    return best[2], best[3], evaluated, len(plans)


def _bound_args(model: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in model.items() if k in ("bandwidth", "latency")}


def _override_for(node: Node, overrides: Mapping[str, Override]) -> Override | None:
    return overrides.get(node.name, overrides.get(node.kind))


def map_network(
    config: HWConfig,
    network: Network,
    *,
    objective: Objective = "cycles",
    naive: bool = False,
    overrides: Mapping[str, Override | str] | Iterable[str] | None = None,
    progress: bool = False,
    **model: Any,
) -> NetworkMapping:
    """Map every node of ``network`` onto ``config``.

    Parameters
    ----------
    config : HWConfig
    network : Network
    objective : {"cycles", "energy", "edp"}
    naive : bool
        The baseline (`naive_plan`) instead of the search; ``objective`` and ``overrides`` are
        then ignored.
    overrides : mapping of str to Override (or its text), or iterable of "KEY=VALUE" texts
        Restrictions by node name or kind; a node's own name wins over its kind. A key that is
        neither a node nor a kind of the network is an error.
    progress : bool
        Show a progress bar (tqdm) on standard error.
    **model
        ``bandwidth``, ``latency``, ``energy`` for `mapping.cost.layer_cost`.
    """
    t0 = time.perf_counter()
    ovr = _normalize_overrides(network, overrides)
    nodes = list(network)
    if progress:
        from tqdm import tqdm

        nodes = tqdm(nodes, desc=f"mapping {network.name}", unit="layer", leave=False)
    layers = []
    evaluations = candidates = 0
    # Layers that differ only in name (MobileNetV2 repeats its blocks) share one search.
    memo: dict[tuple[Any, Override | None], tuple[Plan, LayerCost]] = {}
    for node in nodes:
        stat = network.stat(node.name)
        if node.engine == "none":
            layers.append(LayerMapping(node.name, node.kind, "none", stat.output_shape, 0,
                                       None, None))  # fmt: skip
            continue
        if naive:
            plan = naive_plan(config, node.op)
            cost = layer_cost(config, node.op, plan, **model)
            n = considered = 1
            candidates += 1
        else:
            override = _override_for(node, ovr)
            key = (dataclasses.replace(node.op, name="_"), override)
            if key in memo:
                (plan, cost), n, considered = memo[key], 0, 0
            else:
                plan, cost, n, considered = map_layer(
                    config, node.op, objective=objective, override=override, **model
                )
                memo[key] = (plan, cost)
            candidates += considered
        evaluations += n
        engine = "vector" if isinstance(plan, VectorPlan) else "array"
        groups = (1, 1)
        if isinstance(node.op, Conv2D) and node.op.groups > 1:
            groups = (array_form(node.op, config).pack, node.op.groups)
        layers.append(
            LayerMapping(
                node.name,
                node.kind,
                engine,
                stat.output_shape,
                stat.macs,
                plan,
                cost,
                considered if not naive else 1,
                groups,
            )
        )
    return NetworkMapping(
        network=network.name,
        config=config.name,
        objective=objective,
        naive=naive,
        layers=tuple(layers),
        evaluations=evaluations,
        candidates=candidates,
        seconds=time.perf_counter() - t0,
        peak_macs_per_cycle=config.pes,
    )


def _normalize_overrides(
    network: Network, overrides: Mapping[str, Override | str] | Iterable[str] | None
) -> dict[str, Override]:
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        items = [(k, parse_override(f"{k}={v}")[1] if isinstance(v, str) else v)
                 for k, v in overrides.items()]  # fmt: skip
    else:
        items = [parse_override(text) for text in overrides]
    names = {n.name for n in network}
    kinds = {n.kind for n in network}
    out: dict[str, Override] = {}
    for key, value in items:
        if not isinstance(value, Override):
            raise TypeError(f"override for {key!r} must be an Override, not {value!r}")
        if key not in names and key not in kinds:
            close = sorted(k for k in names | kinds if key.lower() in k.lower())[:5]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"override key {key!r} is neither a node nor a layer kind of network "
                f"{network.name!r} (kinds: {', '.join(sorted(kinds))}){hint}"
            )
        out[key] = value
    return out
