"""Real checkpoints and the one layer catalog shared by the CLI, the workflow and the service.

>>> from octav_core.checkpoints import open_checkpoint
>>> ckpt = open_checkpoint("resnet50-caffe")        # doctest: +SKIP
>>> ckpt.layers[16]                                  # doctest: +SKIP
Layer(index=17, name='layer2.2.conv1.weight', shape=(128, 512, 1, 1), numel=65536)

Named specs are listed in ``KNOWN_SPECS`` (``known_specs()`` for a cheap JSON-ready listing);
any local ``.safetensors``, ``*.safetensors.index.json``, ``.pth``/``.pt``, ``.npz`` or TF.js
``model.json`` opens by path.
"""

from .base import (Checkpoint, CheckpointError, FetchError, IntegrityError, Layer, UnknownLayerError,
                   UnknownSpecError, number_layers)
from .cache import cache_dir
from .resnet50 import RESNET50_LAYER_NAMES, RESNET50_TABLE
from .specs import DEFAULT_SPEC, KNOWN_SPECS, LOCAL_FORMATS, known_specs, open_checkpoint, results_id

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "FetchError",
    "IntegrityError",
    "Layer",
    "UnknownLayerError",
    "UnknownSpecError",
    "number_layers",
    "cache_dir",
    "RESNET50_LAYER_NAMES",
    "RESNET50_TABLE",
    "DEFAULT_SPEC",
    "KNOWN_SPECS",
    "LOCAL_FORMATS",
    "known_specs",
    "open_checkpoint",
    "results_id",
]
