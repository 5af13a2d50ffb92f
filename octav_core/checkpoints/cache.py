"""The one download cache, a cross-process lock around fetches, and progress on stderr."""

from __future__ import annotations

import fcntl
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """``$OCTAV_CACHE``, else ``$XDG_CACHE_HOME/octav``, else ``~/.cache/octav`` (read on every call)."""
    explicit = os.environ.get("OCTAV_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "octav"


def offline() -> bool:
    """``OCTAV_OFFLINE=1``: never touch the network; fail at once when something is not cached."""
    return os.environ.get("OCTAV_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


@contextmanager
def file_lock(path: Path, what: str):
    """An exclusive ``flock`` on ``path`` so parallel jobs fetch a checkpoint once, not N times."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            note(f"waiting for another process that is fetching {what} (lock {path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def note(message: str) -> None:
    print(f"octav: {message}", file=sys.stderr, flush=True)


@contextmanager
def ticking(label: str, every: float | None = None):
    """Show ``label`` with the elapsed seconds on stderr while the block runs, then how long it took.

    On a terminal the line updates in place each second; elsewhere (logs) a line every 10 s.
    """
    tty = sys.stderr.isatty()
    every = every if every is not None else (1.0 if tty else 10.0)
    start = time.perf_counter()
    done = threading.Event()

    def tick() -> None:
        while not done.wait(every):
            elapsed = time.perf_counter() - start
            print(f"\roctav: {label}... {elapsed:.0f} s" if tty else f"octav: {label}... {elapsed:.0f} s",
                  end="" if tty else "\n", file=sys.stderr, flush=True)

    note(f"{label}...")
    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        done.set()
        thread.join()
        elapsed = time.perf_counter() - start
        print(("\r" if tty else "") + f"octav: {label}: {'done' if ok else 'failed'} in {elapsed:.1f} s",
              file=sys.stderr, flush=True)
