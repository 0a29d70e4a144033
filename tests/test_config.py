"""HWConfig: presets, round trips and the errors for bad values."""

from __future__ import annotations

import json

import pytest

from rtl.config import HWConfig, load_config


def test_presets_load(preset):
    assert preset.rows * preset.cols == preset.pes
    assert preset.spad_rows * preset.spad_row_bytes == preset.spad_kib * 1024
    assert preset.acc_rows * preset.acc_row_bytes == preset.acc_kib * 1024


def test_rows_round_down_to_whole_banks():
    cfg = HWConfig(rows=4, cols=5, acc_kib=8, acc_banks=2)  # 8192 / 20 = 409.6 rows
    assert cfg.acc_rows == 408
    assert cfg.acc_rows % cfg.acc_banks == 0


def test_preset_shapes():
    shapes = {n: (load_config(n).rows, load_config(n).cols) for n in ("tiny", "default", "wide")}
    assert shapes == {"tiny": (4, 4), "default": (16, 16), "wide": (8, 32)}
    assert (load_config("large").rows, load_config("large").cols) == (32, 32)


def test_json_round_trip(preset, tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(preset.to_json())
    assert HWConfig.from_json(path) == preset
    assert json.loads(preset.to_json())["rows"] == preset.rows


def test_toml_name_defaults_to_stem(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("rows = 8\ncols = 4\n")
    cfg = load_config(path)
    assert (cfg.name, cfg.rows, cfg.cols) == ("mine", 8, 4)


def test_frozen():
    cfg = HWConfig()
    with pytest.raises(AttributeError):
        cfg.rows = 3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rows", 0, r"rows must be in 1\.\.256, not 0"),
        ("cols", -4, r"cols must be in 1\.\.256, not -4"),
        ("spad_kib", 0, r"spad_kib must be in"),
        ("vector_lanes", 0, r"vector_lanes must be in"),
        ("spad_banks", 3, r"spad_banks must be a power of two, not 3"),
        ("acc_banks", 6, r"acc_banks must be a power of two, not 6"),
        ("dma_beat_bytes", 12, r"dma_beat_bytes must be a power of two, not 12"),
        ("dataflow", "rs", r"dataflow must be one of 'ws', 'os', 'both', not 'rs'"),
        ("acc_width", 19, r"acc_width=19 is too small to hold a 16-deep dot product"),
        ("vector_max_kernel", 4, r"vector_max_kernel must be odd"),
        ("name", "my config", r"name must be a non-empty identifier"),
    ],
)
def test_bad_values_name_field_and_value(field, value, message):
    with pytest.raises(ValueError, match=message):
        HWConfig(**{field: value})


@pytest.mark.parametrize(("field", "value"), [("rows", 4.0), ("cols", "16"), ("cores", True)])
def test_bad_types(field, value):
    with pytest.raises(TypeError, match=field):
        HWConfig(**{field: value})


def test_acc_width_boundary():
    HWConfig(rows=16, acc_width=20)  # 8 + 8 + log2(16) = 20 fits
    with pytest.raises(ValueError, match="needs at least 21 bits"):
        HWConfig(rows=17, acc_width=20)


def test_unknown_toml_key_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("rows = 4\ncolumns = 4\n")
    with pytest.raises(ValueError, match=r"bad\.toml: unknown key\(s\) 'columns'; valid keys"):
        load_config(path)


def test_bad_value_in_toml_names_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("rows = 0\n")
    with pytest.raises(ValueError, match=r"bad\.toml: rows must be in 1\.\.256, not 0"):
        load_config(path)


def test_malformed_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("rows = = 4\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(path)


def test_unknown_preset_lists_presets():
    with pytest.raises(ValueError, match=r"unknown config 'huge'.*default, large, tiny, wide"):
        load_config("huge")


def test_missing_file():
    with pytest.raises(FileNotFoundError, match=r"nope\.toml"):
        load_config("nope.toml")
