"""The SLURM profile: what a cluster needs is set in one place, GPU rules ask for GPUs through
resources (never through slurm_extra), and the workflow's default profile does not override it."""

import re

import pytest
import yaml

from conftest import MICRO, REPO, gpu_rules, snakemake, workflow_rules

SLURM = REPO / "profiles" / "slurm" / "config.v8+.yaml"
DEFAULT = REPO / "profiles" / "default" / "config.v8+.yaml"
GPU_RULES = gpu_rules()


def rules_in_workflow() -> set[str]:
    return set(workflow_rules())


def test_gpu_rules_are_found():
    assert {"train", "extract", "score_network", "score_search", "tsne_vectors"} == GPU_RULES


def test_slurm_profile_settings():
    prof = yaml.safe_load(SLURM.read_text())
    assert prof["executor"] == "slurm"
    defaults = prof["default-resources"]
    assert defaults["slurm_partition"] == "" and defaults["slurm_account"] == ""  # the one place to edit
    assert SLURM.read_text().count("EDIT HERE") == 1
    per_rule = prof["set-resources"]
    assert set(per_rule) == rules_in_workflow(), "every rule has its resources in the profile"
    for rule, res in per_rule.items():
        assert "slurm_extra" not in res or not re.search(r"--(gpus|gres|mem)\b", res["slurm_extra"]), rule
        if rule == "train":  # its gpu count is the rule's: compute.train_gpus (multi-GPU DDP jobs)
            assert "gpu" not in res and "cpus_per_gpu" in res, rule
        elif rule in GPU_RULES:
            assert res["gpu"] == 1 and "cpus_per_gpu" in res, rule
        else:
            assert "gpu" not in res and "gres" not in res and res["cpus_per_task"] in (1, "threads"), rule
        # memory and time come from the rules (config-driven for the heavy ones), never a fixed
        # profile value that would override one benchmark's compute.* with another's
        assert "mem_mb" not in res and "runtime" not in res, rule


def test_default_profile_does_not_replace_the_slurm_profiles_lists():
    """Snakemake applies profiles/default after --profile and replaces whole lists/dicts."""
    default = yaml.safe_load(DEFAULT.read_text())
    assert not {"default-resources", "set-resources", "executor"} & set(default)


@pytest.mark.workflow
def test_dry_run_through_the_slurm_profile(tmp_path):
    proc = snakemake(tmp_path, "-n", "--profile", str(SLURM.parent), "all", config=MICRO, timeout=120)
    jobs = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", proc.stdout, re.M)
    planned = {r for r, _ in jobs}
    assert planned <= rules_in_workflow() | {"all"}  # `all` has no action: never submitted
    assert {"train", "score_network", "fit_stats", "metrics", "scorer_table"} <= planned
    for rule, res in jobs:
        assert "slurm_partition=" in res and "slurm_account=" in res, (rule, res)
        assert ("gpu=1" in res) == (rule in GPU_RULES), (rule, res)
