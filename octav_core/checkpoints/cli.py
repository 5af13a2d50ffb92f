"""``octav layers SPEC [--json]``: the numbered layer catalog of a checkpoint."""

from __future__ import annotations

import argparse
import json
import os
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "layers", help="list a checkpoint's layers, numbered as the workflow and the service number them",
        description="List a checkpoint's layers (#index, name, shape in torch layout, element count). "
                    "Named checkpoints are fetched into the cache ($OCTAV_CACHE) on first use.")
    p.add_argument("spec", nargs="?", default=None,
                   help="resnet50-caffe (default), resnet50-torchvision-v1/-v2, minilm-l6, or a path to a "
                        ".safetensors, *.safetensors.index.json, .pth/.pt, .npz or TF.js model.json")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--specs", action="store_true", help="list the named checkpoints and whether each is cached")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        return _print_catalog(args)
    except BrokenPipeError:  # `octav layers | head`
        sys.stdout = open(os.devnull, "w")
        return 0


def _print_catalog(args: argparse.Namespace) -> int:
    from . import DEFAULT_SPEC, cache_dir, known_specs, open_checkpoint

    if args.specs:
        specs = known_specs()
        if args.json:
            print(json.dumps({"cache": str(cache_dir()), "specs": specs}))
            return 0
        print(f"named checkpoints (cache: {cache_dir()}):")
        for s in specs:
            where = "cached" if s["cached"] else f"not cached, {s['size_mb']} MB"
            flags = ("default, " if s["default"] else "") + where
            print(f"  {s['name']:<25} {s['description']} [{flags}]")
            print(f"  {'':<25} from {s['source']}")
        return 0
    ckpt = open_checkpoint(args.spec or DEFAULT_SPEC)
    if args.json:
        print(json.dumps({"checkpoint": ckpt.name, "sha256": ckpt.sha256, "files": [str(f) for f in ckpt.files],
                          "layers": [layer.as_dict() for layer in ckpt.layers]}))
        return 0
    total = sum(layer.numel for layer in ckpt.layers)
    print(f"{ckpt.name}: {len(ckpt.layers)} layers, {total:,} weights (sha256 {ckpt.sha256[:16]}...)")
    width = max((len(layer.name) for layer in ckpt.layers), default=4)
    print(f"  {'#':>3}  {'name':<{width}}  {'shape':<18} {'numel':>10}")
    for layer in ckpt.layers:
        shape = "x".join(str(d) for d in layer.shape)
        print(f"  {layer.index:>3}  {layer.name:<{width}}  {shape:<18} {layer.numel:>10,}")
    return 0
