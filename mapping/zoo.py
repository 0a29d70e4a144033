"""Built-in workloads: MobileNetV2, ResNet-50, ResNeXt-50, VGG-16, GoogLeNet and AlexNet as
`Network` graphs.

Every builder takes ``input_size`` (a square ``input_size x input_size x 3`` image, batch 1) so
that CI can run a small version; spatial sizes follow from the layers' own arithmetic (floor
division, "same"-style padding), and the classifiers of VGG-16 and AlexNet take whatever the last
feature map flattens to. The smallest ``input_size`` is 32 (the networks' total stride: the last
feature map is 1x1) and 63 for AlexNet (its unpadded pools); a smaller one is a ValueError that
names the minimum.

Activations: ReLU6 in MobileNetV2, ReLU elsewhere; none on projections (MobileNetV2's 1x1
projections, ResNet's third 1x1 and downsample convolutions) and on the classifiers, whose
softmax is left out. Batch norm is folded into the convolutions' biases, dropout and LRN carry
no work and are left out. Names follow torchvision's where it has one (``features.3.dw``,
``layer2.0.conv2``), with one suffix per operation.

`mobilenet_v2_depthwise` keeps the 17 depthwise layers of MobileNetV2 as a plain list (the vector
unit's benchmark), derived from `mobilenet_v2`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

from kernels.layers import DepthwiseConv2D

from .workloads import Network, NetworkBuilder

__all__ = [
    "GOOGLENET_INCEPTIONS",
    "MOBILENET_V2_BLOCKS",
    "NETWORKS",
    "alexnet",
    "get_network",
    "googlenet",
    "mobilenet_v2",
    "mobilenet_v2_depthwise",
    "resnet50",
    "resnext50",
    "vgg16",
]

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
_LAST_CHANNELS = 1280
_CLASSES = 1000


def _check_size(network: str, input_size: object, minimum: int) -> int:
    if not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < minimum:
        raise ValueError(
            f"{network}: input_size must be an integer >= {minimum} (the smallest image whose "
            f"last feature map is at least 1x1), not {input_size!r}"
        )
    return input_size


def mobilenet_v2(input_size: int = 224) -> Network:
    """MobileNetV2 1.0 (Sandler et al., 2018): 52 convolutions, 10 residual adds, a classifier.

    A 3x3 stride-2 stem (``features.0``), 17 inverted-residual blocks ``features.1`` ..
    ``features.17`` (``.expand`` 1x1, ``.dw`` 3x3 depthwise, ``.project`` 1x1 without
    activation, ``.add`` where stride is 1 and the channels match), a 1x1 convolution to 1280
    channels (``features.18``), global average pooling, flatten and a 1280 -> 1000 classifier.
    """
    size = _check_size("mobilenet_v2", input_size, 32)
    b = NetworkBuilder("mobilenet_v2", (1, size, size, 3))
    x = b.conv("features.0", b.input, _STEM_CHANNELS, 3, stride=2, pad=1, act="relu6")
    cin, block = _STEM_CHANNELS, 1
    for t, c, n, s in MOBILENET_V2_BLOCKS:
        for i in range(n):
            stride = s if i == 0 else 1
            name = f"features.{block}"
            y = x
            if t != 1:
                y = b.conv(f"{name}.expand", y, cin * t, 1, act="relu6")
            y = b.depthwise(f"{name}.dw", y, 3, stride=stride, pad=1, act="relu6")
            y = b.conv(f"{name}.project", y, c, 1)
            x = b.add(f"{name}.add", x, y) if stride == 1 and cin == c else y
            cin, block = c, block + 1
    x = b.conv(f"features.{block}", x, _LAST_CHANNELS, 1, act="relu6")
    x = b.flatten("flatten", b.gap("pool", x))
    b.dense("classifier", x, _CLASSES)
    return b.build()


def mobilenet_v2_depthwise(input_size: int = 224, batch: int = 1) -> list[DepthwiseConv2D]:
    """The 17 depthwise 3x3 layers of MobileNetV2 for an ``input_size`` square image.

    The ``features.{i}.dw`` layers of `mobilenet_v2`, renamed ``block{i}_dw`` and given
    ``batch``; at 224 the first is 112x112x32 stride 1 and the last three 7x7x960 stride 1.
    """
    layers = mobilenet_v2(input_size).layers("depthwise")
    return [
        dataclasses.replace(layer, name=f"block{i}_dw", batch=batch)
        for i, layer in enumerate(layers, 1)
    ]


#: (blocks, bottleneck width, first stride) of ResNet-50's four stages (expansion 4).
RESNET50_STAGES = ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2))


def resnet50(input_size: int = 224) -> Network:
    """ResNet-50 (He et al., 2016) as torchvision builds it (v1.5: stride on the 3x3).

    A 7x7 stride-2 stem (``conv1``), a 3x3 stride-2 max pool, 16 bottleneck blocks
    ``layer{s}.{i}`` (``.conv1`` 1x1, ``.conv2`` 3x3, ``.conv3`` 1x1 without activation,
    ``.downsample`` 1x1 on the first block of each stage, ``.add`` with ReLU), global average
    pooling, flatten and a 2048 -> 1000 ``fc``.
    """
    return _bottleneck_net("resnet50", input_size, groups=1, width_per_group=64)


def resnext50(input_size: int = 224) -> Network:
    """ResNeXt-50 32x4d (Xie et al., 2017) as torchvision builds it (``resnext50_32x4d``).

    ResNet-50 (`resnet50`) with wider bottlenecks whose 3x3 ``.conv2`` is a grouped convolution
    of 32 groups of 4 channels per 64 of the stage's base width (128 channels in stage 1 up to
    1024 in stage 4): 4.230 G MACs as torchvision counts them, 24.99 M parameters (torchvision's
    25.03 M has two batch-norm parameters per channel where this has one folded bias).
    """
    return _bottleneck_net("resnext50", input_size, groups=32, width_per_group=4)


def _bottleneck_net(name: str, input_size: int, groups: int, width_per_group: int) -> Network:
    size = _check_size(name, input_size, 32)
    b = NetworkBuilder(name, (1, size, size, 3))
    x = b.conv("conv1", b.input, 64, 7, stride=2, pad=3, act="relu")
    x = b.pool("maxpool", x, 3, stride=2, pad=1)
    for s, (blocks, planes, first_stride) in enumerate(RESNET50_STAGES, 1):
        width = planes * width_per_group // 64 * groups
        for i in range(blocks):
            block, stride = f"layer{s}.{i}", first_stride if i == 0 else 1
            y = b.conv(f"{block}.conv1", x, width, 1, act="relu")
            y = b.conv(f"{block}.conv2", y, width, 3, stride, 1, groups, act="relu")
            y = b.conv(f"{block}.conv3", y, 4 * planes, 1)
            if i == 0:
                x = b.conv(f"{block}.downsample", x, 4 * planes, 1, stride=stride)
            x = b.add(f"{block}.add", x, y, act="relu")
    x = b.flatten("flatten", b.gap("avgpool", x))
    b.dense("fc", x, _CLASSES)
    return b.build()


#: Output channels of VGG-16's 13 convolutions, stage by stage (configuration D).
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg16(input_size: int = 224) -> Network:
    """VGG-16 (Simonyan and Zisserman, 2015, configuration D).

    13 3x3 convolutions ``conv{s}_{i}`` (padding 1, ReLU) in five stages, each closed by a 2x2
    stride-2 max pool ``pool{s}``, then flatten and ``fc6`` (ReLU), ``fc7`` (ReLU), ``fc8``. At
    224 ``fc6`` reads 7x7x512; at other sizes it reads the last map as it is.
    """
    size = _check_size("vgg16", input_size, 32)
    b = NetworkBuilder("vgg16", (1, size, size, 3))
    x = b.input
    for s, stage in enumerate(VGG16_STAGES, 1):
        for i, cout in enumerate(stage, 1):
            x = b.conv(f"conv{s}_{i}", x, cout, 3, pad=1, act="relu")
        x = b.pool(f"pool{s}", x, 2, stride=2)
    x = b.flatten("flatten", x)
    x = b.dense("fc6", x, 4096, act="relu")
    x = b.dense("fc7", x, 4096, act="relu")
    b.dense("fc8", x, _CLASSES)
    return b.build()


#: Inception modules of GoogLeNet (Szegedy et al., 2015, table 1): name and the channels of
#: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
GOOGLENET_INCEPTIONS = (
    ("3a", (64, 96, 128, 16, 32, 32)),
    ("3b", (128, 128, 192, 32, 96, 64)),
    ("4a", (192, 96, 208, 16, 48, 64)),
    ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)),
    ("4d", (112, 144, 288, 32, 64, 64)),
    ("4e", (256, 160, 320, 32, 128, 128)),
    ("5a", (256, 160, 320, 32, 128, 128)),
    ("5b", (384, 192, 384, 48, 128, 128)),
)


def googlenet(input_size: int = 224) -> Network:
    """GoogLeNet / Inception v1 (Szegedy et al., 2015) with the paper's shapes (table 1).

    Stem ``conv1`` 7x7/2, ``maxpool1`` 3x3/2, ``conv2`` 1x1 64 (the "3x3 reduce"), ``conv3``
    3x3 192, ``maxpool2``; nine inception modules ``inception{3a..5b}``, each the concat of four
    branches: ``.branch1`` 1x1; ``.branch2.reduce`` 1x1 then ``.branch2`` 3x3; ``.branch3.reduce``
    1x1 then ``.branch3`` a true 5x5 (torchvision's model uses a 3x3 there); ``.branch4.pool``
    3x3/1 max pool then ``.branch4`` 1x1 pool projection. Max pools ``maxpool3`` and
    ``maxpool4`` (3x3/2, padding 1) after 3b and 4e, global average pool, flatten, a
    1024 -> 1000 ``fc``. The auxiliary classifiers (training only) and LRN are left out.
    """
    size = _check_size("googlenet", input_size, 32)
    b = NetworkBuilder("googlenet", (1, size, size, 3))
    x = b.conv("conv1", b.input, 64, 7, stride=2, pad=3, act="relu")
    x = b.pool("maxpool1", x, 3, stride=2, pad=1)
    x = b.conv("conv2", x, 64, 1, act="relu")
    x = b.conv("conv3", x, 192, 3, pad=1, act="relu")
    x = b.pool("maxpool2", x, 3, stride=2, pad=1)
    for module, (c1, r3, c3, r5, c5, pp) in GOOGLENET_INCEPTIONS:
        name = f"inception{module}"
        y1 = b.conv(f"{name}.branch1", x, c1, 1, act="relu")
        y2 = b.conv(f"{name}.branch2.reduce", x, r3, 1, act="relu")
        y2 = b.conv(f"{name}.branch2", y2, c3, 3, pad=1, act="relu")
        y3 = b.conv(f"{name}.branch3.reduce", x, r5, 1, act="relu")
        y3 = b.conv(f"{name}.branch3", y3, c5, 5, pad=2, act="relu")
        y4 = b.pool(f"{name}.branch4.pool", x, 3, stride=1, pad=1)
        y4 = b.conv(f"{name}.branch4", y4, pp, 1, act="relu")
        x = b.concat(f"{name}.concat", y1, y2, y3, y4)
        if module in ("3b", "4e"):
            x = b.pool(f"maxpool{3 if module == '3b' else 4}", x, 3, stride=2, pad=1)
    x = b.flatten("flatten", b.gap("avgpool", x))
    b.dense("fc", x, _CLASSES)
    return b.build()


#: Channels of AlexNet's five convolutions: torchvision's single-group model (Krizhevsky 2014,
#: "One weird trick") and the original two-GPU model of 2012 (conv2, conv4, conv5 in 2 groups).
ALEXNET_CHANNELS = {
    "torchvision": (64, 192, 384, 256, 256),
    "original": (96, 256, 384, 384, 256),
}


def alexnet(
    input_size: int = 224, variant: Literal["torchvision", "original"] = "torchvision"
) -> Network:
    """AlexNet with the 227-style feature maps (55, 27, 13, 6 at 224).

    ``conv1`` 11x11/4 padding 2, ``pool1`` 3x3/2, ``conv2`` 5x5 padding 2, ``pool2``,
    ``conv3`` .. ``conv5`` 3x3 padding 1, ``pool5``, flatten, ``fc6`` and ``fc7`` 4096 (ReLU),
    ``fc8`` 1000. ``variant="torchvision"`` (the default) has torchvision's channels
    64-192-384-256-256 in one group; ``"original"`` the 2012 paper's 96-256-384-384-256 with
    conv2, conv4 and conv5 in two groups (the two GPUs' halves).
    """
    if variant not in ALEXNET_CHANNELS:
        raise ValueError(
            f"alexnet: variant must be one of {', '.join(map(repr, ALEXNET_CHANNELS))}, "
            f"not {variant!r}"
        )
    size = _check_size("alexnet", input_size, 63)
    c1, c2, c3, c4, c5 = ALEXNET_CHANNELS[variant]
    g = 2 if variant == "original" else 1
    b = NetworkBuilder("alexnet", (1, size, size, 3))
    x = b.conv("conv1", b.input, c1, 11, stride=4, pad=2, act="relu")
    x = b.pool("pool1", x, 3, stride=2)
    x = b.conv("conv2", x, c2, 5, pad=2, groups=g, act="relu")
    x = b.pool("pool2", x, 3, stride=2)
    x = b.conv("conv3", x, c3, 3, pad=1, act="relu")
    x = b.conv("conv4", x, c4, 3, pad=1, groups=g, act="relu")
    x = b.conv("conv5", x, c5, 3, pad=1, groups=g, act="relu")
    x = b.flatten("flatten", b.pool("pool5", x, 3, stride=2))
    x = b.dense("fc6", x, 4096, act="relu")
    x = b.dense("fc7", x, 4096, act="relu")
    b.dense("fc8", x, _CLASSES)
    return b.build()


#: Builders of the built-in networks by name (each takes ``input_size``).
NETWORKS: dict[str, Callable[..., Network]] = {
    "mobilenetv2": mobilenet_v2,
    "resnet50": resnet50,
    "resnext50": resnext50,
    "vgg16": vgg16,
    "googlenet": googlenet,
    "alexnet": alexnet,
}


def get_network(name: str, input_size: int = 224) -> Network:
    """The built-in network called ``name`` (see `NETWORKS`) for an ``input_size`` image.

    ``mobilenet_v2`` and ``mobilenet-v2`` are accepted for ``mobilenetv2``; case is ignored.
    """
    key = str(name).lower().replace("_", "").replace("-", "")
    if key not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; built-in networks: {', '.join(NETWORKS)}")
    return NETWORKS[key](input_size)
