"""SCALE-Sim topology files: read one as a `Network`, write a network's array layers as one.

SCALE-Sim (v2, ``topologies/*.csv``) describes a workload as a list of layers in one of two CSV
formats, each a header row then one row per layer:

* convolutions: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
  Num Filter, Strides,`` (SCALE-Sim drops each row's last comma-separated field, hence the
  trailing comma; an optional ninth column is the stride in width). SCALE-Sim has no padding:
  the IFMAP is the padded input. Its output size is ``ceil((IFMAP - Filter) / Stride) + 1``
  (``topology_utils.topo_calc_hyperparams``), one more than the usual floor where the stride
  does not divide ``IFMAP - Filter``: its last window then overhangs the IFMAP. A layer whose
  name contains ``DP`` is run as ``Channels`` single-channel convolutions (depthwise).
* GEMMs: ``Layer, M, N, K`` -- ``(M x K) @ (K x N)``.

`load_csv` reads either into a chain of layers; `write_csv` writes the convolution format.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from kernels.layers import Conv2D, Dense, DepthwiseConv2D

from .workloads import INPUT, Network, Node, Source

__all__ = ["CONV_HEADER", "GEMM_HEADER", "load_csv", "write_csv"]

#: Header of SCALE-Sim's convolution topology format, as its own files write it.
CONV_HEADER = (
    "Layer name",
    "IFMAP Height",
    "IFMAP Width",
    "Filter Height",
    "Filter Width",
    "Channels",
    "Num Filter",
    "Strides",
)
#: Header of SCALE-Sim's GEMM topology format.
GEMM_HEADER = ("Layer", "M", "N", "K")


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, stripped cells without trailing empties) of the non-empty rows."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            lines = list(csv.reader(f))
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not a text CSV file") from None
    rows = []
    for i, line in enumerate(lines, 1):
        cells = [c.strip() for c in line]
        while cells and not cells[-1]:
            cells.pop()
        if cells:
            rows.append((i, cells))
    return rows


def _name(raw: str, used: set[str]) -> str:
    base = re.sub(r"[\s,=:]+", "_", raw) or "layer"
    name, i = base, 2
    while name in used:
        name, i = f"{base}_{i}", i + 1
    used.add(name)
    return name


def load_csv(path: str | os.PathLike, *, name: str | None = None) -> Network:
    """Read a SCALE-Sim topology CSV (convolution or GEMM format) as a `Network`.

    Each convolution row becomes a `Conv2D` with ``pad=0`` and ``h``, ``w`` the IFMAP size as
    given: SCALE-Sim's IFMAP sizes already include any padding. Where the stride does not
    divide ``IFMAP - Filter``, SCALE-Sim rounds the output size up (its last window overhangs
    the IFMAP), so ``h`` (``w``) is widened to ``(out - 1) * stride + filter``, the rows its
    windows cover: the layer has SCALE-Sim's output size and MACs either way. A row whose name
    contains ``DP`` (SCALE-Sim's depthwise convention) with ``Num Filter`` 1 becomes a
    `DepthwiseConv2D`. Each GEMM row becomes a `Dense` with ``m=M, k=K, n=N``. Batch 1.

    The layers form a chain: a layer reads the one before it when that one's output has its input
    shape, else a `Source` node of its input shape (``<layer>.ifmap``), since SCALE-Sim does not
    say where a layer's input comes from. The network's input is the first layer's input.

    Parameters
    ----------
    path : str or path
        The CSV file.
    name : str, optional
        The network's name; default the file's stem.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        An unknown header, a row with a missing or non-integer field, a non-square filter or
        unequal strides (Tandem convolutions are square, one stride), a ``DP`` row with more
        than one filter per channel, or a layer that fails validation; the message gives the
        file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SCALE-Sim topology {str(path)!r} does not exist")
    rows = _rows(path)
    if not rows:
        raise ValueError(f"SCALE-Sim topology {str(path)!r} is empty")
    header = [c.lower() for c in rows[0][1]]
    gemm = header[1:4] == ["m", "n", "k"]
    if not gemm and not (len(header) >= 8 and "ifmap" in header[1]):
        raise ValueError(
            f"SCALE-Sim topology {str(path)!r}: header {rows[0][1]!r} is neither the convolution "
            f"format ({', '.join(CONV_HEADER)},) nor the GEMM format ({', '.join(GEMM_HEADER)})"
        )
    width = 4 if gemm else 8
    used = {INPUT}
    nodes: list[Node] = []
    prev = (INPUT, None)  # (node name, output shape)
    input_shape = None
    for line, cells in rows[1:]:
        where = f"SCALE-Sim topology {str(path)!r} line {line}"
        if len(cells) < width:
            raise ValueError(f"{where}: {len(cells)} fields, want at least {width}: {cells!r}")
        extra = cells[8:9] if not gemm and len(cells) > 8 and cells[8] else []
        try:
            values = [int(c) for c in cells[1:width] + extra]
        except ValueError:
            raise ValueError(
                f"{where}: fields 2 to {width} (and a stride width in field 9) must be integers: "
                f"{cells!r}"
            ) from None
        layer = _name(cells[0], used)
        try:
            if gemm:
                m, n, k = values[:3]
                op = Dense(layer, m=m, k=k, n=n)
                shape = (m, k)
            else:
                h, w, fh, fw, c, nf, stride = values[:7]
                stride_w = values[7] if len(values) > 7 else stride
                if fh != fw or stride != stride_w:
                    raise ValueError(
                        f"filter {fh}x{fw}, strides {stride}x{stride_w}: Tandem convolutions are "
                        "square with one stride"
                    )
                # SCALE-Sim's output size rounds up: cover its last, overhanging window.
                h, w = (((size - fh) // -stride * -1) * stride + fh for size in (h, w))
                if "DP" in cells[0]:
                    if nf != 1:
                        raise ValueError(
                            f"a DP (depthwise) row with Num Filter {nf}: SCALE-Sim runs it as "
                            f"{c} single-channel convolutions of {nf} filters; Tandem's depthwise "
                            "has one filter per channel"
                        )
                    op = DepthwiseConv2D(layer, h=h, w=w, c=c, k=fh, stride=stride)
                else:
                    op = Conv2D(layer, h=h, w=w, cin=c, cout=nf, k=fh, stride=stride)
                shape = (1, h, w, c)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        if input_shape is None:
            input_shape = shape
            src = INPUT
        elif prev[1] == shape:
            src = prev[0]
        else:
            src = _name(f"{layer}.ifmap", used)
            nodes.append(Node(Source(src, shape), (INPUT,)))
        nodes.append(Node(op, (src,)))
        prev = (layer, op.output_shape)
    if input_shape is None:
        raise ValueError(f"SCALE-Sim topology {str(path)!r} has a header but no layers")
    return Network(name or path.stem, input_shape, tuple(nodes))


def write_csv(network: Network, path: str | os.PathLike) -> int:
    """Write the array layers of ``network`` as a SCALE-Sim convolution topology CSV.

    One row per array layer, in order: a `Conv2D` with its padded input as IFMAP, since
    SCALE-Sim does not pad, trimmed to the rows and columns its windows cover,
    ``(out_h - 1) * stride + k`` (at most ``h + 2*pad``; SCALE-Sim rounds its output size up,
    so an untrimmed remainder would add a window), so that SCALE-Sim computes the same output
    size and MACs; a grouped convolution as one row per group, ``{name}.g{i}`` with the group's
    channels (SCALE-Sim has no groups; its MACs and traffic are those of the groups run one after
    another, as Tandem runs them); a `Dense` as the 1x1 convolution over a 1 x ``m`` map
    (``Dense.as_conv``).
    Vector-unit layers (depthwise, add, pool) and shape operations are skipped: SCALE-Sim models
    the systolic array only. A ``DP`` in a layer name is written ``Dp``, as SCALE-Sim would run
    the layer as depthwise.

    Parameters
    ----------
    network : Network
        The graph to export.
    path : str or path
        The CSV file to write (overwritten).

    Returns
    -------
    int
        The number of rows written.

    Raises
    ------
    ValueError
        A convolution with a batch above 1 (a SCALE-Sim topology holds one image), or a
        network without array layers.
    """
    rows = []
    for node in network:
        op = node.op
        if isinstance(op, Dense):
            op = op.as_conv()
        elif not isinstance(op, Conv2D):
            continue
        if op.batch != 1:
            raise ValueError(
                f"network {network.name!r} layer {op.name!r}: batch {op.batch}; a SCALE-Sim "
                "topology holds one image, write a batch-1 network"
            )
        size = ((op.out_h - 1) * op.stride + op.k, (op.out_w - 1) * op.stride + op.k)
        group = op.group_conv()
        names = [op.name] if op.groups == 1 else [f"{op.name}.g{i}" for i in range(op.groups)]
        for name in names:
            fields = (name.replace("DP", "Dp"), *size, op.k, op.k, group.cin, group.cout, op.stride)
            rows.append(fields)
    if not rows:
        raise ValueError(
            f"network {network.name!r} has no array layers (conv, dense) to write as a "
            "SCALE-Sim topology"
        )
    with Path(path).open("w", newline="") as f:
        f.write(", ".join(CONV_HEADER) + ",\n")
        for fields in rows:
            f.write(",".join(map(str, fields)) + ",\n")
    return len(rows)
