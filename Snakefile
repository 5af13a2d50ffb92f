# OCTAV: per-layer optimal clipping analyses of a checkpoint and the seed's figures.
#
#   snakemake --cores 8                                   # resnet50-caffe, the default config
#   snakemake --cores 8 --config checkpoint=minilm-l6     # another model (or a local file)
#   snakemake --report results/report.html                # every figure, captioned
#   snakemake --profile profiles/slurm                    # on a SLURM cluster
#
# Layout: config/config.yaml (validated by workflow/schemas/config.schema.yaml),
# workflow/rules/*.smk (helpers in common.smk), workflow/scripts/*.py (thin: they call
# octav_core), workflow/report/*.rst (captions).  See docs/workflow.md.
#
# `snakemake --lint` asks for a conda environment or container on every rule.  Not given, on
# purpose: every rule runs this repository's own package, octav_core, which must be installed
# (`pip install -e .[workflow]`) in the environment Snakemake itself runs in; a conda
# environment file could only name PyPI/conda packages, not this checkout.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/catalog.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/qat.smk"


# Small jobs that read what the per-layer jobs wrote; on a cluster, queueing them would cost
# more than running them, and the catalog may need the network to fetch the checkpoint.
localrules:
    all,
    catalog,
    summary,
    figure1a,
    histograms,
    clip_by_layer,
    calibrators,


rule all:
    default_target: True
    input:
        final_outputs(),
