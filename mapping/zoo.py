"""Built-in workloads (a start: the depthwise layers of MobileNetV2).

MobileNetV2 (Sandler et al., 2018) is a 3x3 stride-2 stem followed by 17 inverted-residual
blocks; each block expands with a 1x1 convolution, filters with a 3x3 depthwise convolution
(ReLU6) and projects with a 1x1 convolution. The depthwise layers are where systolic arrays
struggle, so they are the vector unit's benchmark.
"""

from __future__ import annotations

from kernels.layers import DepthwiseConv2D

__all__ = ["MOBILENET_V2_BLOCKS", "mobilenet_v2_depthwise"]

#: (expansion t, output channels c, repeats n, first stride s) of MobileNetV2's block stages.
MOBILENET_V2_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_STEM_CHANNELS = 32


def _conv_out(size: int, stride: int) -> int:
    return (size + 2 - 3) // stride + 1  # 3x3, padding 1


def mobilenet_v2_depthwise(input_size: int = 224, batch: int = 1) -> list[DepthwiseConv2D]:
    """The 17 depthwise 3x3 layers of MobileNetV2 for an ``input_size`` square image.

    Names follow the block numbering, ``block{i}_dw``; at 224 the first is 112x112x32 stride 1
    and the last three 7x7x960 stride 1.
    """
    if not isinstance(input_size, int) or input_size < 8:
        raise ValueError(f"input_size must be an integer >= 8, not {input_size!r}")
    size = _conv_out(input_size, 2)  # the stem
    cin = _STEM_CHANNELS
    layers = []
    for t, c, n, s in MOBILENET_V2_BLOCKS:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            name = f"block{len(layers) + 1}_dw"
            layers.append(
                DepthwiseConv2D(
                    name,
                    h=size,
                    w=size,
                    c=hidden,
                    k=3,
                    stride=stride,
                    pad=1,
                    batch=batch,
                    act="relu6",
                )
            )
            size = _conv_out(size, stride)
            cin = c
    return layers
