"""The layer catalog: ``Layer``, ``Checkpoint`` and the one rule that numbers layers.

A checkpoint format is a *source*: it lists its tensors (name, shape in torch layout, whether
floating) and reads one of them as float32.  ``Checkpoint`` turns a source into the numbered
catalog that the CLI, the workflow and the service share.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np

from .resnet50 import RESNET50_LAYER_NAMES


class CheckpointError(ValueError):
    """A checkpoint cannot be found, fetched, trusted or read; the message says which and why."""


class UnknownSpecError(CheckpointError):
    """A spec that is neither a known checkpoint name nor an existing file."""


class UnknownLayerError(CheckpointError, LookupError):
    """A layer index or name that the checkpoint does not have."""


class IntegrityError(CheckpointError):
    """A file whose size or sha256 is not what it must be (truncated, tampered, wrong file)."""


class FetchError(CheckpointError):
    """A checkpoint that is not cached and cannot be fetched here (no npm, no network, offline)."""


@dataclass(frozen=True, slots=True)
class Layer:
    """One entry of the catalog: ``#index`` (1-based), torch-style ``name``, torch-layout ``shape``."""

    index: int
    name: str
    shape: tuple[int, ...]
    numel: int

    def as_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "shape": list(self.shape), "numel": self.numel}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """What a source knows about one stored tensor before reading it."""

    name: str  # torch-style name
    shape: tuple[int, ...]  # torch layout (after any transpose the source applies)
    floating: bool
    aliases: tuple[str, ...] = ()  # other names that address it (e.g. the Keras name)


class TensorSource(Protocol):
    """One checkpoint format.  ``read`` returns a new float32 array in torch layout."""

    files: tuple[Path, ...]

    def infos(self) -> list[TensorInfo]: ...

    def read(self, name: str) -> np.ndarray: ...


def number_layers(infos: Sequence[TensorInfo]) -> list[Layer]:
    """The catalog: floating tensors with >= 2 dimensions, numbered from 1.

    ResNet-50 (exactly the 54 weight names of torchvision's model) follows the seed's table
    (``resnet50.RESNET50_LAYER_NAMES``: #1 conv1, #2..#49 main path, #50 fc, #51..#54 shortcut
    projections); any other checkpoint keeps its file order.
    """
    candidates = [t for t in infos if t.floating and len(t.shape) >= 2]
    by_name = {t.name: t for t in candidates}
    if len(by_name) == len(RESNET50_LAYER_NAMES) and set(by_name) == set(RESNET50_LAYER_NAMES):
        candidates = [by_name[n] for n in RESNET50_LAYER_NAMES]
    return [Layer(i, t.name, tuple(int(d) for d in t.shape), int(np.prod(t.shape, dtype=np.int64)))
            for i, t in enumerate(candidates, start=1)]


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_files(files: Sequence[Path]) -> str:
    """sha256 of one file; for several, sha256 of their ``sha256sum``-style listing (``<hex>  <name>\\n``)."""
    if len(files) == 1:
        return sha256_file(files[0])
    listing = "".join(f"{sha256_file(f)}  {Path(f).name}\n" for f in files)
    return hashlib.sha256(listing.encode()).hexdigest()


class Checkpoint:
    """A numbered catalog of a checkpoint's layers, read one tensor at a time.

    Attributes:
        name: the spec it was opened with (``resnet50-caffe``, or the path).
        layers: ``[Layer(index, name, shape, numel), ...]`` in catalog order (``layers[i].index == i + 1``).
        files: the files its tensors come from.

    Example:
        >>> ckpt = open_checkpoint("resnet50-caffe")            # doctest: +SKIP
        >>> ckpt.layer(17)                                       # doctest: +SKIP
        Layer(index=17, name='layer2.2.conv1.weight', shape=(128, 512, 1, 1), numel=65536)
        >>> ckpt.tensor("layer4.1.conv2.weight").shape           # doctest: +SKIP
        (512, 512, 3, 3)
    """

    def __init__(self, name: str, source: TensorSource, *, sha256: str | None = None, description: str = ""):
        self.name = name
        self.description = description
        self._source = source
        self.layers: list[Layer] = number_layers(source.infos())
        self._keys: dict[str, Layer] = {}
        infos = {t.name: t for t in source.infos()}
        for layer in self.layers:
            self._keys[layer.name] = layer
            for alias in infos[layer.name].aliases:
                self._keys.setdefault(alias, layer)
        self._sha256 = sha256
        self._lock = threading.Lock()

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(self._source.files)

    @property
    def sha256(self) -> str:
        """sha256 of the source file(s) (for a fetched checkpoint: of what was fetched and verified)."""
        with self._lock:
            if self._sha256 is None:
                self._sha256 = sha256_files(self.files)
            return self._sha256

    def layer(self, key: int | str) -> Layer:
        """The layer ``#key`` (1-based int, ``"17"`` or ``"#17"``) or named ``key`` (torch or source name)."""
        if isinstance(key, (bool, np.bool_)):
            raise UnknownLayerError(f"{self.name}: a layer is an index or a name, not {key!r}")
        if isinstance(key, str) and key not in self._keys:
            digits = key[1:] if key.startswith("#") else key
            if digits.isdigit():
                key = int(digits)
        if isinstance(key, (int, np.integer)):
            if 1 <= key <= len(self.layers):
                return self.layers[int(key) - 1]
            raise UnknownLayerError(f"{self.name}: no layer #{key}; layers are {self._valid_range()}")
        if isinstance(key, str):
            if key in self._keys:
                return self._keys[key]
            close = difflib.get_close_matches(key, list(self._keys), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UnknownLayerError(f"{self.name}: no layer named {key!r}{hint}; layers are {self._valid_range()}")
        raise UnknownLayerError(f"{self.name}: a layer is an index or a name, not {type(key).__name__} {key!r}")

    def tensor(self, key: int | str) -> np.ndarray:
        """The layer's weights: a new C-contiguous float32 array in the layout torch uses."""
        layer = self.layer(key)
        array = self._source.read(layer.name)
        if array.shape != layer.shape:  # a source bug, never a user error
            raise AssertionError(f"{self.name}: {layer.name} read as {array.shape}, catalog says {layer.shape}")
        return array

    def _valid_range(self) -> str:
        if not self.layers:
            return "none (no floating tensor with 2 or more dimensions)"
        first, last = self.layers[0], self.layers[-1]
        return (f"#1..#{len(self.layers)} or their names ({first.name} ... {last.name}; "
                f"list them with `octav layers {self.name}`)")

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __repr__(self) -> str:
        return f"Checkpoint({self.name!r}, {len(self.layers)} layers)"
