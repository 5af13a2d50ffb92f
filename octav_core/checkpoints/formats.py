"""Local checkpoint files: safetensors (single or sharded), torch state dicts, ``.npz``.

Nothing is ever unpickled: ``.pth``/``.pt`` go through ``torch.load(weights_only=True)`` only,
``.npz`` through ``numpy.load(allow_pickle=False)``, and safetensors is parsed from its JSON
header and memory-mapped, one tensor at a time.
"""

from __future__ import annotations

import json
import mmap
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import CheckpointError, TensorInfo

# safetensors dtype -> (numpy storage dtype, floating).  BF16 and F8 are decoded below.
SAFETENSORS_DTYPES = {
    "F64": (np.dtype("<f8"), True),
    "F32": (np.dtype("<f4"), True),
    "F16": (np.dtype("<f2"), True),
    "BF16": (np.dtype("<u2"), True),
    "F8_E4M3": (np.dtype("u1"), True),
    "F8_E5M2": (np.dtype("u1"), True),
    "I64": (np.dtype("<i8"), False),
    "I32": (np.dtype("<i4"), False),
    "I16": (np.dtype("<i2"), False),
    "I8": (np.dtype("i1"), False),
    "U64": (np.dtype("<u8"), False),
    "U32": (np.dtype("<u4"), False),
    "U16": (np.dtype("<u2"), False),
    "U8": (np.dtype("u1"), False),
    "BOOL": (np.dtype("?"), False),
}
_MAX_HEADER = 100 * 1024 * 1024


def _to_float32(raw: np.ndarray, dtype_name: str) -> np.ndarray:
    """A new float32 array from stored values (``raw`` may be a view into a memory map)."""
    if dtype_name == "BF16":  # the top 16 bits of a float32
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if dtype_name in ("F8_E4M3", "F8_E5M2"):
        import torch

        torch_dtype = torch.float8_e4m3fn if dtype_name == "F8_E4M3" else torch.float8_e5m2
        return torch.from_numpy(raw.copy()).view(torch_dtype).float().numpy()
    return raw.astype(np.float32, copy=True)


@dataclass(frozen=True)
class _Entry:
    file: Path
    dtype_name: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    nbytes: int


def _safetensors_header(path: Path) -> list[tuple[str, _Entry]]:
    """The tensors of one safetensors file in file order (by data offset)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: too short to be a safetensors file ({size} bytes)")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(_MAX_HEADER, size - 8):
            raise CheckpointError(f"{path}: not a safetensors file (header length {header_len}, file {size} bytes)")
        try:
            header = json.loads(handle.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: not a safetensors file (bad JSON header: {exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not a JSON object)")
    header.pop("__metadata__", None)
    data_start, data_len = 8 + header_len, size - 8 - header_len
    entries = []
    for name, spec in header.items():
        try:
            dtype_name, shape, (begin, end) = spec["dtype"], tuple(int(d) for d in spec["shape"]), spec["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: bad header entry for {name!r}: {spec!r}") from exc
        if dtype_name not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unknown dtype {dtype_name!r}")
        itemsize = SAFETENSORS_DTYPES[dtype_name][0].itemsize
        if not 0 <= begin <= end <= data_len or end - begin != int(np.prod(shape, dtype=np.int64)) * itemsize:
            raise CheckpointError(f"{path}: tensor {name!r} has byte range [{begin}, {end}) that does not fit "
                                  f"its shape {shape} and dtype {dtype_name} in {data_len} data bytes (truncated?)")
        entries.append((name, _Entry(path, dtype_name, shape, data_start + begin, end - begin)))
    entries.sort(key=lambda item: item[1].start)
    return entries


class SafetensorsSource:
    """One ``.safetensors`` file, or the shards named by a ``*.safetensors.index.json``."""

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        if path.name.endswith(".safetensors.index.json"):
            try:
                weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CheckpointError(f"{path}: not a safetensors index (JSON with a weight_map): {exc}") from exc
            shards = [path.parent / name for name in sorted(set(weight_map.values()))]
            for shard in shards:
                if not shard.is_file():
                    raise CheckpointError(f"{shard}: shard named in {path} is missing")
            self.files = (path, *shards)
        else:
            weight_map, shards = None, [path]
            self.files = (path,)
        self._entries: dict[str, _Entry] = {}
        for shard in shards:
            for name, entry in _safetensors_header(shard):
                if name in self._entries:
                    raise CheckpointError(f"{shard}: tensor {name!r} is also in {self._entries[name].file}")
                self._entries[name] = entry
        if weight_map is not None:
            for name, shard_name in weight_map.items():
                entry = self._entries.get(name)
                if entry is None or entry.file.name != shard_name:
                    raise CheckpointError(f"{path}: maps {name!r} to {shard_name}, which does not hold it")

    def infos(self) -> list[TensorInfo]:
        return [TensorInfo(name, e.shape, SAFETENSORS_DTYPES[e.dtype_name][1]) for name, e in self._entries.items()]

    def read(self, name: str) -> np.ndarray:
        e = self._entries[name]
        storage = SAFETENSORS_DTYPES[e.dtype_name][0]
        if e.nbytes == 0:
            return np.zeros(e.shape, np.float32)
        with open(e.file, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            if mapped.size() < e.start + e.nbytes:
                raise CheckpointError(f"{e.file}: shorter than when the checkpoint was opened")
            raw = np.frombuffer(mapped, dtype=storage, count=e.nbytes // storage.itemsize, offset=e.start)
            out = _to_float32(raw.reshape(e.shape), e.dtype_name)
            del raw  # release the view before the map closes
        return out


# Keys under which training scripts nest the state dict.
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")


class TorchSource:
    """A torch state dict (``.pth``/``.pt``), loaded with ``weights_only=True`` and memory-mapped."""

    def __init__(self, path: str | os.PathLike, state: dict | None = None):
        self.path = Path(path)
        self.files = (self.path,)
        if state is None:
            state = _torch_load(self.path)
        self._state = _state_dict_of(self.path, state)

    def infos(self) -> list[TensorInfo]:
        return [TensorInfo(name, tuple(t.shape), bool(t.is_floating_point())) for name, t in self._state.items()]

    def read(self, name: str) -> np.ndarray:
        import torch

        return self._state[name].detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().copy()


def _torch_load(path: Path) -> object:
    import torch

    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: refused: it holds objects other than tensors and plain containers, and "
                              f"only torch.load(weights_only=True) is allowed ({first})") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot be read as a torch state dict ({exc})") from exc


def _state_dict_of(path: Path, obj: object) -> dict:
    import torch

    def tensors(d: dict) -> dict:
        return {str(k): v for k, v in d.items() if isinstance(v, torch.Tensor)}

    if isinstance(obj, dict):
        found = tensors(obj)
        if found:
            return found
        for key in _NESTED_STATE_KEYS:
            if isinstance(obj.get(key), dict) and tensors(obj[key]):
                return tensors(obj[key])
    raise CheckpointError(f"{path}: holds no state dict (a dict of tensors, possibly under one of "
                          f"{', '.join(_NESTED_STATE_KEYS)}); got {type(obj).__name__}")


class NpzSource:
    """A ``.npz`` archive (``numpy.savez``); shapes come from the member headers, data on demand."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.files = (self.path,)
        self._infos: list[TensorInfo] = []
        try:
            with zipfile.ZipFile(self.path) as archive:
                for member in archive.namelist():
                    with archive.open(member) as handle:
                        version = np.lib.format.read_magic(handle)
                        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0)
                        shape, _, dtype = read_header(handle)
                    name = member[:-4] if member.endswith(".npy") else member
                    self._infos.append(TensorInfo(name, tuple(shape), np.issubdtype(dtype, np.floating)))
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise CheckpointError(f"{self.path}: not a readable .npz archive ({exc})") from exc

    def infos(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as archive:
            return np.array(archive[name], dtype=np.float32, order="C")
