# LFF out-of-distribution workflow: data -> CE pretraining -> LFF / CE-control fine-tuning ->
# HDF5 extraction -> per-scorer scoring -> metrics -> tables and figures.
#
#   snakemake --cores 2                        # the embedded benchmark, end to end
#   snakemake all --cores 8 --resources gpu=1  # targets first: after --resources, Snakemake reads a
#                                              # following word as one more resource
#   snakemake results/tables/embedded.csv      # one table
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
from lffood.jobcontrol import (KeptOutputs, busy_outputs, mark_workflow_process, outputs_not_kept,
                               remove_interrupted_temps)
from lffood.runtime import export_pythonpath, provenance

# rule scripts (local, cluster or conda jobs) import the library from this checkout
export_pythonpath(SRC)
# ... and stop when this process ends (lffood.jobcontrol.watch_workflow: no orphaned jobs)
mark_workflow_process()

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
config["_provenance"] = provenance(workflow.basedir, load_torch=False)  # no torch import per parse


report: "workflow/report/workflow.rst"

KEPT = KeptOutputs()


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
    # No second writer: a job of an earlier Snakemake (killed, then `--unlock`) that still writes an
    # output of this run holds its lock (lffood.jobcontrol.output_locks): stop before any job starts.
    _busy = busy_outputs(f for job in workflow.dag.needrun_jobs() for f in job.output)
    if _busy:
        raise WorkflowError(_busy)
    # The temporary files of interrupted writes (a SIGKILL, a lost node), whatever this run builds.
    for _path in remove_interrupted_temps([config["results_dir"], config["data_dir"], DL]):
        logger.info(f"Removed {_path}: left by an interrupted write or a killed job")
    # What Snakemake's update() does not put back when a job fails (lffood.jobcontrol.KeptOutputs).
    KEPT.snapshot(workflow)


onerror:
    # the outputs of failed jobs, which Snakemake copied back from .snakemake/backups: their own
    # metadata and modification times again, so that the next run does not redo them and what follows
    _kept = KEPT.restore_failed(workflow)
    if _kept:
        logger.info(f"Kept the previous version of {len(_kept)} output(s) of failed jobs, with their metadata and "
                    f"modification times: {', '.join(_kept)}")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/report_page.smk"


# every table and figure of the benchmarks in `run`, and the results page that shows them
rule all:
    default_target: True
    input:
        all_targets(),
        report_page_targets(),


# A failing job costs no good result: every output is update() (lffood.jobcontrol, README "Reproducibility")
_not_kept = outputs_not_kept(workflow.rules)
if _not_kept:
    raise WorkflowError("outputs must be update() (a failing job keeps their previous version):\n  "
                        + "\n  ".join(_not_kept))
