"""``octav serve``: run the REST service with uvicorn."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the REST service (POST /clip, /curve, /v2/...; GET /layers)",
                              description="Run the OCTAV REST service. Other settings come from OCTAV_* "
                                          "environment variables (see docs/service.md).")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="results directory the workflow wrote (default: $OCTAV_RESULTS_DIR or ./results)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    if args.port < 0 or args.port > 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if args.results is not None:
        os.environ["OCTAV_RESULTS_DIR"] = args.results  # read by Settings in every worker
    uvicorn.run("service.app:app", host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level)
    return 0
