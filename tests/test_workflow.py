"""The Snakemake workflow end to end on a tiny .npz checkpoint (real Snakemake runs, no network)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from octav_core.analysis import SUMMARY_COLUMNS, analyse_layer, summary_rows
from octav_core.checkpoints import open_checkpoint

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
TEST_CONFIG = REPO / "config/test/config.yaml"  # the CI configuration; it reads .test/tiny.npz
TINY = REPO / ".test/tiny.npz"
FIGURES = ("figure1a.png", "figure1a.pdf", "weight_histograms.png", "qerror_histograms.png",
           "clip_by_layer.png", "calibrators.png")
BITS = [3, 4]
POINTS = 40  # as config/test/config.yaml

pytestmark = pytest.mark.skipif(shutil.which("snakemake") is None and
                                 subprocess.run([sys.executable, "-c", "import snakemake"]).returncode != 0,
                                 reason="snakemake is not installed (pip install -e .[workflow])")


def tiny_tensors() -> dict[str, np.ndarray]:
    """The content of .test/tiny.npz (regenerate it with ``python tests/test_workflow.py``)."""
    rng = np.random.default_rng(7)
    conv = rng.laplace(size=(16, 8, 3, 3)).astype(np.float32)
    conv[0, 0] = 0.0  # some exact zeros
    return {
        "conv.weight": conv,
        "conv.bias": rng.normal(size=16).astype(np.float32),  # 1-D: not in the catalog
        "fc.weight": rng.normal(size=(10, 64)).astype(np.float32),
        "proj.weight": rng.standard_t(3, size=(32, 16)).astype(np.float32),
    }


def test_committed_tiny_checkpoint_is_tiny_tensors():
    with np.load(TINY, allow_pickle=False) as archive:
        stored = {name: archive[name] for name in archive.files}
    expected = tiny_tensors()
    assert list(stored) == list(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(stored[name], array)


def write_config(path: Path, **overrides) -> Path:
    config = {"checkpoint": "tiny.npz", "bits": BITS, "grid": "paper", "curve_points": POINTS,
              "layers": "all", "figure_layers": [1, "proj.weight"], "figure_bits": 4} | overrides
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items()))
    return path


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the workflow with ``workdir`` as the working directory; never reaches the network."""
    exe = shutil.which("snakemake")
    cmd = [exe] if exe else [sys.executable, "-m", "snakemake"]
    env = os.environ | {"OCTAV_OFFLINE": "1", "OCTAV_CACHE": str(workdir / "cache")}
    return subprocess.run(cmd + ["-s", str(SNAKEFILE), *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One complete run of the CI configuration; returns (workdir, tensors, completed process)."""
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / ".test").mkdir()
    shutil.copy(TINY, workdir / ".test/tiny.npz")
    shutil.copy(TEST_CONFIG, workdir / "config.yaml")
    proc = snakemake(workdir, "--cores", "2", "--configfile", "config.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return workdir, tiny_tensors(), proc


def test_outputs_are_exactly_those_listed(run):
    workdir, _, _ = run
    out = workdir / "results" / "tiny"
    assert sorted(p.name for p in (out / "layers").iterdir()) == ["1.json", "2.json", "3.json"]
    assert (out / "summary.csv").is_file() and (out / "layers.json").is_file()
    for name in FIGURES:
        head = (out / "figures" / name).read_bytes()[:8]
        assert head == (b"%PDF-1.4\n"[:8] if name.endswith(".pdf") else b"\x89PNG\r\n\x1a\n"), name
    # nothing half-written left behind by the atomic writes
    assert not list(out.rglob("*.part"))


def test_catalog_matches_the_checkpoint(run):
    workdir, tensors, _ = run
    catalog = json.loads((workdir / "results/tiny/layers.json").read_text())
    ckpt = open_checkpoint(str(workdir / ".test/tiny.npz"))
    assert catalog["sha256"] == ckpt.sha256
    assert [(x["index"], x["name"], tuple(x["shape"]), x["numel"]) for x in catalog["layers"]] == [
        (1, "conv.weight", (16, 8, 3, 3), 1152), (2, "fc.weight", (10, 64), 640), (3, "proj.weight", (32, 16), 512)]


def assert_same_record(got, want, path="", rel=1e-6):
    """Equal structure and values; floats to ``rel``: the engine sums float32 data in float32
    partials, whose last digits depend on how LLVM vectorised the loop in each process."""
    assert type(got) is type(want) or {type(got), type(want)} <= {int, float}, path
    if isinstance(want, dict):
        assert got.keys() == want.keys(), path
        for key in want:
            assert_same_record(got[key], want[key], f"{path}/{key}", rel)
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_record(g, w, f"{path}[{i}]", rel)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=rel, abs=1e-300), path
    else:
        assert got == want, path


def test_layer_records_are_analyse_layer(run):
    """Each layer JSON is what octav_core.analysis.analyse_layer gives for that tensor."""
    workdir, tensors, _ = run
    for index, name in ((1, "conv.weight"), (2, "fc.weight"), (3, "proj.weight")):
        record = json.loads((workdir / f"results/tiny/layers/{index}.json").read_text())
        expected = analyse_layer(tensors[name], name, BITS, grid="paper", num=POINTS, index=index)
        assert_same_record(record, json.loads(json.dumps(expected)))
        assert sorted(record["bits"]) == ["3", "4"]
        assert len(record["bits"]["4"]["curve"]["clips"]) == POINTS
    conv = json.loads((workdir / "results/tiny/layers/1.json").read_text())
    assert conv["stats"]["zero_fraction"] == pytest.approx(9 / 1152)


def test_summary_has_one_row_per_layer_and_bits(run):
    workdir, _, _ = run
    with open(workdir / "results/tiny/summary.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == SUMMARY_COLUMNS
        rows = list(reader)
    assert [(r["index"], r["bits"]) for r in rows] == [(str(i), str(b)) for i in (1, 2, 3) for b in BITS]
    record = json.loads((workdir / "results/tiny/layers/3.json").read_text())
    want = summary_rows(record)[1]  # proj.weight at 4 bits
    got = rows[5]
    assert float(got["octav_clip"]) == want["octav_clip"]
    assert float(got["best_empirical_mse"]) == want["best_empirical_mse"]
    assert float(got["best_empirical_mse"]) <= float(got["octav_empirical_mse"]) <= float(got["max_calibration_mse"])


def test_logs_and_benchmarks_are_written(run):
    workdir, _, _ = run
    log = (workdir / "results/tiny/logs/layers/2.log").read_text()
    assert "layer #2 fc.weight (10, 64)" in log
    bench = (workdir / "results/tiny/benchmarks/layers/2.tsv").read_text().splitlines()
    assert bench[0].split("\t")[:2] == ["s", "h:m:s"] and float(bench[1].split("\t")[0]) > 0


def test_second_run_has_nothing_to_do(run):
    workdir, _, _ = run
    proc = snakemake(workdir, "-n", "--configfile", "config.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changed_params_rerun_every_layer(run):
    """A param change (as a new octav_core version would be) reruns the per-layer jobs."""
    workdir, _, _ = run
    proc = snakemake(workdir, "-n", "--configfile", "config.yaml", "--config", "curve_points=41")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", text, re.M))
    assert counts.get("analyse_layer") == "3", text
    assert "params" in text.lower()


def test_deleted_layer_is_the_only_one_redone(run):
    """A rerun after an interruption redoes only what is missing (and what depends on it).

    The state of a run killed half way: some layers done, the others and the summary not.
    """
    workdir, _, _ = run
    out = workdir / "results/tiny"
    before = {p.name: p.stat().st_mtime_ns for p in (out / "layers").iterdir()}
    for name in ("layers/2.json", "summary.csv", "figures/clip_by_layer.png"):
        (out / name).unlink()
    proc = snakemake(workdir, "--cores", "2", "--configfile", "config.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = {p.name: p.stat().st_mtime_ns for p in (workdir / "results/tiny/layers").iterdir()}
    assert after["1.json"] == before["1.json"] and after["3.json"] == before["3.json"]
    assert after["2.json"] != before["2.json"]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout + proc.stderr, re.M))
    assert counts.get("analyse_layer") == "1" and counts.get("summary") == "1", proc.stdout + proc.stderr
    assert (out / "summary.csv").is_file() and (out / "figures/clip_by_layer.png").is_file()


@pytest.mark.parametrize("override, message", [
    (["figure_bits=5"], "figure_bits 5 is not one of bits"),
    (["checkpoint=no-such-model"], "is not a known checkpoint (resnet50-caffe"),
    (["bits=[]"], "bits"),
    (["grid=int", "bits=[1,4]"], "grid 'int' needs bits >= 2"),
    (["curve_points=1"], "curve_points"),
])
def test_bad_config_fails_before_any_job(tmp_path, override, message):
    np.savez(tmp_path / "tiny.npz", **tiny_tensors())
    write_config(tmp_path / "config.yaml")
    proc = snakemake(tmp_path, "--cores", "1", "--configfile", "config.yaml", "--config", *override)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_figure_layer_outside_the_catalog_is_named(tmp_path):
    np.savez(tmp_path / "tiny.npz", **tiny_tensors())
    write_config(tmp_path / "config.yaml", figure_layers=[1, 9])
    proc = snakemake(tmp_path, "--cores", "2", "--configfile", "config.yaml")
    assert proc.returncode != 0
    assert "figure_layers: tiny has no layer #9 (its layers are 1..3)" in proc.stdout + proc.stderr


def test_default_config_dry_run(tmp_path):
    """The default configuration (resnet50-caffe, all layers) plans its catalog without any download."""
    proc = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config/config.yaml"))
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "results/resnet50-caffe/layers.json" in text
    assert "checkpoint jobs" in text
    assert not (tmp_path / "cache").exists()


def test_lint_only_the_justified_conda_lint(tmp_path):
    """`snakemake --lint`: the one remaining lint (no conda env per rule) is justified in the Snakefile."""
    np.savez(tmp_path / "tiny.npz", **tiny_tensors())
    write_config(tmp_path / "config.yaml")
    proc = snakemake(tmp_path, "--lint", "--configfile", "config.yaml")
    text = proc.stdout + proc.stderr
    ours = []
    owner = None
    for line in text.splitlines():
        m = re.match(r"Lints for (?:rule \w+ \(line \d+, (.*)\)|snakefile (.*)):", line)
        if m:
            owner = m.group(1) or m.group(2)
        elif line.startswith("    * ") and owner and not owner.endswith("qat.smk"):
            ours.append(line.strip())
    assert ours, text  # the conda lint is expected on every rule
    assert set(ours) == {"* Specify a conda environment or container for each rule.:"}, ours
    assert "conda environment" in SNAKEFILE.read_text()


if __name__ == "__main__":
    np.savez(TINY, **tiny_tensors())
    print(f"wrote {TINY}")
