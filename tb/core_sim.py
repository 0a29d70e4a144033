"""Host side of the core bench: run programs on the RTL and read their results back.

``run_programs(config, jobs, sim=...)`` builds (or reuses) the core bench for ``config``, writes
each job's DRAM image, runs them all in one simulator process (``tb/tb_core.py``) and returns a
:class:`SimResult` per job with the dumped output bytes, the status and the counters.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from rtl.config import HWConfig
from rtl.core import COUNTERS
from rtl.isa import Cause
from tb import runner
from tb.dram import DEFAULT_DRAM_BYTES, dram_bytes_for, read_hex, write_hex

__all__ = ["CoreJob", "SimResult", "run_programs"]


@dataclass(frozen=True)
class CoreJob:
    """One program run: a DRAM image, where the program is, and which bytes to read back."""

    name: str
    image: bytes
    program_addr: int
    program_len: int
    out_addr: int
    out_bytes: int
    latency: int = 20
    bandwidth: int = 16
    timeout: int = 1_000_000  # cycles in all
    stall: int = 50_000  # cycles without any progress (a deadlock) before the watchdog fires

    @classmethod
    def from_lowered(cls, low, *, latency: int = 20, bandwidth: int = 16) -> CoreJob:
        """A job for a :class:`kernels.lower.Lowered` program. The watchdog ends it after 50,000
        cycles without progress, or at the latest after two cycles per MAC (one PE of the array
        busy, as a naive depthwise mapping) plus every image byte at 1/4 of the bandwidth."""
        timeout = 2 * low.macs + 4 * len(low.image) // bandwidth + 200_000
        return cls(
            low.layer.name,
            low.image,
            low.program_addr,
            len(low.program),
            low.output.addr,
            low.output.nbytes,
            latency=latency,
            bandwidth=bandwidth,
            timeout=timeout,
        )

    def check(self, config: HWConfig, dram_bytes: int = DEFAULT_DRAM_BYTES) -> None:
        beat = config.dma_beat_bytes
        if len(self.image) > dram_bytes:
            raise ValueError(
                f"job {self.name!r}: DRAM image of {len(self.image):,} bytes exceeds the "
                f"simulated DRAM ({dram_bytes:,} bytes); run it with a larger dram_bytes"
            )
        if self.program_addr % max(16, beat):
            raise ValueError(f"job {self.name!r}: program address must be {max(16, beat)}-aligned")
        if not 1 <= self.latency <= 65535 or not 1 <= self.bandwidth <= 65535:
            raise ValueError(
                f"job {self.name!r}: DRAM latency {self.latency} and bandwidth {self.bandwidth} "
                "must be in 1..65535"
            )


@dataclass(frozen=True)
class SimResult:
    """What one job did on the RTL."""

    name: str
    status: str  # done | error | timeout
    output: bytes
    counters: dict[str, int]
    state: dict = field(default_factory=dict)
    wall_seconds: float = 0.0  # the whole simulator run, start-up included, per job
    sim_seconds: float = 0.0  # from the start pulse to done/error: the simulation proper
    dram_oob: bool = False

    @property
    def cycles(self) -> int:
        return self.counters["cycles"]

    @property
    def error(self) -> str | None:
        if self.status == "done":
            return None
        if self.status == "timeout":
            state = json.dumps(self.state)
            return f"watchdog: no done/error (stalled or out of time); state {state}"
        cause = self.state.get("o_error_cause", 0)
        name = Cause(cause).name if cause in Cause._value2member_map_ else str(cause)
        return f"error {name} ({cause}) at command {self.state.get('o_error_pc')}"


def run_programs(
    config: HWConfig,
    jobs: list[CoreJob],
    *,
    sim: str = "verilator",
    name: str = "core",
    dram_bytes: int | None = None,
) -> list[SimResult]:
    """Run ``jobs`` on the core RTL of ``config``; one simulator process for all of them.

    ``dram_bytes`` sizes the simulated DRAM; by default `tb.dram.dram_bytes_for` the largest
    image (the shared 16 MiB build when they fit, else a build with a larger DRAM).
    """
    beat = config.dma_beat_bytes
    if dram_bytes is None:
        dram_bytes = dram_bytes_for(max((len(job.image) for job in jobs), default=0))
    for job in jobs:
        job.check(config, dram_bytes)
    b = runner.build(
        config, sim, top="core", dram_bytes=None if dram_bytes == DEFAULT_DRAM_BYTES else dram_bytes
    )
    work = b.build_dir / "runs" / name
    work.mkdir(parents=True, exist_ok=True)
    spec = []
    for i, job in enumerate(jobs):
        img = work / f"job{i}_in.hex"
        write_hex(img, job.image, beat)
        first = job.out_addr // beat
        last = (job.out_addr + job.out_bytes + beat - 1) // beat
        spec.append(
            {
                "name": job.name,
                "image_hex": str(img),
                "dump_hex": str(work / f"job{i}_out.hex"),
                "program_addr": job.program_addr,
                "program_len": job.program_len,
                "dump_base": first,
                "dump_words": max(1, last - first),
                "latency": job.latency,
                "bandwidth": job.bandwidth,
                "timeout": job.timeout,
                "stall": job.stall,
            }
        )
    (work / "jobs.json").write_text(json.dumps(spec, indent=1))
    results_file = work / "job_results.json"
    if results_file.exists():
        results_file.unlink()
    t0 = time.perf_counter()
    runner.run_bench(
        b,
        "tb.tb_core",
        env={"TANDEM_JOBS": str(work / "jobs.json"), "TANDEM_JOB_RESULTS": str(results_file)},
        name=name,
    )
    wall = time.perf_counter() - t0
    raw = json.loads(results_file.read_text())
    out = []
    for job, s, r in zip(jobs, spec, raw, strict=True):
        data = b""
        if r["status"] == "done":
            words = read_hex(Path(s["dump_hex"]), beat)
            skip = job.out_addr - s["dump_base"] * beat
            data = words[skip : skip + job.out_bytes]
        out.append(
            SimResult(
                name=job.name,
                status=r["status"],
                output=data,
                counters={k: r["state"]["counters"][k] for k in COUNTERS},
                state=r["state"],
                wall_seconds=wall / len(jobs),
                sim_seconds=r["sim_seconds"],
                dram_oob=bool(r["oob"]),
            )
        )
    return out
