"""The QAT experiment's table (mean and std over seeds) and accuracy curves."""

import json
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (tracebacks go to the log)

from octav_core.qat.experiment import plot_accuracy, summarize, write_summary_csv  # noqa: E402

results = []
for path in snakemake.input:  # noqa: F821
    with open(path) as handle:
        results.append(json.load(handle))
write_summary_csv(summarize(results), snakemake.output.csv)  # noqa: F821
plot_accuracy(results, snakemake.output.png)  # noqa: F821
