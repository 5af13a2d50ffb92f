"""Write results/{ckpt}/layers.json: the checkpoint's layer catalog and its sha256."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (tracebacks go to the log)

from octav_core import __version__  # noqa: E402
from octav_core.checkpoints import open_checkpoint  # noqa: E402
from octav_core.fileio import write_json_atomic  # noqa: E402

spec = snakemake.params.spec  # noqa: F821
ckpt = open_checkpoint(spec)
layers = [{"index": int(layer.index), "name": layer.name, "shape": [int(d) for d in layer.shape],
           "numel": int(layer.numel)} for layer in ckpt.layers]
write_json_atomic(snakemake.output[0], {  # noqa: F821
    "spec": spec,
    "name": ckpt.name,
    "sha256": ckpt.sha256,
    "octav_core_version": __version__,
    "layers": layers,
}, indent=1)
print(f"{spec}: {len(layers)} layers, {sum(x['numel'] for x in layers)} weights, sha256 {ckpt.sha256}", file=sys.stderr)
