"""Analysed layers: read from ``results/{ckpt}/layers/{index}.json``, or computed once and written there.

A client names a checkpoint by its results id only, never by a path: the ids are the registered
specs (``octav_core.checkpoints.KNOWN_SPECS``), the local files the operator allowed
(``OCTAV_ALLOWED_CHECKPOINT_PATHS``; id = the file's stem, as the workflow names its results
directory), and any ``results/{id}/`` that holds a ``layers.json`` (read-only: its layers are
served from the files there).  On-demand records are the workflow's own
(:func:`octav_core.analysis.analyse_layer`), written with :func:`octav_core.fileio.write_json_atomic`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import anyio.to_thread

from octav_core import mse_curve, optimal_clip
from octav_core.analysis import analyse_layer
from octav_core.checkpoints import KNOWN_SPECS, CheckpointError, UnknownLayerError, open_checkpoint, results_id
from octav_core.fileio import write_json_atomic

from .errors import ApiError, not_found
from .limits import ComputeGate
from .settings import Settings

# Local checkpoint files the operator's allowed directories may hold.
LOCAL_SUFFIXES = (".npz", ".safetensors", ".pth", ".pt", ".json")
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def unavailable(message: str) -> ApiError:
    return ApiError(503, "checkpoint_unavailable", message)


class LayerStore:
    """Catalogs, layer records and curves of the checkpoints this service may serve."""

    def __init__(self, settings: Settings, cache_size: int = 64):
        self.settings = settings
        self.results = Path(settings.results_dir)
        self._open: dict[str, Any] = {}
        self._open_lock = threading.Lock()
        self._inflight: dict[tuple[str, int], asyncio.Future] = {}
        self._files: OrderedDict[Path, tuple[tuple[int, int], dict]] = OrderedDict()
        self._curves: OrderedDict[tuple, dict] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    # ------------------------------------------------------------------ which checkpoints exist
    def local_files(self) -> dict[str, Path]:
        """Results id -> file, for the checkpoint files the operator allowed."""
        found: dict[str, Path] = {}
        for allowed in self.settings.allowed_checkpoint_paths:
            allowed = Path(allowed).expanduser()
            candidates = sorted(allowed.iterdir()) if allowed.is_dir() else [allowed]
            for path in candidates:
                if path.is_file() and path.name.lower().endswith(LOCAL_SUFFIXES):
                    found.setdefault(results_id(path), path.resolve())
        return found

    def analysed(self) -> list[str]:
        """Results ids with a ``layers.json`` under the results directory."""
        if not self.results.is_dir():
            return []
        return sorted(p.name for p in self.results.iterdir()
                      if ID_PATTERN.fullmatch(p.name) and (p / "layers.json").is_file())

    def resolve(self, checkpoint: str | None) -> tuple[str, str | Path | None]:
        """``(results id, what to open)``; the second is None for a results-only checkpoint.  404 otherwise."""
        cid = checkpoint if checkpoint is not None else self.settings.default_checkpoint
        if cid in KNOWN_SPECS:
            return cid, cid
        local = self.local_files()
        if cid in local:
            return cid, local[cid]
        analysed = self.analysed()
        if cid in analysed:
            return cid, None
        valid = sorted(set(KNOWN_SPECS) | set(local) | set(analysed))
        raise not_found(f"unknown checkpoint {cid!r}; valid checkpoints: {', '.join(valid)}")

    # ------------------------------------------------------------------ readiness
    def readiness(self) -> tuple[dict, dict]:
        """Whether the results directory is readable and the default checkpoint usable (file checks only)."""
        r = self.results
        if r.is_dir() and os.access(r, os.R_OK | os.X_OK):
            writable = os.access(r, os.W_OK)
            results = {"ok": True, "detail": f"{r} is readable{'' if writable else ' (not writable: no on-demand writes)'}"}
        else:
            results = {"ok": False, "detail": f"results directory {r} does not exist or is not readable"}
        cid = self.settings.default_checkpoint
        if (r / cid / "layers.json").is_file():
            checkpoint = {"ok": True, "detail": f"{cid}: catalog at {r / cid / 'layers.json'}"}
        elif cid in KNOWN_SPECS:
            cached = KNOWN_SPECS[cid].is_cached()
            checkpoint = {"ok": cached, "detail": f"{cid}: {'cached' if cached else 'not cached (fetch it with `octav layers ' + cid + '`)'}"}
        elif cid in self.local_files():
            checkpoint = {"ok": True, "detail": f"{cid}: {self.local_files()[cid]}"}
        else:
            checkpoint = {"ok": False, "detail": f"{cid}: not a registered or allowed checkpoint"}
        return results, checkpoint

    # ------------------------------------------------------------------ reading
    def _read_json(self, path: Path) -> dict | None:
        """A results JSON file (None if absent), parsed once per version of the file."""
        try:
            st = path.stat()
        except OSError:  # absent, or a name no file can have (an index of 300 digits)
            return None
        version = (st.st_mtime_ns, st.st_size)
        with self._cache_lock:
            hit = self._files.get(path)
            if hit is not None and hit[0] == version:
                self._files.move_to_end(path)
                return hit[1]
        try:
            with open(path, "rb") as handle:
                record = json.load(handle)
        except FileNotFoundError:
            return None
        except ValueError as exc:  # never happens with atomic writes; say so if it does
            raise ApiError(500, "corrupt_results", f"{path} is not valid JSON ({exc}); delete it to recompute") from None
        with self._cache_lock:
            self._files[path] = (version, record)
            while len(self._files) > self._cache_size:
                self._files.popitem(last=False)
        return record

    def layer_path(self, cid: str, index: int) -> Path:
        return self.results / cid / "layers" / f"{int(index)}.json"

    def checkpoint(self, cid: str, spec: str | Path | None):
        """The opened checkpoint (once per process); 503 when it cannot be had here."""
        if spec is None:
            raise unavailable(f"{cid}: only results are served for this checkpoint (it is neither registered "
                              "nor an allowed file), and this layer has not been analysed")
        with self._open_lock:
            if cid in self._open:
                return self._open[cid]
            if isinstance(spec, str) and not KNOWN_SPECS[spec].is_cached() and not self.settings.allow_fetch:
                raise unavailable(f"checkpoint {spec} is not in this server's cache; the operator can fetch it "
                                  f"with `octav layers {spec}` (or set OCTAV_ALLOW_FETCH=1)")
            try:
                ckpt = open_checkpoint(spec)
            except CheckpointError as exc:
                raise unavailable(f"checkpoint {cid} cannot be opened: {exc}") from None
            self._open[cid] = ckpt
            return ckpt

    def weights(self, cid: str, spec: str | Path | None, index: int):
        """Layer ``index`` of the checkpoint (404 for an unknown layer, 503 when it cannot be read)."""
        ckpt = self.checkpoint(cid, spec)
        try:
            return ckpt.tensor(index)
        except UnknownLayerError as exc:
            raise not_found(str(exc)) from None
        except CheckpointError as exc:
            raise unavailable(f"{cid} layer #{index} cannot be read: {exc}") from None

    def catalog(self, cid: str, spec: str | Path | None) -> dict:
        """``{"checkpoint", "sha256", "layers": [{index, name, shape, numel, analysed}]}``."""
        stored = self._read_json(self.results / cid / "layers.json")
        if stored is not None:
            layers, sha = stored.get("layers", []), stored.get("sha256")
        else:
            ckpt = self.checkpoint(cid, spec)
            layers, sha = [layer.as_dict() for layer in ckpt.layers], ckpt.sha256
        folder = self.results / cid / "layers"
        done = set(os.listdir(folder)) if folder.is_dir() else set()
        return {"checkpoint": cid, "sha256": sha,
                "layers": [layer | {"analysed": f"{layer['index']}.json" in done} for layer in layers]}

    def layer_entry(self, cid: str, spec: str | Path | None, index: int) -> dict:
        """The catalog entry of layer ``index``; 404 naming the valid range."""
        layers = self.catalog(cid, spec)["layers"]
        for layer in layers:
            if layer["index"] == index:
                return layer
        raise not_found(f"{cid} has no layer #{index}; its layers are " +
                        (f"#1..#{len(layers)}" if layers else "none"))

    # ------------------------------------------------------------------ on demand
    def _analyse(self, cid: str, spec: str | Path | None, index: int) -> dict:
        path = self.layer_path(cid, index)
        record = self._read_json(path)  # written meanwhile (another process, the workflow)?
        if record is not None:
            return record
        entry = self.layer_entry(cid, spec, index)
        weights = self.weights(cid, spec, index)
        s = self.settings
        try:
            record = analyse_layer(weights, entry["name"], s.layer_bits, grid=s.layer_grid,
                                   num=s.layer_curve_points, index=index)
        except (ValueError, TypeError) as exc:  # e.g. NaN weights in the checkpoint
            raise ApiError(422, "unanalysable_layer", f"{cid} layer #{index} cannot be analysed: {exc}") from None
        try:
            write_json_atomic(path, record)
        except OSError:
            pass  # a read-only results directory: serve the record without keeping it
        return record

    async def record(self, checkpoint: str | None, index: int, gate: ComputeGate) -> tuple[str, dict, str]:
        """``(id, record, "results" | "computed")``; concurrent first requests compute once."""
        cid, spec = self.resolve(checkpoint)
        if index < 1:
            raise not_found(f"no layer #{index}: layers are numbered from 1")
        record = await anyio.to_thread.run_sync(self._read_json, self.layer_path(cid, index))
        if record is not None:
            return cid, record, "results"
        key = (cid, index)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._compute(gate, cid, spec, index))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return cid, await asyncio.shield(task), "computed"

    async def _compute(self, gate: ComputeGate, cid: str, spec, index: int) -> dict:
        async with gate.slot():
            return await gate.run(self._analyse, cid, spec, index)

    async def curve(self, checkpoint: str | None, index: int, bits: int, grid: str,
                    gate: ComputeGate) -> dict:
        """One bit-width's curve: from the layer's record, or computed for a bits/grid it lacks."""
        cid, record, source = await self.record(checkpoint, index, gate)
        per_bits = record.get("bits", {}).get(str(bits)) if record.get("grid") == grid else None
        if per_bits is not None:
            curve, octav = per_bits["curve"], per_bits["octav"]
            return {"layer": index, "name": record["name"], "checkpoint": cid, "bits": bits, "grid": grid,
                    **{k: curve[k] for k in ("clips", "empirical_mse", "theoretical_mse")},
                    "octav_clip": octav["clip"], "octav_mse": octav["theoretical_mse"], "source": source}
        key = (cid, index, bits, grid)
        with self._cache_lock:
            if key in self._curves:
                return self._curves[key]
        _, spec = self.resolve(cid)
        async with gate.slot():
            out = await gate.run(self._compute_curve, cid, spec, index, bits, grid, record["name"])
        with self._cache_lock:
            self._curves[key] = out
            while len(self._curves) > self._cache_size:
                self._curves.popitem(last=False)
        return out

    def _compute_curve(self, cid, spec, index, bits, grid, name) -> dict:
        from .compute import engine_errors

        weights = self.weights(cid, spec, index)
        with engine_errors():
            curve = mse_curve(weights, bits=bits, grid=grid, num=self.settings.layer_curve_points)
            res = optimal_clip(weights, bits=bits, grid=grid)
        return {"layer": index, "name": name, "checkpoint": cid, "bits": bits, "grid": grid, **curve.as_dict(),
                "octav_clip": float(res.clip), "octav_mse": float(res.theoretical_mse), "source": "computed"}
