"""OpenAPI helpers: request bodies that accept several content types."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

REF = "#/components/schemas/{model}"

BINARY = {"schema": {"type": "string", "format": "binary"}}


def tensor_request_body(model: type[BaseModel], description: str) -> dict[str, Any]:
    """``openapi_extra`` for a route reading its tensor from JSON, raw bytes, ``.npy`` or safetensors."""
    return {"requestBody": {
        "required": True,
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": REF.format(model=model.__name__)}},
            "application/octet-stream": BINARY | {
                "description": "raw little-endian row-major values; give ?shape= and ?datatype="},
            "application/x-npy": BINARY | {"description": "a .npy file (float16/32/64), read without pickle"},
            "application/vnd.safetensors": BINARY | {
                "description": "a safetensors blob: its only tensor, or ?tensor=NAME"},
        },
    }}


def add_schemas(openapi: dict[str, Any], models: list[type[BaseModel]]) -> dict[str, Any]:
    """Put the JSON schemas of ``models`` (input bodies read by hand) under ``components.schemas``."""
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in defs.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    return openapi
