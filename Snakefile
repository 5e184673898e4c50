# LFF out-of-distribution workflow: data -> CE pretraining -> LFF / CE-control fine-tuning ->
# HDF5 extraction -> per-scorer scoring -> metrics -> tables and figures.
#
#   snakemake --cores 2                      # the embedded benchmark, end to end
#   snakemake --cores 8 --resources gpu=1 all
#   snakemake results/tables/embedded.csv    # one table
#
# Logic lives in the importable library src/lffood; rule scripts in workflow/scripts are thin.

import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
from lffood.config import Overrides, check_local_device, load_configfiles, load_yaml, validate_config
from lffood.errors import ConfigError

# Snakemake's own reader names no line of a YAML syntax error: read the directive's file first, so that
# one is named with its file, line and column. (A --configfile is read by Snakemake before this file;
# `lffood check-config FILE` names the line of an error there.)
if Path("config.yaml").is_file():
    try:
        load_yaml("config.yaml")
    except ConfigError as exc:
        raise WorkflowError(str(exc)) from None


configfile: "config.yaml"
from lffood.resources import CONFIG_SCHEMA
from lffood.runtime import export_pythonpath, provenance

# rule scripts (local, cluster or conda jobs) import the library from this checkout
export_pythonpath(SRC)

# Snakemake has merged its --config values into `config` already, with every nested value a string
# (`seeds=[0]` -> ['0']); validate_config lays them on again as README "Configuration" says and names
# the override (not the config file) in errors it causes.
# Config files in Snakemake's order of precedence: the Snakefile's `configfile:` first, then every
# --configfile (Snakemake lists the command line's first, but lays them over the directive's file).
_cli_files = [str(f) for f in workflow.config_settings.configfiles]
_config_files = [str(f) for f in workflow.configfiles if str(f) not in _cli_files] + _cli_files
_source = " + ".join(_config_files) or "config"
_overrides = Overrides(workflow.config_settings.config, workflow.config_settings.config_args)
try:
    # the config files merged again, each YAML alias its own copy: Snakemake's merge keeps an anchor
    # shared by several benchmarks (&methods) one object, so an overlay of one benchmark leaked into all
    _validated = validate_config(
        load_configfiles(_config_files) if _config_files else config,
        CONFIG_SCHEMA,  # the package's (this checkout's src/lffood/resources/), found with importlib.resources
        source=_source,
        overrides=_overrides,
    )
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None
config.clear()
config.update(_validated)
# for the report's landing page (workflow/report/workflow.rst): which code and machine made it
config["_provenance"] = provenance(workflow.basedir)


report: "workflow/report/workflow.rst"


onstart:
    # device: cuda with jobs that want a GPU, run on this host: stop before the first job starts (and
    # before Snakemake removes outputs it would replace) when no CUDA device is visible here. Not
    # for cluster executors (the jobs' nodes have the GPUs); dry runs never reach this point.
    if workflow.local_exec and not workflow.touch and any(
        job.resources.get("gpu", 0) for job in workflow.dag.needrun_jobs()
    ):
        try:
            check_local_device(config, _source, _overrides)
        except ConfigError as exc:
            raise WorkflowError(str(exc)) from None


include: "workflow/rules/common.smk"


rule all:
    default_target: True
    input:
        all_targets(),


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
