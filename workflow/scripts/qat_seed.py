"""One seed of the QAT experiment: float training, then every method at every bit-width."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (tracebacks go to the log)

import torch  # noqa: E402

from octav_core.fileio import write_json_atomic  # noqa: E402
from octav_core.qat.experiment import ExperimentConfig, run_seed  # noqa: E402

torch.set_num_threads(snakemake.threads)  # noqa: F821
result = run_seed(int(snakemake.wildcards.qat_seed), ExperimentConfig.from_dict(snakemake.params.config))  # noqa: F821
for run in result["runs"]:
    print(f"{run['method']:>22} {run['bits']:>2} bits: {run['accuracy']:.2f}%", file=sys.stderr)
print(f"{result['seconds']:.1f} s", file=sys.stderr)
write_json_atomic(snakemake.output[0], result, indent=1)  # noqa: F821
