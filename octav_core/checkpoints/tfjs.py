"""TF.js layers models (``model.json`` + binary shards), read without TensorFlow.

The ``weightsManifest`` is a list of groups; each group's weights lie back to back, in manifest
order, across the concatenation of the group's shard files (``paths``), little-endian.  A weight
takes ``prod(shape) * itemsize`` bytes of its stored dtype (the quantised dtype if quantised).
Keras names and layouts become torch ones (``resnet50.keras_to_torch_*``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import CheckpointError, IntegrityError, TensorInfo, sha256_file
from .resnet50 import keras_to_torch_array, keras_to_torch_name, keras_to_torch_shape

# manifest dtype -> (numpy dtype, floating)
TFJS_DTYPES = {
    "float32": (np.dtype("<f4"), True),
    "float16": (np.dtype("<f2"), True),
    "int32": (np.dtype("<i4"), False),
    "bool": (np.dtype("?"), False),
}
# quantised storage dtypes (``quantization.dtype``)
TFJS_QUANTIZED = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "float16": np.dtype("<f2")}


@dataclass(frozen=True)
class _Weight:
    keras_name: str
    shape: tuple[int, ...]  # Keras layout
    dtype: np.dtype  # as stored
    floating: bool
    group: int
    offset: int  # bytes into the group's concatenated shards
    nbytes: int
    quantization: dict | None


class TfjsSource:
    """Tensors of a TF.js ``model.json``; shard hashes are checked against ``expected_sha256`` if given."""

    def __init__(self, model_json: str | os.PathLike, expected_sha256: dict[str, str] | None = None):
        self.model_json = Path(model_json)
        root = self.model_json.parent
        if expected_sha256 is not None:
            _check_hash(self.model_json, expected_sha256.get(self.model_json.name))
        try:
            manifest = json.loads(self.model_json.read_text(encoding="utf-8"))["weightsManifest"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{self.model_json}: not a TF.js model.json with a weightsManifest ({exc})") from exc
        self._groups: list[list[tuple[Path, int]]] = []  # per group: [(shard path, size)]
        self._weights: dict[str, _Weight] = {}
        for g, group in enumerate(manifest):
            shards = [root / p for p in group["paths"]]
            sizes = []
            for shard in shards:
                if not shard.is_file():
                    raise CheckpointError(f"{shard}: shard listed in {self.model_json} is missing")
                if expected_sha256 is not None:
                    _check_hash(shard, expected_sha256.get(shard.name))
                sizes.append(shard.stat().st_size)
            self._groups.append(list(zip(shards, sizes)))
            offset = 0
            for entry in group["weights"]:
                weight = _parse_weight(self.model_json, entry, g, offset)
                torch_name = keras_to_torch_name(weight.keras_name)
                if torch_name in self._weights:
                    raise CheckpointError(f"{self.model_json}: two weights map to {torch_name!r}")
                self._weights[torch_name] = weight
                offset += weight.nbytes
            if offset != sum(sizes):
                listing = ", ".join(f"{p.name} ({s} bytes)" for p, s in zip(shards, sizes))
                raise IntegrityError(f"{self.model_json}: weight group {g + 1} needs {offset} bytes but its shards "
                                     f"hold {sum(sizes)}: truncated or wrong shard files: {listing}")
        self.files = (self.model_json, *(p for group in self._groups for p, _ in group))

    def infos(self) -> list[TensorInfo]:
        return [TensorInfo(name, keras_to_torch_shape(w.keras_name, w.shape), w.floating, (w.keras_name,))
                for name, w in self._weights.items()]

    def read(self, name: str) -> np.ndarray:
        w = self._weights[name]
        raw = np.frombuffer(self._read_bytes(w.group, w.offset, w.nbytes), dtype=w.dtype).reshape(w.shape)
        if w.quantization is not None:
            q = w.quantization
            if q["dtype"] == "float16":
                raw = raw.astype(np.float32)
            else:  # affine: value = q * scale + min
                raw = raw.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
        return keras_to_torch_array(w.keras_name, raw.astype(np.float32, copy=False))

    def _read_bytes(self, group: int, offset: int, nbytes: int) -> bytes:
        pieces = []
        for path, size in self._groups[group]:
            if nbytes == 0:
                break
            if offset >= size:
                offset -= size
                continue
            take = min(size - offset, nbytes)
            with open(path, "rb") as handle:
                pieces.append(os.pread(handle.fileno(), take, offset))
            if len(pieces[-1]) != take:
                raise IntegrityError(f"{path}: shorter than when the checkpoint was opened")
            nbytes -= take
            offset = 0
        return b"".join(pieces)


def _parse_weight(model_json: Path, entry: dict, group: int, offset: int) -> _Weight:
    name, dtype_name = entry.get("name"), entry.get("dtype", "float32")
    shape = tuple(int(d) for d in entry.get("shape", ()))
    if dtype_name not in TFJS_DTYPES:
        raise CheckpointError(f"{model_json}: weight {name!r} has dtype {dtype_name!r}; "
                              f"supported: {', '.join(TFJS_DTYPES)}")
    dtype, floating = TFJS_DTYPES[dtype_name]
    quantization = entry.get("quantization")
    if quantization is not None:
        qname = quantization.get("dtype")
        if qname not in TFJS_QUANTIZED or not floating:
            raise CheckpointError(f"{model_json}: weight {name!r} is quantised as {qname!r}; "
                                  f"supported: {', '.join(TFJS_QUANTIZED)} of a float weight")
        dtype = TFJS_QUANTIZED[qname]
    numel = int(np.prod(shape, dtype=np.int64))
    return _Weight(name, shape, dtype, floating, group, offset, numel * dtype.itemsize, quantization)


def _check_hash(path: Path, expected: str | None) -> None:
    if expected is None:
        raise IntegrityError(f"{path}: not one of the files this checkpoint is pinned to")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(f"{path}: sha256 {actual} but it must be {expected} (truncated or tampered?)")
