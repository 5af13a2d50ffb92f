"""Limits that protect the process: request body size and the number of tensor requests in flight."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, Callable

import anyio
import anyio.to_thread
from starlette.requests import ClientDisconnect, Request

from .errors import ApiError, payload_too_large


class ComputeGate:
    """At most ``max_in_flight`` tensor requests, and ``max_bytes`` of declared bodies, at once.

    The rest get 503 + ``Retry-After``; a request is always admitted when nothing else is in
    flight, so one body of the largest allowed size still goes through.  Admitted requests read
    their body, then decode and compute on a pool of ``threads`` worker threads, so the event
    loop only moves bytes.  The counters need no lock: only the event loop touches them.
    """

    def __init__(self, max_in_flight: int, threads: int, retry_after_s: int, max_bytes: int | None = None):
        self.max_in_flight, self.threads, self.retry_after_s = max_in_flight, threads, retry_after_s
        self.max_bytes = max_bytes
        self.in_flight = 0
        self.in_flight_bytes = 0
        self._limiter: anyio.CapacityLimiter | None = None

    def _busy(self, why: str) -> ApiError:
        return ApiError(503, "busy", f"the service is at its limit of {why}; retry after {self.retry_after_s} s",
                        headers={"Retry-After": str(self.retry_after_s)})

    @asynccontextmanager
    async def slot(self, nbytes: int = 0):
        """Hold one of the slots (and ``nbytes`` of the byte budget) for the block."""
        if self.in_flight >= self.max_in_flight:
            raise self._busy(f"{self.max_in_flight} concurrent tensor requests")
        if self.max_bytes is not None and self.in_flight and self.in_flight_bytes + nbytes > self.max_bytes:
            raise self._busy(f"{self.max_bytes} bytes of request bodies in flight")
        self.in_flight += 1
        self.in_flight_bytes += nbytes
        try:
            yield
        finally:
            self.in_flight -= 1
            self.in_flight_bytes -= nbytes

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on a worker thread."""
        if self._limiter is None:  # created lazily: it belongs to the running event loop
            self._limiter = anyio.CapacityLimiter(self.threads)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)


def declared_length(request: Request) -> int:
    """The ``Content-Length`` a request declares (0 when absent or unreadable)."""
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isascii() and declared.isdigit() else 0


async def read_body(request: Request, limit: int, timeout_s: float | None = None) -> bytearray:
    """The whole body, refused with 413 as soon as it is known to exceed ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked or
    lying body is refused when the running count passes the limit.  A body still incomplete after
    ``timeout_s`` seconds is a 408 (a trickling client must not hold a compute slot forever).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise payload_too_large(int(declared), limit)
    buf = bytearray()
    try:
        with anyio.fail_after(timeout_s):
            async for chunk in request.stream():
                buf += chunk
                if len(buf) > limit:
                    raise payload_too_large(None, limit)
    except TimeoutError:
        raise ApiError(408, "request_timeout", f"the request body was not received within {timeout_s:g} s "
                                              f"({len(buf)} bytes arrived)") from None
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the client disconnected before the body was complete") from None
    return buf


#: Media types of a tensor body -> the short kind the decoders use.
MEDIA_TYPES = {
    "application/json": "json",
    "application/octet-stream": "raw",
    "application/x-npy": "npy",
    "application/vnd.safetensors": "safetensors",
}


def body_kind(request: Request, accepted: dict[str, str] = MEDIA_TYPES) -> str:
    """The kind of tensor body, from ``Content-Type`` (415 for anything else)."""
    header = request.headers.get("content-type")
    media = header.split(";", 1)[0].strip().lower() if header else ""
    kind = accepted.get(media)
    if kind is None:
        got = f"Content-Type {media!r}" if media else "no Content-Type"
        raise ApiError(415, "unsupported_media_type", f"unsupported media type: {got}; send one of {', '.join(accepted)}")
    return kind
