"""OCTAV's relative clip and SQNR for every layer and bit-width."""

import json
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (tracebacks go to the log)

from octav_core.plots import clip_by_layer  # noqa: E402

records = []
for path in snakemake.input.layers:  # noqa: F821
    with open(path) as handle:
        records.append(json.load(handle))
clip_by_layer(records, snakemake.output[0])  # noqa: F821
