"""The Open Inference Protocol (KServe v2 / Triton) face of ``/clip``, with the binary-data extension.

One model, ``octav``: one input tensor (any name) in, five outputs out: ``clip``,
``theoretical_mse``, ``empirical_mse`` (FP64; shape [1], or one per channel/block),
``iterations`` (INT64 [1]) and ``converged`` (BOOL [1]).  The quantiser comes in the request's
``parameters``: ``bits``, ``grid``, ``axis``, ``block_size``, ``exclude_zeros``.

Binary data (Triton's extension): with an ``Inference-Header-Content-Length: N`` header the first
N bytes of the body are the JSON request and the rest the inputs' raw bytes, in order, each
sized by its ``parameters.binary_data_size``.  Outputs come back as binary when the request asks
(``parameters.binary_data_output`` or an output's ``parameters.binary_data``), in the same layout.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from octav_core import __version__
from octav_core.grids import DEFAULT_GRID, MAX_BITS, MIN_BITS

from .. import decoding
from ..compute import Quantiser, clip_payload, engine_errors
from ..dependencies import DEFAULT_BITS, GateDep, SettingsDep
from ..errors import bad_input, from_validation
from ..limits import body_kind, declared_length, read_body
from ..schemas import GridName, error_responses

router = APIRouter(prefix="/v2", tags=["inference (Open Inference Protocol v2)"])

MODEL = "octav"
MODEL_VERSION = "1"
HEADER_LENGTH = "inference-header-content-length"
# output name -> (datatype, numpy wire dtype, key of the /clip payload)
OUTPUTS = {
    "clip": ("FP64", np.dtype("<f8"), "clip"),
    "theoretical_mse": ("FP64", np.dtype("<f8"), "theoretical_mse"),
    "empirical_mse": ("FP64", np.dtype("<f8"), "empirical_mse"),
    "iterations": ("INT64", np.dtype("<i8"), "iterations"),
    "converged": ("BOOL", np.dtype("?"), "converged"),
}


class InferParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bits: int = Field(DEFAULT_BITS, ge=MIN_BITS, le=MAX_BITS)
    grid: GridName = DEFAULT_GRID
    axis: int | None = None
    block_size: int | None = Field(None, gt=0)
    exclude_zeros: bool = True
    binary_data_output: bool = False


class InferInputParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    binary_data_size: int | None = Field(None, ge=0)


class InferInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int]
    datatype: str = Field(..., description=f"one of {', '.join(decoding.DATATYPES)}")
    parameters: InferInputParameters | None = None
    data: list[Any] | None = Field(None, description="flat or nested row-major values (absent with binary data)")


class InferOutputParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    binary_data: bool = False


class InferRequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., description=f"one of {', '.join(OUTPUTS)}")
    parameters: InferOutputParameters | None = None


class InferRequest(BaseModel):
    """An Open Inference Protocol inference request for the ``octav`` model."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: InferParameters | None = None
    inputs: list[InferInput] = Field(..., min_length=1, max_length=1, description="exactly one tensor")
    outputs: list[InferRequestedOutput] | None = None


class InferOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


BODY_MODELS = [InferRequest]

REQUEST_BODY = {"requestBody": {
    "required": True,
    "description": "an inference request as JSON; or, with the Inference-Header-Content-Length header, "
                   "that JSON followed by the inputs' raw little-endian bytes",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}}


@router.get("", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata() -> dict:
    return {"name": "octav", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/health/live", response_class=Response, summary="Server live (empty 200)")
async def v2_live() -> Response:
    return Response(status_code=200)


@router.get("/health/ready", response_class=Response, summary="Server ready (empty 200)")
async def v2_ready() -> Response:
    return Response(status_code=200)


@router.get(f"/models/{MODEL}", response_model=ModelMetadata, summary="Model metadata")
async def model_metadata() -> dict:
    return {
        "name": MODEL, "versions": [MODEL_VERSION], "platform": "octav_core",
        "inputs": [{"name": "tensor", "datatype": "FP32", "shape": [-1]}],
        "outputs": [{"name": n, "datatype": dt, "shape": [-1]} for n, (dt, _, _) in OUTPUTS.items()],
    }


@router.get(f"/models/{MODEL}/ready", response_class=Response, summary="Model ready (empty 200)")
async def model_ready() -> Response:
    return Response(status_code=200)


@router.post(f"/models/{MODEL}/infer", response_model=InferResponse,
             responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "JSON; or, when binary outputs were asked for, the JSON response "
                                             "(Inference-Header-Content-Length bytes) followed by the raw outputs"},
                        **error_responses(408, 413, 415, 422, 503)},
             summary="OCTAV clip of one tensor (Open Inference Protocol)", openapi_extra=REQUEST_BODY)
async def infer(request: Request, settings: SettingsDep, gate: GateDep) -> Response:
    """``/clip`` under the Open Inference Protocol; errors are ``{"error": message, ...}`` as the protocol says."""
    async with gate.slot(declared_length(request)):
        header_length = request.headers.get(HEADER_LENGTH)
        if header_length is None:
            if request.headers.get("content-type"):
                body_kind(request, {"application/json": "json"})
            body = await read_body(request, settings.max_json_body_bytes, settings.body_timeout_s)
        else:
            body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
        payload, binary = await gate.run(_infer, body, header_length)
    if binary is None:
        return JSONResponse(payload)
    header = json.dumps(payload, separators=(",", ":")).encode()
    return Response(header + binary, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})


def _infer(body: bytearray, header_length: str | None) -> tuple[dict, bytes | None]:
    split = len(body)
    if header_length is not None:
        if not header_length.isascii() or not header_length.isdigit() or int(header_length) > len(body):
            raise bad_input(f"Inference-Header-Content-Length must be an integer in 0..{len(body)} "
                            f"(the body's length), got {header_length!r}")
        split = int(header_length)
    try:
        obj = json.loads(body[:split])
    except (ValueError, RecursionError) as exc:
        raise bad_input(f"malformed JSON inference request: {exc}") from None
    try:
        request = InferRequest.model_validate(obj)
    except ValidationError as exc:
        raise from_validation(exc) from None
    params = request.parameters or InferParameters()
    x = _read_input(request.inputs[0], body, split)
    result = clip_payload(x, Quantiser(params.bits, params.grid, params.exclude_zeros), params.axis, params.block_size)
    return _outputs(request, params, result)


def _read_input(spec: InferInput, body: bytearray, offset: int) -> np.ndarray:
    size = spec.parameters.binary_data_size if spec.parameters else None
    with engine_errors():
        if size is None:
            if offset != len(body):
                raise bad_input(f"the body has {len(body) - offset} bytes of binary data but input {spec.name!r} "
                                "has no parameters.binary_data_size")
            if spec.data is None:
                raise bad_input(f"input {spec.name!r} has neither data nor parameters.binary_data_size")
            return decoding.from_json_data(spec.data, spec.shape, spec.datatype, what=f"input {spec.name!r}")
        if spec.data is not None:
            raise bad_input(f"input {spec.name!r} has both data and parameters.binary_data_size; give one")
        if size != len(body) - offset:
            raise bad_input(f"input {spec.name!r} declares binary_data_size {size} but the body holds "
                            f"{len(body) - offset} bytes after the {offset}-byte JSON header")
        dt = decoding.parse_datatype(spec.datatype)
        shape = decoding.parse_shape(spec.shape, f"input {spec.name!r} shape")
        return decoding.from_bytes(body, shape, dt, offset=offset, length=size, what=f"input {spec.name!r}")


def _outputs(request: InferRequest, params: InferParameters, result: dict) -> tuple[dict, bytes | None]:
    wanted = request.outputs or [InferRequestedOutput(name=n) for n in OUTPUTS]
    unknown = [o.name for o in wanted if o.name not in OUTPUTS]
    if unknown:
        raise bad_input(f"unknown output(s) {', '.join(map(repr, unknown))}; the octav model has {', '.join(OUTPUTS)}")
    outputs, chunks = [], []
    for o in wanted:
        datatype, wire, key = OUTPUTS[o.name]
        value = np.asarray(result[key], dtype=wire)
        shape = list(value.shape) or [1]
        entry: dict[str, Any] = {"name": o.name, "datatype": datatype, "shape": shape}
        if params.binary_data_output or (o.parameters is not None and o.parameters.binary_data):
            raw = value.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = value.reshape(-1).tolist()
        outputs.append(entry)
    payload = {"model_name": MODEL, "model_version": MODEL_VERSION, "outputs": outputs}
    if request.id is not None:
        payload["id"] = request.id
    return payload, (b"".join(chunks) if chunks else None)
