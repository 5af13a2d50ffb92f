"""``POST /clip`` and ``POST /curve``: a tensor in, the OCTAV clip or the MSE curve out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from ..compute import clip_payload, curve_payload, merge_field, merge_quantiser, read_tensor
from ..dependencies import GateDep, QuantiserQueryDep, SettingsDep, WireQueryDep, check_query_names
from ..limits import body_kind, declared_length, read_body
from ..openapi import tensor_request_body
from ..schemas import ClipIn, ClipOut, CurveIn, CurveOut, error_responses
from ..settings import Settings

router = APIRouter(tags=["tensors"])

ERRORS = error_responses(408, 413, 415, 422, 503)
COMMON_QUERY = frozenset({"bits", "grid", "exclude_zeros", "shape", "datatype", "tensor"})
CLIP_QUERY = COMMON_QUERY | {"axis", "block_size"}
CURVE_QUERY = COMMON_QUERY | {"num", "clips"}


def body_limit(kind: str, settings: Settings) -> int:
    return settings.max_json_body_bytes if kind == "json" else settings.max_body_bytes


async def run_on_tensor(request: Request, settings: Settings, gate, wire, schema, compute) -> JSONResponse:
    """Admit the request, read its body within the limits, decode it and run ``compute(envelope, x)``
    on the worker pool (the one path of every tensor route)."""
    async with gate.slot(declared_length(request)):
        kind = body_kind(request)
        body = await read_body(request, body_limit(kind, settings), settings.body_timeout_s)

        def work():
            envelope, x = read_tensor(kind, body, wire, schema)
            return compute(envelope, x)

        return JSONResponse(await gate.run(work))


@router.post(
    "/clip", response_model=ClipOut, responses=ERRORS,
    summary="Optimal clipping scalar of a tensor",
    openapi_extra=tensor_request_body(ClipIn, "the tensor (and, for JSON, the quantiser fields)"),
)
async def post_clip(
    request: Request, settings: SettingsDep, gate: GateDep, quantiser: QuantiserQueryDep, wire: WireQueryDep,
    axis: Annotated[int | None, Query(description="one clip per slice along this axis")] = None,
    block_size: Annotated[int | None, Query(gt=0, description="one clip per group along the last axis")] = None,
) -> JSONResponse:
    """OCTAV's clip ``s*`` minimising ``J(s) = (c s**2 N_in(s) + sum_{|x|>s} (|x|-s)**2) / N``.

    ``clip``, ``theoretical_mse`` and ``empirical_mse`` are lists when ``axis`` or ``block_size`` is given.
    """
    check_query_names(request, CLIP_QUERY)

    def compute(envelope, x):
        return clip_payload(x, merge_quantiser(quantiser, envelope), merge_field("axis", axis, envelope),
                            merge_field("block_size", block_size, envelope))

    return await run_on_tensor(request, settings, gate, wire, ClipIn, compute)


@router.post(
    "/curve", response_model=CurveOut, responses=ERRORS,
    summary="Empirical and theoretical MSE of a tensor against the clip",
    openapi_extra=tensor_request_body(CurveIn, "the tensor (and, for JSON, the quantiser and curve fields)"),
)
async def post_curve(
    request: Request, settings: SettingsDep, gate: GateDep, quantiser: QuantiserQueryDep, wire: WireQueryDep,
    num: Annotated[int | None, Query(gt=0, description="clips evenly spaced over (0, max|x|] (default 200)")] = None,
    clips: Annotated[list[float] | None, Query(description="explicit clips (repeat the parameter)")] = None,
) -> JSONResponse:
    """``mean((x - Q(x))**2)`` and ``J(s)`` at each clip, plus the OCTAV optimum (whole tensor)."""
    check_query_names(request, CURVE_QUERY, " (a curve is per tensor: no axis or block_size)")

    def compute(envelope, x):
        return curve_payload(x, merge_quantiser(quantiser, envelope), merge_field("num", num, envelope),
                             merge_field("clips", clips, envelope), settings.max_curve_points)

    return await run_on_tensor(request, settings, gate, wire, CurveIn, compute)

