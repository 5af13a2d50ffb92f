# One job per layer (octav_core.analysis.analyse_layer), then the table over all layers.


rule analyse_layer:
    input:
        catalog="results/{ckpt}/layers.json",
    output:
        "results/{ckpt}/layers/{index}.json",
    params:
        spec=lambda wildcards: CHECKPOINTS[wildcards.ckpt],
        bits=config["bits"],
        grid=config["grid"],
        curve_points=config["curve_points"],
        engine=ENGINE_VERSION,
    log:
        "results/{ckpt}/logs/layers/{index}.log",
    benchmark:
        "results/{ckpt}/benchmarks/layers/{index}.tsv"
    threads: 1
    resources:
        mem_mb=layer_mem_mb,
        runtime=10,
    script:
        "../scripts/analyse_layer.py"


rule summary:
    input:
        catalog="results/{ckpt}/layers.json",
        layers=all_layer_jsons,
    output:
        report(
            "results/{ckpt}/summary.csv",
            caption="../report/summary.rst",
            category="{ckpt}",
            subcategory="Tables",
        ),
    log:
        "results/{ckpt}/logs/summary.log",
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/summary.py"
