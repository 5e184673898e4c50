"""A real training job killed with SIGKILL and rerun continues after its last finished epoch and
ends with a checkpoint and metrics byte-identical to an uninterrupted run; a failing rerun of a
trained model restores the previous checkpoint instead of losing it, and records nothing of the failed
job: back on the previous configuration, nothing is redone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import MICRO, REPO, job_counts, snakemake

pytestmark = pytest.mark.workflow

TARGETS = ["results/mini/seed0/metrics/ce.csv", "results/mini/seed0/metrics/lff.csv"]


def mini_config(path):
    """The micro benchmark with a larger training split and more CE epochs (about a second each), so a
    kill lands mid-training; two variants, one scorer."""
    cfg = yaml.safe_load(MICRO.read_text())
    b = cfg["benchmarks"].pop("micro")
    b["dataset"]["generator"]["train_per_class"] = 300
    b["pretrain"]["epochs"] = 6
    b["variants"] = {v: b["variants"][v] for v in ("ce", "lff")}
    b["sweeps"] = []
    b["scorers"]["names"] = ["msp"]
    b["variants"]["lff"]["scorer"] = b["variants"]["ce"]["scorer"] = "msp"
    cfg["benchmarks"] = {"mini": b}
    cfg["run"] = ["mini"]
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _cmd(work):
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
            "--configfile", str(work / "config.yaml"), "--cores", "1", *TARGETS]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    ref = tmp_path_factory.mktemp("uninterrupted")
    mini_config(ref / "config.yaml")
    snakemake(ref, "--cores", "1", *TARGETS, timeout=300)

    killed = tmp_path_factory.mktemp("killed")
    mini_config(killed / "config.yaml")
    log = killed / "logs/train/mini/seed0/ce.log"
    proc = subprocess.Popen(_cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if log.exists() and "epoch 2/6" in log.read_text():
            break
        time.sleep(0.05)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the CE training job did not reach epoch 2 in time")
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and the job, no chance to clean up
    proc.wait()
    killed_log = log.read_text()
    ckpt = killed / "results/mini/seed0/models/ce.pt"
    resume_state = killed / "results/mini/seed0/models/ce.resume.pt"
    state_after_kill = (ckpt.exists(), resume_state.exists())
    snakemake(killed, "--unlock")  # the killed Snakemake left its lock
    rerun = snakemake(killed, "--cores", "1", *TARGETS, timeout=300)
    return ref, killed, killed_log, state_after_kill, rerun


def test_killed_training_resumes_after_its_last_epoch(runs):
    _, killed, killed_log, (ckpt_existed, state_existed), _ = runs
    assert "epoch 2/6" in killed_log and "epoch 6/6" not in killed_log
    assert not ckpt_existed and state_existed  # no checkpoint yet, the end-of-epoch state on disk
    log = (killed / "logs/train/mini/seed0/ce.log").read_text()
    resumed = [line for line in log.splitlines() if "resuming after epoch" in line]
    assert resumed, log[-2000:]
    done = int(resumed[0].split("resuming after epoch ")[1].split("/")[0])
    # the state is written just after an epoch's log line, always after the first epoch (later ones as
    # often as costs 1% of the training time): the kill came after epoch 2 was logged, so at least epoch 1
    # was saved; the rerun goes on from the epoch after the saved one, redoing none before it
    after = log.split(resumed[0])[1]
    assert done >= 1 and f"epoch {done}/6" not in after and f"epoch {done + 1}/6" in after
    assert "epoch 6/6" in after
    assert not (killed / "results/mini/seed0/models/ce.resume.pt").exists()  # removed once the checkpoint exists


def test_resumed_run_is_byte_identical_to_an_uninterrupted_one(runs):
    ref, killed, _, _, _ = runs
    for rel in ("results/mini/seed0/models/ce.pt", "results/mini/seed0/models/lff.pt", *TARGETS):
        assert (killed / rel).read_bytes() == (ref / rel).read_bytes(), rel


def test_a_failing_rerun_restores_the_previous_checkpoint(runs):
    ref, _, _, _, _ = runs
    ckpt = ref / "results/mini/seed0/models/lff.pt"
    before = ckpt.read_bytes()
    cfg = yaml.safe_load((ref / "config.yaml").read_text())
    b = cfg["benchmarks"]["mini"]
    b["lff"]["lambda"] = 0.5  # a changed config reruns LFF ...
    b["guard"] = {"min_feature_norm": 1.0e9, "patience": 1}  # ... and the new run collapses
    (ref / "collapse.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = snakemake(ref, "--cores", "1", str(ckpt.relative_to(ref)), "--configfile", str(ref / "collapse.yaml"),
                     check=False, timeout=300)
    assert proc.returncode != 0
    assert "Restored previous version" in proc.stdout + proc.stderr
    assert ckpt.read_bytes() == before  # the trained model of the old configuration is not lost
    # ... nor recorded with the failed job's params: back on the old configuration nothing is redone
    plan = snakemake(ref, "-n", "--cores", "1", "--max-checksum-file-size", "0", *TARGETS)
    assert job_counts(plan.stdout) == {}, plan.stdout[-3000:]
