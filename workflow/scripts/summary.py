"""Write results/{ckpt}/summary.csv: one row per (layer, bit-width)."""

import json
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (tracebacks go to the log)

from octav_core.analysis import summary_rows, write_summary_csv  # noqa: E402

rows = []
for path in snakemake.input.layers:  # noqa: F821
    with open(path) as handle:
        rows += summary_rows(json.load(handle))
write_summary_csv(rows, snakemake.output[0])  # noqa: F821
print(f"{len(rows)} rows from {len(snakemake.input.layers)} layers", file=sys.stderr)  # noqa: F821
