"""Array cycle model: built from the component's latency properties, and its tile checks."""

from __future__ import annotations

import pytest

from mapping.cost import ArrayTile, TileCycles, _array, array_tile_cycles, array_tiles_cycles
from rtl.config import load_config
from rtl.systolic import PE, SystolicArray


@pytest.fixture
def tiny():
    return load_config("tiny")


def test_terms_come_from_the_component(tiny):
    arr = SystolicArray.timing(tiny)
    ws = array_tile_cycles(tiny, ArrayTile(10, 4, 4, "ws"))
    assert ws == TileCycles(arr.preload_latency, arr.ws_fill_latency, 10, arr.ws_drain_latency)
    os_ = array_tile_cycles(tiny, ArrayTile(4, 9, 3, "os"))
    assert os_ == TileCycles(0, arr.os_fill_latency, 9, arr.os_drain_latency)


def test_model_follows_a_pe_latency_change(tiny, monkeypatch):
    """If the PE gained a pipeline stage the model must change with it (no copied constants)."""
    before = array_tile_cycles(tiny, ArrayTile(10, 4, 4, "ws")).total
    monkeypatch.setattr(PE, "latency", 2)
    _array.cache_clear()
    try:
        after = array_tile_cycles(tiny, ArrayTile(10, 4, 4, "ws")).total
    finally:
        monkeypatch.undo()
        _array.cache_clear()
    assert after > before


def test_sequence_of_one_is_the_tile(tiny):
    for t in (ArrayTile(10, 4, 4, "ws"), ArrayTile(3, 17, 2, "os")):
        assert array_tiles_cycles(tiny, [t]) == array_tile_cycles(tiny, t).total


def test_os_tiles_add(tiny):
    tiles = [ArrayTile(4, k, 4, "os") for k in (1, 5, 30)]
    assert array_tiles_cycles(tiny, tiles) == sum(array_tile_cycles(tiny, t).total for t in tiles)


def test_long_ws_tiles_hide_preload(tiny):
    """With M well above the array latency the preloads overlap completely."""
    arr = SystolicArray.timing(tiny)
    tiles = [ArrayTile(50, 4, 4, "ws")] * 5
    assert array_tiles_cycles(tiny, tiles) == arr.preload_latency + 5 * 50 + arr.ws_latency


def test_short_ws_tiles_wait_for_the_buffer(tiny):
    """A buffer is reloaded only after its previous tile has left the array.

    With preload <= m < ws_latency the preload port keeps up, so a model that ignored the
    buffer wait would give the full-overlap figure; the real sequence takes longer."""
    arr = SystolicArray.timing(tiny)
    m = arr.preload_latency + 1
    assert m < arr.ws_latency
    tiles = [ArrayTile(m, 4, 4, "ws")] * 4
    full_overlap = arr.preload_latency + 4 * m + arr.ws_latency
    assert array_tiles_cycles(tiny, tiles) > full_overlap


def test_tile_totals_add(tiny):
    a = array_tile_cycles(tiny, ArrayTile(10, 4, 4, "ws"))
    b = array_tile_cycles(tiny, ArrayTile(2, 4, 1, "ws"))
    assert (a + b).total == a.total + b.total


@pytest.mark.parametrize(
    ("tile", "message"),
    [
        (ArrayTile(10, 5, 4, "ws"), r"ws tile k=5, n=4 exceeds the 4x4 array"),
        (ArrayTile(10, 4, 5, "ws"), r"split k into <= 4 and n into <= 4"),
        (ArrayTile(5, 4, 4, "os"), r"os tile m=5, n=4 exceeds"),
        (ArrayTile(0, 4, 4, "ws"), r"tile m must be a positive integer, not 0"),
        (ArrayTile(1, 1, 1, "rs"), r"dataflow must be 'ws' or 'os', not 'rs'"),
    ],
)
def test_impossible_tiles(tiny, tile, message):
    with pytest.raises(ValueError, match=message):
        array_tile_cycles(tiny, tile)


def test_dataflow_not_generated(tiny):
    with pytest.raises(ValueError, match="no output-stationary dataflow"):
        array_tile_cycles(tiny.replace(dataflow="ws"), ArrayTile(1, 1, 1, "os"))


def test_mixed_sequence_rejected(tiny):
    with pytest.raises(ValueError, match="one dataflow"):
        array_tiles_cycles(tiny, [ArrayTile(1, 1, 1, "ws"), ArrayTile(1, 1, 1, "os")])
