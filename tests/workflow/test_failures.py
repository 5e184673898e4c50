"""A failing job costs no good result (issue 20): after a good run, a rerun whose jobs fail (a corrupt
split: feature extraction, ODIN scoring and the t-SNE vectors all read it) leaves every earlier
output byte-identical, with its modification time, with and without --keep-going; once the split is
good again nothing is planned. The next run also removes the temporary files of interrupted writes
whatever it builds. (The same for a failed retrain with other params: tests/workflow/test_resume.py.)"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import MICRO, job_counts, snakemake

pytestmark = pytest.mark.workflow

TARGETS = ["results/tables/mini.csv", "results/figures/mini_heatmaps.png", "results/figures/mini_tsne.png"]
# as for files of real sizes (over Snakemake's 1 MB default): what decides a rerun is then the
# modification time, not a checksum of the file
REAL_SIZES = ("--max-checksum-file-size", "0")


def mini_config(path):
    """The micro benchmark with two models (CE, LFF) and two scorers (MSP, ODIN, which reads the
    splits): jobs of eight rules, every kind of output (checkpoints, HDF5, CSV, NPZ, figures)."""
    cfg = yaml.safe_load(MICRO.read_text())
    b = cfg["benchmarks"].pop("micro")
    b["variants"] = {v: {**b["variants"][v], "scorer": "msp"} for v in ("ce", "lff")}
    b["sweeps"] = []
    b["scorers"]["names"] = ["msp", "odin"]
    b["scorers"]["params"] = {}
    cfg["benchmarks"] = {"mini": b}
    cfg["run"] = ["mini"]
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def state(work):
    """Content hash and modification time of every file under results/ and resources/."""
    out = {}
    for top in ("results", "resources"):
        for folder, _, files in os.walk(work / top):
            for name in files:
                p = os.path.join(folder, name)
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, work)] = (hashlib.sha256(fh.read()).hexdigest(), os.stat(p).st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("failures")
    mini_config(work / "config.yaml")
    snakemake(work, "--cores", "2", *REAL_SIZES, *TARGETS, timeout=300)
    return work


@pytest.mark.parametrize("keep_going", [False, True], ids=["stop", "keep-going"])
def test_failing_jobs_leave_every_earlier_output_as_it_was(built, keep_going):
    work = built
    split = work / "resources/data/mini/test.npz"
    good = split.read_bytes()
    st = split.stat()
    # leftovers of interrupted writes (a SIGKILL): of an output this run does not rebuild, of none
    features = work / "results/mini/seed0/features"
    leftovers = [features / ".ce.h5.abcdefgh.tmp.h5", features / ".gone.h5.zzzzzzzz.tmp.h5", features / ".ce.h5.lock"]
    before = state(work)
    for p in leftovers:
        p.write_text("half")
    corrupt = bytearray(good)
    corrupt[len(good) // 2:len(good) // 2 + 16] = bytes(16)
    split.write_bytes(bytes(corrupt))
    try:
        proc = snakemake(work, "--cores", "2", *REAL_SIZES, *(["--keep-going"] if keep_going else []), *TARGETS,
                         check=False, timeout=300)
    finally:
        split.write_bytes(good)
        os.utime(split, ns=(st.st_atime_ns, st.st_mtime_ns))
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    failed = {r for r in ("extract", "score_network", "tsne_vectors") if f"Error in rule {r}:" in log}
    # every job that reads the split fails with --keep-going; without it, those that had started
    assert failed == {"extract", "score_network", "tsne_vectors"} if keep_going else failed, log[-3000:]
    assert "Restored previous version" in log
    assert not any(p.exists() for p in leftovers), "the next run keeps the leftovers of interrupted writes"
    after = state(work)
    changed = [p for p in sorted(set(before) | set(after)) if before.get(p) != after.get(p)]
    assert changed == [], f"outputs changed or lost by the failing run: {changed}"
    assert not list((work / ".snakemake/backups").rglob("*.*"))  # nothing left behind there either
    # the good split again: everything is up to date (no failed job's params, inputs or new
    # modification times recorded for the outputs it did not write)
    plan = snakemake(work, "-n", "--cores", "2", *REAL_SIZES, *TARGETS)
    assert job_counts(plan.stdout) == {}, plan.stdout[-3000:]


def test_a_run_refuses_to_start_while_a_live_job_writes_its_output(built, tmp_path):
    """The start-up check of a run, on the real workflow: an output whose lock a live process holds
    stops the run before any job, naming the file and the process."""
    ckpt = built / "results/mini/seed0/models/ce.pt"
    work = tmp_path / "copy"
    shutil.copytree(built, work, symlinks=True)
    os.utime(work / "resources/data/mini/train.npz")  # everything downstream is to be rebuilt
    held = work / ckpt.relative_to(built)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom lffood.jobcontrol import output_locks\n"
                               "with output_locks([sys.argv[1]]):\n    print('locked', flush=True)\n    time.sleep(120)",
                               str(held)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = state(work)
        proc = snakemake(work, "--cores", "2", *REAL_SIZES, *TARGETS, check=False, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"kill {holder.pid}" in log and str(held.relative_to(work)) in log, log[-3000:]
    assert state(work) == before  # refused before any job started
