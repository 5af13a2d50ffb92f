"""Write results/{ckpt}/layers/{index}.json: octav_core.analysis.analyse_layer for one layer."""

import json
import sys
import time

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (tracebacks go to the log)

from octav_core.analysis import analyse_layer  # noqa: E402
from octav_core.checkpoints import open_checkpoint  # noqa: E402
from octav_core.fileio import write_json_atomic  # noqa: E402

index = int(snakemake.wildcards.index)  # noqa: F821
with open(snakemake.input.catalog) as handle:  # noqa: F821
    catalog = json.load(handle)
layer = next(layer for layer in catalog["layers"] if layer["index"] == index)

start = time.perf_counter()
ckpt = open_checkpoint(snakemake.params.spec)  # noqa: F821
weights = ckpt.tensor(index)
loaded = time.perf_counter()
record = analyse_layer(weights, layer["name"], snakemake.params.bits, grid=snakemake.params.grid,  # noqa: F821
                       num=snakemake.params.curve_points, index=index)  # noqa: F821
write_json_atomic(snakemake.output[0], record)  # noqa: F821
print(f"layer #{index} {layer['name']} {tuple(layer['shape'])}: read {loaded - start:.3f} s, "
      f"analysed {time.perf_counter() - loaded:.3f} s", file=sys.stderr)
