"""The SLURM profile on a real single-node SLURM cluster brought up on localhost (tests/cluster/
localslurm.py): the micro benchmark runs through `--profile profiles/slurm`, GPU rules are
submitted with a GPU request (and SLURM allocates the fake GPU gres), other rules without, the job
logs name the device, and the results equal a local run's.

Needs root and Debian's slurmctld/slurmd/slurm-client/munge: installed with apt-get when missing
(LFFOOD_SLURM_INSTALL=0 switches that off); skips with the reason otherwise. Deselect with
`-m "not slurm"`. Bounded: the Snakemake run is killed (timeout -s KILL) after SLURM_TIMEOUT s and
the daemons are stopped in the fixture's teardown whatever happens.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import MICRO, REPO, gpu_rules
from localslurm import LocalSlurm, SlurmUnavailable, ensure_packages

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

SLURM_TIMEOUT = 480  # seconds for the whole Snakemake run through SLURM (about 2-3 minutes here)
GPU_RULES = gpu_rules()  # train, extract and the network scorers' rules
# one seed, three scorers: energy (cached), react (cached, fitted statistics), odin (network, GPU rule)
SCORERS = ["energy", "react", "odin"]
# three variants (CE, the CE control, LFF): the other methods' objectives are covered by the local micro run
VARIANTS = ["ce", "ce_control", "lff"]
EXPECTED_JOBS = {"prepare_embedded": 1, "train": 3, "extract": 3, "fit_stats": 3, "score": 6,
                 "score_network": 3, "metrics": 3, "table": 1, "scorer_table": 1, "figures": 1}
PARTITION_LINE = 'slurm_partition: ""'


def micro_one_seed(path: Path) -> Path:
    cfg = yaml.safe_load(MICRO.read_text())
    cfg["seeds"] = [0]
    cfg["benchmarks"]["micro"]["scorers"]["names"] = SCORERS
    cfg["benchmarks"]["micro"]["variants"] = {v: cfg["benchmarks"]["micro"]["variants"][v] for v in VARIANTS}
    cfg["benchmarks"]["micro"]["sweeps"] = []
    cfg["device"] = "auto"  # exercise device selection inside SLURM jobs (CPU here: the GPU is fake)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        ensure_packages(install=os.environ.get("LFFOOD_SLURM_INSTALL", "1") != "0")
    except SlurmUnavailable as exc:
        pytest.skip(f"no local SLURM cluster: {exc}")
    root = tmp_path_factory.mktemp("slurm")
    slurm = LocalSlurm(root / "cluster")
    slurm.job_dirs = [root]  # teardown also ends job processes left in the work directories
    try:
        slurm.start()
    except SlurmUnavailable as exc:
        slurm.stop()
        pytest.skip(f"local SLURM cluster did not start: {exc}")
    try:
        yield slurm, root
    finally:
        slurm.stop()


@pytest.fixture(scope="module")
def runs(cluster):
    slurm, root = cluster
    config = micro_one_seed(root / "micro1.yaml")

    # the profile as shipped, with the one documented edit: the partition
    profile = root / "profile"
    shutil.copytree(REPO / "profiles" / "slurm", profile)
    text = (profile / "config.v8+.yaml").read_text()
    assert text.count(PARTITION_LINE) == 1, "the partition is set in exactly one place"
    (profile / "config.v8+.yaml").write_text(text.replace(PARTITION_LINE, f'slurm_partition: "{slurm.PARTITION}"'))

    # the local reference run goes alongside: the SLURM run mostly waits (submission, status checks)
    local = root / "local"
    local.mkdir()
    shutil.copy(config, local / "config.yaml")
    local_cmd = ["timeout", "-s", "KILL", "400", sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                 "--directory", str(local), "--configfile", str(local / "config.yaml"), "--cores", "1", "all"]
    local_run = subprocess.Popen(local_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    work = root / "on_slurm"
    work.mkdir()
    shutil.copy(config, work / "config.yaml")
    cmd = ["timeout", "-s", "KILL", str(SLURM_TIMEOUT), sys.executable, "-m", "snakemake",
           "-s", str(REPO / "Snakefile"), "--directory", str(work), "--configfile", str(work / "config.yaml"),
           "--profile", str(profile),
           # no accounting database (slurmdbd) here: status from squeue, checked every few seconds
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
           "all"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**slurm.env, "PYTHONUNBUFFERED": "1"},
                          cwd=REPO)
    elapsed = time.perf_counter() - t0
    print(f"\nSLURM run: {elapsed:.1f} s, {len(slurm.sbatch_calls())} sbatch calls; command:\n  {' '.join(cmd)}")
    for call in slurm.sbatch_calls():
        print("  sbatch " + re.sub(r" --wrap=?.*", " --wrap=...", call))
    local_out = local_run.communicate()[0]
    assert local_run.returncode == 0, f"local run failed ({local_run.returncode}):\n{local_out[-4000:]}"
    if proc.returncode != 0:
        pytest.fail(f"snakemake through SLURM failed ({proc.returncode}"
                    f"{', killed after %d s' % SLURM_TIMEOUT if proc.returncode in (-9, 137) else ''}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}\n{slurm.logs()}")
    return slurm, work, local, proc, elapsed


def submissions(slurm) -> list[tuple[str, str]]:
    """(rule, sbatch arguments) per submission, the rule read from the plugin's --comment."""
    out = []
    for call in slurm.sbatch_calls():
        m = re.search(r"--comment[= ]rule_([A-Za-z0-9]+(?:_[a-z]+)*?)(?:_wildcards_\S*)?(?:\s|$)", call)
        assert m, call
        out.append((m.group(1), call.split(" --wrap")[0]))
    return out


def test_gpu_rules_request_a_gpu_and_others_do_not(runs):
    slurm = runs[0]
    subs = submissions(slurm)
    counts = {}
    for rule, args in subs:
        counts[rule] = counts.get(rule, 0) + 1
        assert f"-p {slurm.PARTITION}" in args, args  # the profile's partition
        assert re.search(r"--mem \d+", args) and re.search(r" -t \d+", args), args
        if rule in GPU_RULES:
            assert "--gpus=1" in args and "--cpus-per-gpu=1" in args, args
        else:
            assert "--gpus" not in args and "--gres" not in args and "--cpus-per-task=1" in args, args
    assert counts == EXPECTED_JOBS


def test_slurm_allocated_the_gpu_gres_to_gpu_jobs_only(runs):
    slurm = runs[0]
    jobs = [j for j in slurm.jobs() if j.get("Comment", "").startswith("rule_")]
    assert len(jobs) == sum(EXPECTED_JOBS.values())
    for job in jobs:
        rule = next(r for r in EXPECTED_JOBS if job["Comment"] == f"rule_{r}" or
                    job["Comment"].startswith(f"rule_{r}_wildcards_"))
        assert job["JobState"] == "COMPLETED", job
        assert ("gres:gpu:1" in job.get("TresPerJob", "")) == (rule in GPU_RULES), job


def test_job_logs_name_the_device(runs):
    _, work, _, _, _ = runs
    for name in ("train_ce", "train_lff", "extract_ce"):
        log = (work / f"logs/micro/seed0/{name}.log").read_text()
        # SLURM gave the job the fake GPU (CUDA_VISIBLE_DEVICES=0) but there is no CUDA: CPU
        assert re.search(r"device: cpu \(no CUDA device visible; CUDA_VISIBLE_DEVICES=0\b", log), log[-2000:]


def test_slurm_logs_and_job_ids_are_where_the_readme_says(runs):
    slurm, work, _, proc, _ = runs
    job_ids = {j["JobId"] for j in slurm.jobs()}
    logs = list((work / ".snakemake" / "slurm_logs").glob("rule_*/**/*.log"))
    assert {p.stem for p in logs} >= job_ids - {""}
    assert (work / ".snakemake/slurm_logs/rule_train/micro_0_ce").is_dir()
    assert re.search(r"Job \d+ has been submitted with SLURM jobid \d+", proc.stdout + proc.stderr)


def test_results_equal_a_local_run(runs):
    _, work, local, _, _ = runs
    on_slurm = pd.read_csv(work / "results/micro/metrics_all.csv")
    here = pd.read_csv(local / "results/micro/metrics_all.csv")
    assert len(on_slurm) > 0
    pd.testing.assert_frame_equal(on_slurm, here, check_exact=False, rtol=1e-9, atol=1e-12)
    for p in sorted((local / "results/micro/seed0/metrics").glob("*.csv")):
        assert (work / p.relative_to(local)).read_bytes() == p.read_bytes(), p.name
