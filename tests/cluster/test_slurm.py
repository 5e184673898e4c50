"""The SLURM profile on a real single-node SLURM cluster brought up on localhost (tests/cluster/
localslurm.py): the micro benchmark runs through `--profile profiles/slurm`, GPU rules are
submitted with a GPU request (and SLURM allocates the fake GPU gres), other rules without, the job
logs name the device, and the results equal a local run's.

Needs root and Debian's slurmctld/slurmd/slurm-client/munge: installed with apt-get when missing
(LFFOOD_SLURM_INSTALL=0 switches that off), waiting (at most 10 minutes) for another apt or dpkg to
release the package manager's lock. Where the cluster cannot come up it skips with the reason,
except in CI (``CI`` set, as .ci/run and GitHub-style CI do) as root, where it fails with the reason:
there a skip would hide a check that is supposed to run. Deselect with `-m "not slurm"`.
Bounded: the Snakemake run is killed (timeout -s KILL) after SLURM_TIMEOUT s and the daemons are
stopped in the fixture's teardown whatever happens.

The lock waiting and the skip/fail policy are tested here too, without root or a real cluster
(those tests are not marked `slurm`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import MICRO, REPO, gpu_rules
from localslurm import (APT_LOCK_ERROR, LocalSlurm, SlurmUnavailable, apt_get, ensure_packages, lock_holder,
                        wait_for_locks)

SLURM_TIMEOUT = 480  # seconds for the whole Snakemake run through SLURM (about 2-3 minutes here)
GPU_RULES = gpu_rules()  # train, extract and the network scorers' rules
# one seed, three scorers: energy (cached), react (cached, fitted statistics), odin (network, GPU rule)
SCORERS = ["energy", "react", "odin"]
# three variants (CE, the CE control, LFF): the other methods' objectives are covered by the local micro run
VARIANTS = ["ce", "ce_control", "lff"]
EXPECTED_JOBS = {"prepare_embedded": 1, "train": 3, "extract": 3, "fit_stats": 3, "score": 6,
                 "score_network": 3, "metrics": 3, "table": 1, "scorer_table": 1, "figures": 1,
                 "bench_paper_table": 2, "auroc_bars": 1, "heatmaps": 1, "tsne_vectors": 1, "tsne": 1,
                 "compare": 1, "report_page": 1}
PARTITION_LINE = 'slurm_partition: ""'


def micro_one_seed(path: Path) -> Path:
    cfg = yaml.safe_load(MICRO.read_text())
    cfg["benchmarks"]["micro"]["seeds"] = [0]
    cfg["benchmarks"]["micro"]["scorers"]["names"] = SCORERS
    cfg["benchmarks"]["micro"]["variants"] = {v: cfg["benchmarks"]["micro"]["variants"][v] for v in VARIANTS}
    cfg["benchmarks"]["micro"]["sweeps"] = []
    cfg["device"] = "auto"  # exercise device selection inside SLURM jobs (CPU here: the GPU is fake)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def on_cluster(test):
    """Marks a test that runs the workflow on the local cluster (``-m "not slurm"`` leaves it out)."""
    return pytest.mark.workflow(pytest.mark.slurm(test))


def in_ci(env: Mapping[str, str]) -> bool:
    """``CI`` set to anything but empty, 0, false or no (GitHub Actions and .ci/run set it)."""
    return env.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str, env: Mapping[str, str] | None = None, euid: int | None = None):
    """Skip with ``reason`` where the cluster cannot be expected (a developer's machine, not root);
    fail with it in CI as root, where the cluster is expected and a skip would go unnoticed."""
    env = os.environ if env is None else env
    euid = os.geteuid() if euid is None else euid
    if in_ci(env) and euid == 0:
        pytest.fail(f"{reason}\n(CI is set and this runs as root, so the SLURM tests must run here; if this "
                    "machine cannot run them, deselect them explicitly with -m 'not slurm')", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    problem = None  # skipped or failed outside the except blocks: the reason alone, no chained traceback
    try:
        ensure_packages(install=os.environ.get("LFFOOD_SLURM_INSTALL", "1") != "0")
    except SlurmUnavailable as exc:
        problem = f"no local SLURM cluster: {exc}"
    if problem:
        unavailable(problem)
    root = tmp_path_factory.mktemp("slurm")
    # two fake GPUs: GPU jobs of one level of the job graph (the fine-tunings, extractions, ODIN) run side by
    # side on the node's CPUs instead of queueing for one GPU
    slurm = LocalSlurm(root / "cluster", gpus=2)
    slurm.job_dirs = [root]  # teardown also ends job processes left in the work directories
    try:
        slurm.start()
    except SlurmUnavailable as exc:
        slurm.stop()
        problem = f"local SLURM cluster did not start: {exc}"
    if problem:
        unavailable(problem)
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

    # the local reference run goes alongside: the SLURM run mostly waits (submission, status checks). It
    # builds what test_results_equal_a_local_run compares (the metrics, via the table), not the figures
    local = root / "local"
    local.mkdir()
    shutil.copy(config, local / "config.yaml")
    local_cmd = ["timeout", "-s", "KILL", "400", sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                 "--directory", str(local), "--configfile", str(local / "config.yaml"), "--cores", "1",
                 "results/tables/micro.csv"]
    local_run = subprocess.Popen(local_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    work = root / "on_slurm"
    work.mkdir()
    shutil.copy(config, work / "config.yaml")
    cmd = ["timeout", "-s", "KILL", str(SLURM_TIMEOUT), sys.executable, "-m", "snakemake",
           "-s", str(REPO / "Snakefile"), "--directory", str(work), "--configfile", str(work / "config.yaml"),
           "--profile", str(profile),
           # no accounting database (slurmdbd) here: status from squeue, first checked 2 s after a submission
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


@on_cluster
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


@on_cluster
def test_slurm_allocated_the_gpu_gres_to_gpu_jobs_only(runs):
    slurm = runs[0]
    jobs = [j for j in slurm.jobs() if j.get("Comment", "").startswith("rule_")]
    assert len(jobs) == sum(EXPECTED_JOBS.values())
    for job in jobs:
        rule = next(r for r in EXPECTED_JOBS if job["Comment"] == f"rule_{r}" or
                    job["Comment"].startswith(f"rule_{r}_wildcards_"))
        assert job["JobState"] == "COMPLETED", job
        assert ("gres:gpu:1" in job.get("TresPerJob", "")) == (rule in GPU_RULES), job


@on_cluster
def test_job_logs_name_the_device(runs):
    _, work, _, _, _ = runs
    for name in ("train/micro/seed0/ce", "train/micro/seed0/lff", "extract/micro/seed0/ce"):
        log = (work / f"logs/{name}.log").read_text()
        # SLURM gave the job one of the two fake GPUs (CUDA_VISIBLE_DEVICES=0 or 1) but there is no CUDA: CPU
        assert re.search(r"device: cpu \(no CUDA device visible; CUDA_VISIBLE_DEVICES=[01]\b", log), log[-2000:]


@on_cluster
def test_slurm_logs_and_job_ids_are_where_the_readme_says(runs):
    slurm, work, _, proc, _ = runs
    job_ids = {j["JobId"] for j in slurm.jobs()}
    logs = list((work / ".snakemake" / "slurm_logs").glob("rule_*/**/*.log"))
    assert {p.stem for p in logs} >= job_ids - {""}
    assert (work / ".snakemake/slurm_logs/rule_train/micro_0_ce").is_dir()
    assert re.search(r"Job \d+ has been submitted with SLURM jobid \d+", proc.stdout + proc.stderr)


@on_cluster
def test_results_equal_a_local_run(runs):
    _, work, local, _, _ = runs
    on_slurm = pd.read_csv(work / "results/micro/metrics_all.csv")
    here = pd.read_csv(local / "results/micro/metrics_all.csv")
    assert len(on_slurm) > 0
    pd.testing.assert_frame_equal(on_slurm, here, check_exact=False, rtol=1e-9, atol=1e-12)
    for p in sorted((local / "results/micro/seed0/metrics").glob("*.csv")):
        assert (work / p.relative_to(local)).read_bytes() == p.read_bytes(), p.name


# ----------------------------------------------------------------------------- the package manager's lock
HOLDER = ("import fcntl, sys, time\nf = open(sys.argv[1], 'a')\nfcntl.lockf(f, fcntl.LOCK_EX)\n"
          "print('locked', flush=True)\ntime.sleep(float(sys.argv[2]))\n")


@contextlib.contextmanager
def holding(path: Path, seconds: float):
    """Another process holds a write lock on ``path`` the way apt and dpkg do (fcntl) for ``seconds``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_lock_holder_names_the_process_holding_the_lock(tmp_path):
    free, absent = tmp_path / "free", tmp_path / "absent"
    free.touch()
    assert lock_holder(free) is None and lock_holder(absent) is None
    with holding(tmp_path / "held", 30) as holder:
        assert lock_holder(tmp_path / "held") == holder.pid
    assert lock_holder(tmp_path / "held") is None


def test_lock_waiter_waits_for_the_holder_then_proceeds(tmp_path):
    lock, free, absent = tmp_path / "lock-frontend", tmp_path / "lists-lock", tmp_path / "absent"
    free.touch()
    lines: list[str] = []
    with holding(lock, 1.5) as holder:
        waited = wait_for_locks([lock, free, absent], timeout=30, poll=0.05, report_every=0.5, report=lines.append)
    assert 1.0 <= waited < 20
    assert f"{lock} held by pid {holder.pid} (" in lines[0] and "python" in lines[0], lines
    assert str(free) not in lines[0] and str(absent) not in lines[0]
    assert len(lines) >= 3 and "free after" in lines[-1], lines  # every report_every s, then the end


def test_lock_waiter_gives_up_at_its_bound_naming_the_holder(tmp_path):
    lock = tmp_path / "lock"
    with holding(lock, 60) as holder:
        t0 = time.monotonic()
        with pytest.raises(SlurmUnavailable) as exc:
            wait_for_locks([lock], timeout=1, poll=0.05, report=lambda _: None)
        elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed < 10
    msg = str(exc.value)
    assert "still held after 1 s" in msg and f"{lock} held by pid {holder.pid} (" in msg, msg


def fake_apt(tmp_path: Path, fails_with: str, failures: int) -> tuple[Path, Path]:
    """An apt-get stand-in that logs its arguments and fails ``failures`` times with ``fails_with``."""
    log = tmp_path / "apt-calls.log"
    script = tmp_path / "apt-get"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n'
                      f'if [ "$(wc -l < "{log}")" -le {failures} ]; then echo "{fails_with}" >&2; exit 100; fi\n')
    script.chmod(0o755)
    return script, log


LOCK_TAKEN = "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4711 (apt-get)"


def test_apt_get_runs_again_when_apt_finds_a_lock_taken(tmp_path):
    apt, log = fake_apt(tmp_path, LOCK_TAKEN, failures=1)
    lines: list[str] = []
    proc = apt_get("update", "-q", apt=str(apt), lock_paths=[], lock_wait=30, report=lines.append)
    calls = log.read_text().splitlines()
    assert proc.returncode == 0 and len(calls) == 2, calls
    for call in calls:  # apt-get also waits for dpkg's lock itself, within what is left of the bound
        m = re.fullmatch(r"-o DPkg::Lock::Timeout=(\d+) update -q", call)
        assert m and 1 <= int(m.group(1)) <= 30, call
    assert any("found a lock taken" in line for line in lines), lines


def test_apt_get_does_not_retry_other_failures(tmp_path):
    apt, log = fake_apt(tmp_path, "E: Unable to locate package slurmd", failures=99)
    proc = apt_get("install", "-y", "slurmd", apt=str(apt), lock_paths=[], lock_wait=30, report=lambda _: None)
    assert proc.returncode == 100 and len(log.read_text().splitlines()) == 1


def test_apt_get_gives_up_at_its_bound_with_apts_message(tmp_path):
    apt, log = fake_apt(tmp_path, LOCK_TAKEN, failures=99)
    t0 = time.monotonic()
    with pytest.raises(SlurmUnavailable, match="lock stayed taken for 2 s: E: Could not get lock"):
        apt_get("update", apt=str(apt), lock_paths=[], lock_wait=2, report=lambda _: None)
    assert time.monotonic() - t0 < 10 and len(log.read_text().splitlines()) >= 2


def isolated_apt(root: Path) -> tuple[dict[str, str], dict[str, Path]]:
    """A real apt-get that reads and locks only files under ``root`` (no system configuration, so no
    hooks and no sources): the environment to run it with, and its lock files."""
    for d in ("etc/parts", "lists/partial", "cache/archives/partial", "state", "log", "dpkg"):
        (root / d).mkdir(parents=True)
    (root / "dpkg/status").touch()
    (root / "etc/sources.list").touch()
    conf = root / "etc/apt.conf"
    settings = {"Dir::Etc::main": root / "etc/none.conf", "Dir::Etc::parts": root / "etc/parts",
                "Dir::Etc::sourcelist": root / "etc/sources.list", "Dir::Etc::sourceparts": root / "etc/parts",
                "Dir::Etc::preferences": root / "etc/none.pref", "Dir::Etc::preferencesparts": root / "etc/parts",
                "Dir::State": root / "state", "Dir::State::status": root / "dpkg/status",
                "Dir::State::Lists": root / "lists", "Dir::Cache": root / "cache", "Dir::Log": root / "log",
                "APT::Sandbox::User": pwd.getpwuid(os.getuid()).pw_name}
    conf.write_text("".join(f'{k} "{v}";\n' for k, v in settings.items()))
    env = {**os.environ, "APT_CONFIG": str(conf), "DEBIAN_FRONTEND": "noninteractive"}
    locks = {"frontend": root / "dpkg/lock-frontend", "dpkg": root / "dpkg/lock", "lists": root / "lists/lock",
             "archives": root / "cache/archives/lock"}
    return env, locks


needs_apt = pytest.mark.skipif(shutil.which("apt-get") is None, reason="no apt-get here (Debian's apt only)")


@needs_apt
def test_real_apt_get_update_waits_for_a_held_lists_lock(tmp_path):
    """The case that used to skip the SLURM test: apt-get fails at once on a held lists lock (apt's
    own lock timeout covers only dpkg's); apt_get waits for the holder and then succeeds."""
    env, locks = isolated_apt(tmp_path)
    lines: list[str] = []
    with holding(locks["lists"], 2):
        plain = subprocess.run(["apt-get", "-q", "update"], capture_output=True, text=True, env=env)
        assert plain.returncode != 0 and APT_LOCK_ERROR.search(plain.stderr), plain.stderr
        proc = apt_get("-q", "update", lock_paths=list(locks.values()), lock_wait=30, timeout=60, env=env,
                       report=lines.append)
    assert proc.returncode == 0, proc.stderr
    assert lines and str(locks["lists"]) in lines[0]


@needs_apt
def test_real_apt_get_waits_for_dpkgs_lock_itself(tmp_path):
    """A dpkg lock taken after the wait (no lock paths to wait for here) is waited for by apt-get
    itself, through the DPkg::Lock::Timeout that apt_get passes."""
    env, locks = isolated_apt(tmp_path)
    lines: list[str] = []
    with holding(locks["frontend"], 2):
        plain = subprocess.run(["apt-get", "-q", "check"], capture_output=True, text=True, env=env)
        assert plain.returncode != 0 and APT_LOCK_ERROR.search(plain.stderr), plain.stderr
        t0 = time.monotonic()
        proc = apt_get("-q", "check", lock_paths=[], lock_wait=30, timeout=60, env=env, report=lines.append)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 >= 1.0
    assert not lines, lines  # one run of apt-get that waited, not a failed run and a second one


# ----------------------------------------------------------------------------- skip or fail
@pytest.mark.parametrize("ci,euid,fails", [
    ("1", 0, True), ("true", 0, True),                                    # CI as root: the cluster must come up
    (None, 0, False), ("", 0, False), ("0", 0, False), ("false", 0, False),  # not CI: skip with the reason
    ("1", 1000, False),                                                   # CI, not root: cannot run, skip
])
def test_an_unavailable_cluster_fails_in_ci_as_root_and_skips_elsewhere(ci, euid, fails):
    env = {} if ci is None else {"CI": ci}
    # catch both, so that the wrong one fails this test instead of skipping it
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception), match="no apt-get") as exc:
        unavailable("no local SLURM cluster: no apt-get", env=env, euid=euid)
    assert isinstance(exc.value, pytest.fail.Exception if fails else pytest.skip.Exception), repr(exc.value)


def test_ci_entry_point_says_it_is_ci():
    """.ci/run sets CI (unless the CI service did), so there the SLURM tests fail rather than skip."""
    assert re.search(r'^export CI="\$\{CI:-1\}"$', (REPO / ".ci" / "run").read_text(), re.M)
