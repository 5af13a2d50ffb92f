# The layer catalog.  A Snakemake checkpoint: the number of layers is known only once the
# checkpoint file has been opened, and the per-layer jobs are enumerated from this output.


checkpoint catalog:
    input:
        checkpoint_source,
    output:
        "results/{ckpt}/layers.json",
    params:
        spec=lambda wildcards: CHECKPOINTS[wildcards.ckpt],
        engine=ENGINE_VERSION,
    log:
        "results/{ckpt}/logs/catalog.log",
    resources:
        mem_mb=2000,
        # a first run fetches the checkpoint (resnet50-caffe: about 100 MB)
        runtime=30,
    script:
        "../scripts/catalog.py"
