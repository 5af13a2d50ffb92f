"""``/v2``: the Open Inference Protocol face, JSON and binary tensors, as Triton/KServe clients send them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from octav_core import optimal_clip
from service.app import create_app
from service.settings import Settings

X = np.random.default_rng(11).normal(size=(8, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(create_app(Settings(results_dir=tmp_path_factory.mktemp("r")))) as c:
        yield c


def request_json(x=X, parameters=None, binary=False, outputs=None, datatype="FP32"):
    inp = {"name": "INPUT0", "shape": list(x.shape), "datatype": datatype}
    if binary:
        inp["parameters"] = {"binary_data_size": x.nbytes}
    else:
        inp["data"] = x.reshape(-1).tolist()
    req = {"id": "r1", "inputs": [inp]}
    if parameters is not None:
        req["parameters"] = parameters
    if outputs is not None:
        req["outputs"] = outputs
    return req


def binary_body(req, raw: bytes):
    header = json.dumps(req).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header)),
                          "content-type": "application/octet-stream"}


def split_binary_response(r):
    n = int(r.headers["inference-header-content-length"])
    return json.loads(r.content[:n]), r.content[n:]


def test_metadata_and_health(client):
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    meta = client.get("/v2/models/octav").json()
    assert meta["name"] == "octav" and [o["name"] for o in meta["outputs"]] == [
        "clip", "theoretical_mse", "empirical_mse", "iterations", "converged"]
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/octav/ready"):
        assert client.get(path).status_code == 200


def test_json_infer_matches_engine(client):
    r = client.post("/v2/models/octav/infer", json=request_json(parameters={"bits": 3}))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "octav" and body["id"] == "r1"
    out = {o["name"]: o for o in body["outputs"]}
    ref = optimal_clip(X, bits=3)
    assert out["clip"]["datatype"] == "FP64" and out["clip"]["shape"] == [1]
    assert out["clip"]["data"][0] == pytest.approx(ref.clip, rel=1e-12)
    assert out["theoretical_mse"]["data"][0] == pytest.approx(ref.theoretical_mse, rel=1e-12)
    assert out["empirical_mse"]["data"][0] == pytest.approx(ref.empirical_mse, rel=1e-12)
    assert out["iterations"] == {"name": "iterations", "datatype": "INT64", "shape": [1], "data": [ref.iterations]}
    assert out["converged"]["data"] == [True]


def test_binary_input_and_binary_outputs(client):
    req = request_json(binary=True, parameters={"axis": 0, "binary_data_output": True})
    body, headers = binary_body(req, X.tobytes())
    r = client.post("/v2/models/octav/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    header, raw = split_binary_response(r)
    ref = optimal_clip(X, axis=0)
    offset, got = 0, {}
    for o in header["outputs"]:
        size = o["parameters"]["binary_data_size"]
        dtype = {"FP64": "<f8", "INT64": "<i8", "BOOL": "?"}[o["datatype"]]
        got[o["name"]] = np.frombuffer(raw[offset:offset + size], dtype).reshape(o["shape"])
        offset += size
    assert offset == len(raw)
    np.testing.assert_allclose(got["clip"], ref.clip, rtol=1e-12)
    assert got["clip"].shape == (8,) and got["converged"].tolist() == [True]


def test_selected_outputs_mix_binary_and_json(client):
    req = request_json(outputs=[{"name": "clip", "parameters": {"binary_data": True}}, {"name": "iterations"}])
    r = client.post("/v2/models/octav/infer", json=req)
    header, raw = split_binary_response(r)
    assert [o["name"] for o in header["outputs"]] == ["clip", "iterations"]
    assert np.frombuffer(raw, "<f8")[0] == pytest.approx(optimal_clip(X).clip, rel=1e-12)
    assert header["outputs"][1]["data"] == [optimal_clip(X).iterations]


def test_bf16_binary_input(client):
    bits = (X.view(np.uint32) >> 16).astype("<u2")
    req = request_json(binary=True, datatype="BF16")
    req["inputs"][0]["parameters"]["binary_data_size"] = bits.nbytes
    body, headers = binary_body(req, bits.tobytes())
    r = client.post("/v2/models/octav/infer", content=body, headers=headers)
    widened = (bits.astype(np.uint32) << 16).view(np.float32)
    assert r.json()["outputs"][0]["data"][0] == pytest.approx(optimal_clip(widened).clip, rel=1e-12)


def error(r, status, *fragments):
    assert r.status_code == status, r.text
    for f in fragments:
        assert f in r.json()["error"], (f, r.json()["error"])


def test_infer_errors(client):
    url = "/v2/models/octav/infer"
    error(client.post(url, json=request_json(parameters={"bits": 0})), 422, "parameters.bits")
    error(client.post(url, json=request_json(parameters={"bitz": 4})), 422, "parameters.bitz")
    error(client.post(url, json=request_json(outputs=[{"name": "scale"}])), 422, "unknown output(s) 'scale'")
    two = request_json()
    two["inputs"] *= 2
    error(client.post(url, json=two), 422, "inputs")
    error(client.post(url, json={"inputs": [{"name": "x", "shape": [2], "datatype": "FP32"}]}), 422,
          "neither data nor parameters.binary_data_size")
    y = X.copy()
    y[1, 1] = np.nan
    error(client.post(url, content=json.dumps(request_json(y)), headers={"content-type": "application/json"}),
          422, "1 non-finite value(s)")
    error(client.post(url, content=b"{", headers={"content-type": "application/json"}), 422, "malformed JSON")
    error(client.post(url, content=b"{}", headers={"content-type": "text/plain"}), 415, "application/json")
    # binary extension
    req = request_json(binary=True)
    body, headers = binary_body(req, X.tobytes()[:-4])
    error(client.post(url, content=body, headers=headers), 422, "binary_data_size 1024", "holds 1020 bytes")
    body, headers = binary_body(req, X.tobytes())
    headers["Inference-Header-Content-Length"] = str(len(body) + 1)
    error(client.post(url, content=body, headers=headers), 422, "Inference-Header-Content-Length")
    req["inputs"][0]["shape"] = [8, 33]
    req["inputs"][0]["parameters"]["binary_data_size"] = X.nbytes
    body, headers = binary_body(req, X.tobytes())
    error(client.post(url, content=body, headers=headers), 422, "1024 bytes but shape [8, 33] of FP32")


def test_openapi_names_the_inference_body(client):
    op = client.get("/openapi.json").json()["paths"]["/v2/models/octav/infer"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferRequest")
