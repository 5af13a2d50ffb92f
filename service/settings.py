"""Service settings, read from ``OCTAV_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1 << 20


class Settings(BaseSettings):
    """Every knob of the service.  ``OCTAV_RESULTS_DIR=/data/results`` sets ``results_dir``, etc.

    List settings take JSON in the environment: ``OCTAV_ALLOWED_CHECKPOINT_PATHS='["/ckpts"]'``.
    """

    model_config = SettingsConfigDict(env_prefix="OCTAV_", extra="ignore")

    results_dir: Path = Field(Path("results"), description="where the workflow writes results/{ckpt}/...")
    default_checkpoint: str = Field("resnet50-caffe", description="checkpoint of /layers when none is given")
    max_body_bytes: int = Field(256 * MiB, gt=0, description="largest binary request body (413 above it)")
    max_json_body_bytes: int = Field(
        64 * MiB, gt=0,
        description="largest JSON request body: a JSON number list costs ~30x its binary size in memory")
    body_timeout_s: float = Field(60.0, gt=0, description="seconds a client may take to send its body (408 after)")
    max_concurrency: int = Field(16, gt=0, description="tensor requests in flight at once; more get 503")
    max_inflight_bytes: int = Field(1 << 30, gt=0, description="declared body bytes in flight at once; more get "
                                                                "503 (one request is always admitted)")
    compute_threads: int = Field(max(os.cpu_count() or 1, 1), gt=0,
                                 description="worker threads for decoding and the engine")
    retry_after_s: int = Field(1, ge=0, description="Retry-After of a 503")
    malloc_arena_max: int | None = Field(
        2, ge=1, description="glibc malloc arenas (mallopt M_ARENA_MAX) for this process: few arenas keep "
                             "the memory of many threads handling multi-MB bodies flat; null leaves glibc's default")
    max_curve_points: int = Field(1000, gt=0, description="most clips one /curve request may ask for")
    layer_bits: list[int] = Field([2, 3, 4, 5, 6, 8], description="bit-widths of an on-demand layer analysis")
    layer_grid: str = Field("paper", description="grid of an on-demand layer analysis")
    layer_curve_points: int = Field(200, ge=2, description="points per curve of an on-demand layer analysis")
    allow_fetch: bool = Field(False, description="let a layer request fetch a registered checkpoint that is "
                                                  "not cached (a download of ~100 MB inside a request)")
    allowed_checkpoint_paths: list[Path] = Field(
        [], description="local checkpoint files, or directories of them, that clients may name by results id "
                        "(the file's stem: ?checkpoint=STEM, never a path); empty: registered specs only")

    @field_validator("layer_grid")
    @classmethod
    def _known_grid(cls, v: str) -> str:
        from octav_core import get_grid

        return get_grid(v).name

    @model_validator(mode="after")
    def _analysable_bits(self) -> "Settings":
        """The on-demand analysis must accept ``layer_bits`` (checked at start, not in a request)."""
        from octav_core import get_grid
        from octav_core.grids import check_bits
        from octav_core.oracle import MAX_ORACLE_BITS

        grid = get_grid(self.layer_grid)
        if not self.layer_bits or len(set(self.layer_bits)) != len(self.layer_bits):
            raise ValueError(f"layer_bits must be distinct bit-widths, got {self.layer_bits}")
        for b in self.layer_bits:
            check_bits(b, grid)
            if b > MAX_ORACLE_BITS:
                raise ValueError(f"layer_bits: the layer analysis supports bits <= {MAX_ORACLE_BITS}, got {b}")
        return self


@lru_cache
def get_settings() -> Settings:
    """The process's settings (read once from the environment)."""
    return Settings()

