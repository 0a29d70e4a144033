"""Workloads, the analytical cost model, and (later) mapping and design-space exploration."""

from .cost import (
    ArrayTile,
    TileCycles,
    VectorLayerCycles,
    array_tile_cycles,
    array_tiles_cycles,
    vector_command_cycles,
    vector_layer_cycles,
)
from .workloads import (
    Concat,
    Flatten,
    Network,
    NetworkBuilder,
    Node,
    NodeStats,
    Reshape,
    Totals,
    conv2d,
)
from .zoo import (
    NETWORKS,
    alexnet,
    get_network,
    googlenet,
    mobilenet_v2,
    mobilenet_v2_depthwise,
    resnet50,
    vgg16,
)

__all__ = [
    "NETWORKS",
    "ArrayTile",
    "Concat",
    "Flatten",
    "Network",
    "NetworkBuilder",
    "Node",
    "NodeStats",
    "Reshape",
    "TileCycles",
    "Totals",
    "VectorLayerCycles",
    "alexnet",
    "array_tile_cycles",
    "array_tiles_cycles",
    "conv2d",
    "get_network",
    "googlenet",
    "mobilenet_v2",
    "mobilenet_v2_depthwise",
    "resnet50",
    "vector_command_cycles",
    "vector_layer_cycles",
    "vgg16",
]
