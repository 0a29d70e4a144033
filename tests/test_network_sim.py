"""Whole networks on the RTL: one program, one DRAM image, every node's tensor bit-exact.

MobileNetV2 at 32x32 runs in the default suite, with the default plans (through ``tandem sim
--network``) and the naive baseline; the full 224x224 network runs under ``-m slow``.
"""

from __future__ import annotations

import json
import time

import pytest

from mapping.compiler import compile_network, naive_plans
from mapping.zoo import get_network
from rtl.config import load_config
from tandem.cli import main
from tb.core_sim import CoreJob
from tb.dram import DEFAULT_DRAM_BYTES, MAX_DRAM_BYTES, bench_top_verilog, dram_bytes_for
from tb.sim_network import run_network

CONFIG = load_config("default")


def check_run(run, network) -> None:
    assert run.status == "done", run.error
    assert [n.name for n in run.nodes] == [node.name for node in network]
    assert not any(n.mismatches for n in run.nodes), run.first_mismatch
    assert run.bit_exact and run.first_mismatch is None
    assert run.cycles == run.counters["cycles"] > 0
    assert run.counters["retired"] == run.commands
    assert 0 < run.utilization < 1


@pytest.mark.sim
def test_mobilenetv2_32_through_the_command_line(capsys):
    args = ["sim", "--config", "default", "--network", "mobilenetv2", "--input-size", "32"]
    t0 = time.perf_counter()
    assert main([*args, "--json"]) == 0
    wall = time.perf_counter() - t0
    report = json.loads(capsys.readouterr().out)
    assert report["bit_exact"] and report["plans"] == "default plans"
    assert report["mismatches"] == 0 and len(report["nodes"]) == 65
    engines = {n["engine"] for n in report["nodes"]}
    assert engines == {"array", "vector", "view"}
    assert report["counters"]["vec_taps"] > 0 and report["counters"]["exec_streaming"] > 0
    print(f"mobilenetv2 32x32 default plans: {report['cycles']:,} cycles, {wall:.1f} s wall")


@pytest.mark.sim
def test_mobilenetv2_32_naive():
    network = get_network("mobilenetv2", input_size=32)
    compiled = compile_network(CONFIG, network, naive_plans(CONFIG, network))
    assert len(compiled.image) > DEFAULT_DRAM_BYTES  # per-channel depthwise weights: 32 MiB DRAM
    t0 = time.perf_counter()
    run = run_network(CONFIG, compiled)
    check_run(run, network)
    assert run.dram_bytes == 32 << 20
    assert {n.engine for n in run.nodes if n.kind == "depthwise"} == {"array-naive"}
    print(f"mobilenetv2 32x32 naive: {run.cycles:,} cycles, {time.perf_counter() - t0:.1f} s wall")


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("naive", [False, True], ids=["default", "naive"])
def test_mobilenetv2_224(naive):
    network = get_network("mobilenetv2", input_size=224)
    t0 = time.perf_counter()
    compiled = compile_network(CONFIG, network, naive_plans(CONFIG, network) if naive else None)
    run = run_network(CONFIG, compiled)
    check_run(run, network)
    print(
        f"mobilenetv2 224x224 {'naive' if naive else 'default'} plans: {run.cycles:,} cycles, "
        f"{run.sim_seconds:.0f} s simulated, {time.perf_counter() - t0:.0f} s wall"
    )


def test_dram_size_follows_the_image():
    assert dram_bytes_for(1000) == DEFAULT_DRAM_BYTES
    assert dram_bytes_for(DEFAULT_DRAM_BYTES + 1) == 2 * DEFAULT_DRAM_BYTES
    with pytest.raises(ValueError, match="exceeds the largest simulated DRAM"):
        dram_bytes_for(MAX_DRAM_BYTES + 1)
    assert ".WORDS(2097152)" in bench_top_verilog(CONFIG, 32 << 20)
    job = CoreJob("big", bytes(DEFAULT_DRAM_BYTES + 16), 0, 1, 0, 16)
    with pytest.raises(ValueError, match=r"job 'big'.*run it with a larger dram_bytes"):
        job.check(CONFIG)
    job.check(CONFIG, 32 << 20)


def test_run_network_wants_the_compiled_config():
    network = get_network("mobilenetv2", input_size=32)
    compiled = compile_network(load_config("tiny"), network)
    with pytest.raises(ValueError, match="compiled for config 'tiny', not 'default'"):
        run_network(CONFIG, compiled)


def test_cli_network_arguments(capsys):
    base = ["sim", "--config", "tiny"]
    assert main([*base, "--network", "mobilenetv2", "--tile", "2x2"]) == 2
    assert "--tile apply only to --layer" in capsys.readouterr().err
    assert main([*base, "--layer", "add:h=2,w=2,c=2", "--naive"]) == 2
    assert "--naive apply only to --network" in capsys.readouterr().err
    assert main([*base, "--network", "lenet"]) == 2
    assert "unknown network 'lenet'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--network", "mobilenetv2", "--layer", "add:h=2,w=2,c=2"])
    assert "not allowed with argument" in capsys.readouterr().err
