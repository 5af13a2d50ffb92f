"""Request content -> tensor -> ``octav_core`` -> JSON-ready dict.  Runs on worker threads.

Every engine ``ValueError``/``TypeError`` (NaN/Inf, empty tensor, bits, grid, axis, ...) becomes a
422 carrying the engine's own message; decoding problems do the same.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from octav_core import mse_curve, optimal_clip
from octav_core.grids import DEFAULT_GRID

from . import decoding
from .dependencies import DEFAULT_BITS, QuantiserQuery, WireQuery
from .errors import ApiError, bad_input, from_validation


@dataclass(frozen=True)
class Quantiser:
    bits: int
    grid: str
    exclude_zeros: bool


@contextmanager
def engine_errors():
    """Turn the engine's (and the decoders') input errors into 422s with their message."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by check_finite
            yield
    except ApiError:
        raise
    except (ValueError, TypeError) as exc:
        raise bad_input(str(exc)) from None


def merge_field(name: str, query_value: Any, body: BaseModel | None, default: Any = None) -> Any:
    """A JSON body's field, else the query parameter, else ``default``; the two may not disagree."""
    body_value = getattr(body, name, None)
    if query_value is not None and body_value is not None and query_value != body_value:
        raise bad_input(f"{name} is given twice with different values: {query_value!r} in the query, "
                        f"{body_value!r} in the body")
    return body_value if body_value is not None else query_value if query_value is not None else default


def merge_quantiser(query: QuantiserQuery, body: BaseModel | None) -> Quantiser:
    """The quantiser from a JSON body's fields, the query parameters and the defaults."""
    return Quantiser(bits=merge_field("bits", query.bits, body, DEFAULT_BITS),
                     grid=merge_field("grid", query.grid, body, DEFAULT_GRID),
                     exclude_zeros=merge_field("exclude_zeros", query.exclude_zeros, body, True))


def parse_json(body: bytes | bytearray, model: type[BaseModel]) -> tuple[BaseModel, np.ndarray]:
    """A JSON body ``{"tensor": {...}, ...}``: the validated envelope and the decoded tensor."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise bad_input(f"malformed JSON body: {exc}") from None
    if not isinstance(obj, dict):
        raise bad_input(f"the JSON body must be an object with a 'tensor' field, got {type(obj).__name__}")
    tensor = obj.get("tensor")
    data = None
    if isinstance(tensor, dict) and isinstance(tensor.get("data"), list):
        # The values are checked by the decoder with numpy; pydantic sees only the envelope.
        data, tensor["data"] = tensor["data"], []
    try:
        envelope = model.model_validate(obj)
    except ValidationError as exc:
        raise from_validation(exc) from None
    with engine_errors():
        x = decoding.from_json_data(data, envelope.tensor.shape, envelope.tensor.datatype)
    return envelope, x


def decode_binary(kind: str, body: bytes | bytearray, wire: WireQuery) -> np.ndarray:
    """An octet-stream, ``.npy`` or safetensors body."""
    if kind != "raw" and (wire.shape is not None or wire.datatype is not None):
        raise bad_input("the shape and datatype query parameters apply to application/octet-stream only; "
                        "a .npy or safetensors body carries its own")
    if kind != "safetensors" and wire.tensor is not None:
        raise bad_input("the tensor query parameter applies to application/vnd.safetensors only")
    with engine_errors():
        if kind == "raw":
            if wire.shape is None:
                raise bad_input("an application/octet-stream body needs ?shape=... (and ?datatype=, default FP32)")
            return decoding.from_bytes(body, wire.shape, decoding.parse_datatype(wire.datatype or "FP32"))
        if kind == "npy":
            return decoding.from_npy(body)
        return decoding.from_safetensors(body, wire.tensor)


def read_tensor(kind: str, body: bytes | bytearray, wire: WireQuery, model: type[BaseModel]):
    """``(json envelope or None, tensor)`` from a body of any accepted kind."""
    if kind == "json":
        if wire.shape is not None or wire.datatype is not None or wire.tensor is not None:
            raise bad_input("a JSON body carries its tensor's shape and datatype; drop the shape, datatype "
                            "and tensor query parameters")
        return parse_json(body, model)
    return None, decode_binary(kind, body, wire)


def plain(v: Any) -> Any:
    """numpy values -> floats and (nested) lists."""
    return v.tolist() if isinstance(v, np.ndarray) else v


def check_finite(payload: dict, x: np.ndarray) -> dict:
    """A result that overflowed float64 (huge FP64 inputs) is an input error, never invalid JSON."""
    def finite(v):
        if isinstance(v, float):
            return math.isfinite(v)
        if isinstance(v, list):
            return all(finite(i) for i in v)
        if isinstance(v, dict):
            return all(finite(i) for i in v.values())
        return True

    if not finite(payload):
        top = float(np.abs(x).max())
        raise bad_input(f"the tensor's magnitudes are too large (max |x| = {top:g}): its squared error "
                        "overflows float64")
    return payload


def clip_payload(x: np.ndarray, q: Quantiser, axis: int | None, block_size: int | None) -> dict:
    """``optimal_clip`` as the /clip response."""
    with engine_errors():
        res = optimal_clip(x, bits=q.bits, grid=q.grid, axis=axis, block_size=block_size,
                           exclude_zeros=q.exclude_zeros)
        out = res.as_dict() | {"shape": list(x.shape)}
    return check_finite(out, x)


def curve_payload(x: np.ndarray, q: Quantiser, num: int | None, clips: list[float] | None,
                  max_points: int) -> dict:
    """``mse_curve`` plus the OCTAV point, as the /curve response."""
    if num is not None and clips is not None:
        raise bad_input("give num or clips, not both")
    count = len(clips) if clips is not None else (num if num is not None else 200)
    if count > max_points:
        raise bad_input(f"a curve may have at most {max_points} points, asked for {count}")
    with engine_errors():
        if clips is not None and not clips:
            raise bad_input("clips is empty: give at least one clipping scalar")
        curve = mse_curve(x, bits=q.bits, grid=q.grid, clips=clips, num=count, exclude_zeros=q.exclude_zeros)
        res = optimal_clip(x, bits=q.bits, grid=q.grid, exclude_zeros=q.exclude_zeros)
        octav = res.as_dict()
        out = curve.as_dict() | {
            "bits": q.bits, "grid": q.grid, "numel": octav["numel"], "shape": list(x.shape),
            "octav": {k: octav[k] for k in ("clip", "iterations", "converged", "theoretical_mse", "empirical_mse")},
        }
    return check_finite(out, x)
