"""The seed's weight and quantisation-error histograms for the figure layers."""

import json
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (tracebacks go to the log)

from octav_core.checkpoints import open_checkpoint  # noqa: E402
from octav_core.plots import qerror_histograms, weight_histograms  # noqa: E402

bits = snakemake.params.bits  # noqa: F821
ckpt = open_checkpoint(snakemake.params.spec)  # noqa: F821
tensors, clips = {}, {}
for path in snakemake.input.layers:  # noqa: F821
    with open(path) as handle:
        record = json.load(handle)
    label = f"#{record['index']} {record['name']}"
    tensors[label] = ckpt.tensor(record["index"])
    clips[label] = record["bits"][str(bits)]["octav"]["clip"]
weight_histograms(tensors, clips, bits, snakemake.output.weights)  # noqa: F821
qerror_histograms(tensors, bits, snakemake.params.grid, snakemake.output.qerror)  # noqa: F821
