# The QAT experiment (issue 6, docs/qat.md): a small CNN on scikit-learn's bundled digits,
# trained in float, then quantised during training (max-STE, OCTAV PWL, OCTAV MAD/PWL, static
# OCTAV) and after it (MinMax / Histogram / OCTAV observers).  One job per seed, then a summary.
#
#   snakemake --cores 8 qat
#   snakemake --cores 8 qat --config 'qat={seeds: [0, 1, 2], bits: [4]}'
#
# Config (all optional, section `qat:`): seeds, bits, methods, fp_epochs, qat_epochs,
# batch_size, fp_lr, qat_lr, test_fraction, split_seed, first_last_bits
# (defaults: octav_core.qat.experiment.ExperimentConfig; seeds [0, 1, 2, 3, 4]).

import octav_core
from octav_core.qat.experiment import ExperimentConfig

QAT_CONFIG = dict(config.get("qat") or {})
QAT_SEEDS = [int(s) for s in QAT_CONFIG.get("seeds", [0, 1, 2, 3, 4])]
ExperimentConfig.from_dict(QAT_CONFIG)  # unknown keys or methods fail here, before any job runs
if len(QAT_SEEDS) < 2 or len(set(QAT_SEEDS)) != len(QAT_SEEDS):
    raise ValueError(f"qat.seeds must list at least two distinct seeds (for a std), got {QAT_SEEDS}")

wildcard_constraints:
    qat_seed=r"[0-9]+",


localrules:
    qat,


rule qat:
    input:
        "results/qat/summary.csv",
        "results/qat/accuracy.png",


rule qat_seed:
    output:
        "results/qat/runs/seed{qat_seed}.json",
    params:
        config={k: v for k, v in QAT_CONFIG.items() if k != "seeds"},
        engine=octav_core.__version__,  # a new engine reruns the experiment (rerun trigger "params")
    log:
        "results/qat/logs/seed{qat_seed}.log",
    benchmark:
        "results/qat/benchmarks/seed{qat_seed}.tsv"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=15,
    script:
        "../scripts/qat_seed.py"


rule qat_summary:
    input:
        expand("results/qat/runs/seed{qat_seed}.json", qat_seed=QAT_SEEDS),
    output:
        csv="results/qat/summary.csv",
        png="results/qat/accuracy.png",
    log:
        "results/qat/logs/summary.log",
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/qat_summary.py"
