"""The `lffood` command line: --help, config check, scorer list, HDF5 inspection, generation."""

import h5py
import numpy as np
import pytest

from conftest import REPO, SCHEMA  # noqa: E402
from lffood import h5schema, integrity
from lffood.cli import main
from lffood.data.arrays import load_split


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("check-config", "scorers", "inspect", "generate-embedded", "benchmarks", "project"):
        assert cmd in out


def test_check_config_ok_and_bad(tmp_path, capsys):
    assert main(["check-config", str(REPO / "config.yaml"), "--schema", str(SCHEMA)]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("benchmarks: {b: {seeds: [0], dataset: {source: embedded, ood_sets: [far]}, lff: {mu: -1}}}\n")
    assert main(["check-config", str(bad), "--schema", str(SCHEMA)]) == 1
    err = capsys.readouterr().err
    assert "benchmarks.b.lff.mu" in err and str(bad) in err


def test_scorers_lists_registry(capsys):
    assert main(["scorers"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("msp", "energy", "react"))


def test_generate_and_inspect(tmp_path, capsys):
    out = tmp_path / "emb"
    assert main(["generate-embedded", str(out), "--params",
                 '{"train_per_class": 3, "test_per_class": 2, "ood_size": 20, "num_classes": 2}']) == 0
    split = load_split(out / "train.npz")
    assert split.images.shape == (6, 16, 16, 3)
    f = tmp_path / "f.h5"
    n = 4
    fields = {"logits": np.zeros((n, 2)), "features": np.ones((n, 3)), "labels": np.zeros(n, np.int64), "preds": np.zeros(n, np.int64),
              "local_norms": np.ones((n, 4))}
    h5schema.write_features(f, head_weight=np.ones((2, 3)), head_bias=np.zeros(2), splits={"far": fields},
                            roles={"far": "ood"}, attrs={"variant": "lff"})
    capsys.readouterr()
    assert main(["inspect", str(f)]) == 0
    assert "split far" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "missing.h5")]) == 1


def test_inspect_features_file_shows_attrs_and_split_shapes(tmp_path, capsys):
    f = tmp_path / "f.h5"
    fields = {"logits": np.zeros((4, 2)), "features": np.ones((4, 3)), "labels": np.zeros(4, np.int64), "preds": np.zeros(4, np.int64),
              "local_norms": np.ones((4, 5)), "local_gt_prob": np.ones((4, 5))}
    h5schema.write_features(f, head_weight=np.ones((2, 3)), head_bias=np.zeros(2), splits={"test": fields},
                            roles={"test": "id_test"}, attrs={"variant": "lff", "benchmark": "toy"})
    assert main(["inspect", str(f)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "kind               features" in lines and "variant            lff" in lines
    split = next(line for line in lines if line.startswith("split test"))
    assert "id_test" in split
    for part in ("features (4, 3)", "labels (4,)", "local_gt_prob (4, 5)", "local_norms (4, 5)", "logits (4, 2)"):
        assert part in split


def test_inspect_scores_file_shows_scorer_params_and_per_split_summary(tmp_path, capsys):
    f = tmp_path / "s.h5"
    h5schema.write_scores(f, {"test": np.array([1.0, 2.0, 6.0]), "far": np.array([-4.0, 0.0]), "none": np.zeros(0)},
                          scorer="react", params={"percentile": 90}, features_file="feat.h5")
    import h5py

    with h5py.File(f, "r+") as h:  # a damaged file: write_scores itself refuses non-finite scores
        h["scores/far"][1] = np.nan
    assert main(["inspect", str(f)]) == 1  # reported damaged (lffood.integrity), and shown all the same
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {f}: content sha256 ") and f"snakemake --force {f}" in captured.err
    lines = captured.out.splitlines()
    assert "scorer             react" in lines and 'params             {"percentile": 90}' in lines
    rows = {line.split()[1]: line.split()[2:] for line in lines if line.startswith("split ")}
    assert rows == {"test": ["n", "3", "min", "1", "mean", "3", "max", "6"],
                    "far": ["n", "2", "min", "-4", "mean", "-4", "max", "-4", "non-finite", "1"],
                    "none": ["n", "0"]}


def test_inspect_stats_file_shows_statistics_shapes_dtypes_and_scalars(tmp_path, capsys):
    f = tmp_path / "st.h5"
    h5schema.write_stats(f, {"means": np.zeros((10, 3)), "precision": np.eye(3), "threshold": 1.5, "block": 2},
                         scorer="mahalanobis", params={"eps": 0.1}, source="feat.h5")
    assert main(["inspect", str(f)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "scorer             mahalanobis" in lines and 'params             {"eps": 0.1}' in lines
    assert f"stats_version      {h5schema.STATS_VERSION}" in lines and "source             feat.h5" in lines
    rows = {line.split()[1]: line.split()[2:] for line in lines if line.startswith("stat ")}
    assert rows == {"means": ["float64", "(10,", "3)"], "precision": ["float64", "(3,", "3)"],
                    "threshold": ["float64", "()", "=", "1.5"], "block": ["int64", "()", "=", "2"]}
    assert "note:" not in out
    with h5py.File(f, "a") as h:  # a layout older than this lffood's: shown, with what to do
        h.attrs["stats_version"] = 0
    integrity.seal(f)  # as the lffood that wrote it sealed it
    assert main(["inspect", str(f)]) == 0
    assert "note: statistics layout version 0" in capsys.readouterr().out


def test_inspect_rejects_non_lffood_files(tmp_path, capsys):
    junk, foreign = tmp_path / "junk.h5", tmp_path / "foreign.h5"
    junk.write_bytes(b"PK\x03\x04 not an HDF5 file")
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    capsys.readouterr()
    assert main(["inspect", str(junk)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.startswith(f"error: {junk}: not a readable HDF5 file")
    assert main(["inspect", str(foreign)]) == 1
    assert f"{foreign}: an HDF5 file, but not one of lffood's" in capsys.readouterr().err


def test_benchmarks_summary(tmp_path, capsys):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    # benchmarks/<rule>/<job>.tsv, the job named as its artifact is (workflow/rules/common.smk)
    for name, secs in [("train/b/seed0/ce", 10.0), ("train/b/seed0/lff", 4.0), ("train/b/seed1/ce_control", 2.0),
                       ("score/b/seed0/ce/msp", 1.0), ("score_network/b/seed0/lff/odin", 3.0),
                       ("fit_stats/b/seed0/ce/featurenorm", 5.0), ("fit_stats/b/seed0/ce/knn", 0.5),
                       ("download/isun", 7.0)]:
        f = tmp_path / f"{name}.tsv"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(header + f"{secs}\t0:00:10\t100.5\t1\t1\t1\t0\t0\t90\t9\n")
    assert main(["benchmarks", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "32.5 s" in out
    table = [line.split() for line in out.splitlines() if not line.startswith(("all", " ", "rule"))]
    rows = {cells[0]: cells[1] for cells in table if len(cells) > 1}
    # the rule is the first folder (no .smk parsing): score_network is not score
    assert rows == {"train": "3", "score": "1", "score_network": "1", "fit_stats": "2", "download": "1"}
    assert main(["benchmarks", str(tmp_path / "none")]) == 1


def test_a_reader_that_leaves_early_is_not_an_error():
    """`lffood scorers | head -1`: the pipe closes before the output is written; no traceback, exit 0."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    proc = subprocess.run([sys.executable, "-m", "lffood", "scorers"], stdout=write, stderr=subprocess.PIPE,
                          text=True, timeout=60)
    os.close(write)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
