"""``/health/live`` and ``/health/ready``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..schemas import LiveOut, ReadyOut

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=LiveOut, summary="The process answers")
async def live() -> dict:
    return {"status": "live"}


@router.get("/ready", response_model=ReadyOut, responses={503: {"model": ReadyOut, "description": "not ready"}},
            summary="Results directory and default checkpoint reachable")
async def ready(request: Request) -> JSONResponse:
    """200 when the results directory and the default checkpoint are reachable, else 503; both say why.

    Cheap: it looks at files, it never downloads or loads a checkpoint.
    """
    results, checkpoint = request.app.state.layer_store.readiness()
    body = {"ready": results["ok"] and checkpoint["ok"], "results": results, "checkpoint": checkpoint}
    return JSONResponse(body, 200 if body["ready"] else 503)
