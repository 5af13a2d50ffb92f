import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from octav_core import optimal_clip
from octav_core.cli import main


@pytest.fixture
def weights(tmp_path):
    w = np.random.default_rng(0).laplace(size=(16, 200)).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    np.savez(tmp_path / "many.npz", a=w, b=w[:4])
    save_file({"layer.weight": w, "other": w[:2].copy()}, str(tmp_path / "m.safetensors"))
    return w, tmp_path


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_clip_json_for_every_file_kind(weights, capsys):
    w, d = weights
    want = optimal_clip(w, bits=3).clip
    for spec in (d / "w.npy", f"{d / 'many.npz'}:a", f"{d / 'm.safetensors'}:layer.weight"):
        out = run_json(capsys, "clip", str(spec), "--bits", "3", "--json")
        assert out["clip"] == pytest.approx(want) and out["shape"] == [16, 200] and out["converged"]


def test_clip_per_channel_and_human_output(weights, capsys):
    w, d = weights
    out = run_json(capsys, "clip", str(d / "w.npy"), "--axis", "0", "--json")
    assert np.allclose(out["clip"], optimal_clip(w, axis=0).clip)
    assert main(["clip", str(d / "w.npy"), "--block-size", "50"]) == 0
    text = capsys.readouterr().out
    assert "64 clips" in text and "converged" in text


def test_curve_to_json_and_png(weights, capsys, tmp_path):
    _, d = weights
    out = run_json(capsys, "curve", str(d / "w.npy"), "--bits", "4", "--num", "25")
    assert len(out["clips"]) == 25 and out["octav_clip"] > 0
    png = tmp_path / "c.png"
    assert main(["curve", str(d / "w.npy"), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv,match", [
    (["clip", "{d}/many.npz"], "holds 2 tensors"),
    (["clip", "{d}/many.npz:zzz"], "no tensor 'zzz'"),
    (["clip", "{d}/nothing.npy"], "No such file"),
    (["clip", "{d}/w.txt"], "unsupported file type"),
    (["clip", "{d}/obj.npy"], "pickle"),
    (["clip", "{d}/w.npy", "--bits", "20"], "1..16"),
])
def test_errors_are_one_line_and_exit_2(weights, capsys, argv, match):
    _, d = weights
    (d / "w.txt").write_text("1 2 3")
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert main([a.format(d=d) for a in argv]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_installed_console_script(weights):
    _, d = weights
    proc = subprocess.run([sys.executable, "-m", "octav_core.cli", "clip", str(d / "w.npy"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["bits"] == 4
