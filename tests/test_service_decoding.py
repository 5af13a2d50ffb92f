"""Tensor decoders of the service: every wire format read back exactly, every bad body named."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import safetensors.numpy
import torch
from safetensors.torch import save as torch_save

from service import decoding
from service.decoding import DecodeError


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


@pytest.mark.parametrize("name,dtype", [("FP16", np.float16), ("FP32", np.float32), ("FP64", np.float64)])
def test_raw_bytes_round_trip(name, dtype):
    x = np.arange(24, dtype=dtype).reshape(2, 3, 4) - 7
    got = decoding.from_bytes(x.astype(f"<{np.dtype(dtype).char}").tobytes(), (2, 3, 4), decoding.parse_datatype(name))
    assert got.dtype == dtype and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, x)


def test_bf16_bytes_widen_exactly_to_float32():
    ref = torch.tensor([[1.5, -2.25], [3.0e38, 1e-3]], dtype=torch.bfloat16)
    raw = ref.view(torch.int16).numpy().astype("<i2").tobytes()
    got = decoding.from_bytes(raw, (2, 2), decoding.DATATYPES["BF16"])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ref.float().numpy())


def test_byte_length_mismatch_names_both_lengths():
    with pytest.raises(DecodeError, match=r"has 10 bytes but shape \[2, 2\] of FP32 \(4 bytes each\) needs 16"):
        decoding.from_bytes(b"\0" * 10, (2, 2), decoding.DATATYPES["FP32"])


@pytest.mark.parametrize("name", ["INT8", "FP8", "float", "", 3, None])
def test_unknown_datatype_lists_the_supported(name):
    with pytest.raises(DecodeError, match="supported: FP16, BF16, FP32, FP64"):
        decoding.parse_datatype(name)


def test_datatype_is_case_insensitive():
    assert decoding.parse_datatype("fp32").name == "FP32"


@pytest.mark.parametrize("shape", [[-1, 2], [2.5], "3", [True], [1] * 33])
def test_bad_shapes(shape):
    with pytest.raises(DecodeError, match="shape"):
        decoding.parse_shape(shape)


def test_json_data_flat_and_nested_agree():
    flat = decoding.from_json_data([1, 2.5, -3, 4, 5, 6], [2, 3], "FP32")
    nested = decoding.from_json_data([[1, 2.5, -3], [4, 5, 6]], [2, 3], "FP32")
    assert flat.dtype == np.float32 and flat.shape == (2, 3)
    np.testing.assert_array_equal(flat, nested)
    np.testing.assert_array_equal(flat, [[1, 2.5, -3], [4, 5, 6]])


def test_json_data_bf16_rounds_to_bfloat16():
    values = [1.0009765625, 3.14159, -2.7182818]  # none of them a bfloat16
    got = decoding.from_json_data(values, [3], "BF16")
    np.testing.assert_array_equal(got, torch.tensor(values).to(torch.bfloat16).float().numpy())


@pytest.mark.parametrize("data,match", [
    ([1, 2, 3], r"holds 3 values but tensor.shape \[2, 2\] needs 4"),
    ([[1, 2], [3]], "not a rectangular list"),
    ([1, "2", 3, 4], "numbers only"),
    ([1, None, 3, 4], "numbers only"),
    ([True, False, True, False], "booleans"),
    ({"a": 1}, "must be a flat or nested list"),
    ([1, {"x": 2}, 3, 4], "numbers only"),
])
def test_bad_json_data(data, match):
    with pytest.raises(DecodeError, match=match):
        decoding.from_json_data(data, [2, 2], "FP32")


def test_json_overflow_becomes_inf_for_the_engine_to_report():
    got = decoding.from_json_data([1e6, 1.0], [2], "FP16")
    assert np.isinf(got[0]) and got[1] == 1.0


@pytest.mark.parametrize("dtype", ["<f2", "<f4", "<f8", ">f4"])
@pytest.mark.parametrize("fortran", [False, True])
def test_npy_round_trip(dtype, fortran):
    x = (np.arange(12).reshape(3, 4) * 0.5 - 2).astype(dtype)
    if fortran:
        x = np.asfortranarray(x)
    got = decoding.from_npy(npy_bytes(x))
    assert got.dtype.isnative and got.dtype.itemsize == x.dtype.itemsize
    np.testing.assert_array_equal(got, x)


def test_npy_version_2_header():
    x = np.ones((2, 2), np.float32)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, x, version=(2, 0))
    np.testing.assert_array_equal(decoding.from_npy(buf.getvalue()), x)


@pytest.mark.parametrize("body,match", [
    (b"PK\x03\x04 a zip", "not a .npy file"),
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'", "malformed .npy header"),
    (b"\x93NUMPY\x09\x00\x00\x00", "malformed .npy header|format version"),
])
def test_malformed_npy(body, match):
    with pytest.raises(DecodeError, match=match):
        decoding.from_npy(body)


def test_npy_object_arrays_are_refused_without_unpickling():
    body = npy_bytes(np.array([1.0, 2.0]))  # then swap in an object dtype header
    obj = io.BytesIO()
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DecodeError, match="not supported"):
        decoding.from_npy(obj.getvalue())
    assert decoding.from_npy(body).tolist() == [1.0, 2.0]


@pytest.mark.parametrize("dtype", [np.int32, np.complex64, np.uint8])
def test_npy_non_float_dtype(dtype):
    with pytest.raises(DecodeError, match="float16, float32 or float64"):
        decoding.from_npy(npy_bytes(np.zeros(4, dtype)))


def test_npy_header_shape_larger_than_data_is_refused_before_allocating():
    body = bytearray(npy_bytes(np.zeros(4, np.float32)))
    text = bytes(body).replace(b"(4,)", b"(9999999999,)".ljust(4))  # header grows; keep it parseable
    header_len = int.from_bytes(body[8:10], "little")
    new_header = text[10:10 + header_len + 9]
    crafted = b"\x93NUMPY\x01\x00" + len(new_header).to_bytes(2, "little") + new_header + b"\0" * 16
    with pytest.raises(DecodeError, match="needs 39999999996"):
        decoding.from_npy(crafted)


def test_safetensors_single_and_named():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.linspace(-1, 1, 8).astype(np.float64)
    one = safetensors.numpy.save({"w": a})
    np.testing.assert_array_equal(decoding.from_safetensors(one), a)
    two = safetensors.numpy.save({"w": a, "v": b}, metadata={"k": "v"})
    np.testing.assert_array_equal(decoding.from_safetensors(two, "v"), b)
    with pytest.raises(DecodeError, match=r"holds 2 tensors; pick one with \?tensor=NAME \(v, w\)"):
        decoding.from_safetensors(two)
    with pytest.raises(DecodeError, match="no tensor 'x'; it holds: v, w"):
        decoding.from_safetensors(two, "x")


def test_safetensors_bf16_and_fp16_from_torch():
    t = torch.randn(4, 5)
    for dtype in (torch.bfloat16, torch.float16):
        blob = torch_save({"t": t.to(dtype)})
        np.testing.assert_array_equal(decoding.from_safetensors(blob), t.to(dtype).float().numpy())


@pytest.mark.parametrize("blob,match", [
    (b"\x01\x02", "shorter than its 8-byte header length"),
    ((1 << 40).to_bytes(8, "little") + b"{}", "header length"),
    ((2).to_bytes(8, "little") + b"[]", "not a JSON object"),
    ((3).to_bytes(8, "little") + b"{x}", "not JSON"),
    ((2).to_bytes(8, "little") + b"{}", "holds no tensor"),
])
def test_malformed_safetensors(blob, match):
    with pytest.raises(DecodeError, match=match):
        decoding.from_safetensors(blob)


def test_safetensors_bad_entries():
    def blob(entry, data=b"\0" * 8):
        header = json.dumps({"t": entry}).encode()
        return len(header).to_bytes(8, "little") + header + data

    with pytest.raises(DecodeError, match="dtype 'I32' of 't' is not supported"):
        decoding.from_safetensors(blob({"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}))
    with pytest.raises(DecodeError, match="data_offsets"):
        decoding.from_safetensors(blob({"dtype": "F32", "shape": [2], "data_offsets": [0, 80]}))
    with pytest.raises(DecodeError, match=r"has 8 bytes but shape \[3\] of FP32"):
        decoding.from_safetensors(blob({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}))
    with pytest.raises(DecodeError, match="needs dtype, shape and data_offsets"):
        decoding.from_safetensors(blob({"dtype": "F32"}))
