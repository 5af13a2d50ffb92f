"""Tensors from request bodies: Open Inference Protocol JSON, raw bytes, ``.npy`` and safetensors.

Pure functions from bytes or parsed JSON to a numpy array; every problem raises
:class:`DecodeError` (a ``ValueError``) with a message that names it.  Binary data is viewed in
place (``np.frombuffer``), never copied, and only after its length has been checked against the
declared shape, so a lying header cannot make the service allocate.  Nothing is unpickled.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_NDIM = 32
NPY_MAGIC = b"\x93NUMPY"
NPY_MAX_HEADER = 10_000  # numpy's own default limit for .npy headers
SAFETENSORS_MAX_HEADER = 100 << 20  # the safetensors library's limit


class DecodeError(ValueError):
    """The body does not hold a usable tensor; the message says why."""


@dataclass(frozen=True)
class DataType:
    """A tensor datatype on the wire: its Open Inference Protocol name and its byte layout."""

    name: str  # Open Inference Protocol (v2) name
    wire: np.dtype  # little-endian layout of one element in a binary body
    safetensors: str  # the safetensors header's name for it
    numpy: np.dtype  # what the engine receives

    @property
    def itemsize(self) -> int:
        return self.wire.itemsize


#: The datatypes the service accepts.  BF16 has no numpy dtype: it is widened exactly to float32.
DATATYPES: dict[str, DataType] = {
    dt.name: dt
    for dt in (
        DataType("FP16", np.dtype("<f2"), "F16", np.dtype(np.float16)),
        DataType("BF16", np.dtype("<u2"), "BF16", np.dtype(np.float32)),
        DataType("FP32", np.dtype("<f4"), "F32", np.dtype(np.float32)),
        DataType("FP64", np.dtype("<f8"), "F64", np.dtype(np.float64)),
    )
}
SAFETENSORS_DTYPES = {dt.safetensors: dt for dt in DATATYPES.values()}


def parse_datatype(name: Any) -> DataType:
    """Look up an Open Inference Protocol datatype name (case-insensitive)."""
    dt = DATATYPES.get(name.upper()) if isinstance(name, str) else None
    if dt is None:
        raise DecodeError(f"unknown or unsupported datatype {name!r}; supported: {', '.join(DATATYPES)}")
    return dt


def parse_shape(shape: Any, what: str = "shape") -> tuple[int, ...]:
    """A list of non-negative integers (at most 32 of them) as a tuple."""
    if not isinstance(shape, (list, tuple)):
        raise DecodeError(f"{what} must be a list of non-negative integers, got {shape!r}")
    if len(shape) > MAX_NDIM:
        raise DecodeError(f"{what} has {len(shape)} dimensions; at most {MAX_NDIM} are supported")
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise DecodeError(f"{what} must be a list of non-negative integers, got {list(shape)!r}")
    return tuple(shape)


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def from_bytes(buf: bytes | bytearray | memoryview, shape: tuple[int, ...], datatype: DataType,
               offset: int = 0, length: int | None = None, what: str = "body") -> np.ndarray:
    """View ``length`` bytes of ``buf`` from ``offset`` as a little-endian row-major tensor."""
    length = len(buf) - offset if length is None else length
    count = numel(shape)
    need = count * datatype.itemsize
    if length != need:
        raise DecodeError(
            f"{what} has {length} bytes but shape {list(shape)} of {datatype.name} "
            f"({datatype.itemsize} bytes each) needs {need}")
    raw = np.frombuffer(buf, dtype=datatype.wire, count=count, offset=offset)
    return _to_engine(raw, datatype).reshape(shape)


def _to_engine(raw: np.ndarray, datatype: DataType) -> np.ndarray:
    if datatype.name == "BF16":  # the top half of a float32: widening is exact
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw if raw.dtype.isnative else raw.astype(datatype.numpy)


def from_json_data(data: Any, shape: Any, datatype: Any, what: str = "tensor") -> np.ndarray:
    """An Open Inference Protocol tensor's ``data``: flat or nested row-major numbers."""
    dt, shape = parse_datatype(datatype), parse_shape(shape, f"{what}.shape")
    if not isinstance(data, list):
        raise DecodeError(f"{what}.data must be a flat or nested list of numbers, got {type(data).__name__}")
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise DecodeError(f"{what}.data is not a rectangular list of numbers ({exc})") from None
    kind = arr.dtype.kind
    if kind == "O":  # integers too large for int64, or things that are not numbers
        if not all(type(v) in (int, float) for v in arr.flat):
            raise DecodeError(f"{what}.data must hold numbers only (no null, strings, objects or ragged lists)")
    elif kind == "b":
        raise DecodeError(f"{what}.data holds booleans; {dt.name} needs numbers")
    elif kind not in "iuf":
        raise DecodeError(f"{what}.data must hold numbers only, got {arr.dtype.name} values")
    if arr.size != numel(shape):
        raise DecodeError(f"{what}.data holds {arr.size} values but {what}.shape {list(shape)} needs {numel(shape)}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow shows up as Inf, reported by the engine
        values = arr.astype(np.float64).astype(dt.numpy) if kind == "O" else arr.astype(dt.numpy)
    if dt.name == "BF16":
        values = _round_to_bf16(values)
    return values.reshape(shape)


def _round_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (ties to even), kept as float32."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    finite = np.isfinite(x)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) & np.uint32(0xFFFF0000)).astype(np.uint32)
    return np.where(finite, rounded.view(np.float32), x)


def from_npy(buf: bytes | bytearray) -> np.ndarray:
    """A ``.npy`` file (format 1.0 or 2.0) of float16/float32/float64, read without pickle."""
    from numpy.lib import format as npy

    if bytes(buf[:6]) != NPY_MAGIC:
        raise DecodeError("body is not a .npy file: it does not start with the \\x93NUMPY magic")
    head = io.BytesIO(bytes(buf[: 12 + NPY_MAX_HEADER]))
    try:
        version = npy.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(head, max_header_size=NPY_MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = npy.read_array_header_2_0(head, max_header_size=NPY_MAX_HEADER)
        else:
            raise DecodeError(f".npy format version {version[0]}.{version[1]} is not supported (1.0 and 2.0 are)")
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to parse untrusted bytes is a malformed file
        raise DecodeError(f"malformed .npy header: {exc}") from None
    if dtype.hasobject or dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise DecodeError(f".npy dtype {dtype.str!r} is not supported; send float16, float32 or float64 "
                          "(bfloat16 as application/octet-stream with datatype=BF16)")
    shape = parse_shape(list(shape), ".npy shape")
    offset = head.tell()
    count = numel(shape)
    need = count * dtype.itemsize
    if len(buf) - offset != need:
        raise DecodeError(f".npy data has {len(buf) - offset} bytes but its header's shape {list(shape)} "
                          f"of {dtype.name} needs {need}")
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    arr = arr.reshape(shape, order="F" if fortran else "C")
    return arr if dtype.isnative else arr.astype(dtype.newbyteorder("="))


def from_safetensors(buf: bytes | bytearray, name: str | None = None) -> np.ndarray:
    """One tensor of a safetensors blob (the only one, or ``name``)."""
    size = len(buf)
    if size < 8:
        raise DecodeError(f"body is not a safetensors blob: {size} bytes, shorter than its 8-byte header length")
    header_len = int.from_bytes(bytes(buf[:8]), "little")
    if header_len > min(size - 8, SAFETENSORS_MAX_HEADER):
        raise DecodeError(f"malformed safetensors blob: header length {header_len} exceeds the body ({size} bytes)")
    try:
        header = json.loads(bytes(buf[8:8 + header_len]))
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"malformed safetensors header (not JSON): {exc}") from None
    if not isinstance(header, dict):
        raise DecodeError("malformed safetensors header: not a JSON object")
    header.pop("__metadata__", None)
    names = sorted(header)
    if not names:
        raise DecodeError("the safetensors blob holds no tensor")
    if name is None:
        if len(names) != 1:
            raise DecodeError(f"the safetensors blob holds {len(names)} tensors; pick one with ?tensor=NAME "
                              f"({', '.join(names[:20])})")
        name = names[0]
    elif name not in header:
        raise DecodeError(f"the safetensors blob has no tensor {name!r}; it holds: {', '.join(names[:20])}")
    info = header[name]
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise DecodeError(f"malformed safetensors header entry for {name!r}: needs dtype, shape and data_offsets")
    dt = SAFETENSORS_DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
    if dt is None:
        raise DecodeError(f"safetensors dtype {info['dtype']!r} of {name!r} is not supported; "
                          f"supported: {', '.join(SAFETENSORS_DTYPES)}")
    shape = parse_shape(info["shape"], f"safetensors shape of {name!r}")
    offsets = info["data_offsets"]
    data_len = size - 8 - header_len
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_len):
        raise DecodeError(f"malformed safetensors data_offsets {offsets!r} for {name!r} "
                          f"(the data section has {data_len} bytes)")
    return from_bytes(buf, shape, dt, offset=8 + header_len + offsets[0], length=offsets[1] - offsets[0],
                      what=f"safetensors tensor {name!r}")
