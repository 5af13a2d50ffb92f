"""Request and response bodies (input and output schemas are separate classes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from octav_core import GRIDS
from octav_core.grids import MAX_BITS, MIN_BITS

from .decoding import DATATYPES

GridName = Literal[tuple(GRIDS)]  # type: ignore[valid-type]
DataTypeName = Literal[tuple(DATATYPES)]  # type: ignore[valid-type]
Number = float | list[Any]  # a scalar for a whole tensor, a (nested) list per channel or block


# ----------------------------------------------------------------------------- inputs
class TensorIn(BaseModel):
    """An Open Inference Protocol (v2) tensor: ``data`` is flat or nested, row-major."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, description="ignored by /clip and /curve")
    shape: list[int] = Field(..., description="dimensions (non-negative integers)", examples=[[2, 3]])
    datatype: str = Field(..., description=f"one of {', '.join(DATATYPES)}", examples=["FP32"])
    data: list[Any] = Field(..., description="the values, flat or nested row-major", examples=[[0.5, -1, 2, 0.1, 3, -0.2]])
    parameters: dict[str, Any] | None = None


class QuantiserIn(BaseModel):
    """The quantiser; a field left out falls back to the query parameter of the same name, then the default."""

    model_config = ConfigDict(extra="forbid")
    tensor: TensorIn
    bits: int | None = Field(None, ge=MIN_BITS, le=MAX_BITS, description="bit-width B (default 4)")
    grid: GridName | None = Field(None, description="quantiser grid (default paper)")
    exclude_zeros: bool | None = Field(None, description="exact zeros cost nothing (paper eq. 6; default true)")


class ClipIn(QuantiserIn):
    """``POST /clip`` as JSON."""

    axis: int | None = Field(None, description="one clip per slice along this axis")
    block_size: int | None = Field(None, gt=0, description="one clip per group of this many elements along the last axis")


class CurveIn(QuantiserIn):
    """``POST /curve`` as JSON: ``num`` evenly spaced clips over (0, max|x|], or explicit ``clips``."""

    num: int | None = Field(None, gt=0, description="number of clips (default 200)")
    clips: list[float] | None = Field(None, description="explicit clipping scalars (> 0)")


# ----------------------------------------------------------------------------- outputs
class ClipOut(BaseModel):
    """The OCTAV clip; ``clip`` and the MSEs are lists (one per channel or block) with ``axis``/``block_size``."""

    clip: Number
    bits: int
    grid: str
    iterations: int = Field(..., description="iterations of the recursion (the most over channels)")
    converged: bool
    theoretical_mse: Number = Field(..., description="J(s*) per element (paper eq. 4)")
    empirical_mse: Number = Field(..., description="mean((x - Q(x))**2) at s*")
    numel: int
    shape: list[int]


class OctavOut(BaseModel):
    clip: float
    iterations: int
    converged: bool
    theoretical_mse: float
    empirical_mse: float


class CurveOut(BaseModel):
    """MSE per element against the clip; the three lists have the same length."""

    clips: list[float]
    empirical_mse: list[float]
    theoretical_mse: list[float]
    bits: int
    grid: str
    numel: int
    shape: list[int]
    octav: OctavOut


class ErrorItem(BaseModel):
    loc: str
    msg: str


class ErrorOut(BaseModel):
    """Every error: a sentence naming the problem, a stable code and the HTTP status."""

    error: str = Field(..., examples=["bits must be in 1..16, got 17"])
    code: str = Field(..., examples=["invalid_input"])
    status: int = Field(..., examples=[422])
    errors: list[ErrorItem] | None = None


class LiveOut(BaseModel):
    status: Literal["live"]


class Reachable(BaseModel):
    ok: bool
    detail: str


class ReadyOut(BaseModel):
    ready: bool
    results: Reachable
    checkpoint: Reachable


class LayerEntry(BaseModel):
    index: int
    name: str
    shape: list[int]
    numel: int
    analysed: bool = Field(..., description="results/{ckpt}/layers/{index}.json exists")


class CatalogOut(BaseModel):
    checkpoint: str
    sha256: str | None
    layers: list[LayerEntry]


class LayerCurveOut(BaseModel):
    layer: int
    name: str
    checkpoint: str
    bits: int
    grid: str
    clips: list[float]
    empirical_mse: list[float]
    theoretical_mse: list[float]
    octav_clip: float
    octav_mse: float = Field(..., description="theoretical MSE J(s*) at the OCTAV clip")
    source: Literal["results", "computed"] = Field(..., description="read from results/ or computed now")


ERROR_DESCRIPTIONS = {
    404: "unknown layer or checkpoint (the message lists the valid ones)",
    408: "the body did not arrive within the body timeout",
    413: "request body over the limit (checked before the body is read)",
    415: "unsupported Content-Type",
    422: "unusable input: the message names the field or the problem",
    503: "concurrency limit reached; retry after the Retry-After header's seconds",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses."""
    return {s: {"model": ErrorOut, "description": ERROR_DESCRIPTIONS[s]} for s in statuses}
