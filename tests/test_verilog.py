"""Verilog generation: the CLI, determinism, and a clean Verilator lint."""

from __future__ import annotations

import json

import pytest

from rtl.config import load_config
from rtl.generate import generate_verilog, top_name
from tandem.cli import main
from tb.lint import lint_config

TOP_NAME = top_name("core")


@pytest.mark.parametrize("name", ["tiny", "default", "wide", "large"])
def test_cli_writes_verilog_and_config(name, tmp_path, capsys):
    assert main(["verilog", "--config", name, "--out", str(tmp_path)]) == 0
    text = (tmp_path / f"{TOP_NAME}.v").read_text()
    assert f"module {TOP_NAME}(" in text
    resolved = json.loads((tmp_path / "config.json").read_text())
    assert resolved == load_config(name).to_dict()
    assert "generated in" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["tiny", "wide"])
def test_same_config_same_bytes(name, tmp_path):
    main(["verilog", "--config", name, "--out", str(tmp_path / "a")])
    main(["verilog", "--config", name, "--out", str(tmp_path / "b")])
    a = (tmp_path / "a" / f"{TOP_NAME}.v").read_bytes()
    b = (tmp_path / "b" / f"{TOP_NAME}.v").read_bytes()
    assert a == b
    assert str(tmp_path) not in a.decode()  # no source paths leak into the output


def test_different_configs_differ():
    tiny = load_config("tiny")
    assert generate_verilog(tiny) != generate_verilog(tiny.replace(cols=5))


@pytest.mark.parametrize("top", ["core", "array"])
@pytest.mark.parametrize("dataflow", ["ws", "os", "both"])
def test_lint_clean(dataflow, top):
    ok, text = lint_config(load_config("tiny").replace(dataflow=dataflow), top)
    assert ok, text


def test_cli_writes_the_isa_header(tmp_path):
    from rtl import isa

    assert main(["verilog", "--config", "tiny", "--out", str(tmp_path)]) == 0
    header = (tmp_path / "tandem_isa.vh").read_text()
    assert f"localparam TANDEM_OP_MATMUL = {int(isa.Op.MATMUL)};" in header
    lsb, width, _ = isa.FIELDS[isa.Op.LOAD]["rows"]
    assert f"localparam TANDEM_LOAD_ROWS_LSB = {lsb};" in header
    assert f"localparam TANDEM_LOAD_ROWS_WIDTH = {width};" in header


def test_cli_array_top(tmp_path):
    assert main(["verilog", "--config", "tiny", "--top", "array", "--out", str(tmp_path)]) == 0
    assert "module tandem_array(" in (tmp_path / "tandem_array.v").read_text()


def test_cli_bad_config(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("rows = 4\nspad_banks = 3\n")
    assert main(["verilog", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "spad_banks must be a power of two, not 3" in err
    assert not (tmp_path / "o").exists()


def test_cli_requires_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["verilog", "--config", "tiny"])
    assert exc.value.code == 2
    assert "--out" in capsys.readouterr().err
