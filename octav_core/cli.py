"""``octav``: the command line.  Subcommands live beside what they wrap and register here."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from .grids import GRIDS

# Modules that add subcommands: each has ``register(subparsers)``, and imports its heavy
# dependencies only when its command runs.
COMMAND_MODULES = ("octav_core.checkpoints.cli", "service.cli")


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def load_tensor(spec: str):
    """Read ``FILE`` as ``.npy``, ``.npz[:key]`` or ``.safetensors[:tensor]`` (never pickle)."""
    import numpy as np

    path, _, key = spec.partition(":") if not _is_existing(spec) else (spec, "", "")
    if path.endswith(".npy"):
        if key:
            raise CliError(f"{path}: a .npy file holds one array; drop ':{key}'")
        return np.load(path, allow_pickle=False)
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            return archive[_pick(path, names, key)]
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="numpy") as handle:
            names = list(handle.keys())
            return handle.get_tensor(_pick(path, names, key))
    raise CliError(f"{path}: unsupported file type; give a .npy, .npz[:key] or .safetensors[:tensor] file")


def _is_existing(spec: str) -> bool:
    import os

    return os.path.exists(spec)


def _pick(path: str, names: list[str], key: str) -> str:
    if key:
        if key not in names:
            raise CliError(f"{path}: no tensor {key!r}; it holds: {', '.join(names)}")
        return key
    if len(names) != 1:
        raise CliError(f"{path} holds {len(names)} tensors; pick one with {path}:NAME ({', '.join(names[:10])})")
    return names[0]


def _add_quantiser_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="tensor file: .npy, .npz[:key] or .safetensors[:tensor]")
    p.add_argument("--bits", type=int, default=4, help="bit-width B (default 4)")
    p.add_argument("--grid", default="paper", choices=sorted(GRIDS), help="quantiser grid (default paper)")
    p.add_argument("--keep-zeros", action="store_true", help="count exact zeros as in-range elements")


def _cmd_clip(args) -> int:
    from .solver import optimal_clip

    x = load_tensor(args.file)
    result = optimal_clip(x, bits=args.bits, grid=args.grid, axis=args.axis, block_size=args.block_size,
                          exclude_zeros=not args.keep_zeros)
    out = result.as_dict() | {"shape": list(x.shape), "file": args.file}
    if args.json:
        print(json.dumps(out))
        return 0
    import numpy as np

    clip = np.asarray(out["clip"])
    if clip.ndim:
        print(f"{args.file}: shape {tuple(x.shape)}, {clip.size} clips at {args.bits} bits ({args.grid} grid)")
        print(f"  clip: min {clip.min():.6g}, median {np.median(clip):.6g}, max {clip.max():.6g}")
    else:
        print(f"{args.file}: shape {tuple(x.shape)}, {args.bits} bits ({args.grid} grid)")
        print(f"  optimal clip     {float(clip):.6g}")
    print(f"  iterations       {out['iterations']} ({'converged' if out['converged'] else 'NOT converged'})")
    for key in ("theoretical_mse", "empirical_mse"):
        v = np.asarray(out[key])
        print(f"  {key:<16} {float(v):.6g}" if not v.ndim else f"  {key:<16} mean {v.mean():.6g}")
    return 0


def _cmd_curve(args) -> int:
    from .curves import mse_curve
    from .solver import optimal_clip

    x = load_tensor(args.file)
    curve = mse_curve(x, bits=args.bits, grid=args.grid, num=args.num, exclude_zeros=not args.keep_zeros)
    best = optimal_clip(x, bits=args.bits, grid=args.grid, exclude_zeros=not args.keep_zeros)
    payload = curve.as_dict() | {"bits": args.bits, "grid": args.grid, "octav_clip": best.clip,
                                 "octav_mse": best.theoretical_mse}
    if args.out is None:
        print(json.dumps(payload))
    elif args.out.endswith(".json"):
        with open(args.out, "w") as f:
            json.dump(payload, f)
    elif args.out.endswith((".png", ".pdf", ".svg")):
        from .plots import plot_curves

        plot_curves({args.file: (curve, best.clip)}, bits=args.bits, path=args.out)
    else:
        raise CliError(f"--out must end in .json, .png, .pdf or .svg, got {args.out}")
    if args.out:
        print(f"wrote {args.out}  (OCTAV clip {best.clip:.6g}, MSE {best.theoretical_mse:.6g})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="octav", description="OCTAV optimal clipping for quantisation")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("clip", help="optimal clipping scalar of a tensor")
    _add_quantiser_args(p)
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--axis", type=int, default=None, help="one clip per slice along this axis")
    layout.add_argument("--block-size", type=int, default=None, help="one clip per group of N along the last axis")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=_cmd_clip)

    p = sub.add_parser("curve", help="empirical and theoretical MSE against the clip")
    _add_quantiser_args(p)
    p.add_argument("--num", type=int, default=200, help="number of clips over (0, max|x|] (default 200)")
    p.add_argument("--out", default=None, help="curve.json or curve.png (default: JSON on stdout)")
    p.set_defaults(run=_cmd_curve)

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that part of the project is not installed
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CliError, ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        print(f"octav {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
