"""The `lffood` command line: --help, config check, scorer list, HDF5 inspection, generation."""

import numpy as np
import pytest

from conftest import REPO, SCHEMA  # noqa: E402
from lffood import h5schema
from lffood.cli import main
from lffood.data.arrays import load_split


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("check-config", "scorers", "inspect", "generate-embedded", "benchmarks"):
        assert cmd in out


def test_check_config_ok_and_bad(tmp_path, capsys):
    assert main(["check-config", str(REPO / "config.yaml"), "--schema", str(SCHEMA)]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: [0]\nbenchmarks: {b: {dataset: {source: embedded, ood_sets: [far]}, lff: {mu: -1}}}\n")
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
    fields = {"logits": np.zeros((n, 2)), "features": np.ones((n, 3)), "labels": np.zeros(n), "preds": np.zeros(n),
              "local_norms": np.ones((n, 4))}
    h5schema.write_features(f, head_weight=np.ones((2, 3)), head_bias=np.zeros(2), splits={"far": fields},
                            roles={"far": "ood"}, attrs={"variant": "lff"})
    capsys.readouterr()
    assert main(["inspect", str(f)]) == 0
    assert "split far" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "missing.h5")]) == 1


def test_benchmarks_summary(tmp_path, capsys):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for name, secs in [("train_ce", 10.0), ("train_lff", 4.0), ("train_ce_control", 2.0),
                       ("score_ce_msp", 1.0), ("score_network_lff_odin", 3.0), ("fit_stats_network_ce_featurenorm", 5.0),
                       ("fit_stats_ce_knn", 0.5)]:
        d = tmp_path / "seed0"
        d.mkdir(exist_ok=True)
        (d / f"{name}.tsv").write_text(header + f"{secs}\t0:00:10\t100.5\t1\t1\t1\t0\t0\t90\t9\n")
    assert main(["benchmarks", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "25.5 s" in out
    table = [line.split() for line in out.splitlines() if not line.startswith(("all", " ", "rule"))]
    rows = {cells[0]: cells[1] for cells in table if len(cells) > 1}
    # each file counts under the longest rule name it starts with: score_network is not score
    assert rows == {"train": "3", "score": "1", "score_network": "1", "fit_stats_network": "1", "fit_stats": "1"}
    assert main(["benchmarks", str(tmp_path / "none")]) == 1
