"""The service as deployed: ``octav serve`` (uvicorn) on 127.0.0.1, spoken to over real sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from octav_core import optimal_clip

X = np.random.default_rng(2).laplace(size=(64, 256)).astype(np.float32)
TIMEOUT = 120  # generous: the first call may compile numba kernels on a busy 2-core CI machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    (root / "ckpts").mkdir()
    (root / "results").mkdir()
    rng = np.random.default_rng(4)
    np.savez(root / "ckpts" / "tiny.npz", **{"a.weight": rng.normal(size=(16, 8)).astype(np.float32),
                                             "b.weight": rng.normal(size=(4, 4, 3, 3)).astype(np.float32)})
    port = free_port()
    env = os.environ | {
        "OCTAV_MAX_CONCURRENCY": "1", "OCTAV_MAX_BODY_BYTES": str(4 << 20), "OCTAV_DEFAULT_CHECKPOINT": "tiny",
        "OCTAV_ALLOWED_CHECKPOINT_PATHS": json.dumps([str(root / "ckpts")]), "OCTAV_LAYER_BITS": "[2, 4]",
        "OCTAV_LAYER_CURVE_POINTS": "50", "OCTAV_RETRY_AFTER_S": "2", "OCTAV_BODY_TIMEOUT_S": "4",
    }
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "octav_core.cli", "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--results", str(root / "results"), "--log-level", "warning"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start:\n{(root / 'server.log').read_text()}")
        time.sleep(0.2)
    try:
        yield {"base": base, "port": port, "root": root}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def raw_request(port: int, head: str, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(head.encode() + body)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers = {k.lower(): v for k, v in headers.items()}
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


def test_clip_over_http(server):
    r = httpx.post(f"{server['base']}/clip", params={"shape": "64,256", "bits": 4}, content=X.tobytes(),
                   headers={"content-type": "application/octet-stream"}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json()["clip"] == pytest.approx(optimal_clip(X, bits=4).clip, rel=1e-12)


def test_413_is_answered_before_the_body_is_sent(server):
    head = (f"POST /clip?shape=100 HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {100 << 20}\r\n\r\n")
    sock = raw_request(server["port"], head, b"\0" * 1000)  # 1000 of the 100 MiB announced
    status, headers, body = read_response(sock)
    sock.close()
    assert status == 413 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == f"request body is too large: {100 << 20} bytes; the limit is {4 << 20} bytes"


def test_503_with_retry_after_while_the_only_slot_is_busy(server):
    body = X[:4].tobytes()
    head = (f"POST /clip?shape=4,256 HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    slow = raw_request(server["port"], head, body[:100])  # holds the slot while its body trickles in
    try:
        deadline, seen = time.monotonic() + 10, None
        while time.monotonic() < deadline:
            r = httpx.post(f"{server['base']}/clip", params={"shape": "4,256"}, content=body,
                           headers={"content-type": "application/octet-stream"}, timeout=TIMEOUT)
            if r.status_code == 503:
                seen = r
                break
            time.sleep(0.05)
        assert seen is not None, "the busy slot never produced a 503"
        assert seen.headers["retry-after"] == "2" and "limit of 1 concurrent" in seen.json()["error"]
        slow.sendall(body[100:])
        status, _, reply = read_response(slow)
        assert status == 200 and json.loads(reply)["clip"] == pytest.approx(optimal_clip(X[:4]).clip, rel=1e-12)
    finally:
        slow.close()


def test_408_for_a_body_that_stops_arriving(server):
    head = ("POST /clip?shape=4 HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            "Content-Length: 16\r\n\r\n")
    sock = raw_request(server["port"], head, b"\0" * 5)
    start = time.monotonic()
    status, _, body = read_response(sock)
    sock.close()
    assert status == 408 and 3.5 < time.monotonic() - start < 30
    assert json.loads(body)["error"] == "the request body was not received within 4 s (5 bytes arrived)"
    assert httpx.get(f"{server['base']}/health/live", timeout=TIMEOUT).status_code == 200


def test_layers_computed_and_written_by_the_server(server):
    r = httpx.get(f"{server['base']}/layers/2/curve", params={"bits": 4}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "b.weight" and len(r.json()["clips"]) == 50
    written = server["root"] / "results" / "tiny" / "layers" / "2.json"
    assert json.loads(written.read_text())["bits"]["4"]["curve"]["clips"] == r.json()["clips"]
    assert httpx.get(f"{server['base']}/health/ready", timeout=TIMEOUT).json()["ready"] is True


def test_triton_client_works_unchanged(server):
    http = pytest.importorskip("tritonclient.http")
    client = http.InferenceServerClient(url=f"127.0.0.1:{server['port']}", network_timeout=TIMEOUT)
    assert client.is_server_live() and client.is_model_ready("octav")
    for binary in (True, False):
        inp = http.InferInput("tensor", list(X.shape), "FP32")
        inp.set_data_from_numpy(X, binary_data=binary)
        outputs = [http.InferRequestedOutput(name, binary_data=binary) for name in ("clip", "iterations")]
        result = client.infer("octav", [inp], outputs=outputs, parameters={"bits": 3})
        assert result.as_numpy("clip")[0] == pytest.approx(optimal_clip(X, bits=3).clip, rel=1e-12)
        assert result.as_numpy("iterations")[0] == optimal_clip(X, bits=3).iterations
    result = client.infer("octav", [inp])  # no outputs named: the client asks for all of them in binary
    assert result.as_numpy("converged").tolist() == [True]
    with pytest.raises(Exception, match="bits"):
        client.infer("octav", [inp], parameters={"bits": 40})
    client.close()
