"""``tandem sim`` end to end: every layer kind on the RTL, ``--save`` and the NumPy recheck."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tandem.cli import main

SPECS = {
    "conv": "conv:h=5,w=5,cin=3,cout=5,k=3,p=1",
    "grouped": "conv:h=6,w=5,cin=6,cout=4,k=3,s=2,p=1,g=2,act=relu",
    "dense": "dense:m=5,k=7,n=3",
    "dw": "dw:h=7,w=7,c=5,k=5,s=2,p=2",
    "add": "add:h=4,w=5,c=3",
    "maxpool": "maxpool:h=7,w=7,c=6,k=3,s=2,p=1",
    "avgpool": "avgpool:h=6,w=6,c=5,k=2,s=2",
    "gap": "gap:h=7,w=5,c=6",
}


def _recheck(directory) -> str:
    proc = subprocess.run([sys.executable, str(directory / "recheck.py")], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return proc.stdout.strip()


@pytest.mark.sim
@pytest.mark.parametrize("kind", list(SPECS))
def test_sim_saves_a_run_anyone_can_recheck(kind, tmp_path, capsys):
    out = tmp_path / kind
    assert main(["sim", "--config", "tiny", "--layer", SPECS[kind], "--save", str(out)]) == 0
    assert "BIT-EXACT" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["result"]["bit_exact"]
    assert set(manifest["layer"]) >= {"kind", "stride", "padding", "groups"}
    for entry in manifest["files"].values():
        assert (out / entry["file"]).exists() and entry["layout"]
    assert _recheck(out) == "bit-exact"
    # the recheck really compares: one flipped output value is reported
    rtl = np.load(out / "output_rtl.npy")
    rtl.reshape(-1)[0] ^= 1
    np.save(out / "output_rtl.npy", rtl)
    assert _recheck(out).startswith("MISMATCH in 1 ")


def test_sim_rejects_dataflow_for_vector_layers(capsys):
    assert main(["sim", "--config", "tiny", "--layer", SPECS["dw"], "--dataflow", "os"]) == 2
    assert "drop --dataflow" in capsys.readouterr().err


@pytest.mark.sim
def test_sim_json_report(capsys):
    assert main(["sim", "--config", "tiny", "--layer", SPECS["add"], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["engine"] == "vector" and report["bit_exact"]
    assert report["counters"]["vec_busy"] > 0
