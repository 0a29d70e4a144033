"""cocotb regressions of the systolic array on Verilator and Icarus (through tb.runner).

Each case builds once per (simulator, config) and reuses the build directory. The bench checks
every output against the golden GEMM and the measured cycles against the model exactly.
"""

from __future__ import annotations

import pytest

from rtl.config import load_config
from tb.runner import build, run_bench

CI_CASES = [
    ("verilator", "tiny"),
    ("icarus", "tiny"),
    ("verilator", "wide"),
    ("icarus", "wide"),
    ("verilator", "default"),
]
SLOW_CASES = [("verilator", "large"), ("icarus", "default")]


def _run(sim: str, name: str, seed: int, **env) -> None:
    cfg = load_config(name)
    b = build(cfg, sim, top="array")
    run_bench(
        b,
        "tb.tb_systolic",
        env={"TANDEM_SEED": str(seed), **env},
        name=f"seed{seed}",
    )


@pytest.mark.sim
@pytest.mark.parametrize(("sim", "name"), CI_CASES)
def test_systolic(sim, name):
    _run(sim, name, seed=1)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize(("sim", "name"), SLOW_CASES)
def test_systolic_large(sim, name):
    _run(sim, name, seed=1)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 12))
@pytest.mark.parametrize("name", ["tiny", "wide"])
def test_systolic_seeds(name, seed):
    _run("verilator", name, seed=seed, TANDEM_GEMMS="12")


@pytest.mark.sim
@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_single_dataflow_config(dataflow):
    """A config generated with one dataflow has no mode port and runs that dataflow."""
    cfg = load_config("tiny").replace(dataflow=dataflow, name=f"tiny_{dataflow}")
    run_bench(
        build(cfg, "verilator", top="array"), "tb.tb_systolic", env={"TANDEM_SEED": "3"}, name="s3"
    )
