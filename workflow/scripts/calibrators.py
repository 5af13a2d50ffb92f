"""SQNR of five calibrators (max, percentile, 200-point scan, OCTAV, best) per layer."""

import json
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (tracebacks go to the log)

from octav_core.plots import calibrators  # noqa: E402

records = []
for path in snakemake.input.layers:  # noqa: F821
    with open(path) as handle:
        records.append(json.load(handle))
calibrators(records, snakemake.params.bits, snakemake.output[0])  # noqa: F821
