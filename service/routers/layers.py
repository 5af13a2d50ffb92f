"""``/layers``: the catalog of a checkpoint, each layer's analysis, and its MSE curves."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from octav_core.grids import MAX_BITS, MIN_BITS, check_bits, get_grid

from ..dependencies import GateDep, check_query_names
from ..errors import bad_input
from ..layer_store import LayerStore
from ..schemas import CatalogOut, GridName, LayerCurveOut, error_responses

router = APIRouter(prefix="/layers", tags=["layers"])


async def get_store(request: Request) -> LayerStore:
    return request.app.state.layer_store


StoreDep = Annotated[LayerStore, Depends(get_store)]
CheckpointQuery = Annotated[str | None, Query(
    max_length=200, description="a registered checkpoint (default: the service's default checkpoint)")]
IndexPath = Annotated[int, Path(description="catalog number of the layer (from 1)")]


class LayerRecordOut(BaseModel):
    """``results/{ckpt}/layers/{index}.json`` as ``octav_core.analysis.analyse_layer`` writes it."""

    model_config = ConfigDict(extra="allow")
    format: int
    index: int | None
    name: str
    shape: list[int]
    numel: int
    grid: str
    stats: dict[str, Any]
    bits: dict[str, dict[str, Any]]


@router.get("", response_model=CatalogOut, responses=error_responses(404, 422, 503), summary="Layer catalog")
async def list_layers(request: Request, store: StoreDep, checkpoint: CheckpointQuery = None) -> JSONResponse:
    """The checkpoint's layers (index, name, shape, numel) and whether each is analysed already."""
    check_query_names(request, frozenset({"checkpoint"}))
    cid, spec = store.resolve(checkpoint)
    return JSONResponse(await anyio.to_thread.run_sync(store.catalog, cid, spec))


@router.get("/{index}", response_model=LayerRecordOut, responses=error_responses(404, 422, 503),
            summary="One layer's analysis at every bit-width")
async def get_layer(request: Request, index: IndexPath, store: StoreDep, gate: GateDep,
                    checkpoint: CheckpointQuery = None) -> JSONResponse:
    """From ``results/{ckpt}/layers/{index}.json``; computed from the checkpoint and written there if absent."""
    check_query_names(request, frozenset({"checkpoint"}))
    _, record, source = await store.record(checkpoint, index, gate)
    return JSONResponse(record, headers={"X-Octav-Source": source})


@router.get("/{index}/curve", response_model=LayerCurveOut, responses=error_responses(404, 422, 503),
            summary="One layer's MSE curve at one bit-width")
async def get_layer_curve(
    request: Request, index: IndexPath, store: StoreDep, gate: GateDep, checkpoint: CheckpointQuery = None,
    bits: Annotated[int, Query(ge=MIN_BITS, le=MAX_BITS, description="bit-width B")] = 4,
    grid: Annotated[GridName, Query(description="quantiser grid")] = "paper",
) -> JSONResponse:
    """Empirical and theoretical MSE over (0, max|w|], with the OCTAV clip and its theoretical MSE."""
    check_query_names(request, frozenset({"checkpoint", "bits", "grid"}))
    try:
        check_bits(bits, get_grid(grid))
    except ValueError as exc:
        raise bad_input(str(exc)) from None
    return JSONResponse(await store.curve(checkpoint, index, bits, grid, gate))
