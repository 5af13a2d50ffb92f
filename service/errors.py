"""One JSON shape for every error: ``{"error": message, "code": short_name, "status": int}``.

``error`` is a sentence that names the problem (Open Inference Protocol clients read this key);
``code`` is stable for programs; validation errors add ``errors``, a list of ``{loc, msg}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """An error answered as JSON with ``status``; ``headers`` go on the response (``Retry-After``)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 errors: list[dict] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers, self.errors = headers, errors


def bad_input(message: str) -> ApiError:
    """422: the request is well-formed HTTP but its content is unusable."""
    return ApiError(422, "invalid_input", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def payload_too_large(size: int | None, limit: int) -> ApiError:
    got = f"{size} bytes" if size is not None else "more than that"
    return ApiError(413, "payload_too_large", f"request body is too large: {got}; the limit is {limit} bytes")


def error_body(status: int, code: str, message: str, errors: list[dict] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, "code": code, "status": status}
    if errors:
        body["errors"] = errors
    return body


def validation_errors(exc: ValidationError | RequestValidationError, prefix: tuple = ()) -> tuple[str, list[dict]]:
    """A one-line message naming every bad field, and the list it was made from."""
    items = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in (*prefix, *e.get("loc", ())))
        items.append({"loc": loc, "msg": e.get("msg", "invalid")})
    message = "; ".join(f"{i['loc']}: {i['msg']}" for i in items) or "invalid request"
    return message, items


def from_validation(exc: ValidationError, prefix: tuple = ()) -> ApiError:
    message, items = validation_errors(exc, prefix)
    return ApiError(422, "invalid_input", message, errors=items)


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
               415: "unsupported_media_type", 503: "unavailable"}


def install_handlers(app: FastAPI) -> None:
    """Answer ApiError, request validation errors and Starlette's own HTTP errors in the one shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.status, exc.code, exc.message, exc.errors), exc.status, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, items = validation_errors(exc)
        return JSONResponse(error_body(422, "invalid_input", message, items), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(exc.status_code, code, str(exc.detail)), exc.status_code,
                            getattr(exc, "headers", None))
