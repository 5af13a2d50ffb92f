# QAT experiment (issue 6): OCTAV observer / fake-quant on scikit-learn's digits.
# Included from the main Snakefile; every rule here is prefixed with "qat".

QAT = config.get("qat", {})


rule qat:
    input:
        "results/qat/summary.csv",
        "results/qat/accuracy.png",
