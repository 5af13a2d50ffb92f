"""Benchmark of the REST service on loopback: latency against the in-process engine, load, memory.

Starts ``octav serve`` on 127.0.0.1 in a subprocess and measures, side by side in one run:

* ``POST /clip`` with 1M float32 as ``application/octet-stream``: p50 latency over HTTP against the
  same parse (``np.frombuffer``) + ``optimal_clip`` + response dict done in this process, the two
  interleaved request by request (target: ratio <= 1.5);
* the same tensor as an Open Inference Protocol JSON list (slow by nature: text numbers);
* 8 concurrent clients for ``--duration`` s (default 30): requests, errors, and the server's
  resident memory sampled every 0.5 s (target: 0 errors, memory flat);
* ``GET /layers/17/curve`` served from results (target: p50 <= 20 ms), on a copy of
  ``results/resnet50-caffe/layers/17.json`` when the workflow has written it, else on a
  record of a synthetic layer of the same size written by ``octav_core.analysis``.

Prints the figures and writes them to ``results/benchmarks/service.json``.
Bounded: loopback only, at most ``--max-requests`` load requests, ``--duration`` seconds.

    python benchmarks/service.py [--duration 30] [--reps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from octav_core import __version__, optimal_clip  # noqa: E402
from octav_core.analysis import analyse_layer  # noqa: E402
from octav_core.fileio import write_json_atomic  # noqa: E402

SHAPE = (1000, 1000)
OCTET = {"content-type": "application/octet-stream"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values, q):
    return float(np.percentile(np.asarray(values) * 1e3, q))  # ms


def layer_results(tmp: Path) -> tuple[Path, str]:
    """A results directory holding layer 17 (the workflow's, or a synthetic one of the same size)."""
    results = tmp / "results"
    real = ROOT / "results" / "resnet50-caffe"
    target = results / "resnet50-caffe"
    (target / "layers").mkdir(parents=True)
    if (real / "layers" / "17.json").is_file() and (real / "layers.json").is_file():
        shutil.copy(real / "layers.json", target / "layers.json")
        shutil.copy(real / "layers" / "17.json", target / "layers" / "17.json")
        return results, "results/resnet50-caffe/layers/17.json (the workflow's)"
    w = np.random.default_rng(17).laplace(size=(128, 512, 1, 1)).astype(np.float32)
    write_json_atomic(target / "layers" / "17.json",
                      analyse_layer(w, "layer2.2.conv1.weight", [2, 3, 4, 5, 6, 8], index=17))
    write_json_atomic(target / "layers.json", {"sha256": None, "layers": [
        {"index": 17, "name": "layer2.2.conv1.weight", "shape": [128, 512, 1, 1], "numel": 65536}]})
    return results, "a synthetic record of layer 17's size (the workflow's was absent)"


def start_server(results: Path, port: int) -> subprocess.Popen:
    env = os.environ | {"OCTAV_MAX_CONCURRENCY": "16"}
    proc = subprocess.Popen([sys.executable, "-m", "octav_core.cli", "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--results", str(results), "--log-level", "warning"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start: {proc.stderr.read().decode()[-2000:]}")


def latency_side_by_side(client: httpx.Client, base: str, x: np.ndarray, reps: int) -> dict:
    body = x.tobytes()
    params = {"shape": ",".join(map(str, x.shape)), "bits": 4}
    http, local = [], []
    for _ in range(3):  # warm both: numba caches, connection, allocator
        r = client.post(f"{base}/clip", params=params, content=body, headers=OCTET)
        assert r.status_code == 200, r.text
        optimal_clip(np.frombuffer(body, "<f4").reshape(x.shape)).as_dict()
    for _ in range(reps):
        t = time.perf_counter()
        r = client.post(f"{base}/clip", params=params, content=body, headers=OCTET)
        http.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
        t = time.perf_counter()
        ref = optimal_clip(np.frombuffer(body, "<f4").reshape(x.shape), bits=4).as_dict()
        local.append(time.perf_counter() - t)
    assert abs(r.json()["clip"] - ref["clip"]) <= 1e-12 * ref["clip"]
    return {"http_p50_ms": pct(http, 50), "http_p90_ms": pct(http, 90), "in_process_p50_ms": pct(local, 50),
            "in_process_p90_ms": pct(local, 90), "ratio_p50": pct(http, 50) / pct(local, 50), "reps": reps,
            "body_bytes": len(body)}


def json_path(client: httpx.Client, base: str, x: np.ndarray, reps: int) -> dict:
    payload = json.dumps({"tensor": {"shape": list(x.shape), "datatype": "FP32",
                                     "data": x.reshape(-1).tolist()}}).encode()
    http, local = [], []
    client.post(f"{base}/clip", content=payload, headers={"content-type": "application/json"}).raise_for_status()
    for _ in range(reps):
        t = time.perf_counter()
        r = client.post(f"{base}/clip", content=payload, headers={"content-type": "application/json"}, timeout=120)
        http.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
        t = time.perf_counter()
        obj = json.loads(payload)
        arr = np.asarray(obj["tensor"]["data"]).astype(np.float32).reshape(obj["tensor"]["shape"])
        optimal_clip(arr, bits=4).as_dict()
        local.append(time.perf_counter() - t)
    return {"http_p50_ms": pct(http, 50), "in_process_json_parse_plus_clip_p50_ms": pct(local, 50),
            "ratio_p50": pct(http, 50) / pct(local, 50), "body_bytes": len(payload), "reps": reps}


def load(base: str, pid: int, x: np.ndarray, clients: int, duration: float, max_requests: int) -> dict:
    body = x.tobytes()
    params = {"shape": ",".join(map(str, x.shape))}
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"ok": 0, "errors": 0, "statuses": {}}
    latencies: list[float] = []
    samples: list[tuple[float, float]] = []
    start = time.monotonic()

    def worker():
        with httpx.Client(timeout=60) as c:
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    r = c.post(f"{base}/clip", params=params, content=body, headers=OCTET)
                    status = r.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    latencies.append(time.perf_counter() - t)
                    counts["ok" if status == 200 else "errors"] += 1
                    counts["statuses"][str(status)] = counts["statuses"].get(str(status), 0) + 1
                    if counts["ok"] + counts["errors"] >= max_requests:
                        stop.set()

    def sampler():
        while not stop.is_set():
            samples.append((time.monotonic() - start, rss_mib(pid)))
            stop.wait(0.5)

    threads = [threading.Thread(target=worker) for _ in range(clients)] + [threading.Thread(target=sampler)]
    for t in threads:
        t.start()
    stop.wait(duration)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    rss = [m for _, m in samples]
    first = [m for t, m in samples if t <= elapsed / 3]
    middle = [m for t, m in samples if elapsed / 3 < t < 2 * elapsed / 3]
    last = [m for t, m in samples if t >= 2 * elapsed / 3]
    return {"clients": clients, "seconds": round(elapsed, 2), "requests": counts["ok"] + counts["errors"],
            "errors": counts["errors"], "statuses": counts["statuses"],
            "throughput_rps": (counts["ok"] + counts["errors"]) / elapsed,
            "latency_p50_ms": pct(latencies, 50), "latency_p99_ms": pct(latencies, 99),
            "rss_mib_min": min(rss), "rss_mib_max": max(rss),
            "rss_mib_thirds_mean": [statistics.mean(first), statistics.mean(middle), statistics.mean(last)],
            "rss_growth_last_vs_middle_third_mib": statistics.mean(last) - statistics.mean(middle)}


def layer_curve(client: httpx.Client, base: str, reps: int) -> dict:
    url = f"{base}/layers/17/curve"
    params = {"bits": 4, "grid": "paper", "checkpoint": "resnet50-caffe"}
    first = client.get(url, params=params)
    assert first.status_code == 200 and first.json()["source"] == "results", first.text
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        client.get(url, params=params).raise_for_status()
        times.append(time.perf_counter() - t)
    return {"p50_ms": pct(times, 50), "p90_ms": pct(times, 90), "reps": reps, "points": len(first.json()["clips"])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=30.0, help="seconds of the 8-client load (default 30)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--reps", type=int, default=40, help="sequential requests for the latency figures")
    p.add_argument("--max-requests", type=int, default=20000, help="upper bound on load requests")
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "service.json"))
    args = p.parse_args(argv)

    x = np.random.default_rng(0).laplace(size=SHAPE).astype(np.float32)
    load_before = os.getloadavg()[0]  # the machine may be shared: the ratios are only as quiet as it is
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="octav-bench-") as tmp:
        results, layer_source = layer_results(Path(tmp))
        proc = start_server(results, port)
        try:
            with httpx.Client(timeout=60) as client:
                clip = latency_side_by_side(client, base, x, args.reps)
                print(f"POST /clip 1M float32 octet-stream: p50 {clip['http_p50_ms']:.1f} ms over HTTP vs "
                      f"{clip['in_process_p50_ms']:.1f} ms in process -> ratio {clip['ratio_p50']:.2f} (target <= 1.5)")
                js = json_path(client, base, x, max(3, args.reps // 8))
                print(f"POST /clip 1M float32 JSON list ({js['body_bytes'] / 2**20:.1f} MiB): p50 {js['http_p50_ms']:.0f} ms "
                      f"(in-process json parse + clip {js['in_process_json_parse_plus_clip_p50_ms']:.0f} ms, "
                      f"ratio {js['ratio_p50']:.2f}; {js['http_p50_ms'] / clip['http_p50_ms']:.1f}x the binary path)")
                curve = layer_curve(client, base, max(50, args.reps * 5))
                print(f"GET /layers/17/curve from results: p50 {curve['p50_ms']:.2f} ms, p90 {curve['p90_ms']:.2f} ms "
                      f"(target p50 <= 20 ms)")
            loaded = load(base, proc.pid, x, args.clients, args.duration, args.max_requests)
            print(f"load: {loaded['clients']} clients x {loaded['seconds']:.0f} s: {loaded['requests']} requests, "
                  f"{loaded['errors']} errors, {loaded['throughput_rps']:.1f} req/s, p50 {loaded['latency_p50_ms']:.0f} ms, "
                  f"p99 {loaded['latency_p99_ms']:.0f} ms")
            thirds = " / ".join(f"{m:.0f}" for m in loaded["rss_mib_thirds_mean"])
            print(f"server RSS: {loaded['rss_mib_min']:.0f}..{loaded['rss_mib_max']:.0f} MiB; mean by thirds of the run "
                  f"{thirds} MiB (last vs middle third {loaded['rss_growth_last_vs_middle_third_mib']:+.1f} MiB)")
        finally:
            proc.terminate()
            proc.wait(10)
    report = {"octav_core_version": __version__, "cpus": os.cpu_count(), "tensor_shape": list(SHAPE),
              "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
              "clip_octet_stream": clip, "clip_json": js, "layer_curve": curve | {"source": layer_source},
              "load": loaded,
              "targets": {"clip_ratio_p50_le_1_5": clip["ratio_p50"] <= 1.5, "load_zero_errors": loaded["errors"] == 0,
                          "layer_curve_p50_le_20ms": curve["p50_ms"] <= 20.0}}
    write_json_atomic(args.out, report, indent=1)
    print(f"1-minute load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
