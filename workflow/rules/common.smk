# Helpers shared by the rules: config validation, checkpoint ids, and the input functions
# that read the layer catalog (a Snakemake checkpoint) to enumerate the per-layer jobs.

import json
import re
from pathlib import Path

import octav_core
from octav_core.analysis import ANALYSIS_FORMAT
from octav_core.checkpoints import KNOWN_SPECS, LOCAL_FORMATS, RESNET50_LAYER_NAMES, results_id
from snakemake.utils import validate


def _integers_from_command_line():
    """`--config bits=[4,8]` arrives as ['4', '8'] (Snakemake reads lists with YAML's BaseLoader)."""
    for key in ("bits", "layers", "figure_layers"):
        value = config.get(key)
        if isinstance(value, list):
            config[key] = [int(v) if isinstance(v, str) and v.isdigit() else v for v in value]


_integers_from_command_line()
validate(config, schema="../schemas/config.schema.yaml")

# Jobs whose outputs depend on the engine's numbers carry this as a param, so a new
# octav_core version (or a new record layout) reruns them (rerun trigger "params").
ENGINE_VERSION = f"{octav_core.__version__}/format{ANALYSIS_FORMAT}"


class ConfigError(ValueError):
    """A config value the schema cannot check; raised before any job runs."""


def is_local_spec(spec):
    """A spec that is not a named checkpoint (octav_core.checkpoints.KNOWN_SPECS) is a path."""
    return spec not in KNOWN_SPECS


def checkpoint_id(spec):
    """The results directory name of a spec (octav_core.checkpoints.results_id), checking a local file exists."""
    if is_local_spec(spec) and not Path(spec).expanduser().exists():
        raise ConfigError(f"checkpoint {spec!r} is not a known checkpoint ({', '.join(KNOWN_SPECS)}) and no such "
                          f"file exists (relative paths are taken from {Path.cwd()}); local checkpoints: {LOCAL_FORMATS}")
    return results_id(spec)


def _checkpoints_from_config():
    specs = config["checkpoint"]
    specs = [specs] if isinstance(specs, str) else list(specs)
    ids = {}
    for spec in specs:
        cid = checkpoint_id(spec)
        if cid in ids:
            raise ConfigError(f"checkpoints {ids[cid]!r} and {spec!r} would share results/{cid}/; rename one file")
        ids[cid] = spec
    return ids


def _check_config():
    grid = octav_core.get_grid(config["grid"])
    for b in config["bits"]:
        if b < grid.min_bits:
            raise ConfigError(f"grid {grid.name!r} needs bits >= {grid.min_bits}; config bits has {b}")
    if config["figure_bits"] not in config["bits"]:
        raise ConfigError(f"figure_bits {config['figure_bits']} is not one of bits {config['bits']}")


_check_config()
CHECKPOINTS = _checkpoints_from_config()  # results id -> spec

wildcard_constraints:
    ckpt="|".join(re.escape(c) for c in CHECKPOINTS),
    index=r"[1-9][0-9]*",


def checkpoint_source(wildcards):
    """The checkpoint file as an input (so a changed file reruns its catalog), or nothing for a named one."""
    spec = CHECKPOINTS[wildcards.ckpt]
    return [spec] if is_local_spec(spec) else []


def catalog(ckpt):
    """The catalog written by the ``catalog`` checkpoint rule (raises until it exists)."""
    path = checkpoints.catalog.get(ckpt=ckpt).output[0]
    with open(path) as handle:
        return json.load(handle)


def selected_layers(ckpt):
    """The catalog entries analysed: every layer, or those of config ``layers``."""
    layers = catalog(ckpt)["layers"]
    if config["layers"] == "all":
        return layers
    by_index = {layer["index"]: layer for layer in layers}
    missing = [i for i in config["layers"] if i not in by_index]
    if missing:
        raise ConfigError(f"config layers {missing} are not in the catalog of {ckpt} (1..{len(layers)})")
    return [by_index[i] for i in sorted(config["layers"])]


def layer_mem_mb(wildcards):
    """Python + numba (~400 MB) plus ~80 bytes per weight (float64 sorted copy, prefix sums, moments)."""
    with open(f"results/{wildcards.ckpt}/layers.json") as handle:
        layers = {layer["index"]: layer for layer in json.load(handle)["layers"]}
    numel = layers.get(int(wildcards.index), {"numel": 0})["numel"]
    return 500 + 80 * numel // 1_000_000


def layer_json(ckpt, index):
    return f"results/{ckpt}/layers/{index}.json"


def all_layer_jsons(wildcards):
    return [layer_json(wildcards.ckpt, layer["index"]) for layer in selected_layers(wildcards.ckpt)]


# The seed analysed ResNet-50 layers #17 and #45 (layer2.2.conv1, layer4.1.conv2).
SEED_FIGURE_LAYERS = (17, 45)


def is_resnet50(layers):
    """True when the catalog is ResNet-50's, numbered as the seed numbers it."""
    return [layer["name"] for layer in layers] == list(RESNET50_LAYER_NAMES)


def figure_layers(ckpt):
    """Catalog indices of Figure 1's layers (config ``figure_layers``), checked against the catalog."""
    layers = catalog(ckpt)["layers"]
    by_index = {layer["index"]: layer for layer in layers}
    by_name = {layer["name"]: layer["index"] for layer in layers}
    wanted = config["figure_layers"]
    if wanted == "auto":
        analysed = selected_layers(ckpt)
        if is_resnet50(layers) and set(SEED_FIGURE_LAYERS) <= {layer["index"] for layer in analysed}:
            wanted = list(SEED_FIGURE_LAYERS)
        else:
            largest = sorted(analysed, key=lambda layer: (-layer["numel"], layer["index"]))[:2]
            wanted = sorted(layer["index"] for layer in largest)
    indices = []
    for ref in wanted:
        if isinstance(ref, int):
            if ref not in by_index:
                raise ConfigError(f"figure_layers: {ckpt} has no layer #{ref} (its layers are 1..{len(layers)})")
            indices.append(ref)
        elif ref in by_name:
            indices.append(by_name[ref])
        else:
            raise ConfigError(f"figure_layers: {ckpt} has no layer named {ref!r}; see results/{ckpt}/layers.json")
    if config["layers"] != "all":
        skipped = [i for i in indices if i not in config["layers"]]
        if skipped:
            raise ConfigError(f"figure_layers {skipped} are not among the analysed layers {config['layers']}")
    return indices


def figure_layer_jsons(wildcards):
    return [layer_json(wildcards.ckpt, i) for i in figure_layers(wildcards.ckpt)]


FIGURES = ("figure1a.png", "figure1a.pdf", "weight_histograms.png", "qerror_histograms.png",
           "clip_by_layer.png", "calibrators.png")


def final_outputs():
    """What ``rule all`` asks for, for every configured checkpoint."""
    outputs = []
    for ckpt in CHECKPOINTS:
        outputs += [f"results/{ckpt}/layers.json", f"results/{ckpt}/summary.csv"]
        outputs += [f"results/{ckpt}/figures/{name}" for name in FIGURES]
    return outputs
