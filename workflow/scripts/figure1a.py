"""Figure 1(a): MSE against the clip for the figure layers (PNG and PDF)."""

import json
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (tracebacks go to the log)

from octav_core.plots import figure1a  # noqa: E402

records = []
for path in snakemake.input.layers:  # noqa: F821
    with open(path) as handle:
        records.append(json.load(handle))
figure1a(records, snakemake.params.bits, [snakemake.output.png, snakemake.output.pdf])  # noqa: F821
