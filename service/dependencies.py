"""Typed dependencies of the routers: settings, the compute gate, the common query parameters.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency on a worker thread,
a thread hop per dependency per request for what are a few attribute reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from octav_core.grids import MAX_BITS, MIN_BITS

from .errors import bad_input
from .limits import ComputeGate
from .schemas import GridName
from .settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_gate(request: Request) -> ComputeGate:
    return request.app.state.gate


SettingsDep = Annotated[Settings, Depends(get_settings)]
GateDep = Annotated[ComputeGate, Depends(get_gate)]

DEFAULT_BITS = 4  # optimal_clip's default


@dataclass
class QuantiserQuery:
    """``bits``, ``grid``, ``exclude_zeros`` as given in the query (``None``: not given)."""

    bits: int | None
    grid: str | None
    exclude_zeros: bool | None


async def quantiser_query(
    bits: Annotated[int | None, Query(ge=MIN_BITS, le=MAX_BITS, description="bit-width B (default 4)")] = None,
    grid: Annotated[GridName | None, Query(description="quantiser grid (default paper)")] = None,
    exclude_zeros: Annotated[bool | None, Query(description="exact zeros cost nothing (default true)")] = None,
) -> QuantiserQuery:
    return QuantiserQuery(bits, grid, exclude_zeros)


@dataclass
class WireQuery:
    """How to read a binary body: ``shape``/``datatype`` (octet-stream), ``tensor`` (safetensors)."""

    shape: tuple[int, ...] | None
    datatype: str | None
    tensor: str | None


async def wire_query(
    shape: Annotated[list[str] | None, Query(
        description="octet-stream only: dimensions, repeated (shape=2&shape=3) or comma-separated (shape=2,3)",
        max_length=32)] = None,
    datatype: Annotated[str | None, Query(description="octet-stream only: FP16, BF16, FP32 (default) or FP64",
                                          max_length=16)] = None,
    tensor: Annotated[str | None, Query(description="safetensors only: the tensor's name", max_length=1024)] = None,
) -> WireQuery:
    dims = None
    if shape is not None:
        parts = [p.strip() for item in shape for p in item.split(",") if p.strip() != ""]
        if not all(p.isdigit() and p.isascii() for p in parts):
            raise bad_input(f"shape must be non-negative integers (shape=2,3 or shape=2&shape=3), got {','.join(shape)!r}")
        dims = tuple(int(p) for p in parts)
    return WireQuery(dims, datatype, tensor)


QuantiserQueryDep = Annotated[QuantiserQuery, Depends(quantiser_query)]
WireQueryDep = Annotated[WireQuery, Depends(wire_query)]


def check_query_names(request: Request, allowed: frozenset[str], hint: str = "") -> None:
    """422 for a query parameter the route does not read (``bit=8`` would otherwise be ignored silently)."""
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise bad_input(f"unknown query parameter(s) {', '.join(map(repr, unknown))}{hint}; "
                        f"this route reads {', '.join(sorted(allowed))}")
