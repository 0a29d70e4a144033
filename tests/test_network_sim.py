"""Whole networks on the RTL: one program, one DRAM image, every node's tensor bit-exact.

MobileNetV2 at 32x32 runs in the default suite with the default plans, the naive baseline and
the mapper's plans (through ``tandem sim --network``, whose default they are), each checked
against the cost model's prediction too; the full 224x224 network runs under ``-m slow``.
"""

from __future__ import annotations

import json
import time

import pytest

from mapping.compiler import compile_network, naive_plans
from mapping.mapper import map_network
from mapping.workloads import NetworkBuilder
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


RUNS: dict[str, object] = {}  # MobileNetV2 32x32 runs on default, by plan set, shared by tests


def run_32(plans: str):
    """MobileNetV2 32x32 on default with the default, naive or mapper's plans (run once)."""
    if plans not in RUNS:
        network = get_network("mobilenetv2", input_size=32)
        chosen = {"default": None, "naive": naive_plans(CONFIG, network),
                  "mapped": map_network(CONFIG, network).plans}[plans]  # fmt: skip
        t0 = time.perf_counter()
        run = run_network(CONFIG, compile_network(CONFIG, network, chosen))
        print(f"mobilenetv2 32x32 {plans} plans: {run.cycles:,} cycles (model "
              f"{run.model_cycles:,}), {time.perf_counter() - t0:.1f} s wall")  # fmt: skip
        check_run(run, network)
        RUNS[plans] = run
    return RUNS[plans]


@pytest.mark.sim
def test_mobilenetv2_32_default_plans():
    run = run_32("default")
    assert {n.engine for n in run.nodes} == {"array", "vector", "view"}
    assert run.counters["vec_taps"] > 0 and run.counters["exec_streaming"] > 0
    assert run.dram_bytes == DEFAULT_DRAM_BYTES
    # the cost model, layer after layer, predicts the whole network (RTL/model 0.981)
    assert run.cycles == pytest.approx(run.model_cycles, rel=0.05)


@pytest.mark.sim
def test_mobilenetv2_32_naive():
    run = run_32("naive")
    # per-channel depthwise weights (a whole weight tile per tap) need the 32 MiB DRAM build
    assert run.image_bytes > DEFAULT_DRAM_BYTES and run.dram_bytes == 32 << 20
    assert {n.engine for n in run.nodes if n.kind == "depthwise"} == {"array-naive"}
    # RTL/model 0.978 (0.875 before the model's b8d45d7)
    assert run.cycles == pytest.approx(run.model_cycles, rel=0.1)
    assert run.cycles > 5 * run_32("default").cycles


@pytest.mark.sim
def test_mobilenetv2_32_mapped_through_the_command_line(capsys):
    args = ["sim", "--config", "default", "--network", "mobilenetv2", "--input-size", "32"]
    assert main([*args, "--mapped", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bit_exact"] and report["plans"].startswith("the mapper's plans")
    assert report["mismatches"] == 0 and len(report["nodes"]) == 65
    assert report["cycles"] == pytest.approx(report["model_cycles"], rel=0.05)  # 1.024
    assert report["cycles"] < run_32("default").cycles  # the mapper beats the defaults


@pytest.mark.sim
def test_googlenet_32_concats():
    # nine inception modules: every branch writes straight into its channel slice of the concat
    network = get_network("googlenet", input_size=32)
    t0 = time.perf_counter()
    run = run_network(CONFIG, compile_network(CONFIG, network))
    print(f"googlenet 32x32 default plans: {run.cycles:,} cycles, "
          f"{time.perf_counter() - t0:.1f} s wall")  # fmt: skip
    check_run(run, network)
    assert sum(n.kind == "concat" for n in run.nodes) == 9


@pytest.mark.sim
def test_resnext50_32_grouped_convolutions():
    # 16 grouped 3x3 convolutions of 32 groups, packed 4, 2, 1 and 1 groups per segment on the
    # 16x16 array (kernels.lower.array_form); ResNeXt-50's weights need the 32 MiB DRAM build
    network = get_network("resnext50", input_size=32)
    t0 = time.perf_counter()
    run = run_network(CONFIG, compile_network(CONFIG, network, map_network(CONFIG, network).plans))
    print(f"resnext50 32x32 mapped plans: {run.cycles:,} cycles (model {run.model_cycles:,}), "
          f"{time.perf_counter() - t0:.1f} s wall")  # fmt: skip
    check_run(run, network)
    assert sum(getattr(node.op, "groups", 1) == 32 for node in network) == 16
    assert run.cycles == pytest.approx(run.model_cycles, rel=0.03)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("plans", ["default", "mapped", "naive"])
def test_mobilenetv2_224(plans):
    network = get_network("mobilenetv2", input_size=224)
    t0 = time.perf_counter()
    chosen = {"default": None, "naive": naive_plans(CONFIG, network),
              "mapped": map_network(CONFIG, network).plans}[plans]  # fmt: skip
    run = run_network(CONFIG, compile_network(CONFIG, network, chosen))
    check_run(run, network)
    print(
        f"mobilenetv2 224x224 {plans} plans: {run.cycles:,} cycles (model {run.model_cycles:,}), "
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
    b = NetworkBuilder("one", (1, 4, 4, 3))
    b.conv("conv", b.input, 4, 3, pad=1)
    compiled = compile_network(load_config("tiny"), b.build())
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
