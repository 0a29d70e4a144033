"""The layer cost model against the RTL (Verilator): `tb.validate_cost` cases, one simulator
process per config, the model's total within a stated tolerance of the measured cycles.

Tolerance: 5% on layers of at least 10,000 cycles, 10% below (short layers are dominated by the
prologue, whose DRAM port sharing the model follows only on average).
"""

from __future__ import annotations

import pytest

from tb.validate_cost import sweep, validate, validate_vector

LONG = 10_000


def tolerance(rtl_cycles: int) -> float:
    return 0.05 if rtl_cycles >= LONG else 0.10


def check(rows) -> None:
    table = "\n".join(r.line() for r in rows)
    print("\n" + table)
    bad = [r for r in rows if abs(r.error) > tolerance(r.rtl)]
    assert not bad, "model off the RTL beyond tolerance:\n" + "\n".join(r.line() for r in bad)


@pytest.mark.sim
@pytest.mark.parametrize("name", ["tiny", "wide", "default"])
def test_layer_cost_matches_the_rtl(name):
    check(validate(name, which="fast"))


@pytest.mark.sim
def test_vector_layer_cost_matches_the_rtl():
    """Adds, depthwise layers and pools on the vector unit (`tb.validate_cost.VECTOR_CASES`):
    misaligned 24-channel rows, narrow tiles whose per-row LOADs and STOREs hold the decoder,
    single buffering, global pooling."""
    check(validate_vector())


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize(("latency", "bandwidth"), [(100, 16), (20, 8), (20, 4)])
def test_vector_layer_cost_follows_the_dram_latency_and_bandwidth(latency, bandwidth):
    check(validate_vector(latency=latency, bandwidth=bandwidth))


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("name", ["default"])
def test_layer_cost_matches_the_rtl_on_large_layers(name):
    check(validate(name, which="slow"))


@pytest.mark.sim
@pytest.mark.slow
def test_layer_cost_follows_the_dram_latency_and_bandwidth():
    """Latency 1..100 cycles, bandwidth 4..16 B/cycle on default: the same tolerance."""
    check(sweep("default"))
