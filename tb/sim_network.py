"""Run a whole compiled network on the RTL and check every tensor bit-exact.

Used by ``tandem sim --network``. `run_network` runs a `mapping.compiler.CompiledNetwork` as ONE
core job (one program start, one done), dumps the activation arena in one bulk read and compares
every node's tensor with its golden: the first mismatching node (in network order) is where the
RTL and the model part ways.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mapping.compiler import CompiledNetwork
from rtl.config import HWConfig
from tb.core_sim import CoreJob, run_programs
from tb.dram import dram_bytes_for

__all__ = ["NetworkRun", "NodeRun", "network_job", "run_network"]


@dataclass(frozen=True)
class NodeRun:
    """One node of a network run: what it is, how it ran and how many values differ."""

    name: str
    kind: str
    engine: str  # array | vector | array-naive | view
    shape: tuple[int, ...]
    macs: int
    commands: int
    mismatches: int
    model_cycles: int  # mapping.layer_cost's prediction for the node's plan (0 for views)


@dataclass(frozen=True)
class NetworkRun:
    """The outcome of one network on the RTL.

    ``utilization`` is the network's MACs (convolutions, depthwise, dense) over ``cycles``
    times the array's peak (``rows * cols`` MACs per cycle), whichever engine did them.
    ``model_cycles`` is what `mapping.layer_cost.layer_cost` predicts for the plans, the layers
    one after another (as the FENCEs run them), at the run's DRAM latency and bandwidth.
    """

    network: str
    config: str
    sim: str
    seed: int
    status: str
    error: str | None
    bit_exact: bool
    mismatches: int
    first_mismatch: str | None
    cycles: int
    model_cycles: int
    macs: int
    utilization: float
    bytes_read: int
    bytes_written: int
    counters: dict
    commands: int
    image_bytes: int
    dram_bytes: int
    nodes: tuple[NodeRun, ...]
    wall_seconds: float
    sim_seconds: float
    sim_cycles_per_second: float
    dram_latency: int
    dram_bandwidth: int

    def summary(self) -> str:
        """A per-node table and the totals, as text."""
        head = (
            f"{'node':<26} {'kind':<9} {'engine':<11} {'output':<16} {'MACs':>11} "
            f"{'commands':>8} {'model cycles':>12} {'mismatches':>10}"
        )
        rows = [head]
        for n in self.nodes:
            rows.append(
                f"{n.name:<26} {n.kind:<9} {n.engine:<11} {'x'.join(map(str, n.shape)):<16} "
                f"{n.macs:>11,} {n.commands:>8,} {n.model_cycles:>12,} {n.mismatches:>10,}"
            )
        verdict = "BIT-EXACT in every tensor" if self.bit_exact else "MISMATCH"
        if self.mismatches:
            verdict += f" ({self.mismatches:,} values differ; first in {self.first_mismatch!r})"
        if self.error:
            verdict += f"; {self.error}"
        rows += [
            f"network    {self.network} on {self.config} ({self.sim}), seed {self.seed}, DRAM "
            f"latency {self.dram_latency} cycles, {self.dram_bandwidth} B/cycle",
            f"result     {verdict}",
            f"cycles     {self.cycles:,} on the RTL; the model (mapping.layer_cost) predicts "
            f"{self.model_cycles:,}"
            + (f" (RTL/model {self.cycles / self.model_cycles:.3f})" if self.model_cycles else ""),
            f"MACs       {self.macs:,}  utilization {100 * self.utilization:.1f}% of the array's "
            "peak",
            f"DRAM       read {self.bytes_read:,} B, written {self.bytes_written:,} B; image "
            f"{self.image_bytes:,} B in a {self.dram_bytes >> 20} MiB DRAM",
            f"program    {self.commands:,} commands",
            "counters   " + ", ".join(f"{k} {v:,}" for k, v in self.counters.items()),
            f"simulation {self.sim_cycles_per_second:,.0f} cycles/s, {self.sim_seconds:.1f} s "
            f"simulated ({self.wall_seconds:.1f} s wall including the build and start-up)",
        ]
        return "\n".join(rows)


def network_job(compiled: CompiledNetwork, *, latency: int = 20, bandwidth: int = 16) -> CoreJob:
    """The core job of a compiled network: the whole image, the program, the arena dumped.

    The watchdog ends it after 50,000 cycles without progress (a deadlock), or at the latest
    after four cycles per MAC plus every image byte at 1/4 of the bandwidth and a million cycles.
    """
    timeout = 4 * compiled.macs + 4 * len(compiled.image) // bandwidth + 1_000_000
    return CoreJob(
        compiled.network.name,
        compiled.image,
        compiled.program_addr,
        len(compiled.program),
        compiled.arena.addr,
        compiled.arena.nbytes,
        latency=latency,
        bandwidth=bandwidth,
        timeout=timeout,
    )


def run_network(
    config: HWConfig,
    compiled: CompiledNetwork,
    *,
    sim: str = "verilator",
    latency: int = 20,
    bandwidth: int = 16,
) -> NetworkRun:
    """Run ``compiled`` on the core RTL of ``config`` and check every node's tensor.

    Parameters
    ----------
    config : HWConfig
        Must be the config the network was compiled for.
    compiled : CompiledNetwork
    sim : {"verilator", "icarus"}
    latency, bandwidth : int
        The simulated DRAM's read latency (cycles) and bandwidth (bytes per cycle).

    Returns
    -------
    NetworkRun
        ``bit_exact`` if the run finished and every tensor equals its golden.
    """
    if config != compiled.config:
        raise ValueError(
            f"network {compiled.network.name!r} was compiled for config "
            f"{compiled.config.name!r}, not {config.name!r}; compile it for this config"
        )
    job = network_job(compiled, latency=latency, bandwidth=bandwidth)
    dram_bytes = dram_bytes_for(len(compiled.image))
    t0 = time.perf_counter()
    (res,) = run_programs(
        config, [job], sim=sim, name=f"network-{compiled.network.name}", dram_bytes=dram_bytes
    )
    wall = time.perf_counter() - t0
    done = res.status == "done"
    if done:
        per_node = compiled.check(np.frombuffer(res.output, dtype=np.int8))
    else:
        per_node = {name: compiled.goldens[name].size for name in compiled.nodes}
    first = next((name for name in compiled.nodes if per_node[name]), None)
    model = compiled.model_cycles(bandwidth=bandwidth, latency=latency)
    stats = {s.name: s for s in compiled.network.stats}
    nodes = tuple(
        NodeRun(
            name=name,
            kind=stats[name].kind,
            engine=compiled.engines[name],
            shape=stats[name].output_shape,
            macs=stats[name].macs,
            commands=compiled.commands[name][1] - compiled.commands[name][0],
            mismatches=per_node[name] if done else 0,
            model_cycles=model[name],
        )
        for name in compiled.nodes
    )
    mismatches = sum(n.mismatches for n in nodes)
    cycles = res.cycles
    return NetworkRun(
        network=compiled.network.name,
        config=config.name,
        sim=sim,
        seed=compiled.seed,
        status=res.status,
        error=res.error,
        bit_exact=done and mismatches == 0,
        mismatches=mismatches,
        first_mismatch=first if done else None,
        cycles=cycles,
        model_cycles=sum(model.values()),
        macs=compiled.macs,
        utilization=compiled.macs / (cycles * config.pes) if cycles else 0.0,
        bytes_read=res.counters["rd_bytes"],
        bytes_written=res.counters["wr_bytes"],
        counters=res.counters,
        commands=len(compiled.program),
        image_bytes=len(compiled.image),
        dram_bytes=dram_bytes,
        nodes=nodes,
        wall_seconds=wall,
        sim_seconds=res.sim_seconds,
        sim_cycles_per_second=cycles / res.sim_seconds if res.sim_seconds else 0.0,
        dram_latency=latency,
        dram_bandwidth=bandwidth,
    )
