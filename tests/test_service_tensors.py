"""``POST /clip`` and ``POST /curve`` through the ASGI app: same numbers as octav_core, clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import safetensors.numpy
from fastapi.testclient import TestClient

from octav_core import mse_curve, optimal_clip
from service.app import create_app
from service.settings import Settings

RNG = np.random.default_rng(5)
X = RNG.laplace(size=(16, 64)).astype(np.float32)
RAW = {"content-type": "application/octet-stream"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(results_dir=tmp_path_factory.mktemp("results"), max_body_bytes=1 << 20,
                        max_json_body_bytes=1 << 20, max_curve_points=500)
    with TestClient(create_app(settings)) as c:
        yield c


def npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def oip(arr, datatype="FP32", nested=False):
    data = arr.tolist() if nested else arr.reshape(-1).tolist()
    return {"shape": list(arr.shape), "datatype": datatype, "data": data}


def assert_error(r, status, *fragments):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status and isinstance(body["code"], str)
    for f in fragments:
        assert f in body["error"], (f, body["error"])
    return body


# ----------------------------------------------------------------------------- the numbers
def test_clip_octet_stream_matches_engine(client):
    r = client.post("/clip", params={"shape": "16,64", "bits": 3}, content=X.tobytes(), headers=RAW)
    assert r.status_code == 200, r.text
    got, ref = r.json(), optimal_clip(X, bits=3)
    assert got["clip"] == pytest.approx(ref.clip, rel=1e-12)
    assert got["theoretical_mse"] == pytest.approx(ref.theoretical_mse, rel=1e-12)
    assert got["empirical_mse"] == pytest.approx(ref.empirical_mse, rel=1e-12)
    assert (got["bits"], got["grid"], got["numel"], got["shape"]) == (3, "paper", X.size, [16, 64])
    assert got["iterations"] == ref.iterations and got["converged"] is True


@pytest.mark.parametrize("kind", ["json-flat", "json-nested", "npy", "safetensors", "repeated-shape"])
def test_every_content_type_gives_the_same_clip(client, kind):
    ref = optimal_clip(X, bits=4).clip
    if kind.startswith("json"):
        r = client.post("/clip", json={"tensor": oip(X, nested=kind == "json-nested")})
    elif kind == "npy":
        r = client.post("/clip", content=npy(X), headers={"content-type": "application/x-npy"})
    elif kind == "safetensors":
        r = client.post("/clip", content=safetensors.numpy.save({"w": X, "b": X[0]}), params={"tensor": "w"},
                        headers={"content-type": "application/vnd.safetensors"})
    else:
        r = client.post("/clip?shape=16&shape=64&datatype=FP32", content=X.tobytes(), headers=RAW)
    assert r.status_code == 200, r.text
    assert r.json()["clip"] == pytest.approx(ref, rel=1e-12)


def test_per_channel_and_per_block(client):
    r = client.post("/clip", params={"shape": "16,64", "axis": 0}, content=X.tobytes(), headers=RAW)
    ref = optimal_clip(X, axis=0)
    assert r.status_code == 200
    np.testing.assert_allclose(r.json()["clip"], ref.clip, rtol=1e-12)
    assert len(r.json()["empirical_mse"]) == 16
    r = client.post("/clip", json={"tensor": oip(X), "block_size": 32, "bits": 5, "grid": "int"})
    ref = optimal_clip(X, bits=5, grid="int", block_size=32)
    np.testing.assert_allclose(r.json()["clip"], ref.clip, rtol=1e-12)
    assert np.asarray(r.json()["clip"]).shape == (16, 2) and r.json()["grid"] == "int"


def test_fp16_bf16_fp64_inputs(client):
    for datatype, arr in (("FP16", X.astype(np.float16)), ("FP64", X.astype(np.float64))):
        r = client.post("/clip", params={"shape": "16,64", "datatype": datatype}, content=arr.tobytes(), headers=RAW)
        assert r.json()["clip"] == pytest.approx(optimal_clip(arr).clip, rel=1e-12), datatype
    bf16_bits = (X.view(np.uint32) >> 16).astype("<u2")
    widened = (bf16_bits.astype(np.uint32) << 16).view(np.float32)
    r = client.post("/clip", params={"shape": "16,64", "datatype": "BF16"}, content=bf16_bits.tobytes(), headers=RAW)
    assert r.json()["clip"] == pytest.approx(optimal_clip(widened).clip, rel=1e-12)


def test_exclude_zeros_and_unsigned_grid(client):
    y = np.abs(X).copy()
    y[:, :8] = 0
    for exclude in (True, False):
        r = client.post("/clip", params={"shape": "16,64", "grid": "uint", "exclude_zeros": exclude},
                        content=y.tobytes(), headers=RAW)
        ref = optimal_clip(y, grid="uint", exclude_zeros=exclude)
        assert r.json()["clip"] == pytest.approx(ref.clip, rel=1e-12)
    assert client.post("/clip", params={"shape": "16,64", "exclude_zeros": False}, content=y.tobytes(),
                       headers=RAW).json()["clip"] != client.post("/clip", params={"shape": "16,64"},
                                                                  content=y.tobytes(), headers=RAW).json()["clip"]


def test_query_and_body_fields_merge(client):
    r = client.post("/clip?bits=6", json={"tensor": oip(X)})
    assert r.json()["bits"] == 6
    r = client.post("/clip?bits=6", json={"tensor": oip(X), "bits": 6})
    assert r.status_code == 200
    assert_error(client.post("/clip?bits=6", json={"tensor": oip(X), "bits": 5}), 422, "bits is given twice")


def test_curve_matches_engine(client):
    r = client.post("/curve", params={"shape": "16,64", "num": 50, "bits": 4}, content=X.tobytes(), headers=RAW)
    assert r.status_code == 200, r.text
    got, ref = r.json(), mse_curve(X, bits=4, num=50)
    np.testing.assert_allclose(got["clips"], ref.clips, rtol=1e-12)
    np.testing.assert_allclose(got["empirical_mse"], ref.empirical_mse, rtol=1e-12)
    np.testing.assert_allclose(got["theoretical_mse"], ref.theoretical_mse, rtol=1e-12)
    assert got["octav"]["clip"] == pytest.approx(optimal_clip(X).clip, rel=1e-12)
    # the OCTAV clip minimises J: no point of the curve is lower
    assert min(got["theoretical_mse"]) >= got["octav"]["theoretical_mse"] * (1 - 1e-12)


def test_curve_explicit_clips(client):
    clips = [0.5, 1.0, 2.0, 4.0]
    r = client.post("/curve", json={"tensor": oip(X), "clips": clips, "bits": 2})
    ref = mse_curve(X, bits=2, clips=clips)
    assert r.json()["clips"] == clips
    np.testing.assert_allclose(r.json()["empirical_mse"], ref.empirical_mse, rtol=1e-12)
    r2 = client.post("/curve", params=[("clips", c) for c in clips] + [("bits", 2)], json={"tensor": oip(X)})
    assert r2.json()["empirical_mse"] == r.json()["empirical_mse"]


# ----------------------------------------------------------------------------- the errors
def test_415_for_other_content_types(client):
    assert_error(client.post("/clip", content=b"1,2,3", headers={"content-type": "text/csv"}), 415,
                 "'text/csv'", "application/json", "application/x-npy")
    assert_error(client.post("/clip", content=b"abc"), 415, "no Content-Type")


def test_413_from_content_length_and_from_a_streamed_body(client):
    big = np.zeros((1 << 20) // 4 + 1, np.float32).tobytes()
    body = assert_error(client.post("/clip", params={"shape": len(big) // 4}, content=big, headers=RAW), 413,
                        f"{len(big)} bytes", "limit is 1048576")
    assert body["code"] == "payload_too_large"

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(20):
            yield b"\0" * 65536

    assert_error(client.post("/clip", params={"shape": 20 * 16384}, content=chunks(), headers=RAW), 413,
                 "limit is 1048576")


@pytest.mark.parametrize("params,body,fragments", [
    ({"shape": "16,64"}, b"\0" * 100, ["100 bytes", "needs 4096"]),
    ({"shape": "2,2", "datatype": "INT8"}, b"\0" * 4, ["unknown or unsupported datatype 'INT8'", "FP32"]),
    ({"shape": "0,4"}, b"", ["empty tensor"]),
    ({"shape": "2,x"}, b"\0" * 16, ["shape must be non-negative integers"]),
    ({}, b"\0" * 16, ["needs ?shape="]),
    ({"shape": "4", "axis": 3}, b"\0" * 16, ["axis 3 is out of range"]),
    ({"shape": "4", "block_size": 3}, b"\0" * 16, ["block_size 3 does not divide"]),
    ({"shape": "4", "tensor": "w"}, b"\0" * 16, ["tensor query parameter applies to application/vnd.safetensors"]),
])
def test_422_binary_inputs(client, params, body, fragments):
    assert_error(client.post("/clip", params=params, content=body, headers=RAW), 422, *fragments)


def test_422_non_finite_values_are_counted(client):
    y = X.copy()
    y[0, 3], y[2, 5], y[7, 7] = np.nan, np.inf, -np.inf
    assert_error(client.post("/clip", params={"shape": "16,64"}, content=y.tobytes(), headers=RAW), 422,
                 "3 non-finite value(s)", "(0, 3)")
    # JSON's NaN/Infinity literals reach the same check
    r = client.post("/clip", content=b'{"tensor": {"shape": [3], "datatype": "FP64", "data": [1, NaN, Infinity]}}',
                    headers={"content-type": "application/json"})
    assert_error(r, 422, "2 non-finite value(s)")


@pytest.mark.parametrize("bits", [0, 17, -3])
def test_422_bits_out_of_range(client, bits):
    body = assert_error(client.post("/clip", params={"shape": "16,64", "bits": bits}, content=X.tobytes(),
                                    headers=RAW), 422, "bits")
    assert body["errors"][0]["loc"] == "query.bits"
    assert_error(client.post("/clip", json={"tensor": oip(X), "bits": bits}), 422, "bits")


def test_422_grid_minimum_bits_and_unknown_grid(client):
    assert_error(client.post("/clip", params={"shape": "16,64", "bits": 1, "grid": "int"}, content=X.tobytes(),
                             headers=RAW), 422, "grid 'int' needs bits >= 2")
    assert_error(client.post("/clip", params={"shape": "16,64", "grid": "fancy"}, content=X.tobytes(),
                             headers=RAW), 422, "query.grid", "paper")


def test_422_negative_under_unsigned_grid(client):
    assert_error(client.post("/clip", params={"shape": "16,64", "grid": "paper-unsigned"}, content=X.tobytes(),
                             headers=RAW), 422, "unsigned", "negative value(s)")


@pytest.mark.parametrize("body,fragments", [
    (b'{"tensor": ', ["malformed JSON body"]),
    (b"[1, 2, 3]", ["must be an object with a 'tensor' field"]),
    (b'{"tensor": {"shape": [2], "datatype": "FP32", "data": [1, 2]}, "bitz": 4}', ["bitz", "Extra inputs"]),
    (b'{"tensor": {"shape": [2], "datatype": "FP32"}}', ["tensor.data", "Field required"]),
    (b'{"tensor": {"shape": [2], "datatype": "FP32", "data": [1, 2, 3]}}', ["holds 3 values"]),
    (b'{"tensor": {"shape": [2], "datatype": "U8", "data": [1, 2]}}', ["datatype 'U8'"]),
    (b'{"tensor": {"shape": [2], "datatype": "FP32", "data": [1, 2]}, "axis": 1}', ["axis 1 is out of range"]),
    (b'\xff\xfe{}', ["malformed JSON body"]),
    (b'[' * 100000 + b']' * 100000, ["malformed JSON body"]),
])
def test_422_malformed_json(client, body, fragments):
    assert_error(client.post("/clip", content=body, headers={"content-type": "application/json"}), 422, *fragments)


def test_422_malformed_npy_and_safetensors(client):
    assert_error(client.post("/clip", content=b"not an npy", headers={"content-type": "application/x-npy"}),
                 422, "not a .npy file")
    assert_error(client.post("/clip", content=npy(np.arange(4)), headers={"content-type": "application/x-npy"}),
                 422, "float16, float32 or float64")
    assert_error(client.post("/clip", params={"shape": 4}, content=npy(X),
                             headers={"content-type": "application/x-npy"}), 422, "octet-stream only")
    assert_error(client.post("/clip", content=b"\0" * 4, headers={"content-type": "application/vnd.safetensors"}),
                 422, "safetensors")


def test_422_overflowing_fp64_input_is_named_not_a_500(client):
    y = np.array([1e200, -3e200, 2.0], np.float64)
    assert_error(client.post("/clip", params={"shape": 3, "datatype": "FP64"}, content=y.tobytes(), headers=RAW),
                 422, "too large", "overflows float64")


def test_curve_errors(client):
    assert_error(client.post("/curve", json={"tensor": oip(X), "num": 501}), 422, "at most 500 points")
    assert_error(client.post("/curve", json={"tensor": oip(X), "num": 5, "clips": [1.0]}), 422, "num or clips")
    assert_error(client.post("/curve", json={"tensor": oip(X), "clips": [1.0, -2.0]}), 422, "clips must be finite and > 0")
    assert_error(client.post("/curve", json={"tensor": oip(X), "clips": []}), 422, "clips is empty")
    assert_error(client.post("/curve?num=0", json={"tensor": oip(X)}), 422, "query.num")


def test_422_unknown_query_parameters(client):
    assert_error(client.post("/clip", params={"shape": "16,64", "bit": 8}, content=X.tobytes(), headers=RAW), 422,
                 "unknown query parameter(s) 'bit'", "bits")
    assert_error(client.post("/curve", params={"shape": "16,64", "axis": 0}, content=X.tobytes(), headers=RAW), 422,
                 "'axis'", "a curve is per tensor")


def test_503_with_retry_after_when_the_gate_is_full(client):
    gate = client.app.state.gate
    gate.in_flight = gate.max_in_flight
    try:
        r = client.post("/clip", params={"shape": "16,64"}, content=X.tobytes(), headers=RAW)
    finally:
        gate.in_flight = 0
    assert_error(r, 503, "limit of 16 concurrent")
    assert r.headers["retry-after"] == "1"
    assert client.post("/clip", params={"shape": "16,64"}, content=X.tobytes(), headers=RAW).status_code == 200


def test_503_when_the_byte_budget_is_spent(client):
    gate = client.app.state.gate
    budget, gate.max_bytes = gate.max_bytes, 10_000
    gate.in_flight, gate.in_flight_bytes = 1, 8_000  # another request is holding 8000 bytes
    try:
        r = client.post("/clip", params={"shape": "16,64"}, content=X.tobytes(), headers=RAW)
        small = client.post("/clip", params={"shape": "4"}, content=X.reshape(-1)[:4].tobytes(), headers=RAW)
    finally:
        gate.max_bytes, gate.in_flight, gate.in_flight_bytes = budget, 0, 0
    assert_error(r, 503, "10000 bytes of request bodies in flight")
    assert r.headers["retry-after"] == "1"
    assert small.status_code == 200  # 16 more bytes fit
    gate.max_bytes = 1000  # smaller than the body: admitted all the same when nothing else is in flight
    try:
        alone = client.post("/clip", params={"shape": "16,64"}, content=X.tobytes(), headers=RAW)
    finally:
        gate.max_bytes = budget
    assert alone.status_code == 200 and gate.in_flight == 0 and gate.in_flight_bytes == 0


def test_unknown_route_and_method_are_json(client):
    assert_error(client.get("/nothing"), 404, "Not Found")
    assert_error(client.get("/clip"), 405, "Method Not Allowed")


def test_openapi_documents_every_content_type_and_error(client):
    spec = client.get("/openapi.json").json()
    for path in ("/clip", "/curve"):
        op = spec["paths"][path]["post"]
        assert set(op["requestBody"]["content"]) == {"application/json", "application/octet-stream",
                                                      "application/x-npy", "application/vnd.safetensors"}
        assert {"200", "413", "415", "422", "503"} <= set(op["responses"])
    assert "ClipIn" in spec["components"]["schemas"] and "InferRequest" in spec["components"]["schemas"]
    assert {"404", "422", "503"} <= set(spec["paths"]["/layers/{index}"]["get"]["responses"])
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # every 422 is documented as ErrorOut
    assert client.get("/docs").status_code == 200


# ----------------------------------------------------------------------------- property: 200 or 422, never 500
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SIZES = {"FP16": 2, "BF16": 2, "FP32": 4, "FP64": 8}


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(datatype=st.sampled_from(sorted(SIZES)), dims=st.lists(st.integers(0, 6), max_size=3),
       payload=st.binary(max_size=600), bits=st.integers(-1, 18), grid=st.sampled_from(["paper", "int", "uint", "x"]),
       axis=st.one_of(st.none(), st.integers(-4, 4)))
def test_any_binary_body_gives_200_or_a_named_422(client, datatype, dims, payload, bits, grid, axis):
    params = {"shape": ",".join(map(str, dims)), "datatype": datatype, "bits": bits, "grid": grid}
    if axis is not None:
        params["axis"] = axis
    if np.prod(dims, dtype=np.int64) * SIZES[datatype] <= len(payload) and dims:
        payload = payload[: int(np.prod(dims)) * SIZES[datatype]]  # often a body of the right length
    r = client.post("/clip", params=params, content=payload, headers=RAW)
    assert r.status_code in (200, 422), r.text
    assert r.json()["error"] if r.status_code == 422 else "clip" in r.json()


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(datatype=st.sampled_from(sorted(SIZES)),
       values=st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=16), min_size=1, max_size=64),
       rows=st.sampled_from([1, 2, 4]), bits=st.integers(1, 16), grid=st.sampled_from(["paper", "int"]),
       per_row=st.booleans())
def test_finite_tensors_give_the_engines_clip(client, datatype, values, rows, bits, grid, per_row):
    from service.decoding import DATATYPES, from_bytes

    n = len(values) - len(values) % rows or rows
    x = np.resize(np.asarray(values, np.float32), n).reshape(rows, -1)
    if datatype == "BF16":
        payload = (x.view(np.uint32) >> 16).astype("<u2").tobytes()
    else:
        payload = x.astype(DATATYPES[datatype].wire).tobytes()
    params = {"shape": f"{rows},{n // rows}", "datatype": datatype, "bits": bits, "grid": grid}
    if per_row:
        params["axis"] = 0
    r = client.post("/clip", params=params, content=payload, headers=RAW)
    decoded = from_bytes(payload, (rows, n // rows), DATATYPES[datatype])
    if grid == "int" and bits < 2:
        assert r.status_code == 422 and "needs bits >= 2" in r.json()["error"]
        return
    assert r.status_code == 200, r.text
    ref = optimal_clip(decoded, bits=bits, grid=grid, axis=0 if per_row else None)
    np.testing.assert_allclose(r.json()["clip"], ref.clip, rtol=1e-12)
    assert r.json()["shape"] == [rows, n // rows]
