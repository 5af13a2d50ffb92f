"""``/layers`` on a tiny real checkpoint: catalog, records served or computed once and written, curves."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from octav_core import mse_curve
from octav_core.analysis import analyse_layer
from octav_core.checkpoints import KNOWN_SPECS, open_checkpoint
from service import layer_store
from service.app import create_app
from service.settings import Settings

LAYERS = {"conv1.weight": (8, 3, 3, 3), "conv1.bias": (8,), "fc.weight": (10, 32)}


@pytest.fixture()
def env(tmp_path):
    rng = np.random.default_rng(3)
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    arrays = {name: rng.laplace(size=shape).astype(np.float32) for name, shape in LAYERS.items()}
    np.savez(ckpts / "tiny.npz", **arrays)
    settings = Settings(results_dir=tmp_path / "results", default_checkpoint="tiny", layer_bits=[2, 4],
                        layer_curve_points=50, allowed_checkpoint_paths=[ckpts])
    (tmp_path / "results").mkdir()
    app = create_app(settings)
    with TestClient(app) as client:
        yield client, settings, arrays, ckpts / "tiny.npz"


def test_catalog_of_an_allowed_file(env):
    client, _, arrays, path = env
    r = client.get("/layers", params={"checkpoint": "tiny"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["checkpoint"] == "tiny" and body["sha256"] == open_checkpoint(str(path)).sha256
    assert [(layer["index"], layer["name"], layer["shape"], layer["analysed"]) for layer in body["layers"]] == [
        (1, "conv1.weight", [8, 3, 3, 3], False), (2, "fc.weight", [10, 32], False)]
    assert client.get("/layers").json() == body  # tiny is the default here


def test_layer_computed_once_written_then_served(env):
    client, settings, arrays, _ = env
    r = client.get("/layers/2")
    assert r.status_code == 200 and r.headers["x-octav-source"] == "computed"
    written = settings.results_dir / "tiny" / "layers" / "2.json"
    assert json.loads(written.read_text()) == r.json()
    expected = analyse_layer(arrays["fc.weight"], "fc.weight", [2, 4], num=50, index=2)
    assert r.json() == json.loads(json.dumps(expected))
    assert not [p for p in written.parent.iterdir() if p.name != "2.json"]  # no temporary file left
    again = client.get("/layers/2")
    assert again.headers["x-octav-source"] == "results" and again.json() == r.json()
    assert client.get("/layers").json()["layers"][1]["analysed"] is True


def test_curve_from_the_record_and_for_other_bits(env):
    client, _, arrays, _ = env
    record = client.get("/layers/1").json()
    r = client.get("/layers/1/curve", params={"bits": 4, "grid": "paper"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["source"] == "results" and (got["layer"], got["name"], got["bits"]) == (1, "conv1.weight", 4)
    assert got["clips"] == record["bits"]["4"]["curve"]["clips"]
    assert got["octav_clip"] == record["bits"]["4"]["octav"]["clip"]
    assert got["octav_mse"] == record["bits"]["4"]["octav"]["theoretical_mse"]
    other = client.get("/layers/1/curve", params={"bits": 3, "grid": "int"}).json()
    ref = mse_curve(arrays["conv1.weight"], bits=3, grid="int", num=50)
    assert other["source"] == "computed" and other["grid"] == "int"
    np.testing.assert_allclose(other["empirical_mse"], ref.empirical_mse, rtol=1e-12)
    assert min(other["theoretical_mse"]) >= other["octav_mse"] * (1 - 1e-12)


@pytest.mark.parametrize("url,status,fragment", [
    ("/layers/3", 404, "no layer #3; its layers are #1..#2"),
    ("/layers/0", 404, "numbered from 1"),
    ("/layers/" + "9" * 300, 404, "its layers are #1..#2"),
    ("/layers/abc", 422, "path.index"),
    ("/layers?checkpoint=nope", 404, "valid checkpoints: "),
    ("/layers/1?checkpoint=../../etc/passwd", 404, "unknown checkpoint '../../etc/passwd'"),
    ("/layers/1/curve?bits=17", 422, "query.bits"),
    ("/layers/1/curve?bits=1&grid=int", 422, "grid 'int' needs bits >= 2"),
    ("/layers/1/curve?grid=nope", 422, "query.grid"),
    ("/layers/1/curve?bit=8", 422, "unknown query parameter(s) 'bit'"),
])
def test_layer_errors(env, url, status, fragment):
    client = env[0]
    r = client.get(url)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]
    if "checkpoint=nope" in url:
        assert "tiny" in r.json()["error"] and "resnet50-caffe" in r.json()["error"]


def test_concurrent_first_requests_compute_once(env, monkeypatch):
    _, settings, _, _ = env
    calls = []

    def counting(*args, **kwargs):  # the real analysis, counted
        calls.append(args[1])
        return analyse_layer(*args, **kwargs)

    monkeypatch.setattr(layer_store, "analyse_layer", counting)
    app = create_app(settings)

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await asyncio.gather(*(c.get("/layers/1") for _ in range(8)))

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 8
    assert calls == ["conv1.weight"]
    assert all(r.json() == responses[0].json() for r in responses)


def test_results_only_checkpoint(env):
    client, settings, _, _ = env
    record = client.get("/layers/1").json()
    other = settings.results_dir / "other"
    (other / "layers").mkdir(parents=True)
    catalog = {"sha256": "ab" * 32, "layers": [{"index": 1, "name": "conv1.weight", "shape": [8, 3, 3, 3], "numel": 216},
                                               {"index": 2, "name": "fc.weight", "shape": [10, 32], "numel": 320}]}
    (other / "layers.json").write_text(json.dumps(catalog))
    (other / "layers" / "1.json").write_text(json.dumps(record))
    assert client.get("/layers/1", params={"checkpoint": "other"}).json() == record
    assert client.get("/layers", params={"checkpoint": "other"}).json()["sha256"] == "ab" * 32
    r = client.get("/layers/2", params={"checkpoint": "other"})
    assert r.status_code == 503 and "only results are served" in r.json()["error"]


def test_readiness(env, tmp_path):
    client, settings, _, _ = env
    r = client.get("/health/ready")
    assert r.status_code == 200 and r.json()["ready"] is True, r.text
    missing = create_app(settings.model_copy(update={"results_dir": tmp_path / "none", "default_checkpoint": "x"}))
    with TestClient(missing) as c:
        r = c.get("/health/ready")
    assert r.status_code == 503
    assert r.json()["results"]["ok"] is False and r.json()["checkpoint"]["ok"] is False
    assert "does not exist" in r.json()["results"]["detail"]


def test_uncached_registered_checkpoint_is_503_not_a_download(env):
    client = env[0]
    uncached = [name for name, spec in KNOWN_SPECS.items() if not spec.is_cached()]
    if not uncached:
        pytest.skip("every registered checkpoint is cached here")
    r = client.get("/layers", params={"checkpoint": uncached[0]})
    assert r.status_code == 503 and "not in this server's cache" in r.json()["error"]


@pytest.mark.parametrize("kwargs,fragment", [
    ({"layer_bits": [2, 12]}, "supports bits <= 10"),
    ({"layer_bits": [1], "layer_grid": "int"}, "grid 'int' needs bits >= 2"),
    ({"layer_bits": [4, 4]}, "distinct"),
    ({"layer_grid": "fancy"}, "unknown grid 'fancy'"),
])
def test_settings_refuse_an_analysis_the_engine_cannot_run(kwargs, fragment):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=fragment):
        Settings(**kwargs)


def test_a_layer_with_nan_weights_is_a_named_422_not_a_500(tmp_path):
    (tmp_path / "c").mkdir()
    bad = np.ones((4, 4), np.float32)
    bad[1, 2] = np.nan
    np.savez(tmp_path / "c" / "broken.npz", w=bad)
    app = create_app(Settings(results_dir=tmp_path / "r", layer_bits=[4], layer_curve_points=10,
                              allowed_checkpoint_paths=[tmp_path / "c"]))
    with TestClient(app) as client:
        r = client.get("/layers/1", params={"checkpoint": "broken"})
        assert r.status_code == 422 and "broken layer #1 cannot be analysed" in r.json()["error"]
        assert "1 non-finite value(s)" in r.json()["error"]
        r = client.get("/layers/1/curve", params={"checkpoint": "broken"})
        assert r.status_code == 422
    assert not (tmp_path / "r" / "broken" / "layers" / "1.json").exists()
