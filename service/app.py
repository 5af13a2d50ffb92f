"""The ASGI application: ``uvicorn service.app:app``, or ``create_app(Settings(...))``."""

from __future__ import annotations

import ctypes
import sys

from fastapi import FastAPI

from octav_core import __version__

from .errors import install_handlers
from .layer_store import LayerStore
from .limits import ComputeGate
from .openapi import add_schemas
from .routers import health, inference, layers, tensors
from .schemas import ClipIn, CurveIn
from .settings import Settings, get_settings

DESCRIPTION = """
OCTAV (Sakr et al., ICML 2022): the clipping scalar that minimises a tensor's quantisation MSE,
and the MSE curves around it, computed by `octav_core`.

Tensor routes accept `application/json` (an Open Inference Protocol tensor), `application/octet-stream`
(raw little-endian bytes with `?shape=&datatype=`), `application/x-npy` and `application/vnd.safetensors`.
Every error is JSON: `{"error": message, "code": name, "status": int}`.
"""


def limit_malloc_arenas(arenas: int | None) -> bool:
    """``mallopt(M_ARENA_MAX, arenas)`` on glibc; True when applied.

    glibc gives each thread that allocates its own arena (up to 8 per core); with worker threads
    allocating and freeing multi-MB buffers, memory held by idle arenas makes RSS creep.
    """
    if arenas is None or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, int(arenas)))
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False


M_ARENA_MAX = -8  # glibc's malloc.h


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service with ``settings`` (default: from ``OCTAV_*`` environment variables)."""
    settings = settings or get_settings()
    limit_malloc_arenas(settings.malloc_arena_max)
    app = FastAPI(title="OCTAV service", version=__version__, description=DESCRIPTION)
    app.state.settings = settings
    app.state.gate = ComputeGate(settings.max_concurrency, settings.compute_threads, settings.retry_after_s,
                                 settings.max_inflight_bytes)
    app.state.layer_store = LayerStore(settings)
    install_handlers(app)
    for router in (health.router, tensors.router, inference.router, layers.router):
        app.include_router(router)

    def openapi():
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            app.openapi_schema = add_schemas(schema, [ClipIn, CurveIn, *inference.BODY_MODELS])
        return app.openapi_schema

    app.openapi = openapi
    return app


app = create_app()
