"""The paper-dataset rules through Snakemake: dry run with no data, ImageNet folder checked before any
job starts, and a real download + preprocess from a loopback server that is not repeated on re-run."""

import hashlib
import shutil

import numpy as np
import yaml

from conftest import REPO, job_counts, snakemake
from data.fixtures import FixtureServer, odin_tgz

PAPER = REPO / "tests" / "configs" / "paper_dryrun.yaml"


def test_dry_run_plans_cifar_and_imagenet_benchmarks_without_data(tmp_path):
    proc = snakemake(tmp_path, "-n", "--cores", "2", "all", config=PAPER)
    counts = job_counts(proc.stdout)
    # 10 archives: cifar10 + 6 CIFAR OOD sets + 3 MOS sets; DTD (textures) is shared by both families
    assert counts["download"] == 10
    assert counts["prepare_cifar"] == 1
    assert counts["prepare_imagenet100"] == 2
    assert counts["prepare_ood"] == 6 + 4
    assert counts["train"] == 2 and "prepare_embedded" not in counts  # the default variants: the CE model
    # a CE-only benchmark has no LFF model to set beside CE: no t-SNE figure, the other figures stay
    assert "tsne" not in counts and "tsne_vectors" not in counts
    assert counts["heatmaps"] == counts["auroc_bars"] == counts["figures"] == 2


def test_missing_imagenet_folder_fails_before_any_job(tmp_path):
    proc = snakemake(tmp_path, "--cores", "1", "resources/data/in100/test.npz", config=PAPER, check=False)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "benchmarks.in100.dataset.imagenet_root" in err and "/nonexistent/ILSVRC2012" in err
    assert "not an existing folder" in err
    assert not (tmp_path / "logs").exists() and not (tmp_path / "resources" / "data").exists()


def test_download_and_prepare_through_snakemake_rerun_downloads_nothing(tmp_path):
    cfg = yaml.safe_load(PAPER.read_text())
    with FixtureServer() as srv:
        blob = odin_tgz("iSUN/iSUN_patches", 7, 36)
        cfg["downloads"]["urls"] = {"isun": srv.add("iSUN.tar.gz", blob)}
        # a plain-http mirror is accepted only with a pinned checksum (no trust on first use over http)
        cfg["downloads"]["checksums"] = {"isun": "sha256:" + hashlib.sha256(blob).hexdigest()}
        cfg["downloads"]["lock_file"] = "checksums.lock"
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
        target = "resources/data/c10/isun.npz"
        snakemake(tmp_path, "--cores", "1", target, config=tmp_path / "cfg.yaml")
        assert srv.count() == 1
        with np.load(tmp_path / target) as z:
            assert z["images"].shape == (7, 32, 32, 3)
        assert len((tmp_path / "resources/data/c10/isun.files.txt").read_text().split()) == 7
        assert not (tmp_path / "checksums.lock").exists()  # pinned: nothing trusted on first use
        # re-run: nothing to do; then with the receipt gone the job re-runs but only re-verifies
        proc = snakemake(tmp_path, "--cores", "1", target, config=tmp_path / "cfg.yaml")
        assert "Nothing to be done" in proc.stdout + proc.stderr
        (tmp_path / "dl/isun/isun.verified.json").unlink()
        shutil.rmtree(tmp_path / "resources/data/c10")
        snakemake(tmp_path, "--cores", "1", target, config=tmp_path / "cfg.yaml")
        assert srv.count() == 1
        assert "not downloading" in (tmp_path / "logs/download/isun.log").read_text()
