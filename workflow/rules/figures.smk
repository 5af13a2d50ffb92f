# The seed's figures (Figure 1(a) and its two histograms) and the all-layer comparisons.


rule figure1a:
    input:
        layers=figure_layer_jsons,
    output:
        png=report(
            "results/{ckpt}/figures/figure1a.png",
            caption="../report/figure1a.rst",
            category="{ckpt}",
            subcategory="Figures",
        ),
        pdf="results/{ckpt}/figures/figure1a.pdf",
    params:
        bits=config["figure_bits"],
    log:
        "results/{ckpt}/logs/figure1a.log",
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/figure1a.py"


rule histograms:
    input:
        catalog="results/{ckpt}/layers.json",
        layers=figure_layer_jsons,
    output:
        weights=report(
            "results/{ckpt}/figures/weight_histograms.png",
            caption="../report/weight_histograms.rst",
            category="{ckpt}",
            subcategory="Figures",
        ),
        qerror=report(
            "results/{ckpt}/figures/qerror_histograms.png",
            caption="../report/qerror_histograms.rst",
            category="{ckpt}",
            subcategory="Figures",
        ),
    params:
        spec=lambda wildcards: CHECKPOINTS[wildcards.ckpt],
        bits=config["figure_bits"],
        grid=config["grid"],
    log:
        "results/{ckpt}/logs/histograms.log",
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/histograms.py"


rule clip_by_layer:
    input:
        layers=all_layer_jsons,
    output:
        report(
            "results/{ckpt}/figures/clip_by_layer.png",
            caption="../report/clip_by_layer.rst",
            category="{ckpt}",
            subcategory="Figures",
        ),
    log:
        "results/{ckpt}/logs/clip_by_layer.log",
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/clip_by_layer.py"


rule calibrators:
    input:
        layers=all_layer_jsons,
    output:
        report(
            "results/{ckpt}/figures/calibrators.png",
            caption="../report/calibrators.rst",
            category="{ckpt}",
            subcategory="Figures",
        ),
    params:
        bits=config["figure_bits"],
    log:
        "results/{ckpt}/logs/calibrators.log",
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/calibrators.py"
