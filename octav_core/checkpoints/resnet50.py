"""ResNet-50: the seed's layer numbering, and the Keras-to-torchvision name and layout mapping.

Numbering (1-based, as in the seed, which analysed layers #17 and #45):
#1 ``conv1.weight``; #2..#49 the 48 main-path convolutions in order
(``layer1.0.conv1.weight``, ``layer1.0.conv2.weight``, ``layer1.0.conv3.weight``, ``layer1.1.conv1.weight``, ...);
#50 ``fc.weight``; #51..#54 the shortcut projections ``layer{1..4}.0.downsample.0.weight``.
"""

from __future__ import annotations

import re

import numpy as np

# Bottleneck blocks per stage (torchvision ``layer1..layer4``; Keras stages 2..5) and their widths.
RESNET50_BLOCKS = (3, 4, 6, 3)
RESNET50_WIDTHS = (64, 128, 256, 512)


def _table() -> tuple[tuple[str, tuple[int, ...]], ...]:
    rows: list[tuple[str, tuple[int, ...]]] = [("conv1.weight", (64, 3, 7, 7))]
    shortcuts = []
    channels_in = 64
    for stage, (blocks, width) in enumerate(zip(RESNET50_BLOCKS, RESNET50_WIDTHS), start=1):
        shortcuts.append((f"layer{stage}.0.downsample.0.weight", (4 * width, channels_in, 1, 1)))
        for block in range(blocks):
            c_in = channels_in if block == 0 else 4 * width
            rows += [(f"layer{stage}.{block}.conv1.weight", (width, c_in, 1, 1)),
                     (f"layer{stage}.{block}.conv2.weight", (width, width, 3, 3)),
                     (f"layer{stage}.{block}.conv3.weight", (4 * width, width, 1, 1))]
        channels_in = 4 * width
    rows.append(("fc.weight", (1000, 2048)))
    return tuple(rows + shortcuts)


RESNET50_TABLE = _table()
"""``((name, torch shape), ...)`` in catalog order: entry ``i`` is layer ``#i+1``."""

RESNET50_LAYER_NAMES = tuple(name for name, _ in RESNET50_TABLE)

# Keras ``res{stage}{block}_branch{1|2a|2b|2c}`` and ``bn...`` names (keras.applications.ResNet50, v1).
_KERAS_BLOCK = re.compile(r"^(?P<kind>res|bn)(?P<stage>[2-5])(?P<block>[a-z])_branch(?P<branch>1|2[abc])$")
_BRANCH = {"2a": "conv1", "2b": "conv2", "2c": "conv3"}
_BN_OF = {"conv1": "bn1", "conv2": "bn2", "conv3": "bn3"}

# Keras variable -> torch parameter suffix.
KERAS_SUFFIX = {
    "kernel": "weight",
    "depthwise_kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
    "embeddings": "weight",
}


def keras_to_torch_name(keras_name: str) -> str:
    """``res3c_branch2a/kernel`` -> ``layer2.2.conv1.weight``; other Keras names: ``a/b/kernel`` -> ``a.b.weight``."""
    *scope, variable = keras_name.split("/")
    suffix = KERAS_SUFFIX.get(variable, variable)
    layer = scope[-1] if scope else ""
    match = _KERAS_BLOCK.match(layer)
    if match and len(scope) == 1:
        stage, block = int(match["stage"]) - 1, ord(match["block"]) - ord("a")
        if match["branch"] == "1":
            module = f"layer{stage}.0.downsample.{0 if match['kind'] == 'res' else 1}"
        else:
            conv = _BRANCH[match["branch"]]
            module = f"layer{stage}.{block}.{conv if match['kind'] == 'res' else _BN_OF[conv]}"
        return f"{module}.{suffix}"
    if scope == ["conv1"]:
        return f"conv1.{suffix}"
    if scope == ["bn_conv1"]:
        return f"bn1.{suffix}"
    if scope == ["fc1000"]:
        return f"fc.{suffix}"
    return ".".join(scope + [suffix])


def keras_to_torch_layout(keras_name: str, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The axis permutation that takes a Keras variable to torch layout (None: keep as is).

    Kernels keep their two channel axes last (conv HWIO, dense (in, out)); torch keeps them first
    and reversed (OIHW, (out, in)): axes ``(n-1, n-2, 0, ..., n-3)``, i.e. ``(3, 2, 0, 1)`` for a
    2-D convolution and ``(1, 0)`` for a dense layer.
    """
    variable = keras_name.rsplit("/", 1)[-1]
    n = len(shape)
    if variable == "kernel" and n >= 2:
        return (n - 1, n - 2, *range(n - 2))
    return None


def keras_to_torch_array(keras_name: str, array: np.ndarray) -> np.ndarray:
    """``array`` (Keras layout) in torch layout, as a new C-contiguous array."""
    variable = keras_name.rsplit("/", 1)[-1]
    if variable == "depthwise_kernel" and array.ndim == 4:  # (H, W, C, M) -> (C*M, 1, H, W)
        h, w, c, m = array.shape
        return np.ascontiguousarray(array.transpose(2, 3, 0, 1).reshape(c * m, 1, h, w))
    axes = keras_to_torch_layout(keras_name, array.shape)
    return np.ascontiguousarray(array.transpose(axes) if axes else array)


def keras_to_torch_shape(keras_name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    variable = keras_name.rsplit("/", 1)[-1]
    if variable == "depthwise_kernel" and len(shape) == 4:
        h, w, c, m = shape
        return (c * m, 1, h, w)
    axes = keras_to_torch_layout(keras_name, shape)
    return tuple(shape[a] for a in axes) if axes else tuple(shape)
